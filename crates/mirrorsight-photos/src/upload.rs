//! The background uploader: one tokio task that drains the spool to the store backend.
//!
//! ```text
//! POST {backend}/v1/sessions/{scene}/photos           body: the jpg, byte for byte
//!   Authorization: Bearer <device token>   Idempotency-Key / X-Photo-Id: <photo>
//!   X-Session-Id, X-Taken-At (unix ms), X-Trigger, X-Content-SHA256 (hex)
//!   201/200 {"photo","sha256","bytes"} → confirmed (sha256 checked) → sidecar `uploaded`
//! DELETE {backend}/v1/sessions/{scene}/photos/{photo}  204, or 404 (already gone)
//! ```
//! One request at a time, oldest photo first. A transient failure (no connection, timeout,
//! 5xx, 408, 429, an answer that is not the JSON confirmation) puts the photo at the back of
//! the queue and waits with exponential backoff and full jitter; any other 4xx is permanent:
//! the photo stays in the spool as `failed` (never deleted) and is retried after a restart.
//! Because the photo id is the idempotency key, sending again after a crash is harmless.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mirrorsight_contract::backend::{self as api, PhotoUploadResponse};
use mirrorsight_contract::events::EventKind;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::PhotosConfig;
use crate::secret::Secret;
use crate::spool::{Job, Marked, PhotoId, Sidecar, Spool};

