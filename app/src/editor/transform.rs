//! The crop/zoom/rotate transform. The preview and the uploaded picture both come from
//! [`render`], at different sizes and from differently scaled copies of the photo, so what the
//! user sees is what gets saved.
//!
//! Parameters are resolution-independent: the crop centre is a fraction of the photo's width and
//! height, and zoom is relative to the largest circle that fits. That is what lets the preview
//! work from a small copy and the output from a larger one.

use image::{Rgb, RgbImage, RgbaImage};

pub const MIN_ZOOM: f32 = 1.0;
pub const MAX_ZOOM: f32 = 5.0;

/// Where the crop circle sits on the photo.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crop {
    /// 1 = the largest circle that fits in the photo; 2 = half that diameter.
    pub zoom: f32,
    /// Clockwise rotation of the photo under the crop circle, in degrees (-180..=180).
    pub rotation_deg: f32,
    /// Centre of the circle as a fraction of the photo's width and height.
    pub center_x: f32,
    pub center_y: f32,
}

impl Default for Crop {
    fn default() -> Self {
        Self {
            zoom: 1.0,
            rotation_deg: 0.0,
            center_x: 0.5,
            center_y: 0.5,
        }
    }
}

impl Crop {
    /// Brings every field into range and moves the centre so that the circle stays inside the
    /// photo: the output never has empty areas. (A circle is unchanged by rotation, so this holds
    /// at every angle.)
    pub fn clamped(self, width: u32, height: u32) -> Self {
        let zoom = if self.zoom.is_finite() {
            self.zoom.clamp(MIN_ZOOM, MAX_ZOOM)
        } else {
            1.0
        };
        let rotation_deg = if self.rotation_deg.is_finite() {
            self.rotation_deg.clamp(-180.0, 180.0)
        } else {
            0.0
        };
        let (w, h) = (width.max(1) as f32, height.max(1) as f32);
        let radius = w.min(h) / zoom / 2.0;
        let clamp_axis = |fraction: f32, extent: f32| {
            let fraction = if fraction.is_finite() { fraction } else { 0.5 };
            let lo = radius / extent;
            (fraction).clamp(lo, 1.0 - lo)
        };
        Self {
            zoom,
            rotation_deg,
            center_x: clamp_axis(self.center_x, w),
            center_y: clamp_axis(self.center_y, h),
        }
    }

    /// Moves the photo by a drag of (`dx`, `dy`) pixels in a view `view_size` pixels across.
    /// Dragging right moves the photo right, so the circle's centre moves left on the photo, and
    /// along the photo's own (rotated) axes.
    pub fn dragged(self, dx: f32, dy: f32, view_size: f32, width: u32, height: u32) -> Self {
        let (w, h) = (width.max(1) as f32, height.max(1) as f32);
        let photo_px_per_view_px = w.min(h) / self.zoom / view_size.max(1.0);
        let (sin, cos) = (-self.rotation_deg).to_radians().sin_cos();
        let (rx, ry) = (dx * cos - dy * sin, dx * sin + dy * cos);
        Self {
            center_x: self.center_x - rx * photo_px_per_view_px / w,
            center_y: self.center_y - ry * photo_px_per_view_px / h,
            ..self
        }
        .clamped(width, height)
    }
}

/// Renders the square `size`×`size` picture the crop describes. Transparent areas are flattened
/// onto white, since the output is a JPEG.
pub fn render(photo: &RgbaImage, crop: Crop, size: u32) -> RgbImage {
    let (w, h) = photo.dimensions();
    let crop = crop.clamped(w, h);
    let mut out = RgbImage::new(size, size);
    if w == 0 || h == 0 || size == 0 {
        return out;
    }
    // Photo pixels per output pixel, and the inverse rotation mapping output axes to photo axes.
    let scale = w.min(h) as f32 / crop.zoom / size as f32;
    let (sin, cos) = (-crop.rotation_deg).to_radians().sin_cos();
    let (cx, cy) = (crop.center_x * w as f32, crop.center_y * h as f32);
    let half = size as f32 / 2.0;
    // Step vectors: moving one output pixel right or down moves this far on the photo.
    let (step_x, step_y) = ((cos * scale, sin * scale), (-sin * scale, cos * scale));
    for (oy, row) in out.rows_mut().enumerate() {
        let dy = oy as f32 + 0.5 - half;
        let mut sx = cx + (0.5 - half) * step_x.0 + dy * step_y.0;
        let mut sy = cy + (0.5 - half) * step_x.1 + dy * step_y.1;
        for pixel in row {
            *pixel = sample(photo, sx, sy);
            sx += step_x.0;
            sy += step_x.1;
        }
    }
    out
}

