//! Turning a region of a frame into a model's input tensor.
//!
//! One affine, bilinear sampler serves both the whole-frame letterbox of the detectors and
//! the rotated hand crops of the landmark model, as in MediaPipe's ImageToTensor.

use crate::frame::RgbImage;

/// A rotated rectangle in image pixels. `rotation` is in radians, counter-clockwise as seen
/// in the image (y down), applied around the centre.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Roi {
    pub cx: f32,
    pub cy: f32,
    pub width: f32,
    pub height: f32,
    pub rotation: f32,
}

impl Roi {
    /// The square that contains the whole image, centred: a letterbox without distortion.
    pub fn letterbox(image: &RgbImage) -> Self {
        let side = image.width.max(image.height) as f32;
        Self {
            cx: image.width as f32 / 2.0,
            cy: image.height as f32 / 2.0,
            width: side,
            height: side,
            rotation: 0.0,
        }
    }

    /// Maps a point given in the ROI's normalised coordinates (0..1 across the crop) to image pixels.
    #[inline]
    pub fn to_image(&self, u: f32, v: f32) -> [f32; 2] {
        let (sin, cos) = self.rotation.sin_cos();
        let dx = (u - 0.5) * self.width;
        let dy = (v - 0.5) * self.height;
        [self.cx + dx * cos - dy * sin, self.cy + dx * sin + dy * cos]
    }
}

/// Value range a model expects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Range {
    /// [-1, 1]
    Signed,
    /// [0, 1]
    Unit,
}

/// Fills `out` (NHWC, `size`×`size`×3) with the ROI resampled bilinearly; outside the image is black.
pub fn sample_roi(image: &RgbImage, roi: &Roi, size: usize, range: Range, out: &mut [f32]) {
    debug_assert_eq!(out.len(), size * size * 3);
    let (scale, offset) = match range {
        Range::Signed => (2.0 / 255.0, -1.0),
        Range::Unit => (1.0 / 255.0, 0.0),
    };
    let (w, h) = (image.width as i32, image.height as i32);
    let stride = image.width as usize * 3;
    let data = &image.data;
    let (sin, cos) = roi.rotation.sin_cos();
    let step_u = roi.width / size as f32;
    let step_v = roi.height / size as f32;
    // Image position of output pixel (0,0)'s centre, and the per-pixel steps along u and v.
    let du = [cos * step_u, sin * step_u];
    let dv = [-sin * step_v, cos * step_v];
    let origin = roi.to_image(0.5 / size as f32, 0.5 / size as f32);
    for v in 0..size {
        let row_x = origin[0] + dv[0] * v as f32 - 0.5;
        let row_y = origin[1] + dv[1] * v as f32 - 0.5;
        let row_out = &mut out[v * size * 3..(v + 1) * size * 3];
        for u in 0..size {
            let x = row_x + du[0] * u as f32;
            let y = row_y + du[1] * u as f32;
            let x0 = floor(x);
            let y0 = floor(y);
            let fx = x - x0;
            let fy = y - y0;
            let (x0, y0) = (x0 as i32, y0 as i32);
            let o = &mut row_out[u * 3..u * 3 + 3];
            if x0 >= 0 && y0 >= 0 && x0 + 1 < w && y0 + 1 < h {
                // All four neighbours inside (nearly every pixel of a crop): no per-neighbour
                // checks. The same products summed in the same order as below, so the result
                // is the general path's, bit for bit (a zero weight adds exactly +0.0 there).
                let (wx0, wy0) = (1.0 - fx, 1.0 - fy);
                let weights = [wx0 * wy0, fx * wy0, wx0 * fy, fx * fy];
                let i = y0 as usize * stride + x0 as usize * 3;
                let (top, bottom) = (&data[i..i + 6], &data[i + stride..i + stride + 6]);
                for c in 0..3 {
                    let acc = top[c] as f32 * weights[0]
                        + top[c + 3] as f32 * weights[1]
                        + bottom[c] as f32 * weights[2]
                        + bottom[c + 3] as f32 * weights[3];
                    o[c] = acc * scale + offset;
                }
                continue;
            }
            let mut acc = [0f32; 3];
            for (dy, wy) in [(0, 1.0 - fy), (1, fy)] {
                let yy = y0 + dy;
                if yy < 0 || yy >= h || wy == 0.0 {
                    continue;
                }
                for (dx, wx) in [(0, 1.0 - fx), (1, fx)] {
                    let xx = x0 + dx;
                    if xx < 0 || xx >= w || wx == 0.0 {
                        continue;
                    }
                    let i = yy as usize * stride + xx as usize * 3;
                    let wgt = wx * wy;
                    acc[0] += data[i] as f32 * wgt;
                    acc[1] += data[i + 1] as f32 * wgt;
                    acc[2] += data[i + 2] as f32 * wgt;
                }
            }
            o[0] = acc[0] * scale + offset;
            o[1] = acc[1] * scale + offset;
            o[2] = acc[2] * scale + offset;
        }
    }
}

