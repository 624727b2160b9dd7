//! mirrorsight: presence, gestures and QR codes for a smart fitting mirror.
//!
//! Data flows one way: [`source`] → [`vision`] → events → [`actions`] → [`sinks`].
//! The decision logic ([`session`]) is sans-IO and driven by media timestamps, so a replayed
//! clip behaves exactly like the live camera it was recorded from.

pub mod actions;
pub mod augment;
pub mod bench;
pub mod config;
pub mod eval;
pub mod frame;
pub mod heap;
pub mod metrics;
pub mod pipeline;
pub mod service;
pub mod sinks;
pub mod source;
pub mod vision;

pub use mirrorsight_contract::events;
// The sans-IO core, re-exported under the names the rest of the crate and the tests use.
pub use mirrorsight_core::{capture, gesture, ids, observation, session};
