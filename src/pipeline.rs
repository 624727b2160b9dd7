//! The running pipeline: capture thread → bounded frame queue → vision → event dispatcher
//! (actions, then sinks). Data flows one way; every hand-over is an explicit bounded channel.

use std::io::IsTerminal;
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mirrorsight_contract::events::{EndReason, Event, EventKind};
use thiserror::Error;
use tracing::{info, warn};

use crate::actions::Action;
use crate::capture::CaptureScheduler;
use crate::config::{HandsConfig, ModelsConfig, OnnxRuntimeConfig, SourceConfig};
use crate::frame::{Capture, ClipJob, Frame};
use crate::ids::IdGenerator;
use crate::metrics::{Metrics, Stage};
use crate::service::{Health, Shutdown};
use crate::sinks::{EventSink, SinkError};
use crate::source::{FrameQueue, QueuePolicy, Source, SourceError, SourceInfo};
use crate::vision::{VisionError, VisionStage};
use mirrorsight_core::mirror::Mirror;
use mirrorsight_core::observation::Observation;

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Vision(#[from] VisionError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("internal: {0} thread panicked")]
    Panicked(&'static str),
}

#[derive(Clone)]
pub struct RunOptions {
    /// Pace frames at the clip's rate and drop stale ones (live-camera behaviour).
    pub realtime: bool,
    /// Show a progress bar on a terminal.
    pub progress: bool,
    /// Write every frame's observation (body and hand landmarks) as JSON lines here.
    pub dump_observations: Option<std::path::PathBuf>,
    /// The daemon's health, told about every processed frame (`run` only).
    pub health: Option<Arc<Health>>,
    /// Set when the daemon was asked to stop: open sessions end with reason `shutdown`.
    pub shutdown: Option<Shutdown>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            realtime: false,
            progress: true,
            dump_observations: None,
            health: None,
            shutdown: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    pub source: SourceInfo,
    pub frames_captured: u64,
    pub frames_processed: u64,
    pub frames_dropped: u64,
    /// Media time of the last processed frame.
    pub media_s: f64,
    pub wall: Duration,
    /// Process CPU time (every thread) over the same window as `wall`.
    pub cpu: Duration,
    pub events: u64,
    /// Where media time met the wall clock, in a `realtime` run.
    pub media_clock: Option<MediaClock>,
    /// How long the vision thread waited for the capture thread to hand it a frame.
    pub vision_wait: Duration,
    /// Rust heap allocations over the run (every thread), when the binary counts them.
    pub heap: Option<crate::heap::HeapCount>,
}

/// Where media time meets the wall clock in a `realtime` run: the capture thread presents the
/// frame of media time `t` at `due(t)`, as a camera would deliver it. How late an event leaves
/// the pipeline after the media time it is about is the processing delay a shopper sees.
#[derive(Debug, Clone, Copy)]
pub struct MediaClock {
    /// When the first frame was presented.
    pub wall0: Instant,
    /// The first frame's media time.
    pub t0: f64,
}

impl MediaClock {
    /// When the frame of media time `t` was presented.
    pub fn due(&self, t: f64) -> Instant {
        self.wall0 + Duration::from_secs_f64((t - self.t0).max(0.0))
    }

    /// How long after media time `t` the wall clock read `at` (zero if before).
    pub fn late(&self, t: f64, at: Instant) -> Duration {
        at.saturating_duration_since(self.due(t))
    }
}

/// The config sections the pipeline runs on, each validated at load
/// ([`crate::config::Config::pipeline_sections`] borrows them from the loaded config).
#[derive(Debug, Clone, Copy)]
pub struct PipelineSections<'a> {
    /// `queue_frames`: replay's read-ahead.
    pub source: &'a SourceConfig,
    /// `mirrored`: which way a swipe goes for the shopper.
    pub camera: &'a crate::source::CameraSettings,
    pub onnxruntime: &'a OnnxRuntimeConfig,
    pub models: &'a ModelsConfig,
    pub presence: &'a crate::config::PresenceConfig,
    pub session: &'a crate::config::SessionConfig,
    pub hands: &'a HandsConfig,
    pub gestures: &'a crate::gesture::GestureConfig,
    /// The capture scheduler's ring, best-frame window and countdown.
    pub photos: &'a mirrorsight_photos::PhotosConfig,
    pub clips: &'a crate::actions::clips::ClipsConfig,
}

