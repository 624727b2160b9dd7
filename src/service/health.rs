//! Pipeline health shared by the stages (behind an `Arc`): the capture side reports frames
//! captured, vision reports frames processed, the camera wrapper reports its connection.
//! `/healthz`, `/metrics` and the watchdog read it.
//!
//! Healthy means frames flow (one processed within `stall_after`) and the pipeline keeps up
//! (the last frame finished within `max_lag` of its capture). Instants are passed in or taken
//! from an injectable clock, so tests drive it without sleeping.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::frame::Frame;
use crate::source::{ConnectionState, SourceHealth};
use crate::source::{Source, SourceError, SourceInfo};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthSettings {
    /// No frame processed for this long: unhealthy.
    pub stall_after: Duration,
    /// A frame finished this long after capture: unhealthy (not keeping up).
    pub max_lag: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            stall_after: Duration::from_secs(2),
            max_lag: Duration::from_secs(1),
        }
    }
}

/// Where "now" comes from.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Window for the fps gauges.
const RATE_WINDOW: Duration = Duration::from_secs(2);
/// Bounds memory whatever the frame rate.
const MAX_TIMES: usize = 1024;
/// Frames between capture and processing that we remember capture times of; the queue
/// between them is a handful of frames.
const MAX_IN_FLIGHT: usize = 64;

#[derive(Debug)]
struct State {
    frames_captured: u64,
    frames_processed: u64,
    frames_dropped: u64,
    last_processed: Option<Instant>,
    last_lag: Option<Duration>,
    in_flight: VecDeque<(u64, Instant)>,
    captured_times: VecDeque<Instant>,
    processed_times: VecDeque<Instant>,
    source: Option<Arc<SourceHealth>>,
    stopping: bool,
}

pub struct Health {
    settings: HealthSettings,
    clock: Clock,
    state: Mutex<State>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The answer of `/healthz`, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// "ok" or "unhealthy".
    pub status: &'static str,
    /// Why not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Camera connection ("connected", "reconnecting", …) when the source reports one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera: Option<&'static str>,
    pub last_frame_age_s: Option<f64>,
    pub lag_s: Option<f64>,
    pub capture_fps: f64,
    pub processed_fps: f64,
    pub frames_processed: u64,
    pub frames_dropped: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera_reconnects: Option<u64>,
}

impl HealthReport {
    pub fn healthy(&self) -> bool {
        self.status == "ok"
    }
}

impl Health {
    pub fn new(settings: HealthSettings) -> Self {
        Self::with_clock(settings, Arc::new(Instant::now))
    }

    pub fn with_clock(settings: HealthSettings, clock: Clock) -> Self {
        Self {
            settings,
            clock,
            state: Mutex::new(State {
                frames_captured: 0,
                frames_processed: 0,
                frames_dropped: 0,
                last_processed: None,
                last_lag: None,
                in_flight: VecDeque::new(),
                captured_times: VecDeque::new(),
                processed_times: VecDeque::new(),
                source: None,
                stopping: false,
            }),
        }
    }

    pub fn settings(&self) -> &HealthSettings {
        &self.settings
    }

