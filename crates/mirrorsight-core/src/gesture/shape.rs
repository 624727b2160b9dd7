//! Geometric hand-shape classifier on the 21 MediaPipe hand landmarks.
//!
//! Everything but the thumbs' direction is measured with angles between bones and distances
//! relative to the palm, in 3D, so the result does not depend on how the hand is turned, how big
//! it appears or which hand it is. Thumbs up and down are by definition about gravity, so for
//! those alone the thumb's direction is compared with the image's vertical.
//!
//! Each property (finger extended, finger curled, thumb out, thumb pointing up) is a fuzzy
//! membership in 0..1 with linear ramps between a clear "no" and a clear "yes"; a shape's
//! confidence is the minimum of the memberships it needs, so one doubtful finger is enough to
//! doubt the whole shape.

use mirrorsight_contract::events::GestureKind;

use crate::observation::hand::*;

/// The static shapes the classifier tells apart, in the order of [`ShapeReading::scores`]. They
/// are the contract's own gesture kinds (a swipe is a motion, found by [`super::swipe`]), so a
/// held shape is reported as it was read.
pub const SHAPES: [GestureKind; 6] = [
    GestureKind::OpenPalm,
    GestureKind::Fist,
    GestureKind::ThumbsUp,
    GestureKind::ThumbsDown,
    GestureKind::Pointing,
    GestureKind::Victory,
];

/// The classifier's verdict plus the measurements the recognizer reuses.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapeReading {
    /// The shape shown, one of [`SHAPES`]; `None` when no shape qualified.
    pub shape: Option<GestureKind>,
    /// Confidence of `shape` in 0..1 (for `None`: how far the best shape was from qualifying).
    pub confidence: f64,
    /// Confidence of every named shape, in the order of [`SHAPES`].
    pub scores: [f64; 6],
    /// Extension membership per finger: thumb, index, middle, ring, pinky.
    pub extended: [f64; 5],
    /// How much this is an open or flat hand (at least three long fingers extended), the hand
    /// a swipe is made with.
    pub flat: f64,
    /// Palm length (wrist to middle knuckle) in pixels: the unit of hand-relative distances.
    pub palm: f64,
    /// Wrist position in image pixels.
    pub wrist: [f64; 2],
    /// Direction the fingers point (wrist → middle knuckle) in degrees from image up,
    /// positive clockwise: 0 = fingers up.
    pub finger_angle_deg: f64,
    /// Which way the palm turns, from the order of the knuckles around the wrist in the
    /// picture: the cross product (wrist → index knuckle) × (wrist → little-finger knuckle)
    /// over their lengths, in -1..1. A right hand shows its palm when this is negative, a left
    /// hand when positive; near 0 the palm faces up, down or sideways. Mirroring the picture
    /// turns a right hand into a left one and flips the sign, so the rule holds either way.
    pub palm_turn: f64,
    /// Angle between the index and little fingers (knuckle → tip), degrees: fingers apart
    /// (an open hand shown on purpose) or held together.
    pub finger_spread_deg: f64,
}

type V3 = [f64; 3];