/// Longest error body kept for a message.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Where photos go.
#[derive(Debug, Clone)]
pub struct Backend {
    /// e.g. `https://store.example.com` (plain `http://` only for loopback).
    pub base_url: String,
    pub token: Secret,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UploaderOptions {
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Per request: connect, send the photo, read the answer.
    pub timeout: Duration,
    /// How often uploaded photos past their retention are looked for.
    pub sweep_interval: Duration,
}

impl UploaderOptions {
    pub fn from_config(config: &PhotosConfig) -> Self {
        // A tenth of the retention keeps photos at most 10% longer than configured, without
        // scanning more than once a second or less than once a minute.
        let sweep =
            (config.retention() / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        Self {
            backoff_min: config.upload_backoff_min(),
            backoff_max: config.upload_backoff_max(),
            timeout: config.upload_timeout(),
            sweep_interval: sweep,
        }
    }
}

#[derive(Debug, Error)]
pub enum UploadError {
    #[error("photo backend URL {url:?} is not usable: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "refusing to send photos to {url} over plain http, where anyone on the network could read them: \
         use https (plain http is accepted for loopback addresses only)"
    )]
    Insecure { url: String },
    #[error("the device token is empty or contains characters not allowed in an HTTP header")]
    BadToken,
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

/// What happened to a photo, for the event stream.
#[derive(Debug, Clone, PartialEq)]
pub enum UploadOutcome {
    /// The backend confirmed the photo (same sha256).
    Uploaded {
        photo: String,
        session: String,
        scene: String,
    },
    /// One attempt failed. `permanent`: the backend refused it (4xx); it stays in the spool and
    /// is not retried until the next start. Otherwise it is retried after a backoff.
    UploadFailed {
        photo: String,
        session: String,
        reason: String,
        attempt: u32,
        permanent: bool,
    },
    /// A discarded photo is gone from the backend too.
    RemoteDeleted { photo: String, session: String },
    /// Deleting a discarded photo from the backend failed; retried like an upload.
    RemoteDeleteFailed {
        photo: String,
        session: String,
        reason: String,
        attempt: u32,
        permanent: bool,
    },
}

impl UploadOutcome {
    /// The event to emit, if the contract has one for it.
    pub fn event(&self) -> Option<EventKind> {
        match self {
            UploadOutcome::Uploaded {
                photo,
                session,
                scene,
            } => Some(EventKind::PhotoUploaded {
                session: session.clone(),
                scene: scene.clone(),
                photo: photo.clone(),
            }),
            UploadOutcome::UploadFailed {
                photo,
                session,
                reason,
                attempt,
                permanent,
                ..
            } => Some(EventKind::PhotoUploadFailed {
                session: session.clone(),
                photo: photo.clone(),
                reason: reason.clone(),
                attempt: *attempt,
                permanent: *permanent,
            }),
            UploadOutcome::RemoteDeleted { .. } | UploadOutcome::RemoteDeleteFailed { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownReport {
    /// The worker stopped after finishing what it was doing.
    Finished,
    /// The in-flight request outlasted the timeout and was abandoned; the photo is still
    /// pending and will be sent again (idempotently) on the next start.
    TimedOut,
}

/// Handle on the background worker. Dropping it stops the worker at its next pause; call
/// `shutdown` to wait for the in-flight upload.
#[derive(Debug)]
pub struct Uploader {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Uploader {
    /// Starts the worker on `runtime`. It first sends whatever the spool recovered, then waits
    /// for `Spool::save` / `discard_latest` to wake it.
    pub fn spawn(
        runtime: &tokio::runtime::Handle,
        spool: Arc<Spool>,
        backend: Backend,
        options: UploaderOptions,
    ) -> Result<(Self, mpsc::UnboundedReceiver<UploadOutcome>), UploadError> {
        let base = check_backend_url(&backend.base_url)?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", backend.token.expose()))
            .map_err(|_| UploadError::BadToken)?;
        if backend.token.is_empty() {
            return Err(UploadError::BadToken);
        }
        auth.set_sensitive(true);
        let client = reqwest::Client::builder()
            // A redirect would turn the POST into a GET and could carry the token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("mirrorsight-photos/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| UploadError::Client(error_chain(&e)))?;
        let (events, outcomes) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let worker = Worker {
            spool,
            client,
            base,
            auth,
            options,
            events,
            stop: stop_rx,
            rng: StdRng::from_os_rng(),
            failures: 0,
        };
        let task = runtime.spawn(worker.run());
        Ok((Self { stop, task }, outcomes))
    }

    /// Stops the worker: the in-flight request (if any) is finished and recorded, waiting at
    /// most `timeout`; backoff sleeps are cut short.
    pub async fn shutdown(self, timeout: Duration) -> ShutdownReport {
        let _ = self.stop.send(true);
        let mut task = self.task;
        match tokio::time::timeout(timeout, &mut task).await {
            Ok(_) => ShutdownReport::Finished,
            Err(_) => {
                task.abort();
                let _ = task.await;
                warn!(
                    ?timeout,
                    "photo upload still in flight at shutdown: abandoned, it is resent on the next start"
                );
                ShutdownReport::TimedOut
            }
        }
    }
}

pub(crate) fn check_backend_url(raw: &str) -> Result<String, UploadError> {
    let bad = |reason: &str| UploadError::BadUrl {
        url: raw.to_string(),
        reason: reason.to_string(),
    };
    let url = Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "credentials belong in the device token, not in the URL",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("no query or fragment expected"));
    }
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => return Err(bad("no host")),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(UploadError::Insecure {
                url: raw.to_string(),
            });
        }
        other => return Err(bad(&format!("scheme {other:?}, expected https"))),
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

pub(crate) enum Failure {
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    Permanent(String),
}

impl Failure {
    pub(crate) fn transient(reason: impl Into<String>) -> Self {
        Failure::Transient {
            reason: reason.into(),
            retry_after: None,
        }
    }
    pub(crate) fn reason(&self) -> &str {
        match self {
            Failure::Transient { reason, .. } | Failure::Permanent(reason) => reason,
        }
    }
}

struct Worker {
    spool: Arc<Spool>,
    client: reqwest::Client,
    base: String,
    auth: HeaderValue,
    options: UploaderOptions,
    events: mpsc::UnboundedSender<UploadOutcome>,
    stop: watch::Receiver<bool>,
    rng: StdRng,
    /// Consecutive transient failures, for the backoff.
    failures: u32,
}

impl Worker {
    async fn run(mut self) {
        info!(backend = %self.base, "photo uploader started");
        let mut next_sweep = tokio::time::Instant::now();
        loop {
            if self.stopping() {
                break;
            }
            if tokio::time::Instant::now() >= next_sweep {
                let now = unix_ms();
                if let Some(Err(e)) = self.blocking(move |s| s.sweep_retention(now)).await {
                    warn!(error = %e, "removing uploaded photos past photos.retention_s failed");
                }
                next_sweep = tokio::time::Instant::now() + self.options.sweep_interval;
            }
            let job = self.blocking(|s| s.next_job()).await.flatten();
            let Some(job) = job else {
                let spool = Arc::clone(&self.spool);
                tokio::select! {
                    _ = spool.changed().notified() => {}
                    _ = self.stop.changed() => {}
                    _ = tokio::time::sleep_until(next_sweep) => {}
                }
                continue;
            };
            let failure = match job {
                Job::Corrupt { sidecar, reason } => {
                    self.emit(UploadOutcome::UploadFailed {
                        photo: sidecar.photo.to_string(),
                        session: sidecar.session,
                        reason: format!("not uploaded, quarantined: {reason}"),
                        attempt: 0,
                        permanent: true,
                    });
                    None
                }
                Job::Upload {
                    sidecar,
                    body,
                    attempt,
                } => self.upload(sidecar, body, attempt).await,
                Job::Delete { sidecar, attempt } => self.delete(sidecar, attempt).await,
            };
            match failure {
                Some(Failure::Transient { retry_after, .. }) => {
                    self.failures = self.failures.saturating_add(1);
                    let mut wait = self.backoff();
                    if let Some(ra) = retry_after {
                        wait = wait.max(ra.min(self.options.backoff_max));
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.stop.changed() => {}
                    }
                }
                Some(Failure::Permanent(_)) | None => {}
            }
        }
        info!("photo uploader stopped");
    }

    fn stopping(&self) -> bool {
        // A dropped `Uploader` counts as a stop request.
        *self.stop.borrow() || self.stop.has_changed().is_err()
    }

    /// Full jitter between the minimum and an exponentially growing cap.
    fn backoff(&mut self) -> Duration {
        let (min, max) = (
            self.options.backoff_min,
            self.options.backoff_max.max(self.options.backoff_min),
        );
        let exp = self.failures.saturating_sub(1).min(30);
        let cap = min.saturating_mul(1u32 << exp).min(max);
        if cap <= min {
            return min;
        }
        Duration::from_secs_f64(self.rng.random_range(min.as_secs_f64()..=cap.as_secs_f64()))
    }

    fn emit(&self, outcome: UploadOutcome) {
        // Nobody listening is fine: the log has it too.
        let _ = self.events.send(outcome);
    }

    /// Spool work does fsyncs: keep it off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Spool) -> T + Send + 'static,
    ) -> Option<T> {
        let spool = Arc::clone(&self.spool);
        match tokio::task::spawn_blocking(move || f(&spool)).await {
            Ok(v) => Some(v),
            Err(e) => {
                error!(error = %e, "photo spool task failed");
                None
            }
        }
    }

    async fn upload(&mut self, sidecar: Sidecar, body: Vec<u8>, attempt: u32) -> Option<Failure> {
        let id = sidecar.photo.clone();
        match self.post(&sidecar, body).await {
            Ok(()) => {
                self.failures = 0;
                let at = unix_ms();
                let mark_id = id.clone();
                let marked = self.blocking(move |s| s.mark_uploaded(&mark_id, at)).await;
                if marked == Some(Marked::DiscardedMeanwhile) {
                    info!(photo = %id, "photo was discarded during its upload: deleting it from the backend");
                } else {
                    info!(photo = %id, session = %sidecar.session, attempt, "photo uploaded");
                    self.emit(UploadOutcome::Uploaded {
                        photo: id.to_string(),
                        session: sidecar.session.clone(),
                        scene: sidecar.scene.clone(),
                    });
                }
                None
            }
            Err(failure) => {
                let permanent = matches!(failure, Failure::Permanent(_));
                let reason = failure.reason().to_string();
                let requeue_id = id.clone();
                if permanent {
                    error!(photo = %id, session = %sidecar.session, attempt, reason, "photo upload refused by the backend; kept in the spool");
                    let r = reason.clone();
                    self.blocking(move |s| s.mark_failed(&requeue_id, &r)).await;
                } else {
                    warn!(photo = %id, session = %sidecar.session, attempt, reason, "photo upload failed; will retry");
                    self.blocking(move |s| s.requeue(&requeue_id)).await;
                }
                self.emit(UploadOutcome::UploadFailed {
                    photo: id.to_string(),
                    session: sidecar.session,
                    reason,
                    attempt,
                    permanent,
                });
                Some(failure)
            }
        }
    }

    async fn delete(&mut self, sidecar: Sidecar, attempt: u32) -> Option<Failure> {
        let id = sidecar.photo.clone();
        let url = format!(
            "{}{}",
            self.base,
            api::photo_path(&sidecar.scene, id.as_str())
        );
        let result = match self
            .client
            .delete(&url)
            .header(AUTHORIZATION, self.auth.clone())
            .send()
            .await
        {
            Err(e) => Err(transport_failure(&e)),
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() || status == StatusCode::NOT_FOUND {
                    Ok(())
                } else {
                    Err(classify_error_status(resp).await)
                }
            }
        };
        match result {
            Ok(()) => {
                self.failures = 0;
                let finish_id = id.clone();
                if let Some(Err(e)) = self.blocking(move |s| s.finish_delete(&finish_id)).await {
                    warn!(photo = %id, error = %e, "backend copy deleted but the tombstone could not be removed");
                }
                info!(photo = %id, session = %sidecar.session, "discarded photo deleted from the backend");
                self.emit(UploadOutcome::RemoteDeleted {
                    photo: id.to_string(),
                    session: sidecar.session,
                });
                None
            }
            Err(failure) => {
                let permanent = matches!(failure, Failure::Permanent(_));
                let reason = failure.reason().to_string();
                let rid = id.clone();
                if permanent {
                    error!(photo = %id, reason, "backend refused to delete a discarded photo; retried after a restart");
                    self.blocking(move |s| s.delete_refused(&rid)).await;
                } else {
                    warn!(photo = %id, reason, "deleting a discarded photo from the backend failed; will retry");
                    self.blocking(move |s| s.requeue(&rid)).await;
                }
                self.emit(UploadOutcome::RemoteDeleteFailed {
                    photo: id.to_string(),
                    session: sidecar.session,
                    reason,
                    attempt,
                    permanent,
                });
                Some(failure)
            }
        }
    }

    async fn post(&self, sidecar: &Sidecar, body: Vec<u8>) -> Result<(), Failure> {
        let url = format!("{}{}", self.base, api::photos_path(&sidecar.scene));
        let len = body.len() as u64;
        let resp = self
            .client
            .post(&url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, api::PHOTO_CONTENT_TYPE)
            .header(api::header::IDEMPOTENCY_KEY, sidecar.photo.as_str())
            .header(api::header::PHOTO_ID, sidecar.photo.as_str())
            .header(api::header::SESSION_ID, sidecar.session.as_str())
            .header(api::header::TAKEN_AT, sidecar.taken_at.to_string())
            .header(api::header::TRIGGER, sidecar.trigger.as_str())
            .header(api::header::CONTENT_SHA256, sidecar.sha256.as_str())
            .body(body)
            .send()
            .await
            .map_err(|e| transport_failure(&e))?;
        let status = resp.status();
        if status != StatusCode::OK && status != StatusCode::CREATED {
            return Err(classify_error_status(resp).await);
        }
        let ctype = content_type(&resp);
        let answer = read_capped(resp)
            .await
            .map_err(|e| Failure::transient(transport_reason(&e)))?;
        let confirmation: PhotoUploadResponse = serde_json::from_slice(&answer).map_err(|_| {
            // A captive portal or proxy page: the photo is not confirmed, so try again later.
            Failure::transient(format!(
                "backend answered {status} with {} instead of the JSON confirmation; not counted as delivered",
                describe_body(&ctype, &answer)
            ))
        })?;
        verify_confirmation(&sidecar.photo, &sidecar.sha256, len, &confirmation)
    }
}

fn verify_confirmation(
    photo: &PhotoId,
    sha256: &str,
    bytes: u64,
    c: &PhotoUploadResponse,
) -> Result<(), Failure> {
    if c.photo != photo.as_str() {
        return Err(Failure::Permanent(format!(
            "backend confirmed photo {:?}, not {photo}",
            c.photo
        )));
    }
    if !c.sha256.eq_ignore_ascii_case(sha256) || c.bytes != bytes {
        return Err(Failure::Permanent(format!(
            "backend stored a different photo (sha256 {}, {} bytes; sent {sha256}, {bytes} bytes)",
            c.sha256, c.bytes
        )));
    }
    Ok(())
}

pub(crate) async fn classify_error_status(resp: reqwest::Response) -> Failure {
    let status = resp.status();
    let ctype = content_type(&resp);
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = read_capped(resp).await.unwrap_or_default();
    let detail = describe_body(&ctype, &body);
    let code = status.as_u16();
    let what = match code {
        401 => "the backend rejected the device token (check it)".to_string(),
        403 => "the session's scene belongs to another device".to_string(),
        409 => "the backend already holds a different photo under this id".to_string(),
        413 => "the photo is too large for the backend (lower photos.jpeg_quality?)".to_string(),
        300..=399 => format!(
            "the backend redirects to {} (check the backend URL; a captive portal?)",
            location.as_deref().unwrap_or("somewhere")
        ),
        _ => "request failed".to_string(),
    };
    let reason = format!("HTTP {status}: {what}; answer: {detail}");
    match code {
        408 | 429 | 500..=599 | 300..=399 => Failure::Transient {
            reason,
            retry_after,
        },
        _ => Failure::Permanent(reason),
    }
}

pub(crate) fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("no content type")
        .to_string()
}

pub(crate) async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_ANSWER_BYTES.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= MAX_ANSWER_BYTES {
            break;
        }
    }
    Ok(out)
}

