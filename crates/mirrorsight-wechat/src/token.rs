//! The access token: a sans-IO core that decides, and a thin async shell that does.
//!
//! [`TokenCore`] owns no clock, thread or socket. It is told the time and what came back, and
//! answers what to do: use a token, fetch one, wait for the fetch already in flight, or fail
//! fast while cooling down after a failed fetch. [`CallRetry`] likewise decides, per API call,
//! whether an error earns a retry. [`TokenManager`] runs them over reqwest and tokio.
//!
//! Rules, after the WeChat notes: one fetch in flight however many callers wait
//! (single-flight); refresh `refresh_ahead` (300 s) before expiry while the old token keeps
//! serving; a token error (`40001`/`40014`/`42001`) drops the cached token only if it is the
//! one that failed, and the call is retried exactly once; `-1` is retried a bounded number of
//! times with exponential backoff; everything else is a typed error.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::oneshot;

use crate::config::TokenEndpoint;
use crate::error::{ERRCODE_BUSY, Error};
use crate::http::{self, RawResponse};
use crate::secret::Secret;

/// Identifies one token fetch, so a late answer to an abandoned fetch cannot overwrite a newer
/// token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FetchId(u64);

/// Timing rules of the token core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Refresh this long before the token expires (capped at half its lifetime).
    pub refresh_ahead: Duration,
    /// After a failed fetch, callers fail fast for this long (doubling per failure)...
    pub failure_cooldown: Duration,
    /// ...up to this.
    pub failure_cooldown_max: Duration,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            refresh_ahead: Duration::from_secs(300),
            failure_cooldown: Duration::from_millis(500),
            failure_cooldown_max: Duration::from_secs(30),
        }
    }
}

/// What a caller that wants a token must do now.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenAction<E> {
    /// Use this token. With `refresh`, also start that fetch in the background (the token is
    /// inside its refresh window but still valid).
    Use {
        token: Secret,
        refresh: Option<FetchId>,
    },
    /// No valid token: fetch one now and report with [`TokenCore::on_fetched`] or
    /// [`TokenCore::on_fetch_failed`].
    Fetch(FetchId),
    /// No valid token, and this fetch is already in flight: wait for its outcome.
    Wait(FetchId),
    /// A fetch failed moments ago; fail without a request.
    Fail { error: E, retry_in: Duration },
}

#[derive(Debug, Clone)]
struct Cached {
    token: Secret,
    refresh_at: Instant,
    expires_at: Instant,
}

/// The sans-IO state machine behind the access token.
#[derive(Debug)]
pub struct TokenCore<E> {
    policy: TokenPolicy,
    current: Option<Cached>,
    in_flight: Option<FetchId>,
    next_id: u64,
    failures: u32,
    cooldown: Option<(Instant, E)>,
}

impl<E: Clone> TokenCore<E> {
    pub fn new(policy: TokenPolicy) -> Self {
        Self {
            policy,
            current: None,
            in_flight: None,
            next_id: 0,
            failures: 0,
            cooldown: None,
        }
    }

    fn start_fetch(&mut self) -> FetchId {
        self.next_id += 1;
        let id = FetchId(self.next_id);
        self.in_flight = Some(id);
        id
    }

    /// A caller wants a token at `now`.
    pub fn poll(&mut self, now: Instant) -> TokenAction<E> {
        let cooling = self
            .cooldown
            .as_ref()
            .filter(|(until, _)| now < *until)
            .cloned();
        if let Some(c) = &self.current {
            if now < c.expires_at {
                let token = c.token.clone();
                let wants_refresh =
                    now >= c.refresh_at && self.in_flight.is_none() && cooling.is_none();
                let refresh = wants_refresh.then(|| self.start_fetch());
                return TokenAction::Use { token, refresh };
            }
            self.current = None;
        }
        if let Some(id) = self.in_flight {
            return TokenAction::Wait(id);
        }
        if let Some((until, error)) = cooling {
            return TokenAction::Fail {
                error,
                retry_in: until - now,
            };
        }
        TokenAction::Fetch(self.start_fetch())
    }

