//! mirrorsight: presence, gestures and QR codes for a smart fitting mirror.
//!
//! Data flows one way: [`source`] → [`vision`] → events → actions ([`sink::Action`]) → sinks.
//! The decision logic ([`session`]) is sans-IO and driven by media timestamps, so a replayed
//! clip behaves exactly like the live camera it was recorded from.

pub mod actions;
pub mod capture;
pub mod config;
pub mod eval;
pub mod frame;
pub mod gesture;
pub mod ids;
pub mod metrics;
pub mod pipeline;
pub mod service;
pub mod session;
pub mod sink;
pub mod source;
pub mod vision;

pub use mirrorsight_contract::events;
