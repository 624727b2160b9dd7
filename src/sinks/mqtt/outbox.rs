//! The MQTT sink's bounded buffer, as a pure state machine (no I/O, no clock): events wait
//! here until the broker acknowledges them.
//!
//! An event is *waiting* until it is handed to the MQTT client, then *in flight* until the
//! broker's PUBACK. When the connection drops, everything in flight goes back to the front of
//! the queue, in order, to be published again on the next connection: a QoS 1 message is never
//! lost to a reconnect (at worst it arrives twice, as QoS 1 allows). The buffer holds at most
//! `capacity` events in all; a new event beyond that pushes out the oldest waiting one, and
//! every event lost that way is counted.

use std::collections::VecDeque;
use std::sync::Arc;

/// What an in-flight publish carries.
#[derive(Debug, Clone, PartialEq)]
enum Payload {
    /// An event (re-published after a reconnect until acknowledged).
    Event(Arc<str>),
    /// Availability: worth nothing once the connection it described is gone.
    Control,
}

#[derive(Debug)]
struct InFlight {
    payload: Payload,
    /// The packet id the client gave it on the wire (unknown until it was written).
    pkid: Option<u16>,
}

#[derive(Debug)]
pub struct Outbox {
    capacity: usize,
    waiting: VecDeque<Arc<str>>,
    in_flight: VecDeque<InFlight>,
    dropped: u64,
    delivered: u64,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            waiting: VecDeque::new(),
            in_flight: VecDeque::new(),
            dropped: 0,
            delivered: 0,
        }
    }

    fn events_held(&self) -> usize {
        self.waiting.len()
            + self
                .in_flight
                .iter()
                .filter(|f| matches!(f.payload, Payload::Event(_)))
                .count()
    }

    /// Queues an event. With the buffer full the oldest waiting event is dropped to make room
    /// (or, when everything held is already on the wire, the new one). Returns whether an
    /// event was dropped.
    pub fn push(&mut self, event: Arc<str>) -> bool {
        if self.events_held() < self.capacity {
            self.waiting.push_back(event);
            return false;
        }
        self.dropped += 1;
        if self.waiting.pop_front().is_some() {
            self.waiting.push_back(event);
        }
        true
    }

    /// The next event to publish, if fewer than `window` publishes are in flight; it is in
    /// flight from now on.
    pub fn take_next(&mut self, window: usize) -> Option<Arc<str>> {
        if self.in_flight.len() >= window {
            return None;
        }
        let event = self.waiting.pop_front()?;
        self.in_flight.push_back(InFlight {
            payload: Payload::Event(event.clone()),
            pkid: None,
        });
        Some(event)
    }

    /// Takes back the last event handed over (the client could not queue it): it waits again,
    /// first in line.
    pub fn unsend_last(&mut self) {
        if let Some(InFlight {
            payload: Payload::Event(event),
            ..
        }) = self.in_flight.pop_back()
        {
            self.waiting.push_front(event);
        }
    }

    /// A control message (availability) was handed to the client at QoS 1.
    pub fn control_sent(&mut self) {
        self.in_flight.push_back(InFlight {
            payload: Payload::Control,
            pkid: None,
        });
    }

    /// The client wrote the oldest not yet numbered QoS 1 publish with packet id `pkid`
    /// (publishes leave in the order they were handed over).
    pub fn on_wire(&mut self, pkid: u16) {
        if let Some(entry) = self.in_flight.iter_mut().find(|f| f.pkid.is_none()) {
            entry.pkid = Some(pkid);
        }
    }

    /// The broker acknowledged `pkid`. Returns whether that was an event.
    pub fn acked(&mut self, pkid: u16) -> bool {
        let Some(i) = self.in_flight.iter().position(|f| f.pkid == Some(pkid)) else {
            return false;
        };
        let done = self.in_flight.remove(i);
        let was_event = matches!(done.map(|d| d.payload), Some(Payload::Event(_)));
        if was_event {
            self.delivered += 1;
        }
        was_event
    }

    /// The connection dropped: unacknowledged events go back ahead of the waiting ones, in
    /// their order; unacknowledged control messages are forgotten.
    pub fn connection_lost(&mut self) {
        while let Some(entry) = self.in_flight.pop_back() {
            if let Payload::Event(event) = entry.payload {
                self.waiting.push_front(event);
            }
        }
    }

    /// Nothing waits and nothing is in flight.
    pub fn is_drained(&self) -> bool {
        self.waiting.is_empty() && self.in_flight.is_empty()
    }

    /// Events held (waiting or in flight).
    pub fn len(&self) -> usize {
        self.events_held()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Events dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Events the broker acknowledged.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(i: u32) -> Arc<str> {
        Arc::from(format!("e{i}"))
    }

    fn take_all(outbox: &mut Outbox, window: usize) -> Vec<String> {
        std::iter::from_fn(|| outbox.take_next(window))
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_waiting_event_and_counts_it() {
        let mut outbox = Outbox::new(3);
        for i in 0..5 {
            outbox.push(ev(i));
        }
        assert_eq!(outbox.dropped(), 2);
        assert_eq!(outbox.len(), 3);
        assert_eq!(take_all(&mut outbox, 10), ["e2", "e3", "e4"]);
    }

    #[test]
    fn the_window_bounds_what_is_in_flight_and_acks_free_it() {
        let mut outbox = Outbox::new(10);
        for i in 0..4 {
            outbox.push(ev(i));
        }
        assert_eq!(take_all(&mut outbox, 2), ["e0", "e1"]);
        outbox.on_wire(7);
        outbox.on_wire(8);
        assert!(outbox.acked(7));
        assert!(!outbox.acked(7), "a second ack of the same id is ignored");
        assert_eq!(take_all(&mut outbox, 2), ["e2"]);
        assert_eq!(outbox.delivered(), 1);
        assert!(!outbox.is_drained());
    }

    #[test]
    fn a_lost_connection_requeues_in_flight_events_first_and_in_order() {
        let mut outbox = Outbox::new(10);
        outbox.control_sent();
        outbox.on_wire(1);
        for i in 0..5 {
            outbox.push(ev(i));
        }
        assert_eq!(take_all(&mut outbox, 4), ["e0", "e1", "e2"]);
        outbox.on_wire(2);
        outbox.on_wire(3);
        assert!(outbox.acked(2), "e0 acknowledged");
        outbox.connection_lost();
        assert_eq!(outbox.in_flight(), 0);
        // e1 was on the wire, e2 handed over but not yet written: both go again, before e3.
        assert_eq!(take_all(&mut outbox, 10), ["e1", "e2", "e3", "e4"]);
        // Ids of the old connection mean nothing now.
        assert!(!outbox.acked(3));
        outbox.on_wire(1);
        assert!(outbox.acked(1));
        assert_eq!(outbox.delivered(), 2);
    }

    #[test]
    fn an_event_the_client_refused_waits_again_first() {
        let mut outbox = Outbox::new(5);
        outbox.push(ev(0));
        outbox.push(ev(1));
        assert_eq!(outbox.take_next(5).as_deref(), Some("e0"));
        outbox.unsend_last();
        assert_eq!(outbox.in_flight(), 0);
        assert_eq!(take_all(&mut outbox, 5), ["e0", "e1"]);
    }

    #[test]
    fn events_on_the_wire_are_never_the_ones_dropped() {
        let mut outbox = Outbox::new(2);
        outbox.push(ev(0));
        outbox.push(ev(1));
        assert_eq!(take_all(&mut outbox, 2), ["e0", "e1"]);
        // Full, and everything held is on the wire: the newcomer is the one lost.
        assert!(outbox.push(ev(2)));
        assert_eq!(outbox.dropped(), 1);
        outbox.connection_lost();
        assert_eq!(take_all(&mut outbox, 5), ["e0", "e1"]);
    }
}
