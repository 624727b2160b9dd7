//! Keeps every event in memory: what `eval` scores and what tests read back.

use std::sync::{Arc, Mutex};

use mirrorsight_contract::events::Event;

use super::{EventSink, SinkError};

/// Cheap to clone: clones share the events.
#[derive(Default, Clone)]
pub struct Collector {
    pub events: Arc<Mutex<Vec<Event>>>,
}

impl Collector {
    /// Everything collected so far (and forgets it).
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
