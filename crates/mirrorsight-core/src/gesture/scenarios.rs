//! End-to-end tests of the recognizer on scripted observations: a seated shopper whose wrists
//! follow keyframed paths, with hands the landmark model only "sees" while they are slow
//! (fast strokes blur them away, as on real footage).

#![cfg(test)]

use mirrorsight_contract::events::{
    Event, EventKind, GestureKind, OutfitDirection, Side, SwipeMotion,
};

use super::config::{Action, GestureConfig};
use super::recognizer::GestureRecognizer;
use super::synth::{Body, HandModel, Pose, View, hand, observation};
use crate::observation::{HandLandmarks, Observation};

const FPS: f64 = 20.0;

/// A keyframed path: (t, x, y); smoothstep between keyframes, constant outside.
#[derive(Debug, Clone)]
struct Path(Vec<(f64, f32, f32)>);

impl Path {
    fn at(&self, t: f64) -> ([f32; 2], bool) {
        let k = &self.0;
        if k.is_empty() {
            return ([0.0, 0.0], false);
        }
        if t <= k[0].0 {
            return ([k[0].1, k[0].2], true);
        }
        for w in k.windows(2) {
            let (t0, x0, y0) = w[0];
            let (t1, x1, y1) = w[1];
            if t <= t1 {
                let u = ((t - t0) / (t1 - t0)).clamp(0.0, 1.0);
                let s = (u * u * (3.0 - 2.0 * u)) as f32;
                let still = x0 == x1 && y0 == y1;
                return ([x0 + (x1 - x0) * s, y0 + (y1 - y0) * s], still);
            }
        }
        let last = k[k.len() - 1];
        ([last.1, last.2], true)
    }
}

/// Shoulders at y = 300, 160 px apart (a shoulder width is 0.25 of the 640 px frame).
const RAISED: f32 = 260.0;
const CHEST: f32 = 400.0;

fn open_hand_at(p: [f32; 2]) -> HandLandmarks {
    hand(
        &Pose::open_palm(),
        &View {
            center: [f64::from(p[0]), f64::from(p[1])],
            scale: 45.0,
            ..View::default()
        },
    )
}

fn shape_at(pose: &Pose, p: [f32; 2]) -> HandLandmarks {
    let model = HandModel::default();
    let mut view = View {
        center: [f64::from(p[0]), f64::from(p[1])],
        scale: 45.0,
        ..View::default()
    };
    // Thumbs are defined by the thumb's direction: turn the hand so the thumb points up.
    view.roll = model.roll_thumb_up(pose, &view);
    hand(pose, &view)
}

struct Run {
    config: GestureConfig,
    mirrored: bool,
}

impl Run {
    fn new() -> Self {
        Self {
            config: GestureConfig::default(),
            mirrored: false,
        }
    }

    /// The pose model's right wrist follows `path`; the hand is seen only while still: open
    /// when raised, relaxed (half-bent) when lowered.
    fn swipes(&self, path: &Path, secs: f64) -> Vec<Event> {
        let body = Body::default();
        self.frames(secs, |t| {
            let (p, still) = path.at(t);
            let hands = match (still, p[1] <= RAISED) {
                (false, _) => vec![],
                (true, true) => vec![open_hand_at(p)],
                (true, false) => vec![shape_at(&Pose::claw(), p)],
            };
            observation(t, &body, Some(body.pose(None, Some(p))), hands)
        })
    }

    fn frames(&self, secs: f64, mut f: impl FnMut(f64) -> Observation) -> Vec<Event> {
        let mut rec = GestureRecognizer::new(self.config.clone(), self.mirrored);
        let mut out = Vec::new();
        let n = (secs * FPS).round() as usize;
        for i in 0..n {
            let t = i as f64 / FPS;
            rec.observe(&f(t), &mut out);
        }
        out
    }
}

