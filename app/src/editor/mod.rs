//! The picture editor: decoding the chosen photo, the crop transform, and the JPEG output.
//! All of it but `open` is plain Rust, so it runs natively in tests and benchmarks and in WASM in
//! the browser. Pages use the async functions (`open`, `export`, `dialog`, `preload`): in the
//! browser they load the editor's code on first use (see `lazy`).

mod decode;
mod dialog;
mod lazy;
mod open;
pub mod transform;

pub use decode::{
    decode_at_least, flatten, DecodeError, Decoded, MAX_INPUT_BYTES, MAX_INPUT_PIXELS,
};
pub use dialog::{ImageEditor, PREVIEW_SIZE};
pub use lazy::{dialog, export, preload};
pub use open::{after_paint, open};
use transform::{render, Crop};

use image::metadata::Orientation;
use image::RgbImage;

use crate::domain::Rendition;

/// Side of the uploaded square picture.
pub const OUTPUT_SIZE: u32 = 512;
// The small rendition is the picture halved twice: each of its pixels the mean of 4×4.
const _: () = assert!(OUTPUT_SIZE == 4 * Rendition::SMALL_SIDE);
/// JPEG quality of the upload: visually clean at avatar sizes, a few tens of KB.
pub const OUTPUT_QUALITY: u8 = 85;
/// Shortest side a photo is decoded at when it opens: the preview at every zoom and a Save up to
/// zoom 2 (2 × 512) need no more. A Save zoomed in further decodes the file again at the
/// resolution it needs (see [`Photo::export`]), so opening never pays for detail that is rarely
/// used, and no full-resolution copy stays alive while the dialog is open.
pub const WORKING_SIZE: u32 = 1024;

/// A photo opened in the editor: at its working resolution and in successive halvings of it,
/// so that every render, preview or Save, samples a copy with between one and two photo pixels
/// per output pixel. (Bilinear sampling of a copy much larger than the output would alias;
/// resizing the whole photo at every repaint would be slow.) The pixels stay as the file stores
/// them; the render shows them upright.
pub struct Photo {
    /// Largest first; each level half the width and height of the one before.
    levels: Vec<RgbImage>,
    orientation: Orientation,
    /// The file, kept when it holds more detail than `levels[0]`, for Saves that need it.
    original: Option<Vec<u8>>,
}

impl Photo {
    /// Decodes a picked file at the working resolution.
    pub fn decode(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        let decoded = decode_at_least(&bytes, WORKING_SIZE)?;
        let (full_w, full_h) = decoded.full_size;
        let has_more = full_w.min(full_h) > short_side(&decoded.image);
        Ok(Self::new(
            decoded.image,
            decoded.orientation,
            has_more.then_some(bytes),
        ))
    }

    /// A photo the browser decoded (see `open`), upright: what it gave is all there is.
    pub fn from_pixels(image: RgbImage) -> Self {
        Self::new(image, Orientation::NoTransforms, None)
    }

    fn new(image: RgbImage, orientation: Orientation, original: Option<Vec<u8>>) -> Self {
        let mut levels = vec![image];
        // Down to the smallest copy any render uses: the preview at zoom 1.
        while let Some(half) = levels
            .last()
            .filter(|l| short_side(l) / 2 >= PREVIEW_SIZE)
            .map(halve)
        {
            levels.push(half);
        }
        Self {
            levels,
            orientation,
            original,
        }
    }

    /// Width and height of the working copy, upright; the crop is relative, so only the ratio
    /// matters.
    pub fn dimensions(&self) -> (u32, u32) {
        let (w, h) = self.levels[0].dimensions();
        transform::upright_size(w, h, self.orientation)
    }

    /// The smallest level that still has one pixel per output pixel across the crop circle.
    fn level_for(&self, crop: Crop, size: u32) -> &RgbImage {
        let needed = needed_short_side(crop, size);
        self.levels
            .iter()
            .rev()
            .find(|level| short_side(level) >= needed)
            .unwrap_or(&self.levels[0])
    }

