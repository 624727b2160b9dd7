//! One access token for every hub instance of a chain.
//!
//! WeChat keeps one valid access token per appid, and a forced refresh by one caller
//! invalidates the token every other caller holds. So when several hub instances serve one
//! official account, exactly one of them may talk to the token endpoint at a time, and the
//! others must use what it fetched. [`LeasedTokenSource`] does that through the database all
//! instances already share:
//!
//! - the current token is a row (`access_tokens`), sealed ([`TokenSealer`]: never plaintext
//!   in the database): an instance whose token manager needs a token first takes the row's
//!   token if it is fresh and not the one it already had;
//! - otherwise it takes the row's refresh *lease* (an atomic conditional upsert: free, expired
//!   or already its own), asks WeChat, publishes the token and frees the lease in one update;
//! - an instance that finds the lease taken polls the row until the holder publishes, or
//!   the lease runs out (a holder that died mid-fetch), then takes it over.
//!
//! The token manager in front of this source still gives single-flight within an instance.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mirrorsight_wechat::token::{BoxFuture, FetchedToken, TokenSource};
use mirrorsight_wechat::{Error, Secret};

use crate::store::{SharedToken, Store, StoreError};
use crate::token_seal::{SealError, TokenSealer};

/// Timing of the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeasePolicy {
    /// How long a lease lasts: longer than one fetch (with its retries) can take, so a live
    /// holder never loses it, short enough that a dead holder blocks the chain only briefly.
    pub lease: Duration,
    /// How often a waiting instance looks at the row again.
    pub poll: Duration,
    /// How long a caller waits for another instance's fetch before failing.
    pub wait_max: Duration,
    /// A shared token with less left than this is refreshed rather than used.
    pub min_remaining: Duration,
}

impl Default for LeasePolicy {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(100),
            wait_max: Duration::from_secs(35),
            min_remaining: Duration::from_secs(300),
        }
    }
}

/// What this instance's token source did, for `/metrics`.
#[derive(Debug, Default)]
pub struct LeaseCounters {
    /// Tokens this instance fetched from WeChat (holding the lease).
    pub fetched: AtomicU64,
    /// Tokens taken from the database, fetched by another instance (or before a restart).
    pub shared: AtomicU64,
    /// Times this instance found the lease held and waited for the holder.
    pub waits: AtomicU64,
    /// Fetches whose lease ran out before they finished (their token was dropped).
    pub lost: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A [`TokenSource`] that fetches through `upstream` only while holding the database lease.
pub struct LeasedTokenSource {
    store: Arc<dyn Store>,
    upstream: Box<dyn TokenSource>,
    name: String,
    holder: String,
    policy: LeasePolicy,
    sealer: TokenSealer,
    counters: Arc<LeaseCounters>,
    /// The token this instance was last given: when its manager asks again, that one is
    /// spent (expiring or refused by WeChat), so only a different one will do.
    last: Mutex<Option<String>>,
}

impl std::fmt::Debug for LeasedTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeasedTokenSource")
            .field("name", &self.name)
            .field("holder", &self.holder)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn shared(e: StoreError) -> Error {
    Error::SharedToken(e.to_string())
}

/// A name for this instance in the lease row: host, process and a random suffix, so two
/// instances on one host (or a restarted one) never mistake each other's lease for their own.
pub fn instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    let mut nonce = [0u8; 4];
    if getrandom::fill(&mut nonce).is_err() {
        nonce = (unix_now() as u32).to_le_bytes();
    }
    format!("{host}:{}:{}", std::process::id(), hex::encode(nonce))
}

impl LeasedTokenSource {
    /// `name` identifies the token (one per appid); `holder` this instance; `sealer` holds
    /// the key every instance seals and opens the stored token with.
    pub fn new(
        store: Arc<dyn Store>,
        upstream: impl TokenSource,
        name: impl Into<String>,
        holder: impl Into<String>,
        policy: LeasePolicy,
        sealer: TokenSealer,
    ) -> Self {
        Self {
            store,
            upstream: Box::new(upstream),
            name: name.into(),
            holder: holder.into(),
            policy,
            sealer,
            counters: Arc::default(),
            last: Mutex::new(None),
        }
    }

