//! Offline tuning on real footage: replays observation dumps (`mirrorsight replay CLIP
//! --dump-observations DIR/STEM.jsonl`) through the recognizer and scores the gestures against
//! `../shared/footage/labels/STEM.json`.
//!
//! `GESTURE_OBS_DIR=/tmp/obs cargo test --release --lib gesture::offline -- --ignored --nocapture`
//! (default dir /tmp/obs; `GESTURE_TRACE=1` prints every judged stroke and every hand reading,
//! `GESTURE_CLIP=stem` runs one clip, `GESTURE_SET` overrides `[gestures]` keys,
//! `GESTURE_DUMP=FILE` traces one dump without scoring it).
//! Ignored by default: the dumps are produced by the current vision code and are not part of
//! the repository; the acceptance tests replay the clips themselves.

#![cfg(test)]

use std::path::{Path, PathBuf};

use mirrorsight_contract::events::{Event, EventKind};
use serde_json::Value;

use super::config::GestureConfig;
use super::recognizer::GestureRecognizer;
use super::shape::classify;
use crate::observation::Observation;

/// What a clip must give (from issue 3): exact gesture counts, or only "no such actions".
struct Expectation {
    stem: &'static str,
    /// `Some`: exactly these gesture keys (sorted), each matching a label.
    exact: Option<&'static [&'static str]>,
    /// Gesture keys that must appear (matching a label) when not exact.
    required: &'static [&'static str],
    /// Gesture keys that must not appear at all.
    forbidden_gestures: &'static [&'static str],
    /// Action event types that must not appear.
    forbidden_actions: &'static [&'static str],
}

const EXPECTATIONS: &[Expectation] = &[
    Expectation {
        stem: "sense_reactive_gesture_test_1",
        exact: Some(&[
            "swipe:image_left_to_right",
            "swipe:image_left_to_right",
            "swipe:image_left_to_right",
            "swipe:image_right_to_left",
            "swipe:image_right_to_left",
            "thumbs_down",
            "thumbs_up",
            "thumbs_up",
        ]),
        required: &[],
        forbidden_gestures: &[],
        forbidden_actions: &[],
    },
    Expectation {
        stem: "mediapipe_gesture_recognizer_test_video",
        exact: None,
        required: &["thumbs_up"],
        forbidden_gestures: &["swipe:image_left_to_right", "swipe:image_right_to_left"],
        forbidden_actions: &[],
    },
    Expectation {
        stem: "mediapipe_hand_landmarker_test_video",
        exact: None,
        required: &[],
        forbidden_gestures: &["swipe:image_left_to_right", "swipe:image_right_to_left"],
        forbidden_actions: &["outfit_switch"],
    },
    Expectation {
        stem: "tfjs_pose_squats",
        exact: None,
        required: &[],
        forbidden_gestures: &[],
        forbidden_actions: &["outfit_switch", "photo_requested"],
    },
    Expectation {
        stem: "tfjs_facemesh_input",
        exact: None,
        required: &[],
        forbidden_gestures: &[],
        forbidden_actions: &["outfit_switch", "photo_requested"],
    },
    Expectation {
        stem: "head-pose-face-detection-female-and-male",
        exact: None,
        required: &[],
        forbidden_gestures: &[],
        forbidden_actions: &["outfit_switch", "photo_requested"],
    },
    Expectation {
        stem: "asl_yes",
        exact: None,
        required: &[],
        forbidden_gestures: &[],
        forbidden_actions: &["outfit_switch", "photo_requested"],
    },
    Expectation {
        stem: "asl_want",
        exact: None,
        required: &[],
        forbidden_gestures: &[],
        forbidden_actions: &["outfit_switch", "photo_requested"],
    },
    Expectation {
        stem: "tfjs_asl_hand.25fps",
        exact: None,
        required: &[],
        forbidden_gestures: &[
            "swipe:image_left_to_right",
            "swipe:image_right_to_left",
            "thumbs_up",
            "thumbs_down",
        ],
        forbidden_actions: &[
            "outfit_switch",
            "photo_requested",
            "photo_discard_requested",
        ],
    },
    Expectation {
        stem: "one-by-one-person-detection",
        exact: Some(&[]),
        required: &[],
        forbidden_gestures: &[],
        forbidden_actions: &[],
    },
    Expectation {
        stem: "face-demographics-walking",
        exact: Some(&[]),
        required: &[],
        forbidden_gestures: &[],
        forbidden_actions: &[],
    },
    Expectation {
        stem: "opencv_tree",
        exact: None,
        required: &[],
        forbidden_gestures: &[],
        forbidden_actions: &["outfit_switch", "photo_requested"],
    },
];

fn key(e: &Event) -> Option<String> {
    let EventKind::Gesture {
        gesture, motion, ..
    } = &e.kind
    else {
        return None;
    };
    let name = |v: Value| v.as_str().unwrap_or_default().to_string();
    let g = name(serde_json::to_value(gesture).ok()?);
    Some(match motion {
        Some(m) => format!("{g}:{}", name(serde_json::to_value(m).ok()?)),
        None => g,
    })
}

/// A labelled gesture: key (`swipe:image_left_to_right`, `thumbs_up`), start, end.
type Label = (String, f64, f64);

/// Labelled gestures and the tolerance.
fn labels(stem: &str, footage: &Path) -> Option<(Vec<Label>, f64)> {
    let text = std::fs::read_to_string(footage.join("labels").join(format!("{stem}.json"))).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let tol = v["tolerance_s"].as_f64().unwrap_or(0.5);
    let gestures = v["gestures"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|g| {
                    let kind = g["kind"].as_str()?;
                    let key = match g["motion"].as_str() {
                        Some(m) => format!("{kind}:{m}"),
                        None => kind.to_string(),
                    };
                    Some((key, g["start"].as_f64()?, g["end"].as_f64()?))
                })
                .collect()
        })
        .unwrap_or_default();
    Some((gestures, tol))
}

