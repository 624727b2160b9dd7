//! Hand tracking with MediaPipe's video strategy: the palm detector finds hands, the
//! landmark model follows them, and each frame's hand region comes from the previous
//! frame's landmarks. The palm detector runs again only when a hand is lost (presence
//! below `hands.min_presence`) or, at a low rate, to pick up a second hand.

use ort::session::Session;

use super::VisionError;
use super::model::ImageModel;
use super::ssd::{self, Detection, SsdSpec};
use super::tensor::{Range, Roi};
use crate::config::HandsConfig;
use crate::frame::RgbImage;
use crate::observation::{HandLandmarks, hand};

const PALM_INPUT: usize = 192;
const PALM_STRIDES: &[usize] = &[8, 16, 16, 16];
const LANDMARK_INPUT: usize = 224;

struct Tracked {
    roi: Roi,
}

pub struct HandTracker {
    palm: ImageModel,
    palm_spec: SsdSpec,
    palm_anchors: Vec<[f32; 2]>,
    landmarks: ImageModel,
    tracked: Vec<Tracked>,
    last_palm_run: Option<f64>,
    /// The wait before the next palm search while no hand is followed: starts at
    /// `search_interval_s`, doubles with every search that finds nothing.
    search_wait: f64,
    palm_runs: u64,
    cfg: HandsConfig,
}

impl HandTracker {
    pub fn new(palm: Session, landmarks: Session, cfg: &HandsConfig) -> Self {
        let palm_spec = SsdSpec {
            input_size: PALM_INPUT,
            strides: PALM_STRIDES,
            keypoints: 7,
            min_score: cfg.min_palm_score,
            nms_iou: 0.3,
        };
        Self {
            palm_anchors: ssd::anchors(&palm_spec),
            palm: ImageModel::new("palm_detection", palm, PALM_INPUT, Range::Unit),
            palm_spec,
            landmarks: ImageModel::new("hand_landmark", landmarks, LANDMARK_INPUT, Range::Unit),
            tracked: Vec::new(),
            last_palm_run: None,
            search_wait: cfg.search_interval_s,
            palm_runs: 0,
            cfg: cfg.clone(),
        }
    }

    /// How many times the palm detector has run.
    pub fn palm_runs(&self) -> u64 {
        self.palm_runs
    }

    /// Forgets every hand (a session ended, or the shopper was lost).
    pub fn reset(&mut self) {
        self.tracked.clear();
        self.last_palm_run = None;
        self.search_wait = self.cfg.search_interval_s;
    }

