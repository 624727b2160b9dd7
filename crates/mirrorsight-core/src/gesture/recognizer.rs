//! [`GestureRecognizer`]: observations in, `gesture` and action events out. Sans-IO and driven
//! only by the observations' media timestamps, so a replayed clip and the live camera behave
//! the same.

use mirrorsight_contract::events::{
    Event, EventKind, GestureKind, OutfitDirection, Side, SwipeMotion,
};

use super::config::{Action, GestureConfig};
use super::debounce::{HoldRule, Latch, ShapeTrack};
use super::shape::{HandShape, ShapeReading, classify};
use super::swipe::{BodyRef, HandSighting, StrokeVerdict, SwipeDetector, WristSample};
use crate::observation::{HandLandmarks, Observation, PoseLandmarks, pose};

/// A body reference this old still stands in for shoulders missing in the current frame.
const BODY_MEMORY_S: f64 = 0.5;
/// Pose points below this presence are guesses about limbs the model cannot see.
const MIN_POSE_PRESENCE: f32 = 0.5;
/// A hand within this many palm lengths of where a tracked hand was is the same hand.
const TRACK_MATCH_PALMS: f64 = 2.5;
/// Time running backwards by more than this (a clip restarted, a camera reset) starts over.
const TIME_JUMP_BACK_S: f64 = 0.001;

/// A hand that counts: its reading, and which of the shopper's hands it is.
#[derive(Debug, Clone)]
struct SeenHand {
    reading: ShapeReading,
    side: Side,
}

#[derive(Debug, Clone)]
struct HandTrack {
    wrist: [f64; 2],
    palm: f64,
    last_t: f64,
    side: Side,
    shape: ShapeTrack,
}

/// The recognizer for one mirror. Feed it every observation in time order.
#[derive(Debug, Clone)]
pub struct GestureRecognizer {
    config: GestureConfig,
    mirrored: bool,
    session: Option<String>,
    last_t: Option<f64>,
    body: Option<(f64, BodyRef)>,
    tracks: Vec<HandTrack>,
    /// One per entry of [`HandShape::ALL`].
    latches: [Latch; 6],
    swipes: SwipeDetector,
}

/// The shopper's direction of a swipe, as they see it in the mirror.
///
/// With `mirrored` frames (a selfie view, flipped like a mirror image: what the mirror's screen
/// shows) the shopper's right hand is on the image's right, so image left-to-right motion is
/// motion towards the shopper's right. An unflipped camera faces the shopper, so its left-to-right
/// runs from the shopper's right side to their left: motion towards the shopper's left.
pub fn shopper_direction(motion: SwipeMotion, mirrored: bool) -> Side {
    match (motion, mirrored) {
        (SwipeMotion::ImageLeftToRight, true) | (SwipeMotion::ImageRightToLeft, false) => {
            Side::Right
        }
        (SwipeMotion::ImageRightToLeft, true) | (SwipeMotion::ImageLeftToRight, false) => {
            Side::Left
        }
    }
}

fn other(side: Side) -> Side {
    match side {
        Side::Left => Side::Right,
        Side::Right => Side::Left,
    }
}

fn gesture_kind(shape: HandShape) -> Option<GestureKind> {
    Some(match shape {
        HandShape::OpenPalm => GestureKind::OpenPalm,
        HandShape::Fist => GestureKind::Fist,
        HandShape::ThumbsUp => GestureKind::ThumbsUp,
        HandShape::ThumbsDown => GestureKind::ThumbsDown,
        HandShape::Pointing => GestureKind::Pointing,
        HandShape::Victory => GestureKind::Victory,
        HandShape::None => return None,
    })
}

fn shape_index(shape: HandShape) -> Option<usize> {
    HandShape::ALL.iter().position(|&s| s == shape)
}

impl GestureRecognizer {
    /// `config` should have passed [`GestureConfig::validate`]; `mirrored` is `camera.mirrored`
    /// (the frames are a flipped, selfie-style view).
    pub fn new(config: GestureConfig, mirrored: bool) -> Self {
        Self {
            config,
            mirrored,
            session: None,
            last_t: None,
            body: None,
            tracks: Vec::new(),
            latches: [Latch::default(); 6],
            swipes: SwipeDetector::default(),
        }
    }

