//! `mirrorsight bench`: where a replay's time goes (issue #13), as text and as JSON for
//! scripts (scripts/bench-vs-mediapipe.sh reads the JSON).

mod common;

use common::*;
use serde_json::Value;

fn number(report: &Value, key: &str) -> f64 {
    report[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {report}"))
}

#[test]
fn bench_json_says_where_the_time_goes() {
    let out = run_ok(bin().arg("bench").arg(demo_clip()).arg("--json"));
    let report: Value = serde_json::from_slice(&out.stdout).expect("bench --json is JSON");
    let frames = number(&report, "frames");
    assert!(frames > 10.0, "{report}");
    assert!(number(&report, "fps") > 0.0);
    assert!(number(&report, "cpu_ms_per_frame") > 0.0);
    // The vision thread's wait for the capture thread: measured, never negative, and less
    // than the whole replay.
    let wait = number(&report, "vision_wait_ms_per_frame");
    let wall_ms_per_frame = 1000.0 * number(&report, "wall_s") / frames;
    assert!(
        (0.0..wall_ms_per_frame).contains(&wait),
        "wait {wait} ms of {wall_ms_per_frame} ms per frame"
    );
    // The binary counts its Rust heap allocations: every frame allocates something (events,
    // observations), and a replay of a few hundred frames does not allocate gigabytes.
    let allocations = number(&report, "heap_allocations_per_frame");
    let kib = number(&report, "heap_kib_per_frame");
    assert!((1.0..1e5).contains(&allocations), "{allocations}");
    assert!(kib > 0.0 && kib < 1e5, "{kib}");
    // Stages and models carry their shares of the replay.
    let stages = report["stages"].as_array().expect("stages");
    let stage = |name: &str| {
        stages
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("stage {name} missing in {report}"))
    };
    for name in ["frame", "decode", "inference", "hands"] {
        let share = number(stage(name), "share");
        assert!((0.0..=1.1).contains(&share), "{name} share {share}");
    }
    let models: Vec<&str> = report["models"]
        .as_array()
        .expect("models")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    for name in ["pose_detection", "pose_landmark_lite", "hand_landmark"] {
        assert!(models.contains(&name), "{name} missing in {models:?}");
    }
}

#[test]
fn bench_text_names_the_hand_off_and_the_allocations() {
    let out = run_ok(bin().arg("bench").arg(demo_clip()));
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "vision waited for frames: ",
        "heap allocations (Rust, whole process): ",
        "cpu: ",
        "stage ",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
}

#[test]
fn the_body_landmark_model_computes_only_what_the_daemon_reads() {
    // models/trim.py cut the segmentation mask, the heatmaps and the world landmarks out of
    // pose_landmark_lite (more than half of its time); the runtime checks every model's
    // outputs against the manifest, so these are the outputs the loaded model has.
    let out = run_ok(bin().arg("bench").arg(demo_clip()).arg("--model-outputs"));
    let report: Value = serde_json::from_slice(&out.stdout).expect("model outputs are JSON");
    let pose = report["models"]
        .as_array()
        .expect("models")
        .iter()
        .find(|m| m["model"] == "pose_landmark_lite")
        .expect("pose_landmark_lite");
    let names: Vec<&str> = pose["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert_eq!(names, ["Identity", "Identity_1"]);
    let values = |i: usize| pose["outputs"][i]["values"].as_array().map(Vec::len);
    // 39 points × (x, y, z, visibility, presence), and the pose flag.
    assert_eq!((values(0), values(1)), (Some(195), Some(1)));
}