/// The events without their times, in a compact form for exact comparison.
fn kinds(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match &e.kind {
            EventKind::Gesture {
                gesture,
                motion,
                direction,
                hand,
                ..
            } => format!("gesture {gesture:?} {motion:?} {direction:?} {hand:?}"),
            EventKind::OutfitSwitch { direction, .. } => format!("outfit_switch {direction:?}"),
            EventKind::PhotoRequested { trigger, .. } => format!("photo_requested {trigger}"),
            EventKind::ClipRequested { trigger, .. } => format!("clip_requested {trigger}"),
            EventKind::PhotoDiscardRequested { .. } => "photo_discard_requested".to_string(),
            other => other.type_name().to_string(),
        })
        .collect()
}

fn times(events: &[Event]) -> Vec<f64> {
    events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Gesture { .. }))
        .map(|e| e.t)
        .collect()
}

/// A swipe each way, each followed by its return stroke across the chest.
fn swipes_with_returns() -> Path {
    Path(vec![
        (0.0, 150.0, RAISED),
        (0.5, 150.0, RAISED),
        // swipe image left → right, 0.47 of the frame in 0.45 s
        (0.95, 450.0, RAISED),
        (1.15, 450.0, RAISED),
        // return stroke: fast, lower, relaxed hand
        (1.4, 170.0, CHEST),
        (2.0, 170.0, CHEST),
        // move over to the right, unhurried, and raise the hand for the other direction
        (3.5, 470.0, RAISED),
        (4.0, 470.0, RAISED),
        // swipe image right → left
        (4.45, 160.0, RAISED),
        (4.65, 160.0, RAISED),
        (4.9, 450.0, CHEST),
        (6.0, 450.0, CHEST),
    ])
}

#[test]
fn one_event_per_swipe_and_none_for_return_strokes() {
    let events = Run::new().swipes(&swipes_with_returns(), 6.5);
    assert_eq!(
        kinds(&events),
        [
            "gesture Swipe Some(ImageLeftToRight) Some(Left) Right",
            "outfit_switch Next",
            "gesture Swipe Some(ImageRightToLeft) Some(Right) Right",
            "outfit_switch Previous",
        ]
    );
    let t = times(&events);
    assert!((0.95..=1.45).contains(&t[0]), "{t:?}");
    assert!((4.45..=4.95).contains(&t[1]), "{t:?}");
    // Each gesture is followed by its action at the same time.
    assert_eq!(events[0].t, events[1].t);
    assert_eq!(events[2].t, events[3].t);
    for e in &events {
        assert_eq!(e.session(), Some("s1"));
    }
}

#[test]
fn mirrored_frames_swap_the_shoppers_direction_and_hand() {
    // In a flipped (selfie) picture, image left-to-right is the shopper moving to their right,
    // and the pose model's "right" arm is the shopper's left.
    let run = Run {
        mirrored: true,
        ..Run::new()
    };
    let events = run.swipes(&swipes_with_returns(), 6.5);
    assert_eq!(
        kinds(&events),
        [
            "gesture Swipe Some(ImageLeftToRight) Some(Right) Left",
            "outfit_switch Previous",
            "gesture Swipe Some(ImageRightToLeft) Some(Left) Left",
            "outfit_switch Next",
        ]
    );
    assert_eq!(
        super::shopper_direction(SwipeMotion::ImageRightToLeft, true),
        Side::Left
    );
    assert_eq!(
        super::shopper_direction(SwipeMotion::ImageRightToLeft, false),
        Side::Right
    );
}

#[test]
fn next_direction_is_configurable() {
    let mut run = Run::new();
    run.config.swipe_next_direction = Side::Right;
    let events = run.swipes(&swipes_with_returns(), 6.5);
    let outfits: Vec<_> = events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::OutfitSwitch { direction, .. } => Some(direction),
            _ => None,
        })
        .collect();
    assert_eq!(outfits, [OutfitDirection::Previous, OutfitDirection::Next]);
}

