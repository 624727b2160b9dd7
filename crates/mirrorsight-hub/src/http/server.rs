//! The accept loop: HTTP/1.1 connections served by hyper with the limits `axum::serve` does not
//! have. A client must send its request head within `http.header_read_timeout_s` (which also
//! closes kept-alive connections that stay idle that long), at most `http.max_connections`
//! are open at once (beyond that the hub stops accepting and clients wait in the kernel's
//! listen queue, so descriptors never run out), and on shutdown requests in flight get
//! `http.shutdown_grace_s` to finish before the remaining connections are dropped.
//!
//! Body and whole-request deadlines live in the handlers and [`request_deadline`], where they
//! can answer with a status instead of a reset.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::{ApiError, AppState, Counters};

/// How the accept loop treats connections.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
}

/// One listener and what it serves, with its own connection cap (so a flood on the public
/// listener cannot lock Prometheus out of the metrics one).
pub struct Endpoint {
    pub listener: TcpListener,
    pub router: Router,
    pub max_connections: usize,
}

/// Accept errors such as `EMFILE` are retried after this pause instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves every endpoint until `shutdown` completes, then drains as [`ServerLimits`] says.
pub async fn serve(
    endpoints: Vec<Endpoint>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = Arc::new(GracefulShutdown::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    // Sent when the grace period is over: connections still open are dropped.
    let (force_tx, force_rx) = watch::channel(false);
    let mut loops = Vec::new();
    for endpoint in endpoints {
        loops.push(tokio::spawn(accept_loop(
            endpoint,
            limits.header_read_timeout,
            Arc::clone(&graceful),
            stop_rx.clone(),
            force_rx.clone(),
        )));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    for accept in loops {
        // A loop ends only when told to; a panic in one is logged and the others still stop.
        if let Err(e) = accept.await {
            tracing::error!(error = %e, "accept loop failed");
        }
    }
    // The loops have ended and dropped their handles, so this is the only one left.
    let Ok(graceful) = Arc::try_unwrap(graceful) else {
        tracing::error!("connections still being accepted after shutdown; closing them");
        let _ = force_tx.send(true);
        return Ok(());
    };
    let open = graceful.count();
    if open > 0 {
        tracing::info!(
            connections = open,
            grace_s = limits.shutdown_grace.as_secs_f64(),
            "stopped accepting; letting requests in flight finish"
        );
    }
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_s = limits.shutdown_grace.as_secs_f64(),
            "requests still running after the shutdown grace period; closing their connections"
        );
        let _ = force_tx.send(true);
    }
    Ok(())
}

async fn accept_loop(
    endpoint: Endpoint,
    header_read_timeout: Duration,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
    force: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(endpoint.max_connections));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    loop {
        // The permit comes first: at the cap, nothing more is accepted until a client leaves.
        let permit = tokio::select! {
            _ = raised(&mut stop) => return,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return, // closed: never happens, the semaphore lives here
            },
        };
        let (stream, peer) = tokio::select! {
            _ = raised(&mut stop) => return,
            accepted = endpoint.listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(endpoint.router.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        let mut force = force.clone();
        tokio::spawn(async move {
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        // Header timeouts, resets and malformed requests: the client's doing.
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                _ = raised(&mut force) => {
                    tracing::debug!(%peer, "connection closed at the end of the shutdown grace period");
                }
            }
            drop(permit);
        });
    }
}

/// Completes once `flag` is set (or its sender is gone); holds no lock across awaits.
async fn raised(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

/// Middleware: a request not answered within the deadline gets `503` with `Retry-After` (the
/// mirror retries; uploads and mints are idempotent). Storage work already handed to a
/// blocking thread finishes on its own.
pub async fn request_deadline(
    State((deadline, state)): State<(Duration, Arc<AppState>)>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            Counters::bump(&state.counters.request_timeouts);
            tracing::warn!(
                path = %path,
                deadline_s = deadline.as_secs_f64(),
                "request not answered in time"
            );
            ApiError::unavailable("the request took too long").into_response()
        }
    }
}