/// A short, printable account of an answer body: a JSON error message, an HTML page's title,
/// or the first characters.
pub(crate) fn describe_body(ctype: &str, body: &[u8]) -> String {
    if body.is_empty() {
        return format!("empty body ({ctype})");
    }
    let text = String::from_utf8_lossy(body);
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        // The backend's `ErrorBody`: a code and a human message.
        let field = |k: &str| v.get(k).and_then(|m| m.as_str());
        if let (Some(code), Some(message)) = (field("error"), field("message")) {
            return format!("{}: {:?}", clip(code, 60), clip(message, 200));
        }
        for key in ["error", "message", "detail"] {
            if let Some(s) = v.get(key).and_then(|m| m.as_str()) {
                return format!("{:?}", clip(s, 200));
            }
        }
        return format!("JSON {}", clip(&v.to_string(), 200));
    }
    let lower = text.to_ascii_lowercase();
    if let (Some(a), Some(b)) = (lower.find("<title>"), lower.find("</title>"))
        && a + 7 <= b
    {
        return format!(
            "an HTML page ({ctype}) titled {:?}",
            clip(text[a + 7..b].trim(), 120)
        );
    }
    format!("{ctype}: {:?}", clip(&text, 120))
}

fn clip(s: &str, max: usize) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let collapsed = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() > max {
        collapsed.chars().take(max).collect::<String>() + "…"
    } else {
        collapsed
    }
}