    /// Tracks hands in one frame. `search` is the region (image pixels) hands may be in:
    /// the shopper's body and a margin around it. Hands already followed are always
    /// tracked. New ones are looked for first where the body landmarks put a raised hand
    /// (`seeds`, as MediaPipe Holistic does: one landmark run, no palm detector, and it keeps
    /// finding a hand the palm detector loses in motion blur), and with the palm detector
    /// only when the body gave no seed and `may_search`.
    pub fn track(
        &mut self,
        t: f64,
        image: &RgbImage,
        search: [f32; 4],
        seeds: &[Roi],
        may_search: bool,
    ) -> Result<Vec<HandLandmarks>, VisionError> {
        let mut found: Vec<HandLandmarks> = Vec::new();
        let mut next = Vec::new();
        for tracked in std::mem::take(&mut self.tracked) {
            if let Some((hand, roi)) = self.landmarks_in(image, &tracked.roi, false)?
                && inside(&hand, &search)
            {
                next.push(Tracked { roi });
                found.push(hand);
            }
        }
        self.tracked = next;
        dedupe(&mut found, &mut self.tracked);

        for seed in seeds {
            if self.tracked.len() >= self.cfg.max_hands {
                break;
            }
            if self.covers(seed) {
                continue;
            }
            if let Some((hand, roi)) = self.landmarks_in(image, seed, true)?
                && inside(&hand, &search)
            {
                self.tracked.push(Tracked { roi });
                found.push(hand);
            }
        }
        dedupe(&mut found, &mut self.tracked);

        let wanted = may_search && seeds.is_empty() && self.tracked.len() < self.cfg.max_hands;
        // Nothing followed: look often, less often the longer nothing turns up (a shopper who
        // raises a hand is usually seeded by the body first). One hand followed: look for a
        // second one now and then.
        if !self.tracked.is_empty() {
            self.search_wait = self.cfg.search_interval_s;
        }
        let interval = if self.tracked.is_empty() {
            self.search_wait
        } else {
            self.cfg.second_hand_interval_s
        };
        let due = self
            .last_palm_run
            .is_none_or(|last| t - last >= interval - 1e-6);
        if wanted && due {
            self.last_palm_run = Some(t);
            self.palm_runs += 1;
            for palm in self.palms(image, &search)? {
                if self.tracked.len() >= self.cfg.max_hands {
                    break;
                }
                let roi = roi_from_palm(&palm);
                // A palm inside a hand we already follow is that hand.
                if self.covers(&roi) {
                    continue;
                }
                // The landmark model's presence score rejects palm-like background objects.
                if let Some((hand, roi)) = self.landmarks_in(image, &roi, true)?
                    && inside(&hand, &search)
                {
                    self.tracked.push(Tracked { roi });
                    found.push(hand);
                }
            }
            dedupe(&mut found, &mut self.tracked);
            self.search_wait = if self.tracked.is_empty() {
                (self.search_wait * 2.0)
                    .max(self.cfg.search_interval_s)
                    .min(self.cfg.search_backoff_max_s)
            } else {
                self.cfg.search_interval_s
            };
        }
        Ok(found)
    }

    /// True when a followed hand already sits in this region.
    fn covers(&self, roi: &Roi) -> bool {
        self.tracked
            .iter()
            .any(|t| distance(&t.roi, roi) < 0.5 * t.roi.width.min(roi.width))
    }

    fn palms(
        &mut self,
        image: &RgbImage,
        search: &[f32; 4],
    ) -> Result<Vec<Detection>, VisionError> {
        let side = (search[2] - search[0]).max(search[3] - search[1]);
        let roi = Roi {
            cx: (search[0] + search[2]) / 2.0,
            cy: (search[1] + search[3]) / 2.0,
            width: side,
            height: side,
            rotation: 0.0,
        };
        self.palm.prepare(image, &roi);
        let (spec, anchors) = (&self.palm_spec, &self.palm_anchors);
        self.palm
            .run(&[0, 1], |o| ssd::decode(spec, anchors, o[0], o[1], &roi))
    }

    /// Runs the landmark model on a hand ROI; returns the hand and the ROI for the next frame.
    fn landmarks_in(
        &mut self,
        image: &RgbImage,
        roi: &Roi,
        redetected: bool,
    ) -> Result<Option<(HandLandmarks, Roi)>, VisionError> {
        self.landmarks.prepare(image, roi);
        let size = LANDMARK_INPUT as f32;
        // Outputs: 0 landmarks (21×3, crop pixels), 1 presence, 2 handedness, 3 world landmarks.
        let (points, presence, right_hand) = self.landmarks.run(&[0, 1, 2], |o| {
            let points: Vec<[f32; 3]> = o[0]
                .chunks_exact(3)
                .map(|p| {
                    let [x, y] = roi.to_image(p[0] / size, p[1] / size);
                    [x, y, p[2] / size * roi.width]
                })
                .collect();
            (
                points,
                o[1].first().copied().unwrap_or(0.0),
                o[2].first().copied().unwrap_or(0.5),
            )
        })?;
        if presence < self.cfg.min_presence || points.len() != 21 {
            return Ok(None);
        }
        let next = roi_from_landmarks(&points);
        Ok(Some((
            HandLandmarks {
                points,
                presence,
                right_hand,
                redetected,
            },
            next,
        )))
    }
}

fn inside(hand: &HandLandmarks, search: &[f32; 4]) -> bool {
    let [x, y, _] = hand.points[hand::MIDDLE_MCP];
    x >= search[0] && x <= search[2] && y >= search[1] && y <= search[3]
}