#[test]
fn a_raised_return_stroke_is_stopped_by_the_refractory_period() {
    // The return stroke at swipe height, open hand at its end: only the refractory period
    // stands between it and a false swipe.
    let path = Path(vec![
        (0.0, 150.0, RAISED),
        (0.5, 150.0, RAISED),
        (0.95, 450.0, RAISED),
        (1.1, 450.0, RAISED),
        (1.4, 150.0, RAISED),
        (1.9, 150.0, RAISED),
        (2.1, 150.0, CHEST),
    ]);
    let events = Run::new().swipes(&path, 3.0);
    assert_eq!(
        kinds(&events),
        [
            "gesture Swipe Some(ImageLeftToRight) Some(Left) Right",
            "outfit_switch Next"
        ]
    );
    // Without the refractory period the same path gives two swipes: the rule is what stops it.
    let mut run = Run::new();
    run.config.swipe_refractory_s = 0.0;
    assert_eq!(times(&run.swipes(&path, 3.0)).len(), 2);
}

#[test]
fn repeated_swipes_the_same_way_each_fire() {
    let mut k = vec![(0.0, 150.0, RAISED)];
    let mut t = 0.5;
    for _ in 0..3 {
        k.push((t, 150.0, RAISED));
        k.push((t + 0.45, 460.0, RAISED));
        k.push((t + 0.6, 460.0, RAISED));
        k.push((t + 0.85, 160.0, CHEST));
        k.push((t + 1.0, 160.0, CHEST));
        k.push((t + 1.2, 150.0, RAISED));
        t += 1.3;
    }
    k.push((t + 0.3, 150.0, CHEST));
    let events = Run::new().swipes(&Path(k), t + 1.0);
    assert_eq!(
        kinds(&events),
        [
            "gesture Swipe Some(ImageLeftToRight) Some(Left) Right",
            "outfit_switch Next",
            "gesture Swipe Some(ImageLeftToRight) Some(Left) Right",
            "outfit_switch Next",
            "gesture Swipe Some(ImageLeftToRight) Some(Left) Right",
            "outfit_switch Next",
        ]
    );
}

#[test]
fn slow_drift_vertical_wave_and_small_wave_give_nothing() {
    // 0.5 of the frame, but over 3 s.
    let drift = Path(vec![
        (0.0, 150.0, RAISED),
        (3.0, 470.0, RAISED),
        (4.0, 470.0, RAISED),
    ]);
    assert_eq!(kinds(&Run::new().swipes(&drift, 4.0)), Vec::<String>::new());

    // Up and down, a little sideways.
    let mut k = vec![];
    for i in 0..8 {
        let t = 0.3 * f64::from(i);
        k.push((
            t,
            300.0 + 40.0 * (i % 2) as f32,
            if i % 2 == 0 { 120.0 } else { 380.0 },
        ));
    }
    assert_eq!(
        kinds(&Run::new().swipes(&Path(k), 3.0)),
        Vec::<String>::new()
    );

    // Waving hello: fast, raised, open hand, but only 0.15 of the frame each way.
    let mut k = vec![];
    for i in 0..12 {
        k.push((
            0.2 * f64::from(i),
            if i % 2 == 0 { 300.0 } else { 396.0 },
            RAISED,
        ));
    }
    assert_eq!(
        kinds(&Run::new().swipes(&Path(k), 3.0)),
        Vec::<String>::new()
    );
}

#[test]
fn a_swipe_across_the_chest_is_not_a_swipe() {
    let path = Path(vec![
        (0.0, 150.0, CHEST),
        (0.5, 150.0, CHEST),
        (0.95, 450.0, CHEST),
        (2.0, 450.0, CHEST),
    ]);
    assert_eq!(kinds(&Run::new().swipes(&path, 2.5)), Vec::<String>::new());
    // Even with an open hand at its end.
    let body = Body::default();
    let events = Run::new().frames(2.5, |t| {
        let (p, still) = path.at(t);
        let hands = if still && t > 0.9 && t < 1.5 {
            vec![open_hand_at(p)]
        } else {
            vec![]
        };
        observation(t, &body, Some(body.pose(None, Some(p))), hands)
    });
    assert_eq!(kinds(&events), Vec::<String>::new());
}

