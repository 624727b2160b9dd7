//! Draws a [`Scene`] into a framebuffer. Shared by the window, the PNG snapshots, the tests
//! and the README's screenshots, so they all show the same pixels.
//!
//! Behind two-way glass black is mirror, so everything not explicitly drawn stays pure
//! black (0x000000), not "dark".

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;

use crate::canvas::{BLACK, Canvas, Framebuffer, Rect, WHITE, mix};
use crate::config::{OverlayConfig, QrPosition, Rotation};
use crate::font::{Font, split_lines};
use crate::model::{CompareView, Feedback, QrView, Scene, Thumbnail};
use crate::qr::{QUIET_ZONE_MODULES, QrMatrix};
use mirrorsight_contract::events::Side;

const AMBER: u32 = 0xFFB000;
const GREEN: u32 = 0x34C759;
const RED: u32 = 0xFF453A;
const PLACEHOLDER_GRAY: u32 = 0x606060;
/// How much of an unselected thumbnail's brightness is kept, so the selected one stands out.
const UNSELECTED_KEEP: f32 = 0.45;
/// Spooled photos are a few MB; anything far larger is not one of ours.
const MAX_PHOTO_BYTES: u64 = 64 << 20;
/// A mini-program code image (WeChat draws them 280..=1280 px wide) is refused above this.
const MAX_CODE_IMAGE_BYTES: u64 = 8 << 20;
const MAX_CODE_IMAGE_SIDE: u32 = 4096;
/// A mini-program code image is drawn as wide as the card of a session's QR code (version 3:
/// 29 modules plus the quiet zone) at `overlay.qr_module_px`, so it is as large on the glass
/// as the QR it stands in for.
const CODE_IMAGE_SIDE_MODULES: i32 = 29 + 2 * QUIET_ZONE_MODULES as i32;
/// The compare view's photo is cropped no narrower than this (width over height): about a
/// standing person's outline, so a narrow column still shows the whole outfit.
const COMPARE_MIN_ASPECT: f32 = 0.45;

/// Where things were drawn in the last frame, in screen (framebuffer) pixels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// The white card: code plus quiet zone.
    pub qr_card: Option<Rect>,
    pub caption: Option<Rect>,
    pub offline: Option<Rect>,
    /// The area for countdown digits and gesture icons.
    pub stage: Rect,
    pub strip: Option<Rect>,
    /// (index into `Scene::thumbnails`, image rect) of every visible thumbnail.
    pub thumbnails: Vec<(usize, Rect)>,
    /// The compare view's photo, as drawn (inside its white frame).
    pub compare: Option<Rect>,
    /// The compare view's "2 / 4".
    pub compare_index: Option<Rect>,
    /// The recording indicator (red dot, "REC" and seconds left).
    pub recording: Option<Rect>,
}

impl Layout {
    /// The QR card and its caption (or the offline notice): everything a QR-only scene draws.
    pub fn qr_block(&self) -> Option<Rect> {
        [self.qr_card, self.caption, self.offline]
            .into_iter()
            .flatten()
            .reduce(|a, b| a.union(&b))
    }
}

/// A decoded, downscaled photo.
#[derive(Debug, Clone)]
struct Thumb {
    w: i32,
    h: i32,
    px: Vec<u32>,
}

/// A mini-program code image: its file, the image as decoded (or why not), and the image
/// scaled to the card it was last drawn in.
type CodeImage = (Arc<str>, Result<Thumb, String>, Option<Thumb>);

pub struct Renderer {
    font: Font,
    rotation: Rotation,
    /// Upright (layout) size.
    lw: i32,
    lh: i32,
    module_px: i32,
    position: QrPosition,
    caption: Vec<String>,
    offline: Vec<String>,
    thumb_h: i32,
    canvas: Canvas,
    frame: Framebuffer,
    qr_cache: Option<(Arc<str>, Result<QrMatrix, String>)>,
    /// The mini-program code on screen.
    code_image: Option<CodeImage>,
    thumbs: HashMap<Arc<str>, Option<Thumb>>,
    /// The compare view's photo at the height it was last drawn: (path, height, image).
    compare_img: Option<(Arc<str>, i32, Option<Thumb>)>,
    layout: Layout,
}

impl Renderer {
    /// `width`x`height` is the screen as the hardware sees it; the layout is upright after
    /// `cfg.rotation`.
    pub fn new(cfg: &OverlayConfig, font: Font, width: u32, height: u32) -> Self {
        let rotation = cfg.rotation();
        let (w, h) = (width.max(1) as i32, height.max(1) as i32);
        let (lw, lh) = if rotation.swaps_axes() {
            (h, w)
        } else {
            (w, h)
        };
        Self {
            font,
            rotation,
            lw,
            lh,
            module_px: cfg.qr_module_px.max(1) as i32,
            position: cfg.qr_position,
            caption: split_lines(&cfg.caption),
            offline: split_lines(&cfg.offline_text),
            thumb_h: cfg.thumbnail_height.max(8) as i32,
            canvas: Canvas::new(lw, lh),
            frame: Framebuffer::new(width as usize, height as usize),
            qr_cache: None,
            code_image: None,
            thumbs: HashMap::new(),
            compare_img: None,
            layout: Layout::default(),
        }
    }

