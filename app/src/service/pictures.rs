//! The use cases: profile, user list, and the three-step picture upload.

use std::io::Cursor;
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::auth::ADMIN;
use super::ports::{DirectoryQuery, IssuedUpload, NewPicture, ObjectInfo, Recorded, UserRecord};
use super::{AppState, AuthUser};
use crate::api::{
    PictureResponse, Profile, RemovedPicture, SmallUpload, UploadUrlRequest, UploadUrlResponse,
    UserSummary,
};
use crate::domain::{
    check_file_name, initials, ContentLength, DirectoryCursor, DirectoryRequest, ImageContentType,
    KeyKind, PhotoKey, Rendition, UserId,
};
use crate::error::ApiError;

/// How much of a stored object we read to check what it really is: enough for the magic bytes
/// and for the image header (a JPEG's size can sit behind a large EXIF block).
pub const CONTENT_SNIFF_BYTES: u64 = 64 * 1024;

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

/// A page of the directory, as the use case answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserPage {
    pub users: Vec<UserSummary>,
    /// Where the next page starts, when there is one.
    pub next: Option<DirectoryCursor>,
    /// The caller is an administrator (the page offers removals).
    pub viewer_is_admin: bool,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// A fresh key of the user's; its random part is a CSPRNG draw (UUIDv4 uses the OS generator).
fn fresh_key(
    owner: &UserId,
    kind: KeyKind,
    content_type: ImageContentType,
    now: OffsetDateTime,
) -> PhotoKey {
    let millis = (now.unix_timestamp_nanos() / 1_000_000) as u64;
    PhotoKey::generate(
        owner,
        kind,
        content_type,
        millis,
        uuid::Uuid::new_v4().as_u64_pair().0,
    )
}

impl AppState {
    pub async fn profile(&self, user: &AuthUser) -> Result<Profile, ApiError> {
        let record = self.user_record(&user.id).await?;
        self.to_profile(record).await
    }

