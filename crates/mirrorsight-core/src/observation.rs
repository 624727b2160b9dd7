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
