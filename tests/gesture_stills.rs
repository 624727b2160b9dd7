//! The shape classifier on real hands: the stills in `../shared/footage`, run through the real
//! palm detector and hand-landmark model. Skips when the footage is absent.

mod common;

use mirrorsight::config::Config;
use mirrorsight::events::GestureKind;
use mirrorsight::gesture::classify;
use mirrorsight::observation::HandLandmarks;
use mirrorsight::source::{Source, VideoFile};
use mirrorsight::vision::hands::HandTracker;
use mirrorsight::vision::runtime::{ModelsDir, Runtime};

/// Every hand the models find in the still, looking everywhere in the picture.
fn hands_in(name: &str) -> Option<Vec<HandLandmarks>> {
    let path = common::footage(name)?;
    let config = Config::default();
    let runtime = Runtime::get(&config.onnxruntime).expect("ONNX Runtime");
    let models = ModelsDir::locate(&config.models).expect("models folder");
    let palm = runtime
        .load(
            &models,
            &format!("palm_detection_{}", config.hands.palm_model.suffix()),
        )
        .expect("palm model");
    let landmarks = runtime
        .load(
            &models,
            &format!("hand_landmark_{}", config.hands.landmark_model.suffix()),
        )
        .expect("landmark model");
    let mut tracker = HandTracker::new(palm, landmarks, &config.hands);
    let mut source = VideoFile::open(&path).expect("still opens");
    let frame = source.next_frame().expect("decodes").expect("one frame");
    let (w, h) = (frame.image.width as f32, frame.image.height as f32);
    Some(
        tracker
            .track(frame.t, &frame.image, [0.0, 0.0, w, h], &[], true)
            .expect("hand models run"),
    )
}

#[test]
fn thumbs_up_still_reads_as_thumbs_up() {
    let Some(hands) = hands_in("mediapipe_hand_thumb_up.jpg") else {
        return;
    };
    let readings: Vec<_> = hands.iter().filter_map(|h| classify(&h.points)).collect();
    assert!(
        readings
            .iter()
            .any(|r| r.shape == Some(GestureKind::ThumbsUp) && r.confidence >= 0.6),
        "{readings:#?}"
    );
    assert!(
        readings
            .iter()
            .all(|r| matches!(r.shape, Some(GestureKind::ThumbsUp) | None)),
        "{readings:#?}"
    );
}

#[test]
fn raised_open_hand_among_three_people_reads_as_an_upright_open_palm() {
    let Some(hands) = hands_in("tfjs_three_people.jpg") else {
        return;
    };
    let readings: Vec<_> = hands.iter().filter_map(|h| classify(&h.points)).collect();
    assert!(
        readings
            .iter()
            .any(|r| r.shape == Some(GestureKind::OpenPalm)
                && r.confidence >= 0.6
                && r.finger_angle_deg.abs() <= 50.0),
        "{readings:#?}"
    );
    // Nobody in the picture shows a thumb, a fist pose or a V.
    assert!(
        readings
            .iter()
            .all(|r| matches!(r.shape, Some(GestureKind::OpenPalm) | None)),
        "{readings:#?}"
    );
}
