//! The mirror's screen. Behind two-way glass black pixels are mirror and bright pixels show
//! through, so the screen is black except for what the shopper needs: the session's QR code
//! and caption, short answers to gestures, the photo countdown and flash, the photo strip,
//! the compare view (one photo large beside the reflection), and an offline notice when no
//! code can be had.
//!
//! - [`OverlayModel`]: pure state machine, events and media time in, [`Scene`] out.
//! - [`Renderer`]: draws a [`Scene`] into a 0RGB [`Framebuffer`] (rotation, layout, text).
//! - [`Overlay`]: model plus a drawing thread behind a never-blocking latest-state queue,
//!   to an X11 window, PNG snapshots, or nowhere ([`Output`]).
//! - [`render_qr_png`]: a standalone QR PNG for `mirrorsight mint --png`.

mod canvas;
mod config;
mod error;
mod font;
mod model;
mod overlay;
mod qr;
mod render;
mod window;

pub use canvas::{Framebuffer, Rect};
pub use config::{ConfigError, Dim, HEADLESS_AUTO_SIZE, OverlayConfig, QrPosition, Rotation};
pub use error::{FONT_FIX, OverlayError};
pub use font::{FONT_CANDIDATES, Font};
pub use model::{CompareView, Feedback, OverlayModel, QrView, Scene, Thumbnail};
pub use overlay::{Output, Overlay, OverlayStats, TimedScene, snapshot_name};
pub use qr::{QUIET_ZONE_MODULES, QrMatrix, render_qr_png};
pub use render::{Layout, Renderer};