    /// The fetch `id` returned a token valid for `expires_in` from `now`. Returns false (and
    /// changes nothing) if that fetch is no longer the one in flight.
    pub fn on_fetched(
        &mut self,
        id: FetchId,
        now: Instant,
        token: Secret,
        expires_in: Duration,
    ) -> bool {
        if self.in_flight != Some(id) {
            return false;
        }
        self.in_flight = None;
        self.failures = 0;
        self.cooldown = None;
        // A token that lives shorter than twice the refresh margin would otherwise be
        // refreshed on every call.
        let ahead = self.policy.refresh_ahead.min(expires_in / 2);
        self.current = Some(Cached {
            token,
            refresh_at: now + (expires_in - ahead),
            expires_at: now + expires_in,
        });
        true
    }

    /// The fetch `id` failed with `error`. Returns false if that fetch is no longer in flight.
    pub fn on_fetch_failed(&mut self, id: FetchId, now: Instant, error: E) -> bool {
        if self.in_flight != Some(id) {
            return false;
        }
        self.in_flight = None;
        let shift = self.failures.min(16);
        self.failures = self.failures.saturating_add(1);
        let cooldown = self
            .policy
            .failure_cooldown
            .saturating_mul(1 << shift)
            .min(self.policy.failure_cooldown_max);
        self.cooldown = Some((now + cooldown, error));
        true
    }

    /// The API refused `failed` as invalid or expired. Drops the cached token only if it is
    /// that one: a token fetched meanwhile by another caller stays. Returns whether it dropped.
    pub fn invalidate(&mut self, failed: &Secret) -> bool {
        if self.current.as_ref().is_some_and(|c| &c.token == failed) {
            self.current = None;
            // The refusal is news about the platform, not a failure of ours: fetch at once.
            self.cooldown = None;
            true
        } else {
            false
        }
    }

    /// The cached token, valid at `now`, if any.
    pub fn current(&self, now: Instant) -> Option<&Secret> {
        self.current
            .as_ref()
            .filter(|c| now < c.expires_at)
            .map(|c| &c.token)
    }

    pub fn in_flight(&self) -> Option<FetchId> {
        self.in_flight
    }
}

/// How a call's `-1` (system busy) answers are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after `-1`, so at most `busy_retries + 1` attempts.
    pub busy_retries: u32,
    /// Wait before the first retry; doubles per retry...
    pub busy_backoff: Duration,
    /// ...up to this.
    pub busy_backoff_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            busy_retries: 3,
            busy_backoff: Duration::from_millis(200),
            busy_backoff_max: Duration::from_secs(2),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Drop the token the attempt used and retry at once with a fresh one.
    RetryWithNewToken,
    /// Retry with the same token after this pause.
    RetryAfter(Duration),
    /// Return the error.
    GiveUp,
}

/// Sans-IO retry bookkeeping for one API call. Bounded by construction: one token retry,
/// `busy_retries` busy retries, so at most `busy_retries + 2` attempts.
#[derive(Debug, Clone)]
pub struct CallRetry {
    policy: RetryPolicy,
    retry_token_errors: bool,
    token_retry_used: bool,
    busy_retries_used: u32,
}

impl CallRetry {
    /// For a call authenticated by an access token.
    pub fn for_api_call(policy: RetryPolicy) -> Self {
        Self {
            policy,
            retry_token_errors: true,
            token_retry_used: false,
            busy_retries_used: 0,
        }
    }

    /// For the token fetch itself, where `40001` means a wrong appsecret, not a stale token.
    pub fn for_token_fetch(policy: RetryPolicy) -> Self {
        Self {
            policy,
            retry_token_errors: false,
            token_retry_used: false,
            busy_retries_used: 0,
        }
    }

    /// Decides after an attempt failed with `error`.
    pub fn on_error(&mut self, error: &Error) -> RetryDecision {
        if error.is_token_error() && self.retry_token_errors && !self.token_retry_used {
            self.token_retry_used = true;
            return RetryDecision::RetryWithNewToken;
        }
        if error.errcode() == Some(ERRCODE_BUSY)
            && matches!(error, Error::Api { .. })
            && self.busy_retries_used < self.policy.busy_retries
        {
            let shift = self.busy_retries_used.min(16);
            self.busy_retries_used += 1;
            let pause = self
                .policy
                .busy_backoff
                .saturating_mul(1 << shift)
                .min(self.policy.busy_backoff_max);
            return RetryDecision::RetryAfter(pause);
        }
        RetryDecision::GiveUp
    }
}

