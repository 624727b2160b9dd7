//! The `[overlay]` section of the daemon's config.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Prefix of every key in this section, so errors name the key as written in the TOML file.
const SECTION: &str = "overlay";

/// Size used for a headless render when `width`/`height` are `"auto"`
/// (there is no screen to ask).
pub const HEADLESS_AUTO_SIZE: (u32, u32) = (1920, 1080);

/// `[overlay]`: what the mirror's screen shows and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OverlayConfig {
    /// Screen width in pixels as the hardware sees it (before `rotation`), or `"auto"`.
    /// Default `"auto"`: the size of monitor `display` for the window, 1920 for headless renders.
    pub width: Dim,
    /// Screen height in pixels as the hardware sees it (before `rotation`), or `"auto"`.
    /// Default `"auto"`: the size of monitor `display` for the window, 1080 for headless renders.
    pub height: Dim,
    /// Degrees (0, 90, 180 or 270) the picture is turned clockwise on its way to the screen,
    /// for monitors mounted on their side: with 90 or 270 a 1920x1080 screen gets a portrait
    /// 1080x1920 layout. Default `0`.
    pub rotation: u16,
    /// Which monitor of the X screen ($DISPLAY) gets the window, in
    /// `xrandr --listactivemonitors` order. Default `0`.
    pub display: u32,
    /// Size of one QR module in screen pixels; 12 px modules scan from about 1 m on a
    /// 55" 1080p panel. The 4-module quiet zone is always kept. Default `12`.
    pub qr_module_px: u32,
    /// Where the QR code goes: `top_left`, `top_right`, `bottom_left`, `bottom_right` or
    /// `center`. Default `"bottom_right"`.
    pub qr_position: QrPosition,
    /// Caption under the QR code; ` / ` or a newline starts a new line.
    /// Default `"扫码领取试衣照片 / Scan for your photos"`.
    pub caption: String,
    /// Shown where the QR code would be while no code could be minted.
    /// Default `"二维码暂不可用，正在重试 / QR code unavailable, retrying"`.
    pub offline_text: String,
    // No countdown length here: each `photo_requested` says when its photo is taken
    // (`capture_at_ms`, from `photos.countdown_s`) and the screen counts down to that.
    /// How long the screen flashes white when the countdown ends, in seconds. Default `0.2`.
    pub flash_s: f64,
    /// How long a gesture's arrow, check or cross stays on screen, in seconds. Default `0.8`.
    pub feedback_s: f64,
    /// Height of the photo thumbnails in the strip, in pixels. Default `160`.
    pub thumbnail_height: u32,
    /// The compare view (a session photo shown large beside the reflection, opened by a swipe)
    /// closes after this many seconds without a gesture. Default `8.0`.
    pub compare_idle_s: f64,
    /// Font file (`.ttf`, `.otf` or `.ttc`, first face) with Chinese glyphs. Default unset:
    /// WenQuanYi Micro Hei or Noto Sans CJK from their Debian packages, else `fc-match`.
    pub font: Option<PathBuf>,
}

impl Default for OverlayConfig {
    fn default() -> Self {
        Self {
            width: Dim::Auto,
            height: Dim::Auto,
            rotation: 0,
            display: 0,
            qr_module_px: 12,
            qr_position: QrPosition::BottomRight,
            caption: "扫码领取试衣照片 / Scan for your photos".to_owned(),
            offline_text: "二维码暂不可用，正在重试 / QR code unavailable, retrying".to_owned(),
            flash_s: 0.2,
            feedback_s: 0.8,
            thumbnail_height: 160,
            compare_idle_s: 8.0,
            font: None,
        }
    }
}

/// One invalid key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Full key, e.g. `overlay.qr_module_px`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

