//! One error type for every way a mint can fail.
//!
//! No variant ever holds a URL: WeChat's token URL carries the appsecret and every API URL
//! the access token, so transport errors are stripped of their URL before they get here.

use std::time::Duration;

use thiserror::Error;

/// WeChat's "system busy" code: retried with backoff.
pub const ERRCODE_BUSY: i64 = -1;
/// Codes that mean "this access token is no good": drop it, fetch another, retry once.
pub const TOKEN_ERRCODES: [i64; 3] = [40001, 40014, 42001];
/// Daily and per-minute quota codes: typed errors, never retried.
pub const QUOTA_ERRCODES: [i64; 2] = [45009, 45011];

#[derive(Debug, Clone, PartialEq, Error)]
pub enum Error {
    /// A value would break one of the API's limits; nothing was sent.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },

    /// WeChat answered with a non-zero `errcode`.
    #[error("{endpoint}: WeChat errcode {code}: {message}")]
    Api {
        endpoint: &'static str,
        code: i64,
        message: String,
    },

    /// `45009` (daily) or `45011` (per minute): the quota is spent; retrying now cannot help.
    #[error("{endpoint}: WeChat quota reached (errcode {code}): {message}")]
    Quota {
        endpoint: &'static str,
        code: i64,
        message: String,
    },

    /// The body was not JSON at all (typically a proxy's HTML error page).
    #[error("{endpoint}: HTTP {status}: expected JSON, got {content_type}: {snippet}")]
    NotJson {
        endpoint: &'static str,
        status: u16,
        content_type: String,
        snippet: String,
    },

    /// The body looked like JSON but could not be parsed, or lacked required fields.
    #[error("{endpoint}: HTTP {status}: malformed response: {detail}")]
    MalformedResponse {
        endpoint: &'static str,
        status: u16,
        detail: String,
    },

    /// A non-success HTTP status with no better explanation in the body.
    #[error("{endpoint}: HTTP {status}: {snippet}")]
    HttpStatus {
        endpoint: &'static str,
        status: u16,
        snippet: String,
    },

    /// The store backend refused, with its `ErrorBody`.
    #[error("{endpoint}: backend answered HTTP {status} {code}: {message}")]
    Backend {
        endpoint: &'static str,
        status: u16,
        code: String,
        message: String,
        /// From `Retry-After` (seconds form), when the backend sent one.
        retry_after: Option<Duration>,
    },

    /// No complete answer within the configured timeout.
    #[error("{endpoint}: no answer within {} ms", timeout.as_millis())]
    Timeout {
        endpoint: &'static str,
        timeout: Duration,
    },

    /// The request never got an answer: connection refused or reset, DNS, TLS.
    #[error("{endpoint}: {detail}")]
    Transport {
        endpoint: &'static str,
        detail: String,
    },

    /// The body was bigger than any sane answer of that endpoint.
    #[error("{endpoint}: answer larger than {limit} bytes")]
    TooLarge {
        endpoint: &'static str,
        limit: usize,
    },

    /// `showqrcode` answered 404: the ticket is unknown or expired.
    #[error("cgi-bin/showqrcode: ticket unknown or expired (HTTP 404)")]
    TicketNotFound,

    /// A token fetch failed moments ago; callers are not allowed to hammer the endpoint.
    #[error("access token unavailable for another {} ms; last failure: {last}", retry_in.as_millis())]
    TokenCoolingDown {
        retry_in: Duration,
        last: Box<Error>,
    },

    /// The HTTP client could not be built (TLS setup).
    #[error("cannot build the HTTP client: {0}")]
    Client(String),

    /// Where several instances share one token (a hub's database), it could not be read or
    /// its refresh lease taken.
    #[error("shared access token: {0}")]
    SharedToken(String),

    /// A background task died before it could answer.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// The WeChat `errcode`, if this is an API answer.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            Self::Api { code, .. } | Self::Quota { code, .. } => Some(*code),
            Self::TokenCoolingDown { last, .. } => last.errcode(),
            _ => None,
        }
    }

    /// `40001`, `40014` or `42001`.
    pub fn is_token_error(&self) -> bool {
        matches!(self, Self::Api { code, .. } if TOKEN_ERRCODES.contains(code))
    }

    /// Worth retrying later (network, busy, quota, 5xx, 429) as opposed to a
    /// configuration or request problem that will fail the same way every time.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Api { code, .. } => *code == ERRCODE_BUSY || TOKEN_ERRCODES.contains(code),
            Self::Quota { .. }
            | Self::Timeout { .. }
            | Self::Transport { .. }
            | Self::NotJson { .. }
            | Self::MalformedResponse { .. }
            | Self::TicketNotFound
            | Self::SharedToken(_)
            | Self::Internal(_) => true,
            Self::HttpStatus { status, .. } | Self::Backend { status, .. } => {
                *status == 429 || *status >= 500
            }
            Self::TokenCoolingDown { last, .. } => last.is_transient(),
            Self::Invalid { .. } | Self::TooLarge { .. } | Self::Client(_) => false,
        }
    }

    /// The error WeChat's JSON `{"errcode","errmsg"}` stands for.
    pub(crate) fn from_errcode(endpoint: &'static str, code: i64, errmsg: &str) -> Self {
        let message = crate::http::snippet(errmsg.as_bytes());
        if QUOTA_ERRCODES.contains(&code) {
            Self::Quota {
                endpoint,
                code,
                message,
            }
        } else {
            Self::Api {
                endpoint,
                code,
                message,
            }
        }
    }
}
