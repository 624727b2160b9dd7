//! Is a shopper standing at the mirror? MediaPipe's pose detector (BlazePose), which finds
//! people facing the camera, in profile and from behind, plus a size gate so passers-by in
//! the background never count.

use ort::session::Session;

use super::VisionError;
use super::model::ImageModel;
use super::ssd::{self, Detection, SsdSpec};
use super::tensor::{Range, Roi};
use crate::config::PresenceConfig;
use crate::frame::RgbImage;

pub const MODEL: &str = "pose_detection";
const INPUT: usize = 224;
const SPEC_STRIDES: &[usize] = &[8, 16, 32, 32, 32];

/// A detected person, in image pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub score: f32,
    /// Hip centre (keypoint 0).
    pub center: [f32; 2],
    /// Radius of the circle around the whole body (|kp1 − kp0|).
    pub radius: f32,
    /// The body circle's square clipped to the frame: xmin, ymin, xmax, ymax.
    pub region: [f32; 4],
    /// Fraction of the frame height the body spans (clipped to the frame).
    pub height_fraction: f32,
    /// Keypoint 1: the top of the body circle (gives the body's up direction).
    pub top: [f32; 2],
}

pub struct PresenceDetector {
    model: ImageModel,
    spec: SsdSpec,
    anchors: Vec<[f32; 2]>,
    min_height_fraction: f32,
}

impl PresenceDetector {
    pub fn new(session: Session, cfg: &PresenceConfig) -> Self {
        let spec = SsdSpec {
            input_size: INPUT,
            strides: SPEC_STRIDES,
            keypoints: 4,
            min_score: cfg.min_score,
            nms_iou: 0.3,
        };
        let anchors = ssd::anchors(&spec);
        Self {
            model: ImageModel::new(MODEL, session, INPUT, Range::Signed),
            spec,
            anchors,
            min_height_fraction: cfg.min_height_fraction,
        }
    }

    /// Fills the input tensor from the frame (the "preprocess" stage).
    pub fn preprocess(&mut self, image: &RgbImage) -> Roi {
        let roi = Roi::letterbox(image);
        self.model.prepare(image, &roi);
        roi
    }

    /// Runs the model on the prepared input (the "inference" stage) and decodes people.
    pub fn infer(&mut self, image: &RgbImage, roi: &Roi) -> Result<Vec<Person>, VisionError> {
        let (spec, anchors) = (&self.spec, &self.anchors);
        // Output 0: regressors (2254×12), output 1: score logits (2254×1).
        let detections = self
            .model
            .run(&[0, 1], |o| ssd::decode(spec, anchors, o[0], o[1], roi))?;
        Ok(detections.iter().map(|d| person(d, image)).collect())
    }

    /// The shopper: the largest person close enough to the mirror, if any.
    pub fn shopper<'a>(&self, people: &'a [Person]) -> Option<&'a Person> {
        people
            .iter()
            .filter(|p| p.height_fraction >= self.min_height_fraction)
            .max_by(|a, b| a.height_fraction.total_cmp(&b.height_fraction))
    }
}

fn person(d: &Detection, image: &RgbImage) -> Person {
    let (w, h) = (image.width as f32, image.height as f32);
    let center = d.keypoints[0];
    let top = d.keypoints[1];
    let radius = ((top[0] - center[0]).powi(2) + (top[1] - center[1]).powi(2)).sqrt();
    let region = [
        (center[0] - radius).clamp(0.0, w),
        (center[1] - radius).clamp(0.0, h),
        (center[0] + radius).clamp(0.0, w),
        (center[1] + radius).clamp(0.0, h),
    ];
    Person {
        score: d.score,
        center,
        radius,
        region,
        height_fraction: (region[3] - region[1]) / h,
        top,
    }
}
