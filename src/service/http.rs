//! The local HTTP endpoints: `/healthz`, `/metrics` (Prometheus text) and `/events`
//! (Server-Sent Events with the JSON event stream for the mirror's other software).
//!
//! The server only reads shared state; the event dispatcher feeds `/events` through
//! [`SseBroadcast`], a non-blocking broadcast ring: a slow client loses the oldest events (and
//! is told how many) instead of ever holding the dispatcher up.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use mirrorsight_contract::events::Event;
use tokio::runtime::Handle;
use tokio::sync::{broadcast, watch};
use tracing::{info, warn};

use super::{Health, ServiceError};
use crate::metrics::Metrics;
use crate::sink::{EventSink, SinkError};

/// Anything else that wants lines in `/metrics` (photo spool, QR minting, …).
pub trait PrometheusText: Send + Sync {
    /// Appends complete `# HELP`/`# TYPE`/sample lines to `out`.
    fn render_prometheus(&self, out: &mut String);
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
    fn subscribe(&self) -> Option<broadcast::Receiver<Arc<str>>> {
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

/// What the endpoints read.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub events: Option<SseSubscriber>,
    pub extra_metrics: Vec<Arc<dyn PrometheusText>>,
}

impl HttpState {
    pub fn new(metrics: Arc<Metrics>, health: Arc<Health>) -> Self {
        Self {
            metrics,
            health,
            events: None,
            extra_metrics: Vec::new(),
        }
    }

    pub fn with_events(mut self, events: SseSubscriber) -> Self {
        self.events = Some(events);
        self
    }

    pub fn with_metrics(mut self, extra: Arc<dyn PrometheusText>) -> Self {
        self.extra_metrics.push(extra);
        self
    }
}

#[derive(Clone)]
struct App {
    state: HttpState,
    stop: watch::Receiver<bool>,
}

fn router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/events", get(events))
        .with_state(app)
}

async fn healthz(State(app): State<App>) -> Response {
    let health = &app.state.health;
    let report = health.report(health.now());
    let code = if report.healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = serde_json::to_string(&report).unwrap_or_else(|_| "{}".into());
    body.push('\n');
    (
        code,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// The Prometheus text exposition content type.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn metrics(State(app): State<App>) -> Response {
    let s = &app.state;
    let mut out = s.metrics.render_prometheus();
    s.health.render_prometheus(s.health.now(), &mut out);
    if let Some(events) = &s.events {
        let name = "mirrorsight_event_clients";
        out.push_str(&format!(
            "# HELP {name} Connected /events clients.\n# TYPE {name} gauge\n{name} {}\n",
            events.clients()
        ));
    }
    for extra in &s.extra_metrics {
        extra.render_prometheus(&mut out);
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
        out,
    )
        .into_response()
}

async fn events(State(app): State<App>) -> Response {
    let Some(rx) = app.state.events.as_ref().and_then(SseSubscriber::subscribe) else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "event stream not available\n",
        )
            .into_response();
    };
    Sse::new(event_stream(rx, app.stop.clone()))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

struct StreamState {
    rx: broadcast::Receiver<Arc<str>>,
    stop: watch::Receiver<bool>,
    greeted: bool,
    stopping: bool,
}

/// Events as SSE `data:` lines; a lagging client gets `event: lagged` with the count skipped.
/// Ends when the event stream closes or the server stops, after what is already buffered.
fn event_stream(
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

/// The running server. Dropping it stops it too, without waiting.
pub struct HttpServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    done: std::sync::mpsc::Receiver<()>,
    own_runtime: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds now (so a taken port is reported at start-up, naming `service.listen`) and serves
    /// on the caller's runtime.
    pub fn start(
        listen: SocketAddr,
        state: HttpState,
        runtime: &Handle,
    ) -> Result<Self, ServiceError> {
        let (listener, addr) = bind(listen)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        runtime.spawn(serve(listener, state, stop_rx, done_tx));
        info!(%addr, "serving /healthz, /metrics and /events");
        Ok(Self {
            addr,
            stop: stop_tx,
            done: done_rx,
            own_runtime: None,
        })
    }

    /// Like [`HttpServer::start`] on a small runtime of its own (one thread, "http").
    pub fn start_on_own_thread(listen: SocketAddr, state: HttpState) -> Result<Self, ServiceError> {
        let (listener, addr) = bind(listen)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| ServiceError::Thread {
                what: "http runtime",
                source,
            })?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || runtime.block_on(serve(listener, state, stop_rx, done_tx)))
            .map_err(|source| ServiceError::Thread {
                what: "http",
                source,
            })?;
        info!(%addr, "serving /healthz, /metrics and /events");
        Ok(Self {
            addr,
            stop: stop_tx,
            done: done_rx,
            own_runtime: Some(thread),
        })
    }

    /// The bound address (the real port when `listen` used port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, ends `/events` streams after what they hold, waits up to 3 s for open
    /// requests. Call from a plain thread, not from inside the runtime.
    pub fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if self.done.recv_timeout(Duration::from_secs(3)).is_err() {
            warn!("HTTP server did not stop within 3 s; leaving it");
            return;
        }
        if let Some(t) = self.own_runtime.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn bind(listen: SocketAddr) -> Result<(std::net::TcpListener, SocketAddr), ServiceError> {
    let bind_err = |source| ServiceError::Bind {
        addr: listen,
        source,
    };
    let listener = std::net::TcpListener::bind(listen).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    Ok((listener, addr))
}

async fn serve(
    listener: std::net::TcpListener,
    state: HttpState,
    stop: watch::Receiver<bool>,
    done: std::sync::mpsc::Sender<()>,
) {
    match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => {
            let app = App {
                state,
                stop: stop.clone(),
            };
            let mut stop = stop;
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, router(app))
                .with_graceful_shutdown(shutdown)
                .await
            {
                warn!(error = %e, "HTTP server failed");
            }
        }
        Err(e) => warn!(error = %e, "HTTP server cannot use its socket"),
    }
    let _ = done.send(());
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use mirrorsight_contract::events::EventKind;
    use std::time::Instant;

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
