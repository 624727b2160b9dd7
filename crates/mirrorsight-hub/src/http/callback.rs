//! `/wechat`: the official account's server URL. GET is the URL handshake; POST carries pushed
//! messages and events, in plaintext or safe mode. The signature is checked on every request
//! before anything else happens, so a forged push records nothing; a signed query that already
//! came with another body is refused, so a logged callback URL carries nothing else.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{AppState, Counters, unix_now};
use crate::store::{Activity, Media, NewWechatEvent, NonceUse, PhotoMeta, SceneKind, SceneRecord};
use crate::wechat::xml::{Article, encrypted_reply, news_reply, text_reply};
use crate::wechat::{Incoming, signature, verify_signature};

/// What WeChat takes as "received, nothing to say".
const SUCCESS: &str = "success";

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

fn xml_response(body: String) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    response
}

/// The identity of a push: WeChat retries carry the same four fields.
pub(crate) fn dedupe_key(openid: &str, create_time: &str, event: &str, event_key: &str) -> String {
    format!("{openid}\u{1f}{create_time}\u{1f}{event}\u{1f}{event_key}")
}

struct Signed<'a> {
    timestamp: &'a str,
    nonce: &'a str,
}

/// Checks `signature` over token, timestamp and nonce, and that the timestamp is recent: a
/// push captured on the way (logs, a proxy) cannot be replayed days later.
fn check_signature<'a>(state: &AppState, q: &'a HashMap<String, String>) -> Option<Signed<'a>> {
    let sig = q.get("signature")?;
    let timestamp = q.get("timestamp")?;
    let nonce = q.get("nonce")?;
    let signed = verify_signature(
        sig,
        &[
            state.callback_token.expose(),
            timestamp.as_str(),
            nonce.as_str(),
        ],
    );
    if !signed {
        return None;
    }
    let max_skew = state.config.callback.max_timestamp_skew_s;
    if max_skew > 0 {
        let skew = timestamp
            .parse::<i64>()
            .map(|t| super::unix_now().abs_diff(t));
        if !matches!(skew, Ok(s) if s <= max_skew.unsigned_abs()) {
            tracing::warn!(
                timestamp = %timestamp,
                max_skew_s = max_skew,
                "signed request with a stale or unreadable timestamp refused (replay, or this host's clock is off)"
            );
            return None;
        }
    }
    Some(Signed { timestamp, nonce })
}

/// How long a (timestamp, nonce) pair is remembered when `callback.max_timestamp_skew_s` is 0
/// (no window): the longest window the key allows.
const NONCE_MEMORY_WITHOUT_SKEW_S: i64 = 86_400;

/// Why a push's (timestamp, nonce) pair was not let through.
enum Replay {
    /// The pair already came with another body.
    OtherBody,
    /// The database did not answer.
    Unchecked,
}

/// Notes the push's (timestamp, nonce) pair with a digest of its message (the decrypted one in
/// safe mode), in the store every instance shares, until the timestamp leaves the skew window.
/// The same pair with the same message is WeChat retrying (its retries are answered from the
/// record, recording nothing new); with another message it is a captured signed URL carrying
/// a forged push.
async fn claim_nonce(
    state: &Arc<AppState>,
    signed: &Signed<'_>,
    message: &[u8],
) -> Result<(), Replay> {
    let now = unix_now();
    let max_skew = state.config.callback.max_timestamp_skew_s;
    // check_signature accepted the timestamp, so with a window it parses and lies within it.
    let signed_at = signed.timestamp.parse::<i64>().unwrap_or(now);
    let keep_until = if max_skew > 0 {
        signed_at.saturating_add(max_skew)
    } else {
        now.saturating_add(NONCE_MEMORY_WITHOUT_SKEW_S)
    };
    let nonce = signed.nonce.to_string();
    let digest = super::sha256_hex(message);
    let found = state
        .blocking(move |s| {
            s.store
                .claim_push_nonce(signed_at, &nonce, &digest, now, keep_until)
        })
        .await;
    match found {
        Ok(NonceUse::Fresh | NonceUse::SameBody) => Ok(()),
        Ok(NonceUse::OtherBody) => Err(Replay::OtherBody),
        Err(e) => {
            tracing::error!(error = ?e, "recording a push's nonce failed");
            Err(Replay::Unchecked)
        }
    }
}

