//! The vision stage: frames in, observations and events out.

pub mod motion;
pub mod presence;
pub mod runtime;
pub mod ssd;
pub mod tensor;

use std::sync::Arc;
use std::time::Instant;

use mirrorsight_contract::events::{EndReason, Event, EventKind};
use thiserror::Error;

use crate::config::Config;
use crate::frame::Frame;
use crate::ids::IdGenerator;
use crate::metrics::{Metrics, Stage};
use crate::session::SessionTracker;
use motion::MotionGate;
use presence::{Person, PresenceDetector};
use runtime::{ModelsDir, Runtime, RuntimeError};

#[derive(Debug, Error)]
pub enum VisionError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("model {model} failed: {reason}")]
    Inference { model: &'static str, reason: String },
}

/// Motion keeps the detector at its active rate for this long after the last change.
const MOTION_HOLD_S: f64 = 1.0;

/// Presence detection on a schedule, feeding the session tracker.
pub struct VisionStage {
    presence: PresenceDetector,
    motion: MotionGate,
    tracker: SessionTracker,
    active_interval_s: f64,
    idle_interval_s: f64,
    motion_threshold: f32,
    last_run: Option<f64>,
    last_motion: f64,
    last_t: f64,
    shopper: Option<Person>,
    /// Where and when the shopper was last detected, for motion continuation.
    last_detection: Option<(f64, [f32; 4])>,
    motion_grace_s: f64,
    metrics: Arc<Metrics>,
}

impl VisionStage {
    pub fn new(
        config: &Config,
        ids: IdGenerator,
        metrics: Arc<Metrics>,
    ) -> Result<Self, VisionError> {
        let runtime = Runtime::get(&config.onnxruntime)?;
        let models = ModelsDir::locate(&config.models)?;
        let presence =
            PresenceDetector::new(runtime.load(&models, presence::MODEL)?, &config.presence);
        Ok(Self {
            presence,
            motion: MotionGate::default(),
            tracker: SessionTracker::new(config.session.clone(), ids),
            active_interval_s: config.presence.active_interval_s,
            idle_interval_s: config.presence.idle_interval_s,
            motion_threshold: config.presence.motion_threshold,
            last_run: None,
            last_motion: f64::NEG_INFINITY,
            last_t: 0.0,
            shopper: None,
            last_detection: None,
            motion_grace_s: config.presence.motion_grace_s,
            metrics,
        })
    }

    /// The shopper as last detected (region used by hands and photos).
    pub fn shopper(&self) -> Option<&Person> {
        self.shopper.as_ref()
    }

    /// Media time of the last processed frame.
    pub fn last_t(&self) -> f64 {
        self.last_t
    }

    pub fn session(&self) -> Option<&str> {
        self.tracker.session()
    }

    pub fn process(&mut self, frame: &Frame, out: &mut Vec<Event>) -> Result<(), VisionError> {
        let t = frame.t;
        self.last_t = t;
        let started = Instant::now();
        if self.motion.update(&frame.image) >= self.motion_threshold {
            self.last_motion = t;
        }
        let busy =
            self.tracker.wants_frequent_observations() || t - self.last_motion < MOTION_HOLD_S;
        let interval = if busy {
            self.active_interval_s
        } else {
            self.idle_interval_s
        };
        let due = self.last_run.is_none_or(|last| t - last >= interval - 1e-6);
        if due {
            self.last_run = Some(t);
            let roi = self.presence.preprocess(&frame.image);
            let prepared = Instant::now();
            self.metrics.record(Stage::Preprocess, prepared - started);
            let people = self.presence.infer(&frame.image, &roi)?;
            let inferred = Instant::now();
            self.metrics.record(Stage::Inference, inferred - prepared);
            Metrics::inc(&self.metrics.detector_runs);
            self.shopper = self.presence.shopper(&people).cloned();
            let present = self.shopper.is_some() || self.moving_on(t, &frame.image);
            if let Some(p) = &self.shopper {
                let (w, h) = (frame.image.width as f32, frame.image.height as f32);
                self.last_detection = Some((
                    t,
                    [
                        p.region[0] / w,
                        p.region[1] / h,
                        p.region[2] / w,
                        p.region[3] / h,
                    ],
                ));
            }
            tracing::debug!(
                t,
                people = ?people.iter().map(|p| (p.score, p.height_fraction, p.center)).collect::<Vec<_>>(),
                shopper = self.shopper.is_some(),
                "presence"
            );
            let before = out.len();
            self.tracker.observe(t, present, out);
            for e in &out[before..] {
                if matches!(e.kind, EventKind::SessionStarted { .. }) {
                    Metrics::inc(&self.metrics.sessions_started);
                }
            }
            self.metrics.record(Stage::Tracking, inferred.elapsed());
        }
        Metrics::inc(&self.metrics.frames_processed);
        Ok(())
    }

    /// A shopper walking out of the frame is lost by the detector (hip centre off-screen,
    /// body cut off) well before they are gone. Motion next to where they were last seen
    /// keeps them present for at most `presence.motion_grace_s`, so the absence timer
    /// starts when they have actually left, not a second early.
    fn moving_on(&self, t: f64, _image: &crate::frame::RgbImage) -> bool {
        let Some((seen, r)) = self.last_detection else {
            return false;
        };
        if self.tracker.session().is_none() || t - seen > self.motion_grace_s {
            return false;
        }
        let half = (r[2] - r[0]) * 0.5;
        let around = [r[0] - half, r[1], r[2] + half, r[3]];
        self.motion.change_in(around) >= self.motion_threshold * 2.0
    }

    /// Closes what is open at the end of the stream.
    pub fn finish(&mut self, reason: EndReason, out: &mut Vec<Event>) {
        self.tracker.finish(self.last_t, reason, out);
    }
}
