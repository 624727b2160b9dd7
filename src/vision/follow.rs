//! Body landmarks between runs of the body-landmark model. While every raised arm of the
//! shopper has a followed hand, the hand landmarks say where that arm's hand is on every
//! frame, so the body model (about half of a frame's time) need not run on each one: on
//! the frames in between, the last body landmarks stand in, each followed arm's hand points
//! moved by how far its hand moved since. A hand lost, an arm raised without a hand, the
//! shopper moving, or `hands.body_landmarks_every` frames gone by, and the body model runs
//! again. With no arm raised the last body landmarks stand in unchanged for those frames.

use crate::observation::{HandLandmarks, PoseLandmarks, hand, pose as p};

/// The body's points of one arm's hand (wrist, pinky, index, thumb), left then right.
const ARM_HAND_POINTS: [[usize; 4]; 2] = [
    [p::LEFT_WRIST, p::LEFT_PINKY, p::LEFT_INDEX, 21],
    [p::RIGHT_WRIST, p::RIGHT_PINKY, p::RIGHT_INDEX, 22],
];

/// A hand belongs to an arm when its wrist is within this many hand lengths (wrist to
/// middle-finger knuckle) of the arm's wrist.
const SAME_HAND: f32 = 1.5;

/// The body model is skipped only while the shopper stands still: shoulders moving at most
/// this many shoulder widths a frame between its last two runs. A shopper walking in or
/// away is followed on every frame (a stale crop loses them sooner).
const STILL_BODY: f32 = 0.1;

/// The hand that follows one arm: where it was when the body model last ran, and where it
/// was on the latest frame.
#[derive(Debug, Clone, Copy)]
struct ArmHand {
    wrist_at_body: [f32; 2],
    wrist_now: [f32; 2],
}

/// The shoulders' midpoint and width, when both are visible.
fn shoulders(body: &PoseLandmarks) -> Option<([f32; 2], f32)> {
    let l = body.points.get(p::LEFT_SHOULDER)?;
    let r = body.points.get(p::RIGHT_SHOULDER)?;
    (l[3] >= 0.5 && r[3] >= 0.5).then(|| {
        (
            [(l[0] + r[0]) / 2.0, (l[1] + r[1]) / 2.0],
            (l[0] - r[0]).hypot(l[1] - r[1]),
        )
    })
}

/// The last body landmarks and the hands that follow its raised arms.
#[derive(Debug, Default)]
pub struct BodyFollow {
    body: Option<PoseLandmarks>,
    arms: [Option<ArmHand>; 2],
    /// Every raised arm of the last body landmarks has a followed hand.
    covered: bool,
    /// Frames since the body model last ran.
    since_body: u32,
    /// How far the shoulders moved per frame between the last two runs, in shoulder widths.
    body_moved: f32,
}

impl BodyFollow {
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Can this frame do without the body model? `every` is `hands.body_landmarks_every`.
    pub fn may_skip(&self, every: u32) -> bool {
        self.body.is_some()
            && self.covered
            && self.body_moved <= STILL_BODY
            && self.since_body + 1 < every
    }

    /// The body landmarks predicted for this frame from the hands of the previous one (the
    /// seeds and the palm search of this frame's hand tracking read them).
    pub fn predicted(&self) -> Option<PoseLandmarks> {
        let mut body = self.body.clone()?;
        for (arm, points) in self.arms.iter().zip(ARM_HAND_POINTS) {
            if let Some(a) = arm {
                shift(&mut body, &points, a.wrist_now, a.wrist_at_body);
            }
        }
        Some(body)
    }

    /// The body model ran on this frame: remember its landmarks and which followed hand
    /// belongs to which raised arm (`raised[arm]`: the arm's hand is visible and up).
    pub fn body_ran(
        &mut self,
        body: Option<&PoseLandmarks>,
        raised: [bool; 2],
        hands: &[HandLandmarks],
    ) {
        let frames = (self.since_body + 1) as f32;
        self.body_moved = match (
            self.body.as_ref().and_then(shoulders),
            body.and_then(shoulders),
        ) {
            (Some((a, _)), Some((b, width))) if width > 0.0 => {
                (a[0] - b[0]).hypot(a[1] - b[1]) / width / frames
            }
            _ => f32::MAX,
        };
        self.since_body = 0;
        self.arms = [None, None];
        self.covered = false;
        let Some(body) = body else {
            self.body = None;
            return;
        };
        self.body = Some(body.clone());
        let mut covered = true;
        for (arm, points) in ARM_HAND_POINTS.iter().enumerate() {
            if !raised[arm] {
                continue;
            }
            let Some(q) = body.points.get(points[0]) else {
                covered = false;
                continue;
            };
            match nearest_hand([q[0], q[1]], hands) {
                Some(w) => {
                    self.arms[arm] = Some(ArmHand {
                        wrist_at_body: w,
                        wrist_now: w,
                    })
                }
                None => covered = false,
            }
        }
        // Both arms followed by one hand is one arm too many.
        if let [Some(a), Some(b)] = self.arms
            && a.wrist_at_body == b.wrist_at_body
        {
            self.arms = [None, None];
            covered = false;
        }
        self.covered = covered;
    }

