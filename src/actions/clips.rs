//! Turn-around clips: the frames the clip scheduler hands over (see
//! [`mirrorsight_core::clip`]) go through a bounded queue to an encoder thread, which crops
//! them to the shopper's region and pipes them into `ffmpeg` (H.264, MP4 with `+faststart`,
//! size-capped), then keeps the clip and a JPEG poster frame in the clip spool.
//!
//! Crash safety: the MP4 is written as `.<clip>.mp4.part` and only renamed to `<clip>.mp4`
//! after ffmpeg finished and the file is fsynced, and the poster is written before that
//! rename; opening the spool deletes every `.part` left by a crash, so a killed recording
//! leaves nothing behind. Recording never stalls vision: frames are offered to the queue and
//! dropped (counted in `/metrics`) when the encoder is behind; the clip repeats the previous
//! frame in their place so its duration stays right.
//!
//! With `backend.url` set, saved clips go to the store backend like photos (see
//! [`mirrorsight_photos::clip_upload`]): `clip_uploaded`, or `clip_upload_failed` and a retry.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, unbounded};
use mirrorsight_contract::events::{Event, EventKind};
use mirrorsight_core::clip::ClipWork;
use mirrorsight_photos::clip_upload::{
    ClipRecord, ClipUploadOutcome, ClipUploader, write_spool_file,
};
use mirrorsight_photos::{Backend, UploaderOptions};
use serde::Deserialize;
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{info, warn};

use super::Action;
use crate::frame::{ClipJob, RgbImage};
use crate::metrics::Metrics;

/// `[clips]`: turn-around clips.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClipsConfig {
    /// Record clips at all (the gesture is `gestures.actions.open_palm_hold = "clip_requested"`
    /// by default). Default `true`.
    pub enabled: bool,
    /// Seconds of video per clip. Default `6.0`.
    pub duration_s: f64,
    /// Clips are scaled down to at most this height in pixels. Default `720`.
    pub max_height: u32,
    /// A clip never grows beyond this many bytes (ffmpeg stops writing). Default `16000000`.
    pub max_bytes: u64,
    /// Frames waiting for the encoder; when full, new frames are dropped (and counted).
    /// Default `48`.
    pub queue_frames: usize,
    /// Where finished clips wait for upload. Default `/var/lib/mirrorsight/clips`
    /// (`replay`: under its state directory).
    pub spool_dir: PathBuf,
    /// The encoder program. Default `ffmpeg` (from `$PATH`).
    pub ffmpeg: PathBuf,
}

impl Default for ClipsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            duration_s: 6.0,
            max_height: 720,
            max_bytes: 16_000_000,
            queue_frames: 48,
            spool_dir: PathBuf::from("/var/lib/mirrorsight/clips"),
            ffmpeg: PathBuf::from("ffmpeg"),
        }
    }
}

impl ClipsConfig {
    /// The first bad key (full name) and what is wrong with it.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(self.duration_s.is_finite() && (1.0..=60.0).contains(&self.duration_s)) {
            return Err((
                "clips.duration_s",
                format!("must be 1..=60 seconds (got {})", self.duration_s),
            ));
        }
        if !(120..=2160).contains(&self.max_height) {
            return Err((
                "clips.max_height",
                format!("must be 120..=2160 pixels (got {})", self.max_height),
            ));
        }
        if self.max_bytes < 100_000 {
            return Err((
                "clips.max_bytes",
                format!("must be at least 100000 (got {})", self.max_bytes),
            ));
        }
        if !(1..=1024).contains(&self.queue_frames) {
            return Err((
                "clips.queue_frames",
                format!("must be 1..=1024 (got {})", self.queue_frames),
            ));
        }
        if !self.spool_dir.is_absolute() {
            return Err((
                "clips.spool_dir",
                format!("must be an absolute path (got {:?})", self.spool_dir),
            ));
        }
        if self.ffmpeg.as_os_str().is_empty() {
            return Err((
                "clips.ffmpeg",
                "empty; leave it out to use ffmpeg from $PATH".into(),
            ));
        }
        Ok(())
    }
}

