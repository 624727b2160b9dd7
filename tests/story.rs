//! The whole-story demo clip (`assets/story.mp4`, replayed by `scripts/demo.sh`) tells its
//! story with the current recognizer: a session starts, the shopper swipes to another outfit,
//! a thumbs up takes a photo that reaches the store backend (relay mode, against the loopback
//! fake), and the session ends after the shopper has left. The clip is bundled, so this runs
//! on any clone.

mod common;

use common::*;
use mirrorsight::events::{Event, EventKind};
use mirrorsight_fake_backend::{FAKE_DEVICE_TOKEN, FakeServer};

/// Media time of the first event of `ty` (that also passes `keep`).
fn first(events: &[Event], ty: &str, keep: impl Fn(&Event) -> bool) -> Option<f64> {
    events
        .iter()
        .find(|e| e.type_name() == ty && keep(e))
        .map(|e| e.t)
}

#[test]
fn the_story_clip_tells_the_whole_story() {
    let fake = FakeServer::start_blocking().unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = run_ok(
        bin()
            .arg("replay")
            .arg(repo().join("assets/story.mp4"))
            .arg("--config")
            .arg(repo().join("assets/demo.toml"))
            .args(["--set", "qr.kind=\"relay\"", "--set"])
            .arg(format!("backend.url=\"{}\"", fake.url()))
            .arg("--set")
            .arg(format!("storage.dir=\"{}\"", state.path().display()))
            .env("MIRRORSIGHT_DEVICE_TOKEN", FAKE_DEVICE_TOKEN),
    );
    let events = parse_events(&out.stdout);
    let all = |_: &Event| true;
    let story = [
        ("session_started", first(&events, "session_started", all)),
        (
            "a swipe",
            first(&events, "gesture", |e| {
                matches!(
                    &e.kind,
                    EventKind::Gesture {
                        motion: Some(_),
                        ..
                    }
                )
            }),
        ),
        ("outfit_switch", first(&events, "outfit_switch", all)),
        (
            "a thumbs up",
            first(
                &events,
                "photo_requested",
                |e| matches!(&e.kind, EventKind::PhotoRequested { trigger, .. } if trigger == "thumbs_up"),
            ),
        ),
        ("photo_saved", first(&events, "photo_saved", all)),
        ("photo_uploaded", first(&events, "photo_uploaded", all)),
        ("person_left", first(&events, "person_left", all)),
        ("session_ended", first(&events, "session_ended", all)),
    ];
    let mut previous = ("the start", 0.0);
    for (what, at) in story {
        let at = at.unwrap_or_else(|| panic!("no {what} in the story: {events:#?}"));
        assert!(
            at >= previous.1,
            "{what} at {at} s comes before {} at {} s",
            previous.0,
            previous.1
        );
        previous = (what, at);
    }
    // One shopper, one session; the photo at the backend is the one the mirror spooled.
    assert_eq!(of_type(&events, "session_started").len(), 1, "{events:#?}");
    let stored = fake.handle().photos();
    assert_eq!(stored.len(), of_type(&events, "photo_saved").len());
    for e in of_type(&events, "photo_saved") {
        let EventKind::PhotoSaved {
            photo, path, scene, ..
        } = &e.kind
        else {
            unreachable!()
        };
        let at_backend = fake.handle().photo(scene, photo).expect("uploaded");
        assert_eq!(at_backend.bytes, std::fs::read(path).unwrap());
    }
}