#[test]
fn a_swipe_needs_an_open_hand_at_its_end_unless_configured_otherwise() {
    let body = Body::default();
    let path = Path(vec![
        (0.0, 150.0, RAISED),
        (0.5, 150.0, RAISED),
        (0.95, 450.0, RAISED),
        (2.0, 450.0, RAISED),
    ]);
    let fist = |run: &Run| {
        run.frames(2.5, |t| {
            let (p, _) = path.at(t);
            let hands = vec![hand(
                &Pose::fist(),
                &View {
                    center: [f64::from(p[0]), f64::from(p[1])],
                    scale: 45.0,
                    ..View::default()
                },
            )];
            observation(t, &body, Some(body.pose(None, Some(p))), hands)
        })
    };
    let swipes = |events: Vec<Event>| {
        // (The fist held still afterwards is a gesture of its own.)
        kinds(&events)
            .into_iter()
            .filter(|k| !k.starts_with("gesture Fist"))
            .collect::<Vec<_>>()
    };
    assert_eq!(swipes(fist(&Run::new())), Vec::<String>::new());
    let mut run = Run::new();
    run.config.swipe_require_open_hand = false;
    assert_eq!(
        swipes(fist(&run)),
        [
            "gesture Swipe Some(ImageLeftToRight) Some(Left) Right",
            "outfit_switch Next"
        ]
    );
}

#[test]
fn walking_across_is_not_a_swipe() {
    // The whole body moves with the raised hand.
    let run = Run::new();
    let events = run.frames(3.0, |t| {
        let shift = ((t - 0.5).clamp(0.0, 0.5) / 0.5 * 300.0) as f32;
        let body = Body {
            shoulder_x: [260.0 + shift, 100.0 + shift],
            ..Body::default()
        };
        let p = [60.0 + shift, RAISED];
        let hands = if t < 1.5 {
            vec![open_hand_at(p)]
        } else {
            vec![]
        };
        observation(t, &body, Some(body.pose(None, Some(p))), hands)
    });
    assert_eq!(kinds(&events), Vec::<String>::new());
}

#[test]
fn an_out_of_frame_arm_jumping_around_is_ignored() {
    // The real arm rests; the other one is "seen" (high visibility) jumping 150-190 px per
    // frame along the frame's bottom edge and beyond it.
    let body = Body::default();
    let events = Run::new().frames(4.0, |t| {
        let i = (t * FPS).round() as i32;
        let x = if i % 2 == 0 {
            80.0
        } else {
            330.0 + (i % 3) as f32 * 20.0
        };
        let y = if i % 3 == 0 { 470.0 } else { 530.0 };
        let mut pose = body.pose(Some([x, y]), None);
        pose.points[crate::observation::pose::LEFT_WRIST][3] = 0.9;
        observation(t, &body, Some(pose), vec![])
    });
    assert_eq!(kinds(&events), Vec::<String>::new());
}

#[test]
fn thumbs_up_held_briefly_fires_once() {
    let body = Body::default();
    let p = [200.0, 280.0];
    let events = Run::new().frames(2.0, |t| {
        let hands = if (0.5..0.8).contains(&t) {
            vec![shape_at(&Pose::thumbs_up(), p)]
        } else {
            vec![]
        };
        observation(t, &body, Some(body.pose(None, Some(p))), hands)
    });
    assert_eq!(
        kinds(&events),
        [
            "gesture ThumbsUp None None Right",
            "photo_requested thumbs_up"
        ]
    );
    // Fires once the shape has been held `shape_hold_s` (0.2 s).
    assert_eq!(times(&events), [0.7]);
}

