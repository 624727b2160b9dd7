//! The store backend's HTTP contract: what a mirror (and later the hub) sends and receives.
//!
//! Written out as OpenAPI 3.1 in `docs/openapi.yaml`; the two change together. All bodies are
//! JSON except a photo upload, whose body is the raw JPEG. Every request carries
//! `Authorization: Bearer <device token>`, one token per mirror.
//!
//! - `POST /v1/scenes` ([`CreateSceneRequest`] → `201` [`CreateSceneResponse`], `200` with the
//!   same body when this device already created that scene).
//! - `POST /v1/sessions/{scene}/photos` (raw `image/jpeg`, headers below → `201`
//!   [`PhotoUploadResponse`] when new, `200` with the same body when the photo id is already
//!   stored with the same bytes, `409` when it is stored with different bytes).
//! - `DELETE /v1/sessions/{scene}/photos/{photo}` (`204`; `404` = already gone).
//! - `POST /v1/sessions/{scene}/clips` (raw `video/mp4`, the photo headers with `X-Clip-Id`
//!   in place of `X-Photo-Id` → `201` [`ClipUploadResponse`] when new, `200` with the same
//!   body when the clip id is already stored with the same bytes, `409` with other bytes).
//! - `PUT /v1/sessions/{scene}/clips/{clip}/poster` (raw `image/jpeg`, `X-Content-SHA256` →
//!   `204`; the clip must be stored; putting it again replaces it).
//! - `PUT /v1/scenes/{scene}` ([`RegisterSceneRequest`] → `201` when new, `200` when known):
//!   a mirror that mints its own codes tells the backend each scene it minted, so a scan of it
//!   finds the session.
//!
//! Errors carry an [`ErrorBody`] with one of the `error` codes in [`error_code`].

use serde::{Deserialize, Serialize};

pub mod upload;
pub use upload::{
    ClipUploadHeaders, HeaderError, UploadHeaders, bearer_token, is_clip_content_type,
    is_photo_content_type, valid_id,
};

/// Path of the scene-minting endpoint, relative to the backend's base URL.
pub const SCENES_PATH: &str = "/v1/scenes";

/// Path of one scene (`/v1/scenes/{scene}`), for `PUT`: a code the mirror minted itself.
pub fn scene_path(scene: &str) -> String {
    format!("{SCENES_PATH}/{scene}")
}

/// Photo upload path for a scene (`/v1/sessions/{scene}/photos`).
///
/// Scenes and photo ids are base64url (or decimal) ids, which need no escaping in a path.
pub fn photos_path(scene: &str) -> String {
    format!("/v1/sessions/{scene}/photos")
}

/// Path of one photo (`/v1/sessions/{scene}/photos/{photo}`), for `DELETE`.
pub fn photo_path(scene: &str, photo: &str) -> String {
    format!("/v1/sessions/{scene}/photos/{photo}")
}

/// Clip upload path for a scene (`/v1/sessions/{scene}/clips`).
pub fn clips_path(scene: &str) -> String {
    format!("/v1/sessions/{scene}/clips")
}

/// Path of a clip's poster frame (`/v1/sessions/{scene}/clips/{clip}/poster`), for `PUT`.
pub fn clip_poster_path(scene: &str, clip: &str) -> String {
    format!("/v1/sessions/{scene}/clips/{clip}/poster")
}

/// Header names of a photo upload. HTTP header names are case-insensitive; these are the
/// spellings the mirror sends.
pub mod header {
    /// `Bearer <device token>` on every request.
    pub const AUTHORIZATION: &str = "Authorization";
    /// The photo id again: a retried upload with the same key is recognised as the same photo.
    pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
    /// The photo id (22-character base64url).
    pub const PHOTO_ID: &str = "X-Photo-Id";
    /// The clip id (22-character base64url), in a clip upload instead of `X-Photo-Id`.
    pub const CLIP_ID: &str = "X-Clip-Id";
    /// The mirror's session id the photo was taken in.
    pub const SESSION_ID: &str = "X-Session-Id";
    /// When the photo was taken, unix milliseconds (decimal).
    pub const TAKEN_AT: &str = "X-Taken-At";
    /// What triggered the photo (e.g. `thumbs_up`, `victory`, `timer`).
    pub const TRIGGER: &str = "X-Trigger";
    /// SHA-256 of the body, 64 lowercase hex digits; the backend refuses a body that differs.
    pub const CONTENT_SHA256: &str = "X-Content-SHA256";
}

/// Content type of a photo upload body (and of a clip's poster frame).
pub const PHOTO_CONTENT_TYPE: &str = "image/jpeg";

