//! The shopper's own pages: WeChat web sign-in (网页授权, `snsapi_base`) and "my photos".
//!
//! - `GET /me`: every session bound to the signed-in openid (by a scan, or by "keep these in
//!   my photos" on a session's gallery), newest first, with full-size downloads. Without a
//!   valid sign-in it answers `302` to WeChat's authorize page, with a `state` that is also
//!   put in a short-lived cookie (`ms_oauth`), so a callback the browser did not start is
//!   refused (CSRF on the sign-in).
//! - `GET /oauth/callback?code&state`: exchanges the code for the openid, sets the sign-in
//!   cookie (`ms_signin`: openid, expiry and an HMAC; HttpOnly, Secure, SameSite=Lax) and
//!   redirects to `/me`. WeChat's `40029` (bad or expired code), `40163` (code used) and `-1`
//!   (busy) are shown as a friendly page with a way to try again.
//! - `POST /s/{scene}/keep`: "keep these in my photos" from a gallery: binds the scene to the
//!   shopper (after signing in if needed).
//! - `POST /me/photos/{photo}/delete` and `POST /me/forget`: the shopper deletes one photo, or
//!   everything of theirs in every store; each first shows a confirmation page.
//!
//! Every form carries a CSRF token equal to the `ms_csrf` cookie (HttpOnly, SameSite=Strict):
//! another site can make a browser post, but cannot read the cookie or send it along.
//!
//! Cookies are signed with a key derived (HKDF-SHA256) from the appsecret, which every hub
//! instance holds: a chain's instances accept each other's sign-ins, and a new appsecret signs
//! everyone out.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use mirrorsight_wechat::sns::{ERRCODE_CODE_USED, ERRCODE_INVALID_CODE};
use sha2::Sha256;

use super::gallery::{authorised, html_escape, page_html, private};
use super::{ApiError, AppState, constant_time_eq, unix_now};
use crate::store::{PhotoMeta, SceneRecord};

/// The sign-in cookie: `openid.expiry.mac`.
pub(crate) const SIGNIN_COOKIE: &str = "ms_signin";
/// The sign-in in progress: `state.scene.expiry.mac` (scene base64url, empty for none).
const OAUTH_COOKIE: &str = "ms_oauth";
/// The CSRF token every form repeats.
pub(crate) const CSRF_COOKIE: &str = "ms_csrf";
/// A sign-in must come back from WeChat within this many seconds.
const OAUTH_STATE_TTL_S: i64 = 600;

/// The key the hub's cookies are signed with.
#[derive(Clone)]
pub struct CookieKey([u8; 32]);

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(<key>)")
    }
}

impl CookieKey {
    /// Derived from the appsecret (HKDF-SHA256), so every instance has the same one.
    pub fn derived_from_appsecret(appsecret: &str) -> Self {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"mirrorsight-hub"), appsecret.as_bytes());
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit: expand cannot fail.
        let _ = hk.expand(b"shopper cookies v1", &mut key);
        Self(key)
    }

    fn mac(&self, what: &str, payload: &str) -> String {
        // HMAC takes a key of any length: new_from_slice cannot fail.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        mac.update(what.as_bytes());
        mac.update(b"\x1f");
        mac.update(payload.as_bytes());
        B64.encode(mac.finalize().into_bytes())
    }

    /// `payload.mac`.
    fn sign(&self, what: &str, payload: &str) -> String {
        format!("{payload}.{}", self.mac(what, payload))
    }

    /// The payload of a value [`CookieKey::sign`] made for `what`.
    fn verify<'a>(&self, what: &str, value: &'a str) -> Option<&'a str> {
        let (payload, mac) = value.rsplit_once('.')?;
        constant_time_eq(mac, &self.mac(what, payload)).then_some(payload)
    }

    /// A sign-in cookie value for `openid` until `expires`.
    pub fn signin_value(&self, openid: &str, expires: i64) -> String {
        self.sign("signin", &format!("{openid}.{expires}"))
    }

    /// The openid a sign-in cookie value stands for, if it is genuine and not expired.
    pub fn signed_in(&self, value: &str, now: i64) -> Option<String> {
        self.openid_of("signin", value, now)
    }

    /// A mini-program bearer token for `openid` (the mini-program's) until `expires`. Signed
    /// for another purpose than the sign-in cookie, so neither passes for the other.
    pub fn mp_token(&self, openid: &str, expires: i64) -> String {
        self.sign("mp", &format!("{openid}.{expires}"))
    }

    /// The openid a mini-program token stands for, if it is genuine and not expired.
    pub fn mp_openid(&self, token: &str, now: i64) -> Option<String> {
        self.openid_of("mp", token, now)
    }

    fn openid_of(&self, what: &str, value: &str, now: i64) -> Option<String> {
        let payload = self.verify(what, value)?;
        let (openid, expires) = payload.rsplit_once('.')?;
        let expires: i64 = expires.parse().ok()?;
        (expires > now && valid_openid(openid)).then(|| openid.to_string())
    }
}