/// At the end of a replay (or a shutdown): how long queued clips may still go out, then how
/// long the upload in flight may take to finish.
const UPLOAD_DRAIN_WAIT: Duration = Duration::from_secs(20);
const UPLOAD_SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What the encoder thread is told, in order.
enum Job {
    Start {
        session: String,
        scene: String,
        clip: String,
        trigger: String,
        /// Wall clock at the start, unix milliseconds (the upload's `X-Taken-At`).
        taken_at_ms: u64,
        t: f64,
        duration_s: f64,
        region: Option<[f32; 4]>,
    },
    Frame(Arc<RgbImage>, f64),
    Finish,
    Abort,
    /// Frames dropped before reaching the queue, for the clip in progress.
    Dropped(u64),
}

/// What the encoder thread reports back.
enum Outcome {
    /// Boxed: a saved clip is rare, and keeps the channel's items small.
    Saved {
        event: Box<EventKind>,
        record: Box<ClipRecord>,
    },
    Refused {
        session: String,
        reason: String,
    },
}

pub struct ClipAction {
    jobs: Option<Sender<Job>>,
    outcomes: Receiver<Outcome>,
    thread: Option<JoinHandle<()>>,
    scenes: HashMap<String, String>,
    /// Frames of the clip in progress that the queue could not take.
    dropped: u64,
    recording: bool,
    ids: crate::ids::IdGenerator,
    metrics: Arc<Metrics>,
    now: f64,
    /// With `backend.url`: the clip uploader and its outcomes.
    uploader: Option<(ClipUploader, UnboundedReceiver<ClipUploadOutcome>)>,
    runtime: tokio::runtime::Handle,
}

impl ClipAction {
    /// Opens the clip spool (deleting what a crash left half-written) and starts the encoder.
    /// `upload`: the backend and how to retry (`[photos]`' upload settings), when
    /// `backend.url` is set.
    pub fn start(
        config: &ClipsConfig,
        fps: f64,
        ids: crate::ids::IdGenerator,
        metrics: Arc<Metrics>,
        runtime: tokio::runtime::Handle,
        upload: Option<(Backend, UploaderOptions)>,
    ) -> Result<Self, String> {
        config
            .validate()
            .map_err(|(key, message)| format!("config key `{key}`: {message}"))?;
        open_spool(&config.spool_dir)?;
        let (jobs, rx) = bounded(config.queue_frames);
        let (done, outcomes) = unbounded();
        let encoder = Encoder {
            config: config.clone(),
            fps: if fps.is_finite() && fps > 0.0 {
                fps
            } else {
                30.0
            },
            done,
        };
        let thread = std::thread::Builder::new()
            .name("clip-encoder".into())
            .spawn(move || encoder.run(rx))
            .map_err(|e| format!("cannot start the clip encoder thread: {e}"))?;
        let uploader = match upload {
            Some((backend, options)) => Some(
                ClipUploader::spawn(&runtime, config.spool_dir.clone(), backend, options)
                    .map_err(|e| format!("clip uploads: {e}"))?,
            ),
            None => None,
        };
        Ok(Self {
            jobs: Some(jobs),
            outcomes,
            thread: Some(thread),
            scenes: HashMap::new(),
            dropped: 0,
            recording: false,
            ids,
            metrics,
            now: 0.0,
            uploader,
            runtime,
        })
    }

    /// Control messages must arrive: they wait for room (the encoder drains the queue).
    fn send(&self, job: Job) {
        if let Some(tx) = &self.jobs {
            let _ = tx.send(job);
        }
    }

    fn drain(&mut self, emit: &mut Vec<Event>) {
        while let Ok(outcome) = self.outcomes.try_recv() {
            let kind = match outcome {
                Outcome::Saved { event, record } => {
                    if let Some((uploader, _)) = &self.uploader {
                        uploader.enqueue(*record);
                    }
                    *event
                }
                Outcome::Refused { session, reason } => EventKind::ClipRefused { session, reason },
            };
            emit.push(Event::new(self.now, kind));
        }
        if let Some((_, outcomes)) = &mut self.uploader {
            while let Ok(outcome) = outcomes.try_recv() {
                emit.push(Event::new(self.now, outcome.event()));
            }
        }
    }
}

