//! From a picked file's bytes to its pixels and the EXIF orientation that shows them upright, at
//! no more resolution than asked for.
//!
//! JPEG, what phones write, goes through `jpeg-decoder`, whose inverse DCT can produce 1/2, 1/4
//! or 1/8 of the full size straight from the coefficients: a 12 MP photo opened for the editor
//! becomes 2000×1500 without its 36 MB full-size buffer ever existing, and 48 MP becomes the same
//! through 1/4. (The entropy decoding still reads every coefficient, so that part of the cost is
//! the same at any scale; the rest, and the memory, shrink with the area.) The other formats go
//! through the `image` crate at full size and are shrunk before they are converted to RGBA.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, Limits, RgbImage, RgbaImage};

use super::transform::upright_size;

/// Refused before decoding: larger files are not photos anyone means to use as an avatar, and
/// decoding them could exhaust the tab's memory.
pub const MAX_INPUT_BYTES: usize = 50 * 1024 * 1024;
pub const MAX_INPUT_PIXELS: u64 = 100_000_000;

/// Why a file could not be opened. Only `Unsupported` is worth handing to another decoder.
#[derive(Debug, Clone, PartialEq)]
pub enum DecodeError {
    TooLarge(String),
    Unsupported,
    Damaged,
}

impl DecodeError {
    pub fn too_many_bytes(len: u64) -> Self {
        Self::TooLarge(format!(
            "This file is too large ({} MB). Please choose a photo under {} MB.",
            len / (1024 * 1024),
            MAX_INPUT_BYTES / (1024 * 1024)
        ))
    }

    pub fn check_pixels(width: u32, height: u32) -> Result<(), Self> {
        if u64::from(width) * u64::from(height) > MAX_INPUT_PIXELS {
            return Err(Self::TooLarge(format!(
                "This photo is {width}×{height} pixels; please choose one under {} megapixels.",
                MAX_INPUT_PIXELS / 1_000_000
            )));
        }
        Ok(())
    }

    /// What the person is told.
    pub fn message(&self) -> String {
        match self {
            Self::TooLarge(message) => message.clone(),
            Self::Unsupported => "This image format is not supported. Please use a JPEG, PNG, \
                                  WebP, GIF or BMP photo."
                .into(),
            Self::Damaged => "This image could not be read; the file may be damaged.".into(),
        }
    }
}

/// A decoded picture: its pixels as the file stores them (opaque: transparency is flattened onto
/// white, as the JPEG output needs), the EXIF orientation that shows it upright, and the upright
/// size of the full-resolution original. Turning it is left to the render, so no turned copy of
/// the pixels is ever made.
pub struct Decoded {
    pub image: RgbImage,
    pub orientation: Orientation,
    pub full_size: (u32, u32),
}

/// Decodes `bytes` with the shorter side at least `min_short_side` pixels where the original
/// has that many, and less than twice that where the decoder can shrink (always for the
/// DCT-scaled JPEG path, unless 1/8 is still larger).
pub fn decode_at_least(bytes: &[u8], min_short_side: u32) -> Result<Decoded, DecodeError> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(DecodeError::too_many_bytes(bytes.len() as u64));
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        decode_jpeg(bytes, min_short_side)
    } else {
        decode_other(bytes, min_short_side)
    }
}

fn decode_jpeg(bytes: &[u8], min_short_side: u32) -> Result<Decoded, DecodeError> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.read_info().map_err(|_| DecodeError::Damaged)?;
    let info = decoder.info().ok_or(DecodeError::Damaged)?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    DecodeError::check_pixels(width, height)?;
    let (want_w, want_h) = with_short_side(width, height, min_short_side.min(width.min(height)));
    // Each side is at most the original's, which came from a u16.
    decoder
        .scale(want_w as u16, want_h as u16)
        .map_err(|_| DecodeError::Damaged)?;
    let pixels = decoder.decode().map_err(|_| DecodeError::Damaged)?;
    let info = decoder.info().ok_or(DecodeError::Damaged)?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    let image = to_rgb(pixels, info.pixel_format, w, h).ok_or(DecodeError::Damaged)?;
    let orientation = decoder
        .exif_data()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    Ok(Decoded {
        image,
        orientation,
        full_size: upright_size(width, height, orientation),
    })
}

