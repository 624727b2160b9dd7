//! The mirror's decisions, free of I/O: observations and media timestamps in, events out.
//!
//! - [`session`]: the session tracker (a shopper arrives, steps away, leaves).
//! - [`gesture`]: the gesture recognizer (hand shapes, swipes, holds, cooldowns) and the
//!   gesture → action map.
//! - [`capture`]: the capture scheduler (photo countdowns, which frames a photo may come from).
//! - [`observation`]: what vision saw in one frame, the input of all of the above.
//! - [`frame`], [`ids`]: frame metadata and the (seedable) id generator.
//!
//! Like `quinn-proto`, nothing here reads a clock, a file, a socket or a device: every
//! decision is a function of the observations and their media timestamps, so a replayed clip
//! and the live camera behave the same and every test runs on virtual time. Cargo keeps it so:
//! this crate depends on no runtime, HTTP, vision or window crate (a test in the main crate
//! checks `cargo tree`).

pub mod capture;
pub mod frame;
pub mod gesture;
pub mod ids;
pub mod observation;
pub mod session;
