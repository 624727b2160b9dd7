//! Signals as plain shared state: SIGTERM/SIGINT trigger a [`Shutdown`] the stages poll or
//! wait on, SIGHUP raises a [`ReloadRequests`] flag that the daemon acts on when it suits it.
//!
//! Handlers never run our code in signal context: signal-hook's self-pipe wakes an ordinary
//! thread, so locking, logging and channel operations are safe there.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};
use tracing::{info, warn};

use crate::source::{StopSignal, StopTrigger, stop_pair};

/// A one-way "stop now" shared by every thread. Cheap to clone.
///
/// The daemon's side of a [`stop_pair`]: stages that only obey (sources) are handed its
/// [`Shutdown::stop_signal`] instead, so they never depend on the service.
#[derive(Clone)]
pub struct Shutdown {
    trigger: StopTrigger,
    signal: StopSignal,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.is_triggered())
            .finish()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        let (trigger, signal) = stop_pair();
        Self { trigger, signal }
    }

    /// Idempotent.
    pub fn trigger(&self) {
        self.trigger.trigger();
    }

    pub fn is_triggered(&self) -> bool {
        self.signal.is_triggered()
    }

    /// Sleeps up to `timeout`; returns true (early) once shutdown is triggered.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.signal.wait_timeout(timeout)
    }

    /// Becomes ready (disconnected) on trigger; for `select!` next to other channels.
    pub fn receiver(&self) -> &Receiver<()> {
        self.signal.receiver()
    }

    /// What a source is handed to stop with.
    pub fn stop_signal(&self) -> StopSignal {
        self.signal.clone()
    }
}

/// SIGHUP requests; the daemon decides what a reload means. Cheap to clone.
#[derive(Clone)]
pub struct ReloadRequests {
    flag: Arc<AtomicBool>,
    tx: Sender<()>,
    rx: Receiver<()>,
}

impl Default for ReloadRequests {
    fn default() -> Self {
        Self::new()
    }
}

impl ReloadRequests {
    pub fn new() -> Self {
        // One slot: several HUPs before the daemon looks collapse into one reload.
        let (tx, rx) = bounded(1);
        Self {
            flag: Arc::new(AtomicBool::new(false)),
            tx,
            rx,
        }
    }

    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
        // Full means a wake-up is already pending; either way the flag carries the request.
        let _ = self.tx.try_send(());
    }

    /// True once per burst of requests (clears the request).
    pub fn take(&self) -> bool {
        while self.rx.try_recv().is_ok() {}
        self.flag.swap(false, Ordering::SeqCst)
    }

    /// Ready when a reload was requested; for `select!`. Call [`Self::take`] after it fires.
    pub fn receiver(&self) -> &Receiver<()> {
        &self.rx
    }
}

/// The installed handlers; [`SignalHandler::close`] restores nothing but stops the thread.
pub struct SignalHandler {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

/// Installs SIGTERM/SIGINT → `shutdown` and SIGHUP → `reload`.
///
/// A second SIGTERM/SIGINT while already shutting down exits at once with status 130: an
/// operator pressing Ctrl-C twice wants out even if a stage hangs (systemd sends SIGTERM once
/// and escalates to SIGKILL itself, so this never shortens its clean stop).
pub fn install(shutdown: Shutdown, reload: ReloadRequests) -> io::Result<SignalHandler> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let handle = signals.handle();
    let thread = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let stops = AtomicU32::new(0);
            for signal in signals.forever() {
                match signal {
                    SIGHUP => {
                        info!("SIGHUP: reload requested");
                        reload.request();
                    }
                    SIGTERM | SIGINT => {
                        let name = if signal == SIGTERM {
                            "SIGTERM"
                        } else {
                            "SIGINT"
                        };
                        if stops.fetch_add(1, Ordering::SeqCst) == 0 {
                            info!(signal = name, "shutting down: finishing in-flight work");
                            shutdown.trigger();
                        } else {
                            warn!(signal = name, "second stop signal: exiting immediately");
                            std::process::exit(130);
                        }
                    }
                    _ => {}
                }
            }
        })?;
    Ok(SignalHandler {
        handle,
        thread: Some(thread),
    })
}

impl SignalHandler {
    /// Stops listening (the handlers stay registered but no longer act).
    pub fn close(mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn shutdown_wakes_a_waiting_thread_early() {
        let s = Shutdown::new();
        let waiter = {
            let s = s.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let woke = s.wait_timeout(Duration::from_secs(10));
                (woke, started.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        s.trigger();
        s.trigger();
        let (woke, waited) = waiter.join().unwrap();
        assert!(woke);
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        assert!(s.wait_timeout(Duration::from_secs(10)));
    }

    #[test]
    fn untriggered_wait_times_out() {
        let s = Shutdown::new();
        assert!(!s.wait_timeout(Duration::from_millis(20)));
        assert!(!s.is_triggered());
    }

    #[test]
    fn reload_requests_collapse_and_clear() {
        let r = ReloadRequests::new();
        assert!(!r.take());
        r.request();
        r.request();
        assert!(r.receiver().try_recv().is_ok());
        assert!(r.take());
        assert!(!r.take());
    }
}