/// A token as fetched: the value and how long it lives from the moment it arrived.
#[derive(Debug, Clone)]
pub struct FetchedToken {
    pub token: Secret,
    pub expires_in: Duration,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where tokens come from. [`WechatTokenSource`] asks WeChat; a hub running several instances
/// can plug in one that takes a lease first, so only one instance ever refreshes.
pub trait TokenSource: Send + Sync + 'static {
    fn fetch(&self) -> BoxFuture<'_, Result<FetchedToken, Error>>;
}

/// Fetches from `cgi-bin/stable_token` (default) or `cgi-bin/token`.
pub struct WechatTokenSource {
    pub http: reqwest::Client,
    pub api_base: String,
    pub appid: String,
    pub appsecret: Secret,
    pub endpoint: TokenEndpoint,
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for WechatTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatTokenSource")
            .field("api_base", &self.api_base)
            .field("appid", &self.appid)
            .field("appsecret", &self.appsecret)
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Field order is the documented wire order.
#[derive(serde::Serialize)]
struct StableTokenBody<'a> {
    grant_type: &'static str,
    appid: &'a str,
    secret: &'a str,
    force_refresh: bool,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: i64,
}

pub(crate) const STABLE_TOKEN_ENDPOINT: &str = "cgi-bin/stable_token";
pub(crate) const TOKEN_ENDPOINT: &str = "cgi-bin/token";

impl WechatTokenSource {
    /// The source `config` describes, fetching with `appsecret`.
    pub fn new(config: &crate::WechatConfig, appsecret: Secret) -> Result<Self, Error> {
        let timeout = config.timeout();
        Ok(Self {
            http: http::build_client(timeout)?,
            api_base: crate::client::base(&config.api_base, "wechat.api_base")?,
            appid: config.appid.clone(),
            appsecret,
            endpoint: config.token_endpoint,
            timeout,
            retry: config.retry_policy(),
        })
    }

    async fn fetch_once(&self) -> Result<FetchedToken, Error> {
        let (endpoint, raw) = match self.endpoint {
            TokenEndpoint::StableToken => {
                let body = StableTokenBody {
                    grant_type: "client_credential",
                    appid: &self.appid,
                    secret: self.appsecret.expose(),
                    // Forcing invalidates the token every other holder uses; never by default.
                    force_refresh: false,
                };
                let url = format!("{}/{STABLE_TOKEN_ENDPOINT}", self.api_base);
                let req = self.http.post(url).json(&body);
                (
                    STABLE_TOKEN_ENDPOINT,
                    http::send(STABLE_TOKEN_ENDPOINT, req, self.timeout, http::JSON_LIMIT).await?,
                )
            }
            TokenEndpoint::Token => {
                let url = format!(
                    "{}/{TOKEN_ENDPOINT}?grant_type=client_credential&appid={}&secret={}",
                    self.api_base,
                    http::encode_query_value(&self.appid),
                    http::encode_query_value(self.appsecret.expose()),
                );
                let req = self.http.get(url);
                (
                    TOKEN_ENDPOINT,
                    http::send(TOKEN_ENDPOINT, req, self.timeout, http::JSON_LIMIT).await?,
                )
            }
        };
        parse_token_answer(endpoint, &raw)
    }
}

fn parse_token_answer(endpoint: &'static str, raw: &RawResponse) -> Result<FetchedToken, Error> {
    let answer: TokenAnswer = http::parse_wechat_json(endpoint, raw)?;
    if answer.access_token.is_empty() {
        return Err(Error::MalformedResponse {
            endpoint,
            status: raw.status,
            detail: "empty access_token".into(),
        });
    }
    let expires_in = u64::try_from(answer.expires_in)
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| Error::MalformedResponse {
            endpoint,
            status: raw.status,
            detail: format!("expires_in {}", answer.expires_in),
        })?;
    Ok(FetchedToken {
        token: Secret::new(answer.access_token),
        expires_in: Duration::from_secs(expires_in),
    })
}

