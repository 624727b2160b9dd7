//! Counters and latency histograms shared by the stages; rendered as Prometheus text for
//! `/metrics` and summarised as p50/p95 by `bench`.

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Anything else that wants lines in `/metrics` (photo spool, QR minting, a sink's counters).
pub trait PrometheusText: Send + Sync {
    /// Appends complete `# HELP`/`# TYPE`/sample lines to `out`.
    fn render_prometheus(&self, out: &mut String);
}

/// Pipeline stages whose latency is tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The vision thread's whole work on one frame (every stage below but decode).
    Frame,
    Decode,
    Preprocess,
    Inference,
    Tracking,
    Hands,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Frame,
        Stage::Decode,
        Stage::Preprocess,
        Stage::Inference,
        Stage::Tracking,
        Stage::Hands,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Frame => "frame",
            Stage::Decode => "decode",
            Stage::Preprocess => "preprocess",
            Stage::Inference => "inference",
            Stage::Tracking => "tracking",
            Stage::Hands => "hands",
        }
    }
}

/// Log-spaced buckets from 10 µs to ~40 s: exact enough for p50/p95, constant memory for months.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    sum_s: f64,
    count: u64,
}

const BUCKETS: usize = 96;
const FIRST_BOUND_S: f64 = 1e-5;
const GROWTH: f64 = 1.17;

fn bound(i: usize) -> f64 {
    FIRST_BOUND_S * GROWTH.powi(i as i32)
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS + 1],
            sum_s: 0.0,
            count: 0,
        }
    }
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        let i = if s <= FIRST_BOUND_S {
            0
        } else {
            (((s / FIRST_BOUND_S).ln() / GROWTH.ln()).ceil() as usize).min(BUCKETS)
        };
        self.counts[i] += 1;
        self.sum_s += s;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sum of everything recorded, in milliseconds.
    pub fn total_ms(&self) -> f64 {
        self.sum_s * 1000.0
    }

    /// The q-quantile in milliseconds (upper bound of its bucket, so never optimistic).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let target = (q * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return bound(i) * 1000.0;
            }
        }
        bound(BUCKETS) * 1000.0
    }

    fn write_prometheus(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        // Every 6th bucket keeps the exposition short while still resolving 10 µs..40 s.
        for (i, c) in self.counts.iter().enumerate().take(BUCKETS) {
            cumulative += c;
            if i % 6 == 0 {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{labels}le=\"{:.6}\"}} {cumulative}",
                    bound(i)
                );
            }
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {}", self.count);
        let labels = labels.trim_end_matches(',');
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum_s);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub frames_captured: AtomicU64,
    pub frames_processed: AtomicU64,
    pub frames_dropped: AtomicU64,
    /// Frames of a turn-around clip the encoder's queue could not take.
    pub clip_frames_dropped: AtomicU64,
    pub detector_runs: AtomicU64,
    pub palm_detector_runs: AtomicU64,
    pub sessions_started: AtomicU64,
    pub events_emitted: AtomicU64,
    /// Bytes the photo spool uses, and photos in it not yet confirmed by the backend.
    pub spool_bytes: AtomicU64,
    pub spool_pending_uploads: AtomicU64,
    stages: Mutex<Vec<Histogram>>,
    /// What happened, counted from the event stream: (metric family, label value) → count.
    outcomes: Mutex<std::collections::BTreeMap<(&'static str, String), u64>>,
    /// Media seconds from `session_started` to the session's `qr_minted`: how long a shopper
    /// waits for a code.
    qr_wait: Mutex<Histogram>,
}

/// Labelled counter families filled from the event stream.
const OUTCOME_FAMILIES: [(&str, &str, &str); 3] = [
    (
        "mirrorsight_gestures_total",
        "gesture",
        "Gestures recognised, by kind.",
    ),
    (
        "mirrorsight_qr_codes_total",
        "outcome",
        "QR codes shown (by source) and mint failures reported.",
    ),
    (
        "mirrorsight_photos_total",
        "outcome",
        "Photos saved, refused, discarded, uploaded and failed upload attempts.",
    ),
];

impl Metrics {
    pub fn new() -> Self {
        Self {
            stages: Mutex::new(vec![Histogram::default(); Stage::ALL.len()]),
            ..Default::default()
        }
    }

    pub fn record(&self, stage: Stage, d: Duration) {
        if let Ok(mut h) = self.stages.lock()
            && let Some(h) = h.get_mut(stage as usize)
        {
            h.record(d);
        }
    }

