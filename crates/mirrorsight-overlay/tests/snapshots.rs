//! The headless sink as `mirrorsight replay --display headless --snapshot-dir DIR` uses it.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use mirrorsight_contract::events::{
    Event, EventKind, GestureKind, OutfitDirection, Side, SwipeMotion,
};
use mirrorsight_overlay::{Dim, Output, Overlay, OverlayConfig, QrPosition, snapshot_name};

fn cfg() -> OverlayConfig {
    OverlayConfig {
        width: Dim::Px(1280),
        height: Dim::Px(720),
        qr_position: QrPosition::TopRight,
        ..Default::default()
    }
}

fn snapshots(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("snapshot dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    files
}

fn names(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .map(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect()
}

/// Frames at 30 fps from `from` to `to`, as the replay loop calls `advance`.
fn frames(o: &mut Overlay, from: f64, to: f64) {
    let mut t = from;
    while t <= to {
        o.advance(t);
        t += 1.0 / 30.0;
    }
}

#[test]
fn a_session_replayed_headless_gives_one_snapshot_per_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let photos = tempfile::tempdir().expect("tempdir");
    let photo = photos.path().join("p1.jpg");
    write_jpeg(&photo, 480, 640, 0x3070D0);

    let snap_dir = dir.path().join("snaps");
    let mut o = Overlay::start(
        &cfg(),
        Output::Headless {
            snapshot_dir: Some(snap_dir.clone()),
        },
    )
    .expect("start");
    let s = "sess-1";
    frames(&mut o, 0.0, 2.0);
    o.apply(&started(2.0, s));
    o.apply(&minted(2.003, s, URL));
    frames(&mut o, 2.01, 4.0);
    o.apply(&Event::new(
        4.0,
        EventKind::Gesture {
            session: s.into(),
            gesture: GestureKind::Swipe,
            motion: Some(SwipeMotion::ImageLeftToRight),
            direction: Some(Side::Right),
            hand: Side::Right,
            confidence: 0.9,
        },
    ));
    o.apply(&switch(4.0, s, OutfitDirection::Next));
    frames(&mut o, 4.01, 6.0);
    o.apply(&photo_requested(6.0, s));
    // Events that do not change the picture.
    o.apply(&Event::new(
        6.5,
        EventKind::PersonLeft { session: s.into() },
    ));
    o.apply(&Event::new(
        6.6,
        EventKind::PersonReturned { session: s.into() },
    ));
    frames(&mut o, 6.01, 9.5);
    o.apply(&photo_saved(9.5, s, "p1", &photo));
    o.apply(&Event::new(
        10.0,
        EventKind::PhotoUploaded {
            session: s.into(),
            scene: "scene".into(),
            photo: "p1".into(),
        },
    ));
    frames(&mut o, 9.51, 15.0);
    o.apply(&ended(15.0, s));
    frames(&mut o, 15.01, 17.0);
    assert!(o.sync(Duration::from_secs(30)), "drawing thread keeps up");
    let before_shutdown = snapshots(&snap_dir).len();
    let stats = o.shutdown().expect("clean shutdown");

    let files = snapshots(&snap_dir);
    assert_eq!(
        files.len(),
        before_shutdown,
        "shutdown had nothing left to write"
    );
    assert_eq!(
        names(&files),
        [
            "000000.000.png", // idle
            "000002.003.png", // QR
            "000004.000.png", // arrow
            "000004.800.png", // arrow gone
            "000006.000.png", // check + 3
            "000006.800.png", // check gone
            "000007.000.png", // 2
            "000008.000.png", // 1
            "000009.000.png", // flash
            "000009.200.png", // flash over
            "000009.500.png", // thumbnail + check
            "000010.300.png", // check gone
            "000015.000.png", // session over: black
        ]
    );
    assert_eq!(stats.snapshots_written as usize, files.len());
    assert_eq!(stats.scenes_skipped, 0, "headless keeps every change");

    let shots: Vec<_> = files.iter().map(|f| read_png_file(f)).collect();
    for (i, pair) in shots.windows(2).enumerate() {
        assert_ne!(
            pair[0],
            pair[1],
            "{} repeats the picture of the one before",
            names(&files)[i + 1]
        );
    }
    assert!(shots[0].is_black(), "idle is black");
    assert!(
        shots.last().is_some_and(|s| s.is_black()),
        "black after session_ended"
    );
    assert!(
        shots[8].pixels.iter().all(|&p| p == 0xFFFFFF),
        "flash frame is white"
    );
    for (i, shot) in shots.iter().enumerate().take(shots.len() - 1).skip(1) {
        if i != 8 {
            assert_eq!(
                decode_qr(shot),
                vec![URL.to_owned()],
                "{} shows the session's QR",
                names(&files)[i]
            );
        }
    }
    // The QR-only frame: nothing lit outside the card and caption, which sit top right.
    let qr_only = &shots[1];
    let lit = lit_bounds(qr_only).expect("drawn");
    assert!(lit.x > 640 && lit.y < 100, "top right: {lit:?}");
    let bright_outside = (0..qr_only.height)
        .flat_map(|y| (0..qr_only.width).map(move |x| (x, y)))
        .filter(|&(x, y)| !lit.contains(x as i32, y as i32) && qr_only.pixel(x, y) != 0)
        .count();
    assert_eq!(bright_outside, 0);
    // Card plus caption only: the lit box is barely wider than the card and much shorter than the screen.
    assert!(lit.h < 720 - 100 && lit.w < 700, "{lit:?}");
}

#[test]
fn no_snapshot_without_a_change_and_the_last_state_is_flushed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = Overlay::start(
        &cfg(),
        Output::Headless {
            snapshot_dir: Some(dir.path().to_path_buf()),
        },
    )
    .expect("start");
    frames(&mut o, 0.0, 3.0);
    assert!(o.sync(Duration::from_secs(30)));
    assert_eq!(
        names(&snapshots(dir.path())),
        ["000000.000.png"],
        "idle frames write one snapshot"
    );
    o.apply(&started(3.0, "s"));
    assert!(o.sync(Duration::from_secs(30)));
    assert_eq!(
        snapshots(dir.path()).len(),
        1,
        "a session without a code yet is still black"
    );
    o.apply(&minted(3.5, "s", URL));
    // No sync: shutdown must flush it.
    let stats = o.shutdown().expect("shutdown");
    let files = snapshots(dir.path());
    assert_eq!(names(&files), ["000000.000.png", "000003.500.png"]);
    assert_eq!(decode_qr(&read_png_file(&files[1])), vec![URL.to_owned()]);
    assert_eq!(stats.snapshots_written, 2);
    assert!(stats.frames_drawn >= 2);
}

