//! Test fixtures: a small kinematic hand that renders MediaPipe-style landmarks for any shape,
//! rotation, scale and handedness, and a seated shopper's body whose wrists follow scripted
//! trajectories. Only compiled for tests.

#![cfg(test)]

use crate::observation::{HandLandmarks, Observation, PoseLandmarks, pose};

type V3 = [f64; 3];

fn norm(v: V3) -> V3 {
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    [v[0] / n, v[1] / n, v[2] / n]
}

fn add(a: V3, b: V3, s: f64) -> V3 {
    [a[0] + b[0] * s, a[1] + b[1] * s, a[2] + b[2] * s]
}

/// Hand frame: wrist at the origin, fingers along +y, thumb on the +x side, palm facing the
/// camera (-z), in palm lengths (wrist to middle knuckle = 1).
#[derive(Debug, Clone)]
pub struct HandModel {
    pub mcp: [V3; 4],
    /// Proximal, middle, distal phalanx lengths per finger.
    pub phalanges: [[f64; 3]; 4],
    pub thumb_cmc: V3,
    pub thumb_bones: [f64; 3],
}

impl Default for HandModel {
    fn default() -> Self {
        Self {
            mcp: [
                [0.35, 0.95, 0.0],
                [0.1, 1.0, 0.0],
                [-0.12, 0.95, 0.0],
                [-0.32, 0.85, 0.0],
            ],
            phalanges: [
                [0.45, 0.27, 0.22],
                [0.5, 0.3, 0.24],
                [0.47, 0.29, 0.23],
                [0.37, 0.21, 0.2],
            ],
            thumb_cmc: [0.22, 0.22, 0.0],
            thumb_bones: [0.35, 0.3, 0.25],
        }
    }
}

/// Joint angles: per finger `[spread, mcp, pip, dip]` degrees (spread towards the thumb is
/// positive, flexion bends towards the palm), and the thumb's three bone directions.
#[derive(Debug, Clone)]
pub struct Pose {
    pub fingers: [[f64; 4]; 4],
    pub thumb: [V3; 3],
}

const STRAIGHT: [f64; 4] = [0.0, 5.0, 5.0, 3.0];
const CURLED: [f64; 4] = [0.0, 85.0, 100.0, 60.0];
const THUMB_OUT: [V3; 3] = [[0.75, 0.62, -0.2], [0.75, 0.62, -0.15], [0.75, 0.62, -0.1]];
const THUMB_WRAPPED: [V3; 3] = [[0.45, 0.75, -0.5], [-0.55, 0.45, -0.7], [-0.9, 0.0, -0.4]];

impl Pose {
    pub fn open_palm() -> Self {
        Self {
            fingers: [
                [8.0, 5.0, 5.0, 3.0],
                [2.0, 5.0, 5.0, 3.0],
                [-5.0, 5.0, 5.0, 3.0],
                [-12.0, 5.0, 5.0, 3.0],
            ],
            thumb: THUMB_OUT,
        }
    }

    /// Fingers together, thumb alongside the index finger.
    pub fn flat_hand() -> Self {
        Self {
            fingers: [[0.0; 4]; 4],
            thumb: [[0.35, 0.92, -0.15]; 3],
        }
    }

    pub fn fist() -> Self {
        Self {
            fingers: [CURLED; 4],
            thumb: THUMB_WRAPPED,
        }
    }

    pub fn thumbs_up() -> Self {
        Self {
            fingers: [CURLED; 4],
            thumb: [[0.8, 0.5, -0.3], [0.85, 0.5, -0.15], [0.85, 0.5, -0.1]],
        }
    }

    pub fn pointing() -> Self {
        Self {
            fingers: [STRAIGHT, CURLED, CURLED, CURLED],
            thumb: THUMB_WRAPPED,
        }
    }

    pub fn victory() -> Self {
        Self {
            fingers: [[5.0, 5.0, 5.0, 3.0], [-5.0, 5.0, 5.0, 3.0], CURLED, CURLED],
            thumb: THUMB_WRAPPED,
        }
    }

