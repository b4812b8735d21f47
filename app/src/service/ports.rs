//! The small traits through which the use cases reach infrastructure. The `server` crate provides
//! one implementation per backend (embedded or AWS); nothing in `app` knows which one runs.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::domain::{ContentLength, ImageContentType, PhotoKey, UserId};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type PortResult<T> = Result<T, PortError>;

/// Which outside part failed; it names the part in logs and in the 503 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Database,
    Storage,
    Directory,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Database => "database",
            Part::Storage => "storage",
            Part::Directory => "directory",
        })
    }
}

/// A failure of an outside part. The cause is for the log only.
#[derive(Debug, thiserror::Error)]
#[error("{part} failed: {source}")]
pub struct PortError {
    pub part: Part,
    #[source]
    pub source: BoxError,
}

impl PortError {
    pub fn new(part: Part, source: impl Into<BoxError>) -> Self {
        Self {
            part,
            source: source.into(),
        }
    }
}

/// A user row as the database keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub phone: Option<String>,
    pub role: String,
    pub status: String,
    /// `YYYY-MM-DD`.
    pub joined_at: String,
    pub photo_key: Option<PhotoKey>,
}

/// What a sign-in tells us about a user, used to create their row on first sign-in.
#[derive(Debug, Clone, PartialEq)]
pub struct NewUser {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub phone: Option<String>,
}

/// One upload URL the server has signed: the ledger entry `uploaded` checks against.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedUpload {
    pub key: PhotoKey,
    pub user_id: UserId,
    pub content_type: ImageContentType,
    pub content_length: ContentLength,
    pub expires_at: OffsetDateTime,
    pub confirmed: bool,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> PortResult<()>;
    async fn get(&self, id: &UserId) -> PortResult<Option<UserRecord>>;
    async fn list(&self) -> PortResult<Vec<UserRecord>>;
    /// Creates the row on first sign-in; later sign-ins leave it as it is.
    async fn ensure(&self, user: &NewUser) -> PortResult<()>;
    async fn record_upload(&self, upload: &IssuedUpload) -> PortResult<()>;
    async fn find_upload(&self, key: &PhotoKey) -> PortResult<Option<IssuedUpload>>;
    /// In one transaction: sets the user's picture (None removes it), marks the upload of the new
    /// key confirmed, and returns the key it replaced.
    async fn replace_picture(
        &self,
        id: &UserId,
        new: Option<&PhotoKey>,
    ) -> PortResult<Option<PhotoKey>>;
}

/// A request the browser makes directly against the storage.
#[derive(Debug, Clone, PartialEq)]
pub struct PresignedRequest {
    pub url: String,
    /// Headers that are part of the signature and must be sent exactly.
    pub headers: BTreeMap<String, String>,
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObjectInfo {
    pub size: u64,
    pub content_type: Option<String>,
}

#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// A cheap round trip to the bucket, for readiness checks.
    async fn ping(&self) -> PortResult<()>;
    async fn presign_put(
        &self,
        key: &PhotoKey,
        content_type: ImageContentType,
        length: ContentLength,
        ttl: Duration,
    ) -> PortResult<PresignedRequest>;
    async fn presign_get(&self, key: &PhotoKey, ttl: Duration) -> PortResult<PresignedRequest>;
    /// `None` when there is no such object.
    async fn head(&self, key: &PhotoKey) -> PortResult<Option<ObjectInfo>>;
    /// The first `len` bytes (fewer if the object is shorter).
    async fn read_prefix(&self, key: &PhotoKey, len: u64) -> PortResult<Vec<u8>>;
    /// Succeeds when the object is already gone.
    async fn delete(&self, key: &PhotoKey) -> PortResult<()>;
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tokens {
    pub access_token: String,
    pub id_token: String,
    pub expires_in: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SignedIn {
    pub tokens: Tokens,
    pub user: NewUser,
}

/// The identity provider: Cognito, or the embedded issuer.
#[async_trait]
pub trait Directory: Send + Sync {
    /// `None` for a wrong email or password.
    async fn sign_in(&self, email: &str, password: &str) -> PortResult<Option<SignedIn>>;
    /// Sets the standard `picture` attribute to the key.
    async fn set_picture(&self, id: &UserId, key: &PhotoKey) -> PortResult<()>;
    async fn remove_picture(&self, id: &UserId) -> PortResult<()>;
}

/// Why a token was refused; logged at debug level, never shown.
#[derive(Debug, thiserror::Error)]
#[error("token rejected: {0}")]
pub struct TokenRejected(pub String);

#[async_trait]
pub trait TokenVerifier: Send + Sync {
    /// Checks signature, issuer, client, expiry and token use, and returns the subject.
    async fn verify_access_token(&self, token: &str) -> Result<UserId, TokenRejected>;
}
