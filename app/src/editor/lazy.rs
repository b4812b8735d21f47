//! The editor's code is loaded only when a photo is picked.
//!
//! Why: the image codecs and the dialog are about half of the WASM, and the first page (sign-in)
//! and most visits never use them. `cargo leptos … --split` cuts the functions marked
//! `wasm_split(portrait_editor)` below, and all the code only they reach, out of the main WASM
//! into `split_portrait_editor.wasm`, fetched on the first call (once for all of them: they share
//! the module name) or on [`preload`]. Without `--split` the WASM would import a placeholder
//! module and not start at all, so every `cargo leptos` command of the project passes `--split`
//! (xtask, README). On the server and in native tests these are plain calls.
//!
//! The calls cross an `extern "C"` boundary (that is how the split module links back), hence the
//! owned arguments. `fallible` turns a failed fetch into a message: a panic would abort the app.

use std::sync::Arc;

use image::RgbaImage;
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_split_helpers::{wasm_split, SplitLoaderError};

use super::transform::Crop;
use super::{flatten, DecodeError, ImageEditor, Photo};

/// The editor's code could not be fetched; says so in words for the person.
pub struct NotLoaded(pub String);

impl From<SplitLoaderError> for NotLoaded {
    fn from(_: SplitLoaderError) -> Self {
        NotLoaded("The editor could not be loaded. Check your connection and try again.".into())
    }
}

/// Starts fetching the editor's code, if it is not loaded yet.
pub fn preload() {
    spawn_local(async {
        // A failure shows once the editor is really needed.
        let _ = load_editor().await;
    });
}

pub(super) async fn decode(bytes: Vec<u8>) -> Result<Result<Arc<Photo>, DecodeError>, NotLoaded> {
    decode_photo(bytes).await
}

pub(super) async fn from_browser(pixels: RgbaImage) -> Result<Arc<Photo>, NotLoaded> {
    photo_from_pixels(pixels).await
}

/// The 512×512 JPEG to upload ([`Photo::export`]); the error is what the person is told.
pub async fn export(photo: Arc<Photo>, crop: Crop) -> Result<Vec<u8>, String> {
    match export_photo(photo, crop).await {
        Ok(exported) => exported,
        Err(NotLoaded(message)) => Err(message),
    }
}

/// The editor dialog ([`ImageEditor`]) for `photo`.
pub async fn dialog(
    photo: Arc<Photo>,
    busy: Signal<Option<String>>,
    error: Signal<Option<String>>,
    on_cancel: Callback<()>,
    on_save: Callback<Crop>,
) -> AnyView {
    editor_dialog(photo, busy, error, on_cancel, on_save)
        .await
        .unwrap_or_else(|NotLoaded(message)| {
            view! { <p class="alert" role="alert">{message}</p> }.into_any()
        })
}

#[wasm_split(portrait_editor, fallible, preload(load_editor))]
fn decode_photo(bytes: Vec<u8>) -> Result<Result<Arc<Photo>, DecodeError>, NotLoaded> {
    Ok(Photo::decode(bytes).map(Arc::new))
}

#[wasm_split(portrait_editor, fallible)]
fn photo_from_pixels(pixels: RgbaImage) -> Result<Arc<Photo>, NotLoaded> {
    Ok(Arc::new(Photo::from_pixels(flatten(&pixels))))
}

#[wasm_split(portrait_editor, fallible)]
fn export_photo(photo: Arc<Photo>, crop: Crop) -> Result<Result<Vec<u8>, String>, NotLoaded> {
    Ok(photo.export(crop))
}

#[wasm_split(portrait_editor, fallible)]
fn editor_dialog(
    photo: Arc<Photo>,
    busy: Signal<Option<String>>,
    error: Signal<Option<String>>,
    on_cancel: Callback<()>,
    on_save: Callback<Crop>,
) -> Result<AnyView, NotLoaded> {
    Ok(view! { <ImageEditor photo busy error on_cancel on_save /> }.into_any())
}
