//! The shopper's gallery in a real browser: a hub on loopback (in front of the fake WeChat), a
//! mirror uploads three real JPEGs over the contract, a signed scan gets the gallery link, and
//! headless Chromium opens it at phone width. The DOM (`--dump-dom`) must list exactly those
//! photos with their download links, in Chinese and English; the screenshot (`--screenshot`)
//! must show each photo's colour, full width and in order, so a broken image fails the test.
//! A wrong key and expired photos must show their notice and no photo.
//!
//! Needs `/usr/bin/chromium` (or `chromium` on `PATH`; `scripts/setup-test.sh` installs it).
//! Without it the test prints a skip line and passes, except under `CI=true`, where it fails.
//! `MIRRORSIGHT_GALLERY_SHOTS=<dir>` keeps the screenshots it takes.
//!
//! `docs/screens/gallery.png` is made by the ignored test in this file, from frames of
//! `assets/demo.mp4` (needs `ffmpeg`, and ImageMagick's `convert` to shrink the PNG):
//!
//! ```sh
//! cargo test --release -p mirrorsight-hub --test gallery_browser -- --ignored docs_screenshot
//! ```

mod support {
    pub mod hub;
}

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mirrorsight_hub::sweep_expired;
use reqwest::StatusCode;
use support::hub::{self, LocalHub, img_srcs, tags};

const CALLBACK_TOKEN: &str = "callbackTokenAAAAA1234";
const MIRROR: &str = "device-token-mirror-1-xxxxxxxxxxxx";
const SCENE: &str = "gB7x_Zq8R0aUe-1mVbN4wA";
const SESSION: &str = "gB7x_Zq8R0aUe-1mVbN4wA";

/// Phone width in CSS pixels (an iPhone 12–15); screenshots are taken at device scale 1.
const PHONE_W: u32 = 390;
const PHONE_H: u32 = 844;
/// Tall enough that all three test photos are in the viewport at once.
const TALL_H: u32 = 2000;
/// Upper bound for one Chromium run; a hung browser is killed and the test fails.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(25);

// ---------------------------------------------------------------------------------------------
// Chromium

/// `/usr/bin/chromium`, else `chromium` on `PATH`.
fn find_chromium() -> Option<PathBuf> {
    let fixed = Path::new("/usr/bin/chromium");
    if fixed.is_file() {
        return Some(fixed.to_path_buf());
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
}

/// Chromium, or `None` after a skip line when it is missing; under `CI=true` a missing browser
/// fails the test instead, so CI cannot pass without having looked at the page.
fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(bin) = find_chromium() {
        return Some(bin);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: CI=true but Chromium is not installed (/usr/bin/chromium or chromium on PATH); \
         scripts/setup-test.sh installs it"
    );
    println!("SKIP {test}: Chromium not found (/usr/bin/chromium or chromium on PATH)");
    None
}

#[derive(Clone, Copy)]
enum Capture {
    /// `--dump-dom`: the serialized DOM after load.
    Dom,
    /// `--screenshot`: a PNG of the viewport, `PHONE_W` wide and this tall.
    Screenshot { height: u32 },
}

/// Loads `url` in a fresh headless Chromium (its own profile in a temp dir) and returns the DOM
/// or the PNG. Virtual time lets every image load before the capture; the run is bounded by
/// `BROWSER_TIMEOUT`, after which the browser's whole process group is killed.
fn browse(bin: &Path, url: &str, capture: Capture) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("shot.png");
    let height = match capture {
        Capture::Dom => PHONE_H,
        Capture::Screenshot { height } => height,
    };
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--mute-audio",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--lang=zh-CN",
        "--virtual-time-budget=5000",
    ])
    .arg(format!(
        "--user-data-dir={}",
        dir.path().join("profile").display()
    ))
    .arg(format!("--window-size={PHONE_W},{height}"));
    match capture {
        Capture::Dom => cmd.arg("--dump-dom"),
        Capture::Screenshot { .. } => cmd.arg(format!("--screenshot={}", shot.display())),
    };
    cmd.arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap());
    // Its own process group, so a hung browser goes with its renderer and GPU children.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().expect("start chromium");
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
    let tail: String = stderr
        .lines()
        .rev()
        .take(15)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    match status {
        None => {
            panic!("chromium did not finish within {BROWSER_TIMEOUT:?} on {url}; stderr:\n{tail}")
        }
        Some(s) if !s.success() => panic!("chromium failed ({s}) on {url}; stderr:\n{tail}"),
        Some(_) => {}
    }
    let out = match capture {
        Capture::Dom => std::fs::read(dir.path().join("stdout")).unwrap(),
        Capture::Screenshot { .. } => std::fs::read(&shot)
            .unwrap_or_else(|e| panic!("no screenshot from chromium ({e}); stderr:\n{tail}")),
    };
    assert!(
        !out.is_empty(),
        "chromium produced nothing for {url}; stderr:\n{tail}"
    );
    out
}

