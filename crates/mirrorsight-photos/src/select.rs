//! Picking the photo: a ring of recent full-resolution frames and a sharpness score
//! (variance of the Laplacian) over the shopper's region.
//!
//! The score is computed on a block-averaged grey copy of the region: the averaging costs one
//! pass over the pixels (which a grey conversion needs anyway) and keeps the Laplacian pass
//! small, while blocks of a few pixels still separate motion blur from a sharp pose.

use std::collections::VecDeque;
use std::sync::Arc;

use thiserror::Error;

/// Longest side of the grey copy the Laplacian runs on.
const SCORE_MAX_SIDE: u32 = 480;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Rgb8,
    /// What OpenCV delivers.
    Bgr8,
    Gray8,
}

impl PixelFormat {
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgb8 | PixelFormat::Bgr8 => 3,
            PixelFormat::Gray8 => 1,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame is {width}x{height}: both sides must be at least 1")]
    Empty { width: u32, height: u32 },
    #[error("frame row stride {stride} is shorter than {width} pixels of {format:?}")]
    Stride {
        stride: usize,
        width: u32,
        format: PixelFormat,
    },
    #[error(
        "frame buffer holds {got} bytes, {width}x{height} {format:?} with stride {stride} needs {need}"
    )]
    Short {
        got: usize,
        need: usize,
        width: u32,
        height: u32,
        stride: usize,
        format: PixelFormat,
    },
}

/// One full-resolution picture from the camera, with its media time. Kept behind an `Arc` in
/// the ring so choosing and encoding a photo never copies pixels.
#[derive(Debug, Clone)]
pub struct Frame {
    width: u32,
    height: u32,
    stride: usize,
    format: PixelFormat,
    data: Vec<u8>,
    t: f64,
}

impl Frame {
    /// Tightly packed rows (`stride = width × bytes per pixel`).
    pub fn new(
        width: u32,
        height: u32,
        format: PixelFormat,
        data: Vec<u8>,
        t: f64,
    ) -> Result<Self, FrameError> {
        let stride = width as usize * format.bytes_per_pixel();
        Self::with_stride(width, height, stride, format, data, t)
    }

    /// Rows `stride` bytes apart (e.g. a padded camera buffer).
    pub fn with_stride(
        width: u32,
        height: u32,
        stride: usize,
        format: PixelFormat,
        data: Vec<u8>,
        t: f64,
    ) -> Result<Self, FrameError> {
        if width == 0 || height == 0 {
            return Err(FrameError::Empty { width, height });
        }
        let row = width as usize * format.bytes_per_pixel();
        if stride < row {
            return Err(FrameError::Stride {
                stride,
                width,
                format,
            });
        }
        let need = stride * (height as usize - 1) + row;
        if data.len() < need {
            return Err(FrameError::Short {
                got: data.len(),
                need,
                width,
                height,
                stride,
                format,
            });
        }
        Ok(Self {
            width,
            height,
            stride,
            format,
            data,
            t,
        })
    }

    pub fn width(&self) -> u32 {
        self.width
    }
    pub fn height(&self) -> u32 {
        self.height
    }
    pub fn stride(&self) -> usize {
        self.stride
    }
    pub fn format(&self) -> PixelFormat {
        self.format
    }
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// Media time in seconds (same clock as the events' `t`).
    pub fn t(&self) -> f64 {
        self.t
    }
}