    /// Shared with `/metrics`.
    pub fn counters(&self) -> Arc<LeaseCounters> {
        Arc::clone(&self.counters)
    }

    fn last(&self) -> Option<String> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn remember(&self, token: &str) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.to_string());
    }

    /// The shared token if this instance may use it now. A row sealed under another key is
    /// an error, not a reason to refresh: refreshing would retire the token every other
    /// instance is using, again at each of their turns.
    fn usable(&self, row: Option<SharedToken>, now: i64) -> Result<Option<FetchedToken>, Error> {
        let Some(row) = row else {
            return Ok(None);
        };
        let remaining = row.expires_at - now;
        if remaining <= self.policy.min_remaining.as_secs() as i64 {
            return Ok(None);
        }
        let token = match self.sealer.open(&self.name, &row.token) {
            Ok(token) => token,
            // Stored plaintext by a hub before sealing: refreshed (and so sealed) now.
            Err(SealError::NotSealed { .. }) => return Ok(None),
            Err(e) => return Err(Error::SharedToken(e.to_string())),
        };
        if self.last().as_deref() == Some(token.as_str()) {
            return Ok(None);
        }
        self.remember(&token);
        bump(&self.counters.shared);
        Ok(Some(FetchedToken {
            token: Secret::new(token),
            expires_in: Duration::from_secs(remaining.max(1) as u64),
        }))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        job: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Error> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || job(store.as_ref()))
            .await
            .map_err(|e| Error::Internal(format!("token lease task: {e}")))?
            .map_err(shared)
    }

    async fn read(&self) -> Result<Option<SharedToken>, Error> {
        let name = self.name.clone();
        self.blocking(move |s| s.shared_token(&name)).await
    }

    async fn fetch_leased(&self) -> Result<FetchedToken, Error> {
        let deadline = Instant::now() + self.policy.wait_max;
        let mut waited = false;
        loop {
            let now = unix_now();
            if let Some(token) = self.usable(self.read().await?, now)? {
                if waited {
                    tracing::debug!(name = %self.name, "using the token another instance fetched");
                }
                return Ok(token);
            }
            let (name, holder) = (self.name.clone(), self.holder.clone());
            let until = now + self.policy.lease.as_secs().max(1) as i64;
            let leased = self
                .blocking(move |s| s.acquire_token_lease(&name, &holder, now, until))
                .await?;
            if leased && let Some(token) = self.refresh_holding_lease().await? {
                return Ok(token);
            }
            if Instant::now() >= deadline {
                return Err(Error::SharedToken(format!(
                    "another hub instance has held the refresh lease of {:?} for over {} s; check the other instances' logs",
                    self.name,
                    self.policy.wait_max.as_secs()
                )));
            }
            if !waited {
                bump(&self.counters.waits);
            }
            waited = true;
            tokio::time::sleep(self.policy.poll).await;
        }
    }

    /// `None` when the lease ran out during the fetch: the caller then waits for what the
    /// instance that took over publishes.
    async fn refresh_holding_lease(&self) -> Result<Option<FetchedToken>, Error> {
        // Another instance may have published between our read and our lease.
        match self.usable(self.read().await?, unix_now()) {
            Ok(None) => {}
            done => {
                self.release().await;
                return done;
            }
        }
        let fetched = match self.upstream.fetch().await {
            Ok(fetched) => fetched,
            Err(e) => {
                self.release().await;
                return Err(e);
            }
        };
        let now = unix_now();
        let sealed = match self.sealer.seal(&self.name, fetched.token.expose()) {
            Ok(sealed) => sealed,
            Err(e) => {
                self.release().await;
                return Err(Error::SharedToken(e.to_string()));
            }
        };
        let row = SharedToken {
            token: sealed,
            expires_at: now + fetched.expires_in.as_secs() as i64,
            fetched_at: now,
            holder: self.holder.clone(),
        };
        let (name, holder) = (self.name.clone(), self.holder.clone());
        let published = self
            .blocking(move |s| s.publish_token(&name, &holder, &row))
            .await?;
        if !published {
            // Our lease ran out mid-fetch and another instance took over. Its token is the
            // one every instance will use, and ours may already be superseded by it
            // (`cgi-bin/token` retires the previous token), so drop ours and wait for it.
            tracing::warn!(name = %self.name, "refresh lease lost during the fetch; waiting for the new holder's token");
            bump(&self.counters.lost);
            return Ok(None);
        }
        bump(&self.counters.fetched);
        tracing::info!(name = %self.name, expires_in_s = fetched.expires_in.as_secs(), "fetched and shared a new access token");
        self.remember(fetched.token.expose());
        Ok(Some(fetched))
    }

    async fn release(&self) {
        let (name, holder) = (self.name.clone(), self.holder.clone());
        if let Err(e) = self
            .blocking(move |s| s.release_token_lease(&name, &holder))
            .await
        {
            // The lease runs out by itself; nothing else to do.
            tracing::warn!(error = %e, "could not free the token refresh lease");
        }
    }
}