    /// A page of the directory. The caller must still have a row (else they are signed out,
    /// as on every other endpoint); their role says whether the page may offer removals.
    pub async fn list_users(
        &self,
        user: &AuthUser,
        request: &DirectoryRequest,
    ) -> Result<UserPage, ApiError> {
        let viewer = self.user_record(&user.id).await?;
        let limit = request.limit.get() as usize;
        // One row beyond the page says whether another page follows.
        let query = DirectoryQuery {
            search: request.search.as_ref(),
            after: request.after.as_ref(),
            limit: request.limit.get() + 1,
        };
        let mut rows = self.users.directory(query).await?;
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|row| row.position.clone())
        } else {
            None
        };
        let mut users = Vec::with_capacity(rows.len());
        for row in rows {
            let picture = list_picture(row.photo_key.as_ref(), row.photo_small);
            users.push(self.summary(&row.id, row.name, picture.as_ref()).await?);
        }
        Ok(UserPage {
            users,
            next,
            viewer_is_admin: viewer.role == ADMIN,
        })
    }

    /// An administrator removes someone's picture, with the same effects, in the same order,
    /// as a person removing their own. Members are refused whoever the target is.
    pub async fn remove_users_picture(
        &self,
        admin: &AuthUser,
        raw_id: &str,
    ) -> Result<RemovedPicture, ApiError> {
        if self.user_record(&admin.id).await?.role != ADMIN {
            return Err(ApiError::forbidden(
                "Only administrators can remove another person's picture.",
            ));
        }
        let id = UserId::parse(raw_id)?;
        let unknown = || ApiError::not_found("There is no one with this id.");
        let removed = self.remove_picture_of(&id).await?.ok_or_else(unknown)?;
        tracing::info!(admin = %admin.id, user = %id, removed, "picture removed by an administrator");
        let record = self.users.get(&id).await?.ok_or_else(unknown)?;
        let message = if removed {
            "Picture removed."
        } else {
            "There was no picture to remove."
        };
        let picture = list_picture(record.photo_key.as_ref(), record.photo_small);
        Ok(RemovedPicture {
            message: message.into(),
            user: self
                .summary(&record.id, record.name, picture.as_ref())
                .await?,
        })
    }

    /// Step 1: a presigned PUT for a fresh key (and one for its small rendition, when asked for),
    /// recorded in the ledger so that only this user can confirm it, and only with the exact
    /// type and lengths that were signed.
    pub async fn create_upload_url(
        &self,
        user: &AuthUser,
        req: UploadUrlRequest,
    ) -> Result<UploadUrlResponse, ApiError> {
        check_file_name(&req.file_name)?;
        let content_type = ImageContentType::parse(&req.content_type)?;
        let length = req.content_length.map(ContentLength::parse).transpose()?;
        let small_length = req
            .small_content_length
            .map(|n| ContentLength::parse_for(Rendition::Small, n))
            .transpose()?;
        self.limits.check_rate(&user.id)?;
        let now = OffsetDateTime::now_utc();
        let key = fresh_key(&user.id, KeyKind::Upload, content_type, now);
        let ttl = self.settings.upload_url_ttl;
        let presigned = self
            .storage
            .presign_put(&key, content_type, length, ttl)
            .await?;
        let small = match small_length {
            Some(small_length) => Some(
                self.storage
                    .presign_put(&key.small(), content_type, Some(small_length), ttl)
                    .await?,
            ),
            None => None,
        };
        let upload = IssuedUpload {
            key: key.clone(),
            user_id: user.id.clone(),
            content_type,
            content_length: length,
            small_length,
            expires_at: presigned.expires_at,
            stored_as: None,
        };
        // The cap on uploads in progress is checked by the same atomic step that records this
        // one: no extra round trip, and parallel requests cannot all slip under it.
        match self
            .users
            .record_upload(&upload, now, self.limits.max_pending)
            .await?
        {
            Recorded::Recorded => {}
            // A valid token for a user without a row (deleted since): nothing to upload for.
            Recorded::NoUser => return Err(ApiError::unauthenticated()),
            Recorded::TooManyPending => {
                return Err(super::limits::too_many(
                    "Too many uploads in progress. Finish them or wait a few minutes.",
                    ttl,
                ))
            }
            Recorded::TooFast(wait) => return Err(super::limits::too_fast(wait)),
        }
        self.metrics.upload_urls.inc();
        tracing::info!(user = %user.id, key = %key, "upload URL issued");
        Ok(UploadUrlResponse {
            photo_key: key.to_string(),
            upload_url: presigned.url,
            expires_at_utc: rfc3339(presigned.expires_at),
            headers: presigned.headers,
            small: small.map(|small| SmallUpload {
                upload_url: small.url,
                headers: small.headers,
            }),
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
        if upload.stored_as.is_some() {
            // Confirming twice is harmless while the upload is still the current picture.
            let used = "This upload was already used.";
            return self.already_confirmed(user, upload.stored_as, used).await;
        }
        if OffsetDateTime::now_utc() > upload.expires_at + CONFIRM_GRACE {
            let error = ApiError::bad_request(
                "The upload URL has expired. Please upload the picture again.",
            );
            return Err(Refused("expired", error));
        }
        // The sizes first, from a HEAD: an oversized object is never copied.
        let object = self
            .storage
            .head(&key)
            .await
            .tag("unavailable")?
            .ok_or_else(missing_object)
            .tag("missing_object")?;
        if let Err(reason) = check_size(upload.content_length, object.size) {
            return Err(self.refuse(user, &[&key], reason).await);
        }
        // A small rendition that was granted is checked like the picture, and a bad one refuses
        // both. One that was granted but never PUT (a client that gave up on it) is no reason to
        // refuse the picture: it is kept without one, and lists show it in full.
        let small = match upload.small_length {
            Some(length) => match self.storage.head(&key.small()).await.tag("unavailable")? {
                Some(object) => {
                    if let Err(reason) = check_size(Some(length), object.size) {
                        return Err(self.refuse(user, &[&key], reason).await);
                    }
                    true
                }
                None => false,
            },
            None => false,
        };
        // The upload's URLs stay valid until they expire, so their owner could still overwrite
        // them. What is checked and kept is a copy under a fresh key that no URL can write and
        // no other confirm shares: checking the copy (not the upload) leaves no window between
        // the check and what is stored.
        let picture = fresh_key(
            &user.id,
            KeyKind::Picture,
            upload.content_type,
            OffsetDateTime::now_utc(),
        );
        let renditions: &[Rendition] = if small {
            &[Rendition::Full, Rendition::Small]
        } else {
            &[Rendition::Full]
        };
        // (upload, copy) per rendition, copied and read side by side.
        let pairs: Vec<(PhotoKey, PhotoKey)> = renditions
            .iter()
            .map(|&rendition| (key.in_rendition(rendition), picture.in_rendition(rendition)))
            .collect();
        let copies = pairs.iter().map(|(from, to)| self.storage.copy(from, to));
        let copies = futures::future::join_all(copies).await;
        for copied in copies {
            if !copied.tag("unavailable")? {
                // The upload vanished in between (swept, or deleted by its owner's replace).
                self.remove_objects(&picture).await;
                return Err(Refused("missing_object", missing_object()));
            }
        }
        let reads = pairs
            .iter()
            .map(|(_, copy)| self.storage.read_prefix(copy, CONTENT_SNIFF_BYTES));
        let reads = futures::future::join_all(reads).await;
        for (&rendition, read) in renditions.iter().zip(reads) {
            let (copied, head) = read
                .tag("unavailable")?
                .ok_or_else(missing_object)
                .tag("missing_object")?;
            let length = match rendition {
                Rendition::Full => upload.content_length,
                Rendition::Small => upload.small_length,
            };
            let checked = check_content(upload.content_type, length, rendition, &copied, &head);
            if let Err(reason) = checked {
                return Err(self.refuse(user, &[&picture, &key], reason).await);
            }
        }

        let new = NewPicture {
            upload: key.clone(),
            picture: picture.clone(),
            small,
        };
        let change = self
            .users
            .replace_picture(&user.id, Some(&new))
            .await
            .tag("unavailable")?;
        let Some(change) = change else {
            // Another confirm of the same upload won the race (fine), or the upload was swept.
            // Either way this copy is nobody's picture.
            self.remove_objects(&picture).await;
            let stored_as = self
                .users
                .find_upload(&key)
                .await
                .tag("unavailable")?
                .and_then(|upload| upload.stored_as);
            let gone = "This upload is no longer available. Please upload the picture again.";
            return self.already_confirmed(user, stored_as, gone).await;
        };
        // Committed: the new picture is served from now on. The upload is not needed any more
        // (if this delete fails, or its owner PUTs again, the prefix audit removes it). The
        // attribute update and the deletion of the replaced objects follow, and are retried
        // later if a part is down.
        self.remove_objects(&key).await;
        self.run_tasks(&change.tasks).await;
        tracing::info!(user = %user.id, key = %picture,
            replaced = ?change.replaced.as_ref().map(PhotoKey::as_str), "picture confirmed");
        self.current_picture(user).await.tag("unavailable")
    }

    /// Deletes what a refused confirm stored (whatever is there is not what was signed for) and
    /// says why.
    async fn refuse(&self, user: &AuthUser, keys: &[&PhotoKey], reason: String) -> Refused {
        for key in keys {
            self.remove_objects(key).await;
        }
        tracing::info!(user = %user.id, key = %keys[keys.len() - 1], %reason, "upload refused");
        Refused("bad_content", ApiError::bad_request(reason))
    }

    /// The answer for an upload that was confirmed before: success while the picture it became,
    /// `stored_as`, is still the user's picture, else `refusal`.
    async fn already_confirmed(
        &self,
        user: &AuthUser,
        stored_as: Option<PhotoKey>,
        refusal: &str,
    ) -> Result<PictureResponse, Refused> {
        let record = self.user_record(&user.id).await.tag("unavailable")?;
        if stored_as.is_none() || record.photo_key != stored_as {
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
        let removed = self
            .remove_picture_of(&user.id)
            .await?
            // The user has no row (any more).
            .ok_or_else(ApiError::unauthenticated)?;
        let record = self.user_record(&user.id).await?;
        let message = if removed {
            "Profile picture removed."
        } else {
            "There was no profile picture to remove."
        };
        self.picture_response(message, record).await
    }

    /// Removes the user's picture: the row first (the atomic swap, which queues the attribute
    /// sync and the object's deletion with it), then those tasks, so a failure midway leaves
    /// them queued and retried, never a directory pointing at a deleted object. Whether there
    /// was a picture; `None` when the user has no row.
    async fn remove_picture_of(&self, id: &UserId) -> Result<Option<bool>, ApiError> {
        let Some(change) = self.users.replace_picture(id, None).await? else {
            return Ok(None);
        };
        self.run_tasks(&change.tasks).await;
        let removed = change.replaced.is_some();
        if removed {
            self.metrics.deletes.inc();
        }
        Ok(Some(removed))
    }

    /// What a list shows of one person: the one place a list row is made, whatever lists it.
    async fn summary(
        &self,
        id: &UserId,
        name: String,
        photo_key: Option<&PhotoKey>,
    ) -> Result<UserSummary, ApiError> {
        let (picture_url, _) = self.read_url(photo_key).await?;
        Ok(UserSummary {
            id: id.to_string(),
            initials: initials(&name),
            name,
            picture_url,
        })
    }

    /// Deletes a picture's objects, both renditions, where they are not needed any more; a
    /// failure is only logged (the prefix audit removes what is left). To be retried, a
    /// deletion is queued instead ([`super::ports::Task::DeleteObject`]).
    async fn remove_objects(&self, key: &PhotoKey) {
        if let Err(e) = self.delete_renditions(key).await {
            tracing::warn!(key = %key, error = %e, "could not delete an object no longer needed");
        }
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

/// The key lists show of a picture: its small rendition where one was stored.
fn list_picture(key: Option<&PhotoKey>, small: bool) -> Option<PhotoKey> {
    key.map(|key| if small { key.small() } else { key.clone() })
}

fn missing_object() -> ApiError {
    ApiError::bad_request("The image was not found in storage. Upload it first.")
}

/// Whether a stored size is what the ledger allows: exactly the signed length, or when none was
/// signed (the SRS's request) at most [`crate::domain::MAX_PICTURE_BYTES`].
fn check_size(announced: Option<ContentLength>, stored: u64) -> Result<(), String> {
    match announced {
        Some(length) if stored != length.get() => Err(format!(
            "The stored image has {stored} bytes, but {} were announced.",
            length.get()
        )),
        Some(_) => Ok(()),
        None => ContentLength::parse(stored).map(drop).map_err(|e| e.0),
    }
}

/// Checks a stored object against the ledger: the size and the signed type, then the bytes
/// themselves (magic number and a sane size read from the image header).
fn check_content(
    content_type: ImageContentType,
    length: Option<ContentLength>,
    rendition: Rendition,
    object: &ObjectInfo,
    head: &[u8],
) -> Result<(), String> {
    check_size(length, object.size)?;
    let stored_type = object.content_type.as_deref().map(ImageContentType::parse);
    if stored_type != Some(Ok(content_type)) {
        return Err("The stored image has the wrong content type.".into());
    }
    check_image_bytes(content_type, rendition, head)
}

/// Whether the first bytes of a stored object are really an image of `expected` type with sane
/// dimensions for its rendition. `Err` carries the message for the user.
pub fn check_image_bytes(
    expected: ImageContentType,
    rendition: Rendition,
    head: &[u8],
) -> Result<(), String> {
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
    let max = rendition.max_side();
    if width == 0 || height == 0 || width > max || height > max {
        return Err(format!(
            "The {} is {width}×{height} pixels; at most {max} on a side is allowed.",
            rendition.noun()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MAX_PICTURE_BYTES;

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
        assert_eq!(
            check_image_bytes(ImageContentType::Png, Rendition::Full, &png),
            Ok(())
        );
        let jpeg = encode(image::ImageFormat::Jpeg, 16, 16);
        assert_eq!(
            check_image_bytes(ImageContentType::Jpeg, Rendition::Full, &jpeg),
            Ok(())
        );
    }

    #[test]
    fn disguised_or_broken_content_is_refused() {
        let png = encode(image::ImageFormat::Png, 20, 10);
        assert!(check_image_bytes(ImageContentType::Jpeg, Rendition::Full, &png).is_err());
        assert!(check_image_bytes(
            ImageContentType::Png,
            Rendition::Full,
            b"<svg onload=alert(1)>"
        )
        .is_err());
        assert!(check_image_bytes(ImageContentType::Png, Rendition::Full, &png[..12]).is_err());
        assert!(check_image_bytes(ImageContentType::Jpeg, Rendition::Full, &[]).is_err());
    }

    #[test]
    fn sizes_are_exact_when_signed_and_bounded_when_not() {
        let announced = ContentLength::parse(100).ok();
        assert_eq!(check_size(announced, 100), Ok(()));
        assert!(check_size(announced, 99).is_err());
        assert_eq!(check_size(None, 1), Ok(()));
        assert_eq!(check_size(None, MAX_PICTURE_BYTES), Ok(()));
        let err = check_size(None, MAX_PICTURE_BYTES + 1).unwrap_err();
        assert!(err.contains("too large"), "{err}");
        assert!(check_size(None, 0).is_err());
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
        let err = check_image_bytes(ImageContentType::Png, Rendition::Full, &bomb).unwrap_err();
        assert!(err.contains("30000"), "{err}");
    }

    #[test]
    fn a_small_rendition_must_be_small() {
        let small = encode(image::ImageFormat::Jpeg, 128, 128);
        assert_eq!(
            check_image_bytes(ImageContentType::Jpeg, Rendition::Small, &small),
            Ok(())
        );
        let large = encode(image::ImageFormat::Jpeg, 512, 512);
        assert!(check_image_bytes(ImageContentType::Jpeg, Rendition::Small, &large).is_err());
        assert_eq!(
            check_image_bytes(ImageContentType::Jpeg, Rendition::Full, &large),
            Ok(())
        );
    }
}