fn distance(a: &Roi, b: &Roi) -> f32 {
    ((a.cx - b.cx).powi(2) + (a.cy - b.cy).powi(2)).sqrt()
}

/// Two tracks that converged on the same hand keep the more confident one.
fn dedupe(found: &mut Vec<HandLandmarks>, tracked: &mut Vec<Tracked>) {
    let mut i = 0;
    while i < found.len() {
        let dup = (0..found.len()).find(|&j| {
            j != i && {
                let (a, b) = (
                    found[i].points[hand::MIDDLE_MCP],
                    found[j].points[hand::MIDDLE_MCP],
                );
                let d = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
                d < 0.3 * tracked[i].roi.width.min(tracked[j].roi.width)
                    && found[j].presence >= found[i].presence
            }
        });
        if dup.is_some() {
            found.remove(i);
            tracked.remove(i);
        } else {
            i += 1;
        }
    }
}

/// Angle that turns the direction a→b to point up in the crop (MediaPipe's target angle 90°).
fn rotation_up(a: [f32; 2], b: [f32; 2]) -> f32 {
    normalize(std::f32::consts::FRAC_PI_2 - (-(b[1] - a[1])).atan2(b[0] - a[0]))
}

fn normalize(angle: f32) -> f32 {
    use std::f32::consts::PI;
    angle - 2.0 * PI * ((angle + PI) / (2.0 * PI)).floor()
}

/// Moves a rectangle along its own axes, squares it on the long side and scales it.
fn transform(cx: f32, cy: f32, w: f32, h: f32, rotation: f32, shift_y: f32, scale: f32) -> Roi {
    let (sin, cos) = rotation.sin_cos();
    let dy = shift_y * h;
    let side = w.max(h) * scale;
    Roi {
        cx: cx - dy * sin,
        cy: cy + dy * cos,
        width: side,
        height: side,
        rotation,
    }
}

/// Palm detection → hand crop: wrist (kp 0) to middle-finger knuckle (kp 2) points up,
/// shifted half a box towards the fingers, squared and enlarged 2.6×.
pub fn roi_from_palm(palm: &Detection) -> Roi {
    let rotation = rotation_up(palm.keypoints[0], palm.keypoints[2]);
    let [x0, y0, x1, y1] = palm.bbox;
    transform(
        (x0 + x1) / 2.0,
        (y0 + y1) / 2.0,
        x1 - x0,
        y1 - y0,
        rotation,
        -0.5,
        2.6,
    )
}

/// Body landmarks → hand crop, as MediaPipe Holistic's hand-from-pose: the middle finger
/// estimated between the pose model's index and pinky points, a box twice its distance from
/// the wrist, turned so wrist → middle finger points up, enlarged 2.7× and shifted slightly
/// towards the fingers.
pub fn roi_from_pose_hand(wrist: [f32; 2], index: [f32; 2], pinky: [f32; 2]) -> Roi {
    let middle = [
        (2.0 * index[0] + pinky[0]) / 3.0,
        (2.0 * index[1] + pinky[1]) / 3.0,
    ];
    let size = 2.0 * ((middle[0] - wrist[0]).powi(2) + (middle[1] - wrist[1]).powi(2)).sqrt();
    let rotation = rotation_up(wrist, middle);
    transform(middle[0], middle[1], size, size, rotation, -0.1, 2.7)
}