    pub fn stage(&self, stage: Stage) -> Histogram {
        self.stages
            .lock()
            .ok()
            .and_then(|h| h.get(stage as usize).cloned())
            .unwrap_or_default()
    }

    /// Counts one outcome in a labelled family (see `OUTCOME_FAMILIES`).
    pub fn count(&self, family: &'static str, label: &str) {
        if let Ok(mut m) = self.outcomes.lock() {
            *m.entry((family, label.to_string())).or_default() += 1;
        }
    }

    pub fn outcome(&self, family: &'static str, label: &str) -> u64 {
        self.outcomes
            .lock()
            .ok()
            .and_then(|m| m.get(&(family, label.to_string())).copied())
            .unwrap_or(0)
    }

    pub fn record_qr_wait(&self, seconds: f64) {
        if let Ok(mut h) = self.qr_wait.lock() {
            h.record(Duration::from_secs_f64(seconds.max(0.0)));
        }
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Prometheus text exposition format.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        for (name, help, v) in [
            (
                "mirrorsight_frames_captured_total",
                "Frames delivered by the source.",
                &self.frames_captured,
            ),
            (
                "mirrorsight_frames_processed_total",
                "Frames processed by the vision stage.",
                &self.frames_processed,
            ),
            (
                "mirrorsight_frames_dropped_total",
                "Stale frames dropped because vision was busy.",
                &self.frames_dropped,
            ),
            (
                "mirrorsight_clip_frames_dropped_total",
                "Frames of turn-around clips dropped because the encoder was behind.",
                &self.clip_frames_dropped,
            ),
            (
                "mirrorsight_presence_detector_runs_total",
                "Runs of the person detector.",
                &self.detector_runs,
            ),
            (
                "mirrorsight_palm_detector_runs_total",
                "Runs of the palm detector.",
                &self.palm_detector_runs,
            ),
            (
                "mirrorsight_sessions_started_total",
                "Shopper sessions started.",
                &self.sessions_started,
            ),
            (
                "mirrorsight_events_total",
                "Events emitted.",
                &self.events_emitted,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                Self::get(v)
            );
        }
        for (name, help, v) in [
            (
                "mirrorsight_spool_bytes",
                "Disk space used by the photo spool.",
                &self.spool_bytes,
            ),
            (
                "mirrorsight_spool_pending_uploads",
                "Photos in the spool the backend has not confirmed yet.",
                &self.spool_pending_uploads,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                Self::get(v)
            );
        }
        if let Ok(outcomes) = self.outcomes.lock() {
            for (family, label, help) in OUTCOME_FAMILIES {
                let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} counter");
                for ((f, value), n) in outcomes.iter() {
                    if *f == family {
                        let _ = writeln!(out, "{family}{{{label}=\"{value}\"}} {n}");
                    }
                }
            }
        }
        if let Ok(h) = self.qr_wait.lock() {
            let name = "mirrorsight_qr_wait_seconds";
            let _ = writeln!(
                out,
                "# HELP {name} Media time from session start to its QR code being shown.\n# TYPE {name} histogram"
            );
            h.write_prometheus(&mut out, name, "");
        }
        let name = "mirrorsight_stage_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Per-frame latency of each pipeline stage.\n# TYPE {name} histogram"
        );
        for stage in Stage::ALL {
            self.stage(stage).write_prometheus(
                &mut out,
                name,
                &format!("stage=\"{}\",", stage.name()),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_bracket_the_recorded_values() {
        let mut h = Histogram::default();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile_ms(0.5);
        let p95 = h.quantile_ms(0.95);
        assert!((50.0..=50.0 * GROWTH).contains(&p50), "{p50}");
        assert!((95.0..=95.0 * GROWTH).contains(&p95), "{p95}");
    }

    #[test]
    fn prometheus_text_has_counters_and_histograms() {
        let m = Metrics::new();
        Metrics::inc(&m.frames_processed);
        m.record(Stage::Inference, Duration::from_millis(9));
        let text = m.render_prometheus();
        assert!(
            text.contains("mirrorsight_frames_processed_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("mirrorsight_stage_seconds_count{stage=\"inference\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("mirrorsight_stage_seconds_bucket{stage=\"inference\",le=\"+Inf\"} 1\n"),
            "{text}"
        );
    }
}