/// `GET /wechat`: answer `echostr` verbatim when the signature is right.
pub(super) async fn handshake(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(echostr) = q.get("echostr") else {
        return plain(StatusCode::BAD_REQUEST, "echostr missing");
    };
    if check_signature(&state, &q).is_none() {
        Counters::bump(&state.counters.callback_rejected_signature);
        tracing::warn!("callback handshake with a wrong signature refused");
        return plain(StatusCode::FORBIDDEN, "bad signature");
    }
    tracing::info!("callback URL handshake verified");
    let mut response = (StatusCode::OK, echostr.clone()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// `POST /wechat`.
pub(super) async fn push(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    Counters::bump(&state.counters.callback_requests);
    let Some(signed) = check_signature(&state, &q) else {
        Counters::bump(&state.counters.callback_rejected_signature);
        tracing::warn!("push with a missing or wrong signature refused");
        return plain(StatusCode::FORBIDDEN, "bad signature");
    };
    let safe_mode = q.get("encrypt_type").is_some_and(|t| t == "aes");
    let mode = state.config.callback.mode;
    if !safe_mode && !mode.accepts_plaintext() {
        // Plaintext signatures cover the query, not the body: accepting them would let a
        // leaked callback URL carry any push.
        Counters::bump(&state.counters.callback_refused_plaintext);
        tracing::warn!(
            "plaintext push refused (callback.mode = \"{}\"); check the account's 消息加解密方式",
            mode.as_str()
        );
        return plain(StatusCode::FORBIDDEN, "plaintext pushes are not accepted");
    }
    let body =
        match super::relay::read_body(&state, &headers, body, state.config.callback.max_body_bytes)
            .await
        {
            Ok(body) => body,
            Err(e) => {
                return match e.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => {
                        plain(StatusCode::PAYLOAD_TOO_LARGE, "body too large")
                    }
                    StatusCode::REQUEST_TIMEOUT => {
                        plain(StatusCode::REQUEST_TIMEOUT, "body too slow")
                    }
                    _ => plain(StatusCode::BAD_REQUEST, "body unreadable"),
                };
            }
        };
    let malformed = |why: &str| {
        Counters::bump(&state.counters.callback_malformed);
        tracing::warn!(why, "malformed push refused");
        plain(StatusCode::BAD_REQUEST, "malformed push")
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return malformed("not UTF-8");
    };
    let inner = if safe_mode {
        let Some(crypt) = state.crypt.as_ref().filter(|_| mode.accepts_encrypted()) else {
            tracing::error!(
                "safe-mode push but callback.mode = \"plaintext\" (no EncodingAESKey in use)"
            );
            return plain(StatusCode::BAD_REQUEST, "safe mode not configured");
        };
        let envelope = match Incoming::parse(text) {
            Ok(e) => e,
            Err(e) => return malformed(&e.to_string()),
        };
        let Some(encrypted) = envelope.get("Encrypt").filter(|e| !e.is_empty()) else {
            return malformed("no Encrypt");
        };
        let msg_ok = q.get("msg_signature").is_some_and(|ms| {
            verify_signature(
                ms,
                &[
                    state.callback_token.expose(),
                    signed.timestamp,
                    signed.nonce,
                    encrypted,
                ],
            )
        });
        if !msg_ok {
            Counters::bump(&state.counters.callback_rejected_signature);
            tracing::warn!("safe-mode push with a wrong msg_signature refused");
            return plain(StatusCode::FORBIDDEN, "bad msg_signature");
        }
        match crypt.decrypt(encrypted) {
            Ok(xml) => xml,
            Err(e) => return malformed(&e.to_string()),
        }
    } else {
        text.to_string()
    };
    // Only where plaintext is accepted can a signed query carry another message: a safe-mode
    // push needs `msg_signature` over its own frame, and a captured one can only be resent as
    // it was, which the event log answers as a retry. So safe mode costs no write here. In
    // compatible mode safe pushes claim their pair too, since their `signature` would also
    // sign a plaintext push. The message, not its frame, is compared: a safe-mode retry may be
    // framed afresh (another random prefix) around the same message.
    let claimed = if mode.accepts_plaintext() {
        claim_nonce(&state, &signed, inner.as_bytes()).await
    } else {
        Ok(())
    };
    match claimed {
        Ok(()) => {}
        Err(Replay::OtherBody) => {
            Counters::bump(&state.counters.callback_replays_refused);
            tracing::warn!(
                timestamp = %signed.timestamp,
                "push refused: its timestamp and nonce already came with another body (a captured callback URL replayed)"
            );
            return plain(StatusCode::FORBIDDEN, "replayed signature");
        }
        Err(Replay::Unchecked) => return plain(StatusCode::SERVICE_UNAVAILABLE, "try again"),
    }
    let message = match Incoming::parse(&inner) {
        Ok(m) => m,
        Err(e) => return malformed(&e.to_string()),
    };
    let reply = match handle(&state, message).await {
        Ok(Some(reply)) => reply,
        Ok(None) => return plain(StatusCode::OK, SUCCESS),
        Err(()) => {
            // WeChat retries a failed push; the retry is deduplicated, so failing is safe.
            return plain(StatusCode::SERVICE_UNAVAILABLE, "try again");
        }
    };
    if !safe_mode {
        return xml_response(reply);
    }
    let Some(crypt) = &state.crypt else {
        return plain(StatusCode::OK, SUCCESS);
    };
    let encrypted = match crypt.encrypt(&reply) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "encrypting a reply failed");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "try again");
        }
    };
    let msg_signature = signature(&[
        state.callback_token.expose(),
        signed.timestamp,
        signed.nonce,
        &encrypted,
    ]);
    xml_response(encrypted_reply(
        &encrypted,
        &msg_signature,
        signed.timestamp,
        signed.nonce,
    ))
}