/// `v.floor()` without the call to libm's `floorf` that the baseline x86-64 target (no
/// SSE4.1 `roundss`) makes of it, twice per sampled pixel: the integer truncation, one down
/// for negative fractions. The same value as `floor` for every float (beyond ±2^31, where
/// floats are whole numbers anyway, and for NaN it is `floor` itself).
#[inline(always)]
fn floor(v: f32) -> f32 {
    const LIMIT: f32 = 2_147_483_520.0;
    if !(-LIMIT..=LIMIT).contains(&v) {
        return v.floor();
    }
    let t = v as i32 as f32;
    if t > v { t - 1.0 } else { t }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                data.extend([(x * 255 / (w - 1)) as u8, (y * 255 / (h - 1)) as u8, 128]);
            }
        }
        RgbImage::new(w, h, data).unwrap()
    }

    #[test]
    fn letterbox_pads_a_wide_image_top_and_bottom() {
        let img = gradient(200, 100);
        let mut out = vec![0f32; 64 * 64 * 3];
        sample_roi(&img, &Roi::letterbox(&img), 64, Range::Unit, &mut out);
        let px = |u: usize, v: usize| &out[(v * 64 + u) * 3..(v * 64 + u) * 3 + 3];
        assert_eq!(px(32, 2), [0.0, 0.0, 0.0], "padding is black");
        assert!(
            (px(32, 32)[2] - 128.0 / 255.0).abs() < 1e-3,
            "inside keeps colour"
        );
        assert!(px(1, 32)[0] < 0.05 && px(62, 32)[0] > 0.95, "x runs across");
    }

    #[test]
    fn rotation_by_a_half_turn_flips_the_crop() {
        let img = gradient(100, 100);
        let mut a = vec![0f32; 16 * 16 * 3];
        let mut b = vec![0f32; 16 * 16 * 3];
        let roi = Roi {
            cx: 50.0,
            cy: 50.0,
            width: 40.0,
            height: 40.0,
            rotation: 0.0,
        };
        sample_roi(&img, &roi, 16, Range::Signed, &mut a);
        sample_roi(
            &img,
            &Roi {
                rotation: std::f32::consts::PI,
                ..roi
            },
            16,
            Range::Signed,
            &mut b,
        );
        for v in 0..16 {
            for u in 0..16 {
                let pa = (v * 16 + u) * 3;
                let pb = ((15 - v) * 16 + (15 - u)) * 3;
                assert!((a[pa] - b[pb]).abs() < 1e-3 && (a[pa + 1] - b[pb + 1]).abs() < 1e-3);
            }
        }
    }

    #[test]
    fn floor_is_floor() {
        for v in [
            0.0f32,
            -0.0,
            0.5,
            -0.5,
            1.0,
            -1.0,
            1.5,
            -1.5,
            2.999_999_8,
            -2.999_999_8,
            1e-30,
            -1e-30,
            8_388_607.5,
            -8_388_607.5,
            2_147_483_520.0,
            -2_147_483_520.0,
            3e9,
            -3e9,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ] {
            assert_eq!(floor(v), v.floor(), "{v}");
        }
        assert!(floor(f32::NAN).is_nan());
        let mut v = -700.0f32;
        while v < 700.0 {
            assert_eq!(floor(v), v.floor(), "{v}");
            v += 0.013;
        }
    }

    #[test]
    fn roi_maps_corners_back_to_the_image() {
        let roi = Roi {
            cx: 10.0,
            cy: 20.0,
            width: 4.0,
            height: 2.0,
            rotation: std::f32::consts::FRAC_PI_2,
        };
        let [x, y] = roi.to_image(1.0, 0.5);
        assert!(
            (x - 10.0).abs() < 1e-5 && (y - 22.0).abs() < 1e-5,
            "{x},{y}"
        );
    }
}