#[test]
fn send_never_waits_for_drawing() {
    // Thousands of changes published back to back return at once, whatever the drawing
    // thread is doing; when the queue is full the oldest go and the newest survives.
    let dir = tempfile::tempdir().expect("tempdir");
    let small = OverlayConfig {
        width: Dim::Px(320),
        height: Dim::Px(240),
        qr_module_px: 3,
        ..cfg()
    };
    let mut o = Overlay::start(
        &small,
        Output::Headless {
            snapshot_dir: Some(dir.path().to_path_buf()),
        },
    )
    .expect("start");
    o.apply(&started(0.0, "s"));
    let n = 5000;
    let t0 = std::time::Instant::now();
    for i in 0..n {
        o.apply(&minted(1.0 + i as f64, "s", &format!("{URL}/{i}")));
    }
    let elapsed = t0.elapsed();
    assert!(
        elapsed < Duration::from_secs(2),
        "publishing took {elapsed:?}"
    );
    let stats = o.shutdown().expect("shutdown");
    assert_eq!(
        stats.scenes_sent,
        n + 1,
        "idle is the first scene; the session without a code looks the same"
    );
    assert!(
        stats.scenes_skipped > 0,
        "the bounded queue dropped the oldest"
    );
    assert_eq!(stats.frames_drawn + stats.scenes_skipped, stats.scenes_sent);
    let files = snapshots(dir.path());
    let last = files.last().expect("snapshots");
    assert_eq!(
        last.file_name().map(|n| n.to_string_lossy().into_owned()),
        Some(snapshot_name(n as f64))
    );
    assert_eq!(
        decode_qr(&read_png_file(last)),
        vec![format!("{URL}/{}", n - 1)]
    );
}

#[test]
fn none_output_tracks_state_without_drawing() {
    let mut o = Overlay::start(&cfg(), Output::None).expect("start");
    o.apply(&started(0.0, "s"));
    o.apply(&minted(0.1, "s", URL));
    assert_eq!(o.model().session(), Some("s"));
    assert!(o.window_id().is_none());
    assert!(o.sync(Duration::from_millis(1)));
    assert_eq!(o.shutdown().expect("shutdown").frames_drawn, 0);
}

#[test]
fn an_unwritable_snapshot_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").expect("write");
    let err = Overlay::start(
        &cfg(),
        Output::Headless {
            snapshot_dir: Some(file.join("sub")),
        },
    )
    .err()
    .expect("fails");
    assert!(err.to_string().contains("snapshot"), "{err}");
}

#[test]
fn invalid_config_is_rejected_at_start() {
    let bad = OverlayConfig {
        qr_module_px: 0,
        ..cfg()
    };
    let err = Overlay::start(&bad, Output::None).err().expect("fails");
    assert!(err.to_string().contains("overlay.qr_module_px"), "{err}");
}