    pub fn now(&self) -> Instant {
        (self.clock)()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reports the camera connection (from [`crate::source::ReconnectingSource::health`]).
    pub fn attach_source(&self, source: Arc<SourceHealth>) {
        self.lock().source = Some(source);
    }

    pub fn source(&self) -> Option<Arc<SourceHealth>> {
        self.lock().source.clone()
    }

    /// The source delivered frame `seq` at `at` (see also [`Health::tap`]).
    pub fn frame_captured(&self, seq: u64, at: Instant) {
        let mut s = self.lock();
        s.frames_captured += 1;
        if s.in_flight.len() >= MAX_IN_FLIGHT {
            s.in_flight.pop_front();
        }
        s.in_flight.push_back((seq, at));
        push_time(&mut s.captured_times, at);
    }

    /// Frame `seq` went all the way through vision and its events were handed on, at `at`.
    pub fn frame_processed(&self, seq: u64, at: Instant) {
        let mut s = self.lock();
        s.frames_processed += 1;
        s.last_processed = Some(s.last_processed.map_or(at, |l| l.max(at)));
        // Older entries were dropped by the queue (or processed already): forget them.
        while s.in_flight.front().is_some_and(|(q, _)| *q < seq) {
            s.in_flight.pop_front();
        }
        if let Some(&(q, captured)) = s.in_flight.front()
            && q == seq
        {
            s.in_flight.pop_front();
            s.last_lag = Some(at.saturating_duration_since(captured));
        }
        push_time(&mut s.processed_times, at);
    }

    /// Frames the queue has dropped so far because vision was busy (a running total).
    pub fn set_dropped(&self, total: u64) {
        self.lock().frames_dropped = total;
    }

    /// Shutdown began: report unhealthy from now on, so a balancer or kiosk check stops
    /// relying on this instance while it drains.
    pub fn set_stopping(&self) {
        self.lock().stopping = true;
    }

    pub fn last_processed(&self) -> Option<Instant> {
        self.lock().last_processed
    }

    pub fn report(&self, now: Instant) -> HealthReport {
        let s = self.lock();
        let source = s.source.as_ref().map(|h| h.snapshot());
        let camera = source.as_ref().map(|h| h.state.as_str());
        let age = s.last_processed.map(|t| now.saturating_duration_since(t));
        let reason = if s.stopping {
            Some("shutting down".to_string())
        } else {
            match age {
                None => Some(match &source {
                    Some(h) if h.failed_attempts > 0 => format!(
                        "waiting for the first frame; camera {}: {}",
                        h.state.as_str(),
                        h.last_error.as_deref().unwrap_or("?")
                    ),
                    _ => "waiting for the first frame".to_string(),
                }),
                Some(age) if age > self.settings.stall_after => Some(match &source {
                    Some(h) if h.state != ConnectionState::Connected => format!(
                        "no frame processed for {:.1} s; camera {}: {}",
                        age.as_secs_f64(),
                        h.state.as_str(),
                        h.last_error.as_deref().unwrap_or("?")
                    ),
                    _ => format!("no frame processed for {:.1} s", age.as_secs_f64()),
                }),
                Some(_) => match s.last_lag {
                    Some(lag) if lag > self.settings.max_lag => Some(format!(
                        "pipeline lags {:.2} s behind the camera",
                        lag.as_secs_f64()
                    )),
                    _ => None,
                },
            }
        };
        HealthReport {
            status: if reason.is_none() { "ok" } else { "unhealthy" },
            reason,
            camera,
            last_frame_age_s: age.map(|a| round3(a.as_secs_f64())),
            lag_s: s.last_lag.map(|l| round3(l.as_secs_f64())),
            capture_fps: round3(rate(&s.captured_times, now)),
            processed_fps: round3(rate(&s.processed_times, now)),
            frames_processed: s.frames_processed,
            frames_dropped: s.frames_dropped,
            camera_reconnects: source.map(|h| h.reconnects),
        }
    }

    /// Health gauges in Prometheus text, appended to `out` (next to `Metrics::render_prometheus`).
    pub fn render_prometheus(&self, now: Instant, out: &mut String) {
        let r = self.report(now);
        let mut gauge = |name: &str, help: &str, kind: &str, value: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                prom_value(value)
            );
        };
        gauge(
            "mirrorsight_healthy",
            "1 while /healthz answers 200.",
            "gauge",
            f64::from(u8::from(r.healthy())),
        );
        gauge(
            "mirrorsight_camera_fps",
            "Frames per second delivered by the source (last 2 s).",
            "gauge",
            r.capture_fps,
        );
        gauge(
            "mirrorsight_processed_fps",
            "Frames per second processed by the pipeline (last 2 s).",
            "gauge",
            r.processed_fps,
        );
        gauge(
            "mirrorsight_last_frame_age_seconds",
            "Time since the last processed frame (NaN before the first).",
            "gauge",
            r.last_frame_age_s.unwrap_or(f64::NAN),
        );
        gauge(
            "mirrorsight_pipeline_lag_seconds",
            "Capture-to-processed delay of the last frame (NaN if unknown).",
            "gauge",
            r.lag_s.unwrap_or(f64::NAN),
        );
        if let Some(source) = self.source() {
            let h = source.snapshot();
            gauge(
                "mirrorsight_camera_connected",
                "1 while the camera delivers frames.",
                "gauge",
                f64::from(u8::from(h.state == ConnectionState::Connected)),
            );
            gauge(
                "mirrorsight_camera_reconnects_total",
                "Times the camera was reopened after a loss.",
                "counter",
                h.reconnects as f64,
            );
            gauge(
                "mirrorsight_camera_open_failures_total",
                "Failed attempts to open the camera.",
                "counter",
                h.failed_attempts as f64,
            );
        }
    }

    /// Wraps a source so every delivered frame is reported as captured (at the clock's now).
    pub fn tap(self: &Arc<Self>, source: Box<dyn Source>) -> Box<dyn Source> {
        Box::new(HealthTap {
            inner: source,
            health: self.clone(),
        })
    }
}

