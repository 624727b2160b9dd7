//! The WeChat API client: token handling plus the three code endpoints.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{ConfigError, WechatConfig, validate_base_url};
use crate::error::Error;
use crate::http::{self, RawResponse};
use crate::qrcode::{QrCodeRequest, QrCodeTicket};
use crate::secret::Secret;
use crate::token::{
    CallRetry, RetryDecision, RetryPolicy, TokenManager, TokenPolicy, TokenSource,
    WechatTokenSource,
};
use crate::wxa::{WxaCode, WxaCodeRequest};

pub(crate) const QRCODE_CREATE: &str = "cgi-bin/qrcode/create";
pub(crate) const SHOWQRCODE: &str = "cgi-bin/showqrcode";
pub(crate) const WXACODE_UNLIMIT: &str = "wxa/getwxacodeunlimit";
pub(crate) const CUSTOM_SEND: &str = "cgi-bin/message/custom/send";

/// The customer-service message window is over: the shopper last interacted with the account
/// more than 48 hours ago.
pub const ERRCODE_WINDOW_PASSED: i64 = 45015;
/// The shopper does not follow the account (any more).
pub const ERRCODE_UNSUBSCRIBED: i64 = 43004;
/// Too many customer-service messages to this shopper without an answer from them.
pub const ERRCODE_SEND_LIMIT: i64 = 45047;

/// One article of a customer-service `news` message: a card that opens `url`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NewsArticle {
    pub title: String,
    pub description: String,
    pub url: String,
    /// The card's picture; may be empty.
    pub picurl: String,
}

/// A WeChat API client. Cheap to clone; clones share the token (and its single-flight).
#[derive(Debug, Clone)]
pub struct WechatClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    api_base: String,
    mp_base: String,
    timeout: Duration,
    retry: RetryPolicy,
    tokens: TokenManager,
}

impl WechatClient {
    /// A client for `config` that fetches its own tokens with `appsecret`.
    pub fn new(config: &WechatConfig, appsecret: Secret) -> Result<Self, Error> {
        let source = WechatTokenSource::new(config, appsecret)?;
        Self::with_token_source(config, source, config.token_policy())
    }

    /// A client whose tokens come from `source` (a hub can make refreshes hold a lease).
    pub fn with_token_source(
        config: &WechatConfig,
        source: impl TokenSource,
        token_policy: TokenPolicy,
    ) -> Result<Self, Error> {
        let timeout = config.timeout();
        Ok(Self {
            inner: Arc::new(Inner {
                http: http::build_client(timeout)?,
                api_base: base(&config.api_base, "wechat.api_base")?,
                mp_base: base(&config.mp_base, "wechat.mp_base")?,
                timeout,
                retry: config.retry_policy(),
                tokens: TokenManager::new(source, token_policy),
            }),
        })
    }

    pub fn tokens(&self) -> &TokenManager {
        &self.inner.tokens
    }

    /// A valid access token (fetching one if needed).
    pub async fn access_token(&self) -> Result<Secret, Error> {
        self.inner.tokens.token().await
    }

    /// `POST cgi-bin/qrcode/create`.
    pub async fn create_qrcode(&self, request: &QrCodeRequest) -> Result<QrCodeTicket, Error> {
        let body = request.to_json();
        self.call(QRCODE_CREATE, &body, http::JSON_LIMIT, |raw| {
            let ticket: QrCodeTicket = http::parse_wechat_json(QRCODE_CREATE, raw)?;
            if ticket.ticket.is_empty() || ticket.url.is_empty() {
                return Err(Error::MalformedResponse {
                    endpoint: QRCODE_CREATE,
                    status: raw.status,
                    detail: "empty ticket or url".into(),
                });
            }
            Ok(ticket)
        })
        .await
    }

