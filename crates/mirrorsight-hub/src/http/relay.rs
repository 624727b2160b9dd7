//! The relay the mirrors speak (`docs/openapi.yaml`): scene minting, photo and clip upload
//! (a clip's poster too), photo delete.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mirrorsight_contract::backend::{
    ClipUploadHeaders, ClipUploadResponse, CreateSceneRequest, CreateSceneResponse,
    MAX_EXPIRE_SECONDS, PhotoUploadResponse, RegisterSceneRequest, SceneKind, UploadHeaders,
    error_code, is_clip_content_type, is_photo_content_type,
};
use mirrorsight_wechat::error::QUOTA_ERRCODES;
use mirrorsight_wechat::{ActionName, Minter};

use super::{
    ApiError, AppState, Counters, bearer, header_pairs, limit, random_key, sha256_hex, unix_now,
    valid_id, valid_scene,
};
use crate::store::{
    Claim, Device, Media, MintOutcome, MintedScene, PhotoInsert, PhotoMeta, SceneRecord, StoreError,
};

/// A `CreateSceneRequest` is a few dozen bytes.
const SCENE_BODY_LIMIT: usize = 4096;

async fn authenticate(state: &Arc<AppState>, headers: &HeaderMap) -> Result<Device, ApiError> {
    let unauthorized = || {
        Counters::bump(&state.counters.unauthorized);
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            error_code::UNAUTHORIZED,
            "missing, unknown or revoked device token",
        )
    };
    let Some(token) = bearer(headers)? else {
        return Err(unauthorized());
    };
    // Only the digest is stored, so a leaked database does not hand out working tokens.
    let digest = sha256_hex(token.as_bytes());
    match state
        .blocking(move |s| s.store.device_by_token(&digest))
        .await?
    {
        Some(device) => Ok(device),
        None => Err(unauthorized()),
    }
}

fn forbidden(state: &AppState) -> ApiError {
    Counters::bump(&state.counters.forbidden);
    ApiError::new(
        StatusCode::FORBIDDEN,
        error_code::FORBIDDEN,
        "scene belongs to another device",
    )
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        error_code::PAYLOAD_TOO_LARGE,
        format!("at most {limit} bytes"),
    )
}

/// How much of an oversized body is read and thrown away before answering `413`. Answering
/// while the client is still sending makes it see a broken pipe instead of the `413`, and a
/// mirror treats a broken pipe as transient and retries forever.
const DRAIN_SLACK: u64 = 16 << 20;

fn body_timeout(timeout: Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        error_code::REQUEST_TIMEOUT,
        format!("the body did not arrive within {} s", timeout.as_secs_f64()),
    )
}

/// Reads a body of at most `limit` bytes within `http.body_read_timeout_s`: anything longer
/// is a `413`, anything slower a `408` (a client trickling bytes would otherwise hold the
/// connection as long as it likes).
pub(crate) async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let timeout = state.config.http.body_read_timeout();
    match tokio::time::timeout(timeout, read_limited(headers, body, limit)).await {
        Ok(result) => result,
        Err(_) => {
            Counters::bump(&state.counters.body_timeouts);
            Err(body_timeout(timeout))
        }
    }
}

async fn read_limited(
    headers: &HeaderMap,
    mut body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    use axum::body::HttpBody;
    let limit64 = limit as u64;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let drain_cap = limit64.saturating_add(DRAIN_SLACK);
    if declared.is_some_and(|n| n > drain_cap) {
        // Too big to be worth draining: the client gets a reset either way.
        return Err(too_large(limit64));
    }
    let mut buf: Vec<u8> = Vec::with_capacity(declared.map_or(0, |n| n.min(limit64) as usize));
    let mut seen: u64 = 0;
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        let Some(frame) = frame else { break };
        let Ok(frame) = frame else {
            return Err(ApiError::bad_request("request body could not be read"));
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        seen = seen.saturating_add(data.len() as u64);
        if seen > drain_cap {
            return Err(too_large(limit64));
        }
        if seen <= limit64 {
            buf.extend_from_slice(&data);
        }
    }
    if seen > limit64 {
        return Err(too_large(limit64));
    }
    Ok(Bytes::from(buf))
}

fn response_of(scene: &SceneRecord) -> Option<CreateSceneResponse> {
    let code = scene.code.as_ref()?;
    Some(CreateSceneResponse {
        scene: scene.scene.clone(),
        url: code.url.clone(),
        ticket: code.ticket.clone(),
        expires_at: u64::try_from(code.expires_at).unwrap_or(0),
    })
}

