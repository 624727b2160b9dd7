//! The mirror's screen as a follower of the event stream: the overlay crate draws the QR code,
//! the countdown and the captions; this feeds it events and media time and opens it as
//! `[display]` says (a window, off-screen rendering, or nothing).

use std::path::PathBuf;

use mirrorsight_contract::events::Event;
use mirrorsight_overlay::{Output, Overlay, OverlayConfig, OverlayError};

use crate::config::DisplayMode;
use crate::sinks::{EventSink, SinkError};

pub struct OverlaySink {
    overlay: Option<Overlay>,
}

impl OverlaySink {
    /// Opens the screen as `mode` says; `None` for [`DisplayMode::None`]. `snapshot_dir`: a PNG
    /// each time the picture changes (headless or window).
    pub fn start(
        config: &OverlayConfig,
        mode: DisplayMode,
        snapshot_dir: Option<PathBuf>,
    ) -> Result<Option<Self>, OverlayError> {
        let output = match mode {
            DisplayMode::None => return Ok(None),
            DisplayMode::Window => Output::Window,
            DisplayMode::Headless => Output::Headless { snapshot_dir },
        };
        Ok(Some(Self::new(Overlay::start(config, output)?)))
    }

    pub fn new(overlay: Overlay) -> Self {
        Self {
            overlay: Some(overlay),
        }
    }
}

impl EventSink for OverlaySink {
    fn handle(&mut self, event: &Event) -> Result<(), SinkError> {
        if let Some(o) = &mut self.overlay {
            o.apply(event);
        }
        Ok(())
    }

    fn tick(&mut self, t: f64) {
        if let Some(o) = &mut self.overlay {
            o.advance(t);
        }
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        // Draws the last picture (and its snapshot) before the thread ends.
        match self.overlay.take() {
            Some(o) => o.shutdown().map(|_| ()).map_err(|e| SinkError::Component {
                sink: "mirror display",
                source: Box::new(e),
            }),
            None => Ok(()),
        }
    }
}
