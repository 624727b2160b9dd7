//! Control over HTTP, for fakes running in another process (the `mirrorsight-fake-backend`
//! binary driven by a shell script or another language's tests):
//!
//! - `GET /__fake/requests`: every recorded request as JSON (bodies as UTF-8 text when they
//!   are, else `{"base64_len": N}`).
//! - `POST /__fake/faults` with `{"route": "qrcode_create", "fault": {"errcode": 40001}, "times": 1}`;
//!   faults: `{"errcode": N}`, `"html502"`, `"malformed_json"`, `{"delay_ms": N}`, `{"status": N}`.
//! - `POST /__fake/reset`: forget requests and faults.
//! - `GET /__fake/scenes`, `GET /__fake/photos`, `GET /__fake/clips`: what the backend stored.
//! - `POST /__fake/sign_in` with `{"openid": "o…"}` (or `null`): who the authorize page signs in.
//! - `POST /__fake/mp_code` with `{"openid": "o…"}`: a mini-program login code, `{"code": …}`.
//! - `POST /__fake/follower` with `{"openid": "o…", "state": "unsubscribed"}`
//!   (`following`, `window_passed`, `unsubscribed`).
//! - `GET /__fake/messages`: the customer-service messages delivered.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize, Serializer};

use crate::shopper::Follower;
use crate::{App, Fault, Route};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    openid: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FollowerState {
    openid: String,
    state: FollowerSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FollowerSpec {
    Following,
    WindowPassed,
    Unsubscribed,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum FaultSpec {
    Errcode(i64),
    Html502,
    MalformedJson,
    DelayMs(u64),
    Status(u16),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InjectRequest {
    route: Route,
    fault: FaultSpec,
    #[serde(default = "one")]
    times: usize,
}

fn one() -> usize {
    1
}

pub(crate) fn serialize_body<S: Serializer>(body: &[u8], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Binary {
        binary_len: usize,
    }
    match std::str::from_utf8(body) {
        Ok(text) => s.serialize_str(text),
        Err(_) => Binary {
            binary_len: body.len(),
        }
        .serialize(s),
    }
}

pub(crate) fn serialize_optional_body<S: Serializer>(
    body: &Option<Vec<u8>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match body {
        Some(body) => serialize_body(body, s),
        None => s.serialize_none(),
    }
}

pub(crate) fn handle(app: &App, method: &Method, path: &str, body: &[u8]) -> Response {
    match (method.as_str(), path) {
        ("GET", "requests") => axum::Json(app.data().requests.clone()).into_response(),
        ("GET", "scenes") => {
            axum::Json(app.data().scenes.values().cloned().collect::<Vec<_>>()).into_response()
        }
        ("GET", "photos") => {
            axum::Json(app.data().photos.values().cloned().collect::<Vec<_>>()).into_response()
        }
        ("GET", "clips") => {
            axum::Json(app.data().clips.values().cloned().collect::<Vec<_>>()).into_response()
        }
        ("GET", "messages") => axum::Json(app.data().shopper.messages.clone()).into_response(),
        ("POST", "sign_in") => match serde_json::from_slice::<SignIn>(body) {
            Ok(req) => {
                app.data().shopper.signed_in = req.openid;
                StatusCode::NO_CONTENT.into_response()
            }
            Err(e) => (StatusCode::BAD_REQUEST, format!("{e}")).into_response(),
        },
        ("POST", "mp_code") => match serde_json::from_slice::<SignIn>(body) {
            Ok(SignIn {
                openid: Some(openid),
            }) => {
                let code = app.data().shopper.mini_program_code(&openid);
                axum::Json(serde_json::json!({ "code": code })).into_response()
            }
            Ok(_) => (StatusCode::BAD_REQUEST, "openid required").into_response(),
            Err(e) => (StatusCode::BAD_REQUEST, format!("{e}")).into_response(),
        },
        ("POST", "follower") => match serde_json::from_slice::<FollowerState>(body) {
            Ok(req) => {
                let state = match req.state {
                    FollowerSpec::Following => Follower::Following,
                    FollowerSpec::WindowPassed => Follower::WindowPassed,
                    FollowerSpec::Unsubscribed => Follower::Unsubscribed,
                };
                app.data().shopper.followers.insert(req.openid, state);
                StatusCode::NO_CONTENT.into_response()
            }
            Err(e) => (StatusCode::BAD_REQUEST, format!("{e}")).into_response(),
        },
        ("POST", "reset") => {
            let mut data = app.data();
            data.requests.clear();
            data.faults.clear();
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", "faults") => match serde_json::from_slice::<InjectRequest>(body) {
            Ok(req) => {
                let fault = match req.fault {
                    FaultSpec::Errcode(c) => Fault::Errcode(c),
                    FaultSpec::Html502 => Fault::Html502,
                    FaultSpec::MalformedJson => Fault::MalformedJson,
                    FaultSpec::DelayMs(ms) => Fault::Delay(Duration::from_millis(ms)),
                    FaultSpec::Status(s) => Fault::Status(s),
                };
                if req.times > 0 {
                    app.data()
                        .faults
                        .entry(req.route)
                        .or_default()
                        .push_back((fault, req.times));
                }
                StatusCode::NO_CONTENT.into_response()
            }
            Err(e) => (StatusCode::BAD_REQUEST, format!("{e}")).into_response(),
        },
        _ => (StatusCode::NOT_FOUND, "unknown admin endpoint").into_response(),
    }
}