#[test]
fn thumbs_down_asks_to_discard() {
    let body = Body::default();
    let p = [200.0, 280.0];
    let down = {
        let model = HandModel::default();
        let pose = Pose::thumbs_up();
        let mut view = View {
            center: [200.0, 280.0],
            scale: 45.0,
            ..View::default()
        };
        view.roll = model.roll_thumb_up(&pose, &view) + 180.0;
        hand(&pose, &view)
    };
    let events = Run::new().frames(2.0, |t| {
        let hands = if (0.5..1.0).contains(&t) {
            vec![down.clone()]
        } else {
            vec![]
        };
        observation(t, &body, Some(body.pose(None, Some(p))), hands)
    });
    assert_eq!(
        kinds(&events),
        [
            "gesture ThumbsDown None None Right",
            "photo_discard_requested"
        ]
    );
}

#[test]
fn flickering_shapes_give_nothing() {
    let body = Body::default();
    let p = [200.0, 280.0];
    let events = Run::new().frames(3.0, |t| {
        let i = (t * FPS).round() as i32;
        let pose = if i % 2 == 0 {
            Pose::thumbs_up()
        } else {
            Pose::claw()
        };
        observation(
            t,
            &body,
            Some(body.pose(None, Some(p))),
            vec![shape_at(&pose, p)],
        )
    });
    assert_eq!(kinds(&events), Vec::<String>::new());
    // Thumbs up and fist alternating is no better.
    let events = Run::new().frames(3.0, |t| {
        let i = (t * FPS).round() as i32;
        let pose = if i % 2 == 0 {
            Pose::thumbs_up()
        } else {
            Pose::fist()
        };
        observation(
            t,
            &body,
            Some(body.pose(None, Some(p))),
            vec![shape_at(&pose, p)],
        )
    });
    assert_eq!(kinds(&events), Vec::<String>::new());
}

#[test]
fn a_long_hold_fires_once_and_cooldown_spaces_repeats() {
    let body = Body::default();
    let p = [200.0, 280.0];
    // Held 5 s with a dropped frame every second: one event. Then let go for 0.6 s and shown
    // again (fires: released and long past the cooldown), and again 0.6 s after that (released,
    // but only 1 s after the last one fired: inside the 1.5 s cooldown).
    let shown = |t: f64| {
        ((0.5..5.5).contains(&t) && (t * FPS).round() as i32 % 20 != 0)
            || (6.1..6.5).contains(&t)
            || (7.1..7.5).contains(&t)
    };
    let events = Run::new().frames(8.0, |t| {
        let hands = if shown(t) {
            vec![shape_at(&Pose::thumbs_up(), p)]
        } else {
            vec![]
        };
        observation(t, &body, Some(body.pose(None, Some(p))), hands)
    });
    assert_eq!(times(&events), [0.7, 6.3]);
}

#[test]
fn open_palm_needs_a_one_second_still_hold() {
    let body = Body::default();
    let p = [200.0, 250.0];
    let run = |until: f64, moving: bool| {
        Run::new().frames(3.0, |t| {
            let q = if moving {
                [p[0] + 60.0 * (t as f32 * 6.0).sin(), p[1]]
            } else {
                p
            };
            let hands = if (0.5..until).contains(&t) {
                vec![open_hand_at(q)]
            } else {
                vec![]
            };
            observation(t, &body, Some(body.pose(None, Some(q))), hands)
        })
    };
    let events = run(2.0, false);
    assert_eq!(
        kinds(&events),
        [
            "gesture OpenPalm None None Right",
            "clip_requested open_palm_hold"
        ]
    );
    assert_eq!(times(&events), [1.5]);
    assert_eq!(kinds(&run(1.4, false)), Vec::<String>::new());
    assert_eq!(kinds(&run(3.0, true)), Vec::<String>::new());
}

