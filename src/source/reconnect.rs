//! [`ReconnectingSource`] keeps any source alive across unplugs, driver resets and freezes
//! while the rest of the daemon keeps running: it reopens with exponential backoff, abandons a
//! read blocked in the driver, and stitches the connections into one continuous timeline.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvError, bounded, select};
use tracing::{debug, info, warn};

use super::health::{ConnectionState, SourceHealth};
use super::stop::StopSignal;
use super::{Source, SourceError, SourceInfo};
use crate::frame::Frame;

/// How [`ReconnectingSource`] retries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReconnectOptions {
    /// Wait before the first reopen after a loss; doubles per failed attempt.
    pub initial_backoff: Duration,
    /// Upper bound of the wait between attempts.
    pub max_backoff: Duration,
    /// No frame for this long from an open source = frozen: abandon it and reopen.
    pub stall_timeout: Duration,
}

impl Default for ReconnectOptions {
    /// What the default `[camera]` settings ask for (`camera.stall_timeout_s = 5`,
    /// `camera.reconnect_max_s = 10`).
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(5),
        }
    }
}

type Delivery = Result<Option<Frame>, SourceError>;

/// One open inner source, read on its own thread so that a read blocked in the driver can be
/// abandoned (a frozen camera never returns from V4L2's poll) and a stop is never stuck.
struct Connection {
    frames: Receiver<Delivery>,
    opened: Instant,
    last_frame: Option<Instant>,
    /// Offset added to the inner timestamps so time keeps running across reconnects.
    t_offset: Option<f64>,
}

/// Wraps a source factory and reopens the source with exponential backoff whenever it errors,
/// ends or stalls. Frames keep increasing `seq` and `t` across reconnects, so the session
/// logic sees one continuous stream with a gap. Returns `Ok(None)` only once `stop` fires.
pub struct ReconnectingSource<F> {
    factory: F,
    info: SourceInfo,
    options: ReconnectOptions,
    stop: StopSignal,
    health: Arc<SourceHealth>,
    connection: Option<Connection>,
    next_attempt: Option<Instant>,
    backoff: Duration,
    ever_connected: bool,
    seq: u64,
    last_t: Option<f64>,
    /// Wall instant of the first frame ever and that frame's own timestamp: the timeline
    /// later connections are mapped onto.
    epoch: Option<(Instant, f64)>,
    /// Failures since frames last flowed, and the last one logged at warn level.
    problems: u64,
    last_logged_problem: Option<String>,
}

enum Wake {
    Delivery(Result<Delivery, RecvError>),
    Stop,
    Timeout,
}