impl Action for ClipAction {
    fn on_event(&mut self, event: &Event, _emit: &mut Vec<Event>) {
        self.now = self.now.max(event.t);
        match &event.kind {
            EventKind::QrMinted { session, scene, .. } => {
                self.scenes.insert(session.clone(), scene.clone());
            }
            EventKind::SessionEnded { session, .. } => {
                self.scenes.remove(session);
            }
            _ => {}
        }
    }

    fn on_clip(&mut self, work: &ClipJob, emit: &mut Vec<Event>) {
        match work {
            ClipWork::Start {
                session,
                trigger,
                t,
                duration_s,
                region,
            } => {
                self.dropped = 0;
                self.recording = true;
                let clip = self.ids.next_id();
                // Like photos: until a code is minted the session id stands in for the scene.
                let scene = self
                    .scenes
                    .get(session)
                    .cloned()
                    .unwrap_or_else(|| session.clone());
                emit.push(Event::new(
                    *t,
                    EventKind::ClipStarted {
                        session: session.clone(),
                        clip: clip.clone(),
                        duration_s: *duration_s,
                    },
                ));
                self.send(Job::Start {
                    session: session.clone(),
                    scene,
                    clip,
                    trigger: trigger.clone(),
                    taken_at_ms: unix_ms(),
                    t: *t,
                    duration_s: *duration_s,
                    region: *region,
                });
            }
            ClipWork::Frame(frame) => {
                let Some(tx) = &self.jobs else { return };
                match tx.try_send(Job::Frame(frame.image.clone(), frame.t)) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        self.dropped += 1;
                        self.metrics
                            .clip_frames_dropped
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    Err(TrySendError::Disconnected(_)) => {}
                }
            }
            ClipWork::Finish { .. } => {
                self.recording = false;
                self.send(Job::Dropped(self.dropped));
                self.send(Job::Finish);
            }
            ClipWork::Abort => {
                self.recording = false;
                self.send(Job::Abort);
            }
        }
    }

    fn poll(&mut self, t: f64, emit: &mut Vec<Event>) {
        self.now = self.now.max(t);
        self.drain(emit);
    }

    fn finish(&mut self, emit: &mut Vec<Event>) {
        // Closing the queue lets the encoder finish the clip it has and stop.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.drain(emit);
        let Some((uploader, _)) = &self.uploader else {
            return;
        };
        // Like photos: queued clips get a bounded chance to reach the backend; what is left
        // stays in the clip spool and goes out after the next start.
        let deadline = std::time::Instant::now() + UPLOAD_DRAIN_WAIT;
        while uploader.pending() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some((uploader, mut outcomes)) = self.uploader.take() {
            self.runtime
                .block_on(uploader.shutdown(UPLOAD_SHUTDOWN_WAIT));
            while let Ok(outcome) = outcomes.try_recv() {
                emit.push(Event::new(self.now, outcome.event()));
            }
        }
    }
}

