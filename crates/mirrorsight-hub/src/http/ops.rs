//! Operations: `/v1/stats` (admin token), `/metrics` (Prometheus text: admin token on `listen`,
//! none on `metrics.listen`), `/healthz`.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mirrorsight_contract::backend::error_code;
use serde::Serialize;

use super::{ApiError, AppState, bearer, constant_time_eq};
use crate::store::{SceneScans, StatsRow, StoreError};

#[derive(Debug, Serialize)]
struct StatsAnswer {
    /// Days are counted in this offset from UTC.
    utc_offset_minutes: i32,
    rows: Vec<StatsRow>,
}

fn valid_day(day: &str) -> bool {
    let b = day.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// `401` unless the request carries the admin token (and there is one).
fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let authorised = match (&state.admin_token, bearer(headers)?) {
        (Some(admin), Some(presented)) => constant_time_eq(admin.expose(), presented),
        _ => false,
    };
    if authorised {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        error_code::UNAUTHORIZED,
        "admin token required",
    ))
}

/// The `from` and `to` days of a stats query, checked.
fn day_range(q: &HashMap<String, String>) -> Result<(Option<String>, Option<String>), ApiError> {
    let from = q.get("from").cloned();
    let to = q.get("to").cloned();
    for (name, day) in [("from", &from), ("to", &to)] {
        if let Some(day) = day
            && !valid_day(day)
        {
            return Err(ApiError::bad_request(format!("{name} must be YYYY-MM-DD")));
        }
    }
    Ok((from, to))
}

#[derive(Debug, Serialize)]
struct SceneStatsAnswer {
    /// Days are counted in this offset from UTC.
    utc_offset_minutes: i32,
    rows: Vec<SceneScans>,
}

/// What both statistics pages share: the admin token, the `from`/`to` days, and one store
/// query over them (off the async threads) with the configured offset from UTC in seconds.
/// Returns the offset in minutes with the rows.
async fn admin_day_query<T: Send + 'static>(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    query: impl FnOnce(&AppState, i64, Option<&str>, Option<&str>) -> Result<T, StoreError>
    + Send
    + 'static,
) -> Result<(i32, T), ApiError> {
    require_admin(state, headers)?;
    let (from, to) = day_range(q)?;
    let offset_minutes = state.config.stats.utc_offset_minutes;
    let rows = state
        .blocking(move |s| {
            query(
                s,
                i64::from(offset_minutes) * 60,
                from.as_deref(),
                to.as_deref(),
            )
        })
        .await?;
    Ok((offset_minutes, rows))
}

/// `GET /v1/stats/scenes?from=YYYY-MM-DD&to=YYYY-MM-DD`: scans per scene and source
/// (`session`, or `idle` for a mirror's permanent code).
pub(super) async fn scene_stats(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (offset_minutes, rows) = admin_day_query(&state, &headers, &q, |s, offset_s, from, to| {
        s.store.scene_scans(offset_s, from, to)
    })
    .await?;
    Ok(axum::Json(SceneStatsAnswer {
        utc_offset_minutes: offset_minutes,
        rows,
    })
    .into_response())
}

/// `GET /v1/stats?from=YYYY-MM-DD&to=YYYY-MM-DD`: counts per store, mirror and day.
pub(super) async fn stats(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (offset_minutes, rows) = admin_day_query(&state, &headers, &q, |s, offset_s, from, to| {
        s.store.stats(offset_s, from, to)
    })
    .await?;
    Ok(axum::Json(StatsAnswer {
        utc_offset_minutes: offset_minutes,
        rows,
    })
    .into_response())
}

/// `GET /metrics` on the public listener: the same, for the admin token only (the public
/// listener is what the reverse proxy forwards).
pub(super) async fn metrics_with_admin_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = require_admin(&state, &headers) {
        return e.into_response();
    }
    metrics(State(state)).await
}

