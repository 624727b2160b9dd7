//! The vision holds for shoppers it has never seen: the robustness suite (`eval --augment all`:
//! mirrored, smaller, tilted, other frame rates, faster, dim and noisy, off-centre) on every
//! labelled clip in `../shared/footage`, people walking past, and a second person in view.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

/// Every labelled clip: (clip, labels file name, extra eval arguments).
fn labelled_clips() -> Vec<(PathBuf, String, Vec<String>)> {
    let dir = repo().join("../shared/footage/labels");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        // `footage` reports the absence (and fails under CI).
        let _ = footage("labels");
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && n != "stills.json")
        .collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| {
            let l = labels(&name)?;
            let clip = footage(l["clip"].as_str()?)?;
            // one-by-one's visitors come back within seconds: its labels count each visit as a
            // session, which the product makes only with a short exit time.
            let extra = if name.starts_with("one-by-one") {
                vec!["--set".to_string(), "session.exit_after_s=2".to_string()]
            } else {
                Vec::new()
            };
            Some((clip, name, extra))
        })
        .collect()
}

/// `eval --augment all --json` on each clip, two at a time (the machine has two cores and each
/// eval runs the models single-file). Returns (labels name, one report per transform).
fn suite_reports() -> Vec<(String, Vec<Value>)> {
    let clips = labelled_clips();
    let mut reports = Vec::new();
    for pair in clips.chunks(2) {
        let children: Vec<_> = pair
            .iter()
            .map(|(clip, name, extra)| {
                let child = bin()
                    .arg("eval")
                    .arg(clip)
                    .arg("--labels")
                    .arg(repo().join("../shared/footage/labels").join(name))
                    .args(extra)
                    .args(["--augment", "all", "--json"])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn mirrorsight eval");
                (name.clone(), child)
            })
            .collect();
        for (name, child) in children {
            let out = child.wait_with_output().expect("eval finishes");
            assert!(
                out.status.success(),
                "eval {name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("eval JSON");
            reports.push((name, rows));
        }
    }
    reports
}

fn recall(row: &Value) -> (u64, u64, f64) {
    let (mut matched, mut missed) = (0, 0);
    for g in row["gestures"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
    {
        matched += g["matched"].as_u64().unwrap_or(0);
        missed += g["missed"].as_u64().unwrap_or(0);
    }
    let labelled = matched + missed;
    let r = if labelled == 0 {
        1.0
    } else {
        matched as f64 / labelled as f64
    };
    (matched, labelled, r)
}

#[test]
fn robustness_suite_holds_on_every_labelled_clip() {
    let reports = suite_reports();
    if reports.is_empty() {
        return;
    }
    let mut failures = Vec::new();
    for (name, rows) in &reports {
        assert!(
            rows.len() >= 11,
            "{name}: the suite has {} rows",
            rows.len()
        );
        for row in rows {
            let transform = row["transform"].as_str().unwrap_or("?");
            // Nothing anyone does in any clip, seen any way, may switch an outfit or take a
            // photo unless it is a labelled gesture.
            if row["false_triggers"] != 0 {
                failures.push(format!(
                    "{name} [{transform}]: {} false outfit_switch/photo_requested",
                    row["false_triggers"]
                ));
            }
            // The gesture clips: every labelled gesture under every transform (recall ≥ 0.9)
            // and, as recorded, exactly the labelled ones.
            if name.starts_with("sense_reactive") || name.starts_with("mediapipe_gesture") {
                let (matched, labelled, r) = recall(row);
                if r < 0.9 {
                    failures.push(format!(
                        "{name} [{transform}]: {matched}/{labelled} gestures"
                    ));
                }
                if transform == "none" {
                    let fps: u64 = row["gestures"]
                        .as_object()
                        .into_iter()
                        .flat_map(|m| m.values())
                        .map(|g| g["false_positives"].as_u64().unwrap_or(0))
                        .sum();
                    if matched != labelled || fps != 0 {
                        failures.push(format!(
                            "{name} [none]: {matched}/{labelled} gestures, {fps} false"
                        ));
                    }
                }
            }
            // one-by-one: each of the six visits becomes a session within a second of the
            // visitor's entry, mirrored, darker and farther away too.
            if name.starts_with("one-by-one")
                && ["none", "hflip", "scale=0.75", "gamma=1.5,noise=8"].contains(&transform)
            {
                let s = &row["sessions"];
                let starts: Vec<f64> = s["start_errors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_f64)
                    .collect();
                if s["matched"] != 6 || s["detected"] != 6 || starts.iter().any(|e| e.abs() > 1.0) {
                    failures.push(format!(
                        "{name} [{transform}]: {}/6 sessions ({} detected), start errors {starts:?}",
                        s["matched"], s["detected"]
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "robustness:\n{}", failures.join("\n"));
}

/// A person crossing the frame at walking pace, never stopping, near (large) or far (small):
/// no session, no code. The very same picture standing still is a visitor (the control), so
/// the test fails if presence simply stopped seeing people.
#[test]
fn passers_by_start_no_session() {
    let Some(clip) = footage("sense_reactive_gesture_test_1.mp4") else {
        return;
    };
    let standing = replay(&clip, &["--augment", "scale=0.6"]);
    assert_eq!(
        of_type(&standing, "session_started").len(),
        1,
        "control: the same person standing still is a visitor"
    );
    // Each speed is about 0.75 of the person's own height per second, an ordinary walk: the
    // person detector sees the whole body in this close-up (its circle is about 1.2 frame
    // heights at scale 0.4), so the speed is measured against that, as the mirror does.
    // Near and large, far and small, both directions.
    for chain in [
        "scale=0.6,slide=0.9",
        "scale=0.4,slide=0.6",
        "scale=0.25,slide=0.4",
        "scale=0.6,slide=-0.9",
    ] {
        let events = replay(&clip, &["--augment", chain]);
        for forbidden in [
            "session_started",
            "qr_minted",
            "photo_requested",
            "outfit_switch",
        ] {
            assert!(
                of_type(&events, forbidden).is_empty(),
                "{chain}: {forbidden} for someone walking past: {:?}",
                of_type(&events, forbidden)
            );
        }
    }
}

/// Two clips side by side (ffmpeg `hstack`): the shopper at the mirror on one side, another
/// person farther away on the other. The session follows the shopper, and the other person's
/// gestures (the MediaPipe clip's thumbs up and fist) never reach an action.
#[test]
fn the_session_follows_the_shopper_not_the_person_beside() {
    let (Some(shopper), Some(other)) = (
        footage("sense_reactive_gesture_test_1.mp4"),
        footage("mediapipe_gesture_recognizer_test_video.mp4"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, shopper_left) in [("shopper-left.mp4", true), ("shopper-right.mp4", false)] {
        let composite = dir.path().join(name);
        side_by_side(&shopper, &other, shopper_left, &composite);
        let events = replay(&composite, &[]);
        let sessions = of_type(&events, "session_started");
        assert_eq!(sessions.len(), 1, "{name}: {sessions:?}");
        // Every outfit switch and every photo is one of the shopper's labelled gestures (by
        // kind and time), and nothing comes from the other person's thumbs up and fist. The
        // composite halves the shopper's picture width and re-encodes it, so one of the five
        // swipes may be lost (recall ≥ 0.8, as in a hard transform), but both thumbs ups count.
        let labels = labels("sense_reactive_gesture_test_1.json").expect("sense labels");
        let tol = labels["tolerance_s"].as_f64().unwrap_or(0.5);
        let labelled = |kind: &str, t: f64| {
            labels["gestures"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|g| {
                    g["kind"] == kind
                        && t >= g["start"].as_f64().unwrap_or(f64::NAN) - tol
                        && t <= g["end"].as_f64().unwrap_or(f64::NAN) + tol
                })
        };
        let switches = of_type(&events, "outfit_switch");
        assert!(
            (4..=5).contains(&switches.len()),
            "{name}: {} outfit switches, the shopper swiped 5 times",
            switches.len()
        );
        for e in &switches {
            assert!(
                labelled("swipe", e.t),
                "{name}: an outfit switch at {} s that is not the shopper's swipe",
                e.t
            );
        }
        let photos = of_type(&events, "photo_requested");
        assert_eq!(photos.len(), 2, "{name}: {photos:?}");
        for e in &photos {
            assert!(
                labelled("thumbs_up", e.t),
                "{name}: a photo at {} s that is not the shopper's thumbs up",
                e.t
            );
        }
    }
}

/// `shopper` (640×480) next to `other` shrunk to a third of the height on a black 640×480
/// tile, as a person standing a few metres behind and beside the shopper; the composite lasts
/// as long as the shopper's clip.
fn side_by_side(shopper: &Path, other: &Path, shopper_left: bool, out: &Path) {
    let layout = if shopper_left { "[a][b]" } else { "[b][a]" };
    let filter = format!(
        "[0:v]fps=16,scale=640:480,setsar=1[a];\
         [1:v]fps=16,scale=-2:160,pad=640:480:(ow-iw)/2:200,setsar=1[b];\
         {layout}hstack=inputs=2:shortest=1[v]"
    );
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(shopper)
        .args(["-stream_loop", "-1", "-i"])
        .arg(other)
        .args(["-filter_complex", &filter, "-map", "[v]", "-an"])
        .args(["-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p"])
        .arg(out)
        .status()
        .expect("ffmpeg is installed by scripts/setup.sh");
    assert!(status.success(), "ffmpeg composite failed");
}

/// A dim shop without sensor noise (the suite has dim *and* noisy): one-by-one's six visits
/// still start each within a second of the visitor's entry (issue #12's acceptance names
/// `gamma=1.5` on its own).
#[test]
fn one_by_one_visits_start_on_time_in_a_dim_shop() {
    let Some(clip) = footage("one-by-one-person-detection.mp4") else {
        return;
    };
    let report = eval_json(
        &clip,
        "one-by-one-person-detection.json",
        &["--set", "session.exit_after_s=2", "--augment", "gamma=1.5"],
    );
    let row = report
        .as_array()
        .and_then(|rows| rows.first())
        .unwrap_or(&report);
    let s = &row["sessions"];
    let starts: Vec<f64> = s["start_errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .collect();
    assert_eq!(s["matched"], 6, "{s}");
    assert_eq!(s["detected"], 6, "{s}");
    assert!(
        starts.iter().all(|e| e.abs() <= 1.0),
        "start errors {starts:?}"
    );
}