fn sub(a: V3, b: V3) -> V3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn dot(a: V3, b: V3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn norm(a: V3) -> f64 {
    dot(a, a).sqrt()
}

fn dist(a: V3, b: V3) -> f64 {
    norm(sub(a, b))
}

/// Angle between two vectors in degrees; 0 for a degenerate one (a bone of zero length says
/// nothing, and 0 is the "straight" reading that never makes a finger look curled by itself).
fn angle_deg(a: V3, b: V3) -> f64 {
    let n = norm(a) * norm(b);
    if n <= f64::EPSILON {
        return 0.0;
    }
    (dot(a, b) / n).clamp(-1.0, 1.0).acos().to_degrees()
}

/// Linear membership: 0 at `zero`, 1 at `one`, clamped; works for falling ramps (`one < zero`).
pub(crate) fn ramp(v: f64, zero: f64, one: f64) -> f64 {
    if !v.is_finite() {
        return 0.0;
    }
    ((v - zero) / (one - zero)).clamp(0.0, 1.0)
}

/// Sum of the bends along a chain of joints: 0 for a straight finger.
fn bend(p: &[V3], chain: &[usize]) -> f64 {
    chain
        .windows(3)
        .map(|w| angle_deg(sub(p[w[1]], p[w[0]]), sub(p[w[2]], p[w[1]])))
        .sum()
}

const FINGERS: [[usize; 4]; 4] = [
    [INDEX_MCP, INDEX_PIP, INDEX_DIP, INDEX_TIP],
    [MIDDLE_MCP, MIDDLE_PIP, MIDDLE_DIP, MIDDLE_TIP],
    [RING_MCP, RING_PIP, RING_DIP, RING_TIP],
    [PINKY_MCP, PINKY_PIP, PINKY_DIP, PINKY_TIP],
];

/// Below this palm length (pixels) the landmarks are too small to tell fingers apart.
const MIN_PALM_PX: f64 = 8.0;

/// Classifies one hand; `None` when the landmarks are unusable (wrong count, not finite,
/// degenerate).
pub fn classify(points: &[[f32; 3]]) -> Option<ShapeReading> {
    if points.len() != 21 {
        return None;
    }
    let p: Vec<V3> = points
        .iter()
        .map(|q| [f64::from(q[0]), f64::from(q[1]), f64::from(q[2])])
        .collect();
    if p.iter().flatten().any(|v| !v.is_finite()) {
        return None;
    }
    let wrist = p[WRIST];
    // Wrist→middle knuckle shrinks when the hand points at the camera and z is underestimated;
    // the knuckle line keeps its length then, so take whichever is longer.
    let palm = dist(wrist, p[MIDDLE_MCP]).max(1.3 * dist(p[INDEX_MCP], p[PINKY_MCP]));
    if palm < MIN_PALM_PX {
        return None;
    }

    let mut extended = [0.0; 5];
    let mut curled = [0.0; 4];
    for (i, f) in FINGERS.iter().enumerate() {
        let total = bend(&p, &[WRIST, f[0], f[1], f[2], f[3]]);
        // A straight finger's tip is well beyond its middle joint as seen from the wrist; a
        // curled one folds back towards the palm.
        let reach = dist(p[f[3]], wrist) / dist(p[f[1]], wrist).max(f64::EPSILON);
        extended[i + 1] = ramp(total, 100.0, 50.0).min(ramp(reach, 1.05, 1.2));
        curled[i] = ramp(total, 110.0, 160.0).max(ramp(reach, 1.05, 0.9));
    }

    // The thumb is out when its tip stands clear of the folded fingers (a thumb wrapped over
    // the fist or laid along the index finger is not) and it is not folded double. Real thumbs
    // up bend 30-70° over their two joints (measured on footage), so only a sharper bend counts
    // against it; the clearance does the real work (fists ≤ 0.25 palm, thumbs up ≥ 0.8).
    let thumb_bend = bend(&p, &[THUMB_CMC, THUMB_MCP, THUMB_IP, THUMB_TIP]);
    let clearance = [INDEX_PIP, INDEX_DIP, MIDDLE_PIP, MIDDLE_DIP]
        .iter()
        .map(|&j| dist(p[THUMB_TIP], p[j]))
        .fold(f64::INFINITY, f64::min)
        / palm;
    let thumb_out = ramp(thumb_bend, 100.0, 70.0).min(ramp(clearance, 0.3, 0.5));
    extended[0] = thumb_out;
    // For an open hand the thumb only has to stay out of the palm (not folded towards the
    // little finger), it may lie alongside the index finger.
    let thumb_not_folded = thumb_out.max(ramp(dist(p[THUMB_TIP], p[PINKY_MCP]) / palm, 0.5, 0.7));

    let [_, index, middle, ring, pinky] = extended;
    let not = |v: f64| 1.0 - v;

    // Thumbs: the thumb's own direction (knuckle → tip) against the image's vertical, with a
    // soft edge around 45°. A thumb pointing at the camera has no direction in the image.
    let tv = sub(p[THUMB_TIP], p[THUMB_MCP]);
    let thumb_len_2d = tv[0].hypot(tv[1]) / palm;
    let thumb_from_up = tv[0].atan2(-tv[1]).to_degrees().abs();
    let thumb_visible = ramp(thumb_len_2d, 0.2, 0.35);
    let up = ramp(thumb_from_up, 55.0, 35.0);
    let down = ramp(180.0 - thumb_from_up, 55.0, 35.0);
    // "All other fingers curled", not merely "not straight": a half-open claw with the thumb
    // up is not a thumbs up.
    let others_curled = curled.iter().copied().fold(1.0, f64::min);
    let thumbs = thumb_out.min(others_curled).min(thumb_visible);
    // The thumb's tip must not sit below the middle of the knuckle line for a thumbs up (or
    // above it for a thumbs down): a thumb pointing up from inside a clasp or a low fist is
    // not shown. The ramp allows a tilted, turned hand (30° roll and 40° yaw still pass).
    let knuckle_line_y = [INDEX_MCP, MIDDLE_MCP, RING_MCP, PINKY_MCP]
        .iter()
        .map(|&j| p[j][1])
        .sum::<f64>()
        / 4.0;
    let clear_above = ramp((knuckle_line_y - p[THUMB_TIP][1]) / palm, -0.3, -0.1);
    let clear_below = ramp((p[THUMB_TIP][1] - knuckle_line_y) / palm, -0.3, -0.1);

    // V sign: the two fingers must part, or it is two fingers held together (another sign).
    let spread = angle_deg(
        sub(p[INDEX_TIP], p[INDEX_PIP]),
        sub(p[MIDDLE_TIP], p[MIDDLE_PIP]),
    );

    let scores = [
        // open palm
        index.min(middle).min(ring).min(pinky).min(thumb_not_folded),
        // fist
        curled
            .iter()
            .copied()
            .fold(1.0, f64::min)
            .min(not(thumb_out)),
        // thumbs up / down
        thumbs.min(up).min(clear_above),
        thumbs.min(down).min(clear_below),
        // pointing
        index.min(not(middle)).min(not(ring)).min(not(pinky)),
        // victory
        index
            .min(middle)
            .min(not(ring))
            .min(not(pinky))
            .min(ramp(spread, 6.0, 14.0)),
    ];
    let (best, best_score) =
        scores
            .iter()
            .copied()
            .enumerate()
            .fold(
                (0, f64::NEG_INFINITY),
                |acc, (i, s)| {
                    if s > acc.1 { (i, s) } else { acc }
                },
            );
    let (shape, confidence) = if best_score >= 0.5 {
        (Some(SHAPES[best]), best_score)
    } else {
        (None, 1.0 - best_score)
    };

    let mut long = [index, middle, ring, pinky];
    long.sort_by(f64::total_cmp);
    let fv = sub(p[MIDDLE_MCP], wrist);
    let (iv, pv) = (sub(p[INDEX_MCP], wrist), sub(p[PINKY_MCP], wrist));
    let turn_norm = iv[0].hypot(iv[1]) * pv[0].hypot(pv[1]);
    let palm_turn = if turn_norm > f64::EPSILON {
        (iv[0] * pv[1] - iv[1] * pv[0]) / turn_norm
    } else {
        0.0
    };
    let finger_spread_deg = angle_deg(
        sub(p[INDEX_TIP], p[INDEX_MCP]),
        sub(p[PINKY_TIP], p[PINKY_MCP]),
    );
    Some(ShapeReading {
        shape,
        confidence,
        scores,
        extended,
        flat: long[1],
        palm,
        wrist: [wrist[0], wrist[1]],
        finger_angle_deg: fv[0].atan2(-fv[1]).to_degrees(),
        palm_turn,
        finger_spread_deg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gesture::synth::{HandModel, Pose, View};

    fn views() -> Vec<View> {
        let mut v = Vec::new();
        for &mirror in &[false, true] {
            for &scale in &[25.0, 70.0, 220.0] {
                for &roll in &[0.0, 40.0, 90.0, 150.0, 180.0, -60.0, -120.0] {
                    for &(yaw, pitch) in &[(0.0, 0.0), (35.0, 0.0), (-35.0, 15.0), (0.0, -30.0)] {
                        v.push(View {
                            roll,
                            yaw,
                            pitch,
                            scale,
                            mirror,
                            center: [320.0, 240.0],
                        });
                    }
                }
            }
        }
        v
    }

    fn check_all(pose: Pose, expected: Option<GestureKind>) {
        let hand = HandModel::default();
        for view in views() {
            let pts = hand.render(&pose, &view);
            let r = classify(&pts).expect("valid landmarks");
            assert_eq!(
                r.shape, expected,
                "{pose:?} seen as {view:?}: {r:?} (expected {expected:?})"
            );
            // For `None` the confidence only says how far the best shape was from qualifying.
            if expected.is_some() {
                assert!(r.confidence >= 0.7, "{pose:?} {view:?}: weak {r:?}");
            }
        }
    }

    #[test]
    fn open_palm_any_rotation_scale_and_hand() {
        check_all(Pose::open_palm(), Some(GestureKind::OpenPalm));
        check_all(Pose::flat_hand(), Some(GestureKind::OpenPalm));
    }

    #[test]
    fn fist_any_rotation_scale_and_hand() {
        check_all(Pose::fist(), Some(GestureKind::Fist));
    }

    #[test]
    fn pointing_any_rotation_scale_and_hand() {
        check_all(Pose::pointing(), Some(GestureKind::Pointing));
    }

    #[test]
    fn victory_any_rotation_scale_and_hand() {
        check_all(Pose::victory(), Some(GestureKind::Victory));
    }

    /// Thumbs are judged against the image's vertical: generate the hand turned any way, then
    /// roll it so the thumb points `from_vertical` degrees off straight up (or down).
    fn thumbs(from_vertical: f64, down: bool) -> Vec<Option<GestureKind>> {
        let hand = HandModel::default();
        let pose = Pose::thumbs_up();
        let mut out = Vec::new();
        for &mirror in &[false, true] {
            for &scale in &[30.0, 90.0, 200.0] {
                for &(yaw, pitch) in &[(0.0, 0.0), (40.0, 0.0), (-40.0, 10.0), (0.0, 25.0)] {
                    let mut view = View {
                        roll: 0.0,
                        yaw,
                        pitch,
                        scale,
                        mirror,
                        center: [400.0, 300.0],
                    };
                    view.roll = hand.roll_thumb_up(&pose, &view)
                        + from_vertical
                        + if down { 180.0 } else { 0.0 };
                    let r = classify(&hand.render(&pose, &view)).expect("valid");
                    out.push(r.shape);
                }
            }
        }
        out
    }

    #[test]
    fn thumbs_up_within_45_degrees_of_vertical() {
        for deg in [-30.0, -15.0, 0.0, 15.0, 30.0] {
            assert!(
                thumbs(deg, false)
                    .iter()
                    .all(|&s| s == Some(GestureKind::ThumbsUp)),
                "{deg}°: {:?}",
                thumbs(deg, false)
            );
            assert!(
                thumbs(deg, true)
                    .iter()
                    .all(|&s| s == Some(GestureKind::ThumbsDown)),
                "{deg}° down: {:?}",
                thumbs(deg, true)
            );
        }
    }

    #[test]
    fn sideways_thumb_is_neither_up_nor_down() {
        for deg in [65.0, 90.0, -75.0, -90.0] {
            for down in [false, true] {
                let shapes = thumbs(deg, down);
                assert!(
                    shapes
                        .iter()
                        .all(|&s| s != Some(GestureKind::ThumbsUp)
                            && s != Some(GestureKind::ThumbsDown)),
                    "{deg}° {down}: {shapes:?}"
                );
            }
        }
    }

    #[test]
    fn half_bent_claw_and_other_signs_are_none() {
        check_all(Pose::claw(), None);
        check_all(Pose::three_fingers(), None);
        check_all(Pose::pinky_up(), None);
        // The ASL "four": fingers open, thumb folded across the palm.
        check_all(Pose::four(), None);
        // Index and middle up but pressed together is not a V.
        check_all(Pose::two_together(), None);
    }

    #[test]
    fn fist_with_thumb_along_the_fingers_is_no_thumbs_up() {
        // A fist turned so the (wrapped) thumb is on top must not read as a thumbs up.
        let hand = HandModel::default();
        let pose = Pose::fist();
        for roll in (0..360).step_by(15) {
            let view = View {
                roll: f64::from(roll),
                yaw: 0.0,
                pitch: 0.0,
                scale: 80.0,
                mirror: false,
                center: [300.0, 300.0],
            };
            let r = classify(&hand.render(&pose, &view)).expect("valid");
            assert_eq!(r.shape, Some(GestureKind::Fist), "roll {roll}: {r:?}");
        }
    }

    #[test]
    fn unusable_landmarks_are_refused() {
        assert!(classify(&[]).is_none());
        assert!(classify(&[[0.0, 0.0, 0.0]; 20]).is_none());
        assert!(classify(&[[5.0, 5.0, 0.0]; 21]).is_none());
        let mut pts = HandModel::default().render(&Pose::open_palm(), &View::default());
        pts[7][1] = f32::NAN;
        assert!(classify(&pts).is_none());
    }

    #[test]
    fn flat_score_and_finger_angle() {
        let hand = HandModel::default();
        let r = classify(&hand.render(&Pose::open_palm(), &View::default())).expect("valid");
        assert!(r.flat > 0.9);
        assert!(r.finger_angle_deg.abs() < 15.0, "{r:?}");
        let r = classify(&hand.render(&Pose::fist(), &View::default())).expect("valid");
        assert!(r.flat < 0.1);
    }
}
