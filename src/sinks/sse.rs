//! The `/events` sink: the event stream as Server-Sent Events for the mirror's other software,
//! served by the daemon's HTTP server (`service.listen`).
//!
//! [`SseBroadcast`] is a non-blocking broadcast ring: a slow client loses the oldest events (and
//! is told how many, as an `event: lagged`) instead of ever holding the dispatcher up.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::Event as SseEvent;
use futures_util::Stream;
use mirrorsight_contract::events::Event;
use tokio::sync::{broadcast, watch};

use super::{EventSink, SinkError};

/// `/events` (`service.events_buffer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseSinkConfig {
    /// Events buffered per client before a slow one skips ahead.
    pub buffer: usize,
}

/// The event sink behind `/events`. Add it to the dispatcher's sinks; hand
/// [`SseBroadcast::subscriber`] to the server first.
///
/// `handle` never blocks and never fails: with no client connected an event simply goes
/// nowhere. When the dispatcher drops this sink (end of stream) the open `/events` streams
/// end after delivering what they still hold.
pub struct SseBroadcast {
    tx: broadcast::Sender<Arc<str>>,
}

/// Subscribes `/events` clients without keeping the stream open (a weak handle).
#[derive(Clone)]
pub struct SseSubscriber {
    tx: broadcast::WeakSender<Arc<str>>,
}

impl SseBroadcast {
    /// `capacity`: events buffered per client before a slow one skips ahead
    /// (`service.events_buffer`).
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }

    pub fn subscriber(&self) -> SseSubscriber {
        SseSubscriber {
            tx: self.tx.downgrade(),
        }
    }
}

impl SseSubscriber {
    /// A new client's receiver; `None` once the event stream has ended.
    pub fn subscribe(&self) -> Option<broadcast::Receiver<Arc<str>>> {
        self.tx.upgrade().map(|tx| tx.subscribe())
    }

    /// Connected `/events` clients.
    pub fn clients(&self) -> usize {
        self.tx.upgrade().map_or(0, |tx| tx.receiver_count())
    }
}

impl EventSink for SseBroadcast {
    fn handle(&mut self, event: &Event) -> Result<(), SinkError> {
        if self.tx.receiver_count() > 0 {
            // Err only means every client left meanwhile.
            let _ = self.tx.send(Arc::from(event.to_json_line()));
        }
        Ok(())
    }
}

struct StreamState {
    rx: broadcast::Receiver<Arc<str>>,
    stop: watch::Receiver<bool>,
    greeted: bool,
    stopping: bool,
}

/// Events as SSE `data:` lines; a lagging client gets `event: lagged` with the count skipped.
/// Ends when the event stream closes or the server stops, after what is already buffered.
pub fn event_stream(
    rx: broadcast::Receiver<Arc<str>>,
    stop: watch::Receiver<bool>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let stopping = *stop.borrow();
    let state = StreamState {
        rx,
        stop,
        greeted: false,
        stopping,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        if !s.greeted {
            s.greeted = true;
            // Tells the client (and tests) the subscription is live before any event.
            return Some((Ok(SseEvent::default().comment("mirrorsight events")), s));
        }
        loop {
            let received = if s.stopping {
                match s.rx.try_recv() {
                    Ok(line) => Ok(line),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        Err(broadcast::error::RecvError::Lagged(n))
                    }
                    Err(_) => return None,
                }
            } else {
                tokio::select! {
                    r = s.rx.recv() => r,
                    _ = s.stop.changed() => {
                        s.stopping = true;
                        continue;
                    }
                }
            };
            let event = match received {
                Ok(line) => SseEvent::default().data(&*line),
                Err(broadcast::error::RecvError::Lagged(n)) => SseEvent::default()
                    .event("lagged")
                    .data(format!("{{\"skipped\":{n}}}")),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            return Some((Ok(event), s));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use mirrorsight_contract::events::EventKind;
    use std::time::{Duration, Instant};

    fn event(i: u64) -> Event {
        Event::new(i as f64, EventKind::SourceEnded { frames: i })
    }

    #[test]
    fn a_slow_client_skips_ahead_and_the_sink_never_blocks() {
        let mut sink = SseBroadcast::new(4);
        let rx = sink.subscriber().subscribe().unwrap();
        let (_stop_tx, stop_rx) = watch::channel(false);
        // Nobody reads while 10 000 events go out: the sink must not wait for the client.
        let started = Instant::now();
        for i in 0..10_000 {
            sink.handle(&event(i)).unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        drop(sink);

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let items: Vec<String> = rt.block_on(
            event_stream(rx, stop_rx)
                .map(|e| format!("{:?}", e.unwrap()))
                .collect(),
        );
        // Greeting, one "lagged" notice for the 9 996 skipped, the newest 4, then the end.
        assert_eq!(items.len(), 6, "{items:#?}");
        assert!(items[0].contains("mirrorsight events"), "{}", items[0]);
        assert!(
            items[1].contains("lagged") && items[1].contains("9996"),
            "{}",
            items[1]
        );
        for (item, i) in items[2..].iter().zip(9996..) {
            assert!(item.contains(&format!("{i}")), "{item}");
        }
    }

    #[test]
    fn server_stop_ends_a_stream_after_what_it_holds() {
        let mut sink = SseBroadcast::new(8);
        let rx = sink.subscriber().subscribe().unwrap();
        let (stop_tx, stop_rx) = watch::channel(false);
        sink.handle(&event(1)).unwrap();
        sink.handle(&event(2)).unwrap();
        stop_tx.send(true).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let items: Vec<String> = rt.block_on(
            event_stream(rx, stop_rx)
                .map(|e| format!("{:?}", e.unwrap()))
                .collect(),
        );
        // The sink is still alive: only the stop ends the stream, after events 1 and 2.
        assert_eq!(items.len(), 3, "{items:#?}");
        drop(sink);
    }
}
