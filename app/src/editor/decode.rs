//! From a picked file's bytes to an upright RGBA picture, at no more resolution than asked for.
//!
//! JPEG, what phones write, goes through `jpeg-decoder`, whose inverse DCT can produce 1/2, 1/4
//! or 1/8 of the full size straight from the coefficients: a 12 MP photo opened for the editor
//! becomes 2000×1500 without its 36 MB full-size buffer ever existing, and 48 MP becomes the same
//! through 1/4. (The entropy decoding still reads every coefficient, so that part of the cost is
//! the same at any scale; the rest, and the memory, shrink with the area.) The other formats go
//! through the `image` crate at full size and are shrunk before they are converted to RGBA.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, Limits, RgbaImage};

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

/// A decoded picture and the upright size of the full-resolution original it came from.
pub struct Decoded {
    pub image: RgbaImage,
    pub full_size: (u32, u32),
}

/// Decodes `bytes` upright (EXIF orientation applied), with the shorter side at least
/// `min_short_side` pixels where the original has that many, and less than twice that where the
/// decoder can shrink (always for the DCT-scaled JPEG path, unless 1/8 is still larger).
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
    let rgba = to_rgba(&pixels, info.pixel_format, w as usize * h as usize);
    let image = RgbaImage::from_raw(w, h, rgba).ok_or(DecodeError::Damaged)?;
    let orientation = decoder
        .exif_data()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    Ok(upright(
        DynamicImage::ImageRgba8(image),
        orientation,
        (width, height),
    ))
}

/// The decoder's pixels as RGBA, written into one buffer allocated at its final size.
fn to_rgba(pixels: &[u8], format: jpeg_decoder::PixelFormat, count: usize) -> Vec<u8> {
    use jpeg_decoder::PixelFormat;
    let mut rgba = Vec::with_capacity(count * 4);
    match format {
        PixelFormat::RGB24 => {
            for p in pixels.chunks_exact(3) {
                rgba.extend_from_slice(&[p[0], p[1], p[2], 255]);
            }
        }
        PixelFormat::L8 => {
            for &l in pixels {
                rgba.extend_from_slice(&[l, l, l, 255]);
            }
        }
        // 16-bit greyscale (lossless JPEG, big-endian): the high byte is all 8 bits can show.
        PixelFormat::L16 => {
            for p in pixels.chunks_exact(2) {
                rgba.extend_from_slice(&[p[0], p[0], p[0], 255]);
            }
        }
        // Ink amounts (jpeg-decoder inverts what Adobe's files store), converted naively, as
        // browsers do for CMYK files without a colour profile.
        PixelFormat::CMYK32 => {
            for p in pixels.chunks_exact(4) {
                let k = 255 - u16::from(p[3]);
                let channel = |c: u8| ((255 - u16::from(c)) * k / 255) as u8;
                rgba.extend_from_slice(&[channel(p[0]), channel(p[1]), channel(p[2]), 255]);
            }
        }
    }
    rgba
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
    // Shrink in the decoder's own pixel format (RGB for most photos) before converting to RGBA,
    // so the decoded buffer stays the only full-resolution copy; it is dropped here.
    if width.min(height) >= min_short_side.saturating_mul(2) {
        let (w, h) = with_short_side(width, height, min_short_side);
        image = image.thumbnail_exact(w, h);
    }
    Ok(upright(image, orientation, (width, height)))
}

fn upright(mut image: DynamicImage, orientation: Orientation, (w, h): (u32, u32)) -> Decoded {
    image.apply_orientation(orientation);
    let swaps_axes = matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    Decoded {
        image: image.into_rgba8(),
        full_size: if swaps_axes { (h, w) } else { (w, h) },
    }
}

/// `w`×`h` scaled so that the shorter side is `short_side`, keeping the aspect ratio.
pub fn with_short_side(w: u32, h: u32, short_side: u32) -> (u32, u32) {
    let factor = short_side as f64 / w.min(h).max(1) as f64;
    (
        ((w as f64 * factor).round() as u32).max(1),
        ((h as f64 * factor).round() as u32).max(1),
    )
}
