//! Where events end up: JSON lines to stdout or a file, an in-memory collector, and the
//! small traits that let actions (QR, photos, overlay) plug into the stream.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use mirrorsight_contract::events::Event;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SinkError {
    #[error("cannot write events to {path}: {source} (check the path and free space)")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mirror display: {0}")]
    Overlay(#[from] mirrorsight_overlay::OverlayError),
}

/// Consumes events (writes, forwards, draws). Sinks see every event in stream order.
pub trait EventSink: Send {
    fn handle(&mut self, event: &Event) -> Result<(), SinkError>;
    /// Media time advanced to `t` (once per frame): lets time-driven sinks (the overlay's
    /// countdown) move on between events.
    fn tick(&mut self, _t: f64) {}
    /// Makes everything handled so far durable or visible. Called once, at the end.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Reacts to events by doing something and possibly emitting further events, which join
/// the stream right after the event that caused them (so replays stay in a fixed order).
pub trait Action: Send {
    fn on_event(&mut self, event: &Event, emit: &mut Vec<Event>);
    /// A photo is due (see [`crate::capture`]).
    fn on_capture(&mut self, _capture: &crate::pipeline::Capture, _emit: &mut Vec<Event>) {}
    /// Media time advanced to `t`: deliver results of background work finished meanwhile.
    fn poll(&mut self, _t: f64, _emit: &mut Vec<Event>) {}
    /// Called once at the end of the stream: finish what is in flight (bounded wait).
    fn finish(&mut self, _emit: &mut Vec<Event>) {}
}

/// JSON Lines to stdout or a file; flushed after each line so `tail -f` and pipes see events at once.
pub struct JsonLines {
    path: PathBuf,
    out: Box<dyn Write + Send>,
}

impl JsonLines {
    /// `-` is stdout; anything else is a file path (created or truncated).
    pub fn open(target: &str) -> Result<Self, SinkError> {
        if target == "-" {
            return Ok(Self {
                path: "stdout".into(),
                out: Box::new(std::io::stdout()),
            });
        }
        let path = Path::new(target).to_path_buf();
        let file = File::create(&path).map_err(|source| SinkError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            out: Box::new(BufWriter::new(file)),
        })
    }
}