/// `POST /v1/scenes`.
pub(super) async fn create_scene(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let device = authenticate(&state, &headers).await?;
    let body = read_body(&state, &headers, body, SCENE_BODY_LIMIT).await?;
    let request: CreateSceneRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("body: {e}")))?;
    if !valid_scene(&request.scene) {
        return Err(ApiError::bad_request(
            "scene must be 1..=64 characters without whitespace or control characters",
        ));
    }
    if !(1..=MAX_EXPIRE_SECONDS).contains(&request.expire_seconds) {
        return Err(ApiError::bad_request(format!(
            "expire_seconds must be in 1..={MAX_EXPIRE_SECONDS}"
        )));
    }
    let scene = request.scene.clone();
    let existing = state.blocking(move |s| s.store.scene(&scene)).await?;
    if let Some(existing) = &existing {
        if existing.device != device.id {
            return Err(forbidden(&state));
        }
        // Minting is idempotent per scene: a retry must not burn another WeChat code.
        if let Some(answer) = response_of(existing) {
            return Ok((StatusCode::OK, axum::Json(answer)).into_response());
        }
    }

    // Only a fresh code costs WeChat quota, so only a fresh code is counted.
    if let Err(wait) = state.mint_limiter.take(&device.id) {
        Counters::bump(&state.counters.mints_rate_limited);
        let seconds = limit::retry_after_secs(wait);
        tracing::warn!(device = %device.id, retry_after_s = seconds, "device minting too fast; refused");
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            error_code::RATE_LIMITED,
            format!(
                "this device is minting more than {} codes an hour (after a burst of {}); retry after {seconds} s",
                state.config.relay.mints_per_hour, state.config.relay.mint_burst
            ),
        )
        .with_retry_after(seconds));
    }
    // A mirror's idle code is permanent (one of the account's 100,000 in its lifetime), so it
    // is minted once per scene and kept; a session's is temporary.
    let action = match request.kind {
        SceneKind::Session => ActionName::QrStrScene,
        SceneKind::Idle => ActionName::QrLimitStrScene,
    };
    let minter =
        Minter::official_account(state.wechat.clone(), action, request.expire_seconds, false);
    let minted = minter.mint(&request.scene).await.map_err(|e| {
        Counters::bump(&state.counters.mint_failures);
        if e.errcode().is_some_and(|c| QUOTA_ERRCODES.contains(&c)) {
            Counters::bump(&state.counters.wechat_quota_errors);
            state
                .counters
                .wechat_quota_last_error_at
                .store(unix_now(), Ordering::Relaxed);
            tracing::error!(device = %device.id, error = %e, "WeChat quota for scene codes is spent; no new codes until it resets");
        }
        tracing::warn!(device = %device.id, error = %e, "minting a scene code failed");
        let code = e
            .errcode()
            .map(|c| format!(" (errcode {c})"))
            .unwrap_or_default();
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            error_code::UPSTREAM,
            format!("WeChat did not mint the code{code}"),
        )
    })?;
    let now = unix_now();
    let code = MintedScene {
        url: minted.url.unwrap_or_default(),
        ticket: minted.ticket,
        expires_at: match request.kind {
            SceneKind::Idle => 0,
            SceneKind::Session => minted
                .expires_at
                .and_then(|t| i64::try_from(t).ok())
                .unwrap_or(now + i64::from(request.expire_seconds)),
        },
        minted_at: now,
    };
    let gallery_key = random_key()?;
    let scene = request.scene.clone();
    let device_id = device.id.clone();
    let kind = request.kind;
    let outcome = state
        .blocking(move |s| match kind {
            SceneKind::Session => {
                s.store
                    .record_minted_scene(&scene, &device, &code, &gallery_key, now)
            }
            SceneKind::Idle => {
                s.store
                    .register_scene(&scene, &device, &code, kind, &gallery_key, now)
            }
        })
        .await?;
    let (status, record, answer) = scene_answer(&state, outcome)?;
    tracing::info!(device = %device_id, scene = %record.scene, "scene minted");
    Ok((status, axum::Json(answer)).into_response())
}

/// The answer to a mint or a registration: `201` with the new code, `200` with the stored
/// one, or `403` for another device's scene.
fn scene_answer(
    state: &AppState,
    outcome: MintOutcome,
) -> Result<(StatusCode, SceneRecord, CreateSceneResponse), ApiError> {
    let (status, record) = match outcome {
        MintOutcome::Created(record) => (StatusCode::CREATED, record),
        MintOutcome::Existing(record) => (StatusCode::OK, record),
        MintOutcome::Forbidden => return Err(forbidden(state)),
    };
    let answer =
        response_of(&record).ok_or_else(|| ApiError::unavailable("scene recorded without code"))?;
    Ok((status, record, answer))
}