pub(crate) fn transport_failure(e: &reqwest::Error) -> Failure {
    if e.is_builder() {
        return Failure::Permanent(format!("cannot build the request: {}", error_chain(e)));
    }
    Failure::transient(transport_reason(e))
}

pub(crate) fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("backend did not answer in time: {}", error_chain(e))
    } else if e.is_connect() {
        format!("cannot connect to the backend: {}", error_chain(e))
    } else {
        format!("network error: {}", error_chain(e))
    }
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        source = inner.source();
    }
    s
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_url_must_be_https_unless_loopback() {
        assert_eq!(
            check_backend_url("https://store.example/").unwrap(),
            "https://store.example"
        );
        assert_eq!(
            check_backend_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(check_backend_url("http://[::1]:80/api/").is_ok());
        assert!(check_backend_url("http://localhost:1").is_ok());
        assert!(matches!(
            check_backend_url("http://store.example"),
            Err(UploadError::Insecure { .. })
        ));
        assert!(matches!(
            check_backend_url("https://u:p@store.example"),
            Err(UploadError::BadUrl { .. })
        ));
        assert!(matches!(
            check_backend_url("ftp://store.example"),
            Err(UploadError::BadUrl { .. })
        ));
        assert!(matches!(
            check_backend_url("not a url"),
            Err(UploadError::BadUrl { .. })
        ));
    }

    #[test]
    fn bodies_are_described_briefly() {
        let html = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
        assert_eq!(
            describe_body("text/html", html),
            "an HTML page (text/html) titled \"502 Bad Gateway\""
        );
        assert_eq!(
            describe_body(
                "application/json",
                br#"{"error":"conflict","message":"stored with other bytes"}"#
            ),
            "conflict: \"stored with other bytes\""
        );
        assert_eq!(
            describe_body("application/json", br#"{"error":"scene unknown"}"#),
            "\"scene unknown\""
        );
        assert_eq!(describe_body("text/plain", b""), "empty body (text/plain)");
        let long = "x".repeat(500);
        assert!(describe_body("text/plain", long.as_bytes()).len() < 200);
    }

    #[test]
    fn backoff_grows_with_jitter_inside_bounds() {
        let spool_dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(crate::spool::SpoolOptions {
            dir: spool_dir.path().to_path_buf(),
            quota_bytes: 1 << 20,
            retention: Duration::from_secs(60),
        })
        .unwrap();
        let (events, _rx) = mpsc::unbounded_channel();
        let (_stop, stop_rx) = watch::channel(false);
        let mut w = Worker {
            spool: Arc::new(spool),
            client: reqwest::Client::new(),
            base: "http://127.0.0.1:1".into(),
            auth: HeaderValue::from_static("Bearer x"),
            options: UploaderOptions {
                backoff_min: Duration::from_millis(100),
                backoff_max: Duration::from_secs(2),
                timeout: Duration::from_secs(1),
                sweep_interval: Duration::from_secs(1),
            },
            events,
            stop: stop_rx,
            rng: StdRng::seed_from_u64(1),
            failures: 0,
        };
        w.failures = 1;
        assert_eq!(w.backoff(), Duration::from_millis(100));
        let mut seen = Vec::new();
        for failures in [3u32, 10, 40, u32::MAX] {
            w.failures = failures;
            for _ in 0..50 {
                let d = w.backoff();
                assert!(
                    d >= Duration::from_millis(100) && d <= Duration::from_secs(2),
                    "{d:?}"
                );
                seen.push(d);
            }
        }
        seen.sort();
        seen.dedup();
        assert!(seen.len() > 100, "jitter should spread the waits");
    }
}