    /// Screen size.
    pub fn size(&self) -> (usize, usize) {
        if self.rotation.swaps_axes() {
            (self.lh as usize, self.lw as usize)
        } else {
            (self.lw as usize, self.lh as usize)
        }
    }

    /// Where the last [`render`](Self::render) put things.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The last rendered frame.
    pub fn frame(&self) -> &Framebuffer {
        &self.frame
    }

    pub fn render(&mut self, scene: &Scene) -> &Framebuffer {
        let layout = self.draw(scene);
        self.frame.fill_from(&self.canvas, self.rotation);
        let (rot, lw, lh) = (self.rotation, self.lw, self.lh);
        let map = |r: Rect| r.rotated(rot, lw, lh);
        self.layout = Layout {
            qr_card: layout.qr_card.map(map),
            caption: layout.caption.map(map),
            offline: layout.offline.map(map),
            stage: map(layout.stage),
            strip: layout.strip.map(map),
            thumbnails: layout
                .thumbnails
                .into_iter()
                .map(|(i, r)| (i, map(r)))
                .collect(),
            compare: layout.compare.map(map),
            compare_index: layout.compare_index.map(map),
            recording: layout.recording.map(map),
        };
        &self.frame
    }

    fn margin(&self) -> i32 {
        (self.lw.min(self.lh) / 40).max(16)
    }

    /// Draws into the upright canvas; returns the layout in canvas coordinates.
    fn draw(&mut self, scene: &Scene) -> Layout {
        self.canvas.clear(BLACK);
        let mut layout = Layout::default();
        if scene.flash {
            // The flash lights the shopper for the photo: nothing else, full brightness.
            self.canvas.clear(WHITE);
            layout.stage = Rect::new(0, 0, self.lw, self.lh);
            return layout;
        }
        if scene.is_blank() {
            return layout;
        }
        let m = self.margin();
        let text_px = (self.module_px as f32 * 3.0).clamp(16.0, 96.0);

        let block = match &scene.qr {
            QrView::Hidden => None,
            QrView::Code(url) => self.place_qr(url, text_px, m),
            QrView::Image(path) => self.place_code_image(path, text_px, m),
            QrView::Offline => self.place_offline(text_px, m),
        };
        let block_rect = block.as_ref().map(|b| b.rect);
        let band = self.strip_band(block_rect, m);
        // The compare view replaces the strip while it is open; while a clip records, the
        // shopper watches themselves turn: neither is drawn.
        let recording = scene.recording.is_some();
        let compare = scene
            .compare
            .as_ref()
            .filter(|_| !recording)
            .map(|view| (view, self.compare_area(view.side, block_rect, m)));
        layout.stage = match &compare {
            Some((_, area)) => self.stage(block_rect, None, Some(area.rect), m),
            None => self.stage(block_rect, Some(band), None, m),
        };

        if let Some((view, area)) = compare {
            let (photo, index) = self.draw_compare(view, &area);
            layout.compare = Some(photo);
            layout.compare_index = index;
        } else {
            self.compare_img = None;
            if !scene.thumbnails.is_empty() && !recording {
                layout.strip = Some(band);
                layout.thumbnails = self.draw_strip(&scene.thumbnails, scene.selected, band);
            }
        }
        self.retain_thumbs(&scene.thumbnails);

        if let Some(block) = block {
            match block.kind {
                BlockKind::Qr {
                    matrix_size,
                    module,
                    card,
                } => {
                    self.draw_qr(card, module, matrix_size);
                    layout.qr_card = Some(card);
                    layout.caption = self.draw_lines(
                        Lines::Caption,
                        block.text_top,
                        block.rect,
                        block.text_px,
                        WHITE,
                    );
                }
                BlockKind::Image { card } => {
                    self.draw_code_image(card);
                    layout.qr_card = Some(card);
                    layout.caption = self.draw_lines(
                        Lines::Caption,
                        block.text_top,
                        block.rect,
                        block.text_px,
                        WHITE,
                    );
                }
                BlockKind::Offline => {
                    layout.offline = Some(block.rect);
                    // A frame makes the notice read as a status, not as part of the reflection.
                    self.canvas.stroke_rect(block.rect, 2, AMBER);
                    self.draw_lines(
                        Lines::Offline,
                        block.text_top,
                        block.rect,
                        block.text_px,
                        AMBER,
                    );
                }
            }
        }

        if let Some(left) = scene.recording {
            layout.recording = Some(self.draw_recording(left, m));
        }
        let stage = layout.stage;
        match (scene.countdown, scene.feedback) {
            (Some(n), feedback) => {
                let digit_area = if feedback.is_some() {
                    scale_rect(stage, 0.75)
                } else {
                    stage
                };
                self.draw_number(n, digit_area);
                if let Some(f) = feedback {
                    let s = stage.w.min(stage.h) / 4;
                    self.draw_icon(f, Rect::new(stage.right() - s, stage.y, s, s));
                }
            }
            (None, Some(f)) => self.draw_icon(f, stage),
            (None, None) => {}
        }
        layout
    }