/// Landmarks → next frame's crop, as MediaPipe's hand-landmarks-to-ROI: orientation from the
/// wrist to the middle of the finger bases, the box of the palm and finger-base points in that
/// orientation, shifted slightly towards the fingers, squared and enlarged 2×.
pub fn roi_from_landmarks(points: &[[f32; 3]]) -> Roi {
    const PARTIAL: [usize; 12] = [0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18];
    let p = |i: usize| [points[i][0], points[i][1]];
    let mid = |a: [f32; 2], b: [f32; 2]| [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0];
    let towards = mid(
        mid(p(hand::INDEX_PIP), p(hand::RING_PIP)),
        p(hand::MIDDLE_PIP),
    );
    let rotation = rotation_up(p(hand::WRIST), towards);
    let (sin, cos) = rotation.sin_cos();
    // Coordinates in the crop's frame (rotate by −rotation).
    let (mut u0, mut u1, mut v0, mut v1) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
    for &i in &PARTIAL {
        let [x, y] = p(i);
        let u = x * cos + y * sin;
        let v = -x * sin + y * cos;
        (u0, u1, v0, v1) = (u0.min(u), u1.max(u), v0.min(v), v1.max(v));
    }
    let (uc, vc) = ((u0 + u1) / 2.0, (v0 + v1) / 2.0);
    let (cx, cy) = (uc * cos - vc * sin, uc * sin + vc * cos);
    transform(cx, cy, u1 - u0, v1 - v0, rotation, -0.1, 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upright_palm_gives_an_upright_crop_above_it() {
        let palm = Detection {
            score: 0.9,
            bbox: [90.0, 90.0, 110.0, 110.0],
            keypoints: vec![
                [100.0, 110.0],
                [0.0, 0.0],
                [100.0, 90.0],
                [0.0, 0.0],
                [0.0, 0.0],
                [0.0, 0.0],
                [0.0, 0.0],
            ],
        };
        let roi = roi_from_palm(&palm);
        assert!(roi.rotation.abs() < 1e-5, "{roi:?}");
        assert!(
            (roi.cx - 100.0).abs() < 1e-4 && (roi.cy - 90.0).abs() < 1e-4,
            "{roi:?}"
        );
        assert!((roi.width - 52.0).abs() < 1e-4);
    }

    #[test]
    fn a_hand_pointing_right_is_turned_a_quarter() {
        let palm = Detection {
            score: 0.9,
            bbox: [90.0, 90.0, 110.0, 110.0],
            keypoints: vec![
                [90.0, 100.0],
                [0.0, 0.0],
                [110.0, 100.0],
                [0.0, 0.0],
                [0.0, 0.0],
                [0.0, 0.0],
                [0.0, 0.0],
            ],
        };
        let roi = roi_from_palm(&palm);
        assert!(
            (roi.rotation - std::f32::consts::FRAC_PI_2).abs() < 1e-5,
            "{roi:?}"
        );
        // Shifted towards the fingers: to the right.
        assert!(
            (roi.cx - 110.0).abs() < 1e-4 && (roi.cy - 100.0).abs() < 1e-4,
            "{roi:?}"
        );
        // The crop's top centre lies in the finger direction.
        let [x, _] = roi.to_image(0.5, 0.0);
        assert!(x > roi.cx);
    }

    #[test]
    fn a_raised_hand_from_the_body_landmarks_gives_an_upright_crop_around_it() {
        // Wrist below, index and pinky knuckles above: a hand pointing up.
        let roi = roi_from_pose_hand([100.0, 200.0], [95.0, 170.0], [110.0, 172.0]);
        assert!(roi.rotation.abs() < 0.4, "{roi:?}");
        assert!(roi.cy < 190.0 && roi.cy > 140.0, "{roi:?}");
        // About 2 × 29 px × 2.7: the whole hand and some margin.
        assert!(roi.width > 120.0 && roi.width < 200.0, "{roi:?}");
    }

    #[test]
    fn landmark_roi_follows_the_hand() {
        // An upright hand: wrist at the bottom, fingers above.
        let mut points = vec![[100.0f32, 200.0, 0.0]; 21];
        for (i, p) in points.iter_mut().enumerate().skip(1) {
            let finger = ((i - 1) / 4) as f32;
            let joint = ((i - 1) % 4) as f32;
            *p = [70.0 + finger * 15.0, 180.0 - joint * 20.0, 0.0];
        }
        let roi = roi_from_landmarks(&points);
        assert!(roi.rotation.abs() < 0.3, "{roi:?}");
        assert!(roi.cy < 200.0 && roi.cy > 120.0, "{roi:?}");
        assert!(roi.width > 80.0, "{roi:?}");
    }
}
