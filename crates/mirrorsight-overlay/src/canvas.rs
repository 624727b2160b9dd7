//! Pixels: the upright layout canvas, the screen-oriented framebuffer, and the few
//! primitives the overlay needs (rectangles, anti-aliased strokes, alpha blending).

use std::path::Path;

use crate::config::Rotation;
use crate::error::OverlayError;

pub const BLACK: u32 = 0x000000;
pub const WHITE: u32 = 0xFFFFFF;

/// A line from one point to another, in canvas pixels.
pub type Segment = ((f32, f32), (f32, f32));

/// Axis-aligned rectangle in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
}

impl Rect {
    pub const fn new(x: i32, y: i32, w: i32, h: i32) -> Self {
        Self { x, y, w, h }
    }
    pub fn right(&self) -> i32 {
        self.x + self.w
    }
    pub fn bottom(&self) -> i32 {
        self.y + self.h
    }
    pub fn is_empty(&self) -> bool {
        self.w <= 0 || self.h <= 0
    }
    pub fn contains(&self, x: i32, y: i32) -> bool {
        x >= self.x && x < self.right() && y >= self.y && y < self.bottom()
    }
    pub fn intersects(&self, o: &Rect) -> bool {
        !self.is_empty()
            && !o.is_empty()
            && self.x < o.right()
            && o.x < self.right()
            && self.y < o.bottom()
            && o.y < self.bottom()
    }
    /// Grown by `d` on every side.
    pub fn outset(&self, d: i32) -> Rect {
        Rect::new(self.x - d, self.y - d, self.w + 2 * d, self.h + 2 * d)
    }
    pub fn center(&self) -> (f32, f32) {
        (
            self.x as f32 + self.w as f32 / 2.0,
            self.y as f32 + self.h as f32 / 2.0,
        )
    }
    /// Smallest rectangle holding both.
    pub fn union(&self, o: &Rect) -> Rect {
        if self.is_empty() {
            return *o;
        }
        if o.is_empty() {
            return *self;
        }
        let x = self.x.min(o.x);
        let y = self.y.min(o.y);
        Rect::new(
            x,
            y,
            self.right().max(o.right()) - x,
            self.bottom().max(o.bottom()) - y,
        )
    }

    /// Where this rectangle of an upright `lw`x`lh` layout lands after `rot`.
    pub fn rotated(&self, rot: Rotation, lw: i32, lh: i32) -> Rect {
        match rot {
            Rotation::None => *self,
            Rotation::Cw90 => Rect::new(lh - self.y - self.h, self.x, self.h, self.w),
            Rotation::Cw180 => {
                Rect::new(lw - self.x - self.w, lh - self.y - self.h, self.w, self.h)
            }
            Rotation::Cw270 => Rect::new(self.y, lw - self.x - self.w, self.h, self.w),
        }
    }
}

/// The upright picture, laid out as the shopper sees it.
#[derive(Debug, Clone)]
pub struct Canvas {
    pub w: i32,
    pub h: i32,
    pub px: Vec<u32>,
}

impl Canvas {
    pub fn new(w: i32, h: i32) -> Self {
        Self {
            w,
            h,
            px: vec![BLACK; (w.max(0) as usize) * (h.max(0) as usize)],
        }
    }

    pub fn clear(&mut self, color: u32) {
        self.px.fill(color);
    }

    pub fn fill_rect(&mut self, r: Rect, color: u32) {
        let x0 = r.x.clamp(0, self.w);
        let x1 = r.right().clamp(0, self.w);
        let y0 = r.y.clamp(0, self.h);
        let y1 = r.bottom().clamp(0, self.h);
        if x0 >= x1 {
            return;
        }
        for y in y0..y1 {
            let row = (y * self.w) as usize;
            self.px[row + x0 as usize..row + x1 as usize].fill(color);
        }
    }

    /// A frame of thickness `t` drawn inside `r`.
    pub fn stroke_rect(&mut self, r: Rect, t: i32, color: u32) {
        self.fill_rect(Rect::new(r.x, r.y, r.w, t), color);
        self.fill_rect(Rect::new(r.x, r.bottom() - t, r.w, t), color);
        self.fill_rect(Rect::new(r.x, r.y, t, r.h), color);
        self.fill_rect(Rect::new(r.right() - t, r.y, t, r.h), color);
    }