    fn place_qr(&mut self, url: &Arc<str>, text_px: f32, m: i32) -> Option<Block> {
        if self.qr_cache.as_ref().is_none_or(|(u, _)| u != url) {
            let matrix = QrMatrix::encode(url).map_err(|e| e.to_string());
            if let Err(e) = &matrix {
                tracing::error!(error = %e, "QR code cannot be drawn");
            }
            self.qr_cache = Some((url.clone(), matrix));
        }
        let matrix_size = match self.qr_cache.as_ref().map(|(_, m)| m) {
            Some(Ok(matrix)) => matrix.size as i32,
            _ => return None,
        };
        let side_modules = matrix_size + 2 * QUIET_ZONE_MODULES as i32;
        let caption = self.fit_caption(text_px, m);
        let (text_h, gap) = (caption.height, caption.gap);
        // Shrink modules only when the configured size cannot fit the screen at all.
        let avail = (self.lh - 2 * m - text_h - gap).min(self.lw - 2 * m);
        let module = self.module_px.min(avail / side_modules).max(1);
        if module < self.module_px {
            tracing::warn!(
                module,
                configured = self.module_px,
                "QR modules shrunk to fit the screen"
            );
        }
        let card_side = side_modules * module;
        Some(
            self.card_block(card_side, card_side, &caption, m, |card| BlockKind::Qr {
                matrix_size,
                module,
                card,
            }),
        )
    }

    /// Like [`Self::place_qr`] for a code WeChat drew: the image, decoded once per file,
    /// scaled to the width of a session QR's card (smaller only when the screen needs it).
    fn place_code_image(&mut self, path: &Arc<str>, text_px: f32, m: i32) -> Option<Block> {
        if self.code_image.as_ref().is_none_or(|(p, _, _)| p != path) {
            let image = load_code_image(path);
            if let Err(e) = &image {
                tracing::error!(path = %path, error = %e, "mini-program code image cannot be drawn");
            }
            self.code_image = Some((path.clone(), image, None));
        }
        let (iw, ih) = match self.code_image.as_ref().map(|(_, i, _)| i) {
            Some(Ok(image)) => (image.w, image.h),
            _ => return None,
        };
        let caption = self.fit_caption(text_px, m);
        let (text_h, gap) = (caption.height, caption.gap);
        let want_w = CODE_IMAGE_SIDE_MODULES * self.module_px;
        let avail_h = self.lh - 2 * m - text_h - gap;
        let card_w = want_w
            .min(self.lw - 2 * m)
            .min((avail_h as i64 * iw as i64 / ih as i64) as i32)
            .max(1);
        let card_h = ((card_w as i64 * ih as i64 / iw as i64) as i32).max(1);
        Some(
            self.card_block(card_w, card_h, &caption, m, |card| BlockKind::Image {
                card,
            }),
        )
    }

    /// The caption fitted to the screen's width for a card above it, and the gap between.
    fn fit_caption(&self, text_px: f32, m: i32) -> Caption {
        let (px, width, height) = self.fit_lines(&self.caption, text_px, self.lw - 2 * m);
        let gap = if self.caption.is_empty() {
            0
        } else {
            (px * 0.4) as i32
        };
        Caption {
            px,
            width,
            height,
            gap,
        }
    }

    /// A `card_w`×`card_h` card (QR or code image) centred over its caption, the pair anchored
    /// where the layout puts codes.
    fn card_block(
        &self,
        card_w: i32,
        card_h: i32,
        caption: &Caption,
        m: i32,
        kind: impl FnOnce(Rect) -> BlockKind,
    ) -> Block {
        let w = card_w.max(caption.width);
        let h = card_h + caption.gap + caption.height;
        let rect = self.anchor(w, h, m);
        let card = Rect::new(rect.x + (w - card_w) / 2, rect.y, card_w, card_h);
        Block {
            rect,
            text_top: card.bottom() + caption.gap,
            text_px: caption.px,
            kind: kind(card),
        }
    }

    fn draw_code_image(&mut self, card: Rect) {
        let Some((_, Ok(image), scaled)) = &mut self.code_image else {
            return;
        };
        if scaled
            .as_ref()
            .is_none_or(|s| s.w != card.w || s.h != card.h)
        {
            *scaled = Some(Thumb {
                w: card.w,
                h: card.h,
                px: box_downscale(
                    &image.px,
                    image.w as usize,
                    image.h as usize,
                    card.w as usize,
                    card.h as usize,
                ),
            });
        }
        if let Some(s) = scaled {
            self.canvas.blit(card.x, card.y, s.w, s.h, &s.px);
        }
    }