/// Creates the spool directory and deletes what a crash left half-written.
fn open_spool(dir: &Path) -> Result<(), String> {
    // Made durable in its parent like the photo spool: a clip's fsync keeps nothing if the
    // directory's own entry is lost in a power cut.
    mirrorsight_wechat::binding::create_dir_all_durable(dir)
        .map_err(|e| format!("clips.spool_dir {}: {e}", dir.display()))?;
    // Clips show shoppers: only the service user may read them, like the photo spool.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("clips.spool_dir {}: {e}", dir.display()))?;
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("clips.spool_dir {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".part") {
            warn!(file = %name, "removing a clip a crash left half-written");
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

struct Encoder {
    config: ClipsConfig,
    fps: f64,
    done: Sender<Outcome>,
}

/// The clip being encoded.
struct Current {
    session: String,
    scene: String,
    clip: String,
    trigger: String,
    taken_at_ms: u64,
    t0: f64,
    duration_s: f64,
    region: Option<[f32; 4]>,
    /// Crop in source pixels (x, y, w, h), fixed by the first frame.
    crop: Option<(u32, u32, u32, u32)>,
    child: Option<(Child, ChildStdin)>,
    part: PathBuf,
    /// Frames written to ffmpeg (slots filled).
    written: u64,
    repeated: u64,
    last: Option<Vec<u8>>,
    poster: Option<(u32, u32, Vec<u8>)>,
    failed: Option<String>,
}

impl Encoder {
    fn run(self, rx: Receiver<Job>) {
        let mut current: Option<Current> = None;
        let mut dropped = 0;
        for job in rx.iter() {
            match job {
                Job::Start {
                    session,
                    scene,
                    clip,
                    trigger,
                    taken_at_ms,
                    t,
                    duration_s,
                    region,
                } => {
                    if let Some(old) = current.take() {
                        abort(old);
                    }
                    dropped = 0;
                    let part = self.config.spool_dir.join(format!(".{clip}.mp4.part"));
                    current = Some(Current {
                        session,
                        scene,
                        clip,
                        trigger,
                        taken_at_ms,
                        t0: t,
                        duration_s,
                        region,
                        crop: None,
                        child: None,
                        part,
                        written: 0,
                        repeated: 0,
                        last: None,
                        poster: None,
                        failed: None,
                    });
                }
                Job::Frame(image, t) => {
                    if let Some(c) = current.as_mut() {
                        self.frame(c, &image, t);
                    }
                }
                Job::Dropped(n) => dropped = n,
                Job::Finish => {
                    if let Some(c) = current.take() {
                        let outcome = self.finish(c, dropped);
                        let _ = self.done.send(outcome);
                    }
                }
                Job::Abort => {
                    if let Some(c) = current.take() {
                        abort(c);
                    }
                }
            }
        }
        // The stream ended mid-clip: keep what was recorded.
        if let Some(c) = current.take() {
            let outcome = self.finish(c, dropped);
            let _ = self.done.send(outcome);
        }
    }

    fn total_slots(&self, c: &Current) -> u64 {
        (c.duration_s * self.fps).round().max(1.0) as u64
    }

    fn frame(&self, c: &mut Current, image: &RgbImage, t: f64) {
        if c.failed.is_some() {
            return;
        }
        let (x, y, w, h) = *c
            .crop
            .get_or_insert_with(|| crop_rect(c.region, image.width, image.height));
        if x + w > image.width || y + h > image.height {
            c.failed = Some("the camera's picture changed size during the clip".into());
            return;
        }
        if c.child.is_none() {
            match self.spawn(&c.part, w, h) {
                Ok(child) => c.child = Some(child),
                Err(e) => {
                    c.failed = Some(e);
                    return;
                }
            }
        }
        let mut px = Vec::with_capacity((w * h * 3) as usize);
        for row in y..y + h {
            let start = ((row * image.width + x) * 3) as usize;
            px.extend_from_slice(&image.data[start..start + (w * 3) as usize]);
        }
        // Each frame goes in the slot its media time says; slots the queue lost repeat the
        // previous frame, so the clip keeps its length.
        let slot = ((t - c.t0) * self.fps).round().max(0.0) as u64;
        let total = self.total_slots(c);
        while c.written < slot.min(total) {
            if let Some(prev) = c.last.take() {
                let ok = self.write(c, &prev);
                c.last = Some(prev);
                c.repeated += 1;
                if !ok {
                    return;
                }
            } else {
                break;
            }
        }
        if c.written >= total {
            return;
        }
        if c.poster.is_none() && t - c.t0 >= c.duration_s / 2.0 {
            c.poster = Some((w, h, px.clone()));
        }
        if self.write(c, &px) {
            c.last = Some(px);
        }
    }

    fn write(&self, c: &mut Current, px: &[u8]) -> bool {
        let Some((_, stdin)) = c.child.as_mut() else {
            return false;
        };
        match stdin.write_all(px) {
            Ok(()) => {
                c.written += 1;
                true
            }
            Err(e) => {
                c.failed = Some(format!("ffmpeg stopped taking frames: {e}"));
                false
            }
        }
    }

    fn spawn(&self, part: &Path, w: u32, h: u32) -> Result<(Child, ChildStdin), String> {
        let scale = format!(
            "scale=-2:'min({},ih)':flags=bilinear,format=yuv420p",
            self.config.max_height
        );
        let mut child = Command::new(&self.config.ffmpeg)
            .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24"])
            .args(["-s", &format!("{w}x{h}")])
            .args(["-framerate", &format!("{}", self.fps)])
            .args(["-i", "pipe:0"])
            .args(["-vf", &scale])
            .args(["-c:v", "libx264", "-preset", "veryfast", "-crf", "26"])
            .args(["-maxrate", "4M", "-bufsize", "8M"])
            .args(["-movflags", "+faststart"])
            .args(["-fs", &self.config.max_bytes.to_string()])
            .args(["-f", "mp4", "-y"])
            .arg(part)
            // `-nostdin` is about the terminal: frames arrive on the pipe.
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!(
                    "clips.ffmpeg {}: cannot start it ({e}); install ffmpeg (scripts/setup.sh)",
                    self.config.ffmpeg.display()
                )
            })?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| "ffmpeg has no stdin".to_string())?;
        Ok((child, stdin))
    }

    fn finish(&self, mut c: Current, dropped: u64) -> Outcome {
        let refused = |c: &Current, reason: String| {
            let _ = std::fs::remove_file(&c.part);
            warn!(clip = %c.clip, %reason, "clip not kept");
            Outcome::Refused {
                session: c.session.clone(),
                reason,
            }
        };
        if c.failed.is_none() && c.child.is_none() {
            c.failed = Some("no frames were recorded".into());
        }
        // Frames lost at the end repeat the last one too.
        let total = self.total_slots(&c);
        if c.failed.is_none() {
            while c.written < total {
                let Some(prev) = c.last.take() else { break };
                let ok = self.write(&mut c, &prev);
                c.last = Some(prev);
                c.repeated += 1;
                if !ok {
                    break;
                }
            }
        }
        let Some((child, stdin)) = c.child.take() else {
            let reason = c.failed.clone().unwrap_or_default();
            return refused(&c, reason);
        };
        drop(stdin);
        let output = child.wait_with_output();
        if let Some(reason) = c.failed.clone() {
            return refused(&c, reason);
        }
        match output {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                let err = String::from_utf8_lossy(&out.stderr);
                let line = err.lines().last().unwrap_or("").trim().to_string();
                return refused(&c, format!("ffmpeg failed ({}): {line}", out.status));
            }
            Err(e) => return refused(&c, format!("ffmpeg: {e}")),
        }
        let dir = &self.config.spool_dir;
        let poster_path = dir.join(format!("{}.jpg", c.clip));
        let final_path = dir.join(format!("{}.mp4", c.clip));
        let poster = c.poster.take().or_else(|| {
            let (_, _, w, h) = c.crop?;
            c.last.take().map(|px| (w, h, px))
        });
        if let Err(e) = write_poster(&poster_path, poster) {
            return refused(&c, format!("poster frame: {e}"));
        }
        // The record goes first: the MP4's rename is the moment the clip exists, and a record
        // without its MP4 is removed at the next start.
        let record = match std::fs::read(&c.part) {
            Ok(mp4) => ClipRecord {
                clip: c.clip.clone(),
                session: c.session.clone(),
                scene: c.scene.clone(),
                trigger: c.trigger.clone(),
                taken_at_ms: c.taken_at_ms,
                sha256: mirrorsight_photos::spool::sha256_hex(&mp4),
                bytes: mp4.len() as u64,
                uploaded: false,
            },
            Err(e) => {
                let _ = std::fs::remove_file(&poster_path);
                return refused(&c, format!("clip spool {}: {e}", dir.display()));
            }
        };
        let record_path = ClipRecord::record_path(dir, &c.clip);
        let kept = std::fs::set_permissions(&c.part, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| record.write_durably(dir))
            .and_then(|()| sync_file(&c.part))
            .and_then(|()| std::fs::rename(&c.part, &final_path))
            .and_then(|()| sync_dir(dir));
        if let Err(e) = kept {
            let _ = std::fs::remove_file(&poster_path);
            let _ = std::fs::remove_file(&record_path);
            return refused(&c, format!("clip spool {}: {e}", dir.display()));
        }
        let bytes = record.bytes;
        let duration_s = c.written as f64 / self.fps;
        info!(clip = %c.clip, bytes, duration_s, repeated = c.repeated, "clip saved");
        Outcome::Saved {
            event: Box::new(EventKind::ClipSaved {
                session: c.session,
                scene: c.scene,
                clip: c.clip,
                path: final_path.display().to_string(),
                poster: poster_path.display().to_string(),
                duration_s: (duration_s * 1000.0).round() / 1000.0,
                bytes,
                frames_dropped: dropped,
            }),
            record: Box::new(record),
        }
    }
}