/// The longest QR content or ticket a mirror may register (WeChat's are under 200 bytes).
const MAX_CODE_FIELD: usize = 1024;

/// `PUT /v1/scenes/{scene}`: a code the mirror minted itself (`qr.kind = "official_account"`),
/// so a scan of it finds the session.
pub(super) async fn register_scene(
    State(state): State<Arc<AppState>>,
    Path(scene): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let device = authenticate(&state, &headers).await?;
    let body = read_body(&state, &headers, body, SCENE_BODY_LIMIT).await?;
    if !valid_scene(&scene) {
        return Err(ApiError::bad_request(
            "scene must be 1..=64 characters without whitespace or control characters",
        ));
    }
    let request: RegisterSceneRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("body: {e}")))?;
    if request.url.is_empty() || request.url.len() > MAX_CODE_FIELD {
        return Err(ApiError::bad_request(format!(
            "url must be 1..={MAX_CODE_FIELD} bytes"
        )));
    }
    if request
        .ticket
        .as_ref()
        .is_some_and(|t| t.len() > MAX_CODE_FIELD)
    {
        return Err(ApiError::bad_request(format!(
            "ticket must be at most {MAX_CODE_FIELD} bytes"
        )));
    }
    let now = unix_now();
    let expires_at = match (request.kind, request.expires_at) {
        (SceneKind::Idle, _) => 0,
        (SceneKind::Session, Some(t)) => i64::try_from(t)
            .ok()
            .filter(|t| *t <= now + i64::from(MAX_EXPIRE_SECONDS) + 86_400)
            .ok_or_else(|| {
                ApiError::bad_request("expires_at is further away than a temporary code lives")
            })?,
        // One code per session must expire: a permanent one is for the idle code only.
        (SceneKind::Session, None) => {
            return Err(ApiError::bad_request(
                "a session's code must have expires_at (permanent codes are for kind idle)",
            ));
        }
    };
    let code = MintedScene {
        url: request.url,
        ticket: request.ticket,
        expires_at,
        minted_at: now,
    };
    let gallery_key = random_key()?;
    let kind = request.kind;
    let device_id = device.id.clone();
    let outcome = state
        .blocking(move |s| {
            s.store
                .register_scene(&scene, &device, &code, kind, &gallery_key, now)
        })
        .await?;
    let (status, record, answer) = scene_answer(&state, outcome)?;
    tracing::info!(device = %device_id, scene = %record.scene, kind = kind.as_str(), "scene registered");
    Ok((status, axum::Json(answer)).into_response())
}

fn upload_headers(headers: &HeaderMap) -> Result<UploadHeaders, ApiError> {
    UploadHeaders::parse(header_pairs(headers)).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Where a photo's bytes go: derived from scene, photo id and bytes (never client-chosen),
/// plus 64 random bits per upload attempt. So no two attempts ever write the same key: bytes
/// an interrupted attempt left behind are never reused by a retry, which is what lets the
/// orphan sweep delete them safely, and racing uploads cannot overwrite each other.
fn blob_key(scene: &str, photo: &str, sha256: &str, attempt: [u8; 8]) -> String {
    let id = sha256_hex(format!("{scene}\0{photo}").as_bytes());
    format!("{}-{}-{}", &id[..32], &sha256[..16], hex::encode(attempt))
}

fn attempt_nonce() -> [u8; 8] {
    let mut nonce = [0u8; 8];
    // Uniqueness is what matters; without OS randomness, time and pid still differ per attempt.
    if getrandom::fill(&mut nonce).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nonce = (t ^ u64::from(std::process::id()).rotate_left(48)).to_le_bytes();
    }
    nonce
}

/// `POST /v1/sessions/{scene}/photos`.
pub(super) async fn upload_photo(
    State(state): State<Arc<AppState>>,
    Path(scene): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let device = authenticate(&state, &headers).await?;
    let result = ingest(&state, device, scene, Media::Photo, &headers, body).await;
    if result.is_err() {
        Counters::bump(&state.counters.uploads_refused);
    }
    result
}

/// `POST /v1/sessions/{scene}/clips`: a turn-around clip, stored like a photo.
pub(super) async fn upload_clip(
    State(state): State<Arc<AppState>>,
    Path(scene): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let device = authenticate(&state, &headers).await?;
    let result = ingest(&state, device, scene, Media::Clip, &headers, body).await;
    if result.is_err() {
        Counters::bump(&state.counters.uploads_refused);
    }
    result
}

