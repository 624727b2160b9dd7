//! The hub's HTTP surface: the relay for the mirrors (`/v1/...`), the WeChat callback
//! (`/wechat`), the shopper's gallery (`/s/...`), and operations (`/v1/stats`, `/metrics`,
//! `/healthz`). [`server`] accepts the connections, with the limits `[http]` sets.

mod callback;
mod gallery;
pub mod limit;
mod mp;
mod ops;
mod relay;
pub mod server;
pub mod shopper;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use mirrorsight_contract::backend::{self, ErrorBody, error_code};
use mirrorsight_wechat::{Secret, SnsClient, WechatClient};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::HubConfig;
use crate::store::{BlobStore, Store, StoreError};
use crate::wechat::MessageCrypt;

/// Everything a request handler needs. Shared by all requests; holds no per-session state.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub wechat: WechatClient,
    pub config: HubConfig,
    /// `public_base_url` without the trailing `/`.
    pub base_url: String,
    pub callback_token: Secret,
    pub crypt: Option<MessageCrypt>,
    pub admin_token: Option<Secret>,
    pub counters: Counters,
    /// What the shared-token source did (fetches, waits), for `/metrics`.
    pub token_lease: Arc<crate::lease::LeaseCounters>,
    /// Per-device allowance of fresh scene codes (`[relay]`).
    pub mint_limiter: limit::MintLimiter,
    /// The shopper's web sign-in (`/me`).
    pub sns: SnsClient,
    /// Signs the shopper's cookies and mini-program tokens.
    pub cookie_key: shopper::CookieKey,
    /// The mini-program's logins (`[mini_program]`), when one is configured.
    pub mp: Option<SnsClient>,
}

/// In-process counters for `/metrics` (what the database does not record).
#[derive(Debug, Default)]
pub struct Counters {
    pub callback_requests: AtomicU64,
    pub callback_rejected_signature: AtomicU64,
    pub callback_malformed: AtomicU64,
    /// Plaintext pushes refused because `callback.mode` is `"safe"`.
    pub callback_refused_plaintext: AtomicU64,
    pub callback_retries_answered: AtomicU64,
    /// Signed pushes refused because their (timestamp, nonce) already came with another body.
    pub callback_replays_refused: AtomicU64,
    pub uploads_created: AtomicU64,
    pub uploads_repeated: AtomicU64,
    pub uploads_refused: AtomicU64,
    pub unauthorized: AtomicU64,
    pub forbidden: AtomicU64,
    pub mint_failures: AtomicU64,
    /// Mints refused by the per-device rate limit.
    pub mints_rate_limited: AtomicU64,
    /// WeChat answers `45009` (daily quota) or `45011` (per-minute quota) to a mint.
    pub wechat_quota_errors: AtomicU64,
    /// Unix seconds of the last quota error, 0 when none since start.
    pub wechat_quota_last_error_at: AtomicI64,
    /// Request bodies that did not arrive within `http.body_read_timeout_s`.
    pub body_timeouts: AtomicU64,
    /// Requests not answered within `http.request_timeout_s`.
    pub request_timeouts: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything the hub serves on `listen`. Every request is answered within
/// `http.request_timeout_s` ([`server::request_deadline`]).
pub fn router(state: Arc<AppState>) -> Router {
    let deadline = state.config.http.request_timeout();
    Router::new()
        .route("/v1/scenes", post(relay::create_scene))
        .route("/v1/scenes/{scene}", put(relay::register_scene))
        .route("/v1/sessions/{scene}/photos", post(relay::upload_photo))
        .route("/v1/sessions/{scene}/clips", post(relay::upload_clip))
        .route(
            "/v1/sessions/{scene}/clips/{clip}/poster",
            put(relay::put_clip_poster),
        )
        .route(
            "/v1/sessions/{scene}/photos/{photo}",
            delete(relay::delete_photo),
        )
        .route("/wechat", get(callback::handshake).post(callback::push))
        .route("/s/{scene}", get(gallery::page))
        .route("/s/{scene}/photos/{file}", get(gallery::photo))
        .route("/s/{scene}/keep", post(shopper::keep))
        .route("/me", get(shopper::me))
        .route("/me/photos/{photo}/delete", post(shopper::delete_photo))
        .route("/me/forget", post(shopper::forget))
        .route("/oauth/callback", get(shopper::callback))
        .route("/v1/stats", get(ops::stats))
        .route("/v1/stats/scenes", get(ops::scene_stats))
        .route("/v1/mp/login", post(mp::login))
        .route("/v1/mp/photos", get(mp::photos))
        .route("/metrics", get(ops::metrics_with_admin_token))
        .route("/healthz", get(ops::healthz))
        .with_state(Arc::clone(&state))
        .layer(axum::middleware::from_fn_with_state(
            (deadline, state),
            server::request_deadline,
        ))
}

/// `/metrics` alone, without a token: for `metrics.listen`, an address only the scraper
/// reaches.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(ops::metrics))
        .with_state(state)
}