    /// The `size`×`size` preview of `crop`.
    pub fn preview(&self, crop: Crop, size: u32) -> RgbImage {
        render(self.level_for(crop, size), self.orientation, crop, size)
    }

    /// Whether [`export`](Self::export) decodes the file again (a zoom deeper than the working
    /// copy serves), which takes a decode's time rather than a few milliseconds.
    pub fn export_decodes(&self, crop: Crop) -> bool {
        self.original.is_some()
            && short_side(&self.levels[0]) < needed_short_side(crop, OUTPUT_SIZE)
    }

    /// The JPEGs to upload: the same transform as the preview, at [`OUTPUT_SIZE`], and its small
    /// rendition from the same pixels. Zoomed in further than the working copy can serve, the
    /// file is decoded again at the resolution the crop needs (and that copy dropped
    /// afterwards).
    pub fn export(&self, crop: Crop) -> Result<Exported, String> {
        let picture = match &self.original {
            Some(bytes) if self.export_decodes(crop) => {
                let needed = needed_short_side(crop, OUTPUT_SIZE);
                let sharper = decode_at_least(bytes, needed).map_err(|e| e.message())?;
                render(&sharper.image, sharper.orientation, crop, OUTPUT_SIZE)
            }
            _ => render(
                self.level_for(crop, OUTPUT_SIZE),
                self.orientation,
                crop,
                OUTPUT_SIZE,
            ),
        };
        let small = halve(&halve(&picture));
        Ok(Exported {
            picture: encode_jpeg(&picture)?,
            small: encode_jpeg(&small)?,
        })
    }
}

/// What a Save uploads: the picture, and its small rendition for lists
/// ([`Rendition::SMALL_SIDE`] a side).
pub struct Exported {
    pub picture: Vec<u8>,
    pub small: Vec<u8>,
}

/// Photo pixels a `size`-pixel render of `crop` needs across the photo's shorter side.
fn needed_short_side(crop: Crop, size: u32) -> u32 {
    (crop.zoom * size as f32).ceil() as u32
}

fn short_side(image: &RgbImage) -> u32 {
    image.width().min(image.height())
}

/// Half the width and height, each pixel the mean of a 2×2 block (an odd last row or column is
/// dropped: less than a pixel, invisible at these sizes).
fn halve(image: &RgbImage) -> RgbImage {
    let (w, h) = (image.width() / 2, image.height() / 2);
    let stride = image.width() as usize * 3;
    let src = image.as_raw();
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    for y in 0..h as usize {
        let top = &src[2 * y * stride..][..stride];
        let bottom = &src[(2 * y + 1) * stride..][..stride];
        for (a, b) in top
            .chunks_exact(6)
            .zip(bottom.chunks_exact(6))
            .take(w as usize)
        {
            for c in 0..3 {
                let sum =
                    u16::from(a[c]) + u16::from(a[c + 3]) + u16::from(b[c]) + u16::from(b[c + 3]);
                out.push(((sum + 2) / 4) as u8);
            }
        }
    }
    RgbImage::from_raw(w, h, out).expect("the buffer has w × h pixels")
}

