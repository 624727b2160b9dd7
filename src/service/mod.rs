//! Running as a well-behaved Linux service: systemd readiness and watchdog ([`watchdog`]),
//! health shared by the stages ([`health`]), the local HTTP endpoints ([`http`]) and signals
//! ([`signals`]).
//!
//! Everything here observes the pipeline; nothing here sits in the frame path, so a slow
//! HTTP client or a missing systemd can never hold frames up.

pub mod health;
pub mod http;
pub mod signals;
pub mod watchdog;

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

pub use health::{Health, HealthReport, HealthSettings};
pub use http::{HttpServer, HttpState, PrometheusText};
pub use signals::{ReloadRequests, Shutdown, SignalHandler};
pub use watchdog::{
    Notifier, Notify, RecordingNotifier, SystemdNotifier, WatchdogCore, WatchdogThread,
};

#[derive(Debug, Error)]
pub enum ServiceError {
    #[error(
        "service.listen = \"{addr}\": cannot listen: {source} (is another mirrorsight or exporter running there?)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("NOTIFY_SOCKET={path}: {reason}")]
    NotifySocket { path: String, reason: String },
}

/// A `[service]` value that cannot work, with the key that holds it.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("config key `{key}`: {message}")]
pub struct ServiceConfigError {
    pub key: &'static str,
    pub message: String,
}

fn key_error(key: &'static str, message: impl Into<String>) -> ServiceConfigError {
    ServiceConfigError {
        key,
        message: message.into(),
    }
}

/// `[service]`: how the daemon reports its health.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Address (IP:port) of the HTTP server with /healthz, /metrics and /events; "" disables
    /// it. Keep it on loopback: the endpoints have no authentication. Default "127.0.0.1:9464".
    pub listen: String,
    /// /healthz turns 503 when no frame has been processed for this long (seconds). Default 2.
    pub stall_after_s: f64,
    /// /healthz turns 503 when frames finish processing this long after capture (seconds):
    /// the pipeline no longer keeps up. Default 1.
    pub max_lag_s: f64,
    /// Feed systemd's watchdog (`WatchdogSec=` in the unit) while frames flow. With it off a
    /// unit that sets `WatchdogSec=` gets killed; leave it on. Default true.
    pub watchdog: bool,
    /// While the camera is being reopened the watchdog keeps being fed for at most this long
    /// (seconds), then systemd restarts the daemon, which also frees a wedged device. 0 = feed
    /// only while frames flow. Default 60.
    pub reconnect_grace_s: f64,
    /// Events buffered per /events client; a client that falls further behind skips ahead
    /// (and is told how many it missed). Default 256.
    pub events_buffer: usize,
    /// `mirrorsight run` logs a status line (sessions, photos, frames) this often (seconds),
    /// and once more at shutdown; 0 = only at shutdown. Default 300.
    pub status_interval_s: f64,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
            stall_after_s: 2.0,
            max_lag_s: 1.0,
            watchdog: true,
            reconnect_grace_s: 60.0,
            events_buffer: 256,
            status_interval_s: 300.0,
        }
    }
}

impl ServiceConfig {
    /// Checks every key; errors name it as `service.<key>`.
    pub fn validate(&self) -> Result<(), ServiceConfigError> {
        self.listen_addr()?;
        let positive = |key: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(key_error(key, format!("must be > 0, got {v}")))
            }
        };
        positive("service.stall_after_s", self.stall_after_s)?;
        positive("service.max_lag_s", self.max_lag_s)?;
        if !(self.reconnect_grace_s.is_finite() && self.reconnect_grace_s >= 0.0) {
            return Err(key_error("service.reconnect_grace_s", "must be >= 0"));
        }
        if !(1..=65536).contains(&self.events_buffer) {
            return Err(key_error("service.events_buffer", "must be 1..=65536"));
        }
        if !(self.status_interval_s.is_finite() && self.status_interval_s >= 0.0) {
            return Err(key_error("service.status_interval_s", "must be >= 0"));
        }
        Ok(())
    }

    /// `None` when the server is disabled (`listen = ""`).
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, ServiceConfigError> {
        let listen = self.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        listen.parse().map(Some).map_err(|_| {
            key_error(
                "service.listen",
                format!("{listen:?} is not IP:port (like \"127.0.0.1:9464\"), or \"\" to disable"),
            )
        })
    }

    pub fn health_settings(&self) -> HealthSettings {
        HealthSettings {
            stall_after: secs(self.stall_after_s),
            max_lag: secs(self.max_lag_s),
        }
    }

    pub fn reconnect_grace(&self) -> Duration {
        secs(self.reconnect_grace_s)
    }

    /// `None` when only the shutdown status line is wanted.
    pub fn status_interval(&self) -> Option<Duration> {
        (self.status_interval_s > 0.0).then(|| secs(self.status_interval_s))
    }
}

/// Seconds from validated config to a Duration, never panicking on odd values.
fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.clamp(0.0, 1e9)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_config_defaults_and_keys() {
        let c = ServiceConfig::default();
        c.validate().unwrap();
        assert_eq!(
            c.listen_addr().unwrap(),
            Some("127.0.0.1:9464".parse().unwrap())
        );
        let c: ServiceConfig = toml::from_str("listen = \"\"\nstall_after_s = 0.5").unwrap();
        c.validate().unwrap();
        assert_eq!(c.listen_addr().unwrap(), None);
        assert_eq!(c.health_settings().stall_after, Duration::from_millis(500));
        assert!(toml::from_str::<ServiceConfig>("port = 1").is_err());

        for (toml, key) in [
            ("listen = \"localhost\"", "service.listen"),
            ("stall_after_s = 0", "service.stall_after_s"),
            ("max_lag_s = -1", "service.max_lag_s"),
            ("reconnect_grace_s = -1", "service.reconnect_grace_s"),
            ("events_buffer = 0", "service.events_buffer"),
            ("status_interval_s = -1", "service.status_interval_s"),
        ] {
            let c: ServiceConfig = toml::from_str(toml).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{toml}: {e}");
        }
    }
}