    /// Mixes `color` over the pixel with coverage `a` in 0..=1.
    pub fn blend(&mut self, x: i32, y: i32, color: u32, a: f32) {
        if x < 0 || y < 0 || x >= self.w || y >= self.h || a <= 0.0 {
            return;
        }
        let i = (y * self.w + x) as usize;
        self.px[i] = if a >= 1.0 {
            color
        } else {
            mix(self.px[i], color, a)
        };
    }

    /// Copies a `w`x`h` image with its top-left corner at (`x`, `y`).
    pub fn blit(&mut self, x: i32, y: i32, w: i32, h: i32, src: &[u32]) {
        for sy in 0..h {
            let dy = y + sy;
            if dy < 0 || dy >= self.h {
                continue;
            }
            for sx in 0..w {
                let dx = x + sx;
                if dx >= 0 && dx < self.w {
                    self.px[(dy * self.w + dx) as usize] = src[(sy * w + sx) as usize];
                }
            }
        }
    }

    /// Round-capped strokes of width `width` along every segment, anti-aliased. Segments are
    /// drawn as one shape (per-pixel nearest segment) so joints do not double-blend.
    pub fn stroke_segments(&mut self, segments: &[Segment], width: f32, color: u32) {
        if segments.is_empty() {
            return;
        }
        let half = width / 2.0;
        let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
        for &((ax, ay), (bx, by)) in segments {
            x0 = x0.min(ax.min(bx));
            y0 = y0.min(ay.min(by));
            x1 = x1.max(ax.max(bx));
            y1 = y1.max(ay.max(by));
        }
        let xs = ((x0 - half - 1.0).floor() as i32).max(0);
        let xe = ((x1 + half + 1.0).ceil() as i32).min(self.w - 1);
        let ys = ((y0 - half - 1.0).floor() as i32).max(0);
        let ye = ((y1 + half + 1.0).ceil() as i32).min(self.h - 1);
        for y in ys..=ye {
            for x in xs..=xe {
                let p = (x as f32 + 0.5, y as f32 + 0.5);
                let d = segments
                    .iter()
                    .map(|&(a, b)| dist_to_segment(p, a, b))
                    .fold(f32::MAX, f32::min);
                let a = (half - d + 0.5).clamp(0.0, 1.0);
                self.blend(x, y, color, a);
            }
        }
    }
}

fn dist_to_segment(p: (f32, f32), a: (f32, f32), b: (f32, f32)) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (cx, cy) = (a.0 + t * dx - p.0, a.1 + t * dy - p.1);
    (cx * cx + cy * cy).sqrt()
}

/// `a` of the way from `bg` to `fg`, per channel.
pub fn mix(bg: u32, fg: u32, a: f32) -> u32 {
    let ch = |shift: u32| {
        let b = ((bg >> shift) & 0xFF) as f32;
        let f = ((fg >> shift) & 0xFF) as f32;
        ((b + (f - b) * a).round().clamp(0.0, 255.0) as u32) << shift
    };
    ch(16) | ch(8) | ch(0)
}

/// What goes to the screen: 0RGB pixels in the monitor's own orientation
/// (the format `minifb` takes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framebuffer {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u32>,
}