/// A rectangle in pixels of the full-resolution frame, e.g. the shopper's box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Region {
    pub fn new(x: u32, y: u32, width: u32, height: u32) -> Self {
        Self {
            x,
            y,
            width,
            height,
        }
    }

    pub fn full(frame: &Frame) -> Self {
        Self {
            x: 0,
            y: 0,
            width: frame.width,
            height: frame.height,
        }
    }

    /// From a box in 0..1 coordinates (as detectors give them), for a `width`×`height` frame.
    /// Out-of-range and non-finite values are clamped to the frame.
    pub fn from_normalized(x0: f32, y0: f32, x1: f32, y1: f32, width: u32, height: u32) -> Self {
        let clamp = |v: f32| {
            if v.is_finite() {
                v.clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        // Clamp before ordering: `min`/`max` would silently drop a NaN in favour of the other side.
        let (x0, x1, y0, y1) = (clamp(x0), clamp(x1), clamp(y0), clamp(y1));
        let (x0, x1) = (x0.min(x1), x0.max(x1));
        let (y0, y1) = (y0.min(y1), y0.max(y1));
        let px = |v: f32, side: u32| (v * side as f32).round() as u32;
        let (ax, bx) = (px(x0, width), px(x1, width));
        let (ay, by) = (px(y0, height), px(y1, height));
        Self {
            x: ax,
            y: ay,
            width: bx - ax,
            height: by - ay,
        }
    }

    /// The part of the region inside a `width`×`height` frame; `None` when nothing is.
    pub fn clamp_to(self, width: u32, height: u32) -> Option<Self> {
        let x0 = self.x.min(width);
        let y0 = self.y.min(height);
        let x1 = self.x.saturating_add(self.width).min(width);
        let y1 = self.y.saturating_add(self.height).min(height);
        (x1 > x0 && y1 > y0).then_some(Self {
            x: x0,
            y: y0,
            width: x1 - x0,
            height: y1 - y0,
        })
    }
}

/// Variance of the 4-neighbour Laplacian of the grey region. Higher is sharper; only
/// comparable between frames of the same size scored over the same region. `None` when the
/// region is (after clamping to the frame) too small to score.
pub fn sharpness(frame: &Frame, roi: Region) -> Option<f64> {
    let roi = roi.clamp_to(frame.width, frame.height)?;
    let block = roi.width.max(roi.height).div_ceil(SCORE_MAX_SIDE).max(1);
    let gw = (roi.width / block) as usize;
    let gh = (roi.height / block) as usize;
    if gw < 3 || gh < 3 {
        return None;
    }
    let grey = block_grey(frame, roi, block as usize, gw, gh);
    Some(laplacian_variance(&grey, gw, gh))
}

/// Block-averaged luminance of `roi`, `gw`×`gh` samples of `block`×`block` pixels, in 0..255.
fn block_grey(frame: &Frame, roi: Region, block: usize, gw: usize, gh: usize) -> Vec<f32> {
    let bpp = frame.format.bytes_per_pixel();
    // BT.601 weights in 1/256ths; the sum is normalised once per block.
    let (wr, wg, wb) = (77u64, 150u64, 29u64);
    // u64 so no frame size can overflow a block sum.
    let mut acc = vec![0u64; gw];
    let mut out = Vec::with_capacity(gw * gh);
    let scale = match frame.format {
        PixelFormat::Gray8 => 1.0 / (block * block) as f32,
        _ => 1.0 / (256 * block * block) as f32,
    };
    for gy in 0..gh {
        acc.fill(0);
        for dy in 0..block {
            let y = roi.y as usize + gy * block + dy;
            let start = y * frame.stride + roi.x as usize * bpp;
            let row = &frame.data[start..start + gw * block * bpp];
            match frame.format {
                PixelFormat::Gray8 => {
                    for (a, px) in acc.iter_mut().zip(row.chunks_exact(block)) {
                        *a += px.iter().map(|&v| u64::from(v)).sum::<u64>();
                    }
                }
                PixelFormat::Rgb8 | PixelFormat::Bgr8 => {
                    let (w0, w2) = if frame.format == PixelFormat::Rgb8 {
                        (wr, wb)
                    } else {
                        (wb, wr)
                    };
                    for (a, px) in acc.iter_mut().zip(row.chunks_exact(block * 3)) {
                        *a += px
                            .chunks_exact(3)
                            .map(|p| {
                                w0 * u64::from(p[0]) + wg * u64::from(p[1]) + w2 * u64::from(p[2])
                            })
                            .sum::<u64>();
                    }
                }
            }
        }
        out.extend(acc.iter().map(|&a| a as f32 * scale));
    }
    out
}

fn laplacian_variance(g: &[f32], w: usize, h: usize) -> f64 {
    let mut sum = 0f64;
    let mut sum_sq = 0f64;
    for y in 1..h - 1 {
        let (up, row, down) = (
            &g[(y - 1) * w..y * w],
            &g[y * w..(y + 1) * w],
            &g[(y + 1) * w..(y + 2) * w],
        );
        // Per-row f32 sums stay exact enough (≤480 terms) and keep the inner loop vectorisable.
        let mut rs = 0f32;
        let mut rq = 0f32;
        for x in 1..w - 1 {
            let l = 4.0 * row[x] - row[x - 1] - row[x + 1] - up[x] - down[x];
            rs += l;
            rq += l * l;
        }
        sum += f64::from(rs);
        sum_sq += f64::from(rq);
    }
    let n = ((w - 2) * (h - 2)) as f64;
    let mean = sum / n;
    (sum_sq / n - mean * mean).max(0.0)
}

/// The frame chosen for a photo and its score.
#[derive(Debug, Clone)]
pub struct Best {
    pub frame: Arc<Frame>,
    pub sharpness: f64,
}

/// The sharpest of `frames` over `roi`; later frames win ties. Frames whose region cannot be
/// scored are skipped; if none can be, the newest frame is returned with sharpness 0.
pub fn sharpest(frames: &[Arc<Frame>], roi: Region) -> Option<Best> {
    let mut best: Option<Best> = None;
    for frame in frames {
        let Some(score) = sharpness(frame, roi) else {
            continue;
        };
        if best.as_ref().is_none_or(|b| score >= b.sharpness) {
            best = Some(Best {
                frame: Arc::clone(frame),
                sharpness: score,
            });
        }
    }
    best.or_else(|| {
        frames.last().map(|f| Best {
            frame: Arc::clone(f),
            sharpness: 0.0,
        })
    })
}

/// The last few full-resolution frames, newest last. Owned by the thread that receives the
/// frames; `snapshot` hands the candidates to another thread without copying pixels.
#[derive(Debug)]
pub struct FrameRing {
    capacity: usize,
    frames: VecDeque<Arc<Frame>>,
}

impl FrameRing {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            frames: VecDeque::with_capacity(capacity),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn push(&mut self, frame: Arc<Frame>) {
        if self.frames.len() == self.capacity {
            self.frames.pop_front();
        }
        self.frames.push_back(frame);
    }

    pub fn latest(&self) -> Option<&Arc<Frame>> {
        self.frames.back()
    }

    pub fn clear(&mut self) {
        self.frames.clear();
    }

    /// Frames no more than `window_s` seconds older than the newest one, oldest first.
    pub fn snapshot(&self, window_s: f64) -> Vec<Arc<Frame>> {
        let Some(newest) = self.frames.back().map(|f| f.t) else {
            return Vec::new();
        };
        let window_s = if window_s.is_finite() {
            window_s.max(0.0)
        } else {
            0.0
        };
        self.frames
            .iter()
            .filter(|f| f.t >= newest - window_s)
            .cloned()
            .collect()
    }

    /// The sharpest frame over `roi` among those no more than `window_s` older than the newest.
    pub fn best(&self, roi: Region, window_s: f64) -> Option<Best> {
        sharpest(&self.snapshot(window_s), roi)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A deterministic textured RGB image (hard-edged blocks plus fine noise).
    pub(crate) fn textured_rgb(w: u32, h: u32, seed: u32) -> Vec<u8> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let mut data = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let checker = if ((x / 8) + (y / 8)).is_multiple_of(2) {
                    200u32
                } else {
                    40
                };
                let v = (checker + (s % 40)) as u8;
                data.extend_from_slice(&[v, v.wrapping_add(10), v / 2]);
            }
        }
        data
    }

    /// Box blur of `radius` on an RGB image (stands in for motion blur).
    pub(crate) fn blurred_rgb(src: &[u8], w: u32, h: u32, radius: i64) -> Vec<u8> {
        // Separable: a horizontal then a vertical pass (debug builds run these tests).
        let (w, h) = (w as i64, h as i64);
        let pass = |input: &[u8], dx: i64, dy: i64| -> Vec<u8> {
            let mut out = vec![0u8; input.len()];
            for y in 0..h {
                for x in 0..w {
                    for c in 0..3 {
                        let mut sum = 0u32;
                        for k in -radius..=radius {
                            let sx = (x + k * dx).clamp(0, w - 1);
                            let sy = (y + k * dy).clamp(0, h - 1);
                            sum += u32::from(input[((sy * w + sx) * 3 + c) as usize]);
                        }
                        out[((y * w + x) * 3 + c) as usize] = (sum / (2 * radius as u32 + 1)) as u8;
                    }
                }
            }
            out
        };
        pass(&pass(src, 1, 0), 0, 1)
    }

    fn frame(data: Vec<u8>, w: u32, h: u32, t: f64) -> Arc<Frame> {
        Arc::new(Frame::new(w, h, PixelFormat::Rgb8, data, t).unwrap())
    }

    #[test]
    fn sharp_scores_higher_than_blurred() {
        let (w, h) = (320, 240);
        let sharp = textured_rgb(w, h, 1);
        let soft = blurred_rgb(&sharp, w, h, 2);
        let roi = Region::new(0, 0, w, h);
        let s = sharpness(
            &Frame::new(w, h, PixelFormat::Rgb8, sharp, 0.0).unwrap(),
            roi,
        )
        .unwrap();
        let b = sharpness(
            &Frame::new(w, h, PixelFormat::Rgb8, soft, 0.0).unwrap(),
            roi,
        )
        .unwrap();
        assert!(s > 4.0 * b, "sharp {s} vs blurred {b}");
        let flat = Frame::new(w, h, PixelFormat::Gray8, vec![128; (w * h) as usize], 0.0).unwrap();
        assert_eq!(sharpness(&flat, roi), Some(0.0));
    }

    #[test]
    fn large_frames_are_scored_on_a_downscaled_copy_and_still_rank() {
        let (w, h) = (1920, 1080);
        let sharp = textured_rgb(w, h, 3);
        let soft = blurred_rgb(&sharp, w, h, 3);
        let roi = Region::new(600, 100, 700, 900);
        let a = frame(sharp, w, h, 0.0);
        let b = frame(soft, w, h, 0.0);
        let start = std::time::Instant::now();
        let s = sharpness(&a, roi).unwrap();
        let elapsed = start.elapsed();
        let bl = sharpness(&b, roi).unwrap();
        assert!(s > 2.0 * bl, "sharp {s} vs blurred {bl}");
        // Generous: the point is that scoring a ring of 8 stays well under a frame period.
        assert!(elapsed.as_millis() < 200, "scoring took {elapsed:?}");
    }

    #[test]
    fn bgr_gray_and_padded_strides_score_alike() {
        let (w, h) = (64, 48);
        let rgb = textured_rgb(w, h, 5);
        let bgr: Vec<u8> = rgb
            .chunks_exact(3)
            .flat_map(|p| [p[2], p[1], p[0]])
            .collect();
        let mut padded = Vec::new();
        for row in rgb.chunks_exact(w as usize * 3) {
            padded.extend_from_slice(row);
            padded.extend_from_slice(&[0xAA; 16]);
        }
        let roi = Region::new(0, 0, w, h);
        let a = sharpness(
            &Frame::new(w, h, PixelFormat::Rgb8, rgb.clone(), 0.0).unwrap(),
            roi,
        )
        .unwrap();
        let b = sharpness(&Frame::new(w, h, PixelFormat::Bgr8, bgr, 0.0).unwrap(), roi).unwrap();
        let c = sharpness(
            &Frame::with_stride(w, h, w as usize * 3 + 16, PixelFormat::Rgb8, padded, 0.0).unwrap(),
            roi,
        )
        .unwrap();
        assert!((a - b).abs() < 1e-6 * a.max(1.0), "{a} vs {b}");
        assert!((a - c).abs() < 1e-6 * a.max(1.0), "{a} vs {c}");
    }

    #[test]
    fn frame_checks_its_buffer() {
        assert!(matches!(
            Frame::new(0, 10, PixelFormat::Rgb8, vec![], 0.0),
            Err(FrameError::Empty { .. })
        ));
        assert!(matches!(
            Frame::new(4, 4, PixelFormat::Rgb8, vec![0; 47], 0.0),
            Err(FrameError::Short { .. })
        ));
        assert!(matches!(
            Frame::with_stride(4, 4, 11, PixelFormat::Rgb8, vec![0; 100], 0.0),
            Err(FrameError::Stride { .. })
        ));
        assert!(Frame::new(4, 4, PixelFormat::Gray8, vec![0; 16], 0.0).is_ok());
    }

    #[test]
    fn regions_clamp_and_convert() {
        assert_eq!(
            Region::new(90, 90, 50, 50).clamp_to(100, 100),
            Some(Region::new(90, 90, 10, 10))
        );
        assert_eq!(Region::new(100, 0, 5, 5).clamp_to(100, 100), None);
        assert_eq!(
            Region::new(u32::MAX, 0, u32::MAX, 5).clamp_to(100, 100),
            None
        );
        assert_eq!(
            Region::from_normalized(0.5, 0.25, 0.0, 1.5, 200, 100),
            Region::new(0, 25, 100, 75)
        );
        assert_eq!(
            Region::from_normalized(f32::NAN, 0.0, 1.0, 1.0, 10, 10),
            Region::new(0, 0, 10, 10)
        );
    }

    #[test]
    fn ring_picks_the_sharpest_recent_frame_in_the_region() {
        let (w, h) = (160, 120);
        let sharp = textured_rgb(w, h, 9);
        let soft = blurred_rgb(&sharp, w, h, 2);
        let mut ring = FrameRing::new(4);
        assert!(ring.best(Region::new(0, 0, w, h), 1.0).is_none());
        ring.push(frame(sharp.clone(), w, h, 0.0)); // sharp but will fall out of the window
        ring.push(frame(soft.clone(), w, h, 1.0));
        ring.push(frame(sharp.clone(), w, h, 1.1));
        ring.push(frame(soft.clone(), w, h, 1.2));
        let best = ring.best(Region::new(0, 0, w, h), 0.5).unwrap();
        assert_eq!(best.frame.t(), 1.1);

        // Capacity: pushing a fifth frame drops the oldest.
        ring.push(frame(soft.clone(), w, h, 1.3));
        assert_eq!(ring.len(), 4);
        assert_eq!(ring.snapshot(100.0).first().unwrap().t(), 1.0);

        // Window 0: only the newest frame is a candidate.
        assert_eq!(
            ring.best(Region::new(0, 0, w, h), 0.0).unwrap().frame.t(),
            1.3
        );
    }

    #[test]
    fn region_decides_which_frame_is_sharpest() {
        let (w, h) = (160, 120);
        let sharp = textured_rgb(w, h, 11);
        let soft = blurred_rgb(&sharp, w, h, 2);
        // Left half sharp in frame A, right half sharp in frame B.
        let half = |left: &[u8], right: &[u8]| -> Vec<u8> {
            let mut out = Vec::new();
            for (l, r) in left
                .chunks_exact(w as usize * 3)
                .zip(right.chunks_exact(w as usize * 3))
            {
                out.extend_from_slice(&l[..w as usize * 3 / 2]);
                out.extend_from_slice(&r[w as usize * 3 / 2..]);
            }
            out
        };
        let mut ring = FrameRing::new(8);
        ring.push(frame(half(&sharp, &soft), w, h, 0.0));
        ring.push(frame(half(&soft, &sharp), w, h, 0.1));
        assert_eq!(
            ring.best(Region::new(0, 0, w / 2, h), 1.0)
                .unwrap()
                .frame
                .t(),
            0.0
        );
        assert_eq!(
            ring.best(Region::new(w / 2, 0, w / 2, h), 1.0)
                .unwrap()
                .frame
                .t(),
            0.1
        );
        // A region outside every frame still yields a photo: the newest frame.
        let fallback = ring.best(Region::new(1000, 1000, 10, 10), 1.0).unwrap();
        assert_eq!((fallback.frame.t(), fallback.sharpness), (0.1, 0.0));
    }

    #[test]
    fn frames_are_shared_not_copied() {
        let f = frame(vec![0; 16 * 16 * 3], 16, 16, 0.0);
        let mut ring = FrameRing::new(2);
        ring.push(Arc::clone(&f));
        let snap = ring.snapshot(1.0);
        assert!(Arc::ptr_eq(&snap[0], &f));
    }
}