impl TokenSource for WechatTokenSource {
    fn fetch(&self) -> BoxFuture<'_, Result<FetchedToken, Error>> {
        Box::pin(async move {
            let mut retry = CallRetry::for_token_fetch(self.retry);
            loop {
                match self.fetch_once().await {
                    Ok(t) => return Ok(t),
                    Err(e) => match retry.on_error(&e) {
                        RetryDecision::RetryAfter(pause) => {
                            tracing::debug!(error = %e, ?pause, "token fetch busy, retrying");
                            tokio::time::sleep(pause).await;
                        }
                        RetryDecision::RetryWithNewToken | RetryDecision::GiveUp => return Err(e),
                    },
                }
            }
        })
    }
}

type Waiters = HashMap<FetchId, Vec<oneshot::Sender<Result<Secret, Error>>>>;

struct ManagerState {
    core: TokenCore<Error>,
    waiters: Waiters,
    fetches_started: u64,
}

struct ManagerInner {
    state: Mutex<ManagerState>,
    source: Box<dyn TokenSource>,
}

impl ManagerInner {
    fn lock(&self) -> MutexGuard<'_, ManagerState> {
        // A panic while holding this lock cannot leave the core half-updated (every method is
        // a few assignments), so recovering the guard is sound.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The async shell: hands out access tokens, fetching at most one at a time.
#[derive(Clone)]
pub struct TokenManager {
    inner: Arc<ManagerInner>,
}

impl std::fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager").finish_non_exhaustive()
    }
}

fn now() -> Instant {
    // tokio's clock, so tests with a paused runtime can move it.
    tokio::time::Instant::now().into_std()
}

/// Reports a fetch as failed if its task ends without reporting (panic, runtime shutdown), so
/// waiters are never stranded and the next caller can fetch again.
struct FetchGuard {
    inner: Arc<ManagerInner>,
    id: FetchId,
    done: bool,
}

impl FetchGuard {
    fn finish(mut self, result: Result<FetchedToken, Error>) {
        self.done = true;
        complete_fetch(&self.inner, self.id, result);
    }
}

impl Drop for FetchGuard {
    fn drop(&mut self) {
        if !self.done {
            complete_fetch(
                &self.inner,
                self.id,
                Err(Error::Internal("token fetch abandoned".into())),
            );
        }
    }
}

fn complete_fetch(inner: &ManagerInner, id: FetchId, result: Result<FetchedToken, Error>) {
    let mut state = inner.lock();
    let at = now();
    let outcome = match result {
        Ok(fetched) => {
            state
                .core
                .on_fetched(id, at, fetched.token.clone(), fetched.expires_in);
            Ok(fetched.token)
        }
        Err(e) => {
            tracing::warn!(error = %e, "access token fetch failed");
            state.core.on_fetch_failed(id, at, e.clone());
            Err(e)
        }
    };
    for waiter in state.waiters.remove(&id).unwrap_or_default() {
        // A waiter that gave up (its future was dropped) is no concern of ours.
        let _ = waiter.send(outcome.clone());
    }
}

impl TokenManager {
    pub fn new(source: impl TokenSource, policy: TokenPolicy) -> Self {
        Self {
            inner: Arc::new(ManagerInner {
                state: Mutex::new(ManagerState {
                    core: TokenCore::new(policy),
                    waiters: HashMap::new(),
                    fetches_started: 0,
                }),
                source: Box::new(source),
            }),
        }
    }

    /// A valid access token, fetching one if needed. Must run inside a tokio runtime.
    pub async fn token(&self) -> Result<Secret, Error> {
        let receiver = {
            let mut state = self.inner.lock();
            match state.core.poll(now()) {
                TokenAction::Use { token, refresh } => {
                    if let Some(id) = refresh {
                        state.fetches_started += 1;
                        self.spawn_fetch(id);
                    }
                    return Ok(token);
                }
                TokenAction::Fail { error, retry_in } => {
                    return Err(Error::TokenCoolingDown {
                        retry_in,
                        last: Box::new(error),
                    });
                }
                TokenAction::Fetch(id) => {
                    state.fetches_started += 1;
                    let (tx, rx) = oneshot::channel();
                    state.waiters.entry(id).or_default().push(tx);
                    self.spawn_fetch(id);
                    rx
                }
                TokenAction::Wait(id) => {
                    let (tx, rx) = oneshot::channel();
                    state.waiters.entry(id).or_default().push(tx);
                    rx
                }
            }
        };
        receiver
            .await
            .map_err(|_| Error::Internal("token fetch ended without an answer".into()))?
    }

