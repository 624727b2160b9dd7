//! Photos taken by gesture during a replay reach the store backend, byte-identical, once.
//!
//! The backend is the loopback fake, which a replay talks to without `--live` (only backends on
//! another machine need it; see the README's command line section), with its seeded ids.

mod common;

use common::*;
use mirrorsight_fake_backend::{FAKE_DEVICE_TOKEN, FakeServer};

fn replay_with_backend(
    clip: &std::path::Path,
    backend: &str,
    state: &std::path::Path,
) -> Vec<mirrorsight::events::Event> {
    let out = run_ok(
        bin()
            .arg("replay")
            .arg(clip)
            .arg("--set")
            .arg(format!("backend.url=\"{backend}\""))
            .arg("--set")
            .arg(format!("storage.dir=\"{}\"", state.display()))
            .env("MIRRORSIGHT_DEVICE_TOKEN", FAKE_DEVICE_TOKEN),
    );
    parse_events(&out.stdout)
}

fn check_delivered(
    events: &[mirrorsight::events::Event],
    fake: &mirrorsight_fake_backend::BlockingFakeServer,
) {
    let saved = of_type(events, "photo_saved");
    assert!(!saved.is_empty(), "no photo taken: {events:?}");
    let stored = fake.handle().photos();
    assert_eq!(
        stored.len(),
        saved.len(),
        "each photo exactly once at the backend"
    );
    for e in saved {
        let mirrorsight::events::EventKind::PhotoSaved {
            photo,
            path,
            scene,
            session,
            ..
        } = &e.kind
        else {
            unreachable!()
        };
        let on_disk = std::fs::read(path).unwrap();
        let at_backend = fake
            .handle()
            .photo(scene, photo)
            .expect("photo at the backend");
        assert_eq!(at_backend.bytes, on_disk, "byte-identical");
        assert_eq!(&at_backend.session, session);
        assert!(on_disk.starts_with(&[0xff, 0xd8]), "a JPEG");
        // Only the service user may read it.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{path} is readable by others: {mode:o}");
    }
    assert_eq!(of_type(events, "photo_uploaded").len(), stored.len());
}

#[test]
fn thumbs_up_photos_arrive_at_the_backend_once_and_intact() {
    for name in [
        "mediapipe_gesture_recognizer_test_video.mp4",
        "sense_reactive_gesture_test_1.mp4",
    ] {
        let Some(clip) = footage(name) else { return };
        let fake = FakeServer::start_blocking().unwrap();
        let state = tempfile::tempdir().unwrap();
        let events = replay_with_backend(&clip, fake.url(), state.path());
        let requested = of_type(&events, "photo_requested").len();
        assert!(requested >= 1, "{name}: {events:?}");
        check_delivered(&events, &fake);
    }
}

#[test]
fn photos_wait_in_the_spool_while_the_backend_is_down_and_go_out_once_after_a_restart() {
    let Some(clip) = footage("mediapipe_gesture_recognizer_test_video.mp4") else {
        return;
    };
    let fake = FakeServer::start_blocking().unwrap();
    let state = tempfile::tempdir().unwrap();
    fake.go_down();
    let first = replay_with_backend(&clip, fake.url(), state.path());
    assert!(!of_type(&first, "photo_saved").is_empty());
    assert!(
        !of_type(&first, "photo_upload_failed").is_empty(),
        "uploads failed while down: {first:?}"
    );
    assert!(fake.handle().photos().is_empty());
    fake.come_back();
    // The next start resumes from the spool on disk and delivers the earlier photo too.
    let second = replay_with_backend(&clip, fake.url(), state.path());
    // The same seed draws the same photo ids again: those already in the spool are skipped, so
    // the second run's photos are saved rather than refused as duplicates.
    assert!(of_type(&second, "photo_refused").is_empty(), "{second:?}");
    assert!(!of_type(&second, "photo_saved").is_empty());
    let saved = of_type(&first, "photo_saved").len() + of_type(&second, "photo_saved").len();
    let stored = fake.handle().photos();
    assert_eq!(stored.len(), saved, "every photo delivered exactly once");
    let mut ids: Vec<_> = stored.iter().map(|p| p.photo.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), saved);
}
