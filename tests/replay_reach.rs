//! What `replay`, `eval` and `bench` may reach. With a production config (backends on another
//! machine) and no `--live` they mint nothing, upload nothing and publish nothing to the MQTT
//! broker: codes come from `qr.url_template`, photos stay in a throwaway spool, the configured
//! state directory is not touched. Loopback backends (the fake, a hub or a broker on this
//! machine: `tests/mqtt.rs` replays against its own mosquitto) are reached without `--live`,
//! under the seeded ids; `--live` draws fresh ids from the OS on every run.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use mirrorsight::events::{Event, EventKind, QrSource};
use mirrorsight_fake_backend::{FAKE_APPSECRET, FAKE_DEVICE_TOKEN, FakeServer, Route};

/// A config as a store would deploy it: codes and photos through the store's hub on another
/// machine, events to the store's MQTT broker, state under `state`.
fn production_config(dir: &Path, state: &Path, qr: &str) -> std::path::PathBuf {
    let path = dir.join("mirrorsight.toml");
    let text = format!(
        "[qr]\n{qr}\n\n[backend]\nurl = \"https://hub.shop.example\"\n\n\
         [mqtt]\nenabled = true\nurl = \"mqtts://broker.shop.example\"\nmirror = \"m1\"\n\n\
         [storage]\ndir = \"{state}\"\n\n[photos]\nspool_dir = \"{state}/spool\"\n",
        state = state.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn assert_untouched(state: &Path, stderr: &str) {
    assert!(
        !state.exists(),
        "the configured state directory was written: {:?}",
        std::fs::read_dir(state).map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
    );
    assert!(
        stderr.contains("replay without --live") && stderr.contains("backend.url"),
        "one info line says what was not contacted: {stderr}"
    );
}

#[test]
fn a_production_replay_mints_and_uploads_nothing_without_live() {
    let Some(clip) = footage("mediapipe_gesture_recognizer_test_video.mp4") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = production_config(dir.path(), &state, "kind = \"relay\"");
    let out = run_ok(
        bin()
            .arg("replay")
            .arg(&clip)
            .arg("--config")
            .arg(&config)
            .env("MIRRORSIGHT_DEVICE_TOKEN", FAKE_DEVICE_TOKEN)
            .env("MIRRORSIGHT_LOG", "info"),
    );
    let events = parse_events(&out.stdout);
    let minted = of_type(&events, "qr_minted");
    assert!(!minted.is_empty(), "{events:?}");
    for m in &minted {
        let EventKind::QrMinted {
            scene, url, source, ..
        } = &m.kind
        else {
            unreachable!()
        };
        assert_eq!(*source, QrSource::Url, "rendered locally: {m:?}");
        assert_eq!(url, &format!("https://mirror.example/s/{scene}"));
    }
    let saved = of_type(&events, "photo_saved");
    assert!(!saved.is_empty(), "the clip's thumbs up takes a photo");
    for e in saved {
        let EventKind::PhotoSaved { path, .. } = &e.kind else {
            unreachable!()
        };
        assert!(!Path::new(path).starts_with(dir.path()), "{path}");
    }
    for kind in ["qr_failed", "photo_uploaded", "photo_upload_failed"] {
        assert!(of_type(&events, kind).is_empty(), "{kind}: {events:?}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_untouched(&state, &stderr);
    // The MQTT sink was never started: it would have tried the broker and said so.
    assert!(stderr.contains("mqtt.url"), "{stderr}");
    assert!(!stderr.contains("MQTT:"), "the broker was tried: {stderr}");
}

#[test]
fn eval_and_bench_with_a_production_config_stay_offline() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = production_config(
        dir.path(),
        &state,
        "kind = \"official_account\"\n[wechat]\nappid = \"wx0123456789abcdef\"",
    );
    let labels = repo().join("assets/demo.labels.json");
    let commands: [&[&std::ffi::OsStr]; 2] = [
        &["eval".as_ref(), "--labels".as_ref(), labels.as_os_str()],
        &["bench".as_ref()],
    ];
    for command in commands {
        let out = run_ok(
            bin()
                .args(command)
                .arg(demo_clip())
                .arg("--config")
                .arg(&config)
                .env("MIRRORSIGHT_WECHAT_APPSECRET", FAKE_APPSECRET)
                .env("MIRRORSIGHT_DEVICE_TOKEN", FAKE_DEVICE_TOKEN)
                .env("MIRRORSIGHT_LOG", "info"),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("wechat.api_base"), "{command:?}: {stderr}");
        assert_untouched(&state, &stderr);
    }
}

fn ids(events: &[Event]) -> (BTreeSet<String>, BTreeSet<String>) {
    let sessions = of_type(events, "session_started")
        .iter()
        .map(|e| e.session().unwrap_or_default().to_string())
        .collect();
    let scenes = of_type(events, "qr_minted")
        .iter()
        .map(|e| match &e.kind {
            EventKind::QrMinted { scene, .. } => scene.clone(),
            _ => unreachable!(),
        })
        .collect();
    (sessions, scenes)
}

#[test]
fn loopback_backends_need_no_live_and_live_draws_fresh_ids() {
    let fake = FakeServer::start_blocking().unwrap();
    let relay = |extra: &[&str]| {
        let out = run_ok(
            bin()
                .arg("replay")
                .arg(demo_clip())
                .args(["--set", "qr.kind=\"relay\"", "--set"])
                .arg(format!("backend.url=\"{}\"", fake.url()))
                .args(extra)
                .env("MIRRORSIGHT_DEVICE_TOKEN", FAKE_DEVICE_TOKEN),
        );
        let events = parse_events(&out.stdout);
        let (sessions, scenes) = ids(&events);
        assert!(!sessions.is_empty() && !scenes.is_empty(), "{events:?}");
        // Every code shown was minted by the backend (the loopback fake), never made up.
        let asked: BTreeSet<String> = fake
            .handle()
            .requests_to(Route::Scenes)
            .iter()
            .filter_map(|r| Some(r.body_json()?["scene"].as_str()?.to_string()))
            .collect();
        assert!(scenes.is_subset(&asked), "{scenes:?} not all in {asked:?}");
        (sessions, scenes)
    };
    let seeded = relay(&[]);
    let live = relay(&["--live"]);
    let live_again = relay(&["--live"]);
    for (a, b) in [
        (&seeded, &live),
        (&live, &live_again),
        (&seeded, &live_again),
    ] {
        assert!(a.0.is_disjoint(&b.0), "sessions repeat: {a:?} {b:?}");
        assert!(a.1.is_disjoint(&b.1), "scenes repeat: {a:?} {b:?}");
    }

    // A seed means nothing to a live run: asking for both is a usage error.
    let out = bin()
        .arg("replay")
        .arg(demo_clip())
        .args(["--live", "--seed", "3"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--live") && stderr.contains("--seed"),
        "{stderr}"
    );
}
