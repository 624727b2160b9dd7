//! The "stop now" a source is handed: [`stop_pair`] makes a [`StopTrigger`] for whoever decides
//! (the daemon's signal handling) and a [`StopSignal`] for whoever must obey (a camera waiting
//! out a backoff or blocked in a read). Sources take the signal as a value, so they never
//! depend on the service that owns the trigger.
//!
//! Besides the flag, the signal carries a channel that is closed on trigger, so a thread can
//! block on "a frame arrived or stop" with `crossbeam_channel::select!` instead of polling.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

use super::{Source, SourceError, SourceInfo};
use crate::frame::Frame;

/// Fires the stop. Cheap to clone; triggering is idempotent.
#[derive(Clone)]
pub struct StopTrigger {
    flag: Arc<AtomicBool>,
    closer: Arc<Mutex<Option<Sender<()>>>>,
}

/// Observes the stop. Cheap to clone.
#[derive(Clone)]
pub struct StopSignal {
    flag: Arc<AtomicBool>,
    closed: Receiver<()>,
}

/// A connected trigger and signal.
pub fn stop_pair() -> (StopTrigger, StopSignal) {
    let (tx, rx) = bounded(0);
    let flag = Arc::new(AtomicBool::new(false));
    (
        StopTrigger {
            flag: flag.clone(),
            closer: Arc::new(Mutex::new(Some(tx))),
        },
        StopSignal { flag, closed: rx },
    )
}

impl StopTrigger {
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        // Dropping the only sender disconnects every receiver clone at once: that is the wake-up.
        self.closer.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

impl StopSignal {
    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Sleeps up to `timeout`; returns true (early) once the stop is triggered.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        if self.is_triggered() {
            return true;
        }
        match self.closed.recv_timeout(timeout) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => self.is_triggered(),
            Err(RecvTimeoutError::Disconnected) => true,
        }
    }

    /// Becomes ready (disconnected) on trigger; for `select!` next to other channels.
    pub fn receiver(&self) -> &Receiver<()> {
        &self.closed
    }
}

impl std::fmt::Debug for StopSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopSignal")
            .field("triggered", &self.is_triggered())
            .finish()
    }
}

/// Ends any source cleanly (as if the stream ended) once the stop is triggered.
///
/// For sources that return quickly (clips); [`super::ReconnectingSource`] already does this
/// itself and also interrupts waits inside a blocking camera read.
pub struct UntilStopped {
    inner: Box<dyn Source>,
    stop: StopSignal,
}

impl UntilStopped {
    pub fn new(inner: Box<dyn Source>, stop: StopSignal) -> Self {
        Self { inner, stop }
    }
}

impl Source for UntilStopped {
    fn info(&self) -> &SourceInfo {
        self.inner.info()
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.stop.is_triggered() {
            return Ok(None);
        }
        self.inner.next_frame()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_trigger_wakes_a_waiting_thread_early() {
        let (trigger, signal) = stop_pair();
        let waiter = std::thread::spawn(move || {
            let started = Instant::now();
            let woke = signal.wait_timeout(Duration::from_secs(10));
            (woke, started.elapsed(), signal)
        });
        std::thread::sleep(Duration::from_millis(50));
        trigger.trigger();
        trigger.trigger();
        let (woke, waited, signal) = waiter.join().unwrap();
        assert!(woke);
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        assert!(signal.wait_timeout(Duration::from_secs(10)));
    }

    #[test]
    fn an_untriggered_wait_times_out() {
        let (_trigger, signal) = stop_pair();
        assert!(!signal.wait_timeout(Duration::from_millis(20)));
        assert!(!signal.is_triggered());
    }

    #[test]
    fn until_stopped_ends_the_stream_on_trigger() {
        struct Endless(SourceInfo);
        impl Source for Endless {
            fn info(&self) -> &SourceInfo {
                &self.0
            }
            fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
                Ok(Some(Frame {
                    seq: 0,
                    t: 0.0,
                    image: Arc::new(crate::frame::RgbImage::filled(2, 2, [0, 0, 0])),
                }))
            }
        }
        let (trigger, signal) = stop_pair();
        let info = SourceInfo {
            name: "endless".into(),
            width: 2,
            height: 2,
            fps: 30.0,
            frames: None,
        };
        let mut source = UntilStopped::new(Box::new(Endless(info)), signal);
        assert!(source.next_frame().unwrap().is_some());
        trigger.trigger();
        assert!(source.next_frame().unwrap().is_none());
    }
}