    pub fn config(&self) -> &GestureConfig {
        &self.config
    }

    /// Forget everything (the session ended): nothing carries over to the next shopper.
    pub fn reset(&mut self) {
        self.session = None;
        self.clear();
    }

    fn clear(&mut self) {
        self.last_t = None;
        self.body = None;
        self.tracks.clear();
        self.latches = [Latch::default(); 6];
        self.swipes.reset();
    }

    /// Records every judged stroke (offline tuning); see [`Self::stroke_trace`].
    pub fn trace_strokes(&mut self, on: bool) {
        self.swipes.trace = on.then(Vec::new);
    }

    pub fn stroke_trace(&self) -> &[StrokeVerdict] {
        self.swipes.trace.as_deref().unwrap_or(&[])
    }

    /// Processes one frame's observation; appends `gesture` events, each followed by the
    /// action it maps to.
    pub fn observe(&mut self, obs: &Observation, out: &mut Vec<Event>) {
        if !self.config.enabled {
            return;
        }
        let Some(session) = obs.session.as_deref() else {
            // Gestures only count inside a session; a new one starts from scratch.
            if self.session.is_some() {
                self.reset();
            }
            return;
        };
        if self.session.as_deref() != Some(session) {
            self.reset();
            self.session = Some(session.to_string());
        }
        let t = obs.t;
        if !t.is_finite() {
            return;
        }
        if self.last_t.is_some_and(|last| t < last - TIME_JUMP_BACK_S) {
            self.clear();
        }
        self.last_t = Some(t);
        let [w, h] = obs.frame;
        if w == 0 || h == 0 {
            return;
        }
        let (width, height) = (f64::from(w), f64::from(h));

        let body = self.body_ref(t, obs.pose.as_ref(), width, height);
        let wrists = obs.pose.as_ref().map_or([None, None], |p| {
            [pose::LEFT_WRIST, pose::RIGHT_WRIST].map(|i| {
                self.reliable(p, i, width, height)
                    .map(|[x, y]| WristSample { t, x, y, body })
            })
        });
        let hands: Vec<SeenHand> = obs
            .hands
            .iter()
            .filter_map(|hand| self.seen_hand(hand, &wrists, body))
            .collect();

        let sightings: Vec<HandSighting> = hands
            .iter()
            .map(|h| HandSighting {
                t,
                wrist: h.reading.wrist,
                flat: h.reading.flat,
            })
            .collect();
        let swipes = self
            .swipes
            .update(t, width, wrists, &sightings, &self.config);
        for swipe in swipes {
            let direction = shopper_direction(swipe.motion, self.mirrored);
            let hand = self.arm_side(swipe.arm);
            out.push(Event::new(
                t,
                EventKind::Gesture {
                    session: session.to_string(),
                    gesture: GestureKind::Swipe,
                    motion: Some(swipe.motion),
                    direction: Some(direction),
                    hand,
                    confidence: round3(swipe.confidence),
                },
            ));
            self.act(
                t,
                session,
                self.config.actions.swipe,
                "swipe",
                Some(direction),
                out,
            );
        }

        self.static_shapes(t, session, &hands, out);
    }

    /// The pose model labels arms as the person's own on an unflipped camera view; on a
    /// flipped one its "left" arm is the person's right.
    fn arm_side(&self, arm: usize) -> Side {
        let label = if arm == 0 { Side::Left } else { Side::Right };
        if self.mirrored { other(label) } else { label }
    }

    fn reliable(&self, p: &PoseLandmarks, i: usize, width: f64, height: f64) -> Option<[f64; 2]> {
        let q = p.points.get(i)?;
        let [x, y] = [f64::from(q[0]), f64::from(q[1])];
        // A limb outside the picture is the model's guess, and such guesses jump around.
        (q[3] >= self.config.min_pose_visibility
            && q[4] >= MIN_POSE_PRESENCE
            && x.is_finite()
            && y.is_finite()
            && (0.0..width).contains(&x)
            && (0.0..height).contains(&y))
        .then_some([x, y])
    }

