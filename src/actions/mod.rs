//! Actions: what the daemon does in answer to events (mint and show a QR code, take and
//! deliver photos, record turn-around clips, choose what the compare view shows, draw the mirror's screen). Each runs inside the event dispatcher; an
//! [`Action`] may emit events of its own, the screen ([`overlay`]) only follows the stream.

pub mod clips;
pub mod compare;
pub mod overlay;
pub mod photos;
pub mod qr;

use mirrorsight_contract::events::Event;

/// Reacts to events by doing something and possibly emitting further events, which join
/// the stream right after the event that caused them (so replays stay in a fixed order).
pub trait Action: Send {
    fn on_event(&mut self, event: &Event, emit: &mut Vec<Event>);
    /// A photo is due (see [`crate::capture`]).
    fn on_capture(&mut self, _capture: &crate::frame::Capture, _emit: &mut Vec<Event>) {}
    /// Work for the turn-around clip being recorded (see [`mirrorsight_core::clip`]).
    fn on_clip(&mut self, _work: &crate::frame::ClipJob, _emit: &mut Vec<Event>) {}
    /// Where the shopper's body is in the latest frame (the middle of it, as a fraction of the
    /// image's width as recorded; `None`: nobody seen). Called once per frame, before `poll`.
    fn observe_shopper(&mut self, _image_x: Option<f64>) {}
    /// Media time advanced to `t`: deliver results of background work finished meanwhile.
    fn poll(&mut self, _t: f64, _emit: &mut Vec<Event>) {}
    /// Called once at the end of the stream: finish what is in flight (bounded wait).
    fn finish(&mut self, _emit: &mut Vec<Event>) {}
}
