//! systemd readiness and watchdog.
//!
//! [`WatchdogCore`] is the decision, free of IO and clocks: it is told when frames were
//! processed and when the camera was being reopened, and on each tick says which
//! notifications to send. It pings `WATCHDOG=1` only while frames actually get through the
//! whole pipeline, so a frozen camera or a stuck stage stops the pings and systemd restarts
//! the daemon. A camera that is being reopened keeps it fed for a bounded grace period, so an
//! unplug is ridden out in-process but a camera that never comes back still ends in a restart.
//!
//! [`WatchdogThread`] runs the core against [`Health`] and a [`Notifier`].

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::{Health, ServiceConfig, ServiceError, Shutdown};
use crate::source::ReconnectOptions;

/// One sd_notify message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notify {
    /// Start-up finished: the camera delivers and frames get processed.
    Ready,
    /// Keep-alive.
    Watchdog,
    /// Free text for `systemctl status`.
    Status(String),
    /// Shutdown began.
    Stopping,
    /// A reload began; send [`Notify::Ready`] when it is done.
    Reloading,
}

impl Notify {
    /// The datagram payload (`KEY=VALUE` lines).
    pub fn payload(&self) -> String {
        match self {
            Notify::Ready => "READY=1".into(),
            Notify::Watchdog => "WATCHDOG=1".into(),
            // A newline would start a new assignment: keep the status on one line.
            Notify::Status(s) => format!("STATUS={}", s.replace(['\n', '\r'], " ")),
            Notify::Stopping => "STOPPING=1".into(),
            Notify::Reloading => "RELOADING=1".into(),
        }
    }
}

/// Where notifications go.
pub trait Notifier: Send + Sync {
    fn notify(&self, message: &Notify) -> io::Result<()>;
}

/// Datagrams to `$NOTIFY_SOCKET` (a path, or an abstract name starting with '@').
#[derive(Debug)]
pub struct SystemdNotifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    label: String,
}

impl SystemdNotifier {
    /// From `$NOTIFY_SOCKET`; `Ok(None)` when not started by systemd (or with `NotifyAccess=none`).
    pub fn from_env() -> Result<Option<Self>, ServiceError> {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(path) if !path.is_empty() => Self::connect(&path).map(Some),
            _ => Ok(None),
        }
    }

    pub fn connect(path: &str) -> Result<Self, ServiceError> {
        let err = |reason: String| ServiceError::NotifySocket {
            path: path.to_string(),
            reason,
        };
        let addr = if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes()).map_err(|e| err(e.to_string()))?
        } else if path.starts_with('/') {
            SocketAddr::from_pathname(path).map_err(|e| err(e.to_string()))?
        } else {
            return Err(err(
                "unsupported address (expected a path or an @abstract name)".into(),
            ));
        };
        let socket = UnixDatagram::unbound().map_err(|e| err(e.to_string()))?;
        Ok(Self {
            socket,
            addr,
            label: path.to_string(),
        })
    }
}

impl Notifier for SystemdNotifier {
    fn notify(&self, message: &Notify) -> io::Result<()> {
        let payload = message.payload();
        self.socket.send_to_addr(payload.as_bytes(), &self.addr)?;
        debug!(socket = %self.label, %payload, "sd_notify");
        Ok(())
    }
}

/// Not under systemd: notifications go nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopNotifier;

impl Notifier for NoopNotifier {
    fn notify(&self, _message: &Notify) -> io::Result<()> {
        Ok(())
    }
}

/// Keeps what was sent, for tests.
#[derive(Debug, Default, Clone)]
pub struct RecordingNotifier {
    sent: Arc<Mutex<Vec<Notify>>>,
}

impl RecordingNotifier {
    pub fn messages(&self) -> Vec<Notify> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn count(&self, message: &Notify) -> usize {
        self.messages().iter().filter(|m| *m == message).count()
    }
}

impl Notifier for RecordingNotifier {
    fn notify(&self, message: &Notify) -> io::Result<()> {
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message.clone());
        Ok(())
    }
}

/// The systemd notifier when `$NOTIFY_SOCKET` is set, else a no-op. A broken socket is
/// logged, not fatal: the daemon works without systemd.
pub fn notifier_from_env() -> Arc<dyn Notifier> {
    match SystemdNotifier::from_env() {
        Ok(Some(n)) => Arc::new(n),
        Ok(None) => Arc::new(NoopNotifier),
        Err(e) => {
            warn!(error = %e, "not notifying systemd");
            Arc::new(NoopNotifier)
        }
    }
}