/// Content type of a clip upload body (H.264 in MP4, `moov` first).
pub const CLIP_CONTENT_TYPE: &str = "video/mp4";

/// Longest scene the backend accepts (WeChat's `scene_str` limit).
pub const MAX_SCENE_LEN: usize = 64;

/// Longest temporary code lifetime WeChat allows (30 days).
pub const MAX_EXPIRE_SECONDS: u32 = 2_592_000;

/// What a scene's code is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SceneKind {
    /// One shopper session's code (temporary): a scan leads to that session's photos.
    #[default]
    Session,
    /// The mirror's permanent code, shown while nobody is at the mirror: a scan is welcomed
    /// and counted for the mirror, and binds no photos.
    Idle,
}

impl SceneKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Idle => "idle",
        }
    }

    pub fn is_session(&self) -> bool {
        *self == Self::Session
    }
}

/// `POST /v1/scenes` body: mint a scene code for `scene`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSceneRequest {
    /// 1..=64 characters: the session id when minted for a live session, a locally generated
    /// id for a pre-minted pool code, the mirror's idle-code name for [`SceneKind::Idle`].
    pub scene: String,
    /// Lifetime of the code, 1..=2592000 seconds (ignored for [`SceneKind::Idle`]: that code
    /// is permanent).
    pub expire_seconds: u32,
    /// `session` (default, a temporary `QR_STR_SCENE`) or `idle` (a permanent
    /// `QR_LIMIT_STR_SCENE`, minted once per scene).
    #[serde(default, skip_serializing_if = "SceneKind::is_session")]
    pub kind: SceneKind,
}

/// `PUT /v1/scenes/{scene}` body: a code the mirror minted itself (`qr.kind =
/// "official_account"`), as WeChat answered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterSceneRequest {
    /// The QR code's content (WeChat's `url`).
    pub url: String,
    /// WeChat's ticket, if the code has one.
    #[serde(default)]
    pub ticket: Option<String>,
    /// When the code stops working, unix seconds; `null` for a permanent code.
    #[serde(default)]
    pub expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "SceneKind::is_session")]
    pub kind: SceneKind,
}

/// `POST /v1/scenes` answer (`201` created, `200` already created by this device).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSceneResponse {
    /// The scene, as requested.
    pub scene: String,
    /// The QR code's content (what the mirror renders).
    pub url: String,
    /// WeChat's ticket for the code, when the backend minted an official-account code;
    /// `null` for a backend that serves plain URLs.
    #[serde(default)]
    pub ticket: Option<String>,
    /// When the code stops working, unix seconds; `0` for a permanent code
    /// ([`SceneKind::Idle`]).
    pub expires_at: u64,
}

/// `201`/`200` answer of a photo upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoUploadResponse {
    /// The photo id, as uploaded.
    pub photo: String,
    /// SHA-256 of the stored bytes, lowercase hex.
    pub sha256: String,
    /// Size of the stored bytes.
    pub bytes: u64,
}

/// `201`/`200` answer of a clip upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClipUploadResponse {
    /// The clip id, as uploaded.
    pub clip: String,
    /// SHA-256 of the stored bytes, lowercase hex.
    pub sha256: String,
    /// Size of the stored bytes.
    pub bytes: u64,
}

/// Body of every 4xx/5xx answer of the backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code, one of [`error_code`].
    pub error: String,
    /// Human-readable explanation, for logs.
    pub message: String,
}

impl ErrorBody {
    pub fn new(error: &str, message: impl Into<String>) -> Self {
        Self {
            error: error.to_string(),
            message: message.into(),
        }
    }
}