fn push_time(times: &mut VecDeque<Instant>, at: Instant) {
    if times.len() >= MAX_TIMES {
        times.pop_front();
    }
    times.push_back(at);
}

/// Events per second over the last [`RATE_WINDOW`].
fn rate(times: &VecDeque<Instant>, now: Instant) -> f64 {
    let n = times
        .iter()
        .rev()
        .take_while(|t| now.saturating_duration_since(**t) <= RATE_WINDOW)
        .count();
    n as f64 / RATE_WINDOW.as_secs_f64()
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn prom_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v}")
    }
}

struct HealthTap {
    inner: Box<dyn Source>,
    health: Arc<Health>,
}

impl Source for HealthTap {
    fn info(&self) -> &SourceInfo {
        self.inner.info()
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let frame = self.inner.next_frame()?;
        if let Some(f) = &frame {
            self.health.frame_captured(f.seq, self.health.now());
        }
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn healthy_only_while_frames_flow_and_keep_up() {
        let t0 = Instant::now();
        let h = Health::new(HealthSettings::default());
        let r = h.report(t0);
        assert!(!r.healthy());
        assert_eq!(r.reason.as_deref(), Some("waiting for the first frame"));

        // 30 fps for a second, each frame processed 20 ms after capture.
        for i in 0..30u64 {
            let at = t0 + Duration::from_millis(i * 33);
            h.frame_captured(i, at);
            h.frame_processed(i, at + 20 * MS);
        }
        let now = t0 + 1000 * MS;
        let r = h.report(now);
        assert!(r.healthy(), "{r:?}");
        assert_eq!(r.lag_s, Some(0.02));
        assert_eq!(r.frames_processed, 30);
        assert!((r.processed_fps - 15.0).abs() < 0.6, "{r:?}"); // 30 frames in a 2 s window

        // Frozen: 2 s after the last frame (977 ms + 20 ms) it turns unhealthy.
        assert!(h.report(t0 + 2900 * MS).healthy());
        let r = h.report(t0 + 3100 * MS);
        assert!(!r.healthy());
        assert!(
            r.reason
                .unwrap()
                .starts_with("no frame processed for 2.1 s")
        );

        // Frames again, but processed 1.5 s late: not keeping up.
        h.frame_captured(30, t0 + 4000 * MS);
        h.frame_processed(30, t0 + 5500 * MS);
        let r = h.report(t0 + 5500 * MS);
        assert!(r.reason.unwrap().contains("lags 1.50 s"));

        h.frame_captured(31, t0 + 5510 * MS);
        h.frame_processed(31, t0 + 5530 * MS);
        assert!(h.report(t0 + 5530 * MS).healthy());
        h.set_stopping();
        assert_eq!(
            h.report(t0 + 5530 * MS).reason.as_deref(),
            Some("shutting down")
        );
    }

    #[test]
    fn dropped_frames_do_not_confuse_lag() {
        let t0 = Instant::now();
        let h = Health::new(HealthSettings::default());
        for i in 0..5u64 {
            h.frame_captured(i, t0 + Duration::from_millis(i * 10));
        }
        // Frames 0..3 were dropped by the queue; 4 is processed 30 ms after its capture.
        h.frame_processed(4, t0 + 70 * MS);
        h.set_dropped(4);
        let r = h.report(t0 + 70 * MS);
        assert_eq!(r.lag_s, Some(0.03));
        assert_eq!(r.frames_dropped, 4);
        assert!(r.healthy());
    }

    #[test]
    fn camera_state_is_reported() {
        let t0 = Instant::now();
        let h = Health::new(HealthSettings::default());
        h.attach_source(Arc::new(SourceHealth::new(t0)));
        let r = h.report(t0);
        assert_eq!(r.camera, Some("connecting"));
        assert_eq!(r.camera_reconnects, Some(0));
        let mut text = String::new();
        h.render_prometheus(t0, &mut text);
        assert!(
            text.contains("\nmirrorsight_camera_connected 0\n"),
            "{text}"
        );
        assert!(text.contains("\nmirrorsight_healthy 0\n"), "{text}");
        assert!(
            text.contains("\nmirrorsight_last_frame_age_seconds NaN\n"),
            "{text}"
        );
    }
}