    /// The body model did not run on this frame: the hands found move their arms. Returns
    /// this frame's body landmarks, or `None` when an arm's hand was lost (the body model
    /// must then run on this frame).
    pub fn skipped(&mut self, hands: &[HandLandmarks]) -> Option<PoseLandmarks> {
        let mut arms = self.arms;
        for a in arms.iter_mut().flatten() {
            a.wrist_now = nearest_hand(a.wrist_now, hands)?;
        }
        if let [Some(a), Some(b)] = arms
            && a.wrist_now == b.wrist_now
        {
            return None;
        }
        self.arms = arms;
        self.since_body += 1;
        self.predicted()
    }
}

/// The wrist of the hand nearest `wrist`, if within [`SAME_HAND`] hand lengths of it.
fn nearest_hand(wrist: [f32; 2], hands: &[HandLandmarks]) -> Option<[f32; 2]> {
    hands
        .iter()
        .filter_map(|h| {
            let w = h.points.get(hand::WRIST)?;
            let m = h.points.get(hand::MIDDLE_MCP)?;
            let length = (m[0] - w[0]).hypot(m[1] - w[1]);
            let d = (w[0] - wrist[0]).hypot(w[1] - wrist[1]);
            (d.is_finite() && length > 0.0 && d <= SAME_HAND * length).then_some((d, [w[0], w[1]]))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, w)| w)
}

/// Moves an arm's hand points by how far its hand moved.
fn shift(body: &mut PoseLandmarks, points: &[usize; 4], now: [f32; 2], then: [f32; 2]) {
    let (dx, dy) = (now[0] - then[0], now[1] - then[1]);
    for &i in points {
        if let Some(q) = body.points.get_mut(i) {
            q[0] += dx;
            q[1] += dy;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(left_wrist: [f32; 2]) -> PoseLandmarks {
        let mut points = vec![[300.0, 300.0, 0.0, 0.9, 0.9]; 33];
        points[p::LEFT_SHOULDER][0] = 350.0;
        points[p::RIGHT_SHOULDER][0] = 250.0;
        for &i in &ARM_HAND_POINTS[0] {
            points[i][0] = left_wrist[0];
            points[i][1] = left_wrist[1];
        }
        PoseLandmarks { points, score: 0.9 }
    }

    fn hand_at(wrist: [f32; 2]) -> HandLandmarks {
        let mut points = vec![[wrist[0], wrist[1], 0.0]; 21];
        points[hand::MIDDLE_MCP] = [wrist[0], wrist[1] - 40.0, 0.0];
        HandLandmarks {
            points,
            presence: 0.9,
            right_hand: 0.5,
            redetected: false,
        }
    }

    /// The body model ran twice on a shopper standing still, the left hand raised.
    fn standing_with_the_left_hand_up() -> BodyFollow {
        let mut follow = BodyFollow::default();
        for _ in 0..2 {
            follow.body_ran(
                Some(&body([100.0, 200.0])),
                [true, false],
                &[hand_at([110.0, 205.0])],
            );
        }
        follow
    }

    #[test]
    fn a_followed_arm_moves_with_its_hand_until_the_body_model_is_due() {
        let mut follow = standing_with_the_left_hand_up();
        assert!(follow.may_skip(3));
        assert!(!follow.may_skip(1));
        let moved = follow.skipped(&[hand_at([130.0, 195.0])]).unwrap();
        // The body's wrist keeps its offset from the hand's and moves as the hand did.
        let w = moved.points[p::LEFT_WRIST];
        assert!(
            (w[0] - 120.0).abs() < 1e-4 && (w[1] - 190.0).abs() < 1e-4,
            "{w:?}"
        );
        assert_eq!(moved.points[p::RIGHT_WRIST][0], 300.0);
        assert!(follow.may_skip(3));
        follow.skipped(&[hand_at([140.0, 195.0])]).unwrap();
        assert!(!follow.may_skip(3), "the third frame runs the body model");
    }

    #[test]
    fn a_lost_hand_a_raised_arm_without_one_or_a_moving_body_needs_the_body_model() {
        let mut follow = BodyFollow::default();
        follow.body_ran(
            Some(&body([100.0, 200.0])),
            [true, false],
            &[hand_at([110.0, 205.0])],
        );
        assert!(
            !follow.may_skip(3),
            "one run tells nothing of the body's motion"
        );
        let mut follow = standing_with_the_left_hand_up();
        assert!(follow.skipped(&[]).is_none(), "hand lost");
        assert!(
            follow.skipped(&[hand_at([400.0, 205.0])]).is_none(),
            "far away"
        );

        follow.body_ran(
            Some(&body([100.0, 200.0])),
            [true, true],
            &[hand_at([110.0, 205.0])],
        );
        assert!(
            !follow.may_skip(3),
            "the right arm is raised without a hand"
        );
        follow.body_ran(None, [false, false], &[]);
        assert!(!follow.may_skip(3), "no body");

        let mut follow = standing_with_the_left_hand_up();
        let mut walked = body([100.0, 200.0]);
        for q in &mut walked.points {
            q[0] += 30.0;
        }
        follow.body_ran(Some(&walked), [true, false], &[hand_at([140.0, 205.0])]);
        assert!(!follow.may_skip(3), "the shoulders moved 0.3 widths");
    }
}
