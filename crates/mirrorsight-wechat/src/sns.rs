//! Who the shopper is: WeChat's web sign-in (网页授权, `snsapi_base`) for the official
//! account's pages, and `jscode2session` for a mini-program.
//!
//! Both exchange a short-lived, single-use code for an openid with the app's own appid and
//! appsecret; neither needs an access token. Codes live 5 minutes and work once: `40029`
//! (invalid code) and `40163` (code already used) are final for that code, so only `-1`
//! (system busy) is retried, with the bounded backoff every other call uses.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{ConfigError, WechatConfig, validate_base_url};
use crate::error::Error;
use crate::http::{self, RawResponse};
use crate::secret::Secret;
use crate::token::{CallRetry, RetryDecision, RetryPolicy};

pub(crate) const OAUTH2_ACCESS_TOKEN: &str = "sns/oauth2/access_token";
pub(crate) const JSCODE2SESSION: &str = "sns/jscode2session";
/// Path of the authorize page under `wechat.oauth_base`.
pub const AUTHORIZE_PATH: &str = "connect/oauth2/authorize";

/// The code is unknown, expired or malformed.
pub const ERRCODE_INVALID_CODE: i64 = 40029;
/// The code was exchanged already (a reload of the callback page, a replayed link).
pub const ERRCODE_CODE_USED: i64 = 40163;

/// The identity a web sign-in code stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OauthIdentity {
    /// The shopper's openid for this official account.
    pub openid: String,
    /// The scope granted, `snsapi_base` here.
    pub scope: String,
}

/// The identity a mini-program login code stands for. The `session_key` WeChat also returns
/// is dropped: it decrypts the mini-program's user data, which the hub never asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiniProgramIdentity {
    /// The shopper's openid for this mini-program (not the official account's).
    pub openid: String,
    /// Present when the mini-program is bound to an open-platform account.
    pub unionid: Option<String>,
}

#[derive(Deserialize)]
struct OauthAnswer {
    openid: String,
    #[serde(default)]
    scope: String,
}

#[derive(Deserialize)]
struct Jscode2sessionAnswer {
    openid: String,
    #[serde(default)]
    unionid: Option<String>,
}

/// Exchanges sign-in codes for openids. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SnsClient {
    http: reqwest::Client,
    api_base: String,
    oauth_base: String,
    appid: String,
    appsecret: Secret,
    timeout: Duration,
    retry: RetryPolicy,
}

fn base(key: &str, url: &str) -> Result<String, Error> {
    validate_base_url(key, url).map_err(|e: ConfigError| Error::Client(e.to_string()))
}

impl SnsClient {
    /// A client for the app `config` names (`wechat.appid`), with its appsecret.
    pub fn new(config: &WechatConfig, appsecret: Secret) -> Result<Self, Error> {
        Self::for_app(config, &config.appid, appsecret)
    }

    /// A client for another app on the same API (a mini-program next to the official
    /// account): `appid` and `appsecret` are that app's.
    pub fn for_app(config: &WechatConfig, appid: &str, appsecret: Secret) -> Result<Self, Error> {
        if appid.trim().is_empty() {
            return Err(Error::invalid("appid", "empty"));
        }
        let timeout = config.timeout();
        Ok(Self {
            http: http::build_client(timeout)?,
            api_base: base("wechat.api_base", &config.api_base)?,
            oauth_base: base("wechat.oauth_base", &config.oauth_base)?,
            appid: appid.to_string(),
            appsecret,
            timeout,
            retry: config.retry_policy(),
        })
    }

    pub fn appid(&self) -> &str {
        &self.appid
    }

    /// Where to send the shopper's browser for a silent (`snsapi_base`) sign-in: WeChat
    /// answers by redirecting to `redirect_uri?code=…&state=…`. `state` must be at most 128
    /// letters and digits (WeChat's rule); the fragment `#wechat_redirect` is required.
    pub fn authorize_url(&self, redirect_uri: &str, state: &str) -> String {
        format!(
            "{}/{AUTHORIZE_PATH}?appid={}&redirect_uri={}&response_type=code&scope=snsapi_base&state={}#wechat_redirect",
            self.oauth_base,
            http::encode_query_value(&self.appid),
            http::encode_query_value(redirect_uri),
            http::encode_query_value(state),
        )
    }