    fn place_offline(&self, text_px: f32, m: i32) -> Option<Block> {
        if self.offline.is_empty() {
            return None;
        }
        let pad = (text_px * 0.6) as i32;
        let (text_px, text_w, text_h) =
            self.fit_lines(&self.offline, text_px, self.lw - 2 * m - 2 * pad);
        let rect = self.anchor(text_w + 2 * pad, text_h + 2 * pad, m);
        Some(Block {
            rect,
            text_top: rect.y + pad,
            text_px,
            kind: BlockKind::Offline,
        })
    }

    /// Font size (shrunk until the widest line fits `max_w`), width and height of a text block.
    fn fit_lines(&self, lines: &[String], px: f32, max_w: i32) -> (f32, i32, i32) {
        if lines.is_empty() {
            return (px, 0, 0);
        }
        let widest = |px: f32| {
            lines
                .iter()
                .map(|l| self.font.measure(l, px).0)
                .fold(0.0, f32::max)
        };
        let mut px = px;
        let w = widest(px);
        if w > max_w as f32 && w > 0.0 {
            px = (px * max_w as f32 / w).floor().max(8.0);
        }
        let line_h = self.font.measure("", px).1;
        let h = line_h * lines.len() as f32 + line_h * 0.25 * (lines.len() - 1) as f32;
        (px, widest(px).ceil() as i32, h.ceil() as i32)
    }

    /// Each line centred in `block`'s width, starting at `top`.
    fn draw_lines(
        &mut self,
        which: Lines,
        top: i32,
        block: Rect,
        px: f32,
        color: u32,
    ) -> Option<Rect> {
        let lines = match which {
            Lines::Caption => &self.caption,
            Lines::Offline => &self.offline,
        };
        if lines.is_empty() {
            return None;
        }
        let line_h = self.font.measure("", px).1;
        let mut y = top as f32;
        let mut bounds = Rect::default();
        for line in lines {
            let (w, _) = self.font.measure(line, px);
            let x = (block.x as f32 + (block.w as f32 - w) / 2.0).round();
            self.font
                .draw(&mut self.canvas, line, px, x, y.round(), color);
            bounds = bounds.union(&Rect::new(
                x as i32 - 1,
                y as i32 - 1,
                w.ceil() as i32 + 2,
                line_h.ceil() as i32 + 2,
            ));
            y += line_h * 1.25;
        }
        Some(bounds)
    }

    /// Top-left corner for a `w`x`h` block at the configured position.
    fn anchor(&self, w: i32, h: i32, m: i32) -> Rect {
        let (x, y) = match self.position {
            QrPosition::TopLeft => (m, m),
            QrPosition::TopRight => (self.lw - m - w, m),
            QrPosition::BottomLeft => (m, self.lh - m - h),
            QrPosition::BottomRight => (self.lw - m - w, self.lh - m - h),
            QrPosition::Center => ((self.lw - w) / 2, (self.lh - h) / 2),
        };
        Rect::new(x.max(0), y.max(0), w, h)
    }

    /// The thumbnail strip's band: along the bottom edge beside or below the QR block, else
    /// along the top edge. Computed even without photos so nothing jumps when the first one
    /// arrives.
    fn strip_band(&self, block: Option<Rect>, m: i32) -> Rect {
        let sh = self.thumb_h + 2 * self.thumb_frame() + 2;
        let full_w = self.lw - 2 * m;
        let mut fallback = None;
        for y in [self.lh - m - sh, m] {
            let band = Rect::new(m, y, full_w, sh);
            let Some(b) = block.filter(|b| b.outset(m / 2).intersects(&band)) else {
                return band;
            };
            let left = Rect::new(m, y, b.x - 2 * m, sh);
            let right = Rect::new(b.right() + m, y, self.lw - m - (b.right() + m), sh);
            let best = if left.w >= right.w { left } else { right };
            if best.w >= self.thumb_h {
                return best;
            }
            fallback.get_or_insert(band);
        }
        fallback.unwrap_or(Rect::new(m, self.lh - m - sh, full_w, sh))
    }

