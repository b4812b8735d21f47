//! The embedded identity provider: password sign-in for local accounts, and RS256 tokens shaped
//! like Cognito's (same claims, `kid` header, JWKS), verified by the same `JwksVerifier`.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;

use app::domain::{PhotoKey, UserId};
use app::service::ports::{
    BoxError, Directory, NewUser, Part, PortError, PortResult, RefreshOutcome, SignInOutcome,
    SignedIn, Tokens,
};
use app::service::ADMIN;
use async_trait::async_trait;
use aws_lc_rs::encoding::AsDer;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row};

use crate::db::Database;
use time::OffsetDateTime;

use super::random_hex;

/// One hour, as Cognito's default access and id token validity.
pub const TOKEN_TTL_SECS: u64 = 3600;
/// Thirty days, as Cognito's default refresh token validity.
const REFRESH_TTL_SECS: u64 = 30 * 24 * 3600;
/// The app client id the local issuer puts in its tokens.
pub const LOCAL_CLIENT_ID: &str = "portrait-local-client";

pub struct LocalIssuer {
    key: EncodingKey,
    decoding_key: DecodingKey,
    kid: String,
    jwks: JwkSet,
    issuer: String,
}

impl LocalIssuer {
    /// Loads the signing key from the data directory, creating it on first start.
    pub fn load_or_create(data_dir: &Path, issuer: String) -> Result<Self, BoxError> {
        let path = data_dir.join("issuer-key.pem");
        let pem = match std::fs::read(&path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pem = generate_rsa_pem()?;
                write_private(&path, &pem)?;
                pem
            }
            Err(e) => return Err(e.into()),
        };
        let key = EncodingKey::from_rsa_pem(&pem)?;
        // The key id names the key, so a rotated key gets a new one and verifiers refetch.
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &pem);
        let kid = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]);
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self {
            decoding_key: DecodingKey::from_jwk(&jwk)?,
            key,
            kid,
            jwks: JwkSet { keys: vec![jwk] },
            issuer,
        })
    }

    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    fn sign(&self, claims: &impl Serialize) -> Result<String, BoxError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.key)?)
    }

    /// An access and an id token for `account`, with Cognito's claim names.
    pub fn mint(&self, account: &Account) -> Result<Tokens, BoxError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let exp = now + TOKEN_TTL_SECS as i64;
        let access = AccessClaims {
            sub: account.user.id.as_str(),
            iss: &self.issuer,
            client_id: LOCAL_CLIENT_ID,
            token_use: "access",
            scope: "aws.cognito.signin.user.admin",
            auth_time: now,
            iat: now,
            exp,
            jti: random_hex(16),
            username: &account.user.email,
        };
        let id = IdClaims {
            sub: account.user.id.as_str(),
            iss: &self.issuer,
            aud: LOCAL_CLIENT_ID,
            token_use: "id",
            auth_time: now,
            iat: now,
            exp,
            email: &account.user.email,
            email_verified: true,
            name: &account.user.name,
            phone_number: account.user.phone.as_deref(),
            picture: account.picture.as_deref(),
            cognito_username: &account.user.email,
        };
        Ok(Tokens {
            access_token: self.sign(&access)?,
            id_token: self.sign(&id)?,
            refresh_token: None,
            expires_in: TOKEN_TTL_SECS,
        })
    }

    /// A refresh token for `user`. Cognito's are opaque; ours is a JWT with `token_use`
    /// "refresh", which the access-token verifier refuses, and which only this issuer reads back.
    /// Signing out revokes it by its `jti` (the `revoked_tokens` table).
    pub fn mint_refresh(&self, user: &UserId) -> Result<String, BoxError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        self.sign(&RefreshClaims {
            sub: user.as_str().to_owned(),
            iss: self.issuer.clone(),
            client_id: LOCAL_CLIENT_ID.to_owned(),
            token_use: "refresh".to_owned(),
            iat: now,
            exp: now + REFRESH_TTL_SECS as i64,
            jti: random_hex(16),
        })
    }

    /// A refresh token of ours: the user it was issued to, its `jti` and expiry; `None` when
    /// it is not one (forged, expired, another kind of token).
    fn read_refresh(&self, token: &str) -> Option<(UserId, RefreshClaims)> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<RefreshClaims>(token, &self.decoding_key, &validation)
            .ok()?
            .claims;
        if claims.token_use != "refresh" || claims.client_id != LOCAL_CLIENT_ID {
            return None;
        }
        Some((UserId::parse(claims.sub.clone()).ok()?, claims))
    }
}

