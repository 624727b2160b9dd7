//! The mirror's decisions, free of I/O: observations and media timestamps in, events out.
//!
//! - [`presence`]: who is at the mirror (people followed across detections, the shopper among
//!   them, passers-by ignored) and how often the detector must look.
//! - [`session`]: the session tracker (a shopper arrives, steps away, leaves).
//! - [`gesture`]: the gesture recognizer (hand shapes, swipes, holds, cooldowns) and the
//!   gesture → action map.
//! - [`capture`]: the capture scheduler (photo countdowns, which frames a photo may come from).
//! - [`clip`]: the clip scheduler (turn-around clip countdowns, which frames go into a clip).
//! - [`compare`]: the compare view (which photo is shown large, on which side, when it closes).
//! - [`observation`]: what vision saw in one frame, the input of all of the above.
//! - [`mirror`]: all of the above for one mirror, as the pipeline drives it frame by frame.
//! - [`frame`], [`ids`]: frame metadata and the (seedable) id generator.
//!
//! Like `quinn-proto`, nothing here reads a clock, a file, a socket or a device: every
//! decision is a function of the observations and their media timestamps, so a replayed clip
//! and the live camera behave the same and every test runs on virtual time. Cargo keeps it so:
//! this crate depends on no runtime, HTTP, vision or window crate (a test in the main crate
//! checks `cargo tree`).

pub mod capture;
pub mod clip;
pub mod compare;
pub mod frame;
pub mod gesture;
pub mod ids;
pub mod mirror;
pub mod observation;
pub mod presence;
pub mod session;

/// A config value out of range; `key` is the full dotted key (`presence.min_score`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("config key `{key}`: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

/// The checks every config section makes of its values, with errors that name the full key
/// (`Section("presence").positive("active_interval_s", v)` fails as
/// ``config key `presence.active_interval_s`: must be > 0, got 0``).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Section(pub &'static str);

impl Section {
    pub(crate) fn error(self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: format!("{}.{key}", self.0),
            message: message.into(),
        }
    }

    /// Between 0 and 1.
    pub(crate) fn fraction(self, key: &str, v: f64) -> Result<(), ConfigError> {
        if (0.0..=1.0).contains(&v) {
            Ok(())
        } else {
            Err(self.error(key, format!("must be between 0 and 1, got {v}")))
        }
    }

    /// A finite number above 0.
    pub(crate) fn positive(self, key: &str, v: f64) -> Result<(), ConfigError> {
        if v.is_finite() && v > 0.0 {
            Ok(())
        } else {
            Err(self.error(key, format!("must be > 0, got {v}")))
        }
    }

    /// A finite number, 0 or more.
    pub(crate) fn non_negative(self, key: &str, v: f64) -> Result<(), ConfigError> {
        if v.is_finite() && v >= 0.0 {
            Ok(())
        } else {
            Err(self.error(key, format!("must be >= 0, got {v}")))
        }
    }

    /// Any finite number.
    pub(crate) fn finite(self, key: &str, v: f64) -> Result<(), ConfigError> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(self.error(key, format!("must be a number, got {v}")))
        }
    }
}
