//! [`Mirror`]: the core of one mirror as the pipeline drives it, frame by frame.
//!
//! The vision stage measures and the core decides. Per frame the pipeline asks whether the
//! body detector is due ([`Mirror::detection_due`]), hands it the people found
//! ([`Mirror::observe_people`]: presence, the shopper, sessions), asks whose body and hands
//! vision should follow ([`Mirror::shopper`]), and hands it what vision saw of them
//! ([`Mirror::observe_body`]: gestures). Every decision is a function of these observations
//! and their media timestamps.

use mirrorsight_contract::events::{EndReason, Event, EventKind};

use crate::gesture::{GestureConfig, GestureRecognizer};
use crate::ids::IdGenerator;
use crate::observation::{MotionGrid, Observation, Person};
use crate::presence::{PresenceConfig, PresenceTracker};
use crate::session::{SessionConfig, SessionTracker};

/// Body-landmark score above which the shopper counts as followed by the landmark model.
const FOLLOWED_POSE_SCORE: f32 = 0.9;
/// A detection older than this no longer says where the shopper's body is.
const SHOPPER_STALE_S: f64 = 1.0;

#[derive(Debug)]
pub struct Mirror {
    presence: PresenceTracker,
    sessions: SessionTracker,
    gestures: GestureRecognizer,
    /// The body landmarks followed the shopper confidently in the last frame.
    followed: bool,
    frame: [u32; 2],
}

impl Mirror {
    /// Each section should have passed its `validate`. `mirrored`: the frames are a flipped,
    /// selfie-style view (`camera.mirrored`).
    pub fn new(
        presence: PresenceConfig,
        session: SessionConfig,
        gestures: GestureConfig,
        mirrored: bool,
        ids: IdGenerator,
    ) -> Self {
        Self {
            presence: PresenceTracker::new(presence),
            sessions: SessionTracker::new(session, ids),
            gestures: GestureRecognizer::new(gestures, mirrored),
            followed: false,
            frame: [0, 0],
        }
    }

    /// Should the body detector run on the frame at `t`?
    pub fn detection_due(&mut self, t: f64, motion: &MotionGrid) -> bool {
        let busy = self.sessions.wants_frequent_observations();
        let followed = self.followed && self.sessions.shopper_in_view();
        self.presence.detection_due(t, motion, busy, followed)
    }

    /// The body detector's people in a frame of `frame` pixels; appends session events.
    pub fn observe_people(
        &mut self,
        t: f64,
        frame: [u32; 2],
        people: &[Person],
        motion: &MotionGrid,
        out: &mut Vec<Event>,
    ) {
        self.frame = frame;
        let in_session = self.sessions.session().is_some();
        let seen = self.presence.observe(t, frame, people, motion, in_session);
        let before = out.len();
        self.sessions.observe(t, seen, out);
        if out[before..]
            .iter()
            .any(|e| matches!(e.kind, EventKind::SessionEnded { .. }))
        {
            self.presence.session_ended();
        }
    }

    /// The open session, if any.
    pub fn session(&self) -> Option<&str> {
        self.sessions.session()
    }

    /// Whose body and hands vision should follow at `t`: the session's shopper, if detected
    /// recently.
    pub fn shopper(&self, t: f64) -> Option<&Person> {
        self.sessions.session()?;
        self.presence.shopper(t, SHOPPER_STALE_S)
    }

    /// Where the shopper is (image pixels: xmin, ymin, xmax, ymax), for framing photos.
    pub fn shopper_region(&self, t: f64) -> Option<[f32; 4]> {
        self.shopper(t).map(|p| p.region(self.frame))
    }

    /// What vision saw of the shopper's body and hands in one frame; appends gesture events
    /// and the actions they map to. `obs.session` must be [`Self::session`].
    pub fn observe_body(&mut self, obs: &Observation, out: &mut Vec<Event>) {
        self.followed = obs
            .pose
            .as_ref()
            .is_some_and(|p| p.score >= FOLLOWED_POSE_SCORE);
        if obs.session.is_some() {
            self.gestures.observe(obs, out);
        } else {
            // A new shopper starts with a clean slate: no half-seen gesture carries over.
            self.gestures.reset();
        }
    }

    /// Closes what is open at the end of the stream (or when the daemon stops).
    pub fn finish(&mut self, t: f64, reason: EndReason, out: &mut Vec<Event>) {
        self.sessions.finish(t, reason, out);
        self.presence.session_ended();
        self.gestures.reset();
    }
}