impl TokenSource for LeasedTokenSource {
    fn fetch(&self) -> BoxFuture<'_, Result<FetchedToken, Error>> {
        Box::pin(self.fetch_leased())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    /// Hands out `token-1`, `token-2`, … and counts calls; optionally slow.
    struct Counting {
        calls: Arc<AtomicU64>,
        delay: Duration,
    }

    impl TokenSource for Counting {
        fn fetch(&self) -> BoxFuture<'_, Result<FetchedToken, Error>> {
            Box::pin(async move {
                tokio::time::sleep(self.delay).await;
                let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
                Ok(FetchedToken {
                    token: Secret::new(format!("token-{n}")),
                    expires_in: Duration::from_secs(7200),
                })
            })
        }
    }

    fn source(
        store: &Arc<dyn Store>,
        calls: &Arc<AtomicU64>,
        holder: &str,
        delay: Duration,
    ) -> LeasedTokenSource {
        LeasedTokenSource::new(
            Arc::clone(store),
            Counting {
                calls: Arc::clone(calls),
                delay,
            },
            "wechat:wx-test",
            holder,
            LeasePolicy {
                lease: Duration::from_secs(1),
                poll: Duration::from_millis(10),
                wait_max: Duration::from_secs(5),
                min_remaining: Duration::from_secs(300),
            },
            sealer(),
        )
    }

    fn sealer() -> TokenSealer {
        TokenSealer::from_key(&[42; 32])
    }

    /// The token in the row, opened.
    fn stored_token(store: &Arc<dyn Store>) -> String {
        let row = store.shared_token("wechat:wx-test").unwrap().unwrap();
        sealer().open("wechat:wx-test", &row.token).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_instances_fetch_once_and_share_it() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        let calls = Arc::new(AtomicU64::new(0));
        let instances: Vec<_> = (0..4)
            .map(|i| {
                Arc::new(source(
                    &store,
                    &calls,
                    &format!("hub-{i}"),
                    Duration::from_millis(100),
                ))
            })
            .collect();
        let tasks: Vec<_> = instances
            .iter()
            .map(|s| {
                let s = Arc::clone(s);
                tokio::spawn(async move { s.fetch().await.map(|t| t.token.expose().to_string()) })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), "token-1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let fetched: u64 = instances
            .iter()
            .map(|s| s.counters.fetched.load(Ordering::Relaxed))
            .sum();
        let shared: u64 = instances
            .iter()
            .map(|s| s.counters.shared.load(Ordering::Relaxed))
            .sum();
        assert_eq!(
            (fetched, shared),
            (1, 3),
            "one fetched, three took it from the database"
        );
        let row = store.shared_token("wechat:wx-test").unwrap().unwrap();
        assert_eq!(stored_token(&store), "token-1");
        assert!(row.holder.starts_with("hub-"));

        // One instance finds token-1 refused (its manager asks again): it refreshes, and an
        // instance asking after that gets the new one without a fetch of its own.
        assert_eq!(
            instances[2].fetch().await.unwrap().token.expose(),
            "token-2"
        );
        assert_eq!(
            instances[0].fetch().await.unwrap().token.expose(),
            "token-2"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_holders_lease_is_taken_over_when_it_runs_out() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        let now = unix_now();
        assert!(
            store
                .acquire_token_lease("wechat:wx-test", "crashed", now, now + 1)
                .unwrap()
        );
        let calls = Arc::new(AtomicU64::new(0));
        let token = source(&store, &calls, "hub-live", Duration::ZERO)
            .fetch()
            .await
            .unwrap();
        assert_eq!(token.token.expose(), "token-1");
        assert!(
            unix_now() > now,
            "took over only once the dead holder's lease ran out"
        );
        assert_eq!(
            store
                .shared_token("wechat:wx-test")
                .unwrap()
                .unwrap()
                .holder,
            "hub-live"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_holder_that_outlives_its_lease_takes_the_new_holders_token() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        let calls = Arc::new(AtomicU64::new(0));
        // `slow` takes the lease first and is still fetching when the 1 s lease runs out.
        let slow = Arc::new(source(
            &store,
            &calls,
            "hub-slow",
            Duration::from_millis(2500),
        ));
        let fast = source(&store, &calls, "hub-fast", Duration::ZERO);
        let slow_task = {
            let slow = Arc::clone(&slow);
            tokio::spawn(async move { slow.fetch().await.map(|t| t.token.expose().to_string()) })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let fast_token = fast.fetch().await.unwrap();
        assert_eq!(
            fast_token.token.expose(),
            "token-1",
            "took over the expired lease"
        );
        let slow_token = slow_task.await.unwrap().unwrap();
        assert_eq!(
            slow_token, "token-1",
            "dropped its own late token for the shared one"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(slow.counters.lost.load(Ordering::Relaxed), 1);
        assert_eq!(stored_token(&store), "token-1");
    }

    #[tokio::test]
    async fn a_lease_that_never_frees_is_a_clear_error() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        let now = unix_now();
        store
            .acquire_token_lease("wechat:wx-test", "stuck", now, now + 3600)
            .unwrap();
        let calls = Arc::new(AtomicU64::new(0));
        let mut source = source(&store, &calls, "hub-live", Duration::ZERO);
        source.policy.wait_max = Duration::from_millis(100);
        let err = source.fetch().await.unwrap_err().to_string();
        assert!(
            err.contains("another hub instance has held the refresh lease"),
            "{err}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_failed_fetch_frees_the_lease() {
        struct Failing;
        impl TokenSource for Failing {
            fn fetch(&self) -> BoxFuture<'_, Result<FetchedToken, Error>> {
                Box::pin(async { Err(Error::Internal("upstream down".into())) })
            }
        }
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        let source = LeasedTokenSource::new(
            Arc::clone(&store),
            Failing,
            "wechat:wx-test",
            "hub-a",
            LeasePolicy::default(),
            sealer(),
        );
        assert!(source.fetch().await.is_err());
        let now = unix_now();
        assert!(
            store
                .acquire_token_lease("wechat:wx-test", "hub-b", now, now + 30)
                .unwrap(),
            "lease free again"
        );
    }

    /// The row holds no trace of the token; an instance with another key fails in one line
    /// and does not refresh over the others.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_stored_token_is_sealed_and_a_wrong_key_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.sqlite3");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
        let calls = Arc::new(AtomicU64::new(0));
        let token = source(&store, &calls, "hub-a", Duration::ZERO)
            .fetch()
            .await
            .unwrap();
        assert_eq!(token.token.expose(), "token-1");

        let raw: Vec<u8> = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("SELECT CAST(token AS BLOB) FROM access_tokens", [], |r| {
                r.get(0)
            })
            .unwrap();
        let contains = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
        assert!(!contains(b"token-1"), "plaintext token in the row");
        for encoded in [hex::encode("token-1"), {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode("token-1")
        }] {
            assert!(!contains(encoded.as_bytes()), "{encoded} in the row");
        }

        let mut other = source(&store, &calls, "hub-b", Duration::ZERO);
        other.sealer = TokenSealer::from_key(&[7; 32]);
        let err = other.fetch().await.unwrap_err().to_string();
        assert!(err.contains("token key"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "no refresh over the others"
        );
        assert_eq!(stored_token(&store), "token-1");
    }
}
