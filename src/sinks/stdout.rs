//! The event stream as JSON lines on standard output (`events.file = "-"`, the default), for
//! pipes and the journal.

use mirrorsight_contract::events::Event;

use super::file::JsonLinesWriter;
use super::{EventSink, SinkError};

pub struct StdoutSink {
    writer: JsonLinesWriter<std::io::Stdout>,
}

impl StdoutSink {
    pub fn new() -> Self {
        Self {
            writer: JsonLinesWriter::new("stdout", std::io::stdout()),
        }
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

impl EventSink for StdoutSink {
    fn handle(&mut self, event: &Event) -> Result<(), SinkError> {
        self.writer.write(event)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.writer.flush()
    }
}
