//! Turn-around clips in a real replay: an open palm held in front of the mirror records one
//! H.264 MP4 of `clips.duration_s` (faststart, with a poster frame) into the clip spool, and a
//! SIGKILL during recording leaves no clip behind.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use mirrorsight::events::{Event, EventKind};

/// A still of a raised open hand (labels/stills.json), held for `seconds` as a 15 fps video.
fn palm_hold(dir: &Path, seconds: u32) -> Option<PathBuf> {
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

fn ffprobe(path: &str, entries: &str) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            entries,
        ])
        .args(["-of", "default=noprint_wrappers=1:nokey=1"])
        .arg(path)
        .output()
        .expect("ffprobe");
    assert!(out.status.success(), "ffprobe {path}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Offset of a top-level MP4 box.
fn box_offset(bytes: &[u8], name: &[u8; 4]) -> Option<usize> {
    let mut at = 0usize;
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().ok()?) as usize;
        if &bytes[at + 4..at + 8] == name {
            return Some(at);
        }
        let size = match size {
            1 => u64::from_be_bytes(bytes.get(at + 8..at + 16)?.try_into().ok()?) as usize,
            0 => return None,
            s => s,
        };
        at = at.checked_add(size)?;
    }
    None
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_palm_hold_records_one_h264_clip_of_the_configured_length() {
    let dir = tempfile::tempdir().unwrap();
    let Some(clip) = palm_hold(dir.path(), 14) else {
        return;
    };
    let state = dir.path().join("state");
    let out = run_ok(
        bin()
            .arg("replay")
            .arg(&clip)
            .arg("--set")
            .arg(format!("storage.dir=\"{}\"", state.display())),
    );
    let events = parse_events(&out.stdout);
    let started = of_type(&events, "clip_started");
    let saved = of_type(&events, "clip_saved");
    assert_eq!(started.len(), 1, "{events:?}");
    assert_eq!(saved.len(), 1, "{events:?}");
    let requested = of_type(&events, "clip_requested");
    assert_eq!(requested.len(), 1);
    // The countdown runs before recording.
    assert!(
        (started[0].t - requested[0].t - 3.0).abs() < 0.1,
        "{events:?}"
    );
    let EventKind::ClipSaved {
        path,
        poster,
        duration_s,
        bytes,
        ..
    } = &saved[0].kind
    else {
        unreachable!()
    };
    assert!((duration_s - 6.0).abs() <= 0.5, "{duration_s}");
    assert_eq!(ffprobe(path, "stream=codec_name"), "h264");
    let probed: f64 = ffprobe(path, "format=duration").parse().unwrap_or(f64::NAN);
    assert!((probed - 6.0).abs() <= 0.5, "ffprobe says {probed} s");
    let mp4 = std::fs::read(path).unwrap();
    assert_eq!(mp4.len() as u64, *bytes);
    let (moov, mdat) = (box_offset(&mp4, b"moov"), box_offset(&mp4, b"mdat"));
    assert!(
        matches!((moov, mdat), (Some(a), Some(b)) if a < b),
        "faststart puts moov before mdat: {moov:?} {mdat:?}"
    );
    let jpeg = std::fs::read(poster).unwrap();
    assert!(jpeg.starts_with(&[0xFF, 0xD8]), "the poster is a JPEG");
    let spool = Path::new(path).parent().unwrap();
    assert!(
        files(spool).iter().all(|f| !f.ends_with(".part")),
        "{:?}",
        files(spool)
    );
}

#[test]
fn sigkill_while_recording_leaves_no_clip() {
    let dir = tempfile::tempdir().unwrap();
    let Some(clip) = palm_hold(dir.path(), 14) else {
        return;
    };
    let state = dir.path().join("state");
    let spool = state.join("clips");
    let mut child = bin()
        .arg("replay")
        .arg(&clip)
        .arg("--realtime")
        .arg("--set")
        .arg(format!("storage.dir=\"{}\"", state.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mirrorsight");
    let stdout = child.stdout.take().expect("stdout");
    let mut started = None;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let event: Event = serde_json::from_str(&line).expect("an event line");
        if event.type_name() == "clip_started" {
            started = Some(event);
            break;
        }
        assert_ne!(event.type_name(), "clip_saved", "killed too late");
    }
    assert!(started.is_some(), "recording never started");
    // Let a second of frames reach the encoder, then kill without warning.
    std::thread::sleep(std::time::Duration::from_secs(1));
    // SAFETY-free: kill(2) through the standard library sends SIGKILL.
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let kept: Vec<String> = files(&spool)
        .into_iter()
        .filter(|f| !f.starts_with('.'))
        .collect();
    assert!(kept.is_empty(), "a killed recording left {kept:?}");

    // The next start clears what the crash left half-written.
    let Some(short) = palm_hold(dir.path(), 1) else {
        return;
    };
    run_ok(
        bin()
            .arg("replay")
            .arg(&short)
            .arg("--set")
            .arg(format!("storage.dir=\"{}\"", state.display())),
    );
    assert_eq!(files(&spool), Vec::<String>::new());
}