    /// A square for digits and icons, in the largest free area left by the QR block, the
    /// strip's band and the compare view.
    fn stage(
        &self,
        block: Option<Rect>,
        band: Option<Rect>,
        compare: Option<Rect>,
        m: i32,
    ) -> Rect {
        let inner = Rect::new(m, m, self.lw - 2 * m, self.lh - 2 * m);
        // Keep clear of the strip's whole band only when the band spans the screen's width.
        let free = if let Some(band) = band.filter(|b| b.w >= inner.w - 1) {
            if band.y > self.lh / 2 {
                Rect::new(inner.x, inner.y, inner.w, band.y - m - inner.y)
            } else {
                Rect::new(
                    inner.x,
                    band.bottom() + m,
                    inner.w,
                    inner.bottom() - band.bottom() - m,
                )
            }
        } else {
            inner
        };
        let mut regions = vec![free];
        let obstacles: Vec<Rect> = block
            .into_iter()
            .chain(band.filter(|b| b.w < inner.w - 1))
            .chain(compare)
            .collect();
        for o in &obstacles {
            let mut next = Vec::new();
            for r in regions {
                if !r.intersects(o) {
                    next.push(r);
                    continue;
                }
                next.push(Rect::new(r.x, r.y, o.x - m - r.x, r.h));
                next.push(Rect::new(
                    o.right() + m,
                    r.y,
                    r.right() - o.right() - m,
                    r.h,
                ));
                next.push(Rect::new(r.x, r.y, r.w, o.y - m - r.y));
                next.push(Rect::new(
                    r.x,
                    o.bottom() + m,
                    r.w,
                    r.bottom() - o.bottom() - m,
                ));
            }
            regions = next.into_iter().filter(|r| !r.is_empty()).collect();
        }
        let best = regions
            .into_iter()
            .max_by_key(|r| r.w.min(r.h))
            .unwrap_or(free);
        let cap = (self.lw.min(self.lh) as f32 * 0.4) as i32;
        let side = best.w.min(best.h).min(cap).max(1);
        let (cx, cy) = best.center();
        Rect::new(cx as i32 - side / 2, cy as i32 - side / 2, side, side)
    }

    fn draw_qr(&mut self, card: Rect, module: i32, size: i32) {
        let Some((_, Ok(matrix))) = &self.qr_cache else {
            return;
        };
        self.canvas.fill_rect(card, WHITE);
        let q = QUIET_ZONE_MODULES as i32;
        for my in 0..size {
            for mx in 0..size {
                if matrix.is_dark(mx as usize, my as usize) {
                    let r = Rect::new(
                        card.x + (mx + q) * module,
                        card.y + (my + q) * module,
                        module,
                        module,
                    );
                    self.canvas.fill_rect(r, BLACK);
                }
            }
        }
    }

