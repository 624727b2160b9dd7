//! The one upload loop, shared by the photo uploader ([`crate::upload`]) and the clip uploader
//! ([`crate::clip_upload`]): one request at a time; a transient failure (no connection,
//! timeout, 5xx, 408, 429, a redirect, an answer that is not the JSON confirmation) waits with
//! exponential backoff and full jitter (at least the backend's `Retry-After`, up to the
//! maximum); a permanent one (any other 4xx) moves on at once; a stop request ends the loop
//! after the delivery in hand. What is delivered, where it waits, and how its outcome is
//! recorded is the [`Cargo`]'s: the loop only drives it.
//!
//! Also here: the [`Link`] to the backend (URL checked, device token, one HTTP client) with the
//! upload request both send (the item's id as the idempotency key, its session, time, trigger
//! and sha256 as headers), and the one-line account of a failed answer.

use std::future::Future;
use std::time::Duration;

use mirrorsight_contract::backend as api;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::PhotosConfig;
use crate::secret::Secret;

/// Longest error body kept for a message.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Where photos and clips go.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownReport {
    /// The worker stopped after finishing what it was doing.
    Finished,
    /// The in-flight request outlasted the timeout and was abandoned; the item is still
    /// pending and will be sent again (idempotently) on the next start.
    TimedOut,
}

/// Why one delivery failed.
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

    pub(crate) fn is_permanent(&self) -> bool {
        matches!(self, Failure::Permanent(_))
    }
}

/// How one turn of the loop went.
pub(crate) enum Attempt {
    /// The backend confirmed it: the backoff starts over.
    Delivered,
    /// Nothing was sent (e.g. a corrupt photo quarantined).
    Skipped,
    Failed(Failure),
}

impl From<Result<(), Failure>> for Attempt {
    fn from(result: Result<(), Failure>) -> Self {
        result.map_or_else(Attempt::Failed, |()| Attempt::Delivered)
    }
}

/// What an uploader delivers: where its work waits, and how one piece is sent and recorded
/// (outcome events, the spool, requeueing a transient failure).
pub(crate) trait Cargo: Send + 'static {
    type Job: Send;
    /// What the log calls it: `photo`, `clip`.
    const WHAT: &'static str;

    /// The next piece of work, if there is one now.
    fn next(&mut self) -> impl Future<Output = Option<Self::Job>> + Send;
    /// Waits until there may be work; `false` when none can come any more (the loop ends).
    fn wait(&mut self) -> impl Future<Output = bool> + Send;
    /// Sends `job` over `link` and records what became of it.
    fn deliver(&mut self, link: &Link, job: Self::Job) -> impl Future<Output = Attempt> + Send;
}

/// The backend as both uploaders talk to it.
pub(crate) struct Link {
    client: reqwest::Client,
    /// The checked base URL, without a trailing `/`.
    pub(crate) base: String,
    auth: HeaderValue,
}

/// One item's upload request (`POST {path}`, the body byte for byte).
pub(crate) struct Upload<'a> {
    pub path: String,
    pub content_type: &'static str,
    /// The header that names the item (`X-Photo-Id`, `X-Clip-Id`); its value is also the
    /// idempotency key.
    pub id_header: &'static str,
    pub id: &'a str,
    pub session: &'a str,
    /// Unix milliseconds.
    pub taken_at_ms: u64,
    pub trigger: &'a str,
    /// Lowercase hex of the body.
    pub sha256: &'a str,
}

impl Link {
    /// Checks the backend's URL and token and sets up the client: no redirects (one would turn
    /// the POST into a GET and could carry the token elsewhere), `timeout` per request.
    pub(crate) fn new(
        backend: &Backend,
        timeout: Duration,
        user_agent: &str,
    ) -> Result<Self, UploadError> {
        let base = check_backend_url(&backend.base_url)?;
        if backend.token.is_empty() {
            return Err(UploadError::BadToken);
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", backend.token.expose()))
            .map_err(|_| UploadError::BadToken)?;
        auth.set_sensitive(true);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(user_agent)
            .build()
            .map_err(|e| UploadError::Client(error_chain(&e)))?;
        Ok(Self { client, base, auth })
    }

    /// A request to `path` under the backend, with the device token.
    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .header(AUTHORIZATION, self.auth.clone())
    }

    /// Sends a request that answers with no body worth reading: `accept` says which statuses
    /// mean done; any other is classified.
    pub(crate) async fn send(
        &self,
        request: reqwest::RequestBuilder,
        accept: impl FnOnce(StatusCode) -> bool,
    ) -> Result<(), Failure> {
        let resp = request.send().await.map_err(|e| transport_failure(&e))?;
        if accept(resp.status()) {
            Ok(())
        } else {
            Err(classify_error_status(resp).await)
        }
    }

