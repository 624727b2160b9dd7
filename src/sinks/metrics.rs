//! Turns the event stream into `/metrics`: outcome counters (gestures by kind, QR codes by
//! source and failures, photos) and the shopper's wait for a code. Always on: the pipeline adds
//! it to whatever sinks the config lists.

use std::collections::HashMap;
use std::sync::Arc;

use mirrorsight_contract::events::Event;

use super::{EventSink, SinkError};
use crate::metrics::Metrics;

/// Turns the event stream into the outcome counters of `/metrics` (gestures by kind, QR codes
/// by source and failures, photos) and the shopper's wait for a code.
pub struct MetricsSink {
    metrics: Arc<Metrics>,
    session_started: HashMap<String, f64>,
}

impl MetricsSink {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            session_started: HashMap::new(),
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
        let metrics = Arc::new(Metrics::new());
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
                    image: None,
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