/// systemd's watchdog timeout (`WatchdogSec=`), when it applies to this process.
pub fn watchdog_timeout_from_env() -> Option<Duration> {
    parse_watchdog_env(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// `WATCHDOG_USEC` (and `WATCHDOG_PID`, which when set must be ours, as sd_watchdog_enabled
/// checks) → the timeout. Invalid or zero values mean no watchdog.
pub fn parse_watchdog_env(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(own_pid)
    {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Longer than the unit's `TimeoutStartSec=90`, so start-up failures are reported as such.
const STARTUP_GRACE: Duration = Duration::from_secs(120);

/// What the core needs to decide; build it with [`WatchdogSettings::new`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WatchdogSettings {
    /// Ping period (half the systemd timeout); `None` = no watchdog pings at all.
    pub ping_every: Option<Duration>,
    /// Frames older than this make the STATUS say "stalled".
    pub stall_after: Duration,
    /// How long reconnect attempts alone keep the watchdog fed.
    pub reconnect_grace: Duration,
    /// Attempts at most this far apart show a live retry loop.
    pub attempt_window: Duration,
    /// Before the first frame (models loading, camera opening) keep systemd's watchdog fed
    /// this long: systemd counts the watchdog from process start, but a slow start-up is
    /// `TimeoutStartSec=`'s business (no READY=1 in time), not the watchdog's.
    pub startup_grace: Duration,
}

impl WatchdogSettings {
    /// `timeout` is [`watchdog_timeout_from_env`]; `reconnect` the camera's retry options.
    pub fn new(
        service: &ServiceConfig,
        timeout: Option<Duration>,
        reconnect: &ReconnectOptions,
    ) -> Self {
        Self {
            ping_every: timeout.filter(|_| service.watchdog).map(|t| t / 2),
            stall_after: service.health_settings().stall_after,
            reconnect_grace: service.reconnect_grace(),
            // The longest backoff plus time for an open (format negotiation can take seconds).
            attempt_window: reconnect.max_backoff
                + reconnect.stall_timeout
                + Duration::from_secs(5),
            startup_grace: STARTUP_GRACE,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Streaming,
    Reconnecting,
    Stalled,
}

impl Phase {
    fn text(self) -> &'static str {
        match self {
            Phase::Starting => "starting: waiting for the first frame",
            Phase::Streaming => "streaming",
            Phase::Reconnecting => "camera lost: reopening it",
            Phase::Stalled => "stalled: no frames get through the pipeline",
        }
    }
}

/// The sans-IO decision core (see the module docs). All instants come from the caller.
#[derive(Debug, Clone)]
pub struct WatchdogCore {
    settings: WatchdogSettings,
    started: Instant,
    last_frame: Option<Instant>,
    frame_since_ping: bool,
    last_attempt: Option<Instant>,
    last_ping: Option<Instant>,
    ready_sent: bool,
    phase: Option<Phase>,
    stopping: bool,
}

impl WatchdogCore {
    pub fn new(settings: WatchdogSettings, started: Instant) -> Self {
        Self {
            settings,
            started,
            last_frame: None,
            frame_since_ping: false,
            last_attempt: None,
            last_ping: None,
            ready_sent: false,
            phase: None,
            stopping: false,
        }
    }

    pub fn settings(&self) -> &WatchdogSettings {
        &self.settings
    }

    /// A frame made it through the pipeline at `at`. Repeats of the same instant are ignored,
    /// so the caller may simply feed the latest "last processed" value every tick.
    pub fn frame(&mut self, at: Instant) {
        if self.last_frame.is_none_or(|last| at > last) {
            self.last_frame = Some(at);
            self.frame_since_ping = true;
        }
    }

    /// The source tried to (re)open at `at`. Repeats are ignored like in [`Self::frame`].
    pub fn reconnect_attempt(&mut self, at: Instant) {
        if self.last_attempt.is_none_or(|last| at > last) {
            self.last_attempt = Some(at);
        }
    }

    /// What to send now.
    pub fn tick(&mut self, now: Instant) -> Vec<Notify> {
        let mut out = Vec::new();
        if self.stopping {
            return out;
        }
        if !self.ready_sent && self.last_frame.is_some() {
            self.ready_sent = true;
            out.push(Notify::Ready);
        }
        let phase = self.phase(now);
        if self.phase != Some(phase) {
            self.phase = Some(phase);
            out.push(Notify::Status(phase.text().into()));
        }
        if let Some(every) = self.settings.ping_every {
            let due = self
                .last_ping
                .is_none_or(|p| now.saturating_duration_since(p) >= every);
            if due && (self.frames_flow(now, every) || self.starting(now) || self.retrying(now)) {
                self.last_ping = Some(now);
                self.frame_since_ping = false;
                out.push(Notify::Watchdog);
            }
        }
        out
    }

    /// Shutdown began: `STOPPING=1`, once; nothing after it.
    pub fn stopping(&mut self) -> Vec<Notify> {
        if std::mem::replace(&mut self.stopping, true) {
            Vec::new()
        } else {
            vec![Notify::Stopping]
        }
    }

    /// A new frame since the last ping, and a recent one: the pipeline moves.
    fn frames_flow(&self, now: Instant, every: Duration) -> bool {
        self.frame_since_ping
            && self
                .last_frame
                .is_some_and(|f| now.saturating_duration_since(f) <= every)
    }

    /// No frame yet, and start-up has not taken unreasonably long.
    fn starting(&self, now: Instant) -> bool {
        self.last_frame.is_none()
            && now.saturating_duration_since(self.started) < self.settings.startup_grace
    }

    /// Frames stopped, but the source keeps trying to reopen, and not for too long yet.
    fn retrying(&self, now: Instant) -> bool {
        let Some(outage_start) = self.last_frame else {
            return false;
        };
        self.last_attempt.is_some_and(|a| {
            a >= outage_start && now.saturating_duration_since(a) <= self.settings.attempt_window
        }) && now.saturating_duration_since(outage_start) < self.settings.reconnect_grace
    }

    fn phase(&self, now: Instant) -> Phase {
        match self.last_frame {
            Some(f) if now.saturating_duration_since(f) <= self.settings.stall_after => {
                Phase::Streaming
            }
            Some(f) if self.last_attempt.is_some_and(|a| a >= f) => Phase::Reconnecting,
            Some(_) => Phase::Stalled,
            None => Phase::Starting,
        }
    }
}

/// Runs a [`WatchdogCore`] on its own thread against shared [`Health`].
pub struct WatchdogThread {
    handle: Option<JoinHandle<()>>,
}

impl WatchdogThread {
    /// Ticks until `shutdown`, then marks `health` as stopping, sends `STOPPING=1` and ends.
    pub fn spawn(
        mut core: WatchdogCore,
        notifier: Arc<dyn Notifier>,
        health: Arc<Health>,
        shutdown: Shutdown,
    ) -> Result<Self, ServiceError> {
        // Several ticks per ping period so a ping is never late by more than a fraction of it.
        let tick = core
            .settings()
            .ping_every
            .map_or(Duration::from_millis(500), |p| p / 4)
            .clamp(Duration::from_millis(5), Duration::from_millis(500));
        let handle = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                if let Some(every) = core.settings().ping_every {
                    info!(
                        ping_every_s = every.as_secs_f64(),
                        "systemd watchdog enabled"
                    );
                }
                let mut failing = false;
                let mut send = |m: &Notify| match notifier.notify(m) {
                    Ok(()) => failing = false,
                    Err(e) => {
                        // Log the first failure of a run only: systemd may be gone for good.
                        if !std::mem::replace(&mut failing, true) {
                            warn!(error = %e, message = %m.payload(), "sd_notify failed");
                        }
                    }
                };
                loop {
                    if let Some(at) = health.last_processed() {
                        core.frame(at);
                    }
                    if let Some(at) = health.source().and_then(|s| s.snapshot().last_attempt) {
                        core.reconnect_attempt(at);
                    }
                    for m in core.tick(health.now()) {
                        if m == Notify::Ready {
                            info!("first frame processed: ready");
                        }
                        send(&m);
                    }
                    if shutdown.wait_timeout(tick) {
                        break;
                    }
                }
                // Whoever polls /healthz learns at once that this instance is draining.
                health.set_stopping();
                for m in core.stopping() {
                    send(&m);
                }
            })
            .map_err(|source| ServiceError::Thread {
                what: "watchdog",
                source,
            })?;
        Ok(Self {
            handle: Some(handle),
        })
    }

    /// Waits for the thread (it ends promptly once shutdown is triggered).
    pub fn join(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn settings(timeout: Duration) -> WatchdogSettings {
        WatchdogSettings {
            ping_every: Some(timeout / 2),
            stall_after: 2 * SEC,
            reconnect_grace: 60 * SEC,
            attempt_window: 20 * SEC,
            startup_grace: Duration::ZERO,
        }
    }

    /// Drives the core at 100 ms ticks; `frames(t)` says whether a frame is processed at t.
    fn run(
        core: &mut WatchdogCore,
        t0: Instant,
        from_ms: u64,
        to_ms: u64,
        frames: impl Fn(u64) -> bool,
        attempts: impl Fn(u64) -> bool,
        sent: &mut Vec<(u64, Notify)>,
    ) {
        for ms in (from_ms..to_ms).step_by(100) {
            let now = t0 + Duration::from_millis(ms);
            if frames(ms) {
                core.frame(now);
            }
            if attempts(ms) {
                core.reconnect_attempt(now);
            }
            sent.extend(core.tick(now).into_iter().map(|m| (ms, m)));
        }
    }

    fn pings(sent: &[(u64, Notify)]) -> Vec<u64> {
        sent.iter()
            .filter(|(_, m)| *m == Notify::Watchdog)
            .map(|(t, _)| *t)
            .collect()
    }

    #[test]
    fn pings_only_while_frames_flow_and_resume_with_them() {
        let t0 = Instant::now();
        let timeout = 10 * SEC;
        let mut core = WatchdogCore::new(settings(timeout), t0);
        let mut sent = Vec::new();
        // Frames for 20 s, none for 30 s (frozen: no reconnect attempts), then frames again.
        run(&mut core, t0, 0, 20_000, |_| true, |_| false, &mut sent);
        run(
            &mut core,
            t0,
            20_000,
            50_000,
            |_| false,
            |_| false,
            &mut sent,
        );
        run(
            &mut core,
            t0,
            50_000,
            70_000,
            |_| true,
            |_| false,
            &mut sent,
        );

        let p = pings(&sent);
        let before: Vec<u64> = p.iter().copied().filter(|&t| t < 20_000).collect();
        assert_eq!(before, [0, 5_000, 10_000, 15_000]);
        // The last frame was at 19.9 s: at most one more ping, within one ping interval.
        let during: Vec<u64> = p
            .iter()
            .copied()
            .filter(|&t| (20_000..50_000).contains(&t))
            .collect();
        assert!(during.iter().all(|&t| t <= 19_900 + 5_000), "{during:?}");
        assert!(during.len() <= 1, "{during:?}");
        // So systemd, waiting 10 s after the last ping, fires well before frames return.
        let last = during.last().copied().unwrap_or(15_000);
        assert!(last + 10_000 < 50_000);
        // Pings resume at once with the frames.
        let after: Vec<u64> = p.iter().copied().filter(|&t| t >= 50_000).collect();
        assert_eq!(after.first(), Some(&50_000), "{p:?}");
        assert!(after.len() >= 4, "{after:?}");

        // READY=1 exactly once, at the first frame.
        let ready: Vec<u64> = sent
            .iter()
            .filter(|(_, m)| *m == Notify::Ready)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(ready, [0]);
        let statuses: Vec<&str> = sent
            .iter()
            .filter_map(|(_, m)| match m {
                Notify::Status(s) => Some(s.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            statuses,
            [
                Phase::Streaming.text(),
                Phase::Stalled.text(),
                Phase::Streaming.text()
            ]
        );
    }

    #[test]
    fn start_up_is_fed_for_its_grace_but_ready_waits_for_a_frame() {
        let t0 = Instant::now();
        let mut s = settings(10 * SEC);
        s.startup_grace = 12 * SEC;
        let mut core = WatchdogCore::new(s, t0);
        let mut sent = Vec::new();
        run(&mut core, t0, 0, 30_000, |_| false, |_| false, &mut sent);
        assert_eq!(pings(&sent), [0, 5_000, 10_000]);
        assert!(!sent.iter().any(|(_, m)| *m == Notify::Ready));
    }

    #[test]
    fn no_ready_and_no_pings_before_the_first_frame() {
        let t0 = Instant::now();
        let mut core = WatchdogCore::new(settings(10 * SEC), t0);
        let mut sent = Vec::new();
        run(&mut core, t0, 0, 30_000, |_| false, |_| false, &mut sent);
        assert!(pings(&sent).is_empty());
        assert!(!sent.iter().any(|(_, m)| *m == Notify::Ready));
        assert_eq!(sent, [(0, Notify::Status(Phase::Starting.text().into()))]);
        run(
            &mut core,
            t0,
            30_000,
            30_500,
            |ms| ms == 30_300,
            |_| false,
            &mut sent,
        );
        assert_eq!(sent.iter().filter(|(_, m)| *m == Notify::Ready).count(), 1);
        assert_eq!(pings(&sent), [30_300]);
    }

    #[test]
    fn reconnecting_camera_keeps_it_fed_for_the_grace_period_only() {
        let t0 = Instant::now();
        let mut s = settings(10 * SEC);
        s.reconnect_grace = 30 * SEC;
        let mut core = WatchdogCore::new(s, t0);
        let mut sent = Vec::new();
        run(&mut core, t0, 0, 10_000, |_| true, |_| false, &mut sent);
        // Unplugged at 10 s: attempts every 10 s (the max backoff), for a long time.
        run(
            &mut core,
            t0,
            10_000,
            100_000,
            |_| false,
            |ms| ms % 10_000 == 5_000,
            &mut sent,
        );
        let p = pings(&sent);
        let during: Vec<u64> = p.iter().copied().filter(|&t| t >= 10_000).collect();
        // Fed with gaps of one ping interval (never the 10 s timeout) until the grace ends
        // (last frame 9.9 s + 30 s), then starved.
        assert!(!during.is_empty());
        assert!(
            during.windows(2).all(|w| w[1] - w[0] <= 5_100),
            "{during:?}"
        );
        assert!(during.iter().all(|&t| t <= 9_900 + 30_000), "{during:?}");
        assert!(
            *during.last().unwrap() >= 9_900 + 30_000 - 5_100,
            "{during:?}"
        );
        assert!(
            sent.iter()
                .any(|(_, m)| *m == Notify::Status(Phase::Reconnecting.text().into()))
        );
    }

    #[test]
    fn no_watchdog_configured_means_ready_but_no_pings() {
        let t0 = Instant::now();
        let mut s = settings(10 * SEC);
        s.ping_every = None;
        let mut core = WatchdogCore::new(s, t0);
        let mut sent = Vec::new();
        run(&mut core, t0, 0, 10_000, |_| true, |_| false, &mut sent);
        assert!(pings(&sent).is_empty());
        assert_eq!(sent.iter().filter(|(_, m)| *m == Notify::Ready).count(), 1);
        assert_eq!(core.stopping(), [Notify::Stopping]);
        assert!(core.stopping().is_empty());
        assert!(core.tick(t0 + 20 * SEC).is_empty());
    }

    #[test]
    fn watchdog_env_parsing() {
        assert_eq!(
            parse_watchdog_env(Some("10000000"), None, 42),
            Some(10 * SEC)
        );
        assert_eq!(
            parse_watchdog_env(Some("10000000"), Some("42"), 42),
            Some(10 * SEC)
        );
        assert_eq!(parse_watchdog_env(Some("10000000"), Some("7"), 42), None);
        assert_eq!(parse_watchdog_env(Some("0"), None, 42), None);
        assert_eq!(parse_watchdog_env(Some("ten"), None, 42), None);
        assert_eq!(parse_watchdog_env(None, None, 42), None);

        let service = ServiceConfig::default();
        let s = WatchdogSettings::new(&service, Some(10 * SEC), &ReconnectOptions::default());
        assert_eq!(s.ping_every, Some(5 * SEC));
        let off = ServiceConfig {
            watchdog: false,
            ..ServiceConfig::default()
        };
        let s = WatchdogSettings::new(&off, Some(10 * SEC), &ReconnectOptions::default());
        assert_eq!(s.ping_every, None);
    }

    #[test]
    fn payloads() {
        assert_eq!(Notify::Ready.payload(), "READY=1");
        assert_eq!(Notify::Watchdog.payload(), "WATCHDOG=1");
        assert_eq!(Notify::Stopping.payload(), "STOPPING=1");
        assert_eq!(Notify::Status("a\nb".into()).payload(), "STATUS=a b");
    }
}