/// Baseline JPEG with no metadata at all: the encoder writes a bare JFIF header and the pixels,
/// so no EXIF, GPS or ICC data from the original can survive. (Optimised Huffman tables would
/// save a few KB, but zune-jpeg, the server's decoder, misread jpeg-encoder 0.7's: standard
/// tables are what every decoder has been tested with.)
pub fn encode_jpeg(picture: &RgbImage) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(64 * 1024);
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, OUTPUT_QUALITY);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    encoder.set_chroma_subsampling_method(jpeg_encoder::ChromaSubsamplingMethod::Average);
    let side = |n: u32| u16::try_from(n).map_err(|_| "The picture is too large.".to_string());
    encoder
        .encode(
            picture.as_raw(),
            side(picture.width())?,
            side(picture.height())?,
            jpeg_encoder::ColorType::Rgb,
        )
        .map_err(|e| format!("Could not encode the picture: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::imageops::FilterType;

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

    fn decode(bytes: &[u8]) -> Result<Photo, DecodeError> {
        Photo::decode(bytes.to_vec())
    }

    #[test]
    fn exif_orientation_is_applied_so_phone_photos_are_upright() {
        let photo = decode(&phone_jpeg(&left_red_right_blue(), 6)).unwrap();
        // Rotated 90° clockwise: 20 wide, 40 tall, and the left half is now the top half.
        assert_eq!(photo.dimensions(), (20, 40));
        // At zoom 1 the circle spans the middle 20×20, half of it from each colour.
        let shown = photo.preview(Crop::default(), 40);
        let top = shown.get_pixel(20, 5).0;
        let bottom = shown.get_pixel(20, 35).0;
        assert!(top[0] > 150 && top[2] < 100, "top {top:?}");
        assert!(bottom[2] > 150 && bottom[0] < 100, "bottom {bottom:?}");
    }

    #[test]
    fn the_export_carries_no_metadata_even_when_the_input_had_gps() {
        let input = phone_jpeg(&left_red_right_blue(), 1);
        let contains =
            |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
        assert!(contains(&input, b"Exif"), "the fixture has EXIF");
        let output = decode(&input)
            .unwrap()
            .export(Crop::default())
            .unwrap()
            .picture;
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
    fn the_small_rendition_is_the_picture_scaled_down() {
        let photo = Photo::from_pixels(image::RgbImage::from_fn(1024, 1024, |x, y| {
            image::Rgb([(x / 4) as u8, (y / 4) as u8, ((x + y) / 8) as u8])
        }));
        let exported = photo.export(Crop::default()).unwrap();
        let picture = image::load_from_memory(&exported.picture)
            .unwrap()
            .to_rgb8();
        let small = image::load_from_memory(&exported.small).unwrap().to_rgb8();
        assert_eq!(small.dimensions(), (128, 128));
        let scaled = image::imageops::resize(&picture, 128, 128, FilterType::Triangle);
        let differences: Vec<u32> = small
            .as_raw()
            .iter()
            .zip(scaled.as_raw())
            .map(|(a, b)| u32::from(a.abs_diff(*b)))
            .collect();
        let mean = differences.iter().sum::<u32>() as f64 / differences.len() as f64;
        assert!(mean < 4.0, "mean difference {mean}");
    }

    #[test]
    fn transparency_is_flattened_onto_white() {
        let clear = image::RgbaImage::from_pixel(400, 400, image::Rgba([0, 0, 0, 0]));
        let mut png = std::io::Cursor::new(Vec::new());
        clear.write_to(&mut png, image::ImageFormat::Png).unwrap();
        let photo = decode(png.get_ref()).unwrap();
        let shown = photo.preview(Crop::default(), 8);
        assert!(shown.pixels().all(|p| p.0 == [255, 255, 255]), "{shown:?}");
    }

    #[test]
    fn export_is_a_512_square_jpeg() {
        let photo = decode(&jpeg_of(1600, 1200)).unwrap();
        let sizes: Vec<_> = photo.levels.iter().map(|l| l.dimensions()).collect();
        assert_eq!(
            sizes,
            [(1600, 1200), (800, 600)],
            "1,200 px is within 2× of the working size"
        );
        let bytes = photo.export(Crop::default()).unwrap().picture;
        assert!(bytes.starts_with(&[0xFF, 0xD8, 0xFF]));
        let out = image::load_from_memory(&bytes).unwrap();
        assert_eq!((out.width(), out.height()), (OUTPUT_SIZE, OUTPUT_SIZE));
    }

    /// A 12 MP photo of one-pixel vertical stripes: detail that only the full resolution holds
    /// (any halving averages it to grey).
    fn stripes() -> Vec<u8> {
        let pixels = image::RgbImage::from_fn(4000, 3000, |x, _| {
            image::Rgb(if x % 2 == 0 { [10; 3] } else { [245; 3] })
        });
        encode_jpeg(&pixels).unwrap()
    }

    /// How far apart the darkest and the lightest pixel of the middle row are.
    fn contrast(jpeg: &[u8]) -> u8 {
        let out = image::load_from_memory(jpeg).unwrap().into_luma8();
        let row = out.rows().nth(out.height() as usize / 2).unwrap();
        let (lo, hi) = row.fold((255, 0), |(lo, hi), p| (p.0[0].min(lo), p.0[0].max(hi)));
        hi - lo
    }

    #[test]
    fn a_large_photo_opens_at_the_working_size_and_a_deep_zoom_decodes_more() {
        let photo = decode(&stripes()).unwrap();
        assert_eq!(
            photo.dimensions(),
            (2000, 1500),
            "decoded at 1/2, aspect ratio kept"
        );
        assert!(
            photo.original.is_some(),
            "the file is kept for deeper zooms"
        );
        // Zoom 2 needs 1,024 pixels across: the working copy has them, the stripes are mostly
        // gone (some moiré is left: 84 of 255 when this was written).
        let zoom = |zoom| Crop {
            zoom,
            ..Crop::default()
        };
        assert!(contrast(&photo.export(zoom(2.0)).unwrap().picture) < 120);
        // Zoom 5 needs 2,560: the Save decodes the file again, at full size, and shows them
        // (229 when this was written).
        assert!(contrast(&photo.export(zoom(5.0)).unwrap().picture) > 200);
    }

    #[test]
    fn preview_and_output_agree_for_an_exif_rotated_photo() {
        // The WYSIWYG promise through the whole pipeline: decoded from a sideways phone JPEG,
        // the 512 output scaled to preview size matches the preview, which comes from a smaller
        // level of the photo.
        let pixels = image::RgbImage::from_fn(1600, 1200, |x, y| {
            image::Rgb([(x / 7) as u8, (y / 5) as u8, ((x + 2 * y) / 16) as u8])
        });
        let photo = decode(&phone_jpeg(&pixels, 6)).unwrap();
        assert_eq!(photo.dimensions(), (1200, 1600));
        for crop in [
            Crop::default(),
            Crop {
                zoom: 1.8,
                rotation_deg: 37.0,
                center_x: 0.4,
                center_y: 0.55,
                mirrored: true,
            },
            Crop {
                zoom: 4.0,
                rotation_deg: -120.0,
                center_x: 0.6,
                center_y: 0.3,
                ..Crop::default()
            },
        ] {
            let preview = photo.preview(crop, 128);
            let output = image::load_from_memory(&photo.export(crop).unwrap().picture)
                .unwrap()
                .into_rgb8();
            let worst = transform::tests::difference_when_scaled(&preview, &output);
            assert!(
                worst <= 16,
                "preview and output differ by {worst} for {crop:?}"
            );
        }
    }

    #[test]
    fn unsupported_damaged_and_oversized_files_get_a_clear_message() {
        let svg = decode(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
            .err()
            .unwrap();
        assert_eq!(svg, DecodeError::Unsupported);
        assert!(svg.message().contains("JPEG, PNG, WebP, GIF or BMP"));
        // A format `image` knows but this build leaves to the browser (an ICO header).
        let ico = decode(&[
            0, 0, 1, 0, 1, 0, 16, 16, 0, 0, 1, 0, 32, 0, 0, 0, 0, 0, 22, 0, 0, 0,
        ]);
        assert_eq!(ico.err(), Some(DecodeError::Unsupported));

        let mut truncated = jpeg_of(64, 64);
        truncated.truncate(200);
        assert_eq!(decode(&truncated).err(), Some(DecodeError::Damaged));

        // A real JPEG whose header claims 12,000×10,000: refused before any decoding.
        let mut huge = jpeg_of(16, 16);
        let sof = huge.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
        huge[sof + 5..sof + 9].copy_from_slice(&[0x27, 0x10, 0x2E, 0xE0]);
        let message = decode(&huge).err().unwrap().message();
        assert!(
            message.contains("12000×10000") && message.contains("100 megapixels"),
            "{message}"
        );

        let message = DecodeError::too_many_bytes(60 * 1024 * 1024).message();
        assert!(
            message.contains("60 MB") && message.contains("under 50 MB"),
            "{message}"
        );
    }
}