/// An error answer of the JSON API, always with an [`ErrorBody`].
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// `Retry-After` seconds; `503` answers get 2 when unset.
    retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error_code::BAD_REQUEST, message)
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            error_code::UNAVAILABLE,
            message,
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failed");
        Self::unavailable("storage temporarily unavailable")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(ErrorBody::new(self.code, self.message)),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        } else if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        response
    }
}

impl AppState {
    /// Runs blocking store work off the async workers.
    pub(crate) async fn blocking<T, E>(
        self: &Arc<Self>,
        f: impl FnOnce(&AppState) -> Result<T, E> + Send + 'static,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        E: Into<ApiError> + Send + 'static,
    {
        let state = Arc::clone(self);
        match tokio::task::spawn_blocking(move || f(&state)).await {
            Ok(result) => result.map_err(Into::into),
            Err(e) => {
                tracing::error!(error = %e, "blocking task failed");
                Err(ApiError::unavailable("internal task failed"))
            }
        }
    }

    /// The gallery link of a scene.
    pub(crate) fn gallery_url(&self, scene: &str, key: &str) -> String {
        format!("{}/s/{}?k={}", self.base_url, encode_segment(scene), key)
    }

    /// The full-size URL of one photo.
    pub(crate) fn photo_url(&self, scene: &str, photo: &str, key: &str) -> String {
        self.media_url(scene, photo, "jpg", key)
    }

    /// A clip's MP4 (`ext` `mp4`) or poster frame (`poster.jpg`), or a photo (`jpg`).
    pub(crate) fn media_url(&self, scene: &str, id: &str, ext: &str, key: &str) -> String {
        format!(
            "{}/s/{}/photos/{}.{ext}?k={}",
            self.base_url,
            encode_segment(scene),
            encode_segment(id),
            key
        )
    }
}

/// Everything but unreserved characters is escaped, so any scene fits in one path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub(crate) fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The bearer token of a request, if well-formed; a repeated `Authorization` header is a `400`
/// (which of two credentials a client meant is not ours to guess).
pub(crate) fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    backend::bearer_token(header_pairs(headers)).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// A request's headers as the contract's parsers take them.
pub(crate) fn header_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &[u8])> {
    headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()))
}

pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// 128 random bits, base64url without padding (22 characters).
pub(crate) fn random_key() -> Result<String, ApiError> {
    use base64::Engine;
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| {
        tracing::error!(error = %e, "no randomness");
        ApiError::unavailable("no randomness available")
    })?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A scene as the contract allows it: 1..=64 characters, no whitespace or control characters.
pub(crate) fn valid_scene(scene: &str) -> bool {
    let n = scene.chars().count();
    (1..=mirrorsight_contract::backend::MAX_SCENE_LEN).contains(&n)
        && !scene.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub(crate) use backend::valid_id;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_scenes() {
        assert!(valid_id("kJ3x_Zq8R0aUe-1mVbN4wA"));
        assert!(!valid_id("a/b") && !valid_id("") && !valid_id(&"a".repeat(65)));
        assert!(
            valid_scene("kJ3x_Zq8R0aUe-1mVbN4wA") && valid_scene("12345") && valid_scene("a/b?c")
        );
        assert!(!valid_scene("a b") && !valid_scene("") && !valid_scene("a\u{1}"));
        assert_eq!(encode_segment("a/b?c d"), "a%2Fb%3Fc%20d");
        assert_eq!(encode_segment("kJ3x_Zq8-1.~"), "kJ3x_Zq8-1.~");
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h).unwrap(), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&h).unwrap(), Some("abc"));
        h.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&h).unwrap_err().status, StatusCode::BAD_REQUEST);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h).unwrap(), None);
    }

    #[test]
    fn random_keys_are_128_bit() {
        let a = random_key().unwrap();
        assert_eq!(a.len(), 22);
        assert_ne!(a, random_key().unwrap());
    }
}