    /// `GET sns/oauth2/access_token`: the openid behind a web sign-in `code`.
    pub async fn exchange_oauth_code(&self, code: &str) -> Result<OauthIdentity, Error> {
        check_code("code", code)?;
        let url = format!(
            "{}/{OAUTH2_ACCESS_TOKEN}?appid={}&secret={}&code={}&grant_type=authorization_code",
            self.api_base,
            http::encode_query_value(&self.appid),
            http::encode_query_value(self.appsecret.expose()),
            http::encode_query_value(code),
        );
        let answer: OauthAnswer = self
            .get_with_busy_retry(OAUTH2_ACCESS_TOKEN, &url, |raw| {
                http::parse_wechat_json(OAUTH2_ACCESS_TOKEN, raw)
            })
            .await?;
        non_empty_openid(OAUTH2_ACCESS_TOKEN, &answer.openid)?;
        Ok(OauthIdentity {
            openid: answer.openid,
            scope: answer.scope,
        })
    }

    /// `GET sns/jscode2session`: the openid behind a mini-program's `wx.login` code.
    pub async fn jscode2session(&self, js_code: &str) -> Result<MiniProgramIdentity, Error> {
        check_code("js_code", js_code)?;
        let url = format!(
            "{}/{JSCODE2SESSION}?appid={}&secret={}&js_code={}&grant_type=authorization_code",
            self.api_base,
            http::encode_query_value(&self.appid),
            http::encode_query_value(self.appsecret.expose()),
            http::encode_query_value(js_code),
        );
        let answer: Jscode2sessionAnswer = self
            .get_with_busy_retry(JSCODE2SESSION, &url, |raw| {
                http::parse_wechat_json(JSCODE2SESSION, raw)
            })
            .await?;
        non_empty_openid(JSCODE2SESSION, &answer.openid)?;
        Ok(MiniProgramIdentity {
            openid: answer.openid,
            unionid: answer.unionid.filter(|u| !u.is_empty()),
        })
    }

    /// One GET, retried on `-1` only (a code is single-use: anything else is final).
    async fn get_with_busy_retry<T>(
        &self,
        endpoint: &'static str,
        url: &str,
        parse: impl Fn(&RawResponse) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut retry = CallRetry::for_token_fetch(self.retry);
        loop {
            let request = self.http.get(url);
            let result = http::send(endpoint, request, self.timeout, http::JSON_LIMIT)
                .await
                .and_then(|raw| parse(&raw));
            match result {
                Ok(value) => return Ok(value),
                Err(e) => match retry.on_error(&e) {
                    RetryDecision::RetryAfter(pause) => {
                        tracing::info!(endpoint, ?pause, "WeChat busy; retrying");
                        tokio::time::sleep(pause).await;
                    }
                    RetryDecision::RetryWithNewToken | RetryDecision::GiveUp => return Err(e),
                },
            }
        }
    }
}

/// Codes are short opaque tokens; anything else is refused before it is sent.
fn check_code(field: &'static str, code: &str) -> Result<(), Error> {
    if code.is_empty() || code.len() > 256 || !code.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            field,
            "must be 1..=256 printable ASCII characters",
        ));
    }
    Ok(())
}

fn non_empty_openid(endpoint: &'static str, openid: &str) -> Result<(), Error> {
    if openid.is_empty() || openid.len() > 128 {
        return Err(Error::MalformedResponse {
            endpoint,
            status: 200,
            detail: format!("openid of {} characters", openid.len()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> SnsClient {
        let config = WechatConfig {
            appid: "wx0123".into(),
            api_base: "http://127.0.0.1:9".into(),
            oauth_base: "https://open.weixin.qq.com".into(),
            ..WechatConfig::default()
        };
        SnsClient::new(&config, Secret::new("s")).unwrap()
    }

    #[test]
    fn authorize_url_is_wechats_shape() {
        let url = client().authorize_url("https://hub.example/oauth/callback", "0af3");
        assert_eq!(
            url,
            "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wx0123&redirect_uri=https%3A%2F%2Fhub.example%2Foauth%2Fcallback&response_type=code&scope=snsapi_base&state=0af3#wechat_redirect"
        );
    }

    #[test]
    fn codes_are_checked_before_sending() {
        assert!(check_code("code", "").is_err());
        assert!(check_code("code", "a b").is_err());
        assert!(check_code("code", &"x".repeat(257)).is_err());
        assert!(check_code("code", "061Xk0000aBcD3").is_ok());
    }
}