    pub fn claw() -> Self {
        Self {
            fingers: [[0.0, 30.0, 45.0, 30.0]; 4],
            thumb: [[0.6, 0.7, -0.4], [0.2, 0.7, -0.7], [-0.2, 0.5, -0.8]],
        }
    }

    pub fn three_fingers() -> Self {
        Self {
            fingers: [STRAIGHT, STRAIGHT, STRAIGHT, CURLED],
            thumb: THUMB_WRAPPED,
        }
    }

    pub fn pinky_up() -> Self {
        Self {
            fingers: [CURLED, CURLED, CURLED, STRAIGHT],
            thumb: THUMB_WRAPPED,
        }
    }

    pub fn four() -> Self {
        Self {
            fingers: Self::open_palm().fingers,
            thumb: [[0.2, 0.6, -0.4], [-0.6, 0.5, -0.4], [-0.9, 0.1, -0.2]],
        }
    }

    pub fn two_together() -> Self {
        Self {
            // The knuckles' own directions differ by ~14.5°; these spreads make the two fingers parallel.
            fingers: [
                [-7.25, 5.0, 5.0, 3.0],
                [7.25, 5.0, 5.0, 3.0],
                CURLED,
                CURLED,
            ],
            thumb: THUMB_WRAPPED,
        }
    }
}

/// How the hand is seen: rotations in degrees (roll in the image plane, yaw about the image's
/// vertical, pitch about its horizontal), palm length in pixels, mirrored = the other hand,
/// `center` = where the wrist lands in the image.
#[derive(Debug, Clone, Copy)]
pub struct View {
    pub roll: f64,
    pub yaw: f64,
    pub pitch: f64,
    pub scale: f64,
    pub mirror: bool,
    pub center: [f64; 2],
}

impl Default for View {
    fn default() -> Self {
        Self {
            roll: 0.0,
            yaw: 0.0,
            pitch: 0.0,
            scale: 100.0,
            mirror: false,
            center: [320.0, 240.0],
        }
    }
}

fn rotate(p: V3, view: &View, with_roll: bool) -> V3 {
    let mut p = p;
    if view.mirror {
        p[0] = -p[0];
    }
    let (s, c) = view.pitch.to_radians().sin_cos();
    p = [p[0], c * p[1] - s * p[2], s * p[1] + c * p[2]];
    let (s, c) = view.yaw.to_radians().sin_cos();
    p = [c * p[0] + s * p[2], p[1], -s * p[0] + c * p[2]];
    if with_roll {
        let (s, c) = view.roll.to_radians().sin_cos();
        p = [c * p[0] - s * p[1], s * p[0] + c * p[1], p[2]];
    }
    p
}

impl HandModel {
    /// The 21 landmarks in hand-frame units.
    pub fn joints(&self, pose: &Pose) -> [V3; 21] {
        let mut j = [[0.0; 3]; 21];
        let palm_normal = [0.0, 0.0, -1.0];
        let mut t = self.thumb_cmc;
        j[1] = t;
        for (b, dir) in pose.thumb.iter().enumerate() {
            t = add(t, norm(*dir), self.thumb_bones[b]);
            j[2 + b] = t;
        }
        for f in 0..4 {
            let [spread, a, b, c] = pose.fingers[f];
            let base = norm(self.mcp[f]);
            let (s, co) = spread.to_radians().sin_cos();
            // Spread rotates towards +x (the thumb side), i.e. clockwise seen with y up.
            let d0 = [co * base[0] + s * base[1], -s * base[0] + co * base[1], 0.0];
            let mut p = self.mcp[f];
            j[5 + 4 * f] = p;
            let mut phi = 0.0_f64;
            for (k, flex) in [a, b, c].into_iter().enumerate() {
                phi += flex.to_radians();
                let dir = add(
                    [d0[0] * phi.cos(), d0[1] * phi.cos(), d0[2] * phi.cos()],
                    palm_normal,
                    phi.sin(),
                );
                p = add(p, dir, self.phalanges[f][k]);
                j[6 + 4 * f + k] = p;
            }
        }
        j
    }