    fn draw_number(&mut self, n: u32, area: Rect) {
        let text = n.to_string();
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => {
                self.font
                    .draw_centered_glyph(&mut self.canvas, c, scale_rect(area, 0.9), WHITE)
            }
            _ => {
                let (_, h) = self.font.measure(&text, 100.0);
                let mut px = area.h as f32 * 0.9 * 100.0 / h.max(1.0);
                let (w, _) = self.font.measure(&text, px);
                if w > area.w as f32 * 0.9 {
                    px *= area.w as f32 * 0.9 / w;
                }
                let (w, h) = self.font.measure(&text, px);
                let (cx, cy) = area.center();
                self.font.draw(
                    &mut self.canvas,
                    &text,
                    px,
                    cx - w / 2.0,
                    cy - h / 2.0,
                    WHITE,
                );
            }
        }
    }

    fn draw_icon(&mut self, f: Feedback, area: Rect) {
        let s = area.w.min(area.h) as f32;
        let (x0, y0) = (
            area.x as f32 + (area.w as f32 - s) / 2.0,
            area.y as f32 + (area.h as f32 - s) / 2.0,
        );
        let p = |x: f32, y: f32| (x0 + x * s, y0 + y * s);
        let (segments, color) = match f {
            Feedback::ArrowRight => (
                vec![
                    (p(0.15, 0.5), p(0.85, 0.5)),
                    (p(0.55, 0.2), p(0.85, 0.5)),
                    (p(0.85, 0.5), p(0.55, 0.8)),
                ],
                WHITE,
            ),
            Feedback::ArrowLeft => (
                vec![
                    (p(0.85, 0.5), p(0.15, 0.5)),
                    (p(0.45, 0.2), p(0.15, 0.5)),
                    (p(0.15, 0.5), p(0.45, 0.8)),
                ],
                WHITE,
            ),
            Feedback::Check => (
                vec![(p(0.15, 0.55), p(0.4, 0.8)), (p(0.4, 0.8), p(0.85, 0.25))],
                GREEN,
            ),
            Feedback::Cross => (
                vec![(p(0.2, 0.2), p(0.8, 0.8)), (p(0.8, 0.2), p(0.2, 0.8))],
                RED,
            ),
        };
        self.canvas
            .stroke_segments(&segments, (s * 0.12).max(2.0), color);
    }

    /// Where the compare view may go: the half of the screen on `side`, clear of the QR block.
    /// Of the column beside, above or below the block, the one giving the tallest photo wins.
    fn compare_area(&self, side: Side, block: Option<Rect>, m: i32) -> CompareArea {
        let text_px = (self.lh as f32 * 0.045).clamp(24.0, 96.0);
        let label_h = self.font.measure("", text_px).1.ceil() as i32 + m / 2;
        let half_w = (self.lw - 3 * m) / 2;
        let column = match side {
            Side::Left => Rect::new(m, m, half_w, self.lh - 2 * m),
            Side::Right => Rect::new(self.lw - m - half_w, m, half_w, self.lh - 2 * m),
        };
        let mut candidates = vec![column];
        if let Some(b) = block
            .map(|b| b.outset(m / 2))
            .filter(|b| b.intersects(&column))
        {
            let c = column;
            candidates = [
                Rect::new(c.x, c.y, b.x - c.x, c.h),
                Rect::new(b.right(), c.y, c.right() - b.right(), c.h),
                Rect::new(c.x, c.y, c.w, b.y - c.y),
                Rect::new(c.x, b.bottom(), c.w, c.bottom() - b.bottom()),
            ]
            .into_iter()
            .filter(|r| !r.is_empty())
            .collect();
        }
        let photo_h = |r: &Rect| (r.h - label_h).min((r.w as f32 / COMPARE_MIN_ASPECT) as i32);
        let rect = candidates.into_iter().max_by_key(photo_h).unwrap_or(column);
        CompareArea {
            rect,
            photo_h: photo_h(&rect).max(8),
            label_h,
            text_px,
        }
    }

    /// Draws the compare view's photo (cropped around the shopper when the area is narrower
    /// than the photo) in a white frame, its "2 / 4" below; returns both rects.
    fn draw_compare(&mut self, view: &CompareView, area: &CompareArea) -> (Rect, Option<Rect>) {
        let h = area.photo_h;
        let path = &view.photo.path;
        if self
            .compare_img
            .as_ref()
            .is_none_or(|(p, ch, _)| p != path || *ch != h)
        {
            let img = match load_thumb(path, h) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(path = %path, error = %e, "compare photo unreadable; showing a placeholder");
                    None
                }
            };
            self.compare_img = Some((path.clone(), h, img));
        }
        let img = self
            .compare_img
            .as_ref()
            .and_then(|(_, _, t)| t.clone())
            .unwrap_or_else(|| placeholder(h));
        let w = img.w.min(area.rect.w).max(1);
        let x0 = match view.subject_x {
            Some(sx) if sx.is_finite() => {
                ((sx.clamp(0.0, 1.0) * img.w as f64) as i32 - w / 2).clamp(0, img.w - w)
            }
            _ => (img.w - w) / 2,
        };
        let mut px = Vec::with_capacity((w * img.h) as usize);
        for y in 0..img.h {
            let row = (y * img.w + x0) as usize;
            px.extend_from_slice(&img.px[row..row + w as usize]);
        }
        let r = area.rect;
        let top = r.y + (r.h - area.label_h - img.h) / 2;
        let photo = Rect::new(r.x + (r.w - w) / 2, top.max(r.y), w, img.h);
        self.canvas.blit(photo.x, photo.y, photo.w, photo.h, &px);
        let frame = (self.lh / 360).max(2);
        self.canvas.stroke_rect(photo.outset(frame), frame, WHITE);

        let text = format!("{} / {}", view.index, view.count);
        let (tw, th) = self.font.measure(&text, area.text_px);
        let tx = (photo.x as f32 + (photo.w as f32 - tw) / 2.0).round();
        let ty = (photo.bottom() + frame + (area.label_h - th as i32) / 2) as f32;
        self.font
            .draw(&mut self.canvas, &text, area.text_px, tx, ty, WHITE);
        let label = Rect::new(
            tx as i32 - 1,
            ty as i32 - 1,
            tw.ceil() as i32 + 2,
            th.ceil() as i32 + 2,
        );
        (photo, Some(label))
    }

    /// A red dot, "REC" and the seconds left, centred along the top edge.
    fn draw_recording(&mut self, left: u32, m: i32) -> Rect {
        let px = (self.lh as f32 * 0.05).clamp(24.0, 96.0);
        let text = format!("REC {left}");
        let (tw, th) = self.font.measure(&text, px);
        let dot = th * 0.7;
        let gap = th * 0.4;
        let total = dot + gap + tw;
        let x0 = (self.lw as f32 - total) / 2.0;
        let y0 = m as f32;
        let (cx, cy) = (x0 + dot / 2.0, y0 + th / 2.0);
        self.canvas
            .stroke_segments(&[((cx, cy), (cx, cy))], dot, RED);
        self.font
            .draw(&mut self.canvas, &text, px, x0 + dot + gap, y0, WHITE);
        Rect::new(
            x0.floor() as i32 - 1,
            y0.floor() as i32 - 1,
            total.ceil() as i32 + 2,
            th.ceil() as i32 + 2,
        )
    }

    fn thumb_frame(&self) -> i32 {
        (self.thumb_h / 32).max(3)
    }

    /// Lays out and draws as many thumbnails as fit, always including the selected one.
    fn draw_strip(
        &mut self,
        thumbs: &[Thumbnail],
        selected: Option<usize>,
        band: Rect,
    ) -> Vec<(usize, Rect)> {
        let frame = self.thumb_frame();
        let gap = (self.thumb_h / 8).max(8);
        let images: Vec<Thumb> = thumbs.iter().map(|t| self.thumb(&t.path)).collect();
        let width = |range: std::ops::RangeInclusive<usize>| -> i32 {
            let n = range.end() - range.start() + 1;
            images[range].iter().map(|t| t.w + 2 * frame).sum::<i32>() + gap * (n as i32 - 1)
        };
        let sel = selected.unwrap_or(images.len() - 1).min(images.len() - 1);
        let mut start = 0;
        while start < sel && width(start..=sel) > band.w {
            start += 1;
        }
        let mut end = sel;
        while end + 1 < images.len() && width(start..=end + 1) <= band.w {
            end += 1;
        }
        let total = width(start..=end);
        let mut x = band.x + ((band.w - total) / 2).max(0);
        let y = band.y + (band.h - self.thumb_h) / 2;
        let mut placed = Vec::new();
        for (i, img) in images.iter().enumerate().take(end + 1).skip(start) {
            let r = Rect::new(x + frame, y, img.w, img.h);
            let is_sel = selected == Some(i);
            if is_sel {
                self.canvas.blit(r.x, r.y, r.w, r.h, &img.px);
                self.canvas.stroke_rect(r.outset(frame), frame, WHITE);
            } else {
                let dimmed: Vec<u32> = img
                    .px
                    .iter()
                    .map(|&p| mix(BLACK, p, UNSELECTED_KEEP))
                    .collect();
                self.canvas.blit(r.x, r.y, r.w, r.h, &dimmed);
            }
            placed.push((i, r));
            x += img.w + 2 * frame + gap;
        }
        placed
    }

    fn thumb(&mut self, path: &Arc<str>) -> Thumb {
        let h = self.thumb_h;
        let entry = self.thumbs.entry(path.clone()).or_insert_with(|| match load_thumb(path, h) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(path = %path, error = %e, "photo thumbnail unreadable; showing a placeholder");
                None
            }
        });
        entry.clone().unwrap_or_else(|| placeholder(h))
    }

    /// Forgets photos no longer in the scene, so memory follows the session.
    fn retain_thumbs(&mut self, thumbs: &[Thumbnail]) {
        self.thumbs
            .retain(|p, _| thumbs.iter().any(|t| t.path == *p));
    }
}

