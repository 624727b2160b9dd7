//! The connection health of a reconnecting source, shared (behind an `Arc`) with the daemon's
//! health reporting and its watchdog: state, frames, reconnects, the last error, and the
//! timeline that maps wall instants to media time while no frame arrives.

use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Not yet delivered a frame since start.
    Connecting,
    Connected,
    /// Lost (error, end of stream or freeze) and being reopened.
    Reconnecting,
    /// Shut down.
    Stopped,
}

impl ConnectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "connected",
            ConnectionState::Reconnecting => "reconnecting",
            ConnectionState::Stopped => "stopped",
        }
    }
}

/// What [`SourceHealth`] knows at one moment.
#[derive(Debug, Clone)]
pub struct SourceHealthSnapshot {
    pub state: ConnectionState,
    /// When `state` was entered.
    pub since: Instant,
    pub last_frame: Option<Instant>,
    /// Last attempt to open the source (successful or not).
    pub last_attempt: Option<Instant>,
    pub frames: u64,
    /// Successful reopenings after a loss.
    pub reconnects: u64,
    pub failed_attempts: u64,
    pub last_error: Option<String>,
    /// Wall instant of the first frame and its media time: maps instants to media time.
    pub epoch: Option<(Instant, f64)>,
}

impl SourceHealthSnapshot {
    /// The media time (`Frame::t` scale) of instant `at`, once a frame has been seen: lets
    /// another thread report media time while the source delivers nothing.
    pub fn media_time(&self, at: Instant) -> Option<f64> {
        self.epoch.map(|(epoch, t0)| {
            let since = at.saturating_duration_since(epoch).as_secs_f64();
            t0 + since
        })
    }
}

/// Connection health of a [`super::ReconnectingSource`], shared with health reporting and the watchdog.
#[derive(Debug)]
pub struct SourceHealth {
    state: Mutex<SourceHealthSnapshot>,
}

impl SourceHealth {
    pub fn new(now: Instant) -> Self {
        Self {
            state: Mutex::new(SourceHealthSnapshot {
                state: ConnectionState::Connecting,
                since: now,
                last_frame: None,
                last_attempt: None,
                frames: 0,
                reconnects: 0,
                failed_attempts: 0,
                last_error: None,
                epoch: None,
            }),
        }
    }

    pub fn snapshot(&self) -> SourceHealthSnapshot {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut SourceHealthSnapshot)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub(super) fn set_state(&self, state: ConnectionState, now: Instant) {
        self.update(|h| {
            if h.state != state {
                h.state = state;
                h.since = now;
            }
        });
    }
}