    /// Landmarks in image pixels (y down), z in the same scale.
    pub fn render(&self, pose: &Pose, view: &View) -> Vec<[f32; 3]> {
        self.joints(pose)
            .iter()
            .map(|&p| {
                let q = rotate(p, view, true);
                [
                    (view.center[0] + view.scale * q[0]) as f32,
                    (view.center[1] - view.scale * q[1]) as f32,
                    (view.scale * q[2]) as f32,
                ]
            })
            .collect()
    }

    /// The roll that makes the thumb (knuckle → tip) point straight up in the image.
    pub fn roll_thumb_up(&self, pose: &Pose, view: &View) -> f64 {
        let j = self.joints(pose);
        let a = rotate(j[2], view, false);
        let b = rotate(j[4], view, false);
        (b[0] - a[0]).atan2(b[1] - a[1]).to_degrees()
    }
}

/// A hand as the landmark model reports it, fully present.
pub fn hand(shape: &Pose, view: &View) -> HandLandmarks {
    HandLandmarks {
        points: HandModel::default().render(shape, view),
        presence: 0.99,
        right_hand: 0.9,
        redetected: false,
    }
}

/// A seated shopper facing the camera in a 640×480 frame: shoulders at y = 300, 160 px apart.
#[derive(Debug, Clone)]
pub struct Body {
    pub frame: [u32; 2],
    pub shoulder_y: f32,
    pub shoulder_x: [f32; 2],
}

impl Default for Body {
    fn default() -> Self {
        Self {
            frame: [640, 480],
            shoulder_y: 300.0,
            shoulder_x: [400.0, 240.0],
        }
    }
}

impl Body {
    /// Pose landmarks with the shoulders, elbows and the given wrists (`None` = out of view).
    /// Pose's "left" is the person's left, which an unmirrored camera shows on the image's right.
    pub fn pose(
        &self,
        left_wrist: Option<[f32; 2]>,
        right_wrist: Option<[f32; 2]>,
    ) -> PoseLandmarks {
        let mut points = vec![[0.0, 0.0, 0.0, 0.1, 0.1]; 33];
        let [lx, rx] = self.shoulder_x;
        let y = self.shoulder_y;
        points[pose::NOSE] = [(lx + rx) / 2.0, y - 120.0, 0.0, 0.99, 0.99];
        points[pose::LEFT_SHOULDER] = [lx, y, 0.0, 0.99, 0.99];
        points[pose::RIGHT_SHOULDER] = [rx, y, 0.0, 0.99, 0.99];
        for (wrist, elbow, shoulder_x, w) in [
            (pose::LEFT_WRIST, pose::LEFT_ELBOW, lx, left_wrist),
            (pose::RIGHT_WRIST, pose::RIGHT_ELBOW, rx, right_wrist),
        ] {
            match w {
                Some([x, wy]) => {
                    points[wrist] = [x, wy, 0.0, 0.99, 0.99];
                    points[elbow] = [
                        (x + shoulder_x) / 2.0,
                        (wy + y) / 2.0 + 40.0,
                        0.0,
                        0.99,
                        0.99,
                    ];
                }
                None => {
                    points[wrist] = [shoulder_x, y + 400.0, 0.0, 0.05, 0.2];
                    points[elbow] = [shoulder_x, y + 200.0, 0.0, 0.05, 0.2];
                }
            }
        }
        PoseLandmarks {
            points,
            score: 0.99,
        }
    }
}

pub fn observation(
    t: f64,
    body: &Body,
    pose: Option<PoseLandmarks>,
    hands: Vec<HandLandmarks>,
) -> Observation {
    Observation {
        t,
        frame: body.frame,
        session: Some("s1".into()),
        shopper: Some([150.0, 100.0, 490.0, 480.0]),
        pose,
        hands,
        people: None,
    }
}