/// The metadata headers of a photo or clip upload, in one shape.
fn media_headers(media: Media, headers: &HeaderMap) -> Result<UploadHeaders, ApiError> {
    match media {
        Media::Photo => upload_headers(headers),
        Media::Clip => ClipUploadHeaders::parse(header_pairs(headers))
            .map(|c| UploadHeaders {
                photo: c.clip,
                session: c.session,
                taken_at_ms: c.taken_at_ms,
                trigger: c.trigger,
                sha256: c.sha256,
            })
            .map_err(|e| ApiError::bad_request(e.to_string())),
    }
}

async fn ingest(
    state: &Arc<AppState>,
    device: Device,
    scene: String,
    media: Media,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if !valid_scene(&scene) {
        return Err(ApiError::bad_request("scene must be 1..=64 characters"));
    }
    let meta = media_headers(media, headers)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (type_ok, type_message, max_bytes) = match media {
        Media::Photo => (
            is_photo_content_type(content_type),
            "photos are image/jpeg",
            state.config.photos.max_bytes,
        ),
        Media::Clip => (
            is_clip_content_type(content_type),
            "clips are video/mp4",
            state.config.photos.max_clip_bytes,
        ),
    };
    if !type_ok {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            error_code::UNSUPPORTED_MEDIA_TYPE,
            type_message,
        ));
    }
    let limit = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    let bytes = read_body(state, headers, body, limit).await?;
    let sha256 = sha256_hex(&bytes);
    if sha256 != meta.sha256 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            error_code::DIGEST_MISMATCH,
            "X-Content-SHA256 does not match the body",
        ));
    }
    let id = meta.photo.clone();
    let stored_bytes = bytes.len() as u64;
    let answer_sha = sha256.clone();
    let gallery_key = random_key()?;
    let now = unix_now();
    let outcome = state
        .blocking(move |s| -> Result<PhotoInsert, ApiError> {
            let record = match s.store.claim_scene(&scene, &device, &gallery_key, now)? {
                Claim::Owned(record) => record,
                Claim::Forbidden => return Err(forbidden(s)),
            };
            if let Some(existing) = s.store.photo(&scene, &meta.photo)? {
                return Ok(if existing.sha256 == sha256 && existing.media == media {
                    PhotoInsert::SameBytes
                } else {
                    PhotoInsert::Conflict
                });
            }
            // Bytes first, row second: a row never points at bytes that are not there, and a
            // crash in between only leaves an unreferenced file that the retry overwrites.
            let key = blob_key(&scene, &meta.photo, &sha256, attempt_nonce());
            s.blobs.put(&key, &bytes).map_err(|e| {
                tracing::error!(error = %e, "storing {} bytes failed", media.as_str());
                ApiError::unavailable("photo storage temporarily unavailable")
            })?;
            let row = PhotoMeta {
                scene: scene.clone(),
                photo: meta.photo.clone(),
                device: device.id.clone(),
                session_id: meta.session.clone(),
                // At most 16 digits (the contract's parser), so always within i64.
                taken_at_ms: i64::try_from(meta.taken_at_ms).unwrap_or(i64::MAX),
                trigger: meta.trigger.clone(),
                sha256: sha256.clone(),
                bytes: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
                blob_key: key.clone(),
                created_at: now,
                expired_at: None,
                media,
                poster_key: None,
            };
            let inserted = s.store.insert_photo(&row, &record.store)?;
            if inserted != PhotoInsert::Created {
                // A racing upload of this id won (same bytes or not); ours are nobody's.
                let _ = s.blobs.delete(&key);
            } else {
                // A shopper who scanned already gets these photos in a message, batched.
                let due_at = now.saturating_add_unsigned(s.config.push.batch_s);
                s.store
                    .enqueue_pushes(&scene, due_at, now - crate::push::WINDOW_S, now)?;
            }
            Ok(inserted)
        })
        .await?;
    let answer = |status: StatusCode| match media {
        Media::Photo => (
            status,
            axum::Json(PhotoUploadResponse {
                photo: id.clone(),
                sha256: answer_sha.clone(),
                bytes: stored_bytes,
            }),
        )
            .into_response(),
        Media::Clip => (
            status,
            axum::Json(ClipUploadResponse {
                clip: id.clone(),
                sha256: answer_sha.clone(),
                bytes: stored_bytes,
            }),
        )
            .into_response(),
    };
    match outcome {
        PhotoInsert::Created => {
            Counters::bump(&state.counters.uploads_created);
            Ok(answer(StatusCode::CREATED))
        }
        PhotoInsert::SameBytes => {
            Counters::bump(&state.counters.uploads_repeated);
            Ok(answer(StatusCode::OK))
        }
        PhotoInsert::Conflict => Err(ApiError::new(
            StatusCode::CONFLICT,
            error_code::CONFLICT,
            format!("{} id already stored with different bytes", media.as_str()),
        )),
    }
}