impl OverlayConfig {
    /// Every problem at once, so a broken config is fixed in one edit.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut bad = |key: &str, message: String| {
            errors.push(ConfigError {
                key: format!("{SECTION}.{key}"),
                message,
            });
        };
        match (self.width, self.height) {
            (Dim::Auto, Dim::Auto) | (Dim::Px(_), Dim::Px(_)) => {}
            (Dim::Auto, Dim::Px(_)) => bad(
                "width",
                "set both width and height, or leave both \"auto\"".into(),
            ),
            (Dim::Px(_), Dim::Auto) => bad(
                "height",
                "set both width and height, or leave both \"auto\"".into(),
            ),
        }
        for (key, dim) in [("width", self.width), ("height", self.height)] {
            if let Dim::Px(px) = dim
                && !(64..=16384).contains(&px)
            {
                bad(
                    key,
                    format!("must be \"auto\" or 64..=16384 pixels (got {px})"),
                );
            }
        }
        if !matches!(self.rotation, 0 | 90 | 180 | 270) {
            bad(
                "rotation",
                format!("must be 0, 90, 180 or 270 (got {})", self.rotation),
            );
        }
        if !(2..=64).contains(&self.qr_module_px) {
            bad(
                "qr_module_px",
                format!("must be 2..=64 pixels (got {})", self.qr_module_px),
            );
        }
        for (key, value, max) in [
            ("flash_s", self.flash_s, 2.0),
            ("feedback_s", self.feedback_s, 10.0),
            ("compare_idle_s", self.compare_idle_s, 600.0),
        ] {
            if !value.is_finite() || !(0.0..=max).contains(&value) {
                bad(key, format!("must be 0..={max} seconds (got {value})"));
            }
        }
        if self.compare_idle_s == 0.0 {
            bad(
                "compare_idle_s",
                "must be more than 0 seconds, or the compare view could never be seen".into(),
            );
        }
        if !(32..=1024).contains(&self.thumbnail_height) {
            bad(
                "thumbnail_height",
                format!("must be 32..=1024 pixels (got {})", self.thumbnail_height),
            );
        }
        for (key, text) in [
            ("caption", &self.caption),
            ("offline_text", &self.offline_text),
        ] {
            if text.chars().count() > 200 {
                bad(
                    key,
                    format!("at most 200 characters (got {})", text.chars().count()),
                );
            }
        }
        if let Some(font) = &self.font
            && font.as_os_str().is_empty()
        {
            bad(
                "font",
                "empty path; leave it out to search the installed fonts".into(),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Clockwise rotation as a type the renderer can match on.
    pub fn rotation(&self) -> Rotation {
        match self.rotation {
            90 => Rotation::Cw90,
            180 => Rotation::Cw180,
            270 => Rotation::Cw270,
            _ => Rotation::None,
        }
    }

    /// The configured size, if both dimensions are given.
    pub fn fixed_size(&self) -> Option<(u32, u32)> {
        match (self.width, self.height) {
            (Dim::Px(w), Dim::Px(h)) => Some((w, h)),
            _ => None,
        }
    }
}

/// A screen dimension: a pixel count or `"auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dim {
    #[default]
    Auto,
    Px(u32),
}

impl Serialize for Dim {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Dim::Auto => s.serialize_str("auto"),
            Dim::Px(px) => s.serialize_u32(*px),
        }
    }
}

impl<'de> Deserialize<'de> for Dim {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DimVisitor;
        impl Visitor<'_> for DimVisitor {
            type Value = Dim;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a pixel count or \"auto\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dim, E> {
                u32::try_from(v)
                    .map(Dim::Px)
                    .map_err(|_| E::custom(format!("{v} pixels is too large")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dim, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("{v} is negative")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dim, E> {
                if v == "auto" {
                    Ok(Dim::Auto)
                } else {
                    Err(E::custom(format!(
                        "expected a pixel count or \"auto\", got {v:?}"
                    )))
                }
            }
        }
        d.deserialize_any(DimVisitor)
    }
}

/// Where the QR code and its caption sit on the (rotated) screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QrPosition {
    TopLeft,
    TopRight,
    BottomLeft,
    #[default]
    BottomRight,
    Center,
}

impl QrPosition {
    pub const ALL: [QrPosition; 5] = [
        QrPosition::TopLeft,
        QrPosition::TopRight,
        QrPosition::BottomLeft,
        QrPosition::BottomRight,
        QrPosition::Center,
    ];
}

/// Clockwise turn from the layout to the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rotation {
    #[default]
    None,
    Cw90,
    Cw180,
    Cw270,
}

impl Rotation {
    pub fn swaps_axes(self) -> bool {
        matches!(self, Rotation::Cw90 | Rotation::Cw270)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(OverlayConfig::default().validate(), Ok(()));
    }

    #[test]
    fn errors_name_the_full_key() {
        let cfg = OverlayConfig {
            qr_module_px: 0,
            rotation: 45,
            flash_s: f64::NAN,
            ..Default::default()
        };
        let keys: Vec<String> = cfg
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(
            keys,
            [
                "overlay.rotation",
                "overlay.qr_module_px",
                "overlay.flash_s"
            ]
        );
    }

    #[test]
    fn half_auto_size_is_rejected() {
        let cfg = OverlayConfig {
            width: Dim::Px(1080),
            ..Default::default()
        };
        let errs = cfg.validate().unwrap_err();
        assert_eq!(errs[0].key, "overlay.height");
    }
}
