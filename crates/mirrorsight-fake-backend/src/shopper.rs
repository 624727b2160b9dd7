//! What WeChat does for and with one shopper, as the real platform does it:
//!
//! - the web sign-in page `GET /connect/oauth2/authorize` (on `wechat.oauth_base`): with a
//!   shopper "signed in to WeChat" ([`crate::FakeHandle::sign_in_as`]) it redirects to
//!   `redirect_uri?code=…&state=…`; without one it shows the page WeChat shows outside its app;
//! - `GET /sns/oauth2/access_token`: a code for the openid, single use, 5 minutes (`40029`
//!   unknown or expired, `40163` already used, `40013`/`40125` wrong appid or secret);
//! - `GET /sns/jscode2session`: the mini-program's login code
//!   ([`crate::FakeHandle::mini_program_code`]) for its openid, with the same code rules;
//! - `POST /cgi-bin/message/custom/send`: customer-service messages, recorded
//!   ([`crate::FakeHandle::custom_messages`]); `43004` for a shopper who does not follow,
//!   `45015` once their 48 h window has passed ([`crate::FakeHandle::set_follower`]), `40003`
//!   for an empty `touser`, `44002`/`47001` for a body that is not a message.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::{App, wechat_error, wechat_json};

/// How long an authorization or login code works (WeChat: 5 minutes).
pub(crate) const CODE_LIFETIME: Duration = Duration::from_secs(300);

/// What the platform knows of a shopper's relation to the official account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Follower {
    /// Follows, and interacted within 48 h: customer-service messages are delivered.
    Following,
    /// Follows, but the 48 h window since the last interaction has passed (`45015`).
    WindowPassed,
    /// Does not follow (never did, or unfollowed): `43004`.
    Unsubscribed,
}

/// A customer-service message as WeChat accepted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomMessage {
    pub touser: String,
    pub msgtype: String,
    /// The whole body as sent.
    pub body: serde_json::Value,
}

