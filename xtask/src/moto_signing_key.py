# Prints, as PEM, the private key moto signs its Cognito tokens with. moto ships the key as a
# JWK holding only n, e and d; the primes are recovered so that any RSA library can load it.
# The API tests forge tokens with it (expired, wrong claims) that differ from moto's in one way.
import base64, gzip, json, os

import moto
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

path = os.path.join(os.path.dirname(moto.__file__), "cognitoidp/resources/jwks-private.json.gz")
jwk = json.loads(gzip.open(path).read())
jwk = jwk["keys"][0] if "keys" in jwk else jwk
number = lambda v: int.from_bytes(base64.urlsafe_b64decode(v + "=" * (-len(v) % 4)), "big")
n, e, d = number(jwk["n"]), number(jwk["e"]), number(jwk["d"])
p, q = rsa.rsa_recover_prime_factors(n, e, d)
key = rsa.RSAPrivateNumbers(
    p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q),
    rsa.RSAPublicNumbers(e, n),
).private_key()
print(key.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode(), end="")