    fn body_ref(
        &mut self,
        t: f64,
        pose: Option<&PoseLandmarks>,
        width: f64,
        height: f64,
    ) -> Option<BodyRef> {
        let current = pose.and_then(|p| {
            let l = self.reliable(p, pose::LEFT_SHOULDER, width, height)?;
            let r = self.reliable(p, pose::RIGHT_SHOULDER, width, height)?;
            let shoulder_width = (l[0] - r[0]).hypot(l[1] - r[1]);
            // Shoulders on top of each other: the person is side-on or the points are wrong.
            (shoulder_width >= 0.03 * width).then_some(BodyRef {
                shoulder_y: 0.5 * (l[1] + r[1]),
                center_x: 0.5 * (l[0] + r[0]),
                shoulder_width,
            })
        });
        match current {
            Some(b) => {
                self.body = Some((t, b));
                Some(b)
            }
            None => self
                .body
                .filter(|(seen, _)| t - seen <= BODY_MEMORY_S)
                .map(|(_, b)| b),
        }
    }

    /// A hand the recognizer will use: present, classifiable, and the shopper's.
    fn seen_hand(
        &self,
        hand: &HandLandmarks,
        wrists: &[Option<WristSample>; 2],
        body: Option<BodyRef>,
    ) -> Option<SeenHand> {
        // NaN presence is no presence.
        if hand.presence.is_nan() || hand.presence < self.config.min_hand_presence {
            return None;
        }
        let mut reading = classify(&hand.points)?;
        let near = |w: &WristSample| {
            let d = (w.x - reading.wrist[0]).hypot(w.y - reading.wrist[1]);
            body.is_none_or(|b| d <= self.config.hand_max_wrist_distance * b.shoulder_width)
                .then_some(d)
        };
        let arm = match wrists {
            [Some(l), Some(r)] => match (near(l), near(r)) {
                (Some(a), Some(b)) => Some(if a <= b { 0 } else { 1 }),
                (Some(_), None) => Some(0),
                (None, Some(_)) => Some(1),
                // Both of the shopper's wrists are seen elsewhere: someone else's hand, or a
                // false detection.
                (None, None) => return None,
            },
            [Some(l), None] => near(l).map(|_| 0),
            [None, Some(r)] => near(r).map(|_| 1),
            [None, None] => None,
        };
        let side = match arm {
            Some(a) => self.arm_side(a),
            None => {
                let right = if self.mirrored {
                    1.0 - hand.right_hand
                } else {
                    hand.right_hand
                };
                if right >= 0.5 {
                    Side::Right
                } else {
                    Side::Left
                }
            }
        };
        // Static shapes are shown with the hand raised; a hand hanging at the side or resting
        // in the lap keeps its reading for swipe confirmation but shows no shape. An open palm
        // must also be upright: a relaxed hand hangs open, fingers down.
        let low = body.is_some_and(|b| {
            (reading.wrist[1] - b.shoulder_y) / b.shoulder_width.max(f64::EPSILON)
                > self.config.shape_max_below_shoulder
        });
        let slumped = reading.shape == HandShape::OpenPalm
            && reading.finger_angle_deg.abs() > self.config.palm_max_tilt_deg;
        if low || slumped {
            reading.shape = HandShape::None;
        }
        Some(SeenHand { reading, side })
    }

    fn rule(config: &GestureConfig, shape: HandShape) -> HoldRule {
        let palm = shape == HandShape::OpenPalm;
        HoldRule {
            hold_s: if palm {
                config.palm_hold_s
            } else {
                config.shape_hold_s
            },
            min_frames: config.shape_min_frames,
            min_agreement: config.shape_min_agreement,
            min_confidence: config.min_confidence,
            max_gap_s: config.shape_max_gap_s,
            max_motion: if palm {
                config.palm_max_motion
            } else {
                config.shape_max_motion
            },
        }
    }

