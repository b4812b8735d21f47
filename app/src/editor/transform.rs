//! The crop/zoom/rotate transform. The preview and the uploaded picture both come from
//! [`render`], at different sizes and from differently scaled copies of the photo, so what the
//! user sees is what gets saved.
//!
//! Parameters are resolution-independent: the crop centre is a fraction of the photo's width and
//! height, and zoom is relative to the largest circle that fits. That is what lets the preview
//! work from a small copy and the output from a larger one.

use image::metadata::Orientation;
use image::RgbImage;

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
    /// The photo mirrored left to right (a selfie shown as the person saw it). Every other
    /// field applies to the mirrored photo, so dragging and rotating work the same either way.
    pub mirrored: bool,
}

impl Default for Crop {
    fn default() -> Self {
        Self {
            zoom: 1.0,
            rotation_deg: 0.0,
            center_x: 0.5,
            center_y: 0.5,
            mirrored: false,
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
            mirrored: self.mirrored,
        }
    }

    /// Mirrors the picture as it is framed now: the same spot stays under the circle and the
    /// tilt turns the other way, so the result is exactly the current one seen in a mirror.
    pub fn flipped(self) -> Self {
        Self {
            mirrored: !self.mirrored,
            center_x: 1.0 - self.center_x,
            // `0 - r` rather than `-r`: no -0°, which would be announced as such.
            rotation_deg: 0.0 - self.rotation_deg,
            ..self
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

/// Renders the square `size`×`size` picture the crop describes, from a photo stored as its file
/// stores it and shown as `orientation` (EXIF) says. The orientation is folded into the same
/// affine map as the crop, so no upright copy of the photo is ever made.
pub fn render(photo: &RgbImage, orientation: Orientation, crop: Crop, size: u32) -> RgbImage {
    let (w, h) = photo.dimensions();
    let (upright_w, upright_h) = upright_size(w, h, orientation);
    let crop = crop.clamped(upright_w, upright_h);
    let mut out = RgbImage::new(size, size);
    if w == 0 || h == 0 || size == 0 {
        return out;
    }
    // In the upright picture: photo pixels per output pixel, and the inverse rotation mapping
    // output axes to photo axes.
    let scale = w.min(h) as f32 / crop.zoom / size as f32;
    let (sin, cos) = (-crop.rotation_deg).to_radians().sin_cos();
    let (cx, cy) = (
        crop.center_x * upright_w as f32,
        crop.center_y * upright_h as f32,
    );
    let half = size as f32 / 2.0;
    // Step vectors: moving one output pixel right or down moves this far on the (mirrored, if
    // so) upright photo, then back through the mirror, then through the orientation onto the
    // stored pixels.
    let stored = StoredFromUpright::new(orientation, w, h);
    let mirror = if crop.mirrored { -1.0 } else { 1.0 };
    let step_x = stored.vector(mirror * cos * scale, sin * scale);
    let step_y = stored.vector(mirror * -sin * scale, cos * scale);
    let origin = if crop.mirrored {
        stored.point(upright_w as f32 - cx, cy)
    } else {
        stored.point(cx, cy)
    };
    let src = photo.as_raw();
    for (oy, row) in out.chunks_exact_mut(size as usize * 3).enumerate() {
        let dy = oy as f32 + 0.5 - half;
        let dx = 0.5 - half;
        let mut sx = origin.0 + dx * step_x.0 + dy * step_y.0;
        let mut sy = origin.1 + dx * step_x.1 + dy * step_y.1;
        for pixel in row.chunks_exact_mut(3) {
            sample(src, w, h, sx, sy, pixel);
            sx += step_x.0;
            sy += step_x.1;
        }
    }
    out
}

/// Width and height of the picture as shown.
pub fn upright_size(w: u32, h: u32, orientation: Orientation) -> (u32, u32) {
    match orientation {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => (h, w),
        _ => (w, h),
    }
}

/// Where a point of the upright picture lies in the stored pixels: `stored = m · upright + t`,
/// with `m` a rotation or reflection by quarter turns (the eight EXIF orientations).
struct StoredFromUpright {
    m: [[f32; 2]; 2],
    t: (f32, f32),
}

impl StoredFromUpright {
    fn new(orientation: Orientation, w: u32, h: u32) -> Self {
        let (w, h) = (w as f32, h as f32);
        let (m, t) = match orientation {
            Orientation::NoTransforms => ([[1.0, 0.0], [0.0, 1.0]], (0.0, 0.0)),
            Orientation::FlipHorizontal => ([[-1.0, 0.0], [0.0, 1.0]], (w, 0.0)),
            Orientation::FlipVertical => ([[1.0, 0.0], [0.0, -1.0]], (0.0, h)),
            Orientation::Rotate180 => ([[-1.0, 0.0], [0.0, -1.0]], (w, h)),
            // Shown turned clockwise: the upright top-left is the stored bottom-left.
            Orientation::Rotate90 => ([[0.0, 1.0], [-1.0, 0.0]], (0.0, h)),
            Orientation::Rotate270 => ([[0.0, -1.0], [1.0, 0.0]], (w, 0.0)),
            Orientation::Rotate90FlipH => ([[0.0, 1.0], [1.0, 0.0]], (0.0, 0.0)),
            Orientation::Rotate270FlipH => ([[0.0, -1.0], [-1.0, 0.0]], (w, h)),
        };
        Self { m, t }
    }

    fn vector(&self, u: f32, v: f32) -> (f32, f32) {
        (
            self.m[0][0] * u + self.m[0][1] * v,
            self.m[1][0] * u + self.m[1][1] * v,
        )
    }

    fn point(&self, u: f32, v: f32) -> (f32, f32) {
        let (x, y) = self.vector(u, v);
        (x + self.t.0, y + self.t.1)
    }
}

/// Bilinear sample at a point in stored-photo coordinates (pixel centres at +0.5), with 8-bit
/// fixed-point weights, written to `out`. Points outside the photo clamp to its edge, which only
/// happens for the sub-pixel border. Written out by hand and always inlined: it is the inner
/// loop, and the app is built for size (`opt-level = "z"` inlines little and unrolls nothing).
#[inline(always)]
fn sample(src: &[u8], w: u32, h: u32, x: f32, y: f32, out: &mut [u8]) {
    let fx = (x - 0.5).clamp(0.0, (w - 1) as f32);
    let fy = (y - 0.5).clamp(0.0, (h - 1) as f32);
    let (x0, y0) = (fx as usize, fy as usize);
    let (x1, y1) = ((x0 + 1).min(w as usize - 1), (y0 + 1).min(h as usize - 1));
    let tx = ((fx - x0 as f32) * 256.0) as u32;
    let ty = ((fy - y0 as f32) * 256.0) as u32;
    // The four corners' weights sum to 65,536.
    let (wa, wb) = ((256 - tx) * (256 - ty), tx * (256 - ty));
    let (wc, wd) = ((256 - tx) * ty, tx * ty);
    let stride = w as usize * 3;
    let a = &src[y0 * stride + x0 * 3..][..3];
    let b = &src[y0 * stride + x1 * 3..][..3];
    let c = &src[y1 * stride + x0 * 3..][..3];
    let d = &src[y1 * stride + x1 * 3..][..3];
    let mix = |i: usize| {
        let sum = u32::from(a[i]) * wa
            + u32::from(b[i]) * wb
            + u32::from(c[i]) * wc
            + u32::from(d[i]) * wd;
        ((sum + (1 << 15)) >> 16) as u8
    };
    out[0] = mix(0);
    out[1] = mix(1);
    out[2] = mix(2);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use image::Rgb;

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
    fn quadrants(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| match (x < w / 2, y < h / 2) {
            (true, true) => Rgb([255, 0, 0]),     // top-left red
            (false, true) => Rgb([0, 255, 0]),    // top-right green
            (true, false) => Rgb([0, 0, 255]),    // bottom-left blue
            (false, false) => Rgb([255, 255, 0]), // bottom-right yellow
        })
    }

    fn near(a: Rgb<u8>, b: [u8; 3]) -> bool {
        a.0.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 8)
    }

    #[test]
    fn identity_crop_of_a_square_photo_keeps_the_layout() {
        let out = render(
            &quadrants(100, 100),
            Orientation::NoTransforms,
            Crop::default(),
            50,
        );
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
        let out = render(&quadrants(100, 100), Orientation::NoTransforms, crop, 50);
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
        let out = render(&quadrants(200, 200), Orientation::NoTransforms, crop, 32);
        assert!(out.pixels().all(|p| near(*p, [0, 0, 255])));
    }

    #[test]
    fn the_circle_never_leaves_the_photo() {
        let crop = Crop {
            zoom: 1.0,
            rotation_deg: 33.0,
            center_x: 0.0,
            center_y: 1.0,
            ..Crop::default()
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
            ..Crop::default()
        }
        .clamped(10, 10);
        assert_eq!(wild.zoom, 1.0);
        assert_eq!(wild.rotation_deg, 180.0);
    }

    #[test]
    fn flipping_mirrors_the_picture_and_flipping_back_restores_it() {
        let photo = quadrants(200, 100);
        let crop = Crop {
            zoom: 1.3,
            rotation_deg: 25.0,
            center_x: 0.4,
            center_y: 0.45,
            ..Crop::default()
        }
        .clamped(200, 100);
        let out = render(&photo, Orientation::NoTransforms, crop, 40);
        let mirrored = render(&photo, Orientation::NoTransforms, crop.flipped(), 40);
        for (x, y, pixel) in out.enumerate_pixels() {
            let seen = mirrored.get_pixel(39 - x, y);
            assert!(
                pixel.0.iter().zip(seen.0).all(|(a, b)| a.abs_diff(b) <= 2),
                "({x},{y}): {pixel:?} mirrored is {seen:?}"
            );
        }
        let back = crop.flipped().flipped();
        assert!(
            (back.center_x - crop.center_x).abs() < 1e-6 && back.rotation_deg == crop.rotation_deg
        );
        assert!(!back.mirrored);
        assert!(Crop::default().flipped().rotation_deg.is_sign_positive());
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
        let photo = RgbImage::from_fn(1200, 900, |x, y| {
            Rgb([(x / 5) as u8, (y / 4) as u8, ((x + y) / 9) as u8])
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
                ..Crop::default()
            },
            Crop {
                zoom: 3.0,
                rotation_deg: -120.0,
                center_x: 0.7,
                center_y: 0.3,
                mirrored: true,
            },
        ] {
            let preview = render(&small, Orientation::NoTransforms, crop, 128);
            let worst = difference_when_scaled(
                &preview,
                &render(&photo, Orientation::NoTransforms, crop, 512),
            );
            assert!(
                worst <= 12,
                "preview and output differ by {worst} for {crop:?}"
            );
        }
    }
}

#[cfg(test)]
mod orientation_tests {
    use super::*;
    use image::DynamicImage;

    /// Folding the orientation into the render is the same as turning the photo first, for all
    /// eight EXIF orientations, at an angle and off centre.
    #[test]
    fn rendering_with_an_orientation_equals_rendering_the_turned_photo() {
        let stored = RgbImage::from_fn(90, 60, |x, y| {
            image::Rgb([(x * 2) as u8, (y * 4) as u8, ((x * y) % 256) as u8])
        });
        let crop = Crop {
            zoom: 1.5,
            rotation_deg: 20.0,
            center_x: 0.45,
            center_y: 0.55,
            mirrored: true,
        };
        for exif in 1..=8 {
            let orientation = Orientation::from_exif(exif).unwrap();
            let mut turned = DynamicImage::ImageRgb8(stored.clone());
            turned.apply_orientation(orientation);
            let expected = render(&turned.into_rgb8(), Orientation::NoTransforms, crop, 40);
            let folded = render(&stored, orientation, crop, 40);
            let worst = expected
                .as_raw()
                .iter()
                .zip(folded.as_raw())
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            assert!(worst <= 2, "orientation {exif}: off by {worst}");
        }
    }
}
