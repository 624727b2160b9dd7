//! Turn-around clips in a real replay: an open palm held in front of the mirror records one
//! H.264 MP4 of `clips.duration_s` (faststart, with a poster frame) into the clip spool, the
//! store backend (the loopback fake) gets it byte-identical with its poster, and a SIGKILL
//! during recording leaves no clip behind, in the spool or at the backend.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use mirrorsight::events::{Event, EventKind};
use mirrorsight_fake_backend::{FAKE_DEVICE_TOKEN, FakeServer};

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
fn the_clip_reaches_the_backend_byte_identical_with_its_poster() {
    let dir = tempfile::tempdir().unwrap();
    let Some(clip) = palm_hold(dir.path(), 14) else {
        return;
    };
    let fake = FakeServer::start_blocking().unwrap();
    let state = dir.path().join("state");
    let out = run_ok(
        bin()
            .arg("replay")
            .arg(&clip)
            .arg("--set")
            .arg(format!("backend.url=\"{}\"", fake.url()))
            .arg("--set")
            .arg(format!("storage.dir=\"{}\"", state.display()))
            .env("MIRRORSIGHT_DEVICE_TOKEN", FAKE_DEVICE_TOKEN),
    );
    let events = parse_events(&out.stdout);
    let saved = of_type(&events, "clip_saved");
    assert_eq!(saved.len(), 1, "{events:?}");
    let EventKind::ClipSaved {
        clip,
        scene,
        session,
        path,
        poster,
        ..
    } = &saved[0].kind
    else {
        unreachable!()
    };
    let uploaded = of_type(&events, "clip_uploaded");
    assert_eq!(uploaded.len(), 1, "{events:?}");
    assert!(
        matches!(&uploaded[0].kind, EventKind::ClipUploaded { clip: c, scene: s, .. } if c == clip && s == scene)
    );
    assert!(of_type(&events, "clip_upload_failed").is_empty());
    let stored = fake.handle().clips();
    assert_eq!(stored.len(), 1, "the clip exactly once at the backend");
    let at_backend = &stored[0];
    assert_eq!(
        (&at_backend.clip, &at_backend.scene, &at_backend.session),
        (clip, scene, session)
    );
    assert_eq!(at_backend.trigger, "open_palm_hold");
    assert_eq!(
        at_backend.bytes,
        std::fs::read(path).unwrap(),
        "byte-identical"
    );
    assert_eq!(
        at_backend.poster.as_deref(),
        Some(std::fs::read(poster).unwrap().as_slice()),
        "the poster, byte-identical"
    );
    // Only the service user may read the clip spool.
    use std::os::unix::fs::PermissionsExt;
    for file in [path.as_str(), poster.as_str()] {
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{file} is readable by others: {mode:o}");
    }

    // A second run over the same spool sends nothing again: the record says uploaded.
    let again = run_ok(
        bin()
            .arg("replay")
            .arg(palm_hold(dir.path(), 1).unwrap())
            .arg("--set")
            .arg(format!("backend.url=\"{}\"", fake.url()))
            .arg("--set")
            .arg(format!("storage.dir=\"{}\"", state.display()))
            .env("MIRRORSIGHT_DEVICE_TOKEN", FAKE_DEVICE_TOKEN),
    );
    assert!(of_type(&parse_events(&again.stdout), "clip_uploaded").is_empty());
    assert_eq!(fake.handle().clips().len(), 1);
}

#[test]
fn sigkill_while_recording_leaves_no_clip() {
    let dir = tempfile::tempdir().unwrap();
    // Replay at full speed, never dropping a frame, with a 30 s recording: the kill lands
    // mid-recording however fast or loaded the machine is (450 frames to encode), where a
    // paced --realtime replay on a loaded machine could drop the frames the hold needs.
    let Some(clip) = palm_hold(dir.path(), 40) else {
        return;
    };
    let fake = FakeServer::start_blocking().unwrap();
    let state = dir.path().join("state");
    let spool = state.join("clips");
    let log = dir.path().join("stderr.log");
    let mut child = bin()
        .arg("replay")
        .arg(&clip)
        .arg("--set")
        .arg("clips.duration_s=30")
        .arg("--set")
        .arg(format!("backend.url=\"{}\"", fake.url()))
        .env("MIRRORSIGHT_DEVICE_TOKEN", FAKE_DEVICE_TOKEN)
        .arg("--set")
        .arg(format!("storage.dir=\"{}\"", state.display()))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("stderr log"))
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
    assert!(
        started.is_some(),
        "recording never started; stderr: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
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
    assert!(fake.handle().clips().is_empty(), "nothing at the backend");

    // The next start clears what the crash left half-written.
    let Some(short) = palm_hold(dir.path(), 1) else {
        return;
    };
    run_ok(
        bin()
            .arg("replay")
            .arg(&short)
            .arg("--set")
            .arg(format!("backend.url=\"{}\"", fake.url()))
            .arg("--set")
            .arg(format!("storage.dir=\"{}\"", state.display()))
            .env("MIRRORSIGHT_DEVICE_TOKEN", FAKE_DEVICE_TOKEN),
    );
    assert_eq!(files(&spool), Vec::<String>::new());
    assert!(fake.handle().clips().is_empty(), "nothing at the backend");
}