#[test]
fn a_session_change_forgets_everything() {
    let body = Body::default();
    let p = [200.0, 280.0];
    // A hold started in one session cannot complete in the next; gestures outside a session
    // never fire. Each session alone sees the thumb for 0.1 s, the two together for 0.35 s
    // (the hold is 0.15 s).
    let events = Run::new().frames(3.0, |t| {
        let mut o = observation(
            t,
            &body,
            Some(body.pose(None, Some(p))),
            vec![shape_at(&Pose::thumbs_up(), p)],
        );
        o.session = if t < 0.12 {
            Some("a".into())
        } else if t < 0.2 {
            None
        } else if t < 0.32 {
            Some("b".into())
        } else {
            None
        };
        o
    });
    assert_eq!(kinds(&events), Vec::<String>::new());

    let mut rec = GestureRecognizer::new(GestureConfig::default(), false);
    let mut out = Vec::new();
    // 0.1 s before the reset and 0.1 s after it: neither completes the 0.15 s hold.
    for i in 0..6 {
        let t = f64::from(i) / FPS;
        let mut o = observation(
            t,
            &body,
            Some(body.pose(None, Some(p))),
            vec![shape_at(&Pose::thumbs_up(), p)],
        );
        o.session = Some("a".into());
        rec.observe(&o, &mut out);
        if i == 2 {
            rec.reset();
        }
    }
    assert_eq!(
        kinds(&out),
        Vec::<String>::new(),
        "reset() restarts the hold"
    );
}

#[test]
fn hands_far_from_the_shoppers_wrists_are_ignored() {
    let body = Body::default();
    let wrists = ([420.0, 420.0], [220.0, 420.0]);
    let stranger = [600.0, 120.0];
    let events = Run::new().frames(2.0, |t| {
        observation(
            t,
            &body,
            Some(body.pose(Some(wrists.0), Some(wrists.1))),
            vec![shape_at(&Pose::thumbs_up(), stranger)],
        )
    });
    assert_eq!(kinds(&events), Vec::<String>::new());
    // Without body landmarks the hand is trusted (the hand search is already limited to the
    // shopper's region).
    let events = Run::new().frames(2.0, |t| {
        observation(t, &body, None, vec![shape_at(&Pose::thumbs_up(), stranger)])
    });
    assert_eq!(
        kinds(&events),
        [
            "gesture ThumbsUp None None Right",
            "photo_requested thumbs_up"
        ]
    );
}

#[test]
fn action_mapping_is_configurable() {
    let body = Body::default();
    let p = [200.0, 280.0];
    let mut run = Run::new();
    run.config.actions.thumbs_up = Action::None;
    run.config.actions.fist = Action::PhotoRequested;
    let events = run.frames(4.0, |t| {
        let pose = if t < 1.5 {
            Pose::thumbs_up()
        } else {
            Pose::fist()
        };
        let hands = if (0.5..1.0).contains(&t) || (2.0..2.5).contains(&t) {
            vec![shape_at(&pose, p)]
        } else {
            vec![]
        };
        observation(t, &body, Some(body.pose(None, Some(p))), hands)
    });
    assert_eq!(
        kinds(&events),
        [
            "gesture ThumbsUp None None Right",
            "gesture Fist None None Right",
            "photo_requested fist"
        ]
    );
}

#[test]
fn low_presence_hands_and_disabled_recognizer_give_nothing() {
    let body = Body::default();
    let p = [200.0, 280.0];
    let events = Run::new().frames(2.0, |t| {
        let mut h = shape_at(&Pose::thumbs_up(), p);
        h.presence = 0.5;
        observation(t, &body, Some(body.pose(None, Some(p))), vec![h])
    });
    assert_eq!(kinds(&events), Vec::<String>::new());
    let mut run = Run::new();
    run.config.enabled = false;
    let events = run.frames(2.0, |t| {
        observation(
            t,
            &body,
            Some(body.pose(None, Some(p))),
            vec![shape_at(&Pose::thumbs_up(), p)],
        )
    });
    assert_eq!(kinds(&events), Vec::<String>::new());
}