    /// Uploads `body` and reads the backend's JSON confirmation (200 or 201). An answer that is
    /// not one (a captive portal, a proxy's page) is transient: the item is not confirmed.
    pub(crate) async fn upload<C: DeserializeOwned>(
        &self,
        item: &Upload<'_>,
        body: Vec<u8>,
    ) -> Result<C, Failure> {
        let resp = self
            .request(reqwest::Method::POST, &item.path)
            .header(CONTENT_TYPE, item.content_type)
            .header(api::header::IDEMPOTENCY_KEY, item.id)
            .header(item.id_header, item.id)
            .header(api::header::SESSION_ID, item.session)
            .header(api::header::TAKEN_AT, item.taken_at_ms.to_string())
            .header(api::header::TRIGGER, item.trigger)
            .header(api::header::CONTENT_SHA256, item.sha256)
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
        serde_json::from_slice(&answer).map_err(|_| {
            Failure::transient(format!(
                "backend answered {status} with {} instead of the JSON confirmation; not counted as delivered",
                describe_body(&ctype, &answer)
            ))
        })
    }
}

/// The loop, driving one [`Cargo`] over one [`Link`].
pub(crate) struct Courier<C> {
    link: Link,
    options: UploaderOptions,
    stop: watch::Receiver<bool>,
    rng: StdRng,
    /// Consecutive transient failures, for the backoff.
    failures: u32,
    cargo: C,
}

/// The running loop's handle. Dropping it stops the loop at its next pause; `shutdown` waits
/// for the delivery in hand.
#[derive(Debug)]
pub(crate) struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    what: &'static str,
}

impl<C: Cargo> Courier<C> {
    /// Starts the loop on `runtime`.
    pub(crate) fn spawn(
        runtime: &tokio::runtime::Handle,
        link: Link,
        options: UploaderOptions,
        cargo: C,
    ) -> Running {
        let (stop, stop_rx) = watch::channel(false);
        let courier = Courier {
            link,
            options,
            stop: stop_rx,
            rng: StdRng::from_os_rng(),
            failures: 0,
            cargo,
        };
        Running {
            stop,
            task: runtime.spawn(courier.run()),
            what: C::WHAT,
        }
    }

    async fn run(mut self) {
        info!(backend = %self.link.base, "{} uploader started", C::WHAT);
        loop {
            if self.stopping() {
                break;
            }
            let Some(job) = self.cargo.next().await else {
                tokio::select! {
                    more = self.cargo.wait() => if !more {
                        break;
                    },
                    _ = self.stop.changed() => {}
                }
                continue;
            };
            match self.cargo.deliver(&self.link, job).await {
                Attempt::Delivered => self.failures = 0,
                Attempt::Skipped | Attempt::Failed(Failure::Permanent(_)) => {}
                Attempt::Failed(Failure::Transient { retry_after, .. }) => {
                    self.failures = self.failures.saturating_add(1);
                    let mut wait = backoff(&self.options, self.failures, &mut self.rng);
                    if let Some(ra) = retry_after {
                        wait = wait.max(ra.min(self.options.backoff_max));
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.stop.changed() => {}
                    }
                }
            }
        }
        info!("{} uploader stopped", C::WHAT);
    }

    fn stopping(&self) -> bool {
        // A dropped handle counts as a stop request.
        *self.stop.borrow() || self.stop.has_changed().is_err()
    }
}

impl Running {
    /// Stops the loop: the delivery in hand (if any) is finished and recorded, waiting at most
    /// `timeout`; backoff sleeps are cut short.
    pub(crate) async fn shutdown(self, timeout: Duration) -> ShutdownReport {
        let _ = self.stop.send(true);
        let mut task = self.task;
        match tokio::time::timeout(timeout, &mut task).await {
            Ok(_) => ShutdownReport::Finished,
            Err(_) => {
                task.abort();
                let _ = task.await;
                warn!(
                    ?timeout,
                    "{} upload still in flight at shutdown: abandoned, it is resent on the next start",
                    self.what
                );
                ShutdownReport::TimedOut
            }
        }
    }
}

/// The wait after the `failures`-th transient failure in a row: full jitter between the
/// minimum and an exponentially growing cap.
fn backoff(options: &UploaderOptions, failures: u32, rng: &mut StdRng) -> Duration {
    let (min, max) = (
        options.backoff_min,
        options.backoff_max.max(options.backoff_min),
    );
    let exp = failures.saturating_sub(1).min(30);
    let cap = min.saturating_mul(1u32 << exp).min(max);
    if cap <= min {
        return min;
    }
    Duration::from_secs_f64(rng.random_range(min.as_secs_f64()..=cap.as_secs_f64()))
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
        let options = UploaderOptions {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            sweep_interval: Duration::from_secs(1),
        };
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(backoff(&options, 1, &mut rng), Duration::from_millis(100));
        let mut seen = Vec::new();
        for failures in [3u32, 10, 40, u32::MAX] {
            for _ in 0..50 {
                let d = backoff(&options, failures, &mut rng);
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
