//! The overlay as the daemon uses it: the model on the caller's thread, drawing on its own.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mirrorsight_contract::events::Event;

use crate::config::{HEADLESS_AUTO_SIZE, OverlayConfig};
use crate::error::OverlayError;
use crate::font::Font;
use crate::model::{OverlayModel, Scene};
use crate::render::Renderer;

/// Snapshots keep every change of picture; a replay produces a few per second of media time,
/// so this only overflows if the disk stalls for a long time (then the oldest go).
const SNAPSHOT_QUEUE: usize = 1024;

/// Where the picture goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A borderless fullscreen window on the X display in `$DISPLAY`.
    Window,
    /// Render off screen; with a directory, write a PNG each time the picture changes.
    Headless { snapshot_dir: Option<PathBuf> },
    /// Track state only; draw nothing.
    None,
}

/// Counters returned by [`Overlay::shutdown`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OverlayStats {
    /// Scenes handed to the drawing thread (only changes are sent).
    pub scenes_sent: u64,
    /// Scenes actually rendered.
    pub frames_drawn: u64,
    /// Scenes replaced by a newer one before they were drawn.
    pub scenes_skipped: u64,
    pub snapshots_written: u64,
}

/// One scene at one media time.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedScene {
    pub t: f64,
    pub scene: Scene,
}

/// Feeds the model from the event stream and hands changed scenes to the drawing thread.
///
/// Every method is cheap and never blocks on drawing: call it from the vision thread.
pub struct Overlay {
    model: OverlayModel,
    last_sent: Option<Scene>,
    link: Option<Link>,
    sent: u64,
}

struct Link {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<DrawStats, OverlayError>>>,
    window_id: Option<u32>,
}

impl Overlay {
    /// Loads the font, opens the window (or snapshot directory) and starts the drawing
    /// thread. Fails fast, with the fix in the message, when the font or display is missing.
    pub fn start(cfg: &OverlayConfig, output: Output) -> Result<Self, OverlayError> {
        cfg.validate().map_err(OverlayError::Config)?;
        let model = OverlayModel::new(cfg);
        let link = match output {
            Output::None => None,
            Output::Headless { snapshot_dir } => {
                let font = Font::for_config(cfg)?;
                if let Some(dir) = &snapshot_dir {
                    std::fs::create_dir_all(dir).map_err(|source| OverlayError::Snapshot {
                        path: dir.clone(),
                        source,
                    })?;
                }
                let (w, h) = cfg.fixed_size().unwrap_or(HEADLESS_AUTO_SIZE);
                let renderer = Renderer::new(cfg, font, w, h);
                let shared = Arc::new(Shared::new(SNAPSHOT_QUEUE));
                let thread_shared = shared.clone();
                let thread = std::thread::Builder::new()
                    .name("overlay-draw".into())
                    .spawn(move || headless_loop(&thread_shared, renderer, snapshot_dir.as_deref()))
                    .map_err(|e| {
                        OverlayError::Window(format!("cannot start the drawing thread: {e}"))
                    })?;
                Some(Link {
                    shared,
                    thread: Some(thread),
                    window_id: None,
                })
            }
            Output::Window => {
                let font = Font::for_config(cfg)?;
                // The screen only ever needs the newest picture.
                let shared = Arc::new(Shared::new(1));
                let (thread, window_id) = crate::window::spawn(cfg.clone(), font, shared.clone())?;
                Some(Link {
                    shared,
                    thread: Some(thread),
                    window_id: Some(window_id),
                })
            }
        };
        let mut overlay = Self {
            model,
            last_sent: None,
            link,
            sent: 0,
        };
        // The first picture is black; a snapshot of it shows the idle screen.
        overlay.publish(0.0);
        Ok(overlay)
    }

    /// Applies one event at its media time. Scene changes due before it (countdown steps,
    /// expiring icons) are published first, each at its own exact time.
    pub fn apply(&mut self, event: &Event) {
        self.advance(event.t);
        self.model.apply(event);
        self.publish(self.model.now());
    }