/// Both captures of one page, the two browsers running at once.
/// With `MIRRORSIGHT_GALLERY_SHOTS=<dir>` the screenshot is also saved there as `<name>.png`.
async fn dom_and_screenshot(bin: &Path, url: &str, height: u32, name: &str) -> (String, Rgb) {
    let (b1, u1) = (bin.to_path_buf(), url.to_string());
    let (b2, u2) = (bin.to_path_buf(), url.to_string());
    let dom = tokio::task::spawn_blocking(move || browse(&b1, &u1, Capture::Dom));
    let shot =
        tokio::task::spawn_blocking(move || browse(&b2, &u2, Capture::Screenshot { height }));
    let (dom, shot) = tokio::join!(dom, shot);
    let shot = shot.unwrap();
    if let Some(dir) = std::env::var_os("MIRRORSIGHT_GALLERY_SHOTS") {
        let path = Path::new(&dir).join(format!("{name}.png"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, &shot).unwrap();
        println!("saved {}", path.display());
    }
    (
        String::from_utf8(dom.unwrap()).unwrap(),
        Rgb::decode_png(&shot),
    )
}

// ---------------------------------------------------------------------------------------------
// Pixels

/// An RGB screenshot.
struct Rgb {
    width: usize,
    height: usize,
    px: Vec<[u8; 3]>,
}

/// Where pixels near one colour are on a screenshot.
#[derive(Debug, Clone, Copy)]
struct Found {
    count: usize,
    x0: usize,
    x1: usize,
    y0: usize,
    y1: usize,
}

impl Rgb {
    fn decode_png(bytes: &[u8]) -> Self {
        let mut decoder = png::Decoder::new(Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let channels = info.color_type.samples();
        let (width, height) = (info.width as usize, info.height as usize);
        let px = (0..width * height)
            .map(|i| {
                let p = &buf[i * channels..];
                if channels >= 3 {
                    [p[0], p[1], p[2]]
                } else {
                    [p[0]; 3]
                }
            })
            .collect();
        Rgb { width, height, px }
    }

    /// Pixels within 40 of `colour` in every channel.
    fn find(&self, colour: [u8; 3]) -> Found {
        let mut f = Found {
            count: 0,
            x0: usize::MAX,
            x1: 0,
            y0: usize::MAX,
            y1: 0,
        };
        for (i, p) in self.px.iter().enumerate() {
            if p.iter().zip(colour).all(|(&a, b)| a.abs_diff(b) <= 40) {
                let (x, y) = (i % self.width, i / self.width);
                f.count += 1;
                f.x0 = f.x0.min(x);
                f.x1 = f.x1.max(x);
                f.y0 = f.y0.min(y);
                f.y1 = f.y1.max(y);
            }
        }
        f
    }

    /// Pixels dark enough to be text.
    fn dark(&self) -> usize {
        self.px
            .iter()
            .filter(|p| p.iter().all(|&c| c < 110))
            .count()
    }
}

// ---------------------------------------------------------------------------------------------
// The hub and the mirror

/// The hub on SQLite, in front of the fake WeChat, with the mirror's session below.
type Env = LocalHub;

async fn start() -> Env {
    let devices = [("mirror-1", "shop-1", MIRROR)];
    LocalHub::start(hub::fake_wechat_secrets(CALLBACK_TOKEN), &devices, |_| {}).await
}

impl Env {
    /// The mirror mints the scene, uploads `photos` (id, JPEG) with the contract headers, and
    /// a shopper scans: the gallery link of the `news` reply.
    async fn session_with(&self, photos: &[(String, Vec<u8>)]) -> String {
        let resp = hub::mint_request(&self.http, &self.base, MIRROR, SCENE)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        // Taken five seconds apart; the gallery lists them in the order they were taken.
        for (i, (id, bytes)) in photos.iter().enumerate() {
            let taken_at_ms = 1_767_225_600_123 + 5_000 * i as i64;
            let digest = hub::sha256_hex(bytes);
            let upload = hub::Upload {
                token: MIRROR,
                scene: SCENE,
                session: SESSION,
                photo: id,
                digest: &digest,
            };
            let resp = upload
                .request(&self.http, &self.base, taken_at_ms, bytes.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::CREATED);
        }
        // Signed now: the hub refuses pushes with a stale timestamp.
        let push = hub::scan_xml(
            "gh_store",
            "oShopperA",
            1_767_225_700,
            "subscribe",
            &format!("qrscene_{SCENE}"),
        );
        let reply = hub::push(&self.http, &self.base, CALLBACK_TOKEN, "486452656", &push)
            .await
            .text()
            .await
            .unwrap();
        let article = hub::news_article(&reply);
        let key = self.store.scene(SCENE).unwrap().unwrap().gallery_key;
        assert_eq!(article.url, format!("{}/s/{SCENE}?k={key}", self.base));
        article.url
    }

    fn photo_url(&self, id: &str) -> String {
        let key = self.store.scene(SCENE).unwrap().unwrap().gallery_key;
        format!("{}/s/{SCENE}/photos/{id}.jpg?k={key}", self.base)
    }

    async fn status(&self, url: &str) -> StatusCode {
        self.http.get(url).send().await.unwrap().status()
    }
}

/// A 600×800 JPEG of one saturated colour with white diagonal stripes and a black corner
/// square, so it is plainly a picture and plainly this one.
fn test_jpeg(colour: [u8; 3]) -> Vec<u8> {
    let (w, h) = (600usize, 800usize);
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let px = if x < 90 && y < 90 {
                [0, 0, 0]
            } else if (x + y) % 160 < 24 {
                [255, 255, 255]
            } else {
                colour
            };
            rgb.extend_from_slice(&px);
        }
    }
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90)
        .encode(&rgb, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    assert_eq!(&out[..2], &[0xFF, 0xD8]);
    out
}