/// The decoder's pixels as RGB: RGB (nearly every photo) is taken as it is, without a copy.
fn to_rgb(pixels: Vec<u8>, format: jpeg_decoder::PixelFormat, w: u32, h: u32) -> Option<RgbImage> {
    use jpeg_decoder::PixelFormat;
    let rgb = match format {
        PixelFormat::RGB24 => pixels,
        PixelFormat::L8 => pixels.iter().flat_map(|&l| [l; 3]).collect(),
        // 16-bit greyscale (lossless JPEG, big-endian): the high byte is all 8 bits can show.
        PixelFormat::L16 => pixels.chunks_exact(2).flat_map(|p| [p[0]; 3]).collect(),
        // Ink amounts (jpeg-decoder inverts what Adobe's files store), converted naively, as
        // browsers do for CMYK files without a colour profile.
        PixelFormat::CMYK32 => pixels
            .chunks_exact(4)
            .flat_map(|p| {
                let k = 255 - u16::from(p[3]);
                let channel = |c: u8| ((255 - u16::from(c)) * k / 255) as u8;
                [channel(p[0]), channel(p[1]), channel(p[2])]
            })
            .collect(),
    };
    RgbImage::from_raw(w, h, rgb)
}

fn decode_other(bytes: &[u8], min_short_side: u32) -> Result<Decoded, DecodeError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| DecodeError::Unsupported)?;
    if reader.format().is_none() {
        return Err(DecodeError::Unsupported);
    }
    let mut decoder = reader.into_decoder().map_err(|e| match e {
        // A format `image` knows of but this build does not decode (ICO, TIFF, AVIF…).
        ImageError::Unsupported(_) => DecodeError::Unsupported,
        _ => DecodeError::Damaged,
    })?;
    let (width, height) = decoder.dimensions();
    DecodeError::check_pixels(width, height)?;
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_INPUT_PIXELS * 4 + 64 * 1024 * 1024);
    decoder
        .set_limits(limits)
        .map_err(|_| DecodeError::Damaged)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|_| DecodeError::Damaged)?;
    // Shrink in the decoder's own pixel format before converting, so the decoded buffer stays
    // the only full-resolution copy; it is dropped here.
    if width.min(height) >= min_short_side.saturating_mul(2) {
        let (w, h) = with_short_side(width, height, min_short_side);
        image = image.thumbnail_exact(w, h);
    }
    let image = if image.color().has_alpha() {
        flatten(&image.into_rgba8())
    } else {
        image.into_rgb8()
    };
    Ok(Decoded {
        image,
        orientation,
        full_size: upright_size(width, height, orientation),
    })
}

/// Transparent areas onto white: the output is a JPEG, and the preview should show what will
/// be saved.
pub fn flatten(rgba: &RgbaImage) -> RgbImage {
    let mut rgb = Vec::with_capacity(rgba.as_raw().len() / 4 * 3);
    for p in rgba.as_raw().chunks_exact(4) {
        let alpha = u32::from(p[3]);
        let over_white = |c: u8| ((u32::from(c) * alpha + 255 * (255 - alpha) + 127) / 255) as u8;
        rgb.extend_from_slice(&[over_white(p[0]), over_white(p[1]), over_white(p[2])]);
    }
    RgbImage::from_raw(rgba.width(), rgba.height(), rgb).expect("three bytes for every four")
}

/// `w`×`h` scaled so that the shorter side is `short_side`, keeping the aspect ratio.
pub fn with_short_side(w: u32, h: u32, short_side: u32) -> (u32, u32) {
    let factor = short_side as f64 / w.min(h).max(1) as f64;
    (
        ((w as f64 * factor).round() as u32).max(1),
        ((h as f64 * factor).round() as u32).max(1),
    )
}
