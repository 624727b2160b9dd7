//! The vision stage: frames in, observations out. It measures (motion, people, the
//! shopper's body and hands); the core (`mirrorsight_core::mirror::Mirror`) decides
//! (presence, sessions, gestures). The pipeline drives the two, frame by frame.

pub mod follow;
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

use mirrorsight_core::observation::{MotionGrid, Observation, Person};
use mirrorsight_core::presence::PresenceConfig;
use thiserror::Error;

use crate::config::{HandsConfig, ModelsConfig, OnnxRuntimeConfig};
use crate::frame::{Frame, RgbImage};
use crate::metrics::{Metrics, Stage};
use follow::BodyFollow;
use hands::HandTracker;
use motion::MotionGate;
use pose::PoseTracker;
use presence::PresenceDetector;
use runtime::{ModelsDir, Runtime, RuntimeError};

#[derive(Debug, Error)]
pub enum VisionError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("model {model} failed: {reason}")]
    Inference { model: &'static str, reason: String },
}

/// The models and trackers that look at frames.
pub struct VisionStage {
    presence: PresenceDetector,
    motion: MotionGate,
    /// Body landmarks and hands (`hands.enabled`).
    trackers: Option<(PoseTracker, HandTracker)>,
    /// The last body landmarks and the hands that stand in for them between runs.
    follow: BodyFollow,
    body_landmarks_every: u32,
    search_margin: f32,
    metrics: Arc<Metrics>,
}

