//! The small traits through which the use cases reach infrastructure. The `server` crate provides
//! one implementation per backend (embedded or AWS); nothing in `app` knows which one runs.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::domain::{
    ContentLength, DirectoryCursor, ImageContentType, PhotoKey, SearchPrefix, UserId,
};

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
    /// The picture's small rendition was stored with it ([`PhotoKey::small`]).
    pub photo_small: bool,
}

/// One row of the directory: what a list shows of a person, and where the row sits in the
/// directory's order (the cursor of the page after it).
#[derive(Debug, Clone, PartialEq)]
pub struct DirectoryEntry {
    pub id: UserId,
    pub name: String,
    pub photo_key: Option<PhotoKey>,
    /// As [`UserRecord::photo_small`].
    pub photo_small: bool,
    pub position: DirectoryCursor,
}

/// Which rows of the directory to read: in the order (name key, id), after `after`, those
/// whose name or email starts with `search`, at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DirectoryQuery<'a> {
    pub search: Option<&'a SearchPrefix>,
    pub after: Option<&'a DirectoryCursor>,
    pub limit: u32,
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
    /// The exact length signed into the URL; `None` when the client announced none (the SRS's
    /// request), and the stored size is then only bounded by the confirm.
    pub content_length: Option<ContentLength>,
    /// The exact length signed for its small rendition's PUT (to `key.small()`), when one was
    /// granted.
    pub small_length: Option<ContentLength>,
    pub expires_at: OffsetDateTime,
    /// The stored picture it became, once confirmed.
    pub stored_as: Option<PhotoKey>,
}

/// A checked upload becoming the user's picture: the upload, and the copy that is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPicture {
    pub upload: PhotoKey,
    pub picture: PhotoKey,
    /// The copy's small rendition was checked and stored too.
    pub small: bool,
}

/// How adding an upload to the ledger went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Recorded,
    /// The user has no row (deleted since the token was issued).
    NoUser,
    /// The user already has as many uploads in progress as the cap allows.
    TooManyPending,
    /// The user has used up their allowance of upload URLs, where the ledger keeps it
    /// (`UploadLimits::kept_by_ledger`); one is due after this long.
    TooFast(Duration),
}

