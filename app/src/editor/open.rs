//! Opening the file a person picked: our decoder first, the browser's for what it cannot read.
//!
//! The `image` crate covers JPEG, PNG, WebP, GIF and BMP. Whatever else the browser can decode
//! (AVIF, ICO, and HEIC in Safari, say) still opens: `createImageBitmap` decodes it, upright,
//! already shrunk, and its pixels feed the same `Photo` and the same transform, so preview and
//! upload agree as for any other photo. Only a file neither can read gets the message that names
//! the formats that work.

use std::sync::Arc;

use image::RgbaImage;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::lazy::{self, NotLoaded};
use super::transform::MAX_ZOOM;
use super::{decode, DecodeError, Photo, OUTPUT_SIZE};
use crate::upload::read_file;

/// Shortest side kept of a photo the browser decoded. There is no second decode for deep zooms
/// (the browser's bitmap is not kept), so this covers a Save at the largest zoom.
const BROWSER_DECODED_SIZE: u32 = OUTPUT_SIZE * MAX_ZOOM as u32;

/// Reads and decodes a picked file for the editor (loading the editor's code if need be); the
/// error is what the person is told.
pub async fn open(file: &web_sys::File) -> Result<Arc<Photo>, String> {
    // Checked before reading, so a huge file is never copied into memory at all.
    let size = file.size() as u64;
    if size > decode::MAX_INPUT_BYTES as u64 {
        return Err(DecodeError::too_many_bytes(size).message());
    }
    let bytes = read_file(file).await?;
    // Decoding holds the main thread (~0.2 s for 12 MP): let the page show that it is opening
    // the photo first.
    after_paint().await;
    let not_loaded = |NotLoaded(message)| message;
    match lazy::decode(bytes).await.map_err(not_loaded)? {
        Ok(photo) => Ok(photo),
        Err(DecodeError::TooLarge(message)) => Err(message),
        // Damaged for our decoders may still be a variant the browser reads (an arithmetic-coded
        // JPEG, say); if the browser fails too, our own diagnosis is the better message.
        Err(ours) => match decode_in_browser(file).await {
            Ok(Ok(pixels)) => lazy::from_browser(pixels).await.map_err(not_loaded),
            Ok(Err(too_large)) => Err(too_large.message()),
            Err(_) => Err(ours.message()),
        },
    }
}

/// `Err` when the browser cannot decode the file; `Ok(Err)` when it can but it is too large.
async fn decode_in_browser(
    file: &web_sys::File,
) -> Result<Result<RgbaImage, DecodeError>, JsValue> {
    let bitmap = bitmap(file, None).await?;
    let (width, height) = (bitmap.width(), bitmap.height());
    if let Err(too_large) = DecodeError::check_pixels(width, height) {
        bitmap.close();
        return Ok(Err(too_large));
    }
    let bitmap = if width.min(height) > BROWSER_DECODED_SIZE {
        bitmap.close();
        let size = decode::with_short_side(width, height, BROWSER_DECODED_SIZE);
        self::bitmap(file, Some(size)).await?
    } else {
        bitmap
    };
    let pixels = pixels_of(&bitmap);
    bitmap.close();
    pixels.map(Ok)
}

/// The file decoded by the browser, upright (EXIF honoured), optionally resized while decoding.
async fn bitmap(
    file: &web_sys::File,
    size: Option<(u32, u32)>,
) -> Result<web_sys::ImageBitmap, JsValue> {
    let options = web_sys::ImageBitmapOptions::new();
    options.set_image_orientation(web_sys::ImageOrientation::FromImage);
    if let Some((width, height)) = size {
        options.set_resize_width(width);
        options.set_resize_height(height);
        options.set_resize_quality(web_sys::ResizeQuality::High);
    }
    let window = web_sys::window().ok_or_else(|| JsValue::from_str("no window"))?;
    let promise = window.create_image_bitmap_with_blob_and_image_bitmap_options(file, &options)?;
    JsFuture::from(promise).await?.dyn_into()
}

/// The bitmap's RGBA pixels, through a canvas that is never attached to the page.
fn pixels_of(bitmap: &web_sys::ImageBitmap) -> Result<RgbaImage, JsValue> {
    let (width, height) = (bitmap.width(), bitmap.height());
    let document = web_sys::window()
        .and_then(|w| w.document())
        .ok_or_else(|| JsValue::from_str("no document"))?;
    let canvas: web_sys::HtmlCanvasElement = document.create_element("canvas")?.dyn_into()?;
    canvas.set_width(width);
    canvas.set_height(height);
    let context: web_sys::CanvasRenderingContext2d = canvas
        .get_context("2d")?
        .ok_or_else(|| JsValue::from_str("no 2d context"))?
        .dyn_into()?;
    context.draw_image_with_image_bitmap(bitmap, 0.0, 0.0)?;
    let data = context.get_image_data(0.0, 0.0, width.into(), height.into())?;
    RgbaImage::from_raw(width, height, data.data().0)
        .ok_or_else(|| JsValue::from_str("the canvas returned fewer pixels than it has"))
}

/// Resolves once the browser has painted what is on the page now: a frame, then a task.
pub async fn after_paint() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let Some(window) = web_sys::window() else {
            let _ = resolve.call0(&JsValue::NULL);
            return;
        };
        let next_task = wasm_bindgen::closure::Closure::once_into_js(move || {
            if let Some(window) = web_sys::window() {
                let _ = window.set_timeout_with_callback(&resolve);
            }
        });
        let _ = window.request_animation_frame(next_task.unchecked_ref());
    });
    let _ = JsFuture::from(promise).await;
}