#[derive(Serialize, Deserialize)]
struct RefreshClaims {
    sub: String,
    iss: String,
    client_id: String,
    token_use: String,
    iat: i64,
    exp: i64,
    jti: String,
}

#[derive(Serialize)]
struct AccessClaims<'a> {
    sub: &'a str,
    iss: &'a str,
    client_id: &'a str,
    token_use: &'a str,
    scope: &'a str,
    auth_time: i64,
    iat: i64,
    exp: i64,
    jti: String,
    username: &'a str,
}

#[derive(Serialize)]
struct IdClaims<'a> {
    sub: &'a str,
    iss: &'a str,
    aud: &'a str,
    token_use: &'a str,
    auth_time: i64,
    iat: i64,
    exp: i64,
    email: &'a str,
    email_verified: bool,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_number: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    picture: Option<&'a str>,
    #[serde(rename = "cognito:username")]
    cognito_username: &'a str,
}

fn generate_rsa_pem() -> Result<Vec<u8>, BoxError> {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|_| "RSA key generation failed")?;
    let der = pair.as_der().map_err(|_| "RSA key encoding failed")?;
    let body = STANDARD.encode(der.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line)?);
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok(pem.into_bytes())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// A local account: the user's row plus the directory's own `picture` attribute.
pub struct Account {
    pub user: NewUser,
    pub picture: Option<String>,
}

/// The `Directory` of embedded mode: accounts in the `local_accounts` table.
pub struct EmbeddedDirectory {
    db: Database,
    issuer: Arc<LocalIssuer>,
    /// One permit per CPU: password checks beyond that wait their turn (asynchronously)
    /// instead of each taking a thread of the blocking pool, which under a flood of sign-ins
    /// would starve the database's threads and the async workers of CPU.
    password_checks: tokio::sync::Semaphore,
}

impl EmbeddedDirectory {
    pub fn new(db: Database, issuer: Arc<LocalIssuer>) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            db,
            issuer,
            password_checks: tokio::sync::Semaphore::new(cpus),
        }
    }
}

fn directory_error(e: impl Into<BoxError>) -> PortError {
    PortError::new(Part::Directory, e)
}

#[async_trait]
impl Directory for EmbeddedDirectory {
    async fn sign_in(&self, email: &str, password: &str) -> PortResult<SignInOutcome> {
        let found = self.account("lower(a.email) = lower($1)", email).await?;
        // An unknown email is checked against a dummy hash, so that both cases cost the same
        // and response times do not reveal which emails have accounts. The check runs on the
        // blocking pool: tens of milliseconds of CPU each, which on an async worker would stall
        // every other request on it (health checks included).
        let password = password.to_owned();
        let hash = found.as_ref().map(|(_, hash)| hash.clone());
        let _turn = self
            .password_checks
            .acquire()
            .await
            .map_err(directory_error)?;
        let matches = tokio::task::spawn_blocking(move || match hash {
            Some(hash) => verify_password(&password, &hash),
            None => {
                // Only the time it takes matters.
                std::hint::black_box(verify_password(&password, &DUMMY_HASH));
                false
            }
        })
        .await
        .map_err(directory_error)?;
        let Some((account, _)) = found.filter(|_| matches) else {
            return Ok(SignInOutcome::Refused);
        };
        let mut tokens = self.issuer.mint(&account).map_err(directory_error)?;
        tokens.refresh_token = Some(
            self.issuer
                .mint_refresh(&account.user.id)
                .map_err(directory_error)?,
        );
        Ok(SignInOutcome::SignedIn(SignedIn {
            tokens,
            user: account.user,
        }))
    }