/// Runs a source to its end through vision and the given actions and sinks.
pub fn run(
    config: &PipelineSections<'_>,
    source: Box<dyn Source>,
    ids: IdGenerator,
    actions: Vec<Box<dyn Action>>,
    sinks: Vec<Box<dyn EventSink>>,
    metrics: Arc<Metrics>,
    opts: &RunOptions,
) -> Result<RunSummary, PipelineError> {
    let info = source.info().clone();
    let mut driver = Driver {
        vision: VisionStage::new(
            config.onnxruntime,
            config.models,
            config.presence,
            config.hands,
            metrics.clone(),
        )?,
        mirror: Mirror::new(
            config.presence.clone(),
            config.session.clone(),
            config.gestures.clone(),
            config.camera.mirrored,
            ids,
        ),
        observation: Observation::default(),
        metrics: metrics.clone(),
    };
    let mut clips = config.clips.enabled.then(|| {
        mirrorsight_core::clip::ClipScheduler::new(
            config.photos.countdown_s,
            config.clips.duration_s,
        )
    });
    let mut photos = CaptureScheduler::<Frame>::new(
        config.photos.ring_frames,
        config.photos.best_frame_window_s,
        config.photos.countdown_s,
        config.photos.capture_on_outfit_switch,
    );
    let policy = if opts.realtime {
        QueuePolicy::DropOldest
    } else {
        QueuePolicy::Block
    };
    // A live picture is only worth one frame of buffering; replay may read ahead a little.
    let capacity = if opts.realtime {
        1
    } else {
        config.source.queue_frames
    };
    let (queue, frames) = FrameQueue::new(capacity, policy);
    let started = Instant::now();
    let cpu_started = crate::bench::process_cpu_time();
    let heap_started = crate::heap::HeapCount::now();

    let capture_metrics = metrics.clone();
    let realtime = opts.realtime;
    let media_clock = Arc::new(OnceLock::new());
    let capture_clock = realtime.then(|| media_clock.clone());
    let capture = thread::Builder::new()
        .name("capture".into())
        .spawn(move || capture_loop(source, queue, capture_clock, capture_metrics))
        .map_err(|_| PipelineError::Panicked("capture"))?;

    let mut sinks = sinks;
    sinks.push(Box::new(crate::sinks::metrics::MetricsSink::new(
        metrics.clone(),
    )));
    let (event_tx, event_rx) = bounded::<Item>(1024);
    let dispatcher = thread::Builder::new()
        .name("events".into())
        .spawn(move || {
            Dispatcher {
                actions,
                sinks,
                first_error: None,
            }
            .run(event_rx)
        })
        .map_err(|_| PipelineError::Panicked("events"))?;

    let mut dump = match &opts.dump_observations {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|source| SinkError::Io {
                path: path.clone(),
                source,
            })?,
        )),
        None => None,
    };
    let progress = progress_bar(opts.progress, info.frames);
    let mut out = Vec::new();
    let mut processed = 0u64;
    let mut vision_result = Ok(());
    let mut last_t = 0.0;
    let mut vision_wait = Duration::ZERO;
    loop {
        let waiting = Instant::now();
        let Some(frame) = frames.recv() else { break };
        let frame_started = Instant::now();
        vision_wait += frame_started - waiting;
        if let Err(e) = driver.step(&frame, &mut out) {
            vision_result = Err(e);
            break;
        }
        metrics.record(Stage::Frame, frame_started.elapsed());
        last_t = frame.t;
        processed += 1;
        progress.set_position(frame.seq + 1);
        let region = driver.mirror.shopper_region(frame.t);
        let captures = photos.on_frame(&frame, &mut out, region);
        let clip_work = clips
            .as_mut()
            .map(|c| c.on_frame(&frame, &mut out, region))
            .unwrap_or_default();
        if let (Some(w), Some(path)) = (dump.as_mut(), opts.dump_observations.as_ref()) {
            use std::io::Write;
            let line = serde_json::to_string(&driver.observation).unwrap_or_default();
            writeln!(w, "{line}").map_err(|source| SinkError::Io {
                path: path.clone(),
                source,
            })?;
        }
        let delivered = send_all(&event_tx, &mut out, &metrics)
            && captures
                .into_iter()
                .all(|c| event_tx.send(Item::Capture(c)).is_ok())
            && clip_work
                .into_iter()
                .all(|w| event_tx.send(Item::Clip(w)).is_ok())
            && event_tx
                .send(Item::Tick {
                    t: frame.t,
                    shopper_x: driver.mirror.shopper_region(frame.t).map(|r| {
                        f64::from(r[0] + r[2]) / 2.0 / f64::from(frame.image.width.max(1))
                    }),
                })
                .is_ok();
        if !delivered {
            break;
        }
        if let Some(health) = &opts.health {
            health.frame_processed(frame.seq, Instant::now());
            health.set_dropped(frames.dropped());
        }
        metrics
            .frames_dropped
            .store(frames.dropped(), std::sync::atomic::Ordering::Relaxed);
    }
    drop(frames);
    let capture_result = capture
        .join()
        .map_err(|_| PipelineError::Panicked("capture"))?;
    let dropped = capture_result.as_ref().map(|(_, d)| *d).unwrap_or(0);
    metrics
        .frames_dropped
        .store(dropped, std::sync::atomic::Ordering::Relaxed);
    // Whatever happened upstream, take the photos still counting down and close the open
    // session, so the stream is complete.
    for capture in photos.finish(driver.mirror.shopper_region(last_t)) {
        let _ = event_tx.send(Item::Capture(capture));
    }
    // A clip being recorded keeps what it has.
    for work in clips.as_mut().map(|c| c.finish(last_t)).unwrap_or_default() {
        let _ = event_tx.send(Item::Clip(work));
    }
    let stopping = opts.shutdown.as_ref().is_some_and(Shutdown::is_triggered);
    driver.mirror.finish(
        last_t,
        if stopping {
            EndReason::Shutdown
        } else {
            EndReason::EndOfStream
        },
        &mut out,
    );
    let captured = capture_result.as_ref().map(|(n, _)| *n).unwrap_or(0);
    out.push(Event::new(
        last_t,
        EventKind::SourceEnded { frames: captured },
    ));
    send_all(&event_tx, &mut out, &metrics);
    drop(event_tx);
    let sink_result = dispatcher
        .join()
        .map_err(|_| PipelineError::Panicked("events"))?;
    progress.finish_and_clear();

    vision_result?;
    let (frames_captured, frames_dropped) = capture_result?;
    sink_result?;
    let summary = RunSummary {
        media_s: last_t,
        frames_captured,
        frames_processed: processed,
        frames_dropped,
        wall: started.elapsed(),
        cpu: crate::bench::process_cpu_time().saturating_sub(cpu_started),
        events: Metrics::get(&metrics.events_emitted),
        source: info,
        media_clock: media_clock.get().copied(),
        vision_wait,
        heap: crate::heap::HeapCount::now().since(heap_started),
    };
    Ok(summary)
}

