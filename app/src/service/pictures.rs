//! The use cases: profile, user list, and the three-step picture upload.

use std::io::Cursor;
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::ports::{IssuedUpload, ObjectInfo, UserRecord};
use super::{AppState, AuthUser};
use crate::api::{PictureResponse, Profile, UploadUrlRequest, UploadUrlResponse, UserSummary};
use crate::domain::{check_file_name, initials, ContentLength, ImageContentType, PhotoKey, UserId};
use crate::error::ApiError;

/// How much of a stored object we read to check what it really is: enough for the magic bytes
/// and for the image header (a JPEG's size can sit behind a large EXIF block).
pub const CONTENT_SNIFF_BYTES: u64 = 64 * 1024;

/// Largest side we accept for a stored picture. The editor makes 512×512; this leaves room for
/// API clients while refusing decompression bombs that are small on disk.
const MAX_PICTURE_SIDE: u32 = 4096;

/// A URL that expired a moment ago may still have been used just in time (clock skew, a slow
/// network): accept confirms for a short while after expiry.
const CONFIRM_GRACE: Duration = Duration::from_secs(60);

/// A refused confirm: the metrics label of the outcome, and the error for the client.
struct Refused(&'static str, ApiError);

trait Tag<T> {
    /// Labels an error with the confirm outcome it stands for.
    fn tag(self, outcome: &'static str) -> Result<T, Refused>;
}

impl<T, E: Into<ApiError>> Tag<T> for Result<T, E> {
    fn tag(self, outcome: &'static str) -> Result<T, Refused> {
        self.map_err(|e| {
            let error: ApiError = e.into();
            // A part that is down is "unavailable" whatever step it failed at.
            let outcome = if error.status == 503 {
                "unavailable"
            } else {
                outcome
            };
            Refused(outcome, error)
        })
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// A CSPRNG draw for key suffixes. UUIDv4 uses the OS generator, which is what we want.
fn random_u64() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

impl AppState {
    pub async fn profile(&self, user: &AuthUser) -> Result<Profile, ApiError> {
        let record = self.user_record(&user.id).await?;
        self.to_profile(record).await
    }

    pub async fn list_users(&self, user: &AuthUser) -> Result<Vec<UserSummary>, ApiError> {
        let records = self.users.list().await?;
        // The caller's own row is among them, unless it is gone: then they are signed out, as
        // on every other endpoint.
        if !records.iter().any(|record| record.id == user.id) {
            return Err(ApiError::unauthenticated());
        }
        let mut users = Vec::new();
        for record in records {
            let (picture_url, _) = self.read_url(record.photo_key.as_ref()).await?;
            users.push(UserSummary {
                id: record.id.to_string(),
                initials: initials(&record.name),
                name: record.name,
                picture_url,
            });
        }
        Ok(users)
    }

    /// Step 1: a presigned PUT for a fresh key, recorded in the ledger so that only this user can
    /// confirm it, and only with the exact type and length that were signed.
    pub async fn create_upload_url(
        &self,
        user: &AuthUser,
        req: UploadUrlRequest,
    ) -> Result<UploadUrlResponse, ApiError> {
        check_file_name(&req.file_name)?;
        let content_type = ImageContentType::parse(&req.content_type)?;
        let length = ContentLength::parse(req.content_length)?;
        self.limits.check_rate(&user.id)?;
        let now = OffsetDateTime::now_utc();
        if let Some(max) = self.limits.max_pending {
            if self.users.pending_uploads(&user.id, now, max).await? >= max {
                return Err(super::limits::too_many(
                    "Too many uploads in progress. Finish them or wait a few minutes.",
                    self.settings.upload_url_ttl,
                ));
            }
        }

        let key = PhotoKey::generate(
            &user.id,
            content_type,
            (now.unix_timestamp_nanos() / 1_000_000) as u64,
            random_u64(),
        );
        let ttl = self.settings.upload_url_ttl;
        let presigned = self
            .storage
            .presign_put(&key, content_type, length, ttl)
            .await?;
        let recorded = self
            .users
            .record_upload(&IssuedUpload {
                key: key.clone(),
                user_id: user.id.clone(),
                content_type,
                content_length: length,
                expires_at: presigned.expires_at,
                confirmed: false,
            })
            .await?;
        if !recorded {
            // A valid token for a user without a row (deleted since): nothing to upload for.
            return Err(ApiError::unauthenticated());
        }
        self.metrics.upload_urls.inc();
        tracing::info!(user = %user.id, key = %key, "upload URL issued");
        Ok(UploadUrlResponse {
            photo_key: key.to_string(),
            upload_url: presigned.url,
            expires_at_utc: rfc3339(presigned.expires_at),
            headers: presigned.headers,
        })
    }

    /// Step 3: check what was really stored, record it, then let go of the previous picture.
    /// `put` is what the browser measured of its PUT, for the metrics.
    pub async fn confirm_upload(
        &self,
        user: &AuthUser,
        raw_key: &str,
        put: Option<(Duration, u64)>,
    ) -> Result<PictureResponse, ApiError> {
        let result = self.confirm(user, raw_key).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(Refused(outcome, _)) => outcome,
        };
        self.metrics.confirm(outcome);
        if let (Ok(_), Some((took, bytes))) = (&result, put) {
            self.metrics.put_seconds.observe(took.as_secs_f64());
            self.metrics.put_bytes.observe(bytes as f64);
        }
        result.map_err(|Refused(_, error)| error)
    }

    /// The order matters: the new key is committed before anything old is removed, so a failure
    /// at any point leaves the user with a working picture.
    async fn confirm(&self, user: &AuthUser, raw_key: &str) -> Result<PictureResponse, Refused> {
        let key = PhotoKey::parse(raw_key).tag("invalid_key")?;
        if key.owner() != &user.id {
            let error = ApiError::forbidden("This photo key belongs to another user.");
            return Err(Refused("foreign_key", error));
        }
        let Some(upload) = self.users.find_upload(&key).await.tag("unavailable")? else {
            // The ledger forgets a user's uploads with the user: signed out, not a wrong key.
            self.user_record(&user.id).await.tag("unknown_user")?;
            let error = ApiError::bad_request("Unknown photoKey: request an upload URL first.");
            return Err(Refused("unknown_key", error));
        };
        if upload.confirmed {
            // Confirming twice is harmless while the key is still the current picture.
            return self
                .already_confirmed(user, &key, "This upload was already used.")
                .await;
        }
        if OffsetDateTime::now_utc() > upload.expires_at + CONFIRM_GRACE {
            let error = ApiError::bad_request(
                "The upload URL has expired. Please upload the picture again.",
            );
            return Err(Refused("expired", error));
        }
        let object = self
            .storage
            .head(&key)
            .await
            .tag("unavailable")?
            .ok_or_else(|| {
                ApiError::bad_request("The image was not found in storage. Upload it first.")
            })
            .tag("missing_object")?;
        if let Err(reason) = self
            .verify_content(&upload, &object)
            .await
            .tag("unavailable")?
        {
            // Whatever is there is not what we signed for: do not keep it around.
            if let Err(e) = self.storage.delete(&key).await {
                tracing::warn!(key = %key, error = %e, "could not delete refused object");
            }
            tracing::info!(user = %user.id, key = %key, %reason, "upload refused");
            return Err(Refused("bad_content", ApiError::bad_request(reason)));
        }

        let change = self
            .users
            .replace_picture(&user.id, Some(&key))
            .await
            .tag("unavailable")?;
        let Some(change) = change else {
            // Another confirm of the same key won the race (fine), or the upload was swept.
            let gone = "This upload is no longer available. Please upload the picture again.";
            return self.already_confirmed(user, &key, gone).await;
        };
        // Committed: the new picture is served from now on. The attribute update and the
        // deletion of the replaced object follow, and are retried later if a part is down.
        self.run_tasks(&change.tasks).await;
        tracing::info!(user = %user.id, key = %key,
            replaced = ?change.replaced.as_ref().map(PhotoKey::as_str), "picture confirmed");
        self.current_picture(user).await.tag("unavailable")
    }

    /// The answer for a key that was confirmed before: success while it is still the user's
    /// picture, else `refusal`.
    async fn already_confirmed(
        &self,
        user: &AuthUser,
        key: &PhotoKey,
        refusal: &str,
    ) -> Result<PictureResponse, Refused> {
        let record = self.user_record(&user.id).await.tag("unavailable")?;
        if record.photo_key.as_ref() != Some(key) {
            return Err(Refused("already_used", ApiError::bad_request(refusal)));
        }
        self.picture_response("Profile picture updated successfully.", record)
            .await
            .tag("unavailable")
    }

    async fn current_picture(&self, user: &AuthUser) -> Result<PictureResponse, ApiError> {
        let record = self.user_record(&user.id).await?;
        self.picture_response("Profile picture updated successfully.", record)
            .await
    }

    pub async fn delete_picture(&self, user: &AuthUser) -> Result<PictureResponse, ApiError> {
        let change = self
            .users
            .replace_picture(&user.id, None)
            .await?
            // The user has no row (any more).
            .ok_or_else(ApiError::unauthenticated)?;
        self.run_tasks(&change.tasks).await;
        if change.replaced.is_some() {
            self.metrics.deletes.inc();
        }
        let record = self.user_record(&user.id).await?;
        let message = if change.replaced.is_some() {
            "Profile picture removed."
        } else {
            "There was no profile picture to remove."
        };
        self.picture_response(message, record).await
    }

    /// Checks the stored object against the ledger: the signed length and type, then the bytes
    /// themselves (magic number and a sane size read from the image header).
    async fn verify_content(
        &self,
        upload: &IssuedUpload,
        object: &ObjectInfo,
    ) -> Result<Result<(), String>, ApiError> {
        if object.size != upload.content_length.get() {
            return Ok(Err(format!(
                "The stored image has {} bytes, but {} were announced.",
                object.size,
                upload.content_length.get()
            )));
        }
        let stored_type = object.content_type.as_deref().map(ImageContentType::parse);
        if stored_type != Some(Ok(upload.content_type)) {
            return Ok(Err("The stored image has the wrong content type.".into()));
        }
        let head = self
            .storage
            .read_prefix(&upload.key, CONTENT_SNIFF_BYTES)
            .await?;
        Ok(check_image_bytes(upload.content_type, &head))
    }

    async fn user_record(&self, id: &UserId) -> Result<UserRecord, ApiError> {
        self.users
            .get(id)
            .await?
            // A valid token for a user without a row: treat as signed out rather than a 500.
            .ok_or_else(ApiError::unauthenticated)
    }

    async fn read_url(
        &self,
        key: Option<&PhotoKey>,
    ) -> Result<(Option<String>, Option<String>), ApiError> {
        let Some(key) = key else {
            return Ok((None, None));
        };
        let presigned = self
            .storage
            .presign_get(key, self.settings.read_url_ttl)
            .await?;
        Ok((Some(presigned.url), Some(rfc3339(presigned.expires_at))))
    }

    async fn to_profile(&self, record: UserRecord) -> Result<Profile, ApiError> {
        let (picture_url, picture_expires_at_utc) =
            self.read_url(record.photo_key.as_ref()).await?;
        Ok(Profile {
            id: record.id.to_string(),
            initials: initials(&record.name),
            name: record.name,
            email: record.email,
            phone: record.phone,
            role: record.role,
            status: record.status,
            joined_at: record.joined_at,
            picture_url,
            picture_expires_at_utc,
        })
    }

    async fn picture_response(
        &self,
        message: &str,
        record: UserRecord,
    ) -> Result<PictureResponse, ApiError> {
        Ok(PictureResponse {
            message: message.into(),
            profile: self.to_profile(record).await?,
        })
    }
}

/// Whether the first bytes of a stored object are really an image of `expected` type with sane
/// dimensions. `Err` carries the message for the user.
pub fn check_image_bytes(expected: ImageContentType, head: &[u8]) -> Result<(), String> {
    if !expected.matches_magic(head) {
        return Err(format!(
            "The stored file is not a {} image.",
            expected.extension().to_uppercase()
        ));
    }
    let (width, height) = image::ImageReader::new(Cursor::new(head))
        .with_guessed_format()
        .ok()
        .and_then(|reader| reader.into_dimensions().ok())
        .ok_or_else(|| "The stored image is damaged or truncated.".to_string())?;
    if width == 0 || height == 0 || width > MAX_PICTURE_SIDE || height > MAX_PICTURE_SIDE {
        return Err(format!(
            "The image is {width}×{height} pixels; at most {MAX_PICTURE_SIDE} on a side is allowed."
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(format: image::ImageFormat, w: u32, h: u32) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image::DynamicImage::new_rgb8(w, h)
            .write_to(&mut out, format)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn real_images_of_the_announced_type_pass() {
        let png = encode(image::ImageFormat::Png, 20, 10);
        assert_eq!(check_image_bytes(ImageContentType::Png, &png), Ok(()));
        let jpeg = encode(image::ImageFormat::Jpeg, 16, 16);
        assert_eq!(check_image_bytes(ImageContentType::Jpeg, &jpeg), Ok(()));
    }

    #[test]
    fn disguised_or_broken_content_is_refused() {
        let png = encode(image::ImageFormat::Png, 20, 10);
        assert!(check_image_bytes(ImageContentType::Jpeg, &png).is_err());
        assert!(check_image_bytes(ImageContentType::Png, b"<svg onload=alert(1)>").is_err());
        assert!(check_image_bytes(ImageContentType::Png, &png[..12]).is_err());
        assert!(check_image_bytes(ImageContentType::Jpeg, &[]).is_err());
    }

    #[test]
    fn oversized_dimensions_are_refused_from_the_header_alone() {
        let png = encode(image::ImageFormat::Png, 1, 1);
        // Patch the IHDR width/height to 30000×30000; nothing is decoded, so this stays cheap.
        let mut bomb = png.clone();
        bomb[16..20].copy_from_slice(&30000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&30000u32.to_be_bytes());
        let crc = crc32fast::hash(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        let err = check_image_bytes(ImageContentType::Png, &bomb).unwrap_err();
        assert!(err.contains("30000"), "{err}");
    }
}
