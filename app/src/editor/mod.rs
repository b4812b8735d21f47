//! The picture editor: decoding the chosen photo, the crop transform, and the JPEG output.
//! All of it is plain Rust, so it runs natively in tests and benchmarks and in WASM in the browser.

mod dialog;
pub mod transform;

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbaImage};

pub use dialog::{ImageEditor, PREVIEW_SIZE};
use transform::{render, Crop, MAX_ZOOM};

/// Side of the uploaded square picture.
pub const OUTPUT_SIZE: u32 = 512;
/// JPEG quality of the upload: visually clean at avatar sizes, a few tens of KB.
pub const OUTPUT_QUALITY: u8 = 85;
/// Side of the working copy the preview renders from, so slider moves never touch the full photo.
pub const PREVIEW_SOURCE_SIZE: u32 = 1024;
/// Shortest side of the copy the editor keeps: at the largest zoom the output's 512 pixels span
/// `short side / MAX_ZOOM` photo pixels, so more than this is never sampled. A 48 MP photo then
/// costs ~35 MB instead of ~190 MB for as long as the dialog is open.
pub const MAX_SOURCE_SIZE: u32 = OUTPUT_SIZE * MAX_ZOOM as u32;

/// Refused before decoding: larger files are not photos anyone means to use as an avatar, and
/// decoding them could exhaust the tab's memory.
pub const MAX_INPUT_BYTES: usize = 50 * 1024 * 1024;
pub const MAX_INPUT_PIXELS: u64 = 100_000_000;

/// A decoded photo, upright, at no more resolution than the output can use, with a small copy
/// for the preview.
pub struct Photo {
    pub source: RgbaImage,
    pub preview: RgbaImage,
}

impl Photo {
    pub fn dimensions(&self) -> (u32, u32) {
        self.source.dimensions()
    }

    /// The JPEG to upload: the same transform as the preview, from a copy scaled so that the crop
    /// covers about one photo pixel per output pixel (sharper and faster than sampling 12 MP).
    pub fn export(&self, crop: Crop) -> Result<Vec<u8>, String> {
        let (w, h) = self.source.dimensions();
        let needed = (OUTPUT_SIZE as f32 * crop.zoom).ceil() as u32;
        let short_side = w.min(h);
        let scaled;
        let source = if short_side > needed * 2 {
            let (sw, sh) = with_short_side(w, h, needed);
            scaled = image::imageops::resize(&self.source, sw, sh, FilterType::Triangle);
            &scaled
        } else {
            &self.source
        };
        let picture = render(source, crop, OUTPUT_SIZE);
        encode_jpeg(&picture)
    }
}

/// Decodes a picked file, honouring EXIF orientation so phone photos are upright.
pub fn decode(bytes: &[u8]) -> Result<Photo, String> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(format!(
            "This file is too large ({} MB). Please choose a photo under {} MB.",
            bytes.len() / (1024 * 1024),
            MAX_INPUT_BYTES / (1024 * 1024)
        ));
    }
    let unsupported = || {
        "This image format is not supported. Please use a JPEG, PNG, WebP, GIF or BMP photo."
            .to_string()
    };
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| unsupported())?;
    if reader.format().is_none() {
        return Err(unsupported());
    }
    let mut decoder = reader.into_decoder().map_err(|_| unsupported())?;
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > MAX_INPUT_PIXELS {
        return Err(format!(
            "This photo is {w}×{h} pixels; please choose one under {} megapixels.",
            MAX_INPUT_PIXELS / 1_000_000
        ));
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_INPUT_PIXELS * 4 + 64 * 1024 * 1024);
    decoder.set_limits(limits).map_err(|e| e.to_string())?;
    let orientation = decoder.orientation().ok();
    let mut image = DynamicImage::from_decoder(decoder)
        .map_err(|_| "This image could not be read; the file may be damaged.".to_string())?;
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    // Shrink in the decoder's own pixel format (RGB for a JPEG) before converting to RGBA, so the
    // decoded buffer is the only full-resolution copy that ever exists; it is dropped here.
    let (w, h) = (image.width(), image.height());
    let source = if w.min(h) > MAX_SOURCE_SIZE {
        let (sw, sh) = with_short_side(w, h, MAX_SOURCE_SIZE);
        image.thumbnail_exact(sw, sh).into_rgba8()
    } else {
        image.into_rgba8()
    };
    let preview = preview_copy(&source);
    Ok(Photo { source, preview })
}

fn preview_copy(full: &RgbaImage) -> RgbaImage {
    let (w, h) = full.dimensions();
    if w.min(h) <= PREVIEW_SOURCE_SIZE {
        return full.clone();
    }
    let (pw, ph) = with_short_side(w, h, PREVIEW_SOURCE_SIZE);
    image::imageops::thumbnail(full, pw, ph)
}

/// `w`×`h` scaled so that the shorter side is `short_side`, keeping the aspect ratio.
fn with_short_side(w: u32, h: u32, short_side: u32) -> (u32, u32) {
    let factor = short_side as f32 / w.min(h).max(1) as f32;
    (
        ((w as f32 * factor).round() as u32).max(1),
        ((h as f32 * factor).round() as u32).max(1),
    )
}

