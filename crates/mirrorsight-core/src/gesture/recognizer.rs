//! [`GestureRecognizer`]: observations in, `gesture` and action events out. Sans-IO and driven
//! only by the observations' media timestamps, so a replayed clip and the live camera behave
//! the same.

use mirrorsight_contract::events::{
    Event, EventKind, GestureKind, OutfitDirection, Side, SwipeMotion,
};

use super::config::{Action, GestureConfig};
use super::debounce::{HoldRule, Latch, ShapeTrack};
use super::shape::{SHAPES, ShapeReading, classify};
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
/// The body's scale and tilt are medians over this much of the recent past.
const SHOULDER_MEMORY_S: f64 = 1.0;
/// Shoulders closer than this share of their typical width: the shopper is side-on.
const SIDE_ON_SHARE: f64 = 0.4;
/// A shoulder line steeper than this is a shopper leaning, not a crooked camera: the body's
/// axes tilt no further.
const MAX_TILT_DEG: f64 = 25.0;

/// One frame's shoulders.
#[derive(Debug, Clone, Copy)]
struct Shoulders {
    t: f64,
    origin: [f64; 2],
    span: f64,
    tilt_deg: f64,
    /// The body's left shoulder on the picture's right: the shopper faces the camera (the pose
    /// model names the shoulders anatomically, so this holds in a mirrored picture too).
    facing: bool,
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A hand that counts: its reading, and which of the shopper's hands it is.
#[derive(Debug, Clone)]
struct SeenHand {
    reading: ShapeReading,
    side: Side,
    /// The pose model's arm (0 left, 1 right) whose wrist it sits on, if the wrists were seen.
    arm: Option<usize>,
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
    /// Recent shoulders, oldest first (see [`Self::body_ref`]).
    shoulders: std::collections::VecDeque<Shoulders>,
    tracks: Vec<HandTrack>,
    /// One per entry of [`SHAPES`].
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

/// Where `shape`'s latch is; `None` for a swipe, which is no static shape.
fn shape_index(shape: GestureKind) -> Option<usize> {
    SHAPES.iter().position(|&s| s == shape)
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
            shoulders: std::collections::VecDeque::new(),
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
        self.shoulders.clear();
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
        let turned_away = self.facing() == Some(false);
        let raw_wrists = match obs.pose.as_ref() {
            Some(p) if !turned_away => {
                [pose::LEFT_WRIST, pose::RIGHT_WRIST].map(|i| self.reliable(p, i, width, height))
            }
            _ => [None, None],
        };
        // Swipes are measured against the body: without shoulders there is no telling a
        // raised-hand swipe from an arm swinging past.
        let wrists = raw_wrists.map(|w| {
            let ([x, y], body) = (w?, body?);
            Some(WristSample { t, x, y, body })
        });
        let hands: Vec<SeenHand> = obs
            .hands
            .iter()
            .filter(|_| !turned_away)
            .filter_map(|hand| self.seen_hand(hand, &raw_wrists, body))
            .collect();

        let sightings: Vec<HandSighting> = hands
            .iter()
            .map(|h| HandSighting {
                t,
                wrist: h.reading.wrist,
                arm: h.arm,
                flat: h.reading.flat,
            })
            .collect();
        let swipes = self.swipes.update(t, wrists, &sightings, &self.config);
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

        self.static_shapes(t, session, &hands, body, out);
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

    /// The shopper's body as a frame of reference: this frame's shoulders, with the scale
    /// (shoulder width) and the tilt of the shoulder line as medians over the last moments, so
    /// one bad pair of landmarks or a shopper turning for a second does not rescale everything.
    fn body_ref(
        &mut self,
        t: f64,
        pose: Option<&PoseLandmarks>,
        width: f64,
        height: f64,
    ) -> Option<BodyRef> {
        self.shoulders
            .retain(|s| t - s.t <= SHOULDER_MEMORY_S && s.t <= t);
        let current = pose.and_then(|p| {
            let l = self.reliable(p, pose::LEFT_SHOULDER, width, height)?;
            let r = self.reliable(p, pose::RIGHT_SHOULDER, width, height)?;
            let (a, b) = if l[0] <= r[0] { (l, r) } else { (r, l) };
            let span = (b[0] - a[0]).hypot(b[1] - a[1]);
            let typical = self.typical_shoulder_width();
            // Shoulders nearly on top of each other: the shopper turned side-on (or the points
            // are wrong); the body's scale is not this frame's.
            if typical.is_some_and(|w| span < SIDE_ON_SHARE * w) || span <= 0.0 {
                return None;
            }
            let tilt = (b[1] - a[1]).atan2(b[0] - a[0]).to_degrees();
            Some(Shoulders {
                t,
                origin: [0.5 * (l[0] + r[0]), 0.5 * (l[1] + r[1])],
                span,
                tilt_deg: tilt.clamp(-MAX_TILT_DEG, MAX_TILT_DEG),
                facing: l[0] > r[0],
            })
        });
        let current = match current {
            Some(s) => {
                self.shoulders.push_back(s);
                s
            }
            // Shoulders missing for a moment: the last ones still stand in.
            None => *self.shoulders.back().filter(|s| t - s.t <= BODY_MEMORY_S)?,
        };
        let scale = median(self.shoulders.iter().map(|s| s.span));
        let tilt = median(self.shoulders.iter().map(|s| s.tilt_deg)).to_radians();
        Some(BodyRef {
            origin: current.origin,
            axis: [tilt.cos(), tilt.sin()],
            scale,
        })
    }

    /// Does the shopper face the mirror? Gestures are made facing it: a shopper with their
    /// back to the camera (looking at the rack, at a friend) makes none. `None` without
    /// shoulders (hand-only views).
    fn facing(&self) -> Option<bool> {
        if self.shoulders.is_empty() {
            return None;
        }
        let facing = self.shoulders.iter().filter(|s| s.facing).count();
        Some(2 * facing >= self.shoulders.len())
    }

    fn typical_shoulder_width(&self) -> Option<f64> {
        (self.shoulders.len() >= 3).then(|| median(self.shoulders.iter().map(|s| s.span)))
    }

    /// A hand the recognizer will use: present, classifiable, and the shopper's.
    fn seen_hand(
        &self,
        hand: &HandLandmarks,
        wrists: &[Option<[f64; 2]>; 2],
        body: Option<BodyRef>,
    ) -> Option<SeenHand> {
        // NaN presence is no presence.
        if hand.presence.is_nan() || hand.presence < self.config.min_hand_presence {
            return None;
        }
        let mut reading = classify(&hand.points)?;
        let near = |w: &[f64; 2]| {
            let d = (w[0] - reading.wrist[0]).hypot(w[1] - reading.wrist[1]);
            body.is_none_or(|b| d <= self.config.hand_max_wrist_distance * b.scale)
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
            b.below_shoulders(reading.wrist) > self.config.shape_max_below_shoulder
        });
        // Upright means along the body's up, which a crooked camera tilts in the image.
        let tilt = body.map_or(0.0, |b| b.tilt_deg());
        let slumped = reading.shape == Some(GestureKind::OpenPalm)
            && (reading.finger_angle_deg - tilt).abs() > self.config.palm_max_tilt_deg;
        // An open palm shown on purpose faces the camera with the fingers apart. Which hand
        // it is (the body's arm, else the hand model's own guess) decides which knuckle order
        // shows the palm; both flip together in a mirrored picture.
        let perceived_right = match arm {
            Some(a) => Some(a == 1),
            None if (hand.right_hand - 0.5).abs() >= 0.3 => Some(hand.right_hand > 0.5),
            None => None,
        };
        let facing = perceived_right.is_some_and(|right| {
            let turn = if right {
                -reading.palm_turn
            } else {
                reading.palm_turn
            };
            turn >= self.config.palm_min_facing
        });
        let half_shown = reading.shape == Some(GestureKind::OpenPalm)
            && (!facing || reading.finger_spread_deg < self.config.palm_min_spread_deg);
        if low || slumped || half_shown {
            reading.shape = None;
        }
        Some(SeenHand { reading, side, arm })
    }

