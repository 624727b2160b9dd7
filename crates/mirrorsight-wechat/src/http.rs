//! Sending one request and turning whatever comes back into a value or a typed [`Error`].

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::DeserializeOwned;

use crate::error::Error;

/// Largest JSON answer we read: WeChat's are a few hundred bytes.
pub(crate) const JSON_LIMIT: usize = 256 * 1024;
/// Largest image we read: a 1280 px mini-program code is ~100 KiB, a QR JPEG less.
pub(crate) const IMAGE_LIMIT: usize = 8 * 1024 * 1024;

/// Everything but RFC 3986's unreserved characters, so a ticket's `+ / =` survive a query.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub(crate) fn encode_query_value(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// A fully read answer.
pub(crate) struct RawResponse {
    pub status: u16,
    pub content_type: String,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `application/json`, `text/json`, or the `text/plain` WeChat sometimes labels JSON with.
    pub fn looks_like_json(&self) -> bool {
        let ct = self.content_type.as_str();
        ct.contains("json")
            || (ct.starts_with("text/plain")
                && self.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'))
    }

    pub fn is_image(&self) -> bool {
        self.content_type.starts_with("image/")
    }
}

pub(crate) fn build_client(timeout: Duration) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        // A dead host should fail fast even when the overall timeout is generous.
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("mirrorsight/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Client(error_chain(&e.without_url())))
}

/// Sends `request` (whose own timeout is `timeout`) and reads at most `limit` bytes of body.
pub(crate) async fn send(
    endpoint: &'static str,
    request: reqwest::RequestBuilder,
    timeout: Duration,
    limit: usize,
) -> Result<RawResponse, Error> {
    // The client's timeout covers the body too, but a second fence here also bounds the
    // chunked reading loop below whatever the client was built with.
    match tokio::time::timeout(
        timeout,
        send_inner(endpoint, request.timeout(timeout), timeout, limit),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout { endpoint, timeout }),
    }
}

