//! The store's mini-program: a shopper who scanned a mirror's mini-program code (`qr.kind =
//! "mini_program"`) opens the mini-program with the session's scene, and it lists their photos.
//!
//! - `POST /v1/mp/login` (`{"code": <wx.login code>, "scene": <optional>}`): exchanges the code
//!   at `sns/jscode2session` for the shopper's openid (the mini-program's, not the official
//!   account's), binds the scene if one is given (the code the shopper scanned carried it),
//!   and answers a bearer token (`{"token", "expires_at"}`), signed like the sign-in cookie and
//!   valid `mini_program.token_days`. `40029` and `40163` are `400`, `-1` is `503`, anything
//!   else from WeChat `502`.
//! - `GET /v1/mp/photos` (`Authorization: Bearer <token>`): every session bound to that openid,
//!   newest first, with each photo's full-size URL.
//!
//! Off (`404`) while `mini_program.appid` is empty.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mirrorsight_contract::backend::error_code;
use mirrorsight_wechat::sns::{ERRCODE_CODE_USED, ERRCODE_INVALID_CODE};
use serde::{Deserialize, Serialize};

use super::relay::read_body;
use super::{ApiError, AppState, bearer, unix_now, valid_scene};
use crate::store::{Media, SceneKind};

/// A login body is a code and a scene.
const LOGIN_BODY_LIMIT: usize = 4096;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    code: String,
    #[serde(default)]
    scene: Option<String>,
}

#[derive(Debug, Serialize)]
struct LoginAnswer {
    token: String,
    /// Unix seconds.
    expires_at: i64,
    /// Whether `scene` was bound to the shopper.
    bound: bool,
}

#[derive(Debug, Serialize)]
struct PhotoEntry {
    photo: String,
    /// Full size, as uploaded.
    url: String,
    taken_at_ms: i64,
    bytes: i64,
}

#[derive(Debug, Serialize)]
struct SessionEntry {
    scene: String,
    store: String,
    /// Unix seconds.
    created_at: i64,
    photos: Vec<PhotoEntry>,
}

#[derive(Debug, Serialize)]
struct PhotosAnswer {
    sessions: Vec<SessionEntry>,
}

fn not_configured() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        error_code::NOT_FOUND,
        "no mini-program is configured on this hub",
    )
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        error_code::UNAUTHORIZED,
        "missing, forged or expired mini-program token; log in again",
    )
}

/// `POST /v1/mp/login`.
pub(super) async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(mp) = state.mp.clone() else {
        return Err(not_configured());
    };
    let body = read_body(&state, &headers, body, LOGIN_BODY_LIMIT).await?;
    let request: LoginRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("body: {e}")))?;
    if request.code.is_empty() || request.code.len() > 256 {
        return Err(ApiError::bad_request("code must be 1..=256 bytes"));
    }
    if let Some(scene) = &request.scene
        && !valid_scene(scene)
    {
        return Err(ApiError::bad_request(
            "scene must be 1..=64 characters without whitespace or control characters",
        ));
    }
    let identity = mp.jscode2session(&request.code).await.map_err(|e| {
        tracing::warn!(error = %e, "mini-program login failed");
        match e.errcode() {
            Some(ERRCODE_INVALID_CODE) => ApiError::bad_request(
                "the login code is unknown or older than 5 minutes (40029); call wx.login again",
            ),
            Some(ERRCODE_CODE_USED) => ApiError::bad_request(
                "the login code was used already (40163); call wx.login again",
            ),
            Some(-1) => ApiError::unavailable("WeChat is busy (-1); try again"),
            _ => ApiError::new(
                StatusCode::BAD_GATEWAY,
                error_code::UPSTREAM,
                "WeChat did not accept the login",
            ),
        }
    })?;
    let openid = identity.openid;
    if !super::shopper::valid_openid(&openid) {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            error_code::UPSTREAM,
            "WeChat answered an unusable openid",
        ));
    }
    let now = unix_now();
    let bound = match request.scene {
        Some(scene) => {
            let who = openid.clone();
            state
                .blocking(move |s| -> Result<bool, ApiError> {
                    // Only a session's scene binds (an idle code leads to no photos); an
                    // unknown one binds nothing, and says so.
                    match s.store.scene(&scene)? {
                        Some(record) if record.kind == SceneKind::Session => {
                            s.store.bind(&record.scene, &who, "mp_login", now)?;
                            Ok(true)
                        }
                        _ => Ok(false),
                    }
                })
                .await?
        }
        None => false,
    };
    let expires_at = now + i64::from(state.config.mini_program.token_days) * 86_400;
    let token = state.cookie_key.mp_token(&openid, expires_at);
    Ok(axum::Json(LoginAnswer {
        token,
        expires_at,
        bound,
    })
    .into_response())
}

/// `GET /v1/mp/photos`.
pub(super) async fn photos(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if state.mp.is_none() {
        return Err(not_configured());
    }
    let token = bearer(&headers)?.ok_or_else(unauthorized)?;
    let openid = state
        .cookie_key
        .mp_openid(token, unix_now())
        .ok_or_else(unauthorized)?;
    let sessions = state
        .blocking(move |s| -> Result<Vec<SessionEntry>, ApiError> {
            let mut sessions = Vec::new();
            for scene in s.store.scenes_of_openid(&openid)? {
                let photos: Vec<PhotoEntry> = s
                    .store
                    .photos_of_scene(&scene.scene)?
                    .into_iter()
                    // Photos only: the mini-program shows pictures.
                    .filter(|p| p.expired_at.is_none() && p.media == Media::Photo)
                    .map(|p| PhotoEntry {
                        url: s.photo_url(&scene.scene, &p.photo, &scene.gallery_key),
                        photo: p.photo,
                        taken_at_ms: p.taken_at_ms,
                        bytes: p.bytes,
                    })
                    .collect();
                if photos.is_empty() {
                    continue;
                }
                sessions.push(SessionEntry {
                    scene: scene.scene,
                    store: scene.store,
                    created_at: scene.created_at,
                    photos,
                });
            }
            Ok(sessions)
        })
        .await?;
    let mut response = axum::Json(PhotosAnswer { sessions }).into_response();
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("private, no-store"),
    );
    Ok(response)
}
