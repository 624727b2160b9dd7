//! The vision stage: frames in, observations and events out.

pub mod hands;
pub mod model;
pub mod motion;
pub mod pose;
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
use crate::gesture::GestureRecognizer;
use crate::ids::IdGenerator;
use crate::metrics::{Metrics, Stage};
use crate::observation::Observation;
use crate::session::SessionTracker;
use hands::HandTracker;
use motion::MotionGate;
use pose::PoseTracker;
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
    tracked_interval_s: f64,
    motion_threshold: f32,
    last_run: Option<f64>,
    last_motion: f64,
    last_t: f64,
    shopper: Option<Person>,
    /// Where and when the shopper was last detected, for motion continuation.
    last_detection: Option<(f64, [f32; 4])>,
    motion_grace_s: f64,
    /// Hands and body landmarks, while a session is open.
    hands: Option<(PoseTracker, HandTracker)>,
    search_margin: f32,
    /// The latest frame's observation (what the gesture recognizer consumes).
    observation: Observation,
    gestures: GestureRecognizer,
    metrics: Arc<Metrics>,
}

/// Every gesture is made with a raised hand. While the body landmarks clearly show both
/// wrists hanging low (below the chest), looking for palms would only cost time; without
/// reliable landmarks (turned away, occluded) the search goes on.
fn hands_may_be_up(pose: Option<&crate::observation::PoseLandmarks>) -> bool {
    use crate::observation::pose as p;
    const RELIABLE: f32 = 0.8;
    let Some(pose) = pose else { return true };
    let pt = |i: usize| pose.points.get(i).copied();
    let (Some(ls), Some(rs)) = (pt(p::LEFT_SHOULDER), pt(p::RIGHT_SHOULDER)) else {
        return true;
    };
    if ls[3] < RELIABLE || rs[3] < RELIABLE {
        return true;
    }
    let shoulder_y = (ls[1] + rs[1]) / 2.0;
    let width = ((ls[0] - rs[0]).powi(2) + (ls[1] - rs[1]).powi(2))
        .sqrt()
        .max(1.0);
    [p::LEFT_WRIST, p::RIGHT_WRIST]
        .iter()
        .any(|&i| match pt(i) {
            Some(w) if w[3] >= RELIABLE => w[1] < shoulder_y + 1.2 * width,
            _ => true,
        })
}

/// Pose-landmark score above which the shopper counts as followed by the landmark model.
const FOLLOWED_POSE_SCORE: f32 = 0.9;

/// A detection older than this no longer says where the shopper is.
const SHOPPER_STALE_S: f64 = 1.0;

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
        let trackers = if config.hands.enabled {
            let palm = runtime.load(
                &models,
                &format!("palm_detection_{}", config.hands.palm_model.suffix()),
            )?;
            let landmarks = runtime.load(
                &models,
                &format!("hand_landmark_{}", config.hands.landmark_model.suffix()),
            )?;
            Some((
                PoseTracker::new(runtime.load(&models, pose::MODEL)?),
                HandTracker::new(palm, landmarks, &config.hands),
            ))
        } else {
            None
        };
        Ok(Self {
            presence,
            motion: MotionGate::default(),
            tracker: SessionTracker::new(config.session.clone(), ids),
            active_interval_s: config.presence.active_interval_s,
            idle_interval_s: config.presence.idle_interval_s,
            tracked_interval_s: config.presence.tracked_interval_s,
            motion_threshold: config.presence.motion_threshold,
            last_run: None,
            last_motion: f64::NEG_INFINITY,
            last_t: 0.0,
            shopper: None,
            last_detection: None,
            motion_grace_s: config.presence.motion_grace_s,
            hands: trackers,
            search_margin: config.hands.search_margin,
            observation: Observation::default(),
            gestures: GestureRecognizer::new(config.gestures.clone(), config.camera.mirrored),
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

    pub fn process(&mut self, frame: &Frame, out: &mut Vec<Event>) -> Result<(), VisionError> {
        let t = frame.t;
        self.last_t = t;
        let started = Instant::now();
        if self.motion.update(&frame.image) >= self.motion_threshold {
            self.last_motion = t;
        }
        let busy =
            self.tracker.wants_frequent_observations() || t - self.last_motion < MOTION_HOLD_S;
        // Inside a session, while the body landmarks follow the shopper confidently, they
        // already say the shopper is there: the detector only needs to confirm now and then.
        let followed = self.tracker.shopper_in_view()
            && self
                .observation
                .pose
                .as_ref()
                .is_some_and(|p| p.score >= FOLLOWED_POSE_SCORE);
        let interval = if followed {
            self.tracked_interval_s
        } else if busy {
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
            let present = self.shopper.is_some() || self.moving_on(t);
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
        self.observe_hands(frame)?;
        if self.observation.session.is_some() {
            self.gestures.observe(&self.observation, out);
        } else {
            // A new shopper starts with a clean slate: no half-seen gesture carries over.
            self.gestures.reset();
        }
        Metrics::inc(&self.metrics.frames_processed);
        Ok(())
    }

    /// What this frame showed of the shopper's body and hands.
    pub fn observation(&self) -> &Observation {
        &self.observation
    }

    /// Body landmarks and hands of the shopper, only inside a session and only around them.
    fn observe_hands(&mut self, frame: &Frame) -> Result<(), VisionError> {
        let t = frame.t;
        let image = &frame.image;
        self.observation = Observation {
            t,
            frame: [image.width, image.height],
            session: self.tracker.session().map(str::to_string),
            ..Default::default()
        };
        let Some((pose, hands)) = &mut self.hands else {
            return Ok(());
        };
        let recent = self
            .last_detection
            .filter(|(seen, _)| t - seen <= SHOPPER_STALE_S);
        let (Some(_), Some((_, region))) = (self.tracker.session(), recent) else {
            pose.reset();
            hands.reset();
            return Ok(());
        };
        let started = Instant::now();
        let (w, h) = (image.width as f32, image.height as f32);
        let m = self.search_margin;
        let (rw, rh) = (region[2] - region[0], region[3] - region[1]);
        let search = [
            ((region[0] - m * rw) * w).max(0.0),
            ((region[1] - m * rh) * h).max(0.0),
            ((region[2] + m * rw) * w).min(w),
            ((region[3] + m * rh) * h).min(h),
        ];
        self.observation.shopper = Some(search);
        self.observation.pose = pose.track(image, self.shopper.as_ref())?;
        let runs_before = hands.palm_runs();
        let may_search = hands_may_be_up(self.observation.pose.as_ref());
        self.observation.hands = hands.track(t, image, search, may_search)?;
        self.metrics.palm_detector_runs.fetch_add(
            hands.palm_runs() - runs_before,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.metrics.record(Stage::Hands, started.elapsed());
        Ok(())
    }

    /// A shopper walking out of the frame is lost by the detector (hip centre off-screen,
    /// body cut off) well before they are gone. Motion next to where they were last seen
    /// keeps them present for at most `presence.motion_grace_s`, so the absence timer
    /// starts when they have actually left, not a second early.
    fn moving_on(&self, t: f64) -> bool {
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