/// What WeChat's openids look like (28 characters of base64url in practice).
pub(crate) fn valid_openid(openid: &str) -> bool {
    (1..=128).contains(&openid.len())
        && openid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The value of cookie `name`, if the request sent exactly one.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v);
    let first = found.next()?;
    // Two cookies of one name (one planted on a parent domain): trust neither.
    found.next().is_none().then_some(first)
}

fn set_cookie(response: &mut Response, name: &str, value: &str, max_age_s: i64, same_site: &str) {
    let cookie = format!(
        "{name}={value}; Path=/; Max-Age={max_age_s}; HttpOnly; Secure; SameSite={same_site}"
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    private(
        (status, page_html(title, body)).into_response(),
        "text/html; charset=utf-8",
    )
}

fn redirect(status: StatusCode, location: &str) -> Response {
    let mut response = status.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    response
}

/// The CSRF token of this browser: its `ms_csrf` cookie, or a new one to set.
pub(crate) fn csrf_token(headers: &HeaderMap) -> Result<(String, bool), ApiError> {
    match cookie(headers, CSRF_COOKIE).filter(|v| super::valid_id(v)) {
        Some(token) => Ok((token.to_string(), false)),
        None => Ok((super::random_key()?, true)),
    }
}

/// Sets the CSRF cookie on `response` if it is new.
pub(crate) fn with_csrf(mut response: Response, token: &str, new: bool) -> Response {
    if new {
        // A year: the token guards nothing on its own; it only has to match the form.
        set_cookie(&mut response, CSRF_COOKIE, token, 365 * 86_400, "Strict");
    }
    response
}

/// Whether a form's `csrf` field matches the browser's cookie.
fn csrf_ok(headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    match (cookie(headers, CSRF_COOKIE), form.get("csrf")) {
        (Some(c), Some(f)) => !c.is_empty() && constant_time_eq(c, f),
        _ => false,
    }
}

fn forbidden_form() -> Response {
    html(
        StatusCode::FORBIDDEN,
        "请重试 · Please try again",
        "<main><div class=\"notice\"><p>页面已过期，请返回后重试。</p><p>This page has expired; please go back and try again.</p><p><a href=\"/me\">我的照片 · My photos</a></p></div></main>",
    )
}

/// The openid of a valid sign-in cookie.
fn signed_in(state: &AppState, headers: &HeaderMap) -> Option<String> {
    state
        .cookie_key
        .signed_in(cookie(headers, SIGNIN_COOKIE)?, unix_now())
}

/// `302` to WeChat's authorize page, with the state in a cookie; `keep` is a scene to bind
/// once signed in.
fn start_signin(state: &AppState, keep: Option<&str>) -> Response {
    let Ok(nonce) = super::random_key() else {
        return ApiError::unavailable("no randomness available").into_response();
    };
    // WeChat allows letters and digits only in `state`.
    let oauth_state: String = nonce.chars().filter(char::is_ascii_alphanumeric).collect();
    let expires = unix_now() + OAUTH_STATE_TTL_S;
    let scene = keep.map(|s| B64.encode(s)).unwrap_or_default();
    let value = state
        .cookie_key
        .sign("oauth", &format!("{oauth_state}.{scene}.{expires}"));
    let redirect_uri = format!("{}/oauth/callback", state.base_url);
    let mut response = redirect(
        StatusCode::FOUND,
        &state.sns.authorize_url(&redirect_uri, &oauth_state),
    );
    set_cookie(
        &mut response,
        OAUTH_COOKIE,
        &value,
        OAUTH_STATE_TTL_S,
        "Lax",
    );
    response
}

/// `GET /me`.
pub(super) async fn me(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let Some(openid) = signed_in(&state, &headers) else {
        return start_signin(&state, None);
    };
    let (csrf, new_csrf) = match csrf_token(&headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let result = state
        .blocking(
            move |s| -> Result<Vec<(SceneRecord, Vec<PhotoMeta>)>, ApiError> {
                let mut sessions = Vec::new();
                for scene in s.store.scenes_of_openid(&openid)? {
                    let photos = s.store.photos_of_scene(&scene.scene)?;
                    sessions.push((scene, photos));
                }
                Ok(sessions)
            },
        )
        .await;
    match result {
        Ok(sessions) => with_csrf(
            html(
                StatusCode::OK,
                "我的照片 · My photos",
                &me_html(&state, &sessions, &csrf),
            ),
            &csrf,
            new_csrf,
        ),
        Err(e) => e.into_response(),
    }
}

/// `YYYY-MM-DD` of unix seconds `t` at `offset_s` from UTC.
fn civil_date(t: i64, offset_s: i64) -> String {
    // Howard Hinnant's days-to-civil.
    let z = (t + offset_s).div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn me_html(state: &AppState, sessions: &[(SceneRecord, Vec<PhotoMeta>)], csrf: &str) -> String {
    let offset_s = i64::from(state.config.stats.utc_offset_minutes) * 60;
    let csrf = html_escape(csrf);
    let mut body = String::from(
        "<header><h1>我的照片 · My photos</h1><p class=\"sub\">你在试衣镜前拍的全部照片 · Every photo the mirrors took of you</p></header><main>",
    );
    let live_total: usize = sessions
        .iter()
        .map(|(_, p)| p.iter().filter(|p| p.expired_at.is_none()).count())
        .sum();
    if live_total == 0 {
        body.push_str("<div class=\"notice\" id=\"empty\"><p>还没有照片。在试衣镜前扫码后，照片会出现在这里。</p><p>No photos yet. Scan the code on a mirror and your photos appear here.</p></div>");
    }
    let mut numbers = super::gallery::Numbers::default();
    for (scene, photos) in sessions {
        let live: Vec<&PhotoMeta> = photos.iter().filter(|p| p.expired_at.is_none()).collect();
        if live.is_empty() {
            continue;
        }
        body.push_str(&format!(
            "<section class=\"session\" data-scene=\"{}\"><h2>{} · {}</h2>",
            html_escape(&scene.scene),
            civil_date(scene.created_at, offset_s),
            html_escape(&scene.store),
        ));
        for photo in live {
            let delete = format!("/me/photos/{}/delete", super::encode_segment(&photo.photo));
            let button = format!(
                "<form method=\"post\" action=\"{delete}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\" class=\"del\">删除 · Delete</button></form>"
            );
            let n = numbers.next(photo.media);
            body.push_str(&super::gallery::figure(state, scene, photo, n, &button));
        }
        body.push_str("</section>");
    }
    body.push_str(&format!(
        "<footer><form method=\"post\" action=\"/me/forget\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\" class=\"del\" id=\"forget\">删除我的全部照片和数据 · Forget me: delete all my photos and data</button></form></footer></main>"
    ));
    body
}

/// `GET /oauth/callback?code&state`.
pub(super) async fn callback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let now = unix_now();
    // The state must be the one this browser was sent off with, and recent.
    let pending = cookie(&headers, OAUTH_COOKIE)
        .and_then(|v| state.cookie_key.verify("oauth", v))
        .and_then(|payload| {
            let mut parts = payload.split('.');
            let (st, scene, expires) = (parts.next()?, parts.next()?, parts.next()?);
            let expires: i64 = expires.parse().ok()?;
            let scene = match scene {
                "" => None,
                s => Some(String::from_utf8(B64.decode(s).ok()?).ok()?),
            };
            (expires > now).then(|| (st.to_string(), scene))
        });
    let Some((expected_state, keep)) = pending else {
        return signin_failed(
            StatusCode::BAD_REQUEST,
            "登录已过期，请重试。",
            "The sign-in has expired; please try again.",
        );
    };
    if !q
        .get("state")
        .is_some_and(|s| constant_time_eq(s, &expected_state))
    {
        return signin_failed(
            StatusCode::BAD_REQUEST,
            "登录请求无效，请重试。",
            "This sign-in was not started here; please try again.",
        );
    }
    let Some(code) = q.get("code").filter(|c| !c.is_empty()) else {
        // The shopper declined (snsapi_userinfo) or WeChat sent no code.
        return signin_failed(
            StatusCode::BAD_REQUEST,
            "没有完成微信登录。",
            "The WeChat sign-in was not completed.",
        );
    };
    let identity = match state.sns.exchange_oauth_code(code).await {
        Ok(identity) => identity,
        Err(e) => {
            tracing::warn!(error = %e, "web sign-in code exchange failed");
            return match e.errcode() {
                Some(ERRCODE_INVALID_CODE) => signin_failed(
                    StatusCode::BAD_REQUEST,
                    "登录链接已失效（超过 5 分钟），请重试。",
                    "The sign-in link has expired (it works for 5 minutes); please try again.",
                ),
                Some(ERRCODE_CODE_USED) => signin_failed(
                    StatusCode::BAD_REQUEST,
                    "这个登录链接已经用过了，请重试。",
                    "This sign-in link was already used; please try again.",
                ),
                Some(-1) => signin_failed(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "微信繁忙，请稍后重试。",
                    "WeChat is busy; please try again in a moment.",
                ),
                _ => signin_failed(
                    StatusCode::BAD_GATEWAY,
                    "暂时无法完成微信登录，请稍后重试。",
                    "WeChat sign-in is not available right now; please try again later.",
                ),
            };
        }
    };
    if !valid_openid(&identity.openid) {
        tracing::warn!("web sign-in returned an unusable openid");
        return signin_failed(
            StatusCode::BAD_GATEWAY,
            "暂时无法完成微信登录，请稍后重试。",
            "WeChat sign-in is not available right now; please try again later.",
        );
    }
    if let Some(scene) = keep {
        let openid = identity.openid.clone();
        let bound = state
            .blocking(move |s| s.store.bind(&scene, &openid, "signin", now))
            .await;
        if let Err(e) = bound {
            return e.into_response();
        }
    }
    let lifetime_s = i64::from(state.config.signin.cookie_days) * 86_400;
    let mut response = redirect(StatusCode::FOUND, "/me");
    let value = state
        .cookie_key
        .signin_value(&identity.openid, now + lifetime_s);
    set_cookie(&mut response, SIGNIN_COOKIE, &value, lifetime_s, "Lax");
    set_cookie(&mut response, OAUTH_COOKIE, "", 0, "Lax");
    response
}

fn signin_failed(status: StatusCode, zh: &str, en: &str) -> Response {
    html(
        status,
        "登录失败 · Sign-in failed",
        &format!(
            "<main><div class=\"notice\" id=\"signin-failed\"><p>{}</p><p>{}</p><p><a href=\"/me\">重试 · Try again</a></p></div></main>",
            html_escape(zh),
            html_escape(en)
        ),
    )
}

/// A urlencoded form body, at most 4 KiB.
fn form(body: &[u8]) -> Option<HashMap<String, String>> {
    if body.len() > 4096 {
        return None;
    }
    Some(
        form_urlencoded_pairs(body)
            .into_iter()
            .collect::<HashMap<_, _>>(),
    )
}

fn form_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// A confirmation page that posts `action` again with `confirm=yes`.
fn confirm_page(
    title: &str,
    question_zh: &str,
    question_en: &str,
    action: &str,
    csrf: &str,
) -> Response {
    html(
        StatusCode::OK,
        title,
        &format!(
            "<main><div class=\"notice\" id=\"confirm\"><p>{}</p><p>{}</p><form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"confirm\" value=\"yes\"><button type=\"submit\" class=\"del\">确认删除 · Yes, delete</button></form><p><a href=\"/me\">取消 · Cancel</a></p></div></main>",
            html_escape(question_zh),
            html_escape(question_en),
            html_escape(action),
            html_escape(csrf),
        ),
    )
}

/// `POST /me/photos/{photo}/delete`.
pub(super) async fn delete_photo(
    State(state): State<Arc<AppState>>,
    Path(photo): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(openid) = signed_in(&state, &headers) else {
        return redirect(StatusCode::SEE_OTHER, "/me");
    };
    let Some(form) = form(&body) else {
        return ApiError::bad_request("form too large").into_response();
    };
    if !csrf_ok(&headers, &form) {
        return forbidden_form();
    }
    if !super::valid_id(&photo) {
        return redirect(StatusCode::SEE_OTHER, "/me");
    }
    if form.get("confirm").map(String::as_str) != Some("yes") {
        let csrf = form.get("csrf").cloned().unwrap_or_default();
        return confirm_page(
            "删除照片 · Delete photo",
            "确定要删除这张照片吗？删除后无法恢复。",
            "Delete this photo? This cannot be undone.",
            &format!("/me/photos/{}/delete", super::encode_segment(&photo)),
            &csrf,
        );
    }
    let result = state
        .blocking(move |s| -> Result<bool, ApiError> {
            let Some(meta) = s.store.photo_of_openid(&openid, &photo)? else {
                return Ok(false);
            };
            if let Some(gone) = s.store.delete_photo(&meta.scene, &meta.photo)? {
                // Row first, then bytes: a crash between leaves an orphan the sweep removes.
                for key in gone.blob_keys() {
                    s.blobs.delete(key).map_err(|e| {
                        tracing::error!(error = %e, "deleting photo bytes failed");
                        ApiError::unavailable("photo storage temporarily unavailable")
                    })?;
                }
            }
            Ok(true)
        })
        .await;
    match result {
        Ok(_) => redirect(StatusCode::SEE_OTHER, "/me"),
        Err(e) => e.into_response(),
    }
}

/// `POST /me/forget`.
pub(super) async fn forget(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(openid) = signed_in(&state, &headers) else {
        return redirect(StatusCode::SEE_OTHER, "/me");
    };
    let Some(form) = form(&body) else {
        return ApiError::bad_request("form too large").into_response();
    };
    if !csrf_ok(&headers, &form) {
        return forbidden_form();
    }
    if form.get("confirm").map(String::as_str) != Some("yes") {
        let csrf = form.get("csrf").cloned().unwrap_or_default();
        return confirm_page(
            "删除全部 · Forget me",
            "确定要删除你在所有门店的全部照片和记录吗？删除后无法恢复。",
            "Delete all your photos and records, in every store? This cannot be undone.",
            "/me/forget",
            &csrf,
        );
    }
    let result = state
        .blocking(move |s| -> Result<usize, ApiError> {
            let photos = s.store.forget_openid(&openid)?;
            for photo in &photos {
                for key in photo.blob_keys() {
                    s.blobs.delete(key).map_err(|e| {
                        tracing::error!(error = %e, "deleting photo bytes failed");
                        ApiError::unavailable("photo storage temporarily unavailable")
                    })?;
                }
            }
            Ok(photos.len())
        })
        .await;
    match result {
        Ok(deleted) => {
            tracing::info!(photos = deleted, "a shopper asked to be forgotten");
            let mut response = html(
                StatusCode::OK,
                "已删除 · Deleted",
                "<main><div class=\"notice\" id=\"forgotten\"><p>你的照片和记录已全部删除。</p><p>Your photos and records have all been deleted.</p></div></main>",
            );
            set_cookie(&mut response, SIGNIN_COOKIE, "", 0, "Lax");
            response
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /s/{scene}/keep` (form: `k`, `csrf`).
pub(super) async fn keep(
    State(state): State<Arc<AppState>>,
    Path(scene): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(form) = form(&body) else {
        return ApiError::bad_request("form too large").into_response();
    };
    if !csrf_ok(&headers, &form) {
        return forbidden_form();
    }
    if !super::valid_scene(&scene) {
        return super::gallery::not_found();
    }
    let key = form.get("k").cloned();
    let lookup = scene.clone();
    let record = state
        .blocking(move |s| -> Result<Option<SceneRecord>, ApiError> {
            Ok(authorised(s.store.scene(&lookup)?, key.as_ref()))
        })
        .await;
    let record = match record {
        Ok(Some(record)) => record,
        Ok(None) => return super::gallery::not_found(),
        Err(e) => return e.into_response(),
    };
    let Some(openid) = signed_in(&state, &headers) else {
        return start_signin(&state, Some(&record.scene));
    };
    let now = unix_now();
    match state
        .blocking(move |s| s.store.bind(&record.scene, &openid, "signin", now))
        .await
    {
        Ok(_) => redirect(StatusCode::SEE_OTHER, "/me"),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signin_cookies_are_signed_and_expire() {
        let key = CookieKey::derived_from_appsecret("secret");
        let value = key.signin_value("oAbc_123-x", 1_000);
        assert_eq!(key.signed_in(&value, 999).as_deref(), Some("oAbc_123-x"));
        assert_eq!(key.signed_in(&value, 1_000), None, "expired");
        let forged = value.replacen("oAbc", "oAbd", 1);
        assert_eq!(key.signed_in(&forged, 0), None, "another openid");
        let later = value.replacen(".1000.", ".9999.", 1);
        assert_eq!(key.signed_in(&later, 0), None, "a longer life");
        let other = CookieKey::derived_from_appsecret("other");
        assert_eq!(other.signed_in(&value, 0), None, "another appsecret");
        // A value signed for one purpose is not good for another.
        let oauth = key.sign("oauth", "oAbc.2000");
        assert_eq!(key.signed_in(&oauth, 0), None);
        // A mini-program token is not a sign-in cookie, nor the other way round.
        let mp = key.mp_token("oMp_1", 1_000);
        assert_eq!(key.mp_openid(&mp, 999).as_deref(), Some("oMp_1"));
        assert_eq!(key.mp_openid(&mp, 1_000), None, "expired");
        assert_eq!(key.signed_in(&mp, 0), None);
        assert_eq!(key.mp_openid(&value, 0), None);
    }

    #[test]
    fn cookies_are_read_once() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; ms_signin=x.y; b=2"),
        );
        assert_eq!(cookie(&h, "ms_signin"), Some("x.y"));
        assert_eq!(cookie(&h, "c"), None);
        h.append(header::COOKIE, HeaderValue::from_static("ms_signin=z"));
        assert_eq!(cookie(&h, "ms_signin"), None, "two of one name");
    }

    #[test]
    fn dates_and_forms() {
        assert_eq!(civil_date(0, 0), "1970-01-01");
        assert_eq!(civil_date(1_700_000_000, 8 * 3600), "2023-11-15");
        assert_eq!(civil_date(951_782_400, 0), "2000-02-29");
        let f = form(b"csrf=a%2Bb&confirm=yes&x=1+2").unwrap();
        assert_eq!(f["csrf"], "a+b");
        assert_eq!(f["x"], "1 2");
        assert!(form(&[b'a'; 5000]).is_none());
    }
}
