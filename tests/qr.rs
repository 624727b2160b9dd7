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
