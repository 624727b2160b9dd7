//! The event file: JSON lines, one event per line, exactly as `docs/events.md` describes them.
//! Each line is flushed at once, so `tail -f` and pipes see events as they happen.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use mirrorsight_contract::events::Event;

use super::{EventSink, SinkError};

/// `events.file = "<path>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSinkConfig {
    /// Created, or truncated if it exists.
    pub path: PathBuf,
}

/// Writes JSON lines to `out`; errors name `what` (a path, or "stdout").
pub(super) struct JsonLinesWriter<W: Write> {
    what: PathBuf,
    out: W,
}

impl<W: Write> JsonLinesWriter<W> {
    pub(super) fn new(what: impl Into<PathBuf>, out: W) -> Self {
        Self {
            what: what.into(),
            out,
        }
    }

    fn io_error(&self, source: std::io::Error) -> SinkError {
        SinkError::Io {
            path: self.what.clone(),
            source,
        }
    }

    pub(super) fn write(&mut self, event: &Event) -> Result<(), SinkError> {
        let mut line = event.to_json_line();
        line.push('\n');
        let written = self
            .out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.flush());
        written.map_err(|e| self.io_error(e))
    }

    pub(super) fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| self.io_error(e))
    }
}

pub struct FileSink {
    writer: JsonLinesWriter<BufWriter<File>>,
}

impl FileSink {
    pub fn create(config: &FileSinkConfig) -> Result<Self, SinkError> {
        let file = File::create(&config.path).map_err(|source| SinkError::Io {
            path: config.path.clone(),
            source,
        })?;
        Ok(Self {
            writer: JsonLinesWriter::new(&config.path, BufWriter::new(file)),
        })
    }
}

impl EventSink for FileSink {
    fn handle(&mut self, event: &Event) -> Result<(), SinkError> {
        self.writer.write(event)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.writer.flush()
    }
}