    fn static_shapes(&mut self, t: f64, session: &str, hands: &[SeenHand], out: &mut Vec<Event>) {
        // Match hands to tracks, nearest first, so two hands keep their own holds.
        let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
        for (hi, h) in hands.iter().enumerate() {
            for (ti, tr) in self.tracks.iter().enumerate() {
                let d = (tr.wrist[0] - h.reading.wrist[0]).hypot(tr.wrist[1] - h.reading.wrist[1]);
                if d <= TRACK_MATCH_PALMS * tr.palm.max(h.reading.palm) {
                    pairs.push((d, hi, ti));
                }
            }
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut hand_track: Vec<Option<usize>> = vec![None; hands.len()];
        let mut track_used = vec![false; self.tracks.len()];
        for (_, hi, ti) in pairs {
            if hand_track[hi].is_none() && !track_used[ti] {
                hand_track[hi] = Some(ti);
                track_used[ti] = true;
            }
        }
        for (hi, h) in hands.iter().enumerate() {
            if hand_track[hi].is_none() {
                self.tracks.push(HandTrack {
                    wrist: h.reading.wrist,
                    palm: h.reading.palm,
                    last_t: t,
                    side: h.side,
                    shape: ShapeTrack::default(),
                });
                hand_track[hi] = Some(self.tracks.len() - 1);
                track_used.push(true);
            }
        }

        let config = &self.config;
        let mut held = Vec::new();
        for (ti, track) in self.tracks.iter_mut().enumerate() {
            let hand = hand_track
                .iter()
                .position(|&x| x == Some(ti))
                .map(|hi| &hands[hi]);
            if let Some(h) = hand {
                track.wrist = h.reading.wrist;
                track.palm = h.reading.palm;
                track.last_t = t;
                track.side = h.side;
            }
            if let Some(hold) = track
                .shape
                .update(t, hand.map(|h| &h.reading), |s| Self::rule(config, s))
            {
                held.push((hold, track.side));
            }
        }
        let max_gap = config.shape_max_gap_s.max(config.palm_hold_s);
        self.tracks.retain(|tr| t - tr.last_t <= max_gap);

        for (i, &shape) in HandShape::ALL.iter().enumerate() {
            let seen = hands.iter().any(|h| {
                h.reading.shape == shape && h.reading.confidence >= self.config.min_confidence
            });
            self.latches[i].observe(t, seen, self.config.release_s);
        }

        for (hold, side) in held {
            let (Some(kind), Some(i)) = (gesture_kind(hold.shape), shape_index(hold.shape)) else {
                continue;
            };
            if !self.latches[i].ready(t, self.config.cooldown_s) {
                continue;
            }
            self.latches[i].fire(t);
            out.push(Event::new(
                t,
                EventKind::Gesture {
                    session: session.to_string(),
                    gesture: kind,
                    motion: None,
                    direction: None,
                    hand: side,
                    confidence: round3(hold.confidence),
                },
            ));
            let a = &self.config.actions;
            let (action, trigger) = match hold.shape {
                HandShape::OpenPalm => (a.open_palm_hold, "open_palm_hold"),
                HandShape::Fist => (a.fist, "fist"),
                HandShape::ThumbsUp => (a.thumbs_up, "thumbs_up"),
                HandShape::ThumbsDown => (a.thumbs_down, "thumbs_down"),
                HandShape::Pointing => (a.pointing, "pointing"),
                HandShape::Victory => (a.victory, "victory"),
                HandShape::None => continue,
            };
            self.act(t, session, action, trigger, None, out);
        }
    }

    fn act(
        &self,
        t: f64,
        session: &str,
        action: Action,
        trigger: &str,
        direction: Option<Side>,
        out: &mut Vec<Event>,
    ) {
        let session = session.to_string();
        let kind = match action {
            Action::None => return,
            Action::OutfitSwitch => {
                // Only swipes have a direction (validate() refuses the rest).
                let Some(direction) = direction else { return };
                EventKind::OutfitSwitch {
                    session,
                    direction: if direction == self.config.swipe_next_direction {
                        OutfitDirection::Next
                    } else {
                        OutfitDirection::Previous
                    },
                }
            }
            Action::PhotoRequested => EventKind::PhotoRequested {
                session,
                trigger: trigger.to_string(),
            },
            Action::PhotoDiscardRequested => EventKind::PhotoDiscardRequested { session },
        };
        out.push(Event::new(t, kind));
    }
}

fn round3(v: f64) -> f64 {
    (v.clamp(0.0, 1.0) * 1000.0).round() / 1000.0
}
