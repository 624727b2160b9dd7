//! Gestures on real footage: the mirror's vocabulary is recognised, distractors trigger nothing.

mod common;

use common::*;
use mirrorsight::events::{Event, EventKind};

fn gestures(events: &[Event]) -> Vec<(String, f64)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Gesture {
                gesture, motion, ..
            } => Some((mirrorsight::eval::gesture_key(*gesture, *motion), e.t)),
            _ => None,
        })
        .collect()
}

#[test]
fn sense_clip_gives_exactly_the_labelled_gestures() {
    let Some(clip) = footage("sense_reactive_gesture_test_1.mp4") else {
        return;
    };
    let labels = labels("sense_reactive_gesture_test_1.json").unwrap();
    let tol = labels["tolerance_s"].as_f64().unwrap();
    let events = replay(&clip, &[]);
    let mut found = gestures(&events);
    let expected: Vec<(String, f64, f64)> = labels["gestures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let kind = g["kind"].as_str().unwrap();
            let key = match g["motion"].as_str() {
                Some(m) => format!("{kind}:{m}"),
                None => kind.to_string(),
            };
            (
                key,
                g["start"].as_f64().unwrap(),
                g["end"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        found.len(),
        expected.len(),
        "detected {found:?}, labelled {expected:?}"
    );
    for (kind, start, end) in &expected {
        let i = found
            .iter()
            .position(|(k, t)| k == kind && *t >= start - tol && *t <= end + tol)
            .unwrap_or_else(|| panic!("no {kind} within [{start}, {end}] ± {tol}: {found:?}"));
        found.remove(i);
    }
    assert!(found.is_empty(), "unlabelled gestures: {found:?}");
    // The actions they map to by default.
    assert_eq!(of_type(&events, "outfit_switch").len(), 5);
    assert_eq!(of_type(&events, "photo_requested").len(), 2);
    assert_eq!(of_type(&events, "photo_discard_requested").len(), 1);
    // Every gesture belongs to the session.
    let session = of_type(&events, "session_started")[0]
        .session()
        .unwrap()
        .to_string();
    assert!(
        events
            .iter()
            .filter(|e| e.type_name() == "gesture")
            .all(|e| e.session() == Some(session.as_str()))
    );
}

#[test]
fn thumbs_up_clip_gives_one_thumbs_up_and_no_swipe() {
    let Some(clip) = footage("mediapipe_gesture_recognizer_test_video.mp4") else {
        return;
    };
    let events = replay(&clip, &[]);
    let found = gestures(&events);
    assert_eq!(
        found.iter().filter(|(k, _)| k == "thumbs_up").count(),
        1,
        "{found:?}"
    );
    assert!(
        found.iter().all(|(k, _)| !k.starts_with("swipe")),
        "{found:?}"
    );
    assert!(of_type(&events, "outfit_switch").is_empty());
}

#[test]
fn distractor_clips_never_switch_outfits_or_take_photos() {
    for name in [
        "tfjs_pose_squats.mp4",
        "tfjs_facemesh_input.mp4",
        "head-pose-face-detection-female-and-male.gif",
        "asl_yes.mkv",
        "asl_want.mkv",
        "opencv_tree.avi",
    ] {
        let Some(clip) = footage(name) else { return };
        let events = replay(&clip, &[]);
        for forbidden in ["outfit_switch", "photo_requested"] {
            assert!(
                of_type(&events, forbidden).is_empty(),
                "{name}: {forbidden} in {events:?}"
            );
        }
    }
}

#[test]
fn eval_scores_gestures_per_kind() {
    let Some(clip) = footage("sense_reactive_gesture_test_1.mp4") else {
        return;
    };
    let report = eval_json(&clip, "sense_reactive_gesture_test_1.json", &[]);
    for (kind, n) in [
        ("swipe:image_left_to_right", 3),
        ("swipe:image_right_to_left", 2),
        ("thumbs_up", 2),
        ("thumbs_down", 1),
    ] {
        let g = &report["gestures"][kind];
        assert_eq!(g["matched"], n, "{kind}: {report}");
        assert_eq!(g["missed"], 0, "{kind}");
        assert_eq!(g["false_positives"], 0, "{kind}");
        assert_eq!(g["delays"].as_array().unwrap().len(), n);
    }
}

/// `eval` reports every matched gesture's latency after its labelled end: media time alone by
/// default, plus how late the event left the pipeline with `--realtime` (frames presented at
/// their media time, as a camera delivers them).
#[test]
fn eval_reports_gesture_latency_in_media_time_and_in_realtime() {
    let Some(clip) = footage("sense_reactive_gesture_test_1.mp4") else {
        return;
    };
    let samples = |report: &serde_json::Value| -> Vec<f64> {
        report["latency"]["samples_s"]
            .as_array()
            .unwrap_or_else(|| panic!("no latency samples: {report}"))
            .iter()
            .map(|v| v.as_f64().unwrap_or(f64::NAN))
            .collect()
    };
    let matched = |report: &serde_json::Value| -> u64 {
        report["gestures"]
            .as_object()
            .expect("gestures")
            .values()
            .map(|g| g["matched"].as_u64().unwrap_or(0))
            .sum()
    };

    let media = eval_json(&clip, "sense_reactive_gesture_test_1.json", &[]);
    assert_eq!(media["latency"]["realtime"], false, "{media}");
    let mut delays: Vec<f64> = media["gestures"]
        .as_object()
        .expect("gestures")
        .values()
        .flat_map(|g| g["delays"].as_array().expect("delays").clone())
        .map(|v| v.as_f64().unwrap_or(f64::NAN))
        .collect();
    delays.sort_by(f64::total_cmp);
    // Media time only: the samples are the matched gestures' delays after their labelled end.
    assert_eq!(samples(&media), delays, "{media}");
    assert_eq!(media["latency"]["max_s"].as_f64(), delays.last().copied());
    assert_eq!(delays.len(), 8);

    let realtime = eval_json(&clip, "sense_reactive_gesture_test_1.json", &["--realtime"]);
    assert_eq!(realtime["latency"]["realtime"], true, "{realtime}");
    let real = samples(&realtime);
    assert_eq!(real.len() as u64, matched(&realtime), "{realtime}");
    assert!(
        real.iter().all(|s| s.is_finite()) && real.windows(2).all(|w| w[0] <= w[1]),
        "{real:?}"
    );
}