/// A ledger entry whose URL has expired and whose user's prefix was not audited since.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpiredUpload {
    pub key: PhotoKey,
    /// Neither confirmed nor swept: its object, if any, was abandoned.
    pub abandoned: bool,
}

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
    /// A page of the directory, read from an index: its cost depends on the page, not on how
    /// many people there are.
    async fn directory(&self, query: DirectoryQuery<'_>) -> PortResult<Vec<DirectoryEntry>>;
    /// Creates the row on first sign-in; later sign-ins bring what the directory owns (email,
    /// name, phone, role) up to date, so a change made there shows at the next sign-in.
    async fn ensure(&self, user: &NewUser) -> PortResult<()>;
    /// Adds an issued URL to the ledger, unless the user already has `max_pending` uploads that
    /// are neither confirmed nor expired at `now`. The count and the insert are one atomic
    /// step, also across servers sharing the database, so parallel requests cannot overshoot
    /// the cap. A store that keeps the users' allowance of URLs (one shared by several
    /// servers) takes from it in the same step. Issuing a URL needs no separate read of the
    /// user.
    async fn record_upload(
        &self,
        upload: &IssuedUpload,
        now: OffsetDateTime,
        max_pending: Option<u64>,
    ) -> PortResult<Recorded>;
    async fn find_upload(&self, key: &PhotoKey) -> PortResult<Option<IssuedUpload>>;
    /// In one transaction: claims the upload of `new` (it must be unconfirmed and not swept,
    /// else `None` and nothing changes) and records the copy it became, makes that copy the
    /// user's picture in one atomic swap (None removes it), and queues the attribute sync and
    /// the deletion of the replaced object. `None` too when the user has no row.
    async fn replace_picture(
        &self,
        id: &UserId,
        new: Option<&NewPicture>,
    ) -> PortResult<Option<PictureChange>>;

    /// Queued tasks due at `now` and not parked, attribute syncs first; a user's deletions wait
    /// until their attribute is in sync (or its sync was parked), so the directory never points
    /// at a deleted object.
    async fn due_tasks(&self, now: OffsetDateTime, limit: u32) -> PortResult<Vec<QueuedTask>>;
    async fn finish_task(&self, id: &str) -> PortResult<()>;
    async fn postpone_task(&self, id: &str, until: OffsetDateTime, error: &str) -> PortResult<()>;
    /// Stops retrying a task that kept failing; it stays in the queue (for an operator) but is
    /// never due again and blocks nothing.
    async fn park_task(&self, id: &str, error: &str) -> PortResult<()>;
    /// Tasks waiting to run (parked ones not counted).
    async fn queue_depth(&self) -> PortResult<u64>;
    /// Ledger entries whose URL expired before `before` and whose prefix was not audited yet,
    /// oldest first.
    async fn expired_uploads(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> PortResult<Vec<ExpiredUpload>>;
    /// In one transaction: marks an abandoned upload swept and queues the deletion of its
    /// object, so a crash between the two cannot leak it. `None` when it was confirmed or swept
    /// meanwhile (then there is nothing to do).
    async fn sweep_upload(&self, key: &PhotoKey) -> PortResult<Option<QueuedTask>>;
    /// Every key under the user's prefix that the database still refers to: the picture,
    /// uploads in progress, and objects queued for deletion.
    async fn known_keys(&self, id: &UserId) -> PortResult<Vec<String>>;
    /// Records that the user's prefix was audited after every URL of theirs that expired
    /// before `before` and is confirmed or swept.
    async fn mark_audited(
        &self,
        id: &UserId,
        before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> PortResult<()>;
    /// Deletes at most `limit` audited ledger entries audited before `before`; returns how many.
    async fn prune_ledger(&self, before: OffsetDateTime, limit: u32) -> PortResult<u64>;
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

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedObject {
    pub key: String,
    pub last_modified: Option<OffsetDateTime>,
}

#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// A cheap round trip to the bucket, for readiness checks.
    async fn ping(&self) -> PortResult<()>;
    /// A PUT of `content_type`, of exactly `length` bytes when given.
    async fn presign_put(
        &self,
        key: &PhotoKey,
        content_type: ImageContentType,
        length: Option<ContentLength>,
        ttl: Duration,
    ) -> PortResult<PresignedRequest>;
    async fn presign_get(&self, key: &PhotoKey, ttl: Duration) -> PortResult<PresignedRequest>;
    /// `None` when there is no such object.
    async fn head(&self, key: &PhotoKey) -> PortResult<Option<ObjectInfo>>;
    /// The object's size and type with its first `len` bytes (fewer if it is shorter), read
    /// in one request; `None` when there is no such object.
    async fn read_prefix(
        &self,
        key: &PhotoKey,
        len: u64,
    ) -> PortResult<Option<(ObjectInfo, Vec<u8>)>>;
    /// Copies `from` to `to`, content type included; false when `from` does not exist.
    async fn copy(&self, from: &PhotoKey, to: &PhotoKey) -> PortResult<bool>;
    /// Succeeds when the object is already gone.
    async fn delete(&self, key: &PhotoKey) -> PortResult<()>;
    /// Every object under `prefix` (pages through all results).
    async fn list(&self, prefix: &str) -> PortResult<Vec<ListedObject>>;
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
    /// The provider is limiting requests (Cognito's `TooManyRequestsException`).
    TooManyRequests,
    /// The provider has locked the account for a while after failed attempts (Cognito's
    /// "Password attempts exceeded").
    LockedOut,
}

/// How a refresh ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshOutcome {
    Refreshed(Tokens),
    /// Unknown, expired or revoked refresh token.
    Refused,
    /// The provider is limiting requests.
    TooManyRequests,
}

/// The identity provider: Cognito, or the embedded issuer.
#[async_trait]
pub trait Directory: Send + Sync {
    async fn sign_in(&self, email: &str, password: &str) -> PortResult<SignInOutcome>;
    /// New access and id tokens for a refresh token.
    async fn refresh(&self, refresh_token: &str) -> PortResult<RefreshOutcome>;
    /// Revokes a refresh token, so that it buys nothing more. A token that is not one of ours,
    /// or already revoked or expired, is not an error: there is nothing left to revoke.
    async fn revoke(&self, refresh_token: &str) -> PortResult<()>;
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

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token is not valid: its holder must sign in again.
    #[error(transparent)]
    Rejected(#[from] TokenRejected),
    /// It could not be checked: the identity provider's keys are out of reach. Not the
    /// client's fault, so not a reason to send it back to the sign-in page.
    #[error(transparent)]
    Unavailable(#[from] PortError),
}

#[async_trait]
pub trait TokenVerifier: Send + Sync {
    /// Checks signature, issuer, client, expiry and token use, and returns the subject.
    async fn verify_access_token(&self, token: &str) -> Result<UserId, TokenError>;
    /// Whether tokens can be verified now (the identity provider's keys are at hand and
    /// current), for readiness checks.
    async fn ready(&self) -> PortResult<()>;
}
