//! Replay of real footage: sessions against ground truth, determinism, every container.

mod common;

use common::*;
use mirrorsight::events::EventKind;

#[test]
fn one_by_one_gives_six_sessions_at_the_labelled_times() {
    let Some(clip) = footage("one-by-one-person-detection.mp4") else {
        return;
    };
    let labels = labels("one-by-one-person-detection.json").expect("labels");
    let presence: Vec<(f64, f64)> = labels["presence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
        .collect();
    let exit_after = 2.0;
    let events = replay(&clip, &["--set", "session.exit_after_s=2"]);
    let starts = of_type(&events, "session_started");
    let ends = of_type(&events, "session_ended");
    assert_eq!(starts.len(), 6, "sessions: {starts:?}");
    assert_eq!(ends.len(), 6);
    for (i, ((start, end), (l0, l1))) in starts.iter().zip(&ends).zip(&presence).enumerate() {
        assert_eq!(start.session(), end.session(), "sessions do not interleave");
        assert!(
            (start.t - l0).abs() <= 1.0,
            "session {i} starts at {} but the shopper enters at {l0}",
            start.t
        );
        let expected_end = l1 + exit_after;
        assert!(
            (end.t - expected_end).abs() <= 1.0,
            "session {i} ends at {} (expected {expected_end} ± 1)",
            end.t
        );
        assert!(matches!(
            end.kind,
            EventKind::SessionEnded {
                reason: mirrorsight::events::EndReason::Absent,
                ..
            }
        ));
    }
}

#[test]
fn empty_scene_with_moving_leaves_starts_no_session() {
    let Some(clip) = footage("opencv_tree.avi") else {
        return;
    };
    let events = replay(&clip, &[]);
    assert!(of_type(&events, "session_started").is_empty(), "{events:?}");
    // The clip was read to the end: the stream closes with source_ended.
    assert!(
        matches!(events.last().map(|e| &e.kind), Some(EventKind::SourceEnded { frames }) if *frames > 50)
    );
}

#[test]
fn a_seated_shopper_is_one_session() {
    for name in [
        "sense_reactive_gesture_test_1.mp4",
        "tfjs_facemesh_input.mp4",
    ] {
        let Some(clip) = footage(name) else { return };
        let events = replay(&clip, &[]);
        let starts = of_type(&events, "session_started");
        assert_eq!(starts.len(), 1, "{name}: {events:?}");
        assert!(
            starts[0].t <= 1.0,
            "{name}: the shopper is there from the first frame"
        );
        assert_eq!(of_type(&events, "session_ended").len(), 1, "{name}");
    }
}

#[test]
fn mp4_mkv_avi_and_gif_all_play_to_the_end() {
    for (name, min_frames) in [
        ("asl_yes.mkv", 60),
        ("opencv_tree.avi", 60),
        ("head-pose-face-detection-female-and-male.gif", 50),
        ("tfjs_pose_squats.mp4", 60),
    ] {
        let Some(clip) = footage(name) else { return };
        let events = replay(&clip, &[]);
        let Some(EventKind::SourceEnded { frames }) = events.last().map(|e| &e.kind) else {
            panic!("{name}: stream does not end with source_ended: {events:?}")
        };
        assert!(
            *frames >= min_frames,
            "{name}: only {frames} frames decoded"
        );
        // Timestamps never go backwards.
        assert!(
            events.windows(2).all(|w| w[0].t <= w[1].t),
            "{name}: {events:?}"
        );
    }
}

#[test]
fn replay_is_deterministic() {
    let clip = demo_clip();
    let a = run_ok(bin().arg("replay").arg(&clip));
    let b = run_ok(bin().arg("replay").arg(&clip));
    assert!(!a.stdout.is_empty());
    assert_eq!(a.stdout, b.stdout, "two replays differ");
    let events = parse_events(&a.stdout);
    assert_eq!(of_type(&events, "session_started").len(), 1, "{events:?}");
    // A different seed gives different ids but the same timeline.
    let c = parse_events(&run_ok(bin().arg("replay").arg(&clip).args(["--seed", "42"])).stdout);
    assert_eq!(c.len(), events.len());
    assert_ne!(c[0].session(), events[0].session());
    assert!(
        c.iter()
            .zip(&events)
            .all(|(x, y)| x.t == y.t && x.type_name() == y.type_name())
    );
}

#[test]
fn events_can_go_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let out = run_ok(
        bin()
            .arg("replay")
            .arg(demo_clip())
            .arg("--events")
            .arg(&path),
    );
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout when events go to a file"
    );
    let events = parse_events(&std::fs::read(&path).unwrap());
    assert!(events.iter().any(|e| e.type_name() == "session_started"));
    assert_eq!(events.last().unwrap().type_name(), "source_ended");
}

#[test]
fn realtime_replay_paces_frames_and_finds_the_same_session() {
    let clip = demo_clip();
    let started = std::time::Instant::now();
    let events = replay(&clip, &["--realtime"]);
    let wall = started.elapsed().as_secs_f64();
    let last_t = events.last().unwrap().t;
    assert!(
        wall >= last_t * 0.9,
        "realtime replay of a {last_t:.1} s clip took only {wall:.1} s"
    );
    assert_eq!(of_type(&events, "session_started").len(), 1, "{events:?}");
}

#[test]
fn eval_scores_the_one_by_one_clip() {
    let Some(clip) = footage("one-by-one-person-detection.mp4") else {
        return;
    };
    let report = eval_json(
        &clip,
        "one-by-one-person-detection.json",
        &["--set", "session.exit_after_s=2"],
    );
    let s = &report["sessions"];
    assert_eq!(s["detected"], 6);
    assert_eq!(s["matched"], 6);
    assert_eq!(s["precision"], 1.0);
    assert_eq!(s["recall"], 1.0);
    for e in s["start_errors"]
        .as_array()
        .unwrap()
        .iter()
        .chain(s["end_errors"].as_array().unwrap())
    {
        assert!(e.as_f64().unwrap().abs() <= 1.0, "{report}");
    }
}
