use std::path::PathBuf;

use crate::config::ConfigError;

/// What to tell an operator whose machine has no usable font.
pub const FONT_FIX: &str = "install fonts-noto-cjk or fonts-wqy-microhei, or set overlay.font";

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("invalid config: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Config(Vec<ConfigError>),

    #[error("no installed font has the overlay's Chinese text (tried {}): {FONT_FIX}", list_paths(.tried))]
    FontNotFound { tried: Vec<PathBuf> },

    #[error("overlay.font: cannot read {path}: {source}: {FONT_FIX}")]
    FontUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("overlay.font: {path} is not a font file the renderer understands: {FONT_FIX}")]
    FontInvalid { path: PathBuf },

    #[error("overlay.font: {path} has no glyph for {missing:?}: {FONT_FIX}")]
    FontMissingGlyphs { path: PathBuf, missing: String },

    #[error("cannot encode a QR code for {url:?}: {reason}")]
    Qr { url: String, reason: String },

    #[error(
        "no X display: DISPLAY is not set (run inside the X session, e.g. Environment=DISPLAY=:0 in the unit, or use --display headless)"
    )]
    NoDisplay,

    #[error(
        "cannot connect to X display {display:?}: {reason} (is the X server running and may this user use it?)"
    )]
    XConnect { display: String, reason: String },

    #[error("overlay.display = {index}, but the X screen has {count} monitor(s)")]
    NoSuchMonitor { index: u32, count: usize },

    #[error("X11 window: {0}")]
    Window(String),

    #[error("snapshot {path}: {source}")]
    Snapshot {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("PNG encoding failed: {0}")]
    Png(String),

    #[error("the overlay's drawing thread stopped unexpectedly")]
    DrawThreadDied,
}

fn list_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nothing".to_owned();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
