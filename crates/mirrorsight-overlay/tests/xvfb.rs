//! The X11 window under a private Xvfb: screen-sized, marked fullscreen and above, and a
//! screenshot of the display decodes to the session's URL.
//!
//! The window itself runs in a child process (this test binary, re-run with one ignored
//! test selected), because the X client library takes the display from `$DISPLAY` and
//! changing the environment of a running multi-threaded test process is not sound.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use mirrorsight_overlay::{Output, Overlay, OverlayConfig};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{AtomEnum, ConnectionExt as _, MapState};

const MODE_ENV: &str = "MIRRORSIGHT_OVERLAY_TEST_CHILD";
const URL_ENV: &str = "MIRRORSIGHT_OVERLAY_TEST_URL";
const SCREEN: (u16, u16) = (1280, 720);

struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    /// A fresh Xvfb on a free display number, or why there is none.
    fn start() -> Result<Self, String> {
        let mut last_err = String::from("no free display number");
        for n in 91..140 {
            if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                || Path::new(&format!("/tmp/.X{n}-lock")).exists()
            {
                continue;
            }
            let display = format!(":{n}");
            let spawned = Command::new("Xvfb")
                .args([
                    display.as_str(),
                    "-screen",
                    "0",
                    &format!("{}x{}x24", SCREEN.0, SCREEN.1),
                    "-nolisten",
                    "tcp",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let mut child = match spawned {
                Ok(c) => c,
                Err(e) => return Err(format!("cannot run Xvfb: {e}")),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    last_err = format!("Xvfb {display} exited with {status}");
                    break;
                }
                if x11rb::connect(Some(&display)).is_ok() {
                    return Ok(Self { child, display });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        Err(last_err)
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        // SIGTERM lets Xvfb remove its socket and lock file; SIGKILL would leave them behind.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills the child if the test fails half way, so no window process outlives the test.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// This test binary, running only `child` in `mode`.
fn child_command(mode: &str) -> Command {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(MODE_ENV, mode);
    cmd
}

/// The rest of `line` after `marker`; the test harness may print "test child ... " first.
fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|i| &line[i + marker.len()..])
}

fn tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn window_is_fullscreen_on_top_and_its_screenshot_decodes_to_the_url() {
    let xvfb = match Xvfb::start() {
        Ok(x) => x,
        Err(e) => {
            println!("skipped: Xvfb is not available ({e}); install xvfb to run this test");
            return;
        }
    };
    let mut child = ChildGuard(
        child_command("window")
            .env("DISPLAY", &xvfb.display)
            .env(URL_ENV, URL)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("child process"),
    );
    let stdout = child.0.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut window_id = None;
    while window_id.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(id) = after(&line, "READY ") {
                    window_id = Some(id.trim().parse::<u32>().expect("window id"));
                } else if let Some(err) = after(&line, "ERROR ") {
                    panic!("the window did not open: {err}");
                }
            }
            Err(_) => {
                panic!("the child never reported a window");
            }
        }
    }
    let window = window_id.expect("set above");

    let (conn, screen) = x11rb::connect(Some(&xvfb.display)).expect("connect");
    let root = conn.setup().roots[screen].root;
    let geo = conn
        .get_geometry(window)
        .expect("request")
        .reply()
        .expect("geometry");
    assert_eq!((geo.width, geo.height), SCREEN, "window is screen-sized");
    let pos = conn
        .translate_coordinates(window, root, 0, 0)
        .expect("request")
        .reply()
        .expect("reply");
    assert_eq!((pos.dst_x, pos.dst_y), (0, 0), "window covers the screen");
    let attrs = conn
        .get_window_attributes(window)
        .expect("request")
        .reply()
        .expect("attributes");
    assert_eq!(attrs.map_state, MapState::VIEWABLE);
    let atom = |name: &str| {
        conn.intern_atom(false, name.as_bytes())
            .expect("request")
            .reply()
            .expect("atom")
            .atom
    };
    let (wm_state, fullscreen, above) = (
        atom("_NET_WM_STATE"),
        atom("_NET_WM_STATE_FULLSCREEN"),
        atom("_NET_WM_STATE_ABOVE"),
    );
    let prop = conn
        .get_property(false, window, wm_state, AtomEnum::ATOM, 0, 16)
        .expect("request")
        .reply()
        .expect("property");
    let states: Vec<u32> = prop.value32().map(|v| v.collect()).unwrap_or_default();
    assert!(
        states.contains(&fullscreen) && states.contains(&above),
        "_NET_WM_STATE = {states:?}"
    );

    if tool("xwininfo") {
        let out = Command::new("xwininfo")
            .args(["-display", &xvfb.display, "-id", &window.to_string()])
            .output()
            .expect("xwininfo");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("Width: {}", SCREEN.0))
                && text.contains(&format!("Height: {}", SCREEN.1)),
            "{text}"
        );
    }

    if tool("xwd") && tool("convert") {
        let dir = tempfile::tempdir().expect("tempdir");
        let (xwd, png) = (dir.path().join("screen.xwd"), dir.path().join("screen.png"));
        let ok = Command::new("xwd")
            .args(["-root", "-silent", "-display", &xvfb.display, "-out"])
            .arg(&xwd)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "xwd screenshot");
        let ok = Command::new("convert")
            .arg(format!("xwd:{}", xwd.display()))
            .arg(format!("png:{}", png.display()))
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "convert xwd to png");
        let shot = read_png_file(&png);
        assert_eq!(
            (shot.width, shot.height),
            (SCREEN.0 as usize, SCREEN.1 as usize)
        );
        assert_eq!(
            decode_qr(&shot),
            vec![URL.to_owned()],
            "rqrr reads the screenshot"
        );
        if tool("zbarimg") {
            let out = Command::new("zbarimg")
                .args(["-q", "--raw"])
                .arg(&png)
                .output()
                .expect("zbarimg");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                URL,
                "zbarimg reads the screenshot"
            );
        }
        // Outside the QR's corner the screen is black: the default position is bottom right.
        let lit = lit_bounds(&shot).expect("something on screen");
        let (w, h) = (SCREEN.0 as i32, SCREEN.1 as i32);
        assert!(
            lit.x > w / 2 && lit.right() > w - 40 && lit.bottom() > h - 40,
            "drawn at {lit:?}"
        );
    } else {
        println!("screenshot check skipped: xwd or convert (imagemagick) not installed");
    }

    // Closing stdin tells the child to shut down.
    drop(child.0.stdin.take());
    let status = child.0.wait().expect("child exit");
    assert!(status.success(), "child exited with {status}");
}

