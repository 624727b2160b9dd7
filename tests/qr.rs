//! QR minting end to end against the loopback WeChat/backend fake: the mint command, and
//! replay with a pre-minted pool that serves each session instantly. The fake is on loopback,
//! which a replay reaches without `--live` (README, command line), under its seeded ids.

mod common;

use common::*;
use mirrorsight::events::{EventKind, QrSource};
use mirrorsight_fake_backend::{FAKE_APPID, FAKE_APPSECRET, FAKE_DEVICE_TOKEN, FakeServer, Route};

fn decode_png(path: &std::path::Path) -> String {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img =
        rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[(y * w + x) * channels]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in {}", path.display());
    grids[0].decode().unwrap().1
}

fn official_account_args(url: &str) -> Vec<String> {
    [
        "qr.kind=\"official_account\"".to_string(),
        format!("wechat.appid=\"{FAKE_APPID}\""),
        format!("wechat.api_base=\"{url}\""),
        format!("wechat.mp_base=\"{url}\""),
    ]
    .into_iter()
    .flat_map(|s| ["--set".to_string(), s])
    .collect()
}

#[test]
fn mint_prints_the_code_and_renders_a_png_that_decodes_to_its_url() {
    let fake = FakeServer::start_blocking().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("code.png");
    let out = run_ok(
        bin()
            .arg("mint")
            .args(official_account_args(fake.url()))
            .args(["--scene", "scene-abc_123", "--png"])
            .arg(&png)
            .env("MIRRORSIGHT_WECHAT_APPSECRET", FAKE_APPSECRET),
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["scene"], "scene-abc_123");
    assert!(printed["ticket"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(printed["expire_seconds"], 3600);
    let url = printed["url"].as_str().unwrap();
    assert_eq!(decode_png(&png), url);
    // Exactly what WeChat documents: a temporary string scene with its lifetime always sent.
    let create = fake.handle().requests_to(Route::QrcodeCreate);
    assert_eq!(create.len(), 1);
    assert_eq!(
        create[0].body_json().unwrap(),
        serde_json::json!({"expire_seconds": 3600, "action_name": "QR_STR_SCENE", "action_info": {"scene": {"scene_str": "scene-abc_123"}}})
    );
    assert_eq!(fake.handle().count(Route::StableToken), 1);
}

#[test]
fn mint_url_kind_works_offline_and_bad_limits_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("code.png");
    let out = run_ok(
        bin()
            .args([
                "mint",
                "--scene",
                "s1",
                "--set",
                "qr.url_template=\"https://shop.example/s/{scene}\"",
                "--png",
            ])
            .arg(&png),
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["url"], "https://shop.example/s/s1");
    assert_eq!(decode_png(&png), "https://shop.example/s/s1");

    let out = bin()
        .args(["mint", "--set", "qr.expire_seconds=2592001"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "EX_CONFIG");
    assert!(String::from_utf8_lossy(&out.stderr).contains("qr.expire_seconds"));
}

#[test]
fn mint_explains_an_html_error_page_in_one_line() {
    let fake = FakeServer::start_blocking().unwrap();
    fake.handle().inject(
        Route::QrcodeCreate,
        mirrorsight_fake_backend::Fault::Html502,
        10,
    );
    let out = bin()
        .arg("mint")
        .args(official_account_args(fake.url()))
        .env("MIRRORSIGHT_WECHAT_APPSECRET", FAKE_APPSECRET)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("502"), "{stderr}");
}

#[test]
fn replay_serves_every_session_from_the_pool_at_once() {
    let fake = FakeServer::start_blocking().unwrap();
    let clip = footage("one-by-one-person-detection.mp4").unwrap_or_else(demo_clip);
    let out = run_ok(
        bin()
            .arg("replay")
            .arg(&clip)
            .args(official_account_args(fake.url()))
            .args(["--set", "session.exit_after_s=2", "--set", "qr.pool_size=3"])
            .env("MIRRORSIGHT_WECHAT_APPSECRET", FAKE_APPSECRET),
    );
    let events = parse_events(&out.stdout);
    let starts = of_type(&events, "session_started");
    let minted = of_type(&events, "qr_minted");
    assert!(!starts.is_empty());
    assert_eq!(
        minted.len(),
        starts.len(),
        "one code per session: {events:?}"
    );
    let mut scenes = std::collections::HashSet::new();
    for (s, m) in starts.iter().zip(&minted) {
        assert_eq!(s.session(), m.session());
        assert!(
            m.t - s.t < 0.005,
            "code shown {} s after the session started",
            m.t - s.t
        );
        let EventKind::QrMinted {
            scene,
            url,
            source,
            expires_at,
            ..
        } = &m.kind
        else {
            unreachable!()
        };
        assert_eq!(*source, QrSource::Pool);
        assert!(url.starts_with("http"), "{url}");
        assert!(*expires_at > 0);
        assert!(scenes.insert(scene.clone()), "scenes are never reused");
        // The code WeChat minted carries exactly this scene.
        assert!(
            fake.handle()
                .requests_to(Route::QrcodeCreate)
                .iter()
                .any(|r| r.body_str().contains(scene.as_str()))
        );
    }
}

#[test]
fn relay_mode_mints_through_the_store_backend_with_the_device_token() {
    let fake = FakeServer::start_blocking().unwrap();
    let out = run_ok(
        bin()
            .arg("mint")
            .args([
                "--scene",
                "relay-scene-1",
                "--set",
                "qr.kind=\"relay\"",
                "--set",
            ])
            .arg(format!("backend.url=\"{}\"", fake.url()))
            .env("MIRRORSIGHT_DEVICE_TOKEN", FAKE_DEVICE_TOKEN),
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["scene"], "relay-scene-1");
    let scenes = fake.handle().requests_to(Route::Scenes);
    assert_eq!(scenes.len(), 1);
    assert_eq!(
        scenes[0].header("authorization"),
        Some(format!("Bearer {FAKE_DEVICE_TOKEN}").as_str())
    );
    assert_eq!(scenes[0].body_json().unwrap()["scene"], "relay-scene-1");
}

#[test]
fn with_the_network_down_the_session_is_told_and_the_replay_still_completes() {
    let fake = FakeServer::start_blocking().unwrap();
    fake.go_down();
    let out = run_ok(
        bin()
            .arg("replay")
            .arg(demo_clip())
            .args(official_account_args(fake.url()))
            .args([
                "--set",
                "qr.pool_size=0",
                "--set",
                "qr.retry_max_s=1",
                "--set",
                "wechat.timeout_s=1",
            ])
            .env("MIRRORSIGHT_WECHAT_APPSECRET", FAKE_APPSECRET),
    );
    let events = parse_events(&out.stdout);
    let failed = of_type(&events, "qr_failed");
    assert!(
        !failed.is_empty(),
        "the overlay must learn that no code could be had: {events:?}"
    );
    assert!(of_type(&events, "qr_minted").is_empty());
    let started = of_type(&events, "session_started");
    assert_eq!(failed[0].session(), started[0].session());
    assert_eq!(events.last().unwrap().type_name(), "source_ended");
}

/// Plain http to another machine would hand the device token (and the photos after it) to
/// anyone on the network path: the config is refused at load, naming the key, before a code is
/// minted or a frame is read.
#[test]
fn plain_http_to_another_machine_is_refused_before_anything_is_minted() {
    let clip = demo_clip();
    let commands: [&[&std::ffi::OsStr]; 2] =
        [&["mint".as_ref()], &["replay".as_ref(), clip.as_os_str()]];
    for command in commands {
        let out = bin()
            .args(command)
            .args([
                "--set",
                "qr.kind=\"relay\"",
                "--set",
                "backend.url=\"http://hub.shop.example\"",
            ])
            .env("MIRRORSIGHT_DEVICE_TOKEN", FAKE_DEVICE_TOKEN)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command:?} accepted it: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "nothing minted, no events: {command:?}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("backend.url") && stderr.contains("https://"),
            "{stderr}"
        );
    }
}