async fn send_inner(
    endpoint: &'static str,
    request: reqwest::RequestBuilder,
    timeout: Duration,
    limit: usize,
) -> Result<RawResponse, Error> {
    let mut response = request
        .send()
        .await
        .map_err(|e| transport_error(endpoint, timeout, e))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(endpoint, timeout, e))?
    {
        if body.len() + chunk.len() > limit {
            return Err(Error::TooLarge { endpoint, limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(RawResponse {
        status,
        content_type,
        retry_after,
        body,
    })
}

fn transport_error(endpoint: &'static str, timeout: Duration, e: reqwest::Error) -> Error {
    if e.is_timeout() {
        return Error::Timeout { endpoint, timeout };
    }
    // The URL may carry `secret=` or `access_token=`: never let it into an error.
    Error::Transport {
        endpoint,
        detail: error_chain(&e.without_url()),
    }
}

/// `outer: inner: innermost`, skipping repeats, so "connection refused" is visible.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The start of a body, on one line, for an error message.
pub(crate) fn snippet(body: &[u8]) -> String {
    const MAX_CHARS: usize = 160;
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    let mut last_space = false;
    for c in text.chars() {
        let c = if c.is_whitespace() || c.is_control() {
            ' '
        } else {
            c
        };
        if c == ' ' && (last_space || out.is_empty()) {
            continue;
        }
        last_space = c == ' ';
        if out.chars().count() == MAX_CHARS {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out.trim_end().to_string()
}

fn describe_content_type(ct: &str) -> String {
    if ct.is_empty() {
        "no Content-Type".to_string()
    } else {
        ct.to_string()
    }
}

/// The error for a body that is not what the endpoint promises.
pub(crate) fn unexpected_body(endpoint: &'static str, raw: &RawResponse, expected: &str) -> Error {
    let snippet = snippet(&raw.body);
    if raw.is_success() {
        Error::NotJson {
            endpoint,
            status: raw.status,
            content_type: format!(
                "{} instead of {expected}",
                describe_content_type(&raw.content_type)
            ),
            snippet,
        }
    } else {
        Error::HttpStatus {
            endpoint,
            status: raw.status,
            snippet: with_reason(raw.status, &raw.content_type, snippet),
        }
    }
}

fn with_reason(status: u16, content_type: &str, snippet: String) -> String {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!(
        "{reason} ({}): {snippet}",
        describe_content_type(content_type)
    )
    .trim_start()
    .to_string()
}

/// Parses a WeChat JSON answer: `errcode` ≠ 0 becomes a typed error, anything unparsable a
/// clear one naming the endpoint and status.
pub(crate) fn parse_wechat_json<T: DeserializeOwned>(
    endpoint: &'static str,
    raw: &RawResponse,
) -> Result<T, Error> {
    let value: serde_json::Value = match serde_json::from_slice(&raw.body) {
        Ok(v) => v,
        Err(e) => {
            let starts_like_json = raw
                .body
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|b| *b == b'{');
            if !raw.is_success() {
                return Err(unexpected_body(endpoint, raw, "JSON"));
            }
            if starts_like_json || raw.content_type.contains("json") {
                return Err(Error::MalformedResponse {
                    endpoint,
                    status: raw.status,
                    detail: format!("invalid JSON ({e}): {}", snippet(&raw.body)),
                });
            }
            return Err(Error::NotJson {
                endpoint,
                status: raw.status,
                content_type: describe_content_type(&raw.content_type),
                snippet: snippet(&raw.body),
            });
        }
    };
    if let Some(code) = value.get("errcode").and_then(serde_json::Value::as_i64)
        && code != 0
    {
        let errmsg = value
            .get("errmsg")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        return Err(Error::from_errcode(endpoint, code, errmsg));
    }
    if !raw.is_success() {
        return Err(unexpected_body(endpoint, raw, "JSON"));
    }
    serde_json::from_value(value).map_err(|e| Error::MalformedResponse {
        endpoint,
        status: raw.status,
        detail: format!("unexpected JSON ({e}): {}", snippet(&raw.body)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(status: u16, ct: &str, body: &str) -> RawResponse {
        RawResponse {
            status,
            content_type: ct.into(),
            retry_after: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[derive(Debug, serde::Deserialize)]
    struct T {
        #[allow(dead_code)]
        a: u32,
    }

    #[test]
    fn classification() {
        assert!(parse_wechat_json::<T>("e", &raw(200, "application/json", r#"{"a":1}"#)).is_ok());
        assert!(
            parse_wechat_json::<T>("e", &raw(200, "application/json", r#"{"a":1,"errcode":0}"#))
                .is_ok()
        );
        let e = parse_wechat_json::<T>(
            "e",
            &raw(
                200,
                "application/json",
                r#"{"errcode":45009,"errmsg":"quota rid: 1"}"#,
            ),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Quota { code: 45009, .. }), "{e:?}");
        let e = parse_wechat_json::<T>(
            "e",
            &raw(502, "text/html", "<html>\n<h1>502 Bad Gateway</h1></html>"),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "e: HTTP 502: Bad Gateway (text/html): <html> <h1>502 Bad Gateway</h1></html>"
        );
        let e = parse_wechat_json::<T>("e", &raw(200, "application/json", r#"{"a":"#)).unwrap_err();
        assert!(
            matches!(e, Error::MalformedResponse { status: 200, .. }),
            "{e:?}"
        );
        let e =
            parse_wechat_json::<T>("e", &raw(200, "application/json", r#"{"b":1}"#)).unwrap_err();
        assert!(matches!(e, Error::MalformedResponse { .. }), "{e:?}");
        let e = parse_wechat_json::<T>("e", &raw(200, "text/html", "<p>hi</p>")).unwrap_err();
        assert!(matches!(e, Error::NotJson { .. }), "{e:?}");
    }

    #[test]
    fn query_encoding_and_snippets() {
        assert_eq!(encode_query_value("gQH+a/b=="), "gQH%2Ba%2Fb%3D%3D");
        assert_eq!(encode_query_value("a-b_c.d~"), "a-b_c.d~");
        let long = "x".repeat(500);
        assert_eq!(snippet(long.as_bytes()).chars().count(), 161);
    }
}