impl EventSink for JsonLines {
    fn handle(&mut self, event: &Event) -> Result<(), SinkError> {
        let io = |source| SinkError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = event.to_json_line();
        line.push('\n');
        self.out.write_all(line.as_bytes()).map_err(io)?;
        self.out.flush().map_err(io)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|source| SinkError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// Keeps every event, for `eval` and tests.
#[derive(Default, Clone)]
pub struct Collector {
    pub events: std::sync::Arc<std::sync::Mutex<Vec<Event>>>,
}

impl Collector {
    pub fn take(&self) -> Vec<Event> {
        self.events
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

impl EventSink for Collector {
    fn handle(&mut self, event: &Event) -> Result<(), SinkError> {
        if let Ok(mut v) = self.events.lock() {
            v.push(event.clone());
        }
        Ok(())
    }
}

/// The mirror's screen, fed by the event stream and media time.
pub struct OverlaySink {
    overlay: Option<mirrorsight_overlay::Overlay>,
}

impl OverlaySink {
    pub fn new(overlay: mirrorsight_overlay::Overlay) -> Self {
        Self {
            overlay: Some(overlay),
        }
    }
}

impl EventSink for OverlaySink {
    fn handle(&mut self, event: &Event) -> Result<(), SinkError> {
        if let Some(o) = &mut self.overlay {
            o.apply(event);
        }
        Ok(())
    }

    fn tick(&mut self, t: f64) {
        if let Some(o) = &mut self.overlay {
            o.advance(t);
        }
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        // Draws the last picture (and its snapshot) before the thread ends.
        match self.overlay.take() {
            Some(o) => o.shutdown().map(|_| ()).map_err(SinkError::Overlay),
            None => Ok(()),
        }
    }
}

/// Turns the event stream into the outcome counters of `/metrics` (gestures by kind, QR codes
/// by source and failures, photos) and the shopper's wait for a code.
pub struct MetricsSink {
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    session_started: std::collections::HashMap<String, f64>,
}

impl MetricsSink {
    pub fn new(metrics: std::sync::Arc<crate::metrics::Metrics>) -> Self {
        Self {
            metrics,
            session_started: std::collections::HashMap::new(),
        }
    }
}

impl EventSink for MetricsSink {
    fn handle(&mut self, event: &Event) -> Result<(), SinkError> {
        use mirrorsight_contract::events::EventKind as K;
        let m = &self.metrics;
        let label = |v: &dyn erased::AsLabel| v.label();
        match &event.kind {
            K::SessionStarted { session } => {
                self.session_started.insert(session.clone(), event.t);
            }
            K::SessionEnded { session, .. } => {
                self.session_started.remove(session);
            }
            K::Gesture { gesture, .. } => m.count("mirrorsight_gestures_total", &label(gesture)),
            K::QrMinted {
                session, source, ..
            } => {
                m.count("mirrorsight_qr_codes_total", &label(source));
                if let Some(start) = self.session_started.get(session) {
                    m.record_qr_wait(event.t - start);
                }
            }
            K::QrFailed { .. } => m.count("mirrorsight_qr_codes_total", "failed"),
            K::PhotoSaved { .. } => m.count("mirrorsight_photos_total", "saved"),
            K::PhotoRefused { .. } => m.count("mirrorsight_photos_total", "refused"),
            K::PhotoDiscarded { .. } => m.count("mirrorsight_photos_total", "discarded"),
            K::PhotoUploaded { .. } => m.count("mirrorsight_photos_total", "uploaded"),
            K::PhotoUploadFailed { .. } => m.count("mirrorsight_photos_total", "upload_failed"),
            _ => {}
        }
        Ok(())
    }
}

mod erased {
    /// The wire name of a unit enum value (`thumbs_up`, `pool`), for metric labels.
    pub trait AsLabel {
        fn label(&self) -> String;
    }

    impl<T: serde::Serialize> AsLabel for T {
        fn label(&self) -> String {
            serde_json::to_value(self)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirrorsight_contract::events::{EventKind, GestureKind, QrSource, Side};

    #[test]
    fn metrics_sink_counts_outcomes_and_the_wait_for_a_code() {
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        let mut sink = MetricsSink::new(metrics.clone());
        let s = || "s".to_string();
        for e in [
            Event::new(1.0, EventKind::SessionStarted { session: s() }),
            Event::new(
                1.0,
                EventKind::QrMinted {
                    session: s(),
                    scene: s(),
                    url: "u".into(),
                    expires_at: 0,
                    source: QrSource::Pool,
                },
            ),
            Event::new(
                2.0,
                EventKind::Gesture {
                    session: s(),
                    gesture: GestureKind::ThumbsUp,
                    motion: None,
                    direction: None,
                    hand: Side::Right,
                    confidence: 0.9,
                },
            ),
            Event::new(
                5.0,
                EventKind::PhotoSaved {
                    session: s(),
                    scene: s(),
                    photo: "p".into(),
                    path: "x".into(),
                    trigger: "t".into(),
                },
            ),
        ] {
            sink.handle(&e).unwrap();
        }
        assert_eq!(
            metrics.outcome("mirrorsight_gestures_total", "thumbs_up"),
            1
        );
        assert_eq!(metrics.outcome("mirrorsight_qr_codes_total", "pool"), 1);
        assert_eq!(metrics.outcome("mirrorsight_photos_total", "saved"), 1);
        let text = metrics.render_prometheus();
        assert!(
            text.contains("mirrorsight_gestures_total{gesture=\"thumbs_up\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("mirrorsight_qr_wait_seconds_count 1\n"),
            "{text}"
        );
    }
}