    /// The API refused `failed`: forget it unless a newer token already replaced it.
    pub fn invalidate(&self, failed: &Secret) -> bool {
        self.inner.lock().core.invalidate(failed)
    }

    /// How many fetches this manager has started (for tests and metrics).
    pub fn fetches_started(&self) -> u64 {
        self.inner.lock().fetches_started
    }

    fn spawn_fetch(&self, id: FetchId) {
        let inner = Arc::clone(&self.inner);
        // A task of its own: the fetch completes (and feeds every waiter) even if the caller
        // that started it is cancelled.
        tokio::spawn(async move {
            let guard = FetchGuard {
                inner: Arc::clone(&inner),
                id,
                done: false,
            };
            let result = inner.source.fetch().await;
            guard.finish(result);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core() -> (TokenCore<String>, Instant) {
        (TokenCore::new(TokenPolicy::default()), Instant::now())
    }

    fn secret(s: &str) -> Secret {
        Secret::new(s)
    }

    #[test]
    fn single_flight_then_use() {
        let (mut c, t0) = core();
        let TokenAction::Fetch(id) = c.poll(t0) else {
            panic!("first caller must fetch")
        };
        assert_eq!(c.poll(t0), TokenAction::Wait(id));
        assert_eq!(c.poll(t0 + Duration::from_millis(5)), TokenAction::Wait(id));
        assert!(c.on_fetched(id, t0, secret("A"), Duration::from_secs(7200)));
        assert_eq!(
            c.poll(t0 + Duration::from_secs(1)),
            TokenAction::Use {
                token: secret("A"),
                refresh: None
            }
        );
    }

    #[test]
    fn refreshes_ahead_of_expiry_while_old_token_serves() {
        let (mut c, t0) = core();
        let TokenAction::Fetch(id) = c.poll(t0) else {
            panic!()
        };
        c.on_fetched(id, t0, secret("A"), Duration::from_secs(7200));
        // 6899 s: not yet in the 300 s window.
        assert_eq!(
            c.poll(t0 + Duration::from_secs(6899)),
            TokenAction::Use {
                token: secret("A"),
                refresh: None
            }
        );
        let TokenAction::Use {
            token,
            refresh: Some(r),
        } = c.poll(t0 + Duration::from_secs(6900))
        else {
            panic!("refresh window must start a background fetch")
        };
        assert_eq!(token, secret("A"));
        // Only one refresh at a time; others keep using A.
        assert_eq!(
            c.poll(t0 + Duration::from_secs(6901)),
            TokenAction::Use {
                token: secret("A"),
                refresh: None
            }
        );
        c.on_fetched(
            r,
            t0 + Duration::from_secs(6902),
            secret("B"),
            Duration::from_secs(7200),
        );
        assert_eq!(
            c.current(t0 + Duration::from_secs(6903)),
            Some(&secret("B"))
        );
    }

    #[test]
    fn expired_token_is_not_used() {
        let (mut c, t0) = core();
        let TokenAction::Fetch(id) = c.poll(t0) else {
            panic!()
        };
        c.on_fetched(id, t0, secret("A"), Duration::from_secs(100));
        // Short-lived: refresh window is half the lifetime, not 300 s past its start.
        assert!(matches!(
            c.poll(t0 + Duration::from_secs(10)),
            TokenAction::Use { refresh: None, .. }
        ));
        assert!(matches!(
            c.poll(t0 + Duration::from_secs(50)),
            TokenAction::Use {
                refresh: Some(_),
                ..
            }
        ));
        let mut c2: TokenCore<String> = TokenCore::new(TokenPolicy::default());
        let TokenAction::Fetch(id) = c2.poll(t0) else {
            panic!()
        };
        c2.on_fetched(id, t0, secret("A"), Duration::from_secs(100));
        assert!(matches!(
            c2.poll(t0 + Duration::from_secs(100)),
            TokenAction::Fetch(_)
        ));
    }

    #[test]
    fn invalidate_only_the_token_that_failed() {
        let (mut c, t0) = core();
        let TokenAction::Fetch(id) = c.poll(t0) else {
            panic!()
        };
        c.on_fetched(id, t0, secret("B"), Duration::from_secs(7200));
        // A caller still holding the older A reports it: B must survive.
        assert!(!c.invalidate(&secret("A")));
        assert_eq!(c.current(t0), Some(&secret("B")));
        assert!(c.invalidate(&secret("B")));
        assert!(matches!(c.poll(t0), TokenAction::Fetch(_)));
    }

    #[test]
    fn failed_fetch_cools_down_with_growing_bounded_pauses() {
        let (mut c, t0) = core();
        let TokenAction::Fetch(id) = c.poll(t0) else {
            panic!()
        };
        assert!(c.on_fetch_failed(id, t0, "down".to_string()));
        assert_eq!(
            c.poll(t0 + Duration::from_millis(100)),
            TokenAction::Fail {
                error: "down".to_string(),
                retry_in: Duration::from_millis(400)
            }
        );
        let t1 = t0 + Duration::from_millis(500);
        let TokenAction::Fetch(id) = c.poll(t1) else {
            panic!("cooldown over")
        };
        c.on_fetch_failed(id, t1, "down".to_string());
        assert!(matches!(
            c.poll(t1 + Duration::from_millis(999)),
            TokenAction::Fail { .. }
        ));
        let mut t = t1 + Duration::from_secs(1);
        for _ in 0..20 {
            let TokenAction::Fetch(id) = c.poll(t) else {
                panic!()
            };
            c.on_fetch_failed(id, t, "down".to_string());
            t += Duration::from_secs(30);
        }
        // Capped at 30 s however many failures.
        let TokenAction::Fail { retry_in, .. } = c.poll(t - Duration::from_secs(30)) else {
            panic!()
        };
        assert_eq!(retry_in, Duration::from_secs(30));
    }

    #[test]
    fn stale_fetch_answers_are_ignored() {
        let (mut c, t0) = core();
        let TokenAction::Fetch(id) = c.poll(t0) else {
            panic!()
        };
        assert!(!c.on_fetched(
            FetchId(id.0 + 7),
            t0,
            secret("X"),
            Duration::from_secs(7200)
        ));
        assert!(!c.on_fetch_failed(FetchId(id.0 + 7), t0, "x".to_string()));
        assert_eq!(c.in_flight(), Some(id));
    }

    fn api(code: i64) -> Error {
        Error::Api {
            endpoint: "e",
            code,
            message: String::new(),
        }
    }

    #[test]
    fn call_retry_is_bounded() {
        let mut r = CallRetry::for_api_call(RetryPolicy::default());
        assert_eq!(r.on_error(&api(40001)), RetryDecision::RetryWithNewToken);
        assert_eq!(
            r.on_error(&api(42001)),
            RetryDecision::GiveUp,
            "token retry happens once per call"
        );
        assert_eq!(
            r.on_error(&api(-1)),
            RetryDecision::RetryAfter(Duration::from_millis(200))
        );
        assert_eq!(
            r.on_error(&api(-1)),
            RetryDecision::RetryAfter(Duration::from_millis(400))
        );
        assert_eq!(
            r.on_error(&api(-1)),
            RetryDecision::RetryAfter(Duration::from_millis(800))
        );
        assert_eq!(r.on_error(&api(-1)), RetryDecision::GiveUp);
        let mut r = CallRetry::for_api_call(RetryPolicy::default());
        for code in [45009, 45011, 40013, 48001] {
            let e = Error::from_errcode("e", code, "m");
            assert_eq!(r.on_error(&e), RetryDecision::GiveUp, "{code}");
        }
        let mut fetch = CallRetry::for_token_fetch(RetryPolicy::default());
        assert_eq!(fetch.on_error(&api(40001)), RetryDecision::GiveUp);
    }
}