    async fn refresh(&self, refresh_token: &str) -> PortResult<RefreshOutcome> {
        let Some((id, claims)) = self.issuer.read_refresh(refresh_token) else {
            return Ok(RefreshOutcome::Refused);
        };
        let revoked: Option<String> =
            sqlx::query_scalar("SELECT jti FROM revoked_tokens WHERE jti = $1")
                .bind(&claims.jti)
                .fetch_optional(&self.db.read)
                .await
                .map_err(directory_error)?;
        if revoked.is_some() {
            return Ok(RefreshOutcome::Refused);
        }
        // The account may have gone since the token was issued.
        match self.account("a.user_id = $1", id.as_str()).await? {
            Some((account, _)) => self
                .issuer
                .mint(&account)
                .map(RefreshOutcome::Refreshed)
                .map_err(directory_error),
            None => Ok(RefreshOutcome::Refused),
        }
    }

    async fn revoke(&self, refresh_token: &str) -> PortResult<()> {
        let Some((_, claims)) = self.issuer.read_refresh(refresh_token) else {
            return Ok(());
        };
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut tx = self.db.write.begin().await.map_err(directory_error)?;
        // Records of tokens that have expired anyway are no longer needed.
        sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(directory_error)?;
        sqlx::query(
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(&claims.jti)
        .bind(claims.exp)
        .execute(&mut *tx)
        .await
        .map_err(directory_error)?;
        tx.commit().await.map_err(directory_error)
    }

    async fn set_picture(&self, id: &UserId, key: &PhotoKey) -> PortResult<()> {
        self.write_picture(id, Some(key.as_str())).await
    }

    async fn remove_picture(&self, id: &UserId) -> PortResult<()> {
        self.write_picture(id, None).await
    }

    async fn picture(&self, id: &UserId) -> PortResult<Option<String>> {
        sqlx::query_scalar("SELECT picture FROM local_accounts WHERE user_id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.db.read)
            .await
            .map(Option::flatten)
            .map_err(directory_error)
    }
}

impl EmbeddedDirectory {
    /// The account matching `condition` (on `$1` = `value`), with its password hash.
    async fn account(
        &self,
        condition: &'static str,
        value: &str,
    ) -> PortResult<Option<(Account, String)>> {
        let query = format!(
            "SELECT a.user_id, a.password_hash, a.picture, u.email, u.name, u.phone, u.role \
             FROM local_accounts a JOIN users u ON u.id = a.user_id WHERE {condition}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(query))
            .bind(value)
            .fetch_optional(&self.db.read)
            .await
            .map_err(directory_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let get = |column: &str| -> PortResult<Option<String>> {
            row.try_get(column).map_err(directory_error)
        };
        let required = |column: &str| -> PortResult<String> {
            get(column)?.ok_or_else(|| directory_error(format!("{column} is null")))
        };
        let account = Account {
            user: NewUser {
                id: UserId::parse(required("user_id")?).map_err(directory_error)?,
                email: required("email")?,
                name: required("name")?,
                phone: get("phone")?,
                role: required("role")?,
            },
            picture: get("picture")?,
        };
        Ok(Some((account, required("password_hash")?)))
    }

    async fn write_picture(&self, id: &UserId, picture: Option<&str>) -> PortResult<()> {
        sqlx::query("UPDATE local_accounts SET picture = $1 WHERE user_id = $2")
            .bind(picture)
            .bind(id.as_str())
            .execute(&self.db.write)
            .await
            .map_err(directory_error)?;
        Ok(())
    }
}

/// PBKDF2-HMAC-SHA256. The iteration count is modest because these are local demo accounts on a
/// developer machine; real accounts live in Cognito.
const PBKDF2_ITERATIONS: u32 = 60_000;
/// Checked against when the email is unknown, so that both cases cost the same.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password("no such account"));

pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).expect("the system random generator failed");
    let mut out = [0u8; 32];
    pbkdf2(password, &salt, PBKDF2_ITERATIONS, &mut out);
    format!(
        "pbkdf2-sha256${PBKDF2_ITERATIONS}${}${}",
        URL_SAFE_NO_PAD.encode(salt),
        URL_SAFE_NO_PAD.encode(out)
    )
}

fn verify_password(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("pbkdf2-sha256"), Some(iterations), Some(salt), Some(expected), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Ok(iterations), Ok(salt), Ok(expected)) = (
        iterations.parse::<u32>(),
        URL_SAFE_NO_PAD.decode(salt),
        URL_SAFE_NO_PAD.decode(expected),
    ) else {
        return false;
    };
    let Some(iterations) = NonZeroU32::new(iterations) else {
        return false;
    };
    aws_lc_rs::pbkdf2::verify(
        aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        password.as_bytes(),
        &expected,
    )
    .is_ok()
}

fn pbkdf2(password: &str, salt: &[u8], iterations: u32, out: &mut [u8]) {
    aws_lc_rs::pbkdf2::derive(
        aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(iterations).expect("iterations are non-zero"),
        salt,
        password.as_bytes(),
        out,
    );
}

/// The password of the seeded demo accounts (embedded mode only; shown on the sign-in page).
pub const DEMO_PASSWORD: &str = "portrait-demo";

pub struct DemoUser {
    pub email: &'static str,
    pub name: &'static str,
    pub role: &'static str,
    pub phone: &'static str,
    pub joined_at: &'static str,
}

pub const DEMO_USERS: [DemoUser; 2] = [
    DemoUser {
        email: "ada@example.com",
        name: "Ada Dev",
        role: ADMIN,
        phone: "+44 20 7946 0001",
        joined_at: "2024-03-12",
    },
    DemoUser {
        email: "grace@example.com",
        name: "Grace Hopper",
        role: "Member",
        phone: "+1 212 555 0142",
        joined_at: "2025-01-20",
    },
];

/// Creates the demo accounts that do not exist yet. Safe to run on every start.
pub async fn seed_demo_users(pool: &AnyPool) -> Result<(), BoxError> {
    for demo in &DEMO_USERS {
        let exists: Option<String> =
            sqlx::query_scalar("SELECT user_id FROM local_accounts WHERE email = $1")
                .bind(demo.email)
                .fetch_optional(pool)
                .await?;
        if exists.is_some() {
            continue;
        }
        let id = uuid::Uuid::new_v4().to_string();
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, email, name, phone, role, status, joined_at, name_key, \
             email_key) VALUES ($1, $2, $3, $4, $5, 'Active', $6, $7, $8)",
        )
        .bind(&id)
        .bind(demo.email)
        .bind(demo.name)
        .bind(demo.phone)
        .bind(demo.role)
        .bind(demo.joined_at)
        .bind(app::domain::search_key(demo.name))
        .bind(app::domain::search_key(demo.email))
        .execute(&mut *tx)
        .await?;
        let hash = tokio::task::spawn_blocking(|| hash_password(DEMO_PASSWORD)).await?;
        sqlx::query(
            "INSERT INTO local_accounts (user_id, email, password_hash) VALUES ($1, $2, $3)",
        )
        .bind(&id)
        .bind(demo.email)
        .bind(hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(email = demo.email, "seeded demo account");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let hash = hash_password("portrait-demo");
        assert!(verify_password("portrait-demo", &hash));
        assert!(!verify_password("portrait-demo ", &hash));
        assert!(!verify_password("portrait-demo", &DUMMY_HASH));
        assert!(!verify_password("x", "plain-text"));
    }
}
