//! Body landmarks of the shopper (BlazePose lite): wrists, elbows and shoulders give the
//! swipe trajectory even when a fast hand is a blur the hand model cannot read.

use ort::session::Session;

use super::VisionError;
use super::model::ImageModel;
use super::ssd::sigmoid;
use super::tensor::{Range, Roi};
use crate::frame::RgbImage;
use crate::observation::PoseLandmarks;
use mirrorsight_core::observation::Person;

pub const MODEL: &str = "pose_landmark_lite";
const INPUT: usize = 256;
/// 33 body points plus the two alignment points MediaPipe uses for the next crop.
const POINTS: usize = 39;
const BODY_POINTS: usize = 33;
const MIN_POSE_SCORE: f32 = 0.5;

pub struct PoseTracker {
    model: ImageModel,
    /// Crop for the next frame, from this frame's alignment points.
    next: Option<Roi>,
}

impl PoseTracker {
    pub fn new(session: Session) -> Self {
        Self {
            model: ImageModel::new(MODEL, session, INPUT, Range::Unit),
            next: None,
        }
    }

    pub fn reset(&mut self) {
        self.next = None;
    }

    /// Landmarks of the shopper: the crop follows the previous frame's landmarks and falls
    /// back to the latest person detection when they were lost.
    pub fn track(
        &mut self,
        image: &RgbImage,
        detection: Option<&Person>,
    ) -> Result<Option<PoseLandmarks>, VisionError> {
        let roi = match (self.next, detection) {
            (Some(roi), _) => roi,
            (None, Some(person)) => roi_from(person.center, person.top),
            (None, None) => return Ok(None),
        };
        self.model.prepare(image, &roi);
        let size = INPUT as f32;
        let (points, score) = self.model.run(&[0, 1], |o| {
            let points: Vec<[f32; 5]> = o[0]
                .chunks_exact(5)
                .take(POINTS)
                .map(|p| {
                    let [x, y] = roi.to_image(p[0] / size, p[1] / size);
                    [x, y, p[2] / size * roi.width, sigmoid(p[3]), sigmoid(p[4])]
                })
                .collect();
            let flag = o[1].first().copied().unwrap_or(0.0);
            // The flag is a probability in some exports and a logit in others.
            (
                points,
                if (0.0..=1.0).contains(&flag) {
                    flag
                } else {
                    sigmoid(flag)
                },
            )
        })?;
        if score < MIN_POSE_SCORE || points.len() < POINTS {
            self.next = None;
            return Ok(None);
        }
        self.next = Some(roi_from(
            [points[33][0], points[33][1]],
            [points[34][0], points[34][1]],
        ));
        Ok(Some(PoseLandmarks {
            points: points[..BODY_POINTS].to_vec(),
            score,
        }))
    }
}

/// Square crop centred on the hips, 1.25× the body circle, turned so the body points up.
fn roi_from(center: [f32; 2], top: [f32; 2]) -> Roi {
    let radius = ((top[0] - center[0]).powi(2) + (top[1] - center[1]).powi(2)).sqrt();
    let rotation = std::f32::consts::FRAC_PI_2 - (-(top[1] - center[1])).atan2(top[0] - center[0]);
    let side = 2.0 * radius * 1.25;
    Roi {
        cx: center[0],
        cy: center[1],
        width: side,
        height: side,
        rotation,
    }
}