impl<F> ReconnectingSource<F>
where
    F: FnMut() -> Result<Box<dyn Source>, SourceError> + Send,
{
    /// `info` stands in until the first connection (the pipeline reads it once, at start).
    /// Nothing is opened here: the first `next_frame` does, so a missing camera at boot does
    /// not stop the daemon from starting.
    pub fn new(info: SourceInfo, factory: F, options: ReconnectOptions, stop: StopSignal) -> Self {
        Self {
            factory,
            info,
            backoff: options.initial_backoff,
            options,
            stop,
            health: Arc::new(SourceHealth::new(Instant::now())),
            connection: None,
            next_attempt: None,
            ever_connected: false,
            seq: 0,
            last_t: None,
            epoch: None,
            problems: 0,
            last_logged_problem: None,
        }
    }

    pub fn health(&self) -> Arc<SourceHealth> {
        self.health.clone()
    }

    /// Waits for the next attempt (interruptibly) and tries to open the source once.
    fn connect(&mut self) {
        if let Some(at) = self.next_attempt
            && let Some(wait) = at.checked_duration_since(Instant::now())
            && self.stop.wait_timeout(wait)
        {
            return;
        }
        let now = Instant::now();
        self.health.update(|h| h.last_attempt = Some(now));
        let source = match (self.factory)() {
            Ok(source) => source,
            Err(e) => return self.failed(e.to_string()),
        };
        let info = source.info().clone();
        let (tx, rx) = bounded::<Delivery>(1);
        let spawned = thread::Builder::new()
            .name("camera-read".into())
            .spawn(move || {
                let mut source = source;
                loop {
                    let item = source.next_frame();
                    let last = !matches!(item, Ok(Some(_)));
                    // A send error means the wrapper abandoned us (stall or shutdown): close
                    // the source by dropping it.
                    if tx.send(item).is_err() || last {
                        break;
                    }
                }
            });
        if let Err(e) = spawned {
            return self.failed(format!("cannot start the reader thread: {e}"));
        }
        self.info = info;
        if self.ever_connected {
            self.health.update(|h| h.reconnects += 1);
        }
        self.connection = Some(Connection {
            frames: rx,
            opened: now,
            last_frame: None,
            t_offset: None,
        });
    }

    fn schedule_retry(&mut self, now: Instant) {
        self.next_attempt = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(self.options.max_backoff);
    }

    fn failed(&mut self, error: String) {
        self.health.update(|h| h.failed_attempts += 1);
        self.problem("cannot open the source", error);
    }

    fn lose(&mut self, reason: String) {
        // Dropping the receiver lets a blocked reader exit as soon as its read returns.
        self.connection = None;
        self.problem("source lost; reopening", reason);
    }

    fn problem(&mut self, what: &'static str, error: String) {
        let now = Instant::now();
        self.problems += 1;
        // Months of an unplugged camera must not fill the journal: log changes, then sparsely.
        if self.last_logged_problem.as_deref() != Some(error.as_str())
            || self.problems.is_multiple_of(60)
        {
            warn!(
                source = %self.info.name,
                %error,
                attempts = self.problems,
                retry_in_s = self.backoff.as_secs_f64(),
                "{what}"
            );
            self.last_logged_problem = Some(error.clone());
        } else {
            debug!(
                source = %self.info.name,
                %error,
                attempts = self.problems,
                "{what}"
            );
        }
        self.health.update(|h| h.last_error = Some(error));
        self.health.set_state(
            if self.ever_connected {
                ConnectionState::Reconnecting
            } else {
                ConnectionState::Connecting
            },
            now,
        );
        self.schedule_retry(now);
    }

    fn accept(&mut self, mut frame: Frame) -> Frame {
        let now = Instant::now();
        let (epoch, t0) = *self.epoch.get_or_insert_with(|| {
            self.health.update(|h| h.epoch = Some((now, frame.t)));
            (now, frame.t)
        });
        let Some(conn) = self.connection.as_mut() else {
            return frame;
        };
        let first_of_connection = conn.last_frame.is_none();
        conn.last_frame = Some(now);
        // Each connection restarts its own clock; map it onto the first one's by wall time.
        let offset = *conn
            .t_offset
            .get_or_insert_with(|| t0 + now.duration_since(epoch).as_secs_f64() - frame.t);
        let mut t = frame.t + offset;
        if let Some(last) = self.last_t
            && t <= last
        {
            t = last + 1e-6;
        }
        frame.t = t;
        frame.seq = self.seq;
        self.seq += 1;
        self.last_t = Some(t);
        if first_of_connection {
            info!(
                source = %self.info.name,
                after_failures = self.problems,
                "source delivering frames"
            );
            self.backoff = self.options.initial_backoff;
            self.problems = 0;
            self.last_logged_problem = None;
        }
        self.ever_connected = true;
        self.health.set_state(ConnectionState::Connected, now);
        self.health.update(|h| {
            h.last_frame = Some(now);
            h.frames += 1;
        });
        frame
    }
}

