//! Finding a font with Chinese glyphs at run time, and drawing text with it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use ab_glyph::{Font as _, FontVec, PxScale, ScaleFont, point};

use crate::canvas::{Canvas, Rect};
use crate::config::OverlayConfig;
use crate::error::OverlayError;

/// Where Debian and Ubuntu packages put CJK fonts, best first.
pub const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Medium.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
];

/// A loaded font face; cheap to clone.
#[derive(Clone)]
pub struct Font {
    face: Arc<FontVec>,
    path: PathBuf,
}

impl std::fmt::Debug for Font {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Font").field("path", &self.path).finish()
    }
}

impl Font {
    /// The font `cfg.font` names, else the first installed CJK font that has every glyph the
    /// configured texts need.
    pub fn for_config(cfg: &OverlayConfig) -> Result<Self, OverlayError> {
        let text = needed_text(cfg);
        match &cfg.font {
            Some(path) => Self::load_checked(path, &text),
            None => {
                let candidates: Vec<PathBuf> = FONT_CANDIDATES.iter().map(PathBuf::from).collect();
                Self::search(&candidates, true, &text)
            }
        }
    }

    /// First of `candidates` (then `fc-match`, if asked) that loads and covers `text`.
    pub fn search(
        candidates: &[PathBuf],
        ask_fontconfig: bool,
        text: &str,
    ) -> Result<Self, OverlayError> {
        let mut tried: Vec<PathBuf> = Vec::new();
        let from_fc = if ask_fontconfig { fc_match() } else { None };
        for path in candidates.iter().chain(from_fc.iter()) {
            if tried.contains(path) {
                continue;
            }
            tried.push(path.clone());
            if !path.is_file() {
                continue;
            }
            match Self::load_checked(path, text) {
                Ok(font) => return Ok(font),
                Err(e) => tracing::debug!(font = %path.display(), error = %e, "font skipped"),
            }
        }
        Err(OverlayError::FontNotFound { tried })
    }

    /// Loads face 0 of `path` (so `.ttc` collections work) and checks it covers `text`.
    pub fn load_checked(path: &Path, text: &str) -> Result<Self, OverlayError> {
        let data = std::fs::read(path).map_err(|source| OverlayError::FontUnreadable {
            path: path.to_path_buf(),
            source,
        })?;
        let face =
            FontVec::try_from_vec_and_index(data, 0).map_err(|_| OverlayError::FontInvalid {
                path: path.to_path_buf(),
            })?;
        let mut missing: Vec<char> = Vec::new();
        for c in text.chars() {
            if !c.is_whitespace()
                && !c.is_control()
                && face.glyph_id(c).0 == 0
                && !missing.contains(&c)
            {
                missing.push(c);
            }
        }
        if !missing.is_empty() {
            return Err(OverlayError::FontMissingGlyphs {
                path: path.to_path_buf(),
                missing: missing.into_iter().collect(),
            });
        }
        Ok(Self {
            face: Arc::new(face),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Width and height of one line at `px` pixels (ascent to descent).
    pub fn measure(&self, text: &str, px: f32) -> (f32, f32) {
        let sf = self.face.as_scaled(PxScale::from(px));
        let mut width = 0.0;
        let mut prev = None;
        for c in text.chars() {
            let id = sf.glyph_id(c);
            if let Some(p) = prev {
                width += sf.kern(p, id);
            }
            width += sf.h_advance(id);
            prev = Some(id);
        }
        (width, sf.ascent() - sf.descent())
    }

    /// Draws one line with its top-left corner (ascent line) at (`x`, `y`).
    pub fn draw(&self, canvas: &mut Canvas, text: &str, px: f32, x: f32, y: f32, color: u32) {
        let sf = self.face.as_scaled(PxScale::from(px));
        let mut caret = x;
        let mut prev = None;
        for c in text.chars() {
            let id = sf.glyph_id(c);
            if let Some(p) = prev {
                caret += sf.kern(p, id);
            }
            let glyph = id.with_scale_and_position(sf.scale(), point(caret, y + sf.ascent()));
            caret += sf.h_advance(id);
            prev = Some(id);
            if let Some(outlined) = self.face.outline_glyph(glyph) {
                let b = outlined.px_bounds();
                outlined.draw(|gx, gy, cov| {
                    canvas.blend(
                        b.min.x as i32 + gx as i32,
                        b.min.y as i32 + gy as i32,
                        color,
                        cov,
                    );
                });
            }
        }
    }

    /// Draws one character as large as fits `area` (its ink, not its advance box, centred),
    /// for the countdown digits.
    pub fn draw_centered_glyph(&self, canvas: &mut Canvas, c: char, area: Rect, color: u32) {
        if area.w < 4 || area.h < 4 {
            return;
        }
        let probe_px = 100.0;
        let id = self.face.glyph_id(c);
        let Some(probe) = self
            .face
            .outline_glyph(id.with_scale_and_position(probe_px, point(0.0, 0.0)))
        else {
            return;
        };
        let pb = probe.px_bounds();
        let (pw, ph) = (pb.width().max(1.0), pb.height().max(1.0));
        let px = probe_px * (area.w as f32 / pw).min(area.h as f32 / ph);
        let Some(probe) = self
            .face
            .outline_glyph(id.with_scale_and_position(px, point(0.0, 0.0)))
        else {
            return;
        };
        let b = probe.px_bounds();
        let (cx, cy) = area.center();
        let dx = (cx - (b.min.x + b.max.x) / 2.0).round();
        let dy = (cy - (b.min.y + b.max.y) / 2.0).round();
        let Some(glyph) = self
            .face
            .outline_glyph(id.with_scale_and_position(px, point(dx, dy)))
        else {
            return;
        };
        let b = glyph.px_bounds();
        glyph.draw(|gx, gy, cov| {
            canvas.blend(
                b.min.x as i32 + gx as i32,
                b.min.y as i32 + gy as i32,
                color,
                cov,
            );
        });
    }
}

/// Every character the overlay may draw with the configured texts.
fn needed_text(cfg: &OverlayConfig) -> String {
    format!("{}{}0123456789", cfg.caption, cfg.offline_text)
}

/// Fontconfig's pick for Simplified Chinese, if `fc-match` is installed. It may well answer
/// with a Latin font; the caller checks coverage.
fn fc_match() -> Option<PathBuf> {
    let out = Command::new("fc-match")
        .args(["-f", "%{file}", "sans:lang=zh-cn"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let path = String::from_utf8(out.stdout).ok()?;
    let path = path.trim();
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// Splits a configured text into lines at ` / ` and newlines.
pub fn split_lines(text: &str) -> Vec<String> {
    text.split('\n')
        .flat_map(|l| l.split(" / "))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_installed_names_the_fix() {
        let err = Font::search(&[PathBuf::from("/nonexistent/a.ttc")], false, "扫码").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("install fonts-noto-cjk or fonts-wqy-microhei, or set overlay.font"),
            "{msg}"
        );
        assert!(msg.contains("/nonexistent/a.ttc"), "{msg}");
    }

    #[test]
    fn lines_split_at_slash_and_newline() {
        assert_eq!(
            split_lines("扫码领取试衣照片 / Scan for your photos"),
            ["扫码领取试衣照片", "Scan for your photos"]
        );
        assert_eq!(split_lines("a\nb / c"), ["a", "b", "c"]);
        assert!(split_lines("").is_empty());
        assert_eq!(split_lines("http://a/b"), ["http://a/b"]);
    }
}