/// `GET /metrics`. Aggregates only: nothing here names a scene, a shopper or a token.
pub(super) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let totals = match state.blocking(|s| s.store.totals()).await {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP mirrorsight_hub_activity_total Counted activity (sessions, codes minted, scans, deliveries, gallery opens) since the database was created.\n# TYPE mirrorsight_hub_activity_total counter"
    );
    for (kind, n) in &totals.activity {
        let _ = writeln!(
            out,
            "mirrorsight_hub_activity_total{{kind=\"{}\"}} {n}",
            kind.as_str()
        );
    }
    let gauges = [
        (
            "photos_stored",
            "Photos currently stored (not expired).",
            totals.photos_stored,
        ),
        (
            "photo_bytes_stored",
            "Bytes of photos currently stored.",
            totals.photo_bytes_stored,
        ),
        (
            "devices_active",
            "Devices with a valid token.",
            totals.active_devices,
        ),
        (
            "bindings",
            "Scanner openids bound to sessions.",
            totals.bindings,
        ),
        (
            "wechat_events",
            "WeChat scan pushes recorded (after deduplication).",
            totals.wechat_events,
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP mirrorsight_hub_{name} {help}\n# TYPE mirrorsight_hub_{name} gauge\nmirrorsight_hub_{name} {value}"
        );
    }
    let c = &state.counters;
    let counters = [
        (
            "callback_requests_total",
            "POSTs to /wechat since start.",
            &c.callback_requests,
        ),
        (
            "callback_rejected_signature_total",
            "Callback requests refused for a wrong or stale signature.",
            &c.callback_rejected_signature,
        ),
        (
            "callback_malformed_total",
            "Callback pushes refused as malformed.",
            &c.callback_malformed,
        ),
        (
            "callback_retries_answered_total",
            "Retried pushes answered from the record.",
            &c.callback_retries_answered,
        ),
        (
            "callback_replays_refused_total",
            "Signed pushes refused because their timestamp and nonce already came with another body.",
            &c.callback_replays_refused,
        ),
        (
            "uploads_created_total",
            "Photos stored since start.",
            &c.uploads_created,
        ),
        (
            "uploads_repeated_total",
            "Photo uploads that were retries of stored photos.",
            &c.uploads_repeated,
        ),
        (
            "uploads_refused_total",
            "Photo uploads refused.",
            &c.uploads_refused,
        ),
        (
            "unauthorized_total",
            "Relay requests without a valid device token.",
            &c.unauthorized,
        ),
        (
            "forbidden_total",
            "Relay requests for another device's scene.",
            &c.forbidden,
        ),
        (
            "mint_failures_total",
            "Scene codes WeChat did not mint.",
            &c.mint_failures,
        ),
        (
            "mints_rate_limited_total",
            "Mints refused with 429 by the per-device limit ([relay]).",
            &c.mints_rate_limited,
        ),
        (
            "wechat_quota_errors_total",
            "Mints WeChat refused for a spent quota (errcode 45009 daily, 45011 per minute). Alert on any increase.",
            &c.wechat_quota_errors,
        ),
        (
            "callback_refused_plaintext_total",
            "Plaintext pushes refused because callback.mode is safe.",
            &c.callback_refused_plaintext,
        ),
        (
            "body_timeouts_total",
            "Request bodies that did not arrive within http.body_read_timeout_s (408).",
            &c.body_timeouts,
        ),
        (
            "request_timeouts_total",
            "Requests not answered within http.request_timeout_s (503).",
            &c.request_timeouts,
        ),
    ];
    let _ = writeln!(
        out,
        "# HELP mirrorsight_hub_wechat_quota_last_error_timestamp_seconds When WeChat last refused a mint for a spent quota (unix seconds; 0: not since start).\n# TYPE mirrorsight_hub_wechat_quota_last_error_timestamp_seconds gauge\nmirrorsight_hub_wechat_quota_last_error_timestamp_seconds {}",
        c.wechat_quota_last_error_at.load(Ordering::Relaxed)
    );
    let lease = &state.token_lease;
    let _ = writeln!(
        out,
        "# HELP mirrorsight_hub_access_tokens_total Access tokens this instance started using, by where they came from (fetched from WeChat holding the lease, or shared through the database).\n# TYPE mirrorsight_hub_access_tokens_total counter\nmirrorsight_hub_access_tokens_total{{source=\"fetched\"}} {}\nmirrorsight_hub_access_tokens_total{{source=\"shared\"}} {}",
        lease.fetched.load(Ordering::Relaxed),
        lease.shared.load(Ordering::Relaxed)
    );
    let counters = counters.into_iter().chain([
        (
            "token_lease_waits_total",
            "Times this instance waited for another instance's token refresh.",
            &lease.waits,
        ),
        (
            "token_leases_lost_total",
            "Token fetches whose lease ran out before they finished.",
            &lease.lost,
        ),
    ]);
    for (name, help, counter) in counters {
        let _ = writeln!(
            out,
            "# HELP mirrorsight_hub_{name} {help}\n# TYPE mirrorsight_hub_{name} counter\nmirrorsight_hub_{name} {}",
            counter.load(Ordering::Relaxed)
        );
    }
    let mut response = (StatusCode::OK, out).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `GET /healthz`: 200 when the database answers.
pub(super) async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    match state.blocking(|s| s.store.ping()).await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days() {
        assert!(valid_day("2026-01-31"));
        assert!(!valid_day("2026-1-31") && !valid_day("2026/01/31") && !valid_day("x' OR 1"));
    }
}
