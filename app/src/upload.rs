//! The browser's side of the three-step upload: ask for a URL, PUT the bytes straight to the
//! storage, confirm. Messages are the SRS's, made specific where S3 says what went wrong.

use std::collections::BTreeMap;

use crate::api::{ConfirmUploadRequest, PictureResponse, UploadUrlRequest};
use crate::editor::Exported;
use crate::server_fns::{confirm_upload, create_upload_url};

/// What the user sees when the PUT to storage fails (the SRS's wording).
pub const STORAGE_FAILED: &str = "Failed to upload image to storage";

/// Why a PUT to storage failed, as far as the browser can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutFailure {
    /// The URL's lifetime ran out before the PUT arrived (worth one retry with a fresh URL).
    Expired,
    /// The request did not match the signature: another type or length than was signed.
    SignatureMismatch,
    /// The device clock is too far off for the storage to accept any signature.
    ClockSkew,
    /// No answer at all: offline, blocked, or refused by CORS (the browser hides which).
    Network,
    /// Any other refusal.
    Other(String),
}

impl PutFailure {
    /// Reads S3's XML error body (`<Code>` and `<Message>`), whatever the store.
    pub fn from_s3_error(status: u16, body: &str) -> Self {
        let element = |name: &str| {
            let start = body.find(&format!("<{name}>"))? + name.len() + 2;
            let end = body[start..].find(&format!("</{name}>"))? + start;
            Some(body[start..end].to_owned())
        };
        let code = element("Code").unwrap_or_default();
        let message = element("Message").unwrap_or_default();
        match code.as_str() {
            "AccessDenied" if message.to_ascii_lowercase().contains("expired") => Self::Expired,
            "ExpiredToken" => Self::Expired,
            "SignatureDoesNotMatch" => Self::SignatureMismatch,
            "RequestTimeTooSkewed" => Self::ClockSkew,
            _ => Self::Other(format!("storage answered {status} {code}")),
        }
    }

    /// The alert text: the SRS's message, with the reason when there is one worth telling.
    pub fn message(&self) -> String {
        let reason = match self {
            Self::Expired => "the upload link expired. Please try again.",
            Self::SignatureMismatch => {
                "the storage refused the picture because it did not match the signed request."
            }
            Self::ClockSkew => "your device's clock is wrong. Set it right and try again.",
            Self::Network => {
                "the storage could not be reached. Check your connection and try again."
            }
            Self::Other(_) => return STORAGE_FAILED.to_owned(),
        };
        format!("{STORAGE_FAILED}: {reason}")
    }
}

/// Uploads a finished picture and its small rendition as the new profile picture. `progress` is
/// told each step's label. An upload URL that expired on the way is replaced by a fresh one
/// once, without asking.
pub async fn upload_picture(
    exported: Exported,
    progress: impl Fn(&'static str),
) -> Result<PictureResponse, String> {
    let Exported { picture, small } = exported;
    let mut retried = false;
    loop {
        progress("Requesting upload…");
        let grant = create_upload_url(UploadUrlRequest {
            file_name: "profile.jpg".into(),
            content_type: "image/jpeg".into(),
            content_length: Some(picture.len() as u64),
            small_content_length: Some(small.len() as u64),
        })
        .await
        .map_err(|e| e.message)?;

        progress("Uploading…");
        let started = js_sys::Date::now();
        // Both at once; the small one is a few KB. Without it the picture still works (lists
        // show it in full), so only the picture's PUT decides.
        let small_put = async {
            if let Some(grant) = &grant.small {
                if let Err(failure) =
                    put_to_storage(&grant.upload_url, &grant.headers, &small).await
                {
                    leptos::logging::warn!("upload of the small picture failed: {failure:?}");
                }
            }
        };
        let picture_put = put_to_storage(&grant.upload_url, &grant.headers, &picture);
        let (put, ()) = futures::future::join(picture_put, small_put).await;
        match put {
            Ok(()) => {}
            Err(PutFailure::Expired) if !retried => {
                retried = true;
                continue;
            }
            Err(failure) => {
                leptos::logging::warn!("upload to storage failed: {failure:?}");
                return Err(failure.message());
            }
        }
        let took = (js_sys::Date::now() - started).max(0.0) as u64;

        progress("Saving…");
        return confirm_upload(ConfirmUploadRequest {
            photo_key: grant.photo_key,
            put_millis: Some(took),
            put_bytes: Some(picture.len() as u64),
        })
        .await
        .map_err(|e| e.message);
    }
}

async fn put_to_storage(
    url: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> Result<(), PutFailure> {
    let mut request = gloo_net::http::Request::put(url);
    for (name, value) in headers {
        // The browser sets these itself and refuses to let scripts do it.
        if !name.eq_ignore_ascii_case("content-length") && !name.eq_ignore_ascii_case("host") {
            request = request.header(name, value);
        }
    }
    let response = request
        .body(js_sys::Uint8Array::from(body))
        .map_err(|e| PutFailure::Other(e.to_string()))?
        .send()
        .await
        .map_err(|_| PutFailure::Network)?;
    if response.ok() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(PutFailure::from_s3_error(response.status(), &body))
}

/// Reads a picked file's bytes.
pub async fn read_file(file: &web_sys::File) -> Result<Vec<u8>, String> {
    let buffer = wasm_bindgen_futures::JsFuture::from(file.array_buffer())
        .await
        .map_err(|_| "The file could not be read.".to_string())?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3_error(code: &str, message: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
             <Message>{message}</Message><RequestId>x</RequestId></Error>"
        )
    }

    #[test]
    fn s3_errors_are_recognised_by_code_and_message() {
        let parse = |code, message| PutFailure::from_s3_error(403, &s3_error(code, message));
        assert_eq!(
            parse("AccessDenied", "Request has expired"),
            PutFailure::Expired
        );
        assert_eq!(
            parse("SignatureDoesNotMatch", ""),
            PutFailure::SignatureMismatch
        );
        assert_eq!(
            parse("RequestTimeTooSkewed", "request time is too far"),
            PutFailure::ClockSkew
        );
        assert!(matches!(
            parse("AccessDenied", "Access Denied"),
            PutFailure::Other(_)
        ));
        assert!(matches!(
            PutFailure::from_s3_error(500, "oops"),
            PutFailure::Other(_)
        ));
    }

    #[test]
    fn unrecognised_failures_keep_the_srs_message() {
        assert_eq!(PutFailure::Other("x".into()).message(), STORAGE_FAILED);
        assert!(PutFailure::ClockSkew.message().starts_with(STORAGE_FAILED));
    }
}