impl<F> Source for ReconnectingSource<F>
where
    F: FnMut() -> Result<Box<dyn Source>, SourceError> + Send,
{
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        loop {
            if self.stop.is_triggered() {
                self.connection = None;
                self.health
                    .set_state(ConnectionState::Stopped, Instant::now());
                return Ok(None);
            }
            let Some(conn) = &self.connection else {
                self.connect();
                continue;
            };
            let deadline = conn.last_frame.unwrap_or(conn.opened) + self.options.stall_timeout;
            let Some(wait) = deadline.checked_duration_since(Instant::now()) else {
                self.lose(format!(
                    "no frame for {:.1} s (frozen)",
                    self.options.stall_timeout.as_secs_f64()
                ));
                continue;
            };
            let wake = select! {
                recv(conn.frames) -> d => Wake::Delivery(d),
                recv(self.stop.receiver()) -> _ => Wake::Stop,
                default(wait) => Wake::Timeout,
            };
            match wake {
                Wake::Delivery(Ok(Ok(Some(frame)))) => return Ok(Some(self.accept(frame))),
                Wake::Delivery(Ok(Ok(None))) => self.lose("stream ended".into()),
                Wake::Delivery(Ok(Err(e))) => self.lose(e.to_string()),
                Wake::Delivery(Err(_)) => self.lose("reader thread ended".into()),
                // The loop head handles both: shutdown, or the stall deadline.
                Wake::Stop | Wake::Timeout => {}
            }
        }
    }
}

impl<F> Drop for ReconnectingSource<F> {
    fn drop(&mut self) {
        self.health
            .set_state(ConnectionState::Stopped, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::RgbImage;
    use crate::source::stop::stop_pair;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn info() -> SourceInfo {
        SourceInfo {
            name: "fake".into(),
            width: 2,
            height: 2,
            fps: 100.0,
            frames: None,
        }
    }

    /// Plays a script: frames, errors, end of stream or a freeze.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        Frame,
        Error,
        End,
        Freeze(Duration),
    }

    struct Scripted {
        info: SourceInfo,
        steps: VecDeque<Step>,
        t: f64,
    }

    impl Source for Scripted {
        fn info(&self) -> &SourceInfo {
            &self.info
        }
        fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
            match self.steps.pop_front().unwrap_or(Step::End) {
                Step::Frame => {
                    // Inner time runs with wall time, like a camera's.
                    std::thread::sleep(Duration::from_millis(10));
                    self.t += 0.01;
                    Ok(Some(Frame {
                        seq: 0,
                        t: self.t,
                        image: Arc::new(RgbImage::filled(2, 2, [1, 2, 3])),
                    }))
                }
                Step::Error => Err(SourceError::Decode {
                    path: "/dev/video9".into(),
                    frame: 0,
                    reason: "camera read failed: No such device".into(),
                }),
                Step::End => Ok(None),
                Step::Freeze(d) => {
                    std::thread::sleep(d);
                    Ok(None)
                }
            }
        }
    }

    fn fast_options() -> ReconnectOptions {
        ReconnectOptions {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            stall_timeout: Duration::from_millis(150),
        }
    }