const RED: [u8; 3] = [210, 30, 30];
const GREEN: [u8; 3] = [30, 150, 40];
const BLUE: [u8; 3] = [30, 50, 200];

fn no_photo_colours(shot: &Rgb, what: &str) {
    for (name, colour) in [("red", RED), ("green", GREEN), ("blue", BLUE)] {
        let f = shot.find(colour);
        assert!(
            f.count < 200,
            "{what}: {name} photo pixels on screen: {f:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gallery_renders_in_chromium() {
    let Some(chromium) = chromium_or_skip("gallery_renders_in_chromium") else {
        return;
    };
    let started = Instant::now();
    let env = start().await;
    let colours = [("red", RED), ("green", GREEN), ("blue", BLUE)];
    let photos: Vec<(String, Vec<u8>)> = [
        "photoRRRRRRRRRRRRRRRRR",
        "photoGGGGGGGGGGGGGGGGG",
        "photoBBBBBBBBBBBBBBBBB",
    ]
    .iter()
    .zip(colours)
    .map(|(id, (_, c))| (id.to_string(), test_jpeg(c)))
    .collect();
    let gallery = env.session_with(&photos).await;
    let photo_urls: Vec<String> = photos.iter().map(|(id, _)| env.photo_url(id)).collect();

    // --- The gallery, as the shopper's phone shows it. ---
    let (dom, shot) = dom_and_screenshot(&chromium, &gallery, TALL_H, "gallery").await;
    let html = &tags(&dom, "html")[0];
    assert_eq!(html.get("lang").map(String::as_str), Some("zh-CN"), "{dom}");
    assert!(
        tags(&dom, "meta")
            .iter()
            .any(|m| m.get("name").is_some_and(|n| n == "viewport")),
        "{dom}"
    );
    for text in [
        "你的试衣照片",
        "Your fitting photos",
        "下载原图",
        "Download full size",
    ] {
        assert!(dom.contains(text), "{text:?} missing from the DOM:\n{dom}");
    }
    assert_eq!(img_srcs(&dom), photo_urls, "{dom}");
    let downloads = hub::download_links(&dom);
    assert_eq!(downloads.len(), 3, "{dom}");
    for (i, (a, url)) in downloads.iter().zip(&photo_urls).enumerate() {
        assert_eq!(a.get("href"), Some(url), "{dom}");
        assert_eq!(
            a.get("download").map(String::as_str),
            Some(format!("mirror-photo-{}.jpg", i + 1).as_str())
        );
    }

    // Each photo really rendered: mostly its colour, nearly the phone's width, in order.
    assert_eq!(
        (shot.width, shot.height),
        (PHONE_W as usize, TALL_H as usize)
    );
    let mut previous_bottom = 0;
    for (name, colour) in colours {
        let f = shot.find(colour);
        assert!(
            f.count > 60_000,
            "{name} photo did not render (only {} pixels of its colour): {f:?}",
            f.count
        );
        let width = f.x1 - f.x0 + 1;
        assert!(
            (PHONE_W as usize - 60..=PHONE_W as usize).contains(&width),
            "{name} photo is {width} px wide on a {PHONE_W} px phone: {f:?}"
        );
        assert!(f.y0 > previous_bottom, "{name} photo out of order: {f:?}");
        previous_bottom = f.y1;
    }
    assert!(shot.dark() > 300, "no visible text on the gallery");
    // Every photo is also one tap away, full size and byte-identical.
    for ((_, bytes), url) in photos.iter().zip(&photo_urls) {
        let resp = env.http.get(url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.bytes().await.unwrap().as_ref(), bytes.as_slice());
    }

    // --- A wrong key (or none) shows the not-found notice and no photo. ---
    let wrong = gallery.replace("?k=", "?k=x");
    assert_eq!(env.status(&wrong).await, StatusCode::NOT_FOUND);
    assert_eq!(
        env.status(&format!("{}/s/{SCENE}", env.base)).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        env.status(&photo_urls[0].replace("?k=", "?k=x")).await,
        StatusCode::NOT_FOUND
    );
    let (dom, shot) = dom_and_screenshot(&chromium, &wrong, PHONE_H, "wrong-key").await;
    assert!(img_srcs(&dom).is_empty(), "{dom}");
    assert!(
        dom.contains("找不到这些照片") && dom.contains("These photos cannot be found"),
        "{dom}"
    );
    assert!(!dom.contains("/photos/"), "{dom}");
    no_photo_colours(&shot, "wrong key");
    assert!(shot.dark() > 300, "the not-found notice is not visible");

    // --- Retention removed the photos: the expired notice, no photo. ---
    let now = mirrorsight_hub::http::unix_now() + 60;
    let report = sweep_expired(env.store.as_ref(), env.blobs.as_ref(), 0, now).unwrap();
    assert_eq!(report.expired, 3);
    assert_eq!(env.status(&photo_urls[0]).await, StatusCode::GONE);
    let (dom, shot) = dom_and_screenshot(&chromium, &gallery, PHONE_H, "expired").await;
    assert!(img_srcs(&dom).is_empty(), "{dom}");
    assert!(
        tags(&dom, "div")
            .iter()
            .any(|d| d.get("id").is_some_and(|id| id == "expired")),
        "{dom}"
    );
    assert!(
        dom.contains("这些照片已过期") && dom.contains("These photos have expired"),
        "{dom}"
    );
    no_photo_colours(&shot, "expired");
    assert!(shot.dark() > 300, "the expired notice is not visible");

    let elapsed = started.elapsed();
    println!("gallery_renders_in_chromium: {elapsed:?}");
}

/// Regenerates `docs/screens/gallery.png`: three portrait frames of `assets/demo.mp4` (which
/// the repository ships and may show) uploaded as a session's photos, the gallery at phone size.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "writes docs/screens/gallery.png; run with --ignored docs_screenshot"]
async fn docs_screenshot() {
    let chromium = find_chromium().expect("chromium (scripts/setup-test.sh installs it)");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let clip = root.join("assets/demo.mp4");
    let tmp = tempfile::tempdir().unwrap();
    // The person stands at the mirror from 3.5 to 9.5 s and sways, so the crops differ a little.
    let frames = [(4.0, 130), (6.5, 140), (9.0, 150)];
    let mut photos = Vec::new();
    for (i, (t, x)) in frames.iter().enumerate() {
        let out = tmp.path().join(format!("{i}.jpg"));
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-ss", &t.to_string(), "-i"])
            .arg(&clip)
            .args([
                "-frames:v",
                "1",
                "-vf",
                &format!("crop=360:480:{x}:0"),
                "-q:v",
                "3",
            ])
            .arg(&out)
            .status()
            .expect("ffmpeg");
        assert!(status.success());
        let id = format!("photo{}AAAAAAAAAAAAAAAA", (b'A' + i as u8) as char);
        photos.push((id, std::fs::read(&out).unwrap()));
    }
    let env = start().await;
    let gallery = env.session_with(&photos).await;
    let png = tokio::task::spawn_blocking(move || {
        browse(&chromium, &gallery, Capture::Screenshot { height: PHONE_H })
    })
    .await
    .unwrap();
    let raw = tmp.path().join("raw.png");
    std::fs::write(&raw, &png).unwrap();
    let dest = root.join("docs/screens/gallery.png");
    // 256 colours keep the photos looking right at a fraction of the size.
    let status = Command::new("convert")
        .arg(&raw)
        .args([
            "-strip",
            "-dither",
            "FloydSteinberg",
            "-colors",
            "256",
            "-define",
            "png:compression-level=9",
        ])
        .arg(format!("png8:{}", dest.display()))
        .status()
        .expect("ImageMagick convert");
    assert!(status.success());
    let size = std::fs::metadata(&dest).unwrap().len();
    assert!(size < 400 * 1024, "{} is {size} bytes", dest.display());
    println!("wrote {} ({size} bytes)", dest.display());
}