/// Drives vision and the core through one frame: vision measures, the core decides.
struct Driver {
    vision: VisionStage,
    mirror: Mirror,
    /// What vision saw of the shopper in the latest frame (for `--dump-observations`).
    observation: Observation,
    metrics: Arc<Metrics>,
}

impl Driver {
    fn step(&mut self, frame: &Frame, out: &mut Vec<Event>) -> Result<(), VisionError> {
        let t = frame.t;
        let motion = self.vision.motion(&frame.image);
        let mut detected = None;
        if self.mirror.detection_due(t, &motion) {
            let people = self.vision.detect_people(&frame.image)?;
            let decided = Instant::now();
            let before = out.len();
            let size = [frame.image.width, frame.image.height];
            self.mirror.observe_people(t, size, &people, &motion, out);
            for e in &out[before..] {
                if matches!(e.kind, EventKind::SessionStarted { .. }) {
                    Metrics::inc(&self.metrics.sessions_started);
                }
            }
            self.metrics.record(Stage::Tracking, decided.elapsed());
            detected = Some(people);
        }
        self.observation =
            self.vision
                .observe_body(frame, self.mirror.shopper(t), self.mirror.session())?;
        self.observation.people = detected;
        self.mirror.observe_body(&self.observation, out);
        Metrics::inc(&self.metrics.frames_processed);
        Ok(())
    }
}

