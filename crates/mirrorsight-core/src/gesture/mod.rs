//! Hand gestures: a sans-IO state machine from per-frame landmarks ([`Observation`]) to
//! `gesture` events and the action events they map to.
//!
//! - [`shape`]: one hand's landmarks → `open_palm`, `fist`, `thumbs_up`, ... with a confidence.
//! - [`swipe`]: the shopper's wrist paths → horizontal swipes, return strokes rejected.
//! - [`debounce`]: holds, agreement over frames, fire-once and cooldowns.
//! - [`recognizer`]: [`GestureRecognizer`], which ties them together and maps gestures to actions.
//! - [`config`]: `[gestures]`, every threshold with its default.
//!
//! [`Observation`]: crate::observation::Observation

pub mod config;
pub mod debounce;
pub mod recognizer;
pub mod shape;
pub mod swipe;

#[cfg(test)]
mod offline;
#[cfg(test)]
mod scenarios;
#[cfg(test)]
pub(crate) mod synth;

pub use config::{Action, ActionMap, GestureConfig, GestureConfigError};
pub use recognizer::{GestureRecognizer, shopper_direction};
pub use shape::{SHAPES, ShapeReading, classify};