    /// A factory that fails `fails` times, then hands out the scripted connections in turn.
    fn factory(
        fails: usize,
        connections: Vec<Vec<Step>>,
    ) -> (
        impl FnMut() -> Result<Box<dyn Source>, SourceError> + Send,
        Arc<AtomicUsize>,
    ) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let mut connections: VecDeque<Vec<Step>> = connections.into();
        let f = move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            if n < fails {
                return Err(SourceError::NotFound {
                    path: "/dev/video9".into(),
                });
            }
            let steps = connections.pop_front().unwrap_or_default();
            Ok(Box::new(Scripted {
                info: info(),
                steps: steps.into(),
                t: 0.0,
            }) as Box<dyn Source>)
        };
        (f, calls)
    }

    fn frames(n: usize) -> Vec<Step> {
        vec![Step::Frame; n]
    }

    #[test]
    fn reopens_after_failed_opens_with_growing_backoff() {
        let (f, calls) = factory(4, vec![frames(3)]);
        let (shutdown, stop) = stop_pair();
        let mut src = ReconnectingSource::new(info(), f, fast_options(), stop);
        let health = src.health();
        let started = Instant::now();
        let frame = src
            .next_frame()
            .unwrap()
            .expect("a frame after the failures");
        let waited = started.elapsed();
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        // 10 + 20 + 40 + 40 ms of backoff, bounded by max_backoff.
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        assert_eq!(frame.seq, 0);
        let h = health.snapshot();
        assert_eq!(h.state, ConnectionState::Connected);
        assert_eq!(h.failed_attempts, 4);
        assert_eq!(h.reconnects, 0);
        assert!(h.last_frame.is_some());
        shutdown.trigger();
        assert!(src.next_frame().unwrap().is_none());
        assert_eq!(health.snapshot().state, ConnectionState::Stopped);
    }

    #[test]
    fn recovers_from_errors_mid_stream_with_continuous_seq_and_time() {
        let mut first = frames(3);
        first.push(Step::Error);
        let mut second = frames(2);
        second.push(Step::End);
        let third = frames(3);
        let (f, calls) = factory(0, vec![first, second, third]);
        let (shutdown, stop) = stop_pair();
        let mut src = ReconnectingSource::new(info(), f, fast_options(), stop);
        let health = src.health();
        let mut seen = Vec::new();
        for _ in 0..8 {
            seen.push(src.next_frame().unwrap().expect("frames keep coming"));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let seqs: Vec<u64> = seen.iter().map(|f| f.seq).collect();
        assert_eq!(seqs, (0..8).collect::<Vec<_>>());
        assert!(
            seen.windows(2).all(|w| w[1].t > w[0].t),
            "time must increase: {:?}",
            seen.iter().map(|f| f.t).collect::<Vec<_>>()
        );
        // The reconnect gap (10 ms backoff + 10 ms until the next frame) shows in media time.
        assert!(
            seen[3].t - seen[2].t >= 0.015,
            "{} {}",
            seen[2].t,
            seen[3].t
        );
        let h = health.snapshot();
        assert_eq!(h.reconnects, 2);
        assert_eq!(h.state, ConnectionState::Connected);
        assert_eq!(h.last_error.as_deref(), Some("stream ended"));
        // Media time of "now" lines up with the frames' own clock.
        let now_t = h.media_time(Instant::now()).unwrap();
        assert!(
            now_t >= seen[7].t && now_t < seen[7].t + 0.5,
            "{now_t} {}",
            seen[7].t
        );
        shutdown.trigger();
        assert!(src.next_frame().unwrap().is_none());
    }

    #[test]
    fn a_frozen_source_is_abandoned_and_reopened() {
        let mut first = frames(2);
        first.push(Step::Freeze(Duration::from_secs(3)));
        let (f, calls) = factory(0, vec![first, frames(2)]);
        let (shutdown, stop) = stop_pair();
        let mut src = ReconnectingSource::new(info(), f, fast_options(), stop);
        let health = src.health();
        src.next_frame().unwrap().unwrap();
        src.next_frame().unwrap().unwrap();
        let started = Instant::now();
        let frame = src.next_frame().unwrap().expect("reopened");
        let waited = started.elapsed();
        assert_eq!(frame.seq, 2);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // About the stall timeout (150 ms) plus backoff, well before the freeze (3 s) ends.
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        assert!(health.snapshot().last_error.unwrap().contains("frozen"));
        shutdown.trigger();
    }

    #[test]
    fn shutdown_interrupts_backoff_and_blocked_reads() {
        // Never opens: shutdown must end a long backoff wait promptly.
        let (f, _) = factory(usize::MAX, vec![]);
        let (shutdown, stop) = stop_pair();
        let opts = ReconnectOptions {
            initial_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(30),
        };
        let mut src = ReconnectingSource::new(info(), f, opts, stop);
        let waiter = std::thread::spawn(move || {
            let started = Instant::now();
            let r = src.next_frame();
            (r.map(|f| f.is_none()).unwrap_or(false), started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(100));
        shutdown.trigger();
        let (ended, took) = waiter.join().unwrap();
        assert!(ended);
        assert!(took < Duration::from_secs(2), "{took:?}");

        // Opens, then blocks inside the read: shutdown still returns at once.
        let (f, _) = factory(0, vec![vec![Step::Freeze(Duration::from_secs(5))]]);
        let (shutdown, stop) = stop_pair();
        let mut src = ReconnectingSource::new(info(), f, opts, stop);
        let waiter = std::thread::spawn(move || {
            let started = Instant::now();
            let r = src.next_frame();
            (r.map(|f| f.is_none()).unwrap_or(false), started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(100));
        shutdown.trigger();
        let (ended, took) = waiter.join().unwrap();
        assert!(ended);
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
}
