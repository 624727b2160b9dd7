//! The compare view in a real replay: a clip composed from the shared footage (two thumbs-ups,
//! later swipes, an idle pause, more swipes) is replayed headless; the snapshots, decoded from
//! their PNGs, show the right photo at the right index, the view closes after
//! `overlay.compare_idle_s` without a gesture and when the session ends.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use mirrorsight::events::{CompareCloseReason, Event, EventKind};
use mirrorsight_overlay::{
    Font, Framebuffer, OverlayConfig, OverlayModel, Renderer, Scene, snapshot_name,
};

const IDLE_S: f64 = 2.0;
const FPS: f64 = 16.0;

/// The sense clip (16 fps) cut and glued: hold, thumbs up (photo 1), still while the countdown
/// runs, thumbs up (photo 2), still, three swipes, a still pause longer than the idle time,
/// two more swipes, end (the session ends with the clip).
fn compose(out: &Path) -> Option<PathBuf> {
    let Some(sense) = footage("sense_reactive_gesture_test_1.mp4") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "under CI=true the shared footage must be there"
        );
        return None;
    };
    let clip = out.join("compare.mp4");
    let graph = "\
        [0:v]trim=6.2:7.4,setpts=PTS-STARTPTS,tpad=start_duration=1.5:start_mode=clone:stop_duration=3.5:stop_mode=clone[a];\
        [0:v]trim=8.4:9.3,setpts=PTS-STARTPTS,tpad=stop_duration=3.5:stop_mode=clone[b];\
        [0:v]trim=0.3:3.7,setpts=PTS-STARTPTS,tpad=stop_duration=3:stop_mode=clone[c];\
        [0:v]trim=4.1:6.1,setpts=PTS-STARTPTS[d];\
        [a][b][c][d]concat=n=4:v=1:a=0,setpts=N/(16*TB)[out]";
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(&sense)
        .args(["-filter_complex", graph, "-map", "[out]"])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        ])
        .arg(&clip)
        .status()
        .expect("ffmpeg (scripts/setup.sh installs it)");
    assert!(status.success(), "ffmpeg could not compose the clip");
    Some(clip)
}

fn shown(e: &Event) -> Option<(&str, u32, u32)> {
    match &e.kind {
        EventKind::CompareShown {
            photo,
            index,
            count,
            ..
        } => Some((photo.as_str(), *index, *count)),
        _ => None,
    }
}

fn read_png(path: &Path) -> Framebuffer {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut dec = png::Decoder::new(std::io::BufReader::new(file));
    dec.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = dec.read_info().expect("PNG header");
    let mut buf = vec![0u8; reader.output_buffer_size().expect("PNG size")];
    let info = reader.next_frame(&mut buf).expect("PNG data");
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = info.color_type.samples();
    let mut fb = Framebuffer::new(w, h);
    for i in 0..w * h {
        let p = &buf[i * channels..(i + 1) * channels];
        fb.pixels[i] = (p[0] as u32) << 16 | (p[1] as u32) << 8 | p[2] as u32;
    }
    fb
}

/// Mean absolute difference per channel inside `r`.
fn mean_diff(a: &Framebuffer, b: &Framebuffer, r: mirrorsight_overlay::Rect) -> f64 {
    let mut sum = 0u64;
    let mut n = 0u64;
    for y in r.y..r.bottom() {
        for x in r.x..r.right() {
            let (p, q) = (
                a.pixel(x as usize, y as usize),
                b.pixel(x as usize, y as usize),
            );
            for s in [16, 8, 0] {
                sum += (((p >> s) & 0xFF) as i64 - ((q >> s) & 0xFF) as i64).unsigned_abs();
            }
            n += 3;
        }
    }
    sum as f64 / n.max(1) as f64
}

/// The scene the stream describes at `t` (every event up to and including `t`).
fn scene_at(events: &[Event], t: f64, cfg: &OverlayConfig) -> Scene {
    let mut model = OverlayModel::new(cfg);
    for e in events.iter().filter(|e| e.t <= t + 1e-9) {
        model.apply(e);
    }
    model.advance(t);
    model.scene()
}