    fn rule(config: &GestureConfig, shape: GestureKind) -> HoldRule {
        let palm = shape == GestureKind::OpenPalm;
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

    fn static_shapes(
        &mut self,
        t: f64,
        session: &str,
        hands: &[SeenHand],
        body: Option<BodyRef>,
        out: &mut Vec<Event>,
    ) {
        // Two hands together (clasped, pressed palm to palm, opened like a book: signing or
        // fidgeting) show no shape.
        let together = |a: &SeenHand, b: &SeenHand| {
            let unit = body.map_or(2.0 * a.reading.palm.max(b.reading.palm), |b| b.scale);
            (a.reading.wrist[0] - b.reading.wrist[0]).hypot(a.reading.wrist[1] - b.reading.wrist[1])
                < self.config.hands_min_apart_shoulders * unit
        };
        let mut hands = hands.to_vec();
        let close: Vec<bool> = (0..hands.len())
            .map(|i| (0..hands.len()).any(|j| j != i && together(&hands[i], &hands[j])))
            .collect();
        for (h, close) in hands.iter_mut().zip(close) {
            if close {
                h.reading.shape = None;
            }
        }
        let hands = &hands[..];
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

        for (i, &shape) in SHAPES.iter().enumerate() {
            let seen = hands.iter().any(|h| {
                h.reading.shape == Some(shape) && h.reading.confidence >= self.config.min_confidence
            });
            self.latches[i].observe(t, seen, self.config.release_s);
        }

        for (hold, side) in held {
            let Some(i) = shape_index(hold.shape) else {
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
                    gesture: hold.shape,
                    motion: None,
                    direction: None,
                    hand: side,
                    confidence: round3(hold.confidence),
                },
            ));
            let a = &self.config.actions;
            let (action, trigger) = match hold.shape {
                GestureKind::OpenPalm => (a.open_palm_hold, "open_palm_hold"),
                GestureKind::Fist => (a.fist, "fist"),
                GestureKind::ThumbsUp => (a.thumbs_up, "thumbs_up"),
                GestureKind::ThumbsDown => (a.thumbs_down, "thumbs_down"),
                GestureKind::Pointing => (a.pointing, "pointing"),
                GestureKind::Victory => (a.victory, "victory"),
                // Swipes are found and acted on by the swipe detector, never held.
                GestureKind::Swipe => continue,
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
                // Now, until the capture scheduler (which owns the countdown) says when.
                capture_at_ms: mirrorsight_contract::events::media_ms(t),
            },
            Action::PhotoDiscardRequested => EventKind::PhotoDiscardRequested { session },
            Action::ClipRequested => EventKind::ClipRequested {
                session,
                trigger: trigger.to_string(),
                // The clip scheduler sets it (like `capture_at_ms`).
                record_at_ms: mirrorsight_contract::events::media_ms(t),
            },
        };
        out.push(Event::new(t, kind));
    }
}

fn round3(v: f64) -> f64 {
    (v.clamp(0.0, 1.0) * 1000.0).round() / 1000.0
}
