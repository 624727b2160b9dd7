//! Helpers shared by the integration tests: run the real binary, read the real footage.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mirrorsight::events::Event;

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mirrorsight"))
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/footage/<name>`, or `None` (with a skip line) when the footage is absent, so a
/// fresh clone elsewhere skips these tests cleanly; under `CI=true` a missing clip fails.
pub fn footage(name: &str) -> Option<PathBuf> {
    let path = repo().join("../shared/footage").join(name);
    mirrorsight_testkit::can_run(
        name,
        path.is_file(),
        &format!(
            "{} not found (the shared footage is not next to this clone)",
            path.display()
        ),
    )
    .then_some(path)
}

pub fn labels(name: &str) -> Option<serde_json::Value> {
    let path = repo().join("../shared/footage/labels").join(name);
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn demo_clip() -> PathBuf {
    repo().join("assets/demo.mp4")
}

/// Runs the binary and insists it succeeded.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn mirrorsight");
    assert!(
        out.status.success(),
        "mirrorsight failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn parse_events(stdout: &[u8]) -> Vec<Event> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not an event line ({e}): {l}")))
        .collect()
}

/// Replays a clip with extra arguments and returns the parsed event stream.
pub fn replay(clip: &Path, args: &[&str]) -> Vec<Event> {
    let out = run_ok(bin().arg("replay").arg(clip).args(args));
    parse_events(&out.stdout)
}

pub fn of_type<'a>(events: &'a [Event], ty: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.type_name() == ty).collect()
}

/// Runs `mirrorsight eval <clip> --labels <shared labels> --json` and returns the report.
pub fn eval_json(clip: &Path, labels_name: &str, args: &[&str]) -> serde_json::Value {
    let labels = repo().join("../shared/footage/labels").join(labels_name);
    let out = run_ok(
        bin()
            .arg("eval")
            .arg(clip)
            .arg("--labels")
            .arg(&labels)
            .args(args)
            .arg("--json"),
    );
    serde_json::from_slice(&out.stdout).expect("eval prints JSON")
}

/// A still of a raised open hand (labels/stills.json), held for `seconds` as a 15 fps video.
pub fn palm_hold(dir: &Path, seconds: u32) -> Option<PathBuf> {
    // Under CI=true missing footage fails the test (see `common::footage`).
    let still = footage("tfjs_three_people.jpg")?;
    let clip = dir.join(format!("palm-{seconds}.mp4"));
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-loop", "1", "-framerate", "15", "-i"])
        .arg(&still)
        .args(["-t", &seconds.to_string()])
        .args(["-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2"])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        ])
        .arg(&clip)
        .status()
        .expect("ffmpeg (scripts/setup.sh installs it)");
    assert!(status.success(), "ffmpeg could not make the clip");
    Some(clip)
}