#[test]
fn gesture_kind_of_every_shape_reaches_the_wire() {
    // The event carries hand, gesture and a confidence in 0..1.
    let body = Body::default();
    let p = [200.0, 280.0];
    let events = Run::new().frames(1.5, |t| {
        observation(
            t,
            &body,
            Some(body.pose(None, Some(p))),
            vec![shape_at(&Pose::victory(), p)],
        )
    });
    match &events[..] {
        [
            Event {
                kind:
                    EventKind::Gesture {
                        gesture: GestureKind::Victory,
                        confidence,
                        hand: Side::Right,
                        ..
                    },
                ..
            },
        ] => {
            assert!((0.6..=1.0).contains(confidence));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_swipe_whose_hand_drops_out_of_view_fires_when_it_vanishes() {
    // The hand stops at the end of the stroke, starts down and drops out of the picture (the
    // pose model loses the wrist): the swipe is decided by the first frame without it at the
    // latest (here already when it settled, 0.1 s after its farthest point), not a gap's
    // length later.
    let body = Body::default();
    let path = Path(vec![
        (0.0, 470.0, RAISED),
        (0.5, 470.0, RAISED),
        (0.95, 160.0, RAISED),
        (1.05, 200.0, RAISED + 60.0),
    ]);
    let gone = 1.1;
    let events = Run::new().frames(2.5, |t| {
        let (p, still) = path.at(t);
        if t >= gone {
            return observation(t, &body, Some(body.pose(None, None)), vec![]);
        }
        let hands = if still { vec![open_hand_at(p)] } else { vec![] };
        observation(t, &body, Some(body.pose(None, Some(p))), hands)
    });
    assert_eq!(
        kinds(&events),
        [
            "gesture Swipe Some(ImageRightToLeft) Some(Right) Right",
            "outfit_switch Previous",
        ]
    );
    let t = times(&events);
    assert!(
        t[0] > 0.95 && t[0] <= gone + 1e-9,
        "fired at {t:?}, the stroke ended at 0.95, the wrist vanished at {gone}"
    );
}

#[test]
fn a_swipe_fires_once_the_hand_settles_at_its_end() {
    // The hand arrives at 0.9 s and stays up and open. The swipe is over when it stops: it
    // fires within a settle time (0.1 s) and a frame of the stop, not a whole stall (0.2 s)
    // later.
    let path = Path(vec![
        (0.0, 470.0, RAISED),
        (0.5, 470.0, RAISED),
        (0.9, 160.0, RAISED),
        (1.6, 160.0, RAISED),
    ]);
    let events = Run::new().swipes(&path, 1.6);
    assert_eq!(
        kinds(&events),
        [
            "gesture Swipe Some(ImageRightToLeft) Some(Right) Right",
            "outfit_switch Previous",
        ]
    );
    let t = times(&events);
    assert!(
        t[0] > 0.9 && t[0] <= 0.9 + 0.1 + 1.0 / FPS + 1e-9,
        "fired at {t:?}, the hand stopped at 0.9"
    );
}

#[test]
fn a_stroke_that_pauses_before_a_swipes_travel_is_not_cut_short() {
    // 0.6 of a shoulder width, a pause of 0.15 s, 0.6 more: one stroke of 1.2 (a swipe). Only
    // a stroke that has already travelled a swipe's distance ends on the short settle time;
    // this one waits for the full stall, and its two halves, each too short, stay one swipe.
    let path = Path(vec![
        (0.0, 470.0, RAISED),
        (0.4, 470.0, RAISED),
        (0.65, 374.0, RAISED),
        (0.8, 374.0, RAISED),
        (1.05, 278.0, RAISED),
        (1.8, 278.0, RAISED),
    ]);
    let events = Run::new().swipes(&path, 1.8);
    assert_eq!(
        kinds(&events),
        [
            "gesture Swipe Some(ImageRightToLeft) Some(Right) Right",
            "outfit_switch Previous",
        ]
    );
}
