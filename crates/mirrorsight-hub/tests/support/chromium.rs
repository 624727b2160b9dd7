#![allow(dead_code)] // Each test crate uses part of this module.

//! Headless Chromium for the shopper's pages: a page's DOM (`--dump-dom`) or a screenshot
//! (`--screenshot`) at phone width, from a fresh profile, bounded in time; and the pixels of a
//! screenshot. Needs `/usr/bin/chromium` (or `chromium` on `PATH`; `scripts/setup-test.sh`
//! installs it): without it a test prints a skip line and passes, except under `CI=true`.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Phone width in CSS pixels (an iPhone 12–15); screenshots are taken at device scale 1.
pub const PHONE_W: u32 = 390;
pub const PHONE_H: u32 = 844;
/// Tall enough that all three test photos are in the viewport at once.
pub const TALL_H: u32 = 2000;
/// Upper bound for one Chromium run; a hung browser is killed and the test fails.
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(25);

// ---------------------------------------------------------------------------------------------
// Chromium

/// `/usr/bin/chromium`, else `chromium` on `PATH`.
pub fn find_chromium() -> Option<PathBuf> {
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
pub fn chromium_or_skip(test: &str) -> Option<PathBuf> {
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
pub enum Capture {
    /// `--dump-dom`: the serialized DOM after load.
    Dom,
    /// `--screenshot`: a PNG of the viewport, `PHONE_W` wide and this tall.
    Screenshot { height: u32 },
}

/// Loads `url` in a fresh headless Chromium (its own profile in a temp dir) and returns the DOM
/// or the PNG. Virtual time lets every image load before the capture; the run is bounded by
/// `BROWSER_TIMEOUT`, after which the browser's whole process group is killed.
pub fn browse(bin: &Path, url: &str, capture: Capture) -> Vec<u8> {
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
pub async fn dom_and_screenshot(bin: &Path, url: &str, height: u32, name: &str) -> (String, Rgb) {
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
pub struct Rgb {
    pub width: usize,
    pub height: usize,
    pub px: Vec<[u8; 3]>,
}

/// Where pixels near one colour are on a screenshot.
#[derive(Debug, Clone, Copy)]
pub struct Found {
    pub count: usize,
    pub x0: usize,
    pub x1: usize,
    pub y0: usize,
    pub y1: usize,
}

impl Rgb {
    pub fn decode_png(bytes: &[u8]) -> Self {
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
    pub fn find(&self, colour: [u8; 3]) -> Found {
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
    pub fn dark(&self) -> usize {
        self.px
            .iter()
            .filter(|p| p.iter().all(|&c| c < 110))
            .count()
    }
}

// ---------------------------------------------------------------------------------------------
// The README's screenshots (`docs/screens/`)

/// Portrait crops (360x480 at `(seconds, left edge)`) of `assets/demo.mp4` under the workspace
/// `root`, as JPEGs: the repository ships that clip and may show it, while the shared footage
/// must never be copied into it, screenshots included. Needs `ffmpeg`.
pub fn demo_frames(root: &Path, frames: &[(f64, u32)]) -> Vec<Vec<u8>> {
    let clip = root.join("assets/demo.mp4");
    let tmp = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    for (i, (t, x)) in frames.iter().enumerate() {
        let jpg = tmp.path().join(format!("{i}.jpg"));
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
            .arg(&jpg)
            .status()
            .expect("ffmpeg");
        assert!(status.success());
        out.push(std::fs::read(&jpg).unwrap());
    }
    out
}

/// Writes a Chromium screenshot to `root/docs/screens/<name>` as a 256-colour PNG (the photos
/// still look right at a fraction of the size; needs ImageMagick's `convert`); returns its size.
pub fn write_docs_screenshot(root: &Path, png: &[u8], name: &str) -> u64 {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw.png");
    std::fs::write(&raw, png).unwrap();
    let dest = root.join("docs/screens").join(name);
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
    size
}