enum Lines {
    Caption,
    Offline,
}

/// Where the compare view goes, in layout pixels.
struct CompareArea {
    /// Photo plus its index line.
    rect: Rect,
    photo_h: i32,
    label_h: i32,
    text_px: f32,
}

/// A caption fitted under a card: its text size, extent and the gap above it (pixels).
struct Caption {
    px: f32,
    width: i32,
    height: i32,
    gap: i32,
}

struct Block {
    rect: Rect,
    text_top: i32,
    text_px: f32,
    kind: BlockKind,
}

enum BlockKind {
    Qr {
        matrix_size: i32,
        module: i32,
        card: Rect,
    },
    /// A mini-program code image drawn to fill `card`.
    Image {
        card: Rect,
    },
    Offline,
}

fn scale_rect(r: Rect, f: f32) -> Rect {
    let (w, h) = ((r.w as f32 * f) as i32, (r.h as f32 * f) as i32);
    Rect::new(r.x + (r.w - w) / 2, r.y + (r.h - h) / 2, w, h)
}

/// A 3:4 grey frame with a cross, standing in for a photo that cannot be read.
fn placeholder(h: i32) -> Thumb {
    let w = h * 3 / 4;
    let mut c = Canvas::new(w, h);
    c.stroke_rect(Rect::new(0, 0, w, h), 2, PLACEHOLDER_GRAY);
    let (fw, fh) = (w as f32, h as f32);
    c.stroke_segments(
        &[
            ((fw * 0.3, fh * 0.4), (fw * 0.7, fh * 0.6)),
            ((fw * 0.7, fh * 0.4), (fw * 0.3, fh * 0.6)),
        ],
        2.0,
        PLACEHOLDER_GRAY,
    );
    Thumb { w, h, px: c.px }
}

fn load_thumb(path: &str, target_h: i32) -> Result<Thumb, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if len > MAX_PHOTO_BYTES {
        return Err(format!("{len} bytes is too large for a photo"));
    }
    let mut dec = jpeg_decoder::Decoder::new(BufReader::new(file));
    dec.read_info().map_err(|e| e.to_string())?;
    let info = dec.info().ok_or("no JPEG header")?;
    if info.width == 0 || info.height == 0 {
        return Err("empty image".into());
    }
    let target_w = ((info.width as f32 * target_h as f32 / info.height as f32).round() as i32)
        .clamp(1, 2 * target_h);
    // Let the decoder skip most of the DCT work: it decodes at 1/2, 1/4 or 1/8 size.
    let (sw, sh) = dec
        .scale(
            target_w.min(u16::MAX as i32) as u16,
            target_h.min(u16::MAX as i32) as u16,
        )
        .map_err(|e| e.to_string())?;
    let data = dec.decode().map_err(|e| e.to_string())?;
    let (sw, sh) = (sw as usize, sh as usize);
    let rgb: Vec<u32> = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => data
            .chunks_exact(3)
            .map(|c| (c[0] as u32) << 16 | (c[1] as u32) << 8 | c[2] as u32)
            .collect(),
        jpeg_decoder::PixelFormat::L8 => data.iter().map(|&l| (l as u32) * 0x010101).collect(),
        jpeg_decoder::PixelFormat::L16 => data
            .chunks_exact(2)
            .map(|c| (c[0] as u32) * 0x010101)
            .collect(),
        jpeg_decoder::PixelFormat::CMYK32 => data
            .chunks_exact(4)
            .map(|c| {
                let k = 255 - c[3] as u32;
                let ch = |v: u8| (255 - v as u32) * k / 255;
                ch(c[0]) << 16 | ch(c[1]) << 8 | ch(c[2])
            })
            .collect(),
    };
    if rgb.len() < sw * sh {
        return Err("truncated image".into());
    }
    Ok(Thumb {
        w: target_w,
        h: target_h,
        px: box_downscale(&rgb, sw, sh, target_w as usize, target_h as usize),
    })
}

