//! Bad input gets one clear line on stderr and a non-zero exit, never a panic: 78
//! (EX_CONFIG) when the config is at fault, so systemd does not restart a daemon that cannot
//! work, 1 otherwise.

mod common;

use common::*;

fn fails_with_one_line(args: &[&std::ffi::OsStr], expect: &[&str]) {
    fails_with(1, args, expect);
}

/// sysexits(3) EX_CONFIG.
const EX_CONFIG: i32 = 78;

fn config_fails_with_one_line(args: &[&std::ffi::OsStr], expect: &[&str]) {
    fails_with(EX_CONFIG, args, expect);
}

fn fails_with(code: i32, args: &[&std::ffi::OsStr], expect: &[&str]) {
    let out = bin().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit code for {args:?}: {stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "exactly one line for {args:?}:\n{stderr}"
    );
    assert!(stderr.starts_with("mirrorsight: error: "), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    for needle in expect {
        assert!(
            stderr.contains(needle),
            "{args:?}: `{needle}` missing from: {stderr}"
        );
    }
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

#[test]
fn missing_truncated_and_non_video_files() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "this is not a video").unwrap();
    let empty = dir.path().join("empty.mkv");
    std::fs::write(&empty, "").unwrap();
    let truncated = dir.path().join("truncated.mp4");
    let demo = std::fs::read(demo_clip()).unwrap();
    std::fs::write(&truncated, &demo[..demo.len() / 3]).unwrap();

    fails_with_one_line(
        &[os("replay"), os("/nonexistent/clip.mp4")],
        &["/nonexistent/clip.mp4", "no such file"],
    );
    for bad in [&text, &empty] {
        fails_with_one_line(
            &[os("replay"), bad.as_os_str()],
            &["cannot decode", "ffprobe"],
        );
    }
    // A cut-off file either fails to open or plays what it has; it never panics.
    let out = bin().arg("replay").arg(&truncated).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        out.status.success() || stderr.lines().count() == 1,
        "{stderr}"
    );
}

#[test]
fn config_problems_name_the_file_or_key() {
    let dir = tempfile::tempdir().unwrap();
    let clip = demo_clip();
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[session\nexit_after_s = 2\n").unwrap();
    config_fails_with_one_line(
        &[
            os("replay"),
            clip.as_os_str(),
            os("--config"),
            broken.as_os_str(),
        ],
        &["broken.toml", "not valid TOML"],
    );
    config_fails_with_one_line(
        &[
            os("replay"),
            clip.as_os_str(),
            os("--config"),
            os("/nonexistent.toml"),
        ],
        &["/nonexistent.toml"],
    );
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "[session]\nexit_afer_s = 2\n").unwrap();
    config_fails_with_one_line(
        &[
            os("replay"),
            clip.as_os_str(),
            os("--config"),
            unknown.as_os_str(),
        ],
        &["session.exit_afer_s"],
    );
    config_fails_with_one_line(
        &[
            os("replay"),
            clip.as_os_str(),
            os("--set"),
            os("presence.min_score=2"),
        ],
        &["presence.min_score"],
    );
    config_fails_with_one_line(
        &[
            os("replay"),
            clip.as_os_str(),
            os("--set"),
            os("session.exit_after_s=soon"),
        ],
        &["session.exit_after_s"],
    );
}

#[test]
fn missing_models_or_runtime_are_explained() {
    let clip = demo_clip();
    fails_with_one_line(
        &[
            os("replay"),
            clip.as_os_str(),
            os("--set"),
            os("onnxruntime.library=\"/nonexistent/libonnxruntime.so\""),
        ],
        &["ONNX Runtime library not found", "setup.sh"],
    );
    let dir = tempfile::tempdir().unwrap();
    fails_with_one_line(
        &[
            os("replay"),
            clip.as_os_str(),
            os("--set"),
            os(&format!("models.dir=\"{}\"", dir.path().display())),
        ],
        &["models folder not found"],
    );
    // A models folder whose detector is corrupted is refused by checksum.
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    for entry in std::fs::read_dir(repo().join("models")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), models.join(entry.file_name())).unwrap();
    }
    let mut bytes = std::fs::read(models.join("pose_detection.onnx")).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(models.join("pose_detection.onnx"), bytes).unwrap();
    fails_with_one_line(
        &[
            os("replay"),
            clip.as_os_str(),
            os("--set"),
            os(&format!("models.dir=\"{}\"", models.display())),
        ],
        &["pose_detection", "sha256"],
    );
}

#[test]
fn check_names_a_missing_ffmpeg_when_clips_are_enabled() {
    // The default ffmpeg (scripts/setup.sh installs it) can encode the clips.
    let out = bin().arg("check").current_dir(repo()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l.starts_with("ffmpeg: ok (")),
        "{stdout}"
    );
    // A mirror whose $PATH has no ffmpeg: one line naming the key and the way out, exit 1.
    let empty = tempfile::tempdir().unwrap();
    let out = bin()
        .arg("check")
        .current_dir(repo())
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains("ffmpeg")).collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(
        lines[0].starts_with("ffmpeg: FAILED: clips.ffmpeg = \"ffmpeg\" is not on $PATH")
            && lines[0].contains("clips.enabled = false"),
        "{stdout}"
    );
    // With clips turned off, ffmpeg is not needed.
    let out = bin()
        .args(["check", "--set", "clips.enabled=false"])
        .current_dir(repo())
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(EX_CONFIG), "{stdout}");
    assert!(!stdout.contains("ffmpeg"), "{stdout}");
}

#[test]
fn check_reports_every_model_and_fails_on_a_bad_one() {
    // The built-in defaults name no camera, hub or screen that exists here: not ready (78), but
    // the install itself is checked and reported.
    let out = bin().arg("check").current_dir(repo()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(EX_CONFIG), "{stdout}");
    for model in [
        "pose_detection",
        "face_detection_short_range",
        "palm_detection",
        "hand_landmark",
    ] {
        assert!(stdout.contains(&format!("model {model}")), "{stdout}");
    }
    assert!(stdout.contains("onnxruntime: ok"), "{stdout}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
    // A broken install is not a config problem: 1.
    let out = bin()
        .args(["check", "--set", "onnxruntime.library=\"/nonexistent.so\""])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("onnxruntime: FAILED"));
}
