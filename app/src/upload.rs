//! The browser's side of the three-step upload: ask for a URL, PUT the bytes straight to the
//! storage, confirm. Messages are the SRS's.

use crate::api::{ConfirmUploadRequest, PictureResponse, UploadUrlRequest, UploadUrlResponse};
use crate::server_fns::{confirm_upload, create_upload_url};

/// What the user sees when the PUT to storage fails (the SRS's wording).
pub const STORAGE_FAILED: &str = "Failed to upload image to storage";

/// Uploads a finished JPEG as the new profile picture. `progress` is told each step's label.
pub async fn upload_picture(
    jpeg: Vec<u8>,
    progress: impl Fn(&'static str),
) -> Result<PictureResponse, String> {
    progress("Requesting upload…");
    let grant = create_upload_url(UploadUrlRequest {
        file_name: "profile.jpg".into(),
        content_type: "image/jpeg".into(),
        content_length: jpeg.len() as u64,
    })
    .await
    .map_err(|e| e.message)?;

    progress("Uploading…");
    if let Err(detail) = put_to_storage(&grant, &jpeg).await {
        leptos::logging::warn!("upload to storage failed: {detail}");
        return Err(STORAGE_FAILED.into());
    }

    progress("Saving…");
    confirm_upload(ConfirmUploadRequest {
        photo_key: grant.photo_key,
    })
    .await
    .map_err(|e| e.message)
}

async fn put_to_storage(grant: &UploadUrlResponse, body: &[u8]) -> Result<(), String> {
    let mut request = gloo_net::http::Request::put(&grant.upload_url);
    for (name, value) in &grant.headers {
        // The browser sets these itself and refuses to let scripts do it.
        if !name.eq_ignore_ascii_case("content-length") && !name.eq_ignore_ascii_case("host") {
            request = request.header(name, value);
        }
    }
    let response = request
        .body(js_sys::Uint8Array::from(body))
        .map_err(|e| e.to_string())?
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.ok() {
        Ok(())
    } else {
        Err(format!("storage answered {}", response.status()))
    }
}

/// Reads a picked file's bytes.
pub async fn read_file(file: &web_sys::File) -> Result<Vec<u8>, String> {
    let buffer = wasm_bindgen_futures::JsFuture::from(file.array_buffer())
        .await
        .map_err(|_| "The file could not be read.".to_string())?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}