    /// Moves media time to `t` (call once per frame), publishing every change on the way.
    pub fn advance(&mut self, t: f64) {
        while let Some(due) = self.model.next_change() {
            if due > t {
                break;
            }
            self.model.advance(due);
            self.publish(due);
        }
        self.model.advance(t);
        self.publish(self.model.now());
    }

    /// The current picture.
    pub fn scene(&self) -> Scene {
        self.model.scene()
    }

    pub fn model(&self) -> &OverlayModel {
        &self.model
    }

    /// X11 id of the window, with [`Output::Window`].
    pub fn window_id(&self) -> Option<u32> {
        self.link.as_ref().and_then(|l| l.window_id)
    }

    /// False once the drawing thread has stopped on an error (X server gone, disk full);
    /// [`shutdown`](Self::shutdown) then returns that error. Publishing stays harmless.
    pub fn is_drawing(&self) -> bool {
        self.link.as_ref().is_none_or(|l| !l.shared.lock().dead)
    }

    /// Waits until everything published so far is on screen / on disk. For tests and
    /// tools; the daemon never needs it.
    pub fn sync(&self, timeout: Duration) -> bool {
        match &self.link {
            Some(link) => link.shared.wait_idle(self.sent, timeout),
            None => true,
        }
    }

    /// Draws the last picture, writes its snapshot and stops the drawing thread.
    pub fn shutdown(mut self) -> Result<OverlayStats, OverlayError> {
        let sent = self.sent;
        let Some(mut link) = self.link.take() else {
            return Ok(OverlayStats {
                scenes_sent: sent,
                ..Default::default()
            });
        };
        link.shared.close();
        let stats = match link.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result?,
            Some(Err(_)) => return Err(OverlayError::DrawThreadDied),
            None => DrawStats::default(),
        };
        Ok(OverlayStats {
            scenes_sent: sent,
            frames_drawn: stats.drawn,
            scenes_skipped: link.shared.lock().skipped,
            snapshots_written: stats.written,
        })
    }

    fn publish(&mut self, t: f64) {
        let scene = self.model.scene();
        if self.last_sent.as_ref() == Some(&scene) {
            return;
        }
        self.last_sent = Some(scene.clone());
        if let Some(link) = &self.link {
            self.sent += 1;
            link.shared.push(TimedScene { t, scene });
        }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        // Dropping without shutdown() still stops the thread; errors have nowhere to go.
        if let Some(mut link) = self.link.take() {
            link.shared.close();
            if let Some(thread) = link.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DrawStats {
    pub drawn: u64,
    pub written: u64,
}

/// A bounded queue that never blocks the sender: when full, the oldest scene is dropped,
/// because only the newest picture matters on a screen.
pub(crate) struct Shared {
    state: Mutex<SlotState>,
    changed: Condvar,
}

pub(crate) struct SlotState {
    queue: VecDeque<TimedScene>,
    cap: usize,
    closed: bool,
    /// The drawing thread has stopped (error or end); nothing will be drawn any more.
    dead: bool,
    /// Sequence number of the last scene the drawing thread finished with.
    done: u64,
    pushed: u64,
    pub skipped: u64,
}

pub(crate) enum Next {
    Scene(TimedScene),
    Timeout,
    Closed,
}

impl Shared {
    fn new(cap: usize) -> Self {
        Self {
            state: Mutex::new(SlotState {
                queue: VecDeque::new(),
                cap: cap.max(1),
                closed: false,
                dead: false,
                done: 0,
                pushed: 0,
                skipped: 0,
            }),
            changed: Condvar::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, SlotState> {
        // A panic while holding this lock leaves plain counters behind; they stay usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, scene: TimedScene) {
        let mut s = self.lock();
        if s.dead {
            return;
        }
        if s.queue.len() >= s.cap {
            s.queue.pop_front();
            s.skipped += 1;
            s.done += 1;
        }
        s.queue.push_back(scene);
        s.pushed += 1;
        drop(s);
        self.changed.notify_all();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// The next scene, waiting at most `timeout`.
    pub(crate) fn next(&self, timeout: Duration) -> Next {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            if let Some(scene) = s.queue.pop_front() {
                return Next::Scene(scene);
            }
            if s.closed {
                return Next::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return Next::Timeout;
            }
            s = match self.changed.wait_timeout(s, deadline - now) {
                Ok((guard, _)) => guard,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// The drawing thread finished with one scene.
    pub(crate) fn done_one(&self) {
        self.lock().done += 1;
        self.changed.notify_all();
    }

    pub(crate) fn mark_dead(&self) {
        let mut s = self.lock();
        s.dead = true;
        s.queue.clear();
        drop(s);
        self.changed.notify_all();
    }

    fn wait_idle(&self, sent: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            if s.done >= sent.min(s.pushed) && s.queue.is_empty() {
                return true;
            }
            if s.dead {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = match self.changed.wait_timeout(s, deadline - now) {
                Ok((guard, _)) => guard,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

/// `000012.345.png`: media time in milliseconds, zero padded so names sort by time.
pub fn snapshot_name(t: f64) -> String {
    let ms = if t.is_finite() && t > 0.0 {
        (t * 1000.0).round() as u64
    } else {
        0
    };
    format!("{:06}.{:03}.png", ms / 1000, ms % 1000)
}

fn headless_loop(
    shared: &Shared,
    mut renderer: Renderer,
    dir: Option<&Path>,
) -> Result<DrawStats, OverlayError> {
    let result = headless_run(shared, &mut renderer, dir);
    shared.mark_dead();
    if let Err(e) = &result {
        tracing::error!(error = %e, "overlay snapshots stopped");
    }
    result
}

fn headless_run(
    shared: &Shared,
    renderer: &mut Renderer,
    dir: Option<&Path>,
) -> Result<DrawStats, OverlayError> {
    let mut stats = DrawStats::default();
    let mut last_scene: Option<Scene> = None;
    let mut last_written: Option<Vec<u32>> = None;
    loop {
        let item = match shared.next(Duration::from_secs(3600)) {
            Next::Scene(item) => item,
            Next::Timeout => continue,
            Next::Closed => return Ok(stats),
        };
        if last_scene.as_ref() != Some(&item.scene) {
            let frame = renderer.render(&item.scene);
            stats.drawn += 1;
            // Different scenes can still look the same (e.g. flash over anything).
            if last_written.as_deref() != Some(frame.pixels.as_slice()) {
                if let Some(dir) = dir {
                    frame.write_png(&dir.join(snapshot_name(item.t)))?;
                    stats.written += 1;
                }
                last_written = Some(frame.pixels.clone());
            }
            last_scene = Some(item.scene);
        }
        shared.done_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_can_move_to_another_thread() {
        fn send<T: Send>() {}
        send::<Overlay>();
        send::<Scene>();
    }

    #[test]
    fn snapshot_names_sort_by_time() {
        assert_eq!(snapshot_name(12.345), "000012.345.png");
        assert_eq!(snapshot_name(0.0), "000000.000.png");
        assert_eq!(snapshot_name(-1.0), "000000.000.png");
        let times = [0.0, 0.5, 1.0, 9.999, 10.0, 99.5, 100.0, 3599.999, 86400.0];
        let names: Vec<String> = times.iter().map(|&t| snapshot_name(t)).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn full_queue_drops_the_oldest_and_never_blocks() {
        let shared = Shared::new(1);
        for i in 0..5 {
            shared.push(TimedScene {
                t: i as f64,
                scene: Scene::default(),
            });
        }
        match shared.next(Duration::from_millis(1)) {
            Next::Scene(s) => assert_eq!(s.t, 4.0),
            _ => panic!("expected the newest scene"),
        }
        assert_eq!(shared.lock().skipped, 4);
        assert!(matches!(
            shared.next(Duration::from_millis(1)),
            Next::Timeout
        ));
    }
}
