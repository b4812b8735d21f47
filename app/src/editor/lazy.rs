//! The editor's code is loaded only when a photo is picked, in a split build.
//!
//! Why: the image codecs and the dialog are about half of the WASM, and the first page (sign-in)
//! and most visits never use them. `cargo leptos … --split` (what `cargo xtask` runs) cuts the
//! functions in `editor_module!` below, and all the code only they reach, out of the main WASM
//! into `split_portrait_editor.wasm`, fetched on the first call (once for all of them: they share
//! the module name) or on [`preload`].
//!
//! A build without `--split` (plain `cargo leptos watch`, `serve`, `build`, `end-to-end`) must
//! not mark them: its WASM would import a placeholder module that nothing provides, and the page
//! would never hydrate. There, and on the server and in native tests, they are plain async
//! functions with the same signatures, so callers are the same in every build. `cfg(split_wasm)`
//! says which build this is (see `app/build.rs`).
//!
//! The split calls cross an `extern "C"` boundary (that is how the split module links back),
//! hence the owned arguments. `fallible` turns a failed fetch into a message: a panic would abort
//! the app.

use std::sync::Arc;

use image::RgbaImage;
use leptos::prelude::*;
#[cfg(split_wasm)]
use wasm_split_helpers::{wasm_split, SplitLoaderError};

use super::transform::Crop;
use super::{flatten, DecodeError, Exported, ImageEditor, Photo};

/// The editor's code could not be fetched; says so in words for the person.
pub struct NotLoaded(pub String);

#[cfg(split_wasm)]
impl From<SplitLoaderError> for NotLoaded {
    fn from(_: SplitLoaderError) -> Self {
        NotLoaded("The editor could not be loaded. Check your connection and try again.".into())
    }
}

/// Starts fetching the editor's code, if it is not loaded yet (in a split build; otherwise it is
/// part of the main WASM already).
pub fn preload() {
    #[cfg(split_wasm)]
    leptos::task::spawn_local(async {
        // A failure shows once the editor is really needed.
        let _ = load_editor().await;
    });
}

/// Each function, with `#[split(options)]` (extra `wasm_split` options, e.g. the preload
/// function to generate): in a split build a `wasm_split(portrait_editor)` entry point, whose
/// generated wrapper is async; in any other build that same function, written `async`.
macro_rules! editor_module {
    ($(
        #[split($($option:tt)*)]
        fn $name:ident($($arg:ident: $type:ty),* $(,)?) -> $output:ty $body:block
    )*) => {$(
        #[cfg(split_wasm)]
        #[wasm_split(portrait_editor, fallible, $($option)*)]
        fn $name($($arg: $type),*) -> $output $body

        #[cfg(not(split_wasm))]
        async fn $name($($arg: $type),*) -> $output $body
    )*};
}

pub(super) async fn decode(bytes: Vec<u8>) -> Result<Result<Arc<Photo>, DecodeError>, NotLoaded> {
    decode_photo(bytes).await
}

pub(super) async fn from_browser(pixels: RgbaImage) -> Result<Arc<Photo>, NotLoaded> {
    photo_from_pixels(pixels).await
}

/// The JPEGs to upload ([`Photo::export`]); the error is what the person is told.
pub async fn export(photo: Arc<Photo>, crop: Crop) -> Result<Exported, String> {
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

editor_module! {
    #[split(preload(load_editor))]
    fn decode_photo(bytes: Vec<u8>) -> Result<Result<Arc<Photo>, DecodeError>, NotLoaded> {
        Ok(Photo::decode(bytes).map(Arc::new))
    }

    #[split()]
    fn photo_from_pixels(pixels: RgbaImage) -> Result<Arc<Photo>, NotLoaded> {
        Ok(Arc::new(Photo::from_pixels(flatten(&pixels))))
    }

    #[split()]
    fn export_photo(photo: Arc<Photo>, crop: Crop) -> Result<Result<Exported, String>, NotLoaded> {
        Ok(photo.export(crop))
    }

    #[split()]
    fn editor_dialog(
        photo: Arc<Photo>,
        busy: Signal<Option<String>>,
        error: Signal<Option<String>>,
        on_cancel: Callback<()>,
        on_save: Callback<Crop>,
    ) -> Result<AnyView, NotLoaded> {
        Ok(view! { <ImageEditor photo busy error on_cancel on_save /> }.into_any())
    }
}
