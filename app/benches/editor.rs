//! `cargo bench -p app --bench editor`: the picture editor's pipeline, natively, on generated
//! 12 MP and 48 MP JPEGs. It prints figures (median and minimum over a few runs) and asserts
//! nothing: timings belong in the README, not in tests.
//!
//! The browser runs the same code compiled to WASM; `cargo xtask bench-editor` measures that.

use std::hint::black_box;
use std::time::{Duration, Instant};

use app::editor::transform::Crop;
use app::editor::{encode_jpeg, Photo, OUTPUT_SIZE, PREVIEW_SIZE};
use image::codecs::jpeg::JpegEncoder;
use image::RgbImage;

/// What a phone camera writes, 12 MP and 48 MP (4:3), with how many times to decode each:
/// (name, width, height, decode runs).
const PHOTOS: [(&str, u32, u32, usize); 2] = [("12 MP", 4000, 3000, 10), ("48 MP", 8000, 6000, 5)];

fn main() {
    // Crops a user plausibly saves: untouched, zoomed and tilted, and zoomed all the way in.
    let crops = [
        ("zoom 1, 0°", Crop::default()),
        (
            "zoom 2, 30°",
            Crop {
                zoom: 2.0,
                rotation_deg: 30.0,
                center_x: 0.45,
                center_y: 0.4,
                ..Crop::default()
            },
        ),
        (
            "zoom 5, -90°",
            Crop {
                zoom: 5.0,
                rotation_deg: -90.0,
                ..Crop::default()
            },
        ),
    ];
    for (name, width, height, runs) in PHOTOS {
        let jpeg = photo_jpeg(width, height);
        println!(
            "{name} ({width}×{height}), a {:.1} MB JPEG:",
            jpeg.len() as f64 / 1e6
        );
        // (The copy of the bytes, which the Photo keeps, is part of what the browser does too.)
        bench("decode (file bytes → Photo)", runs, || {
            Photo::decode(jpeg.clone())
        });
        let photo = Photo::decode(jpeg.clone()).expect("the generated JPEG decodes");
        for (label, crop) in crops {
            bench(&format!("preview {PREVIEW_SIZE} px, {label}"), 50, || {
                photo.preview(crop, PREVIEW_SIZE)
            });
        }
        for (label, crop) in crops {
            bench(&format!("export (Save), {label}"), 20, || {
                photo.export(crop)
            });
        }
        // The encoder's share of an export, on its own.
        let picture = photo.preview(Crop::default(), OUTPUT_SIZE);
        bench("  of which encode_jpeg 512×512", 50, || {
            encode_jpeg(&picture)
        });
    }
}

/// Runs `f` `runs` times (after one warm-up run) and prints the median and the fastest.
fn bench<T>(what: &str, runs: usize, mut f: impl FnMut() -> T) {
    black_box(f());
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            black_box(f());
            started.elapsed()
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  {what:<40} median {:>8.2} ms   min {:>8.2} ms   ({runs} runs)",
        ms(times[runs / 2]),
        ms(times[0])
    );
}

/// A deterministic stand-in for a photo, encoded as a camera would (quality 90): smooth
/// gradients and shapes plus sensor-like noise. Flat colour would compress to almost nothing
/// and decode unrealistically fast; the noise gives the entropy decoder real work and the file
/// a phone photo's size.
fn photo_jpeg(width: u32, height: u32) -> Vec<u8> {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut noise = move || {
        // xorshift64: reproducible without a dependency.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 56) as i32 % 24 - 12
    };
    let (w, h) = (width as f32, height as f32);
    let pixels = RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32 / w, y as f32 / h);
        // Large, smooth structure, as in a face or a landscape.
        let wave = ((fx * 9.0).sin() * (fy * 7.0).cos() * 40.0) as i32;
        let base = [
            40 + (fx * 160.0) as i32 + wave,
            60 + (fy * 140.0) as i32 - wave,
            180 - ((fx + fy) * 70.0) as i32,
        ];
        image::Rgb(base.map(|c| (c + noise()).clamp(0, 255) as u8))
    });
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&pixels)
        .expect("encoding an in-memory image");
    out
}