/// What vision hands to the dispatcher, in stream order.
enum Item {
    Event(Event),
    /// A photo is due.
    Capture(Capture),
    /// Work for the turn-around clip being recorded.
    Clip(ClipJob),
    /// Media time moved on (one per frame); where the shopper's body is in that frame, as a
    /// fraction of the image's width.
    Tick {
        t: f64,
        shopper_x: Option<f64>,
    },
}

fn send_all(tx: &Sender<Item>, out: &mut Vec<Event>, metrics: &Metrics) -> bool {
    for e in out.drain(..) {
        Metrics::inc(&metrics.events_emitted);
        if tx.send(Item::Event(e)).is_err() {
            return false;
        }
    }
    true
}

/// Returns (frames captured, frames dropped). With a `clock` (realtime), each frame is
/// presented at its media time, and the clock says where media time met the wall clock.
fn capture_loop(
    mut source: Box<dyn Source>,
    queue: FrameQueue,
    clock: Option<Arc<OnceLock<MediaClock>>>,
    metrics: Arc<Metrics>,
) -> Result<(u64, u64), SourceError> {
    let mut captured = 0;
    loop {
        let decode_started = Instant::now();
        let Some(frame) = source.next_frame()? else {
            break;
        };
        metrics.record(Stage::Decode, decode_started.elapsed());
        if let Some(clock) = &clock {
            // Present each frame when a camera would have: at its media time.
            let due = clock
                .get_or_init(|| MediaClock {
                    wall0: Instant::now(),
                    t0: frame.t,
                })
                .due(frame.t);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
        captured += 1;
        Metrics::inc(&metrics.frames_captured);
        if !queue.push(frame) {
            break;
        }
    }
    Ok((captured, queue.dropped()))
}

/// Runs actions and sinks on the event stream, in stream order, on its own thread.
struct Dispatcher {
    actions: Vec<Box<dyn Action>>,
    sinks: Vec<Box<dyn EventSink>>,
    first_error: Option<SinkError>,
}

impl Dispatcher {
    fn run(mut self, rx: Receiver<Item>) -> Result<(), SinkError> {
        for item in rx.iter() {
            match item {
                Item::Event(event) => self.process(vec![event]),
                Item::Capture(capture) => {
                    let mut emitted = Vec::new();
                    self.actions
                        .iter_mut()
                        .for_each(|a| a.on_capture(&capture, &mut emitted));
                    self.process(emitted);
                }
                Item::Clip(work) => {
                    let mut emitted = Vec::new();
                    self.actions
                        .iter_mut()
                        .for_each(|a| a.on_clip(&work, &mut emitted));
                    self.process(emitted);
                }
                Item::Tick { t, shopper_x } => {
                    let mut emitted = Vec::new();
                    self.actions.iter_mut().for_each(|a| {
                        a.observe_shopper(shopper_x);
                        a.poll(t, &mut emitted)
                    });
                    self.process(emitted);
                    self.sinks.iter_mut().for_each(|s| s.tick(t));
                }
            }
        }
        // End of stream: actions finish what is in flight (bounded), then sinks flush.
        let mut tail = Vec::new();
        self.actions.iter_mut().for_each(|a| a.finish(&mut tail));
        self.process(tail);
        for sink in self.sinks.iter_mut() {
            if let Err(err) = sink.flush() {
                self.first_error.get_or_insert(err);
            }
        }
        info!("event stream closed");
        self.first_error.map_or(Ok(()), Err)
    }

    /// Acts on and delivers events. Events that actions emit are acted on in turn and
    /// delivered right after the event that caused them, so the order is reproducible.
    fn process(&mut self, mut pending: Vec<Event>) {
        let mut i = 0;
        while i < pending.len() {
            let mut emitted = Vec::new();
            for action in self.actions.iter_mut() {
                action.on_event(&pending[i], &mut emitted);
            }
            pending.splice(i + 1..i + 1, emitted);
            i += 1;
        }
        for event in &pending {
            for sink in self.sinks.iter_mut() {
                if let Err(err) = sink.handle(event) {
                    warn!(error = %err, "event sink failed");
                    self.first_error.get_or_insert(err);
                }
            }
        }
    }
}

fn progress_bar(enabled: bool, frames: Option<u64>) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(frames, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {pos}/{len} frames {per_sec} [{elapsed_precise}] {wide_bar}",
    ) {
        bar.set_style(style);
    }
    bar
}