/// A mini-program code as WeChat sent it (PNG or JPEG, told apart by their signatures),
/// full size, transparency laid on white.
fn load_code_image(path: &str) -> Result<Thumb, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if len > MAX_CODE_IMAGE_BYTES {
        return Err(format!("{len} bytes is too large for a code image"));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let (w, h, px) = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png_rgb(&bytes)?
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        decode_jpeg_rgb(&bytes)?
    } else {
        return Err("neither a PNG nor a JPEG image".into());
    };
    Ok(Thumb {
        w: w as i32,
        h: h as i32,
        px,
    })
}

fn check_code_image_size(w: u32, h: u32) -> Result<(), String> {
    if w == 0 || h == 0 || w > MAX_CODE_IMAGE_SIDE || h > MAX_CODE_IMAGE_SIDE {
        return Err(format!(
            "{w}x{h} pixels is not a code image (1..={MAX_CODE_IMAGE_SIDE} per side)"
        ));
    }
    Ok(())
}

fn decode_png_rgb(bytes: &[u8]) -> Result<(u32, u32, Vec<u32>), String> {
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = dec.read_info().map_err(|e| e.to_string())?;
    let (w, h) = reader.info().size();
    check_code_image_size(w, h)?;
    let size = reader
        .output_buffer_size()
        .ok_or("image too large to decode")?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    let channels = info.color_type.samples();
    let on_white = |v: u8, a: u8| (v as u32 * a as u32 + 255 * (255 - a as u32)) / 255;
    let mut px = Vec::with_capacity((w * h) as usize);
    for y in 0..h as usize {
        let row = &buf[y * info.line_size..];
        for x in 0..w as usize {
            let p = &row[x * channels..x * channels + channels];
            let (r, g, b, a) = match p {
                [l] => (*l, *l, *l, 255),
                [l, a] => (*l, *l, *l, *a),
                [r, g, b] => (*r, *g, *b, 255),
                [r, g, b, a] => (*r, *g, *b, *a),
                _ => return Err(format!("{channels} samples per pixel")),
            };
            px.push(on_white(r, a) << 16 | on_white(g, a) << 8 | on_white(b, a));
        }
    }
    Ok((w, h, px))
}

fn decode_jpeg_rgb(bytes: &[u8]) -> Result<(u32, u32, Vec<u32>), String> {
    let mut dec = jpeg_decoder::Decoder::new(bytes);
    dec.read_info().map_err(|e| e.to_string())?;
    let info = dec.info().ok_or("no JPEG header")?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    check_code_image_size(w, h)?;
    let data = dec.decode().map_err(|e| e.to_string())?;
    let px: Vec<u32> = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => data
            .chunks_exact(3)
            .map(|c| (c[0] as u32) << 16 | (c[1] as u32) << 8 | c[2] as u32)
            .collect(),
        jpeg_decoder::PixelFormat::L8 => data.iter().map(|&l| (l as u32) * 0x010101).collect(),
        other => return Err(format!("JPEG pixel format {other:?} is not a code image")),
    };
    if px.len() < (w * h) as usize {
        return Err("truncated image".into());
    }
    Ok((w, h, px))
}

/// Area-average resize; the source is at most 2x the target after DCT scaling, so this is cheap.
fn box_downscale(src: &[u32], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(dw * dh);
    for dy in 0..dh {
        let y0 = dy * sh / dh;
        let y1 = ((dy + 1) * sh / dh).max(y0 + 1).min(sh);
        for dx in 0..dw {
            let x0 = dx * sw / dw;
            let x1 = ((dx + 1) * sw / dw).max(x0 + 1).min(sw);
            let (mut r, mut g, mut b, mut n) = (0u32, 0u32, 0u32, 0u32);
            for y in y0..y1 {
                for &p in &src[y * sw + x0..y * sw + x1] {
                    r += (p >> 16) & 0xFF;
                    g += (p >> 8) & 0xFF;
                    b += p & 0xFF;
                    n += 1;
                }
            }
            let n = n.max(1);
            out.push((r / n) << 16 | (g / n) << 8 | (b / n));
        }
    }
    out
}
