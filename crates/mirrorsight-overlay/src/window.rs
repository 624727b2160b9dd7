//! The X11 window: a borderless, monitor-sized `minifb` window marked fullscreen and above
//! through EWMH, redrawn only when the scene changes.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use minifb::{ScaleMode, Window, WindowOptions};
use x11rb::connection::Connection;
use x11rb::protocol::Event as XEvent;
use x11rb::protocol::randr::ConnectionExt as _;
use x11rb::protocol::xproto::{
    AtomEnum, ChangeWindowAttributesAux, ClientMessageEvent, ConnectionExt as _, EventMask,
    PropMode,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

use crate::canvas::Rect;
use crate::config::OverlayConfig;
use crate::error::OverlayError;
use crate::font::Font;
use crate::model::Scene;
use crate::overlay::{DrawStats, Next, Shared};
use crate::render::Renderer;

/// How often X events are pumped while nothing changes; keeps the window responsive to the
/// window manager without redrawing.
const IDLE_POLL: Duration = Duration::from_millis(50);
/// An X server that has not answered by then is not going to.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// Opens the window on a new thread (minifb windows must stay on the thread that made
/// them) and returns once it is on screen, with its X id.
pub(crate) fn spawn(
    cfg: OverlayConfig,
    font: Font,
    shared: Arc<Shared>,
) -> Result<(JoinHandle<Result<DrawStats, OverlayError>>, u32), OverlayError> {
    let display = std::env::var("DISPLAY").unwrap_or_default();
    if display.is_empty() {
        return Err(OverlayError::NoDisplay);
    }
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("overlay-window".into())
        .spawn(move || {
            let opened = open(&cfg, &display);
            let (mut screen, renderer) = match opened {
                Ok(screen) => {
                    let _ = ready_tx.send(Ok(screen.id));
                    let renderer =
                        Renderer::new(&cfg, font, screen.width as u32, screen.height as u32);
                    (screen, renderer)
                }
                Err(e) => {
                    shared.mark_dead();
                    let _ = ready_tx.send(Err(e));
                    return Ok(DrawStats::default());
                }
            };
            let result = screen.run(&shared, renderer);
            shared.mark_dead();
            if let Err(e) = &result {
                tracing::error!(error = %e, "overlay window stopped");
            }
            result
        })
        .map_err(|e| OverlayError::Window(format!("cannot start the drawing thread: {e}")))?;
    match ready_rx.recv_timeout(OPEN_TIMEOUT) {
        Ok(Ok(id)) => Ok((thread, id)),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => Err(OverlayError::Window(format!(
            "the window did not open within {}s",
            OPEN_TIMEOUT.as_secs()
        ))),
    }
}

struct Screen {
    conn: RustConnection,
    window: Window,
    id: u32,
    width: usize,
    height: usize,
}

/// The monitor `cfg.display` of the X screen, as a rectangle of the root window.
fn monitor(
    conn: &RustConnection,
    root: u32,
    screen: Rect,
    index: u32,
) -> Result<Rect, OverlayError> {
    // RandR 1.5 lists monitors; without it (or without monitors) the whole screen is one.
    let monitors: Vec<Rect> = conn
        .randr_get_monitors(root, true)
        .ok()
        .and_then(|cookie| cookie.reply().ok())
        .map(|r| {
            r.monitors
                .iter()
                .map(|m| Rect::new(m.x.into(), m.y.into(), m.width.into(), m.height.into()))
                .collect()
        })
        .filter(|m: &Vec<Rect>| !m.is_empty())
        .unwrap_or_else(|| vec![screen]);
    monitors
        .get(index as usize)
        .copied()
        .ok_or(OverlayError::NoSuchMonitor {
            index,
            count: monitors.len(),
        })
}

fn x_err(what: &str) -> impl Fn(x11rb::errors::ReplyError) -> OverlayError + '_ {
    move |e| OverlayError::Window(format!("{what}: {e}"))
}

