//! People in the picture: MediaPipe's pose detector (BlazePose), which finds people facing
//! the camera, in profile and from behind. Who of them is a shopper at the mirror (close,
//! stopped, the nearest) is the core's decision (`mirrorsight_core::presence`).

use ort::session::Session;

use super::VisionError;
use super::model::ImageModel;
use super::ssd::{self, Detection, SsdSpec};
use super::tensor::{Range, Roi};
use crate::frame::RgbImage;
use mirrorsight_core::observation::Person;
use mirrorsight_core::presence::PresenceConfig;

pub const MODEL: &str = "pose_detection";
const INPUT: usize = 224;
const SPEC_STRIDES: &[usize] = &[8, 16, 32, 32, 32];

pub struct PresenceDetector {
    model: ImageModel,
    spec: SsdSpec,
    anchors: Vec<[f32; 2]>,
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
        }
    }

    /// Fills the input tensor from the frame (the "preprocess" stage).
    pub fn preprocess(&mut self, image: &RgbImage) -> Roi {
        let roi = Roi::letterbox(image);
        self.model.prepare(image, &roi);
        roi
    }

    /// Runs the model on the prepared input (the "inference" stage) and decodes people.
    pub fn infer(&mut self, roi: &Roi) -> Result<Vec<Person>, VisionError> {
        let (spec, anchors) = (&self.spec, &self.anchors);
        // Output 0: regressors (2254×12), output 1: score logits (2254×1).
        let detections = self
            .model
            .run(&[0, 1], |o| ssd::decode(spec, anchors, o[0], o[1], roi))?;
        Ok(detections.iter().map(person).collect())
    }
}

fn person(d: &Detection) -> Person {
    let center = d.keypoints[0];
    let top = d.keypoints[1];
    let radius = ((top[0] - center[0]).powi(2) + (top[1] - center[1]).powi(2)).sqrt();
    Person {
        score: d.score,
        center,
        radius,
        top,
    }
}
