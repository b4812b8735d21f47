//! The zero-configuration stand-ins: an S3 server and an identity provider, both in-process.
//! They speak the real protocols (SigV4, RS256 JWTs with a JWKS), so the code that talks to them
//! is exactly the code that talks to AWS.

pub mod issuer;
pub mod people;
pub mod s3;

/// Fresh random bytes as lowercase hex, for credentials and key ids.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).expect("the system random generator failed");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