fn mini_program_args(url: &str, state: &std::path::Path) -> Vec<String> {
    [
        "qr.kind=\"mini_program\"".to_string(),
        "qr.wxa_page=\"pages/photo/index\"".to_string(),
        format!("wechat.appid=\"{FAKE_APPID}\""),
        format!("wechat.api_base=\"{url}\""),
        format!("storage.dir=\"{}\"", state.display()),
    ]
    .into_iter()
    .flat_map(|s| ["--set".to_string(), s])
    .collect()
}

/// What the mirror's screen shows in a snapshot, when it shows a code.
fn shown_code(path: &std::path::Path) -> Option<String> {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img =
        rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[(y * w + x) * channels]);
    img.detect_grids()
        .first()
        .and_then(|g| g.decode().ok())
        .map(|(_, s)| s)
}

#[test]
fn mini_program_codes_are_kept_and_shown_on_the_screen() {
    let fake = FakeServer::start_blocking().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let snaps = dir.path().join("snaps");
    let out = run_ok(
        bin()
            .arg("replay")
            .arg(demo_clip())
            .args(mini_program_args(fake.url(), &state))
            .args(["--set", "qr.idle_code=\"idle-mirror-1\""])
            .args(["--display", "headless", "--snapshot-dir"])
            .arg(&snaps)
            .env("MIRRORSIGHT_WECHAT_APPSECRET", FAKE_APPSECRET),
    );
    let events = parse_events(&out.stdout);
    let started = of_type(&events, "session_started");
    let minted = of_type(&events, "qr_minted");
    assert!(!started.is_empty());
    assert_eq!(minted.len(), started.len(), "{events:?}");
    let sent = fake.handle().requests_to(Route::WxacodeUnlimit);
    let mut sessions = Vec::new();
    for m in &minted {
        let EventKind::QrMinted {
            scene, url, image, ..
        } = &m.kind
        else {
            unreachable!()
        };
        assert!(url.is_empty(), "a mini-program code has no url: {url}");
        let image = image.as_deref().expect("qr_minted carries the image");
        // Kept in the state directory, byte for byte what WeChat sent.
        assert_eq!(
            std::path::Path::new(image),
            state.join("codes").join(format!("{scene}.png"))
        );
        let bytes = std::fs::read(image).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(
            sent.iter().any(|r| {
                let body = r.body_json().unwrap();
                body["scene"] == scene.as_str() && body["page"] == "pages/photo/index"
            }),
            "getwxacodeunlimit was asked for scene {scene}"
        );
        let start = started
            .iter()
            .find(|s| s.session() == m.session())
            .unwrap()
            .t;
        let end = events
            .iter()
            .find(|e| e.type_name() == "session_ended" && e.session() == m.session())
            .map_or(f64::INFINITY, |e| e.t);
        sessions.push((m.t.max(start), end, scene.clone()));
    }
    let idle = of_type(&events, "qr_idle");
    assert_eq!(idle.len(), 1, "{events:?}");
    let EventKind::QrIdle { image, .. } = &idle[0].kind else {
        unreachable!()
    };
    assert_eq!(
        image.as_deref().map(std::path::Path::new),
        Some(state.join("codes/idle-mirror-1.png").as_path())
    );

    // The screen: each session's code while it lasts, the idle code before.
    let mut names: Vec<_> = std::fs::read_dir(&snaps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let (mut saw_session, mut saw_idle) = (false, false);
    for path in &names {
        let t: f64 = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let shown = shown_code(path);
        if let Some((_, _, scene)) = sessions.iter().find(|(a, b, _)| t >= *a && t < *b) {
            assert_eq!(shown.as_deref(), Some(scene.as_str()), "{}", path.display());
            saw_session = true;
        } else if t < sessions[0].0 - 0.5 && shown.is_some() {
            assert_eq!(
                shown.as_deref(),
                Some("idle-mirror-1"),
                "{}",
                path.display()
            );
            saw_idle = true;
        }
    }
    assert!(saw_session && saw_idle, "{names:?}");
}

#[test]
fn mini_program_errors_are_one_line_and_leave_the_screen_offline() {
    use mirrorsight_fake_backend::Fault;
    // A token refused once and WeChat busy once: retried, the code still shows.
    let fake = FakeServer::start_blocking().unwrap();
    fake.handle()
        .inject(Route::WxacodeUnlimit, Fault::Errcode(40001), 1);
    fake.handle()
        .inject(Route::WxacodeUnlimit, Fault::Errcode(-1), 1);
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(
        bin()
            .arg("replay")
            .arg(demo_clip())
            .args(mini_program_args(fake.url(), dir.path()))
            .args(["--set", "qr.pool_size=0"])
            .env("MIRRORSIGHT_WECHAT_APPSECRET", FAKE_APPSECRET),
    );
    let events = parse_events(&out.stdout);
    assert!(of_type(&events, "qr_failed").is_empty(), "{events:?}");
    assert_eq!(of_type(&events, "qr_minted").len(), 1, "{events:?}");

    // An HTML error page and the quota: the session is told why, in one line.
    for (fault, says) in [(Fault::Html502, "502"), (Fault::Errcode(45009), "45009")] {
        let fake = FakeServer::start_blocking().unwrap();
        fake.handle().inject(Route::WxacodeUnlimit, fault, 1000);
        let dir = tempfile::tempdir().unwrap();
        let out = run_ok(
            bin()
                .arg("replay")
                .arg(demo_clip())
                .args(mini_program_args(fake.url(), dir.path()))
                .args(["--set", "qr.pool_size=0", "--set", "qr.retry_max_s=1"])
                .env("MIRRORSIGHT_WECHAT_APPSECRET", FAKE_APPSECRET),
        );
        let events = parse_events(&out.stdout);
        assert!(of_type(&events, "qr_minted").is_empty(), "{events:?}");
        let failed = of_type(&events, "qr_failed");
        let Some(EventKind::QrFailed { reason, .. }) = failed.first().map(|e| &e.kind) else {
            panic!("no qr_failed for {says}: {events:?}")
        };
        assert!(reason.contains(says), "{reason}");
        assert_eq!(reason.lines().count(), 1, "{reason}");
        assert!(
            !dir.path().join("codes").exists()
                || std::fs::read_dir(dir.path().join("codes")).unwrap().count() == 0
        );
        assert_eq!(events.last().unwrap().type_name(), "source_ended");
    }
}