/// The scene a push names, and whether the scanner was already following.
fn scan_of(message: &Incoming) -> Option<(&str, Activity)> {
    if message.msg_type() != "event" {
        return None;
    }
    let key = message.event_key();
    let (scene, activity) = match message.event() {
        "subscribe" => (key.strip_prefix("qrscene_")?, Activity::ScanNewFollower),
        "SCAN" => (key, Activity::ScanAlreadyFollowing),
        _ => return None,
    };
    (!scene.is_empty()).then_some((scene, activity))
}

/// Whether a scene's photos are gone: all expired, or none ever came and the retention period
/// is over.
pub(crate) fn scene_expired(
    scene: &SceneRecord,
    photos: &[PhotoMeta],
    retention_s: i64,
    now: i64,
) -> bool {
    if photos.is_empty() {
        return scene.created_at.saturating_add(retention_s) < now;
    }
    photos.iter().all(|p| p.expired_at.is_some())
}

/// The plaintext reply to a push, `None` for `success`. Errors are logged here.
async fn handle(state: &Arc<AppState>, message: Incoming) -> Result<Option<String>, ()> {
    if message.msg_type() == "event" && message.event() == "unsubscribe" {
        let openid = message.from_user().to_string();
        if openid.is_empty() {
            return Ok(None);
        }
        let now = unix_now();
        // Nothing more is pushed to someone who unfollowed.
        return match state
            .blocking(move |s| s.store.note_unsubscribe(&openid, now))
            .await
        {
            Ok(()) => Ok(None),
            Err(e) => {
                tracing::error!(error = ?e, "recording an unsubscribe failed");
                Err(())
            }
        };
    }
    let Some((scene, activity)) = scan_of(&message) else {
        return Ok(None);
    };
    let openid = message.from_user().to_string();
    if openid.is_empty() {
        return Ok(None);
    }
    let scene = scene.to_string();
    let dedupe = dedupe_key(
        &openid,
        message.create_time(),
        message.event(),
        message.event_key(),
    );
    let account = message.to_user().to_string();
    let event = message.event().to_string();
    let event_key = message.event_key().to_string();
    let now = unix_now();
    let result = state
        .blocking(move |s| -> Result<(String, bool), super::ApiError> {
            if let Some(reply) = s.store.wechat_reply(&dedupe)? {
                return Ok((reply, true));
            }
            let record = if super::valid_scene(&scene) {
                s.store.scene(&scene)?
            } else {
                None
            };
            let retention_s = i64::from(s.config.photos.retention_days) * 86_400;
            let live = match &record {
                // A mirror's idle code: welcomed and counted for the mirror, no photos.
                Some(record) if record.kind == SceneKind::Idle => None,
                Some(record) => {
                    let photos = s.store.photos_of_scene(&record.scene)?;
                    (!scene_expired(record, &photos, retention_s, now))
                        .then(|| (record.clone(), photos))
                }
                None => None,
            };
            let idle = record.filter(|r| r.kind == SceneKind::Idle);
            let (reply, bind_scene) = match live {
                Some((record, photos)) => {
                    let pic_url = photos
                        .iter()
                        .find(|p| p.expired_at.is_none() && p.media == Media::Photo)
                        .map(|p| {
                            // Marked so WeChat fetching the card picture is not counted as
                            // a photo delivered to the shopper.
                            format!(
                                "{}&src=card",
                                s.photo_url(&record.scene, &p.photo, &record.gallery_key)
                            )
                        })
                        .unwrap_or_default();
                    let article = Article {
                        title: s.config.callback.title.clone(),
                        description: s.config.callback.description.clone(),
                        pic_url,
                        url: s.gallery_url(&record.scene, &record.gallery_key),
                    };
                    (news_reply(&openid, &account, now, &article), Some(record))
                }
                None if idle.is_some() => (
                    text_reply(&openid, &account, now, &s.config.callback.idle_welcome_text),
                    idle,
                ),
                None => (
                    text_reply(
                        &openid,
                        &account,
                        now,
                        &s.config.callback.unknown_scene_text,
                    ),
                    None,
                ),
            };
            let known = bind_scene.as_ref().map(|r| r.kind);
            // A scan is an interaction: WeChat's 48 h message window starts again.
            s.store.note_interaction(&openid, now)?;
            let recorded = s.store.record_wechat_event(
                &NewWechatEvent {
                    dedupe,
                    openid: openid.clone(),
                    event,
                    event_key,
                    bind_scene,
                    activity: Some(activity),
                    reply,
                },
                now,
            )?;
            if known == Some(SceneKind::Session) {
                tracing::info!(scene = %scene, "scanner bound to session");
            } else if known == Some(SceneKind::Idle) {
                tracing::info!(scene = %scene, "scan of a mirror's idle code");
            } else {
                tracing::info!(scene = %scene, "scan of an unknown or expired scene");
            }
            Ok((recorded, false))
        })
        .await;
    match result {
        Ok((reply, retry)) => {
            if retry {
                Counters::bump(&state.counters.callback_retries_answered);
            }
            Ok(Some(reply))
        }
        Err(e) => {
            tracing::error!(error = ?e, "handling a push failed");
            Err(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(event: &str, key: &str) -> Incoming {
        Incoming::parse(&format!(
            "<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType><Event>{event}</Event><EventKey>{key}</EventKey></xml>"
        ))
        .unwrap()
    }

    #[test]
    fn which_pushes_are_scans() {
        assert_eq!(
            scan_of(&msg("subscribe", "qrscene_abc")),
            Some(("abc", Activity::ScanNewFollower))
        );
        assert_eq!(
            scan_of(&msg("SCAN", "abc")),
            Some(("abc", Activity::ScanAlreadyFollowing))
        );
        assert_eq!(scan_of(&msg("subscribe", "")), None, "a plain follow");
        assert_eq!(scan_of(&msg("subscribe", "qrscene_")), None);
        assert_eq!(scan_of(&msg("SCAN", "")), None);
        assert_eq!(scan_of(&msg("unsubscribe", "")), None);
        assert_eq!(scan_of(&msg("CLICK", "abc")), None);
        let text =
            Incoming::parse("<xml><MsgType>text</MsgType><Content>hi</Content></xml>").unwrap();
        assert_eq!(scan_of(&text), None);
    }

    #[test]
    fn dedupe_keys_separate_fields() {
        assert_ne!(
            dedupe_key("a", "1", "SCAN", "b"),
            dedupe_key("a1", "", "SCAN", "b")
        );
        assert_eq!(
            dedupe_key("a", "1", "SCAN", "b"),
            dedupe_key("a", "1", "SCAN", "b")
        );
    }
}