#[test]
fn no_display_and_no_server_are_one_line_errors() {
    let out = child_command("no_display")
        .env_remove("DISPLAY")
        .output()
        .expect("child");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| after(l, "ERROR "))
        .unwrap_or_else(|| panic!("no error line in {text}"));
    assert!(line.contains("DISPLAY is not set"), "{line}");

    // A display number nobody serves.
    let free = (300..400)
        .find(|n| !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists())
        .expect("a free number");
    let out = child_command("no_server")
        .env("DISPLAY", format!(":{free}"))
        .output()
        .expect("child");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| after(l, "ERROR "))
        .unwrap_or_else(|| panic!("no error line in {text}"));
    assert!(
        line.contains(&format!("cannot connect to X display \":{free}\"")),
        "{line}"
    );
}

/// The child side of the tests above; does nothing when run directly.
#[test]
#[ignore = "run as a child process by the Xvfb tests"]
fn child() {
    let Ok(mode) = std::env::var(MODE_ENV) else {
        return;
    };
    let started_overlay = Overlay::start(&OverlayConfig::default(), Output::Window);
    let mut overlay = match (mode.as_str(), started_overlay) {
        (_, Err(e)) => {
            println!("ERROR {e}");
            return;
        }
        ("window", Ok(o)) => o,
        (_, Ok(_)) => {
            println!("UNEXPECTED the window opened");
            return;
        }
    };
    let url = std::env::var(URL_ENV).unwrap_or_else(|_| URL.to_owned());
    overlay.apply(&started(1.0, "xvfb"));
    overlay.apply(&minted(1.001, "xvfb", &url));
    assert!(overlay.sync(Duration::from_secs(20)), "drawn");
    println!("READY {}", overlay.window_id().expect("window id"));
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    overlay.shutdown().expect("clean shutdown");
}