/// Runs one dump; returns the events.
pub(crate) fn replay(path: &Path, config: &GestureConfig, trace: bool) -> Vec<Event> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut rec = GestureRecognizer::new(config.clone(), false);
    rec.trace_strokes(true);
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(obs) = serde_json::from_str::<Observation>(line) else {
            continue;
        };
        if trace {
            for h in &obs.hands {
                if let Some(r) = classify(&h.points) {
                    println!(
                        "    {:6.3} hand ({:4.0},{:4.0}) presence {:.2} {:?} {:.2} ext {:?} flat {:.2}",
                        obs.t,
                        r.wrist[0],
                        r.wrist[1],
                        h.presence,
                        r.shape,
                        r.confidence,
                        r.extended.map(|e| (e * 10.0).round() / 10.0),
                        r.flat
                    );
                }
            }
        }
        let before = out.len();
        rec.observe(&obs, &mut out);
        for e in &out[before..] {
            println!("  -> {}", e.to_json_line());
        }
    }
    if let Ok(path) = std::env::var("GESTURE_STROKES") {
        // Every judged stroke as JSON lines, for offline analysis.
        let lines: Vec<String> = rec
            .stroke_trace()
            .iter()
            .map(|v| {
                serde_json::json!({
                    "arm": v.arm, "dir": v.dir, "start": v.start, "end": v.end,
                    "travel": v.travel, "vertical": v.vertical_ratio, "duration": v.duration,
                    "peak_speed": v.peak_speed, "below": v.below_shoulder,
                    "rejections": v.rejections.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>(),
                })
                .to_string()
            })
            .collect();
        let _ = std::fs::write(path, lines.join("\n"));
    }
    if trace {
        for v in rec.stroke_trace().iter().filter(|v| v.travel >= 0.4) {
            println!(
                "    stroke arm {} dir {:+} {:.3}-{:.3} travel {:.2} vertical {:.2} below {:.2} -> {:?}",
                v.arm,
                v.dir,
                v.start,
                v.end,
                v.travel,
                v.vertical_ratio,
                v.below_shoulder,
                v.rejections
            );
        }
    }
    out
}

#[test]
#[ignore = "needs observation dumps in $GESTURE_OBS_DIR (default /tmp/obs)"]
fn real_footage() {
    let dir = PathBuf::from(std::env::var("GESTURE_OBS_DIR").unwrap_or("/tmp/obs".into()));
    let footage = PathBuf::from(
        std::env::var("GESTURE_FOOTAGE_DIR").unwrap_or("/work/shared/footage".into()),
    );
    let trace = std::env::var("GESTURE_TRACE").is_ok_and(|v| v == "1");
    let only = std::env::var("GESTURE_CLIP").ok();
    // `GESTURE_SET="swipe_min_travel_shoulders = 1.2; [actions] fist = 'none'"`: TOML, `;` for newlines.
    let config: GestureConfig = match std::env::var("GESTURE_SET") {
        Ok(set) => toml::from_str(&set.replace(';', "\n")).expect("GESTURE_SET is gestures TOML"),
        Err(_) => GestureConfig::default(),
    };
    if let Ok(one) = std::env::var("GESTURE_DUMP") {
        // One dump (e.g. of an augmented replay), traced, not scored.
        replay(Path::new(&one), &config, trace);
        return;
    }
    let mut failures = Vec::new();
    for exp in EXPECTATIONS {
        if only.as_deref().is_some_and(|o| o != exp.stem) {
            continue;
        }
        let path = dir.join(format!("{}.jsonl", exp.stem));
        if !path.exists() {
            println!("{}: no dump, skipped", exp.stem);
            continue;
        }
        println!("== {}", exp.stem);
        let events = replay(&path, &config, trace);
        let (labelled, tol) = labels(exp.stem, &footage).unwrap_or_default();
        let detected: Vec<(String, f64)> = events
            .iter()
            .filter_map(|e| key(e).map(|k| (k, e.t)))
            .collect();
        let mut used = vec![false; detected.len()];
        let mut matched = Vec::new();
        for (k, s, e) in &labelled {
            let hit = detected
                .iter()
                .enumerate()
                .find(|(i, (dk, t))| !used[*i] && dk == k && *t >= s - tol && *t <= e + tol);
            match hit {
                Some((i, (_, t))) => {
                    used[i] = true;
                    matched.push(k.clone());
                    println!("  label {k} {s}-{e}: matched at {t} (delay {:+.2})", t - e);
                }
                None => println!("  label {k} {s}-{e}: MISSED"),
            }
        }
        for (i, (k, t)) in detected.iter().enumerate() {
            if !used[i] {
                println!("  unlabelled {k} at {t}");
            }
        }
        let mut all: Vec<String> = detected.iter().map(|(k, _)| k.clone()).collect();
        all.sort();
        if let Some(exact) = exp.exact {
            let mut m = matched.clone();
            m.sort();
            if all != exact || m != exact {
                failures.push(format!("{}: got {all:?}, matched {m:?}", exp.stem));
            }
        }
        for r in exp.required {
            if !matched.iter().any(|m| m == r) {
                failures.push(format!("{}: {r} missing", exp.stem));
            }
        }
        for f in exp.forbidden_gestures {
            if all.iter().any(|k| k == f) {
                failures.push(format!("{}: forbidden {f}", exp.stem));
            }
        }
        for f in exp.forbidden_actions {
            if events.iter().any(|e| e.type_name() == *f) {
                failures.push(format!("{}: forbidden action {f}", exp.stem));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