/// Baseline JPEG with no metadata at all: the encoder writes only what the pixels need, so no
/// EXIF, GPS or ICC data from the original can survive.
pub fn encode_jpeg(picture: &image::RgbImage) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(64 * 1024);
    JpegEncoder::new_with_quality(&mut out, OUTPUT_QUALITY)
        .encode_image(picture)
        .map_err(|e| format!("Could not encode the picture: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg_of(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 128]));
        encode_jpeg(&img).unwrap()
    }

    /// A JPEG as a phone writes it: an EXIF segment with an Orientation tag and GPS data.
    /// `orientation` 6 means "rotate 90° clockwise to display".
    fn phone_jpeg(pixels: &image::RgbImage, orientation: u16) -> Vec<u8> {
        let mut tiff = Vec::new();
        tiff.extend_from_slice(b"II\x2a\x00");
        tiff.extend_from_slice(&8u32.to_le_bytes()); // IFD0 at 8
        tiff.extend_from_slice(&2u16.to_le_bytes()); // two entries
                                                     // Orientation: SHORT, 1 value, inline.
        tiff.extend_from_slice(&0x0112u16.to_le_bytes());
        tiff.extend_from_slice(&3u16.to_le_bytes());
        tiff.extend_from_slice(&1u32.to_le_bytes());
        tiff.extend_from_slice(&u32::from(orientation).to_le_bytes());
        // GPS IFD pointer: LONG, 1 value, the GPS IFD right after IFD0 (at 38).
        tiff.extend_from_slice(&0x8825u16.to_le_bytes());
        tiff.extend_from_slice(&4u16.to_le_bytes());
        tiff.extend_from_slice(&1u32.to_le_bytes());
        tiff.extend_from_slice(&38u32.to_le_bytes());
        tiff.extend_from_slice(&0u32.to_le_bytes()); // no IFD1
                                                     // GPS IFD: GPSLatitudeRef = "N".
        tiff.extend_from_slice(&1u16.to_le_bytes());
        tiff.extend_from_slice(&0x0001u16.to_le_bytes());
        tiff.extend_from_slice(&2u16.to_le_bytes());
        tiff.extend_from_slice(&2u32.to_le_bytes());
        tiff.extend_from_slice(b"N\0\0\0");
        tiff.extend_from_slice(&0u32.to_le_bytes());
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);

        let plain = encode_jpeg(pixels).unwrap();
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE1];
        jpeg.extend_from_slice(&(app1.len() as u16 + 2).to_be_bytes());
        jpeg.extend_from_slice(&app1);
        jpeg.extend_from_slice(&plain[2..]); // everything after the encoder's SOI
        jpeg
    }

    /// 40×20, red on the left half, blue on the right.
    fn left_red_right_blue() -> image::RgbImage {
        image::RgbImage::from_fn(40, 20, |x, _| {
            if x < 20 {
                image::Rgb([230, 20, 20])
            } else {
                image::Rgb([20, 20, 230])
            }
        })
    }

    #[test]
    fn exif_orientation_is_applied_so_phone_photos_are_upright() {
        let photo = decode(&phone_jpeg(&left_red_right_blue(), 6)).unwrap();
        // Rotated 90° clockwise: 20 wide, 40 tall, and the left half is now the top half.
        assert_eq!(photo.dimensions(), (20, 40));
        let top = photo.source.get_pixel(10, 5).0;
        let bottom = photo.source.get_pixel(10, 35).0;
        assert!(top[0] > 150 && top[2] < 100, "top {top:?}");
        assert!(bottom[2] > 150 && bottom[0] < 100, "bottom {bottom:?}");
    }

    #[test]
    fn the_export_carries_no_metadata_even_when_the_input_had_gps() {
        let input = phone_jpeg(&left_red_right_blue(), 1);
        let contains =
            |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
        assert!(contains(&input, b"Exif"), "the fixture has EXIF");
        let output = decode(&input).unwrap().export(Crop::default()).unwrap();
        for marker in [
            &b"Exif"[..],
            b"ICC_PROFILE",
            b"\xFF\xE1",
            b"\xFF\xE2",
            b"\xFF\xED",
        ] {
            assert!(!contains(&output, marker), "output holds {marker:?}");
        }
    }

    #[test]
    fn export_is_a_512_square_jpeg() {
        let photo = decode(&jpeg_of(1600, 1200)).unwrap();
        assert_eq!(photo.preview.dimensions(), (1365, 1024));
        let bytes = photo.export(Crop::default()).unwrap();
        assert!(bytes.starts_with(&[0xFF, 0xD8, 0xFF]));
        let out = image::load_from_memory(&bytes).unwrap();
        assert_eq!((out.width(), out.height()), (OUTPUT_SIZE, OUTPUT_SIZE));
    }

    #[test]
    fn a_large_photo_is_kept_only_at_the_resolution_the_output_can_use() {
        let photo = decode(&jpeg_of(MAX_SOURCE_SIZE * 2, MAX_SOURCE_SIZE * 3 / 2)).unwrap();
        assert_eq!(
            photo.dimensions(),
            (MAX_SOURCE_SIZE * 4 / 3, MAX_SOURCE_SIZE),
            "aspect ratio kept, short side capped"
        );
        assert_eq!(photo.preview.height(), PREVIEW_SOURCE_SIZE);
        let crop = Crop {
            zoom: MAX_ZOOM,
            ..Crop::default()
        };
        let out = image::load_from_memory(&photo.export(crop).unwrap()).unwrap();
        assert_eq!((out.width(), out.height()), (OUTPUT_SIZE, OUTPUT_SIZE));
    }

    #[test]
    fn unsupported_and_damaged_files_get_a_clear_message() {
        let err = decode(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
            .err()
            .unwrap();
        assert!(err.contains("not supported"), "{err}");
        let mut truncated = jpeg_of(64, 64);
        truncated.truncate(200);
        assert!(decode(&truncated).is_err());
    }
}