impl VisionStage {
    pub fn new(
        onnxruntime: &OnnxRuntimeConfig,
        models: &ModelsConfig,
        presence: &PresenceConfig,
        hands: &HandsConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, VisionError> {
        let runtime = Runtime::get(onnxruntime)?;
        let models = ModelsDir::locate(models)?;
        let detector = PresenceDetector::new(runtime.load(&models, presence::MODEL)?, presence);
        let trackers = if hands.enabled {
            let palm = runtime.load(
                &models,
                &format!("palm_detection_{}", hands.palm_model.suffix()),
            )?;
            let landmarks = runtime.load(
                &models,
                &format!("hand_landmark_{}", hands.landmark_model.suffix()),
            )?;
            Some((
                PoseTracker::new(runtime.load(&models, pose::MODEL)?),
                HandTracker::new(palm, landmarks, hands),
            ))
        } else {
            None
        };
        Ok(Self {
            presence: detector,
            motion: MotionGate::default(),
            trackers,
            follow: BodyFollow::default(),
            body_landmarks_every: hands.body_landmarks_every,
            search_margin: hands.search_margin,
            metrics,
        })
    }

    /// How much each part of the picture changed since the previous frame (a few µs).
    pub fn motion(&mut self, image: &RgbImage) -> MotionGrid {
        self.motion.update(image)
    }

    /// The people in the frame (the body detector: the "preprocess" and "inference" stages).
    pub fn detect_people(&mut self, image: &RgbImage) -> Result<Vec<Person>, VisionError> {
        let started = Instant::now();
        let roi = self.presence.preprocess(image);
        let prepared = Instant::now();
        self.metrics.record(Stage::Preprocess, prepared - started);
        let people = self.presence.infer(&roi)?;
        self.metrics.record(Stage::Inference, prepared.elapsed());
        Metrics::inc(&self.metrics.detector_runs);
        Ok(people)
    }

    /// The shopper's body landmarks and hands, only inside a session and only around them.
    /// Without a shopper the trackers forget what they followed.
    pub fn observe_body(
        &mut self,
        frame: &Frame,
        shopper: Option<&Person>,
        session: Option<&str>,
    ) -> Result<Observation, VisionError> {
        let image = &frame.image;
        let mut observation = Observation {
            t: frame.t,
            frame: [image.width, image.height],
            session: session.map(str::to_string),
            ..Default::default()
        };
        let Some((pose, hands)) = &mut self.trackers else {
            return Ok(observation);
        };
        let (Some(_), Some(shopper)) = (session, shopper) else {
            pose.reset();
            hands.reset();
            self.follow.reset();
            return Ok(observation);
        };
        let started = Instant::now();
        let [x0, y0, x1, y1] = shopper.region(observation.frame);
        let (mw, mh) = (
            self.search_margin * (x1 - x0),
            self.search_margin * (y1 - y0),
        );
        let (w, h) = (image.width as f32, image.height as f32);
        let search = [
            (x0 - mw).max(0.0),
            (y0 - mh).max(0.0),
            (x1 + mw).min(w),
            (y1 + mh).min(h),
        ];
        observation.shopper = Some(search);
        let runs_before = hands.palm_runs();
        // Between runs of the body model the followed hands carry the arms (see `follow`).
        let predicted = if self.follow.may_skip(self.body_landmarks_every) {
            self.follow.predicted()
        } else {
            None
        };
        let skipping = predicted.is_some();
        let body = match predicted {
            Some(body) => Some(body),
            None => pose.track(image, Some(shopper))?,
        };
        let arms = pose_hand_seeds(body.as_ref(), observation.frame);
        let seeds: Vec<tensor::Roi> = arms.iter().flatten().copied().collect();
        let may_search = hands_may_be_up(body.as_ref());
        observation.hands = hands.track(frame.t, image, search, &seeds, may_search)?;
        observation.pose = if skipping {
            match self.follow.skipped(&observation.hands) {
                Some(body) => Some(body),
                // A followed hand was lost: the body model runs on this frame after all.
                None => {
                    let body = pose.track(image, Some(shopper))?;
                    let raised =
                        pose_hand_seeds(body.as_ref(), observation.frame).map(|arm| arm.is_some());
                    self.follow
                        .body_ran(body.as_ref(), raised, &observation.hands);
                    body
                }
            }
        } else {
            self.follow.body_ran(
                body.as_ref(),
                arms.map(|arm| arm.is_some()),
                &observation.hands,
            );
            body
        };
        self.metrics.palm_detector_runs.fetch_add(
            hands.palm_runs() - runs_before,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.metrics.record(Stage::Hands, started.elapsed());
        Ok(observation)
    }
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

/// Pose-landmark visibility above which the body's hand points (wrist, index, pinky) are
/// trusted to seed the hand landmark model.
const SEED_VISIBILITY: f32 = 0.5;

/// Where the body landmarks put a raised hand of the shopper: one crop per arm whose wrist,
/// index and pinky points are visible and inside the frame, and whose wrist is no lower than
/// the bottom of the chest (every gesture is made with a raised hand). Left arm, then right.
fn pose_hand_seeds(
    pose: Option<&crate::observation::PoseLandmarks>,
    frame: [u32; 2],
) -> [Option<tensor::Roi>; 2] {
    use crate::observation::pose as p;
    let Some(pose) = pose else {
        return [None, None];
    };
    let pt = |i: usize| pose.points.get(i).copied();
    let shoulders = match (pt(p::LEFT_SHOULDER), pt(p::RIGHT_SHOULDER)) {
        (Some(l), Some(r)) if l[3] >= SEED_VISIBILITY && r[3] >= SEED_VISIBILITY => Some((
            (l[1] + r[1]) / 2.0,
            ((l[0] - r[0]).powi(2) + (l[1] - r[1]).powi(2)).sqrt(),
        )),
        _ => None,
    };
    let (w, h) = (frame[0] as f32, frame[1] as f32);
    [
        (p::LEFT_WRIST, p::LEFT_INDEX, p::LEFT_PINKY),
        (p::RIGHT_WRIST, p::RIGHT_INDEX, p::RIGHT_PINKY),
    ]
    .map(|(wi, ii, pi)| {
        let (wr, ix, pk) = (pt(wi)?, pt(ii)?, pt(pi)?);
        let visible = [wr, ix, pk].iter().all(|q| {
            q[3] >= SEED_VISIBILITY && (0.0..w).contains(&q[0]) && (0.0..h).contains(&q[1])
        });
        let raised = shoulders.is_none_or(|(sy, sw)| wr[1] < sy + 1.2 * sw.max(1.0));
        (visible && raised)
            .then(|| hands::roi_from_pose_hand([wr[0], wr[1]], [ix[0], ix[1]], [pk[0], pk[1]]))
    })
}