/// `PUT /v1/sessions/{scene}/clips/{clip}/poster`: a clip's poster frame (JPEG); putting it
/// again replaces it.
pub(super) async fn put_clip_poster(
    State(state): State<Arc<AppState>>,
    Path((scene, clip)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let device = authenticate(&state, &headers).await?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            error_code::NOT_FOUND,
            "no such clip; upload it first",
        )
    };
    if !valid_scene(&scene) || !valid_id(&clip) {
        return Err(not_found());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_photo_content_type(content_type) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            error_code::UNSUPPORTED_MEDIA_TYPE,
            "posters are image/jpeg",
        ));
    }
    let limit = usize::try_from(state.config.photos.max_bytes).unwrap_or(usize::MAX);
    let bytes = read_body(&state, &headers, body, limit).await?;
    let sha256 = sha256_hex(&bytes);
    let declared = headers
        .get(mirrorsight_contract::backend::header::CONTENT_SHA256)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if sha256 != declared {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            error_code::DIGEST_MISMATCH,
            "X-Content-SHA256 missing or not the body's",
        ));
    }
    let found = state
        .blocking(move |s| -> Result<bool, ApiError> {
            let Some(record) = s.store.scene(&scene)? else {
                return Ok(false);
            };
            if record.device != device.id {
                return Err(forbidden(s));
            }
            // Bytes first under a fresh key, then the row points at them, then the old bytes
            // go: a crash anywhere leaves at most an orphan for the sweep.
            let key = blob_key(&scene, &format!("{clip}.poster"), &sha256, attempt_nonce());
            s.blobs.put(&key, &bytes).map_err(|e| {
                tracing::error!(error = %e, "storing poster bytes failed");
                ApiError::unavailable("photo storage temporarily unavailable")
            })?;
            match s.store.set_poster(&scene, &clip, &key) {
                Ok(old) => {
                    if let Some(old) = old.filter(|old| *old != key) {
                        let _ = s.blobs.delete(&old);
                    }
                    Ok(true)
                }
                Err(StoreError::NotFound(_)) => {
                    let _ = s.blobs.delete(&key);
                    Ok(false)
                }
                Err(e) => {
                    let _ = s.blobs.delete(&key);
                    Err(e.into())
                }
            }
        })
        .await;
    match found {
        Ok(true) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(false) => Err(not_found()),
        Err(e) => {
            Counters::bump(&state.counters.uploads_refused);
            Err(e)
        }
    }
}

/// `DELETE /v1/sessions/{scene}/photos/{photo}`.
pub(super) async fn delete_photo(
    State(state): State<Arc<AppState>>,
    Path((scene, photo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let device = authenticate(&state, &headers).await?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            error_code::NOT_FOUND,
            "no such photo",
        )
    };
    if !valid_scene(&scene) || !valid_id(&photo) {
        return Err(not_found());
    }
    let deleted = state
        .blocking(move |s| -> Result<bool, ApiError> {
            let Some(record) = s.store.scene(&scene)? else {
                return Ok(false);
            };
            if record.device != device.id {
                return Err(forbidden(s));
            }
            // Row first: once it is gone nothing serves the photo, even if the file lingers.
            let Some(row) = s.store.delete_photo(&scene, &photo)? else {
                return Ok(false);
            };
            for key in row.blob_keys() {
                if let Err(e) = s.blobs.delete(key) {
                    tracing::error!(error = %e, "photo row deleted but its bytes could not be; remove by hand");
                }
            }
            tracing::info!(device = %device.id, scene = %scene, photo = %photo, "photo deleted at the shopper's request");
            Ok(true)
        })
        .await?;
    if deleted {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_keys_depend_on_scene_photo_bytes_and_attempt() {
        let sha = "a".repeat(64);
        let n = [7u8; 8];
        let k = blob_key("s", "p", &sha, n);
        assert_eq!(k.len(), 32 + 1 + 16 + 1 + 16);
        assert!(crate::store::blob::is_photo_blob_key(&k), "{k}");
        assert_ne!(k, blob_key("s", "q", &sha, n));
        assert_ne!(k, blob_key("s", "p", &"b".repeat(64), n));
        assert_ne!(k, blob_key("s", "p", &sha, [8u8; 8]));
        assert_ne!(k, blob_key("s", "p", &sha, attempt_nonce()));
        // "s\0p" cannot be confused with a scene ending in the photo id.
        assert_ne!(blob_key("s1", "p", &sha, n), blob_key("s", "1p", &sha, n));
    }
}