fn open(cfg: &OverlayConfig, display: &str) -> Result<Screen, OverlayError> {
    let (conn, screen_num) = x11rb::connect(None).map_err(|e| OverlayError::XConnect {
        display: display.to_owned(),
        reason: e.to_string(),
    })?;
    let screen = conn
        .setup()
        .roots
        .get(screen_num)
        .ok_or_else(|| OverlayError::Window(format!("X screen {screen_num} does not exist")))?;
    let root = screen.root;
    let whole = Rect::new(
        0,
        0,
        screen.width_in_pixels.into(),
        screen.height_in_pixels.into(),
    );
    let mon = monitor(&conn, root, whole, cfg.display)?;
    let (width, height) = match cfg.fixed_size() {
        Some((w, h)) => (w as usize, h as usize),
        None => (mon.w as usize, mon.h as usize),
    };

    let opts = WindowOptions {
        borderless: true,
        title: false,
        resize: false,
        scale_mode: ScaleMode::UpperLeft,
        topmost: true,
        ..WindowOptions::default()
    };
    let mut window = Window::new("mirrorsight", width, height, opts).map_err(|e| {
        OverlayError::Window(format!(
            "cannot open a {width}x{height} window on {display}: {e}"
        ))
    })?;
    // An X window id is a 29-bit XID carried in a pointer-sized handle.
    let id = window.get_window_handle() as usize as u32;
    window.set_position(mon.x as isize, mon.y as isize);
    window.set_cursor_visibility(false);

    let atom = |name: &[u8]| -> Result<u32, OverlayError> {
        let what = String::from_utf8_lossy(name).into_owned();
        Ok(conn
            .intern_atom(false, name)
            .map_err(|e| OverlayError::Window(format!("{what}: {e}")))?
            .reply()
            .map_err(|e| OverlayError::Window(format!("{what}: {e}")))?
            .atom)
    };
    let wm_state = atom(b"_NET_WM_STATE")?;
    let fullscreen = atom(b"_NET_WM_STATE_FULLSCREEN")?;
    let above = atom(b"_NET_WM_STATE_ABOVE")?;
    let wm_err = |e: x11rb::errors::ConnectionError| {
        OverlayError::Window(format!("setting fullscreen state: {e}"))
    };
    // The property covers "no window manager" (and WMs reading it at map time); the client
    // message is how EWMH asks a running WM to change the state of a mapped window.
    conn.change_property32(
        PropMode::REPLACE,
        id,
        wm_state,
        AtomEnum::ATOM,
        &[fullscreen, above],
    )
    .map_err(wm_err)?;
    let msg = ClientMessageEvent::new(32, id, wm_state, [1, fullscreen, above, 1, 0]);
    conn.send_event(
        false,
        root,
        EventMask::SUBSTRUCTURE_REDIRECT | EventMask::SUBSTRUCTURE_NOTIFY,
        msg,
    )
    .map_err(wm_err)?;
    // minifb does not repaint on Expose; listening here lets us put the picture back.
    conn.change_window_attributes(
        id,
        &ChangeWindowAttributesAux::new().event_mask(EventMask::EXPOSURE),
    )
    .map_err(wm_err)?;
    conn.sync().map_err(x_err("talking to the X server"))?;

    let black = vec![0u32; width * height];
    window
        .update_with_buffer(&black, width, height)
        .map_err(|e| OverlayError::Window(format!("first frame: {e}")))?;
    Ok(Screen {
        conn,
        window,
        id,
        width,
        height,
    })
}

impl Screen {
    fn run(&mut self, shared: &Shared, mut renderer: Renderer) -> Result<DrawStats, OverlayError> {
        let mut stats = DrawStats::default();
        let mut last: Option<Scene> = None;
        let mut shown: Vec<u32> = vec![0; self.width * self.height];
        loop {
            let mut exposed = false;
            match shared.next(IDLE_POLL) {
                Next::Closed => return Ok(stats),
                Next::Timeout => self.window.update(),
                Next::Scene(item) => {
                    if last.as_ref() != Some(&item.scene) {
                        let frame = renderer.render(&item.scene);
                        shown.copy_from_slice(&frame.pixels);
                        self.present(&shown)?;
                        stats.drawn += 1;
                        last = Some(item.scene);
                    }
                    shared.done_one();
                }
            }
            loop {
                match self.conn.poll_for_event() {
                    Ok(Some(XEvent::Expose(_))) => exposed = true,
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => return Err(OverlayError::Window(format!("lost the X server: {e}"))),
                }
            }
            if exposed {
                self.present(&shown)?;
            }
        }
    }

    fn present(&mut self, pixels: &[u32]) -> Result<(), OverlayError> {
        self.window
            .update_with_buffer(pixels, self.width, self.height)
            .map_err(|e| OverlayError::Window(format!("drawing: {e}")))
    }
}
