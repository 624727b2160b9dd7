//! The compare view's decisions (see [`mirrorsight_core::compare`]) as an action: it follows
//! the stream and the shopper's position and emits `compare_shown` / `compare_closed`, which
//! the screen draws and the photo action uses to discard the photo on show.

use mirrorsight_contract::events::Event;
use mirrorsight_core::compare::CompareBrowser;

use super::Action;

pub struct CompareAction {
    browser: CompareBrowser,
}

impl CompareAction {
    /// `idle_s`: `overlay.compare_idle_s`; `mirrored`: `camera.mirrored`.
    pub fn new(idle_s: f64, mirrored: bool) -> Self {
        Self {
            browser: CompareBrowser::new(idle_s, mirrored),
        }
    }
}

impl Action for CompareAction {
    fn on_event(&mut self, event: &Event, emit: &mut Vec<Event>) {
        self.browser.on_event(event, emit);
    }

    fn observe_shopper(&mut self, image_x: Option<f64>) {
        self.browser.observe_shopper(image_x);
    }

    fn poll(&mut self, t: f64, emit: &mut Vec<Event>) {
        self.browser.poll(t, emit);
    }
}