/// Bilinear sample at a point in photo coordinates (pixel centres at +0.5), flattened on white.
/// Points outside the photo clamp to its edge, which only happens for the sub-pixel border.
fn sample(photo: &RgbaImage, x: f32, y: f32) -> Rgb<u8> {
    let (w, h) = photo.dimensions();
    let fx = (x - 0.5).clamp(0.0, (w - 1) as f32);
    let fy = (y - 0.5).clamp(0.0, (h - 1) as f32);
    let (x0, y0) = (fx as u32, fy as u32);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
    let p = |x, y| photo.get_pixel(x, y).0;
    let (a, b, c, d) = (p(x0, y0), p(x1, y0), p(x0, y1), p(x1, y1));
    let mut rgb = [0u8; 3];
    let lerp = |i: usize| {
        let top = a[i] as f32 * (1.0 - tx) + b[i] as f32 * tx;
        let bottom = c[i] as f32 * (1.0 - tx) + d[i] as f32 * tx;
        top * (1.0 - ty) + bottom * ty
    };
    let alpha = lerp(3) / 255.0;
    for (i, channel) in rgb.iter_mut().enumerate() {
        // Premultiplying per corner would be more exact at alpha edges; at avatar sizes the
        // difference is invisible, and this keeps the inner loop short.
        *channel = (lerp(i) * alpha + 255.0 * (1.0 - alpha)).round() as u8;
    }
    Rgb(rgb)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use image::Rgba;

    /// The largest channel difference between `preview` and `output` scaled to its size.
    pub(crate) fn difference_when_scaled(preview: &RgbImage, output: &RgbImage) -> u8 {
        let (w, h) = preview.dimensions();
        let scaled = image::imageops::resize(output, w, h, image::imageops::FilterType::Triangle);
        preview
            .pixels()
            .zip(scaled.pixels())
            .flat_map(|(a, b)| a.0.into_iter().zip(b.0).map(|(x, y)| x.abs_diff(y)))
            .max()
            .unwrap_or(0)
    }

    /// A photo whose four quadrants have four colours, so orientation is easy to check.
    fn quadrants(w: u32, h: u32) -> RgbaImage {
        RgbaImage::from_fn(w, h, |x, y| match (x < w / 2, y < h / 2) {
            (true, true) => Rgba([255, 0, 0, 255]),     // top-left red
            (false, true) => Rgba([0, 255, 0, 255]),    // top-right green
            (true, false) => Rgba([0, 0, 255, 255]),    // bottom-left blue
            (false, false) => Rgba([255, 255, 0, 255]), // bottom-right yellow
        })
    }

    fn near(a: Rgb<u8>, b: [u8; 3]) -> bool {
        a.0.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 8)
    }

    #[test]
    fn identity_crop_of_a_square_photo_keeps_the_layout() {
        let out = render(&quadrants(100, 100), Crop::default(), 50);
        assert!(near(*out.get_pixel(5, 5), [255, 0, 0]));
        assert!(near(*out.get_pixel(45, 5), [0, 255, 0]));
        assert!(near(*out.get_pixel(5, 45), [0, 0, 255]));
        assert!(near(*out.get_pixel(45, 45), [255, 255, 0]));
    }

    #[test]
    fn rotating_90_degrees_clockwise_moves_top_left_to_top_right() {
        let crop = Crop {
            rotation_deg: 90.0,
            ..Crop::default()
        };
        let out = render(&quadrants(100, 100), crop, 50);
        assert!(
            near(*out.get_pixel(45, 5), [255, 0, 0]),
            "{:?}",
            out.get_pixel(45, 5)
        );
        assert!(near(*out.get_pixel(5, 5), [0, 0, 255]));
    }

    #[test]
    fn zooming_in_on_a_corner_shows_only_that_corner() {
        let crop = Crop {
            zoom: 4.0,
            center_x: 0.2,
            center_y: 0.8,
            ..Crop::default()
        };
        let out = render(&quadrants(200, 200), crop, 32);
        assert!(out.pixels().all(|p| near(*p, [0, 0, 255])));
    }

    #[test]
    fn the_circle_never_leaves_the_photo() {
        let crop = Crop {
            zoom: 1.0,
            rotation_deg: 33.0,
            center_x: 0.0,
            center_y: 1.0,
        }
        .clamped(300, 100);
        // A 100-px circle in a 300×100 photo: the centre can move along x only.
        assert!((crop.center_y - 0.5).abs() < 1e-6);
        assert!((crop.center_x - 50.0 / 300.0).abs() < 1e-6);
        let wild = Crop {
            zoom: f32::NAN,
            rotation_deg: 720.0,
            center_x: f32::INFINITY,
            center_y: -3.0,
        }
        .clamped(10, 10);
        assert_eq!(wild.zoom, 1.0);
        assert_eq!(wild.rotation_deg, 180.0);
    }

    #[test]
    fn transparency_is_flattened_onto_white() {
        let clear = RgbaImage::from_pixel(10, 10, Rgba([0, 0, 0, 0]));
        let out = render(&clear, Crop::default(), 4);
        assert!(out.pixels().all(|p| p.0 == [255, 255, 255]));
    }

    #[test]
    fn dragging_right_moves_the_photo_right() {
        let start = Crop {
            zoom: 2.0,
            ..Crop::default()
        };
        let moved = start.dragged(10.0, 0.0, 100.0, 200, 200);
        assert!(moved.center_x < start.center_x);
        assert_eq!(moved.center_y, start.center_y);
        // Upside down, the same drag moves the centre the other way on the photo.
        let flipped = Crop {
            rotation_deg: 180.0,
            ..start
        };
        assert!(flipped.dragged(10.0, 0.0, 100.0, 200, 200).center_x > start.center_x);
    }

    #[test]
    fn preview_and_output_agree_when_scaled_down() {
        // The WYSIWYG promise: the 512 output, scaled to preview size, matches the preview made
        // from a smaller copy of the photo.
        let photo = RgbaImage::from_fn(1200, 900, |x, y| {
            Rgba([(x / 5) as u8, (y / 4) as u8, ((x + y) / 9) as u8, 255])
        });
        let small =
            image::imageops::resize(&photo, 400, 300, image::imageops::FilterType::Triangle);
        for crop in [
            Crop::default(),
            Crop {
                zoom: 1.7,
                rotation_deg: 37.0,
                center_x: 0.4,
                center_y: 0.55,
            },
            Crop {
                zoom: 3.0,
                rotation_deg: -120.0,
                center_x: 0.7,
                center_y: 0.3,
            },
        ] {
            let preview = render(&small, crop, 128);
            let worst = difference_when_scaled(&preview, &render(&photo, crop, 512));
            assert!(
                worst <= 12,
                "preview and output differ by {worst} for {crop:?}"
            );
        }
    }
}
