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
    /// "Admin" or "Member" (from the directory's groups).
    pub role: String,
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

/// Work that follows a committed picture change. It is queued in the same transaction as the
/// change, done right after it, and retried until it succeeds, so a part that is down delays it
/// but never loses it.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    /// Make the directory's `picture` attribute match the user's current picture.
    SyncPicture { user_id: UserId },
    /// Delete an object that nothing refers to any more.
    DeleteObject { user_id: UserId, key: PhotoKey },
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueuedTask {
    pub id: String,
    pub task: Task,
    pub attempts: u32,
}

/// What a committed picture change replaced, and the work it queued.
#[derive(Debug, Clone, PartialEq)]
pub struct PictureChange {
    pub replaced: Option<PhotoKey>,
    pub tasks: Vec<QueuedTask>,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> PortResult<()>;
    async fn get(&self, id: &UserId) -> PortResult<Option<UserRecord>>;
    async fn list(&self) -> PortResult<Vec<UserRecord>>;
    /// Creates the row on first sign-in; later sign-ins bring what the directory owns (email,
    /// name, phone, role) up to date, so a change made there shows at the next sign-in.
    async fn ensure(&self, user: &NewUser) -> PortResult<()>;
    /// Adds an issued URL to the ledger. False when the user has no row (the ledger's foreign
    /// key is the check, so issuing a URL needs no read).
    async fn record_upload(&self, upload: &IssuedUpload) -> PortResult<bool>;
    async fn find_upload(&self, key: &PhotoKey) -> PortResult<Option<IssuedUpload>>;
    /// Uploads of this user that are neither confirmed nor expired at `now`, counted up to
    /// `limit` at most (so the cost stays bounded however many there are).
    async fn pending_uploads(
        &self,
        id: &UserId,
        now: OffsetDateTime,
        limit: u64,
    ) -> PortResult<u64>;
    /// In one transaction: claims the upload of the new key (it must be unconfirmed and not
    /// swept, else `None` and nothing changes), swaps the user's picture atomically (None
    /// removes it), and queues the attribute sync and the deletion of the replaced object.
    /// `None` too when the user has no row.
    async fn replace_picture(
        &self,
        id: &UserId,
        new: Option<&PhotoKey>,
    ) -> PortResult<Option<PictureChange>>;

    /// Queued tasks due at `now`, attribute syncs first; a user's deletions wait until their
    /// attribute is in sync, so the directory never points at a deleted object.
    async fn due_tasks(&self, now: OffsetDateTime, limit: u32) -> PortResult<Vec<QueuedTask>>;
    /// Queues the deletion of an object outside a picture change (an abandoned upload).
    async fn queue_delete(&self, key: &PhotoKey) -> PortResult<()>;
    async fn finish_task(&self, id: &str) -> PortResult<()>;
    async fn postpone_task(&self, id: &str, until: OffsetDateTime, error: &str) -> PortResult<()>;
    async fn queue_depth(&self) -> PortResult<u64>;
    /// Unconfirmed uploads that expired before `before` and were not swept yet.
    async fn abandoned_uploads(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> PortResult<Vec<PhotoKey>>;
    /// Marks an abandoned upload swept; false when it was confirmed meanwhile (then its object
    /// must stay).
    async fn mark_swept(&self, key: &PhotoKey) -> PortResult<bool>;
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
    /// Every key under `prefix` (for audits and tests; pages through all results).
    async fn list(&self, prefix: &str) -> PortResult<Vec<String>>;
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tokens {
    pub access_token: String,
    pub id_token: String,
    /// Absent from a refresh: the refresh token used stays valid.
    pub refresh_token: Option<String>,
    /// Seconds until the access and id tokens expire.
    pub expires_in: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SignedIn {
    pub tokens: Tokens,
    pub user: NewUser,
}

/// How a password sign-in ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SignInOutcome {
    SignedIn(SignedIn),
    /// Wrong email or password (which one is not said).
    Refused,
    /// The password was right, but the provider wants a step this app does not offer first
    /// (a new password after an administrator's temporary one, MFA).
    NeedsAnotherStep,
}

/// The identity provider: Cognito, or the embedded issuer.
#[async_trait]
pub trait Directory: Send + Sync {
    async fn sign_in(&self, email: &str, password: &str) -> PortResult<SignInOutcome>;
    /// New access and id tokens; `None` for a refresh token that is unknown, expired or revoked.
    async fn refresh(&self, refresh_token: &str) -> PortResult<Option<Tokens>>;
    /// The `picture` attribute as the directory holds it (for audits, and tests that compare
    /// it with the database).
    async fn picture(&self, id: &UserId) -> PortResult<Option<String>>;
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
