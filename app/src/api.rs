//! The JSON shapes of the HTTP API, shared by the server and the browser (camelCase on the wire).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// An account anyone may sign in with, which the sign-in page lists. Only the embedded issuer
/// has them; with Cognito the list is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoAccount {
    pub email: String,
    pub role: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    pub access_token: String,
    pub id_token: String,
    /// Trades for new tokens at `POST /api/auth/refresh`. Absent from a refresh's response:
    /// the one used stays valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Seconds until the access and id tokens expire.
    pub expires_in: u64,
    /// Always "Bearer".
    pub token_type: String,
}

/// API clients send the refresh token in the body; the browser app sends nothing and the
/// HttpOnly refresh cookie is used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    #[serde(default)]
    pub refresh_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub id: String,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub role: String,
    pub status: String,
    /// ISO 8601 date the account was created.
    pub joined_at: String,
    pub initials: String,
    /// A short-lived presigned read URL, or null when the user has no picture.
    pub picture_url: Option<String>,
    pub picture_expires_at_utc: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserSummary {
    pub id: String,
    pub name: String,
    pub initials: String,
    pub picture_url: Option<String>,
}

/// A page of the directory as the /users page reads it (`GET /api/users/directory`): the
/// rows of `GET /api/users`, with what that endpoint puts in its `Link` header and what the
/// page needs to know of the viewer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryPage {
    pub users: Vec<UserSummary>,
    /// The `cursor` of the next page; None on the last.
    pub next_cursor: Option<String>,
    /// The signed-in user's id, to mark their own row.
    pub you: String,
    /// The signed-in user may remove other people's pictures.
    pub admin: bool,
}

/// What an administrator's removal of someone's picture answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemovedPicture {
    pub message: String,
    /// The person's row as lists show it now.
    pub user: UserSummary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadUrlRequest {
    pub file_name: String,
    pub content_type: String,
    /// Exact byte length of the body the client will PUT; when given it is signed into the
    /// URL. The SRS's request leaves it out; the size is then checked at the confirm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_length: Option<u64>,
    /// Exact byte length of the small rendition (128×128, for lists) the client will PUT as
    /// well; when given, the answer's `small` grants it. Not in the SRS: without it the picture
    /// is shown in full everywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub small_content_length: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadUrlResponse {
    pub photo_key: String,
    pub upload_url: String,
    pub expires_at_utc: String,
    /// Exactly the headers the PUT must carry (browsers add Content-Length themselves): the
    /// content type, and the length when one was asked for.
    pub headers: BTreeMap<String, String>,
    /// Where to PUT the small rendition, when `smallContentLength` asked for one. It is
    /// confirmed with the picture (same `photoKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub small: Option<SmallUpload>,
}

/// The grant of a small rendition's PUT: like the picture's, for its own key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SmallUpload {
    pub upload_url: String,
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmUploadRequest {
    pub photo_key: String,
    /// How long the browser's PUT to storage took, for the metrics (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub put_millis: Option<u64>,
    /// How many bytes the browser PUT (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub put_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PictureResponse {
    pub message: String,
    pub profile: Profile,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageResponse {
    pub message: String,
}