/// Values of [`ErrorBody::error`].
pub mod error_code {
    /// `400`: a malformed body, a missing or invalid header, a field out of range.
    pub const BAD_REQUEST: &str = "bad_request";
    /// `400`: `X-Content-SHA256` does not match the body.
    pub const DIGEST_MISMATCH: &str = "digest_mismatch";
    /// `401`: no device token, or one the backend does not know (or has revoked).
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// `403`: the scene belongs to another device.
    pub const FORBIDDEN: &str = "forbidden";
    /// `404`: no such photo (already deleted) or scene.
    pub const NOT_FOUND: &str = "not_found";
    /// `409`: the photo id is already stored with different bytes.
    pub const CONFLICT: &str = "conflict";
    /// `413`: the photo is larger than the backend accepts.
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// `415`: a photo body that is not `image/jpeg`.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// `429`: slow down; `Retry-After` says for how long.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// `408`: the request body did not arrive in time; retry with backoff.
    pub const REQUEST_TIMEOUT: &str = "request_timeout";
    /// `502`: the backend could not reach WeChat (its message says why).
    pub const UPSTREAM: &str = "upstream";
    /// `503`: the backend is temporarily unavailable; retry with backoff.
    pub const UNAVAILABLE: &str = "unavailable";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scene_wire_format() {
        let req = CreateSceneRequest {
            scene: "AbC-_1".into(),
            expire_seconds: 3600,
            kind: SceneKind::Session,
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"scene":"AbC-_1","expire_seconds":3600}"#
        );
        let idle: CreateSceneRequest =
            serde_json::from_str(r#"{"scene":"idle-1","expire_seconds":1,"kind":"idle"}"#).unwrap();
        assert_eq!(idle.kind, SceneKind::Idle);
        let register: RegisterSceneRequest = serde_json::from_str(
            r#"{"url":"http://weixin.qq.com/q/x","ticket":"t","expires_at":5}"#,
        )
        .unwrap();
        assert_eq!(
            (register.expires_at, register.kind),
            (Some(5), SceneKind::Session)
        );
        assert!(
            serde_json::from_str::<RegisterSceneRequest>(r#"{"url":"u","kind":"other"}"#).is_err()
        );
        let resp: CreateSceneResponse = serde_json::from_str(
            r#"{"scene":"AbC-_1","url":"http://weixin.qq.com/q/x","ticket":"gQ+/=","expires_at":1700000000}"#,
        )
        .unwrap();
        assert_eq!(resp.ticket.as_deref(), Some("gQ+/="));
        assert_eq!(resp.expires_at, 1_700_000_000);
        let no_ticket: CreateSceneResponse = serde_json::from_str(
            r#"{"scene":"s","url":"https://shop.example/s/s","expires_at":1}"#,
        )
        .unwrap();
        assert_eq!(no_ticket.ticket, None);
    }

    /// The OpenAPI document names every error code, header and path defined here.
    #[test]
    fn openapi_document_matches() {
        let doc = include_str!("../../../docs/openapi.yaml");
        for code in [
            error_code::BAD_REQUEST,
            error_code::DIGEST_MISMATCH,
            error_code::UNAUTHORIZED,
            error_code::FORBIDDEN,
            error_code::NOT_FOUND,
            error_code::CONFLICT,
            error_code::PAYLOAD_TOO_LARGE,
            error_code::UNSUPPORTED_MEDIA_TYPE,
            error_code::RATE_LIMITED,
            error_code::REQUEST_TIMEOUT,
            error_code::UPSTREAM,
            error_code::UNAVAILABLE,
        ] {
            assert!(
                doc.contains(&format!("- {code}\n")),
                "error code {code} missing from docs/openapi.yaml"
            );
        }
        for name in [
            header::IDEMPOTENCY_KEY,
            header::PHOTO_ID,
            header::CLIP_ID,
            header::SESSION_ID,
            header::TAKEN_AT,
            header::TRIGGER,
            header::CONTENT_SHA256,
        ] {
            assert!(
                doc.contains(&format!("name: {name}\n")),
                "header {name} missing from docs/openapi.yaml"
            );
        }
        for path in [
            SCENES_PATH,
            &scene_path("{scene}"),
            &photos_path("{scene}"),
            &photo_path("{scene}", "{photo}"),
            &clips_path("{scene}"),
            &clip_poster_path("{scene}", "{clip}"),
        ] {
            assert!(
                doc.contains(&format!("  {path}:\n")),
                "path {path} missing from docs/openapi.yaml"
            );
        }
        for field in ["expire_seconds", "expires_at", "ticket", "sha256", "bytes"] {
            assert!(
                doc.contains(&format!("        {field}:\n")),
                "field {field} missing"
            );
        }
    }

    #[test]
    fn photo_and_error_wire_format() {
        let p = PhotoUploadResponse {
            photo: "p".into(),
            sha256: "ab".into(),
            bytes: 3,
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"photo":"p","sha256":"ab","bytes":3}"#
        );
        let e = ErrorBody::new(error_code::CONFLICT, "different bytes");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"error":"conflict","message":"different bytes"}"#
        );
        assert_eq!(photos_path("s1"), "/v1/sessions/s1/photos");
        assert_eq!(photo_path("s1", "p1"), "/v1/sessions/s1/photos/p1");
        assert_eq!(clips_path("s1"), "/v1/sessions/s1/clips");
        assert_eq!(
            clip_poster_path("s1", "c1"),
            "/v1/sessions/s1/clips/c1/poster"
        );
        let c = ClipUploadResponse {
            clip: "c".into(),
            sha256: "ab".into(),
            bytes: 3,
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"clip":"c","sha256":"ab","bytes":3}"#
        );
    }
}
