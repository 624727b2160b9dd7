//! Where events end up: JSON lines to stdout or a file, an in-memory collector, and the
//! small traits that let actions (QR, photos, overlay) plug into the stream.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use mirrorsight_contract::events::Event;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SinkError {
    #[error("cannot write events to {path}: {source} (check the path and free space)")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mirror display: {0}")]
    Overlay(#[from] mirrorsight_overlay::OverlayError),
}

/// Consumes events (writes, forwards, draws). Sinks see every event in stream order.
pub trait EventSink: Send {
    fn handle(&mut self, event: &Event) -> Result<(), SinkError>;
    /// Media time advanced to `t` (once per frame): lets time-driven sinks (the overlay's
    /// countdown) move on between events.
    fn tick(&mut self, _t: f64) {}
    /// Makes everything handled so far durable or visible. Called once, at the end.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Reacts to events by doing something and possibly emitting further events, which join
/// the stream right after the event that caused them (so replays stay in a fixed order).
pub trait Action: Send {
    fn on_event(&mut self, event: &Event, emit: &mut Vec<Event>);
    /// A photo is due (see [`crate::capture`]).
    fn on_capture(&mut self, _capture: &crate::capture::Capture, _emit: &mut Vec<Event>) {}
    /// Media time advanced to `t`: deliver results of background work finished meanwhile.
    fn poll(&mut self, _t: f64, _emit: &mut Vec<Event>) {}
    /// Called once at the end of the stream: finish what is in flight (bounded wait).
    fn finish(&mut self, _emit: &mut Vec<Event>) {}
}

/// JSON Lines to stdout or a file; flushed after each line so `tail -f` and pipes see events at once.
pub struct JsonLines {
    path: PathBuf,
    out: Box<dyn Write + Send>,
}

impl JsonLines {
    /// `-` is stdout; anything else is a file path (created or truncated).
    pub fn open(target: &str) -> Result<Self, SinkError> {
        if target == "-" {
            return Ok(Self {
                path: "stdout".into(),
                out: Box::new(std::io::stdout()),
            });
        }
        let path = Path::new(target).to_path_buf();
        let file = File::create(&path).map_err(|source| SinkError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            out: Box::new(BufWriter::new(file)),
        })
    }
}

impl EventSink for JsonLines {
    fn handle(&mut self, event: &Event) -> Result<(), SinkError> {
        let io = |source| SinkError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = event.to_json_line();
        line.push('\n');
        self.out.write_all(line.as_bytes()).map_err(io)?;
        self.out.flush().map_err(io)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|source| SinkError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// Keeps every event, for `eval` and tests.
#[derive(Default, Clone)]
pub struct Collector {
    pub events: std::sync::Arc<std::sync::Mutex<Vec<Event>>>,
}

impl Collector {
    pub fn take(&self) -> Vec<Event> {
        self.events
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

impl EventSink for Collector {
    fn handle(&mut self, event: &Event) -> Result<(), SinkError> {
        if let Ok(mut v) = self.events.lock() {
            v.push(event.clone());
        }
        Ok(())
    }
}

/// The mirror's screen, fed by the event stream and media time.
pub struct OverlaySink {
    overlay: Option<mirrorsight_overlay::Overlay>,
}

impl OverlaySink {
    pub fn new(overlay: mirrorsight_overlay::Overlay) -> Self {
        Self {
            overlay: Some(overlay),
        }
    }
}

impl EventSink for OverlaySink {
    fn handle(&mut self, event: &Event) -> Result<(), SinkError> {
        if let Some(o) = &mut self.overlay {
            o.apply(event);
        }
        Ok(())
    }

    fn tick(&mut self, t: f64) {
        if let Some(o) = &mut self.overlay {
            o.advance(t);
        }
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        // Draws the last picture (and its snapshot) before the thread ends.
        match self.overlay.take() {
            Some(o) => o.shutdown().map(|_| ()).map_err(SinkError::Overlay),
            None => Ok(()),
        }
    }
}