impl Framebuffer {
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            pixels: vec![BLACK; width * height],
        }
    }

    pub fn pixel(&self, x: usize, y: usize) -> u32 {
        self.pixels[y * self.width + x]
    }

    /// Rec. 601 luma, for QR decoders and brightness checks.
    pub fn luma(&self, x: usize, y: usize) -> u8 {
        luma(self.pixel(x, y))
    }

    pub fn is_black(&self) -> bool {
        self.pixels.iter().all(|&p| p & 0xFFFFFF == 0)
    }

    /// Turns the upright canvas into the screen's orientation.
    pub fn fill_from(&mut self, canvas: &Canvas, rot: Rotation) {
        let (lw, lh) = (canvas.w as usize, canvas.h as usize);
        let (pw, ph) = if rot.swaps_axes() { (lh, lw) } else { (lw, lh) };
        self.width = pw;
        self.height = ph;
        self.pixels.resize(pw * ph, BLACK);
        match rot {
            Rotation::None => self.pixels.copy_from_slice(&canvas.px),
            Rotation::Cw180 => {
                for (dst, src) in self.pixels.iter_mut().zip(canvas.px.iter().rev()) {
                    *dst = *src;
                }
            }
            Rotation::Cw90 => {
                // Logical (x, y) lands on screen (lh-1-y, x).
                for y in 0..lh {
                    let row = &canvas.px[y * lw..(y + 1) * lw];
                    let px = lh - 1 - y;
                    for (x, &c) in row.iter().enumerate() {
                        self.pixels[x * pw + px] = c;
                    }
                }
            }
            Rotation::Cw270 => {
                // Logical (x, y) lands on screen (y, lw-1-x).
                for y in 0..lh {
                    let row = &canvas.px[y * lw..(y + 1) * lw];
                    for (x, &c) in row.iter().enumerate() {
                        self.pixels[(lw - 1 - x) * pw + y] = c;
                    }
                }
            }
        }
    }

    /// 8-bit RGB PNG bytes.
    pub fn to_png(&self) -> Result<Vec<u8>, OverlayError> {
        let mut rgb = Vec::with_capacity(self.pixels.len() * 3);
        for &p in &self.pixels {
            rgb.extend_from_slice(&[(p >> 16) as u8, (p >> 8) as u8, p as u8]);
        }
        encode_png(
            &rgb,
            self.width as u32,
            self.height as u32,
            png::ColorType::Rgb,
        )
    }

    /// Writes the PNG next to its final name first, so a reader never sees half a file.
    pub fn write_png(&self, path: &Path) -> Result<(), OverlayError> {
        let bytes = self.to_png()?;
        let tmp = path.with_extension("png.tmp");
        let io = |source| OverlayError::Snapshot {
            path: path.to_path_buf(),
            source,
        };
        std::fs::write(&tmp, &bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

pub fn luma(p: u32) -> u8 {
    let r = (p >> 16) & 0xFF;
    let g = (p >> 8) & 0xFF;
    let b = p & 0xFF;
    ((r * 299 + g * 587 + b * 114) / 1000) as u8
}

pub(crate) fn encode_png(
    data: &[u8],
    w: u32,
    h: u32,
    color: png::ColorType,
) -> Result<Vec<u8>, OverlayError> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    // Mostly-black frames compress well even at the fast setting; speed matters more here.
    enc.set_compression(png::Compression::Fast);
    let mut writer = enc
        .write_header()
        .map_err(|e| OverlayError::Png(e.to_string()))?;
    writer
        .write_image_data(data)
        .map_err(|e| OverlayError::Png(e.to_string()))?;
    writer
        .finish()
        .map_err(|e| OverlayError::Png(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_moves_pixels_where_rect_rotated_says() {
        let (lw, lh) = (7, 4);
        let mut c = Canvas::new(lw, lh);
        let r = Rect::new(1, 0, 2, 3);
        c.fill_rect(r, WHITE);
        for rot in [
            Rotation::None,
            Rotation::Cw90,
            Rotation::Cw180,
            Rotation::Cw270,
        ] {
            let mut fb = Framebuffer::new(0, 0);
            fb.fill_from(&c, rot);
            let pr = r.rotated(rot, lw, lh);
            for y in 0..fb.height {
                for x in 0..fb.width {
                    let inside = pr.contains(x as i32, y as i32);
                    assert_eq!(fb.pixel(x, y) == WHITE, inside, "{rot:?} at ({x},{y})");
                }
            }
        }
    }

    #[test]
    fn rot90_turns_clockwise() {
        let mut c = Canvas::new(3, 2);
        c.px[0] = WHITE; // top-left
        let mut fb = Framebuffer::new(0, 0);
        fb.fill_from(&c, Rotation::Cw90);
        assert_eq!((fb.width, fb.height), (2, 3));
        assert_eq!(fb.pixel(1, 0), WHITE, "top-left goes to top-right");
    }
}
