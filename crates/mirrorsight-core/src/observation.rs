//! What the vision stage saw in one frame, in image pixels: the input of the sans-IO gesture
//! recognizer, and what `replay --dump-observations` writes (one JSON object per line) so the
//! recognizer can be tuned and tested offline on real footage.

use serde::{Deserialize, Serialize};

/// MediaPipe hand landmark indices.
pub mod hand {
    pub const WRIST: usize = 0;
    pub const THUMB_CMC: usize = 1;
    pub const THUMB_MCP: usize = 2;
    pub const THUMB_IP: usize = 3;
    pub const THUMB_TIP: usize = 4;
    pub const INDEX_MCP: usize = 5;
    pub const INDEX_PIP: usize = 6;
    pub const INDEX_DIP: usize = 7;
    pub const INDEX_TIP: usize = 8;
    pub const MIDDLE_MCP: usize = 9;
    pub const MIDDLE_PIP: usize = 10;
    pub const MIDDLE_DIP: usize = 11;
    pub const MIDDLE_TIP: usize = 12;
    pub const RING_MCP: usize = 13;
    pub const RING_PIP: usize = 14;
    pub const RING_DIP: usize = 15;
    pub const RING_TIP: usize = 16;
    pub const PINKY_MCP: usize = 17;
    pub const PINKY_PIP: usize = 18;
    pub const PINKY_DIP: usize = 19;
    pub const PINKY_TIP: usize = 20;
}

/// MediaPipe (BlazePose, 33 points) landmark indices used by gestures.
pub mod pose {
    pub const NOSE: usize = 0;
    pub const LEFT_SHOULDER: usize = 11;
    pub const RIGHT_SHOULDER: usize = 12;
    pub const LEFT_ELBOW: usize = 13;
    pub const RIGHT_ELBOW: usize = 14;
    pub const LEFT_WRIST: usize = 15;
    pub const RIGHT_WRIST: usize = 16;
    pub const LEFT_PINKY: usize = 17;
    pub const RIGHT_PINKY: usize = 18;
    pub const LEFT_INDEX: usize = 19;
    pub const RIGHT_INDEX: usize = 20;
    pub const LEFT_HIP: usize = 23;
    pub const RIGHT_HIP: usize = 24;
}

/// One frame's observations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Media time in seconds.
    pub t: f64,
    /// Frame width and height in pixels.
    pub frame: [u32; 2],
    /// The open session, if any (gestures only count inside one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The shopper's body region (xmin, ymin, xmax, ymax) if detected in this or a recent frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shopper: Option<[f32; 4]>,
    /// The shopper's body landmarks, when the pose landmark model ran on this frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pose: Option<PoseLandmarks>,
    /// Tracked hands (at most two).
    #[serde(default)]
    pub hands: Vec<HandLandmarks>,
    /// Everyone the body detector found, when it ran on this frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub people: Option<Vec<Person>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoseLandmarks {
    /// 33 points: x, y (image pixels), z (relative depth, pixels-ish), visibility (0..1), presence (0..1).
    pub points: Vec<[f32; 5]>,
    /// Pose-present probability.
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandLandmarks {
    /// 21 points: x, y in image pixels, z relative depth in the same scale.
    pub points: Vec<[f32; 3]>,
    /// Hand-presence probability from the landmark model.
    pub presence: f32,
    /// Probability that this is the person's right hand, assuming the frame is an unflipped
    /// camera view (it is the landmark model's "Left" score: MediaPipe labels hands as if the
    /// image were a mirrored selfie). When `camera.mirrored` frames are flipped, use 1 − this.
    pub right_hand: f32,
    /// True when this hand came from a fresh palm detection rather than the previous frame's landmarks.
    pub redetected: bool,
}

/// A person the body detector found, in image pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    pub score: f32,
    /// Hip centre.
    pub center: [f32; 2],
    /// Radius of the circle around the whole body (hip centre to the top of the head, about
    /// half the body's height).
    pub radius: f32,
    /// The top of the body circle (gives the body's up direction).
    pub top: [f32; 2],
}

impl Person {
    /// The body's size: the circle's diameter, about the body's height, pixels.
    pub fn diameter(&self) -> f32 {
        2.0 * self.radius
    }

    /// The body circle's square clipped to the frame: xmin, ymin, xmax, ymax (pixels).
    pub fn region(&self, frame: [u32; 2]) -> [f32; 4] {
        let (w, h) = (frame[0] as f32, frame[1] as f32);
        let [cx, cy] = self.center;
        let r = self.radius;
        [
            (cx - r).clamp(0.0, w),
            (cy - r).clamp(0.0, h),
            (cx + r).clamp(0.0, w),
            (cy + r).clamp(0.0, h),
        ]
    }

    /// The body's height as a share of the frame's height: how close to the camera, and so
    /// to the mirror, the person stands. Measured on the whole body, also the part outside
    /// the picture, so someone stepping in at the edge counts as near from the first frame.
    pub fn height_fraction(&self, frame: [u32; 2]) -> f32 {
        self.diameter() / (frame[1].max(1) as f32)
    }
}

/// How much each cell of a coarse grid over the frame changed since the previous frame
/// (mean absolute grey-level difference, 0..255): a cheap motion signal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MotionGrid {
    pub columns: usize,
    pub rows: usize,
    /// Row-major, `columns × rows` cells.
    pub change: Vec<f32>,
}

impl MotionGrid {
    /// Mean change over the whole frame.
    pub fn mean(&self) -> f32 {
        if self.change.is_empty() {
            0.0
        } else {
            self.change.iter().sum::<f32>() / self.change.len() as f32
        }
    }

    /// Mean change inside a region given as fractions of the frame (xmin, ymin, xmax, ymax).
    pub fn change_in(&self, region: [f32; 4]) -> f32 {
        if self.columns == 0 || self.rows == 0 || self.change.len() != self.columns * self.rows {
            return 0.0;
        }
        let cell = |v: f32, n: usize| ((v.clamp(0.0, 1.0) * n as f32) as usize).min(n - 1);
        let (x0, x1) = (cell(region[0], self.columns), cell(region[2], self.columns));
        let (y0, y1) = (cell(region[1], self.rows), cell(region[3], self.rows));
        let mut sum = 0.0;
        let mut n = 0;
        for y in y0..=y1 {
            for x in x0..=x1 {
                sum += self.change[y * self.columns + x];
                n += 1;
            }
        }
        if n == 0 { 0.0 } else { sum / n as f32 }
    }
}