#[test]
fn compare_view_in_a_replay_shows_the_right_photo_and_closes_when_idle_and_at_session_end() {
    let dir = tempfile::tempdir().unwrap();
    let Some(clip) = compose(dir.path()) else {
        return;
    };
    let snaps = dir.path().join("snaps");
    let state = dir.path().join("state");
    let out = run_ok(
        bin()
            .arg("replay")
            .arg(&clip)
            .args(["--display", "headless", "--snapshot-dir"])
            .arg(&snaps)
            .arg("--set")
            .arg(format!("overlay.compare_idle_s={IDLE_S}"))
            .arg("--set")
            .arg(format!("storage.dir=\"{}\"", state.display())),
    );
    let events = parse_events(&out.stdout);
    let photos: Vec<(String, String)> = of_type(&events, "photo_saved")
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PhotoSaved { photo, path, .. } => Some((photo.clone(), path.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(photos.len(), 2, "two thumbs-ups, two photos: {events:?}");

    // The right photo at the right index, every time.
    let shows: Vec<&Event> = events.iter().filter(|e| shown(e).is_some()).collect();
    assert!(shows.len() >= 4, "swipes open and step the view: {shows:?}");
    for e in &shows {
        let (photo, index, count) = shown(e).unwrap();
        assert_eq!(count, 2, "{e:?}");
        assert_eq!(photo, photos[index as usize - 1].0, "{e:?}");
    }
    // The first swipe after the photos opens on the newest.
    assert_eq!(shown(shows[0]).map(|s| s.1), Some(2));
    let first_switch = of_type(&events, "outfit_switch")[0].t;
    assert!(
        first_switch
            > events
                .iter()
                .rfind(|e| e.type_name() == "photo_saved")
                .unwrap()
                .t,
        "the swipes come after the photos"
    );

    // Closed after the idle time, counted from the last gesture before it.
    let closes: Vec<(f64, CompareCloseReason)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::CompareClosed { reason, .. } => Some((e.t, *reason)),
            _ => None,
        })
        .collect();
    let idle = closes
        .iter()
        .find(|(_, r)| *r == CompareCloseReason::Idle)
        .unwrap_or_else(|| panic!("no idle close: {closes:?}"))
        .0;
    let last_gesture = events
        .iter()
        .filter(|e| e.type_name() == "gesture" && e.t <= idle)
        .map(|e| e.t)
        .fold(f64::NAN, f64::max);
    let waited = idle - last_gesture;
    assert!(
        (IDLE_S - 1e-6..=IDLE_S + 2.0 / FPS).contains(&waited),
        "closed {waited:.3} s after the last gesture"
    );
    // Reopened by the later swipes, and closed when the session ended.
    let ended = of_type(&events, "session_ended")[0].t;
    assert!(
        shows.iter().any(|e| e.t > idle),
        "later swipes reopen it: {shows:?}"
    );
    assert_eq!(
        closes.last().copied(),
        Some((ended, CompareCloseReason::SessionEnded)),
        "{closes:?}"
    );

    // The snapshots, decoded: the picture the stream describes, with that photo in the view.
    let cfg = OverlayConfig::default();
    let font = Font::for_config(&cfg).expect("a CJK font (scripts/setup.sh)");
    let (w, h) = mirrorsight_overlay::HEADLESS_AUTO_SIZE;
    let mut renderer = Renderer::new(&cfg, font, w, h);
    let mut checked = 0;
    for e in &shows {
        let png = snaps.join(snapshot_name(e.t));
        if !png.is_file() {
            continue; // a later picture at the same millisecond replaced it
        }
        let scene = scene_at(&events, e.t, &cfg);
        let Some(view) = scene.compare.clone() else {
            continue;
        };
        let (photo, index, _) = shown(e).unwrap();
        assert_eq!((&*view.photo.photo, view.index), (photo, index));
        let got = read_png(&png);
        assert_eq!((got.width, got.height), (w as usize, h as usize));
        let expected = renderer.render(&scene).clone();
        let rect = renderer.layout().compare.expect("the view is drawn");
        assert!(rect.h as f64 >= 0.4 * h as f64, "{rect:?}");
        assert!(
            got.pixels == expected.pixels,
            "{}: not the picture of {e:?}",
            png.display()
        );
        // The other photo in the same place would look different.
        let other = &photos[2 - index as usize];
        let mut swapped = scene.clone();
        if let Some(v) = swapped.compare.as_mut() {
            v.photo.photo = other.0.as_str().into();
            v.photo.path = other.1.as_str().into();
        }
        let wrong = renderer.render(&swapped).clone();
        let d = mean_diff(&got, &wrong, rect);
        assert!(
            d > 1.0,
            "{}: the two photos are told apart ({d:.2})",
            png.display()
        );
        checked += 1;
    }
    assert!(checked >= 2, "snapshots of the view: {checked}");

    // After the idle close and after the session, no view is drawn.
    for t in [idle, ended] {
        let png = snaps.join(snapshot_name(t));
        assert!(png.is_file(), "a snapshot at {t}");
        let scene = scene_at(&events, t, &cfg);
        assert_eq!(scene.compare, None);
        let got = read_png(&png);
        let expected = renderer.render(&scene).clone();
        assert!(got.pixels == expected.pixels, "{}", png.display());
        if t == ended {
            assert!(
                got.pixels.iter().all(|&p| p == 0),
                "black after the session"
            );
        }
    }
}
