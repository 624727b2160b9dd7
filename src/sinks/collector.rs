//! Keeps every event in memory: what `eval` scores and what tests read back.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use mirrorsight_contract::events::Event;

use super::{EventSink, SinkError};

/// Cheap to clone: clones share the events.
#[derive(Default, Clone)]
pub struct Collector {
    pub events: Arc<Mutex<Vec<Event>>>,
    /// When each event reached the collector (the end of the pipeline), in the same order.
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Collector {
    /// Everything collected so far (and forgets it).
    pub fn take(&self) -> Vec<Event> {
        self.events
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    /// Everything collected so far with when it arrived (and forgets it).
    pub fn take_timed(&self) -> Vec<(Event, Instant)> {
        let arrivals = self
            .arrivals
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        self.take().into_iter().zip(arrivals).collect()
    }
}

impl EventSink for Collector {
    fn handle(&mut self, event: &Event) -> Result<(), SinkError> {
        let arrived = Instant::now();
        if let (Ok(mut v), Ok(mut a)) = (self.events.lock(), self.arrivals.lock()) {
            v.push(event.clone());
            a.push(arrived);
        }
        Ok(())
    }
}