    /// `GET showqrcode?ticket=…`: the code as an image. No token, no retry.
    pub async fn show_qrcode(&self, ticket: &str) -> Result<Vec<u8>, Error> {
        if ticket.is_empty() {
            return Err(Error::invalid("ticket", "empty"));
        }
        let url = format!(
            "{}/{SHOWQRCODE}?ticket={}",
            self.inner.mp_base,
            http::encode_query_value(ticket)
        );
        let raw = http::send(
            SHOWQRCODE,
            self.inner.http.get(url),
            self.inner.timeout,
            http::IMAGE_LIMIT,
        )
        .await?;
        if raw.status == 404 {
            return Err(Error::TicketNotFound);
        }
        if raw.is_success() && raw.is_image() && !raw.body.is_empty() {
            return Ok(raw.body);
        }
        Err(http::unexpected_body(SHOWQRCODE, &raw, "an image"))
    }

    /// `POST wxa/getwxacodeunlimit`: an image on success, JSON on failure, told apart by
    /// `Content-Type`.
    pub async fn get_wxacode_unlimit(&self, request: &WxaCodeRequest) -> Result<WxaCode, Error> {
        let body = request.to_json();
        self.call(WXACODE_UNLIMIT, &body, http::IMAGE_LIMIT, parse_wxacode)
            .await
    }

    /// `POST cgi-bin/message/custom/send`: one `news` message with one article to `openid`.
    /// WeChat delivers it only within 48 h of the shopper's last interaction (`45015`
    /// otherwise) and only to followers (`43004`); both come back as [`Error::Api`].
    pub async fn send_custom_news(&self, openid: &str, article: &NewsArticle) -> Result<(), Error> {
        if openid.is_empty() {
            return Err(Error::invalid("touser", "empty"));
        }
        let body = serde_json::json!({
            "touser": openid,
            "msgtype": "news",
            "news": {"articles": [article]},
        });
        let body = serde_json::to_vec(&body).unwrap_or_default();
        self.call(CUSTOM_SEND, &body, http::JSON_LIMIT, |raw| {
            http::parse_wechat_json::<serde_json::Value>(CUSTOM_SEND, raw).map(|_| ())
        })
        .await
    }

    /// One authorised API call: token, send, parse; retried per [`CallRetry`].
    async fn call<T>(
        &self,
        endpoint: &'static str,
        body: &[u8],
        limit: usize,
        parse: impl Fn(&RawResponse) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut retry = CallRetry::for_api_call(self.inner.retry);
        loop {
            let token = self.inner.tokens.token().await?;
            let url = format!(
                "{}/{endpoint}?access_token={}",
                self.inner.api_base,
                http::encode_query_value(token.expose())
            );
            let request = self
                .inner
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
            let result = http::send(endpoint, request, self.inner.timeout, limit)
                .await
                .and_then(|raw| parse(&raw));
            let error = match result {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            match retry.on_error(&error) {
                RetryDecision::RetryWithNewToken => {
                    tracing::info!(endpoint, error = %error, "access token refused; fetching a new one and retrying once");
                    self.inner.tokens.invalidate(&token);
                }
                RetryDecision::RetryAfter(pause) => {
                    tracing::info!(endpoint, ?pause, "WeChat busy; retrying");
                    tokio::time::sleep(pause).await;
                }
                RetryDecision::GiveUp => return Err(error),
            }
        }
    }
}

pub(crate) fn base(url: &str, key: &str) -> Result<String, Error> {
    validate_base_url(key, url).map_err(|e: ConfigError| Error::Client(e.to_string()))
}

fn parse_wxacode(raw: &RawResponse) -> Result<WxaCode, Error> {
    if raw.is_success() && raw.is_image() {
        if raw.body.is_empty() {
            return Err(Error::MalformedResponse {
                endpoint: WXACODE_UNLIMIT,
                status: raw.status,
                detail: "empty image".into(),
            });
        }
        return Ok(WxaCode {
            content_type: raw.content_type.clone(),
            image: raw.body.clone(),
        });
    }
    if raw.looks_like_json() {
        // An error is expected here; JSON without one is still not the image we asked for.
        let _: serde_json::Value = http::parse_wechat_json(WXACODE_UNLIMIT, raw)?;
        return Err(Error::MalformedResponse {
            endpoint: WXACODE_UNLIMIT,
            status: raw.status,
            detail: format!(
                "JSON without errcode instead of an image: {}",
                http::snippet(&raw.body)
            ),
        });
    }
    Err(http::unexpected_body(
        WXACODE_UNLIMIT,
        raw,
        "an image or JSON",
    ))
}
