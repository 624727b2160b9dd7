//! The local HTTP endpoints: `/healthz`, `/metrics` (Prometheus text) and `/events`
//! (Server-Sent Events with the JSON event stream for the mirror's other software).
//!
//! The server only reads shared state; the event dispatcher feeds `/events` through the SSE
//! sink ([`crate::sinks::sse`]), which never waits for a client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{Health, ServiceError};
use crate::metrics::Metrics;
pub use crate::metrics::PrometheusText;
use crate::sinks::sse::{SseSubscriber, event_stream};

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