fn abort(mut c: Current) {
    if let Some((mut child, stdin)) = c.child.take() {
        drop(stdin);
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_file(&c.part);
    info!(clip = %c.clip, "clip recording abandoned: the shopper left");
}

/// The shopper's region (or the whole frame) as an even-sized crop inside the image, a little
/// wider than the body so a turn stays in the picture.
fn crop_rect(region: Option<[f32; 4]>, width: u32, height: u32) -> (u32, u32, u32, u32) {
    let (fw, fh) = (width as f32, height as f32);
    let [x0, y0, x1, y1] = match region {
        Some(r) if r.iter().all(|v| v.is_finite()) && r[2] > r[0] && r[3] > r[1] => {
            let pad = (r[2] - r[0]) * 0.25;
            [r[0] - pad, r[1], r[2] + pad, r[3]]
        }
        _ => [0.0, 0.0, fw, fh],
    };
    let clamp = |v: f32, max: f32| v.clamp(0.0, max);
    let (x0, x1) = (clamp(x0, fw), clamp(x1, fw));
    let (y0, y1) = (clamp(y0, fh), clamp(y1, fh));
    let even = |v: f32| (v as u32) & !1;
    let (x, y) = (even(x0), even(y0));
    let w = even(x1 - x as f32).max(2).min((width - x) & !1);
    let h = even(y1 - y as f32).max(2).min((height - y) & !1);
    (x, y, w.max(2), h.max(2))
}

fn write_poster(path: &Path, poster: Option<(u32, u32, Vec<u8>)>) -> Result<(), String> {
    let (w, h, px) = poster.ok_or("no frame")?;
    let frame =
        mirrorsight_photos::Frame::new(w, h, mirrorsight_photos::PixelFormat::Rgb8, px, 0.0)
            .map_err(|e| e.to_string())?;
    let mut encoder = mirrorsight_photos::JpegEncoder::new(85).map_err(|e| e.to_string())?;
    let jpeg = encoder.encode(&frame).map_err(|e| e.to_string())?.jpeg;
    // Hidden and ending in `.part`, like the MP4 being written: a crash leaves it for
    // `open_spool` to delete.
    write_spool_file(path, &jpeg).map_err(|e| e.to_string())
}

fn sync_file(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_are_even_and_inside_the_frame() {
        assert_eq!(crop_rect(None, 641, 481), (0, 0, 640, 480));
        let (x, y, w, h) = crop_rect(Some([100.0, 50.0, 301.0, 470.0]), 640, 480);
        assert_eq!((x % 2, y % 2, w % 2, h % 2), (0, 0, 0, 0));
        assert!(x + w <= 640 && y + h <= 480);
        assert!(x < 100 && x + w > 300, "padded around the body");
        let edge = crop_rect(Some([600.0, 0.0, 700.0, 480.0]), 640, 480);
        assert!(edge.0 + edge.2 <= 640);
        assert_eq!(
            crop_rect(Some([f32::NAN, 0.0, 1.0, 1.0]), 64, 48),
            (0, 0, 64, 48)
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let bad = ClipsConfig {
            duration_s: 0.0,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "clips.duration_s");
        assert_eq!(ClipsConfig::default().validate(), Ok(()));
    }
}