impl CustomMessage {
    /// The articles of a `news` message, as `(title, description, url, picurl)`.
    pub fn articles(&self) -> Vec<(String, String, String, String)> {
        let field = |a: &serde_json::Value, k: &str| {
            a.get(k)
                .and_then(serde_json::Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        self.body
            .pointer("/news/articles")
            .and_then(serde_json::Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|a| {
                        (
                            field(a, "title"),
                            field(a, "description"),
                            field(a, "url"),
                            field(a, "picurl"),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
struct IssuedCode {
    openid: String,
    issued: Instant,
    used: bool,
}

/// The shopper-side state of the fake.
#[derive(Debug, Default)]
pub(crate) struct ShopperData {
    /// The openid of whoever is "signed in to WeChat" in the browser that opens the
    /// authorize page; `None`: a browser outside WeChat.
    pub signed_in: Option<String>,
    oauth_codes: HashMap<String, IssuedCode>,
    mp_codes: HashMap<String, IssuedCode>,
    issued: u64,
    pub followers: HashMap<String, Follower>,
    pub messages: Vec<CustomMessage>,
}

impl ShopperData {
    fn new_code(&mut self, prefix: &str) -> String {
        self.issued += 1;
        // Real codes are 32 characters of [0-9A-Za-z].
        format!("{prefix}{:08}Zq8R0aUe1mVbN4wA", self.issued)
    }

    /// A fresh mini-program login code for `openid` (what `wx.login` gives the mini-program).
    pub fn mini_program_code(&mut self, openid: &str) -> String {
        let code = self.new_code("mp");
        self.mp_codes.insert(
            code.clone(),
            IssuedCode {
                openid: openid.to_string(),
                issued: Instant::now(),
                used: false,
            },
        );
        code
    }
}

fn html_page(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>微信</title></head><body>{body}</body></html>"),
    )
        .into_response()
}

/// `GET /connect/oauth2/authorize`.
pub(crate) fn authorize(app: &App, q: &HashMap<String, String>) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    if get("appid") != app.config.appid {
        return html_page(StatusCode::OK, "<p>appid参数错误 (10016)</p>");
    }
    if get("response_type") != "code" {
        return html_page(StatusCode::OK, "<p>response_type参数错误 (10004)</p>");
    }
    if !matches!(get("scope"), "snsapi_base" | "snsapi_userinfo") {
        return html_page(
            StatusCode::OK,
            "<p>scope参数错误或没有scope权限 (10005)</p>",
        );
    }
    let redirect = get("redirect_uri");
    if !(redirect.starts_with("https://") || redirect.starts_with("http://")) {
        return html_page(StatusCode::OK, "<p>redirect_uri参数错误 (10003)</p>");
    }
    let state = get("state");
    if state.len() > 128 || !state.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return html_page(StatusCode::OK, "<p>state参数错误</p>");
    }
    let mut data = app.data();
    let Some(openid) = data.shopper.signed_in.clone() else {
        return html_page(
            StatusCode::OK,
            "<p>请在微信客户端打开链接 · Please open this link in WeChat</p>",
        );
    };
    let code = data.shopper.new_code("oa");
    data.shopper.oauth_codes.insert(
        code.clone(),
        IssuedCode {
            openid,
            issued: Instant::now(),
            used: false,
        },
    );
    let separator = if redirect.contains('?') { '&' } else { '?' };
    let location = format!("{redirect}{separator}code={code}&state={state}");
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Takes `code` from `codes` if it is good: `Err(errcode)` otherwise.
fn redeem(codes: &mut HashMap<String, IssuedCode>, code: &str) -> Result<String, i64> {
    let Some(issued) = codes.get_mut(code) else {
        return Err(40029);
    };
    if issued.issued.elapsed() > CODE_LIFETIME {
        return Err(40029);
    }
    if issued.used {
        return Err(40163);
    }
    issued.used = true;
    Ok(issued.openid.clone())
}

fn code_error(code: i64) -> Response {
    match code {
        40163 => wechat_error(40163, "code been used"),
        _ => wechat_error(40029, "invalid code"),
    }
}

/// `GET /sns/oauth2/access_token`.
pub(crate) fn oauth_access_token(app: &App, q: &HashMap<String, String>) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    if get("appid") != app.config.appid {
        return wechat_error(40013, "invalid appid");
    }
    if get("secret") != app.config.appsecret {
        return wechat_error(40125, "invalid appsecret");
    }
    if get("grant_type") != "authorization_code" {
        return wechat_error(40002, "invalid grant_type");
    }
    match redeem(&mut app.data().shopper.oauth_codes, get("code")) {
        Ok(openid) => wechat_json(json!({
            "access_token": format!("FAKE_WEB_ACCESS_TOKEN_{openid}"),
            "expires_in": 7200,
            "refresh_token": format!("FAKE_REFRESH_{openid}"),
            "openid": openid,
            "scope": "snsapi_base",
            "is_snapshotuser": 0,
        })),
        Err(code) => code_error(code),
    }
}

/// `GET /sns/jscode2session`.
pub(crate) fn jscode2session(app: &App, q: &HashMap<String, String>) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    if get("appid") != app.config.mp_appid {
        return wechat_error(40013, "invalid appid");
    }
    if get("secret") != app.config.mp_appsecret {
        return wechat_error(40125, "invalid appsecret");
    }
    if get("grant_type") != "authorization_code" {
        return wechat_error(40002, "invalid grant_type");
    }
    match redeem(&mut app.data().shopper.mp_codes, get("js_code")) {
        Ok(openid) => wechat_json(json!({
            "openid": openid,
            "session_key": "tiihtNczf5v6AKRyjwEUhQ==",
        })),
        Err(code) => code_error(code),
    }
}

/// `POST /cgi-bin/message/custom/send` (the access token is already checked).
pub(crate) fn custom_send(app: &App, body: &[u8]) -> Response {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return wechat_error(47001, "data format error");
    };
    let touser = value
        .get("touser")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .to_string();
    if touser.is_empty() {
        return wechat_error(40003, "invalid openid");
    }
    let msgtype = value
        .get("msgtype")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .to_string();
    let well_formed = match msgtype.as_str() {
        "text" => value.pointer("/text/content").is_some(),
        // Customer-service news carries exactly one article.
        "news" => value
            .pointer("/news/articles")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|a| a.len() == 1),
        _ => false,
    };
    if !well_formed {
        return wechat_error(44002, "empty post data or invalid message");
    }
    let mut data = app.data();
    match data
        .shopper
        .followers
        .get(&touser)
        .copied()
        .unwrap_or(Follower::Following)
    {
        Follower::Unsubscribed => return wechat_error(43004, "require subscribe"),
        Follower::WindowPassed => {
            return wechat_error(
                45015,
                "response out of time limit or subscription is canceled",
            );
        }
        Follower::Following => {}
    }
    data.shopper.messages.push(CustomMessage {
        touser,
        msgtype,
        body: value,
    });
    wechat_json(json!({"errcode": 0, "errmsg": "ok"}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_work_once_and_not_after_five_minutes() {
        let mut codes = HashMap::new();
        codes.insert(
            "c".to_string(),
            IssuedCode {
                openid: "o".into(),
                issued: Instant::now(),
                used: false,
            },
        );
        assert_eq!(redeem(&mut codes, "c"), Ok("o".to_string()));
        assert_eq!(redeem(&mut codes, "c"), Err(40163));
        assert_eq!(redeem(&mut codes, "nope"), Err(40029));
        if let Some(stale) = Instant::now().checked_sub(CODE_LIFETIME + Duration::from_secs(1)) {
            codes.insert(
                "old".to_string(),
                IssuedCode {
                    openid: "o".into(),
                    issued: stale,
                    used: false,
                },
            );
            assert_eq!(redeem(&mut codes, "old"), Err(40029));
        }
    }
}
