//! `mirrorsight-hub`: the store's official-account server.
//!
//! - The relay the mirrors speak (`docs/openapi.yaml`, types in
//!   `mirrorsight_contract::backend`): scene codes minted through WeChat (the hub is the only
//!   holder of the appsecret), idempotent photo upload, photo delete; per-device tokens.
//! - The WeChat callback `/wechat`: a scan of a session's code binds the scanner's openid to
//!   the session and answers with a `news` message linking to the gallery.
//! - The gallery `/s/{scene}?k=<key>` and scan statistics (`/v1/stats`, `/metrics`).
//! - The shopper's own pages (`/me`, WeChat web sign-in, delete and "forget me"):
//!   [`http::shopper`]; photos taken after a scan follow it as a customer-service message
//!   ([`push`]).
//!
//! State lives in a [`store::Store`] (SQLite, or PostgreSQL for a chain) and a
//! [`store::BlobStore`] (a directory, or an S3-compatible bucket); instances keep nothing
//! else, so a chain runs several behind a load balancer ([`lease`] keeps the WeChat access
//! token single-holder across them).

pub mod config;
pub mod http;
pub mod lease;
pub mod push;
pub mod store;
pub mod token_seal;
pub mod wechat;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lease::{LeasePolicy, LeasedTokenSource};
use mirrorsight_wechat::WechatClient;
use mirrorsight_wechat::token::WechatTokenSource;
use thiserror::Error;
use token_seal::TokenSealer;
use tokio::net::TcpListener;

pub use config::{ConfigError, HubConfig, HubSecrets};
pub use http::AppState;
use mirrorsight_wechat::secret::{SecretError, SecretSpec, load_secret, require_secret};
use store::{
    BlobStore, LocalBlobStore, PostgresSettings, PostgresStore, S3BlobStore, S3Credentials,
    S3Settings, SqliteStore, Store,
};
use wechat::MessageCrypt;

#[derive(Debug, Error)]
pub enum HubError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("blob store: {0}")]
    Blob(#[from] store::BlobError),
    #[error("WeChat client: {0}")]
    Wechat(#[from] mirrorsight_wechat::Error),
    #[error("secrets.encoding_aes_key: {0}")]
    AesKey(wechat::CryptError),
    #[error("secrets.token_key: {0}")]
    TokenKey(token_seal::SealError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How long a stopping hub waits for the customer-service message in hand.
const PUSH_STOP_WAIT: Duration = Duration::from_secs(30);

/// A lease outlasts one token fetch with all its retries, so a live holder keeps it.
fn lease_policy(config: &HubConfig) -> LeasePolicy {
    let per_try = config.wechat.timeout() + Duration::from_millis(config.wechat.busy_backoff_ms);
    let lease = (per_try * (config.wechat.busy_retries + 2)).max(Duration::from_secs(30));
    LeasePolicy {
        lease,
        wait_max: lease + Duration::from_secs(5),
        min_remaining: Duration::from_secs(config.wechat.refresh_ahead_s),
        ..LeasePolicy::default()
    }
}

/// Scrapers connect to `metrics.listen` one or two at a time; a few more cover a stuck one.
const METRICS_MAX_CONNECTIONS: usize = 16;

/// A configured hub, ready to serve.
#[derive(Clone)]
pub struct Hub {
    state: Arc<AppState>,
}

/// The metadata store and the blob store of one hub instance.
pub type Stores = (Arc<dyn Store>, Arc<dyn BlobStore>);

/// Opens the metadata store and the blob store `config` names: PostgreSQL if `[postgres]` is
/// set, else the SQLite file `database`; the `[s3]` bucket if set, else `blob_dir`. Their
/// credentials come from files, systemd credentials or `env`. Blocking: call it before
/// starting the async runtime (or from a blocking thread).
pub fn open_stores(
    config: &HubConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Stores, HubError> {
    let store: Arc<dyn Store> = match &config.postgres {
        Some(pg) => {
            let password = load_secret(
                &SecretSpec {
                    what: "database password",
                    file_key: "postgres.password_file",
                    file: pg.password_file.as_deref(),
                    credential: &pg.password_credential,
                    env: config::DATABASE_PASSWORD_ENV,
                },
                env,
            )?;
            Arc::new(PostgresStore::open(&PostgresSettings {
                url: pg.url.clone(),
                password: password.map(|(secret, _)| secret.expose().to_string()),
                pool_size: pg.pool_size,
                connect_timeout: Duration::from_secs(pg.connect_timeout_s),
                ca_file: pg.ca_file.clone(),
            })?)
        }
        None => Arc::new(SqliteStore::open(&config.database)?),
    };
    let blobs: Arc<dyn BlobStore> = match &config.s3 {
        Some(s3) => {
            let credentials = match &s3.access_key_id {
                Some(access_key_id) => {
                    let (secret_access_key, _) = require_secret(
                        &SecretSpec {
                            what: "S3 secret access key",
                            file_key: "s3.secret_key_file",
                            file: s3.secret_key_file.as_deref(),
                            credential: &s3.secret_key_credential,
                            env: config::S3_SECRET_KEY_ENV,
                        },
                        env,
                    )?;
                    // Temporary credentials come with a session token; long-lived ones do not.
                    let session_token = load_secret(
                        &SecretSpec {
                            what: "S3 session token",
                            file_key: "s3.session_token_credential",
                            file: None,
                            credential: &s3.session_token_credential,
                            env: config::S3_SESSION_TOKEN_ENV,
                        },
                        env,
                    )?
                    .map(|(token, _)| token);
                    S3Credentials::KeyPair {
                        access_key_id: access_key_id.clone(),
                        secret_access_key,
                        session_token,
                    }
                }
                None => S3Credentials::chain(env),
            };
            let bucket = S3BlobStore::new(S3Settings {
                endpoint: s3.endpoint.clone(),
                bucket: s3.bucket.clone(),
                region: s3.region.clone(),
                prefix: s3.prefix.clone(),
                path_style: s3.path_style,
                credentials,
                timeout: Duration::from_secs(s3.timeout_s),
            })?;
            // A wrong endpoint, bucket or key fails here, in one line, not on the first photo.
            bucket.check()?;
            Arc::new(bucket)
        }
        None => Arc::new(LocalBlobStore::open(&config.blob_dir)?),
    };
    Ok((store, blobs))
}

impl Hub {
    /// Opens the stores named in `config` (see [`open_stores`]) with credentials from the
    /// process environment.
    pub fn open(config: HubConfig, secrets: HubSecrets) -> Result<Self, HubError> {
        config.validate()?;
        let (store, blobs) = open_stores(&config, &|k| std::env::var(k).ok())?;
        Self::with_stores(config, secrets, store, blobs)
    }

    /// A hub on the given stores (tests, other backends).
    pub fn with_stores(
        config: HubConfig,
        secrets: HubSecrets,
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
    ) -> Result<Self, HubError> {
        config.validate()?;
        config.check_secrets(&secrets)?;
        let base_url = config.base_url()?;
        // Every instance gets its tokens through the shared database, so a chain running
        // several never refreshes over each other (and a restart reuses the live token).
        let upstream = WechatTokenSource::new(&config.wechat, secrets.appsecret.clone())?;
        // The token is sealed in the database, under a key every instance holds alike.
        let sealer = match &secrets.token_key {
            Some(key) => TokenSealer::from_credential(key.expose()).map_err(HubError::TokenKey)?,
            None => TokenSealer::derived_from_appsecret(secrets.appsecret.expose()),
        };
        let tokens = LeasedTokenSource::new(
            Arc::clone(&store),
            upstream,
            format!("wechat:{}", config.wechat.appid),
            lease::instance_id(),
            lease_policy(&config),
            sealer,
        );
        let token_lease = tokens.counters();
        let wechat =
            WechatClient::with_token_source(&config.wechat, tokens, config.wechat.token_policy())?;
        let sns = mirrorsight_wechat::SnsClient::new(&config.wechat, secrets.appsecret.clone())?;
        let cookie_key =
            http::shopper::CookieKey::derived_from_appsecret(secrets.appsecret.expose());
        let mp = match (config.mini_program.enabled(), &secrets.mp_appsecret) {
            (true, Some(secret)) => Some(mirrorsight_wechat::SnsClient::for_app(
                &config.wechat,
                &config.mini_program.appid,
                secret.clone(),
            )?),
            (true, None) => {
                return Err(HubError::Config(ConfigError::Invalid {
                    key: "mini_program.appid".into(),
                    message: "set, but the mini-program appsecret was not loaded".into(),
                }));
            }
            (false, _) => None,
        };
        let crypt = secrets
            .encoding_aes_key
            .as_ref()
            .map(|key| MessageCrypt::new(key.expose(), &config.wechat.appid))
            .transpose()
            .map_err(HubError::AesKey)?;
        Ok(Self {
            state: Arc::new(AppState {
                store,
                blobs,
                wechat,
                base_url,
                callback_token: secrets.callback_token,
                crypt,
                admin_token: secrets.admin_token,
                counters: http::Counters::default(),
                token_lease,
                mint_limiter: http::limit::MintLimiter::new(http::limit::Rate {
                    burst: config.relay.mint_burst,
                    per_hour: config.relay.mints_per_hour,
                }),
                sns,
                cookie_key,
                mp,
                config,
            }),
        })
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    pub fn router(&self) -> axum::Router {
        http::router(Arc::clone(&self.state))
    }

    /// Serves on `listener` until `shutdown` completes, sweeping expired photos meanwhile;
    /// `/metrics` only with the admin token.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_with_metrics(listener, None, shutdown).await
    }

    /// [`Hub::serve`], plus `/metrics` without a token on `metrics` (the `metrics.listen`
    /// address). Connections are accepted as `[http]` says ([`http::server`]); on shutdown the
    /// hub stops accepting and requests in flight get `http.shutdown_grace_s` to finish.
    pub async fn serve_with_metrics(
        self,
        listener: TcpListener,
        metrics: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let http = &self.state.config.http;
        let limits = http::server::ServerLimits {
            header_read_timeout: http.header_read_timeout(),
            max_connections: http.max_connections,
            shutdown_grace: http.shutdown_grace(),
        };
        let mut endpoints = vec![http::server::Endpoint {
            listener,
            router: self.router(),
            max_connections: http.max_connections,
        }];
        if let Some(listener) = metrics {
            endpoints.push(http::server::Endpoint {
                listener,
                router: http::metrics_router(Arc::clone(&self.state)),
                max_connections: METRICS_MAX_CONNECTIONS,
            });
        }
        let sweeper = self.spawn_sweeper();
        let (stop_pushing, stop) = tokio::sync::watch::channel(false);
        let pusher = push::PushWorker::new(Arc::clone(&self.state)).spawn(stop);
        let result = http::server::serve(endpoints, limits, shutdown).await;
        sweeper.abort();
        // The message in hand is finished and recorded (a WeChat call is bounded by
        // wechat.timeout_s and its retries); the rest wait in the outbox for the next start.
        let _ = stop_pushing.send(true);
        let mut pusher = pusher;
        if tokio::time::timeout(PUSH_STOP_WAIT, &mut pusher)
            .await
            .is_err()
        {
            tracing::warn!(
                "the push worker did not stop in time; its claimed rows wait for their lease to lapse"
            );
            pusher.abort();
        }
        result
    }

    /// Runs [`sweep_retention`] every `photos.sweep_interval_s`, starting now.
    pub fn spawn_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let state = Arc::clone(&self.state);
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_secs(state.config.photos.sweep_interval_s));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let s = Arc::clone(&state);
                let result = tokio::task::spawn_blocking(move || {
                    let now = http::unix_now();
                    let expired = sweep_retention(
                        s.store.as_ref(),
                        s.blobs.as_ref(),
                        Retention::of(&s.config.photos),
                        now,
                    )?;
                    let orphans =
                        sweep_orphans(s.store.as_ref(), s.blobs.as_ref(), now, ORPHAN_GRACE_S)?;
                    Ok::<_, HubError>((expired, orphans))
                })
                .await;
                match result {
                    Ok(Ok((expired, orphans))) => {
                        if expired.expired > 0 {
                            tracing::info!(expired = expired.expired, "expired photos removed");
                        }
                        let pruned = expired.pruned;
                        if pruned != store::PruneReport::default() {
                            tracing::info!(
                                scenes = pruned.scenes,
                                bindings = pruned.bindings,
                                wechat_events = pruned.wechat_events,
                                activity = pruned.activity,
                                pushes = pruned.pushes,
                                followers = pruned.followers,
                                "rows past retention pruned"
                            );
                        }
                        if orphans.deleted > 0 {
                            tracing::warn!(
                                deleted = orphans.deleted,
                                "stored bytes without a photo (left by a crash) removed"
                            );
                        }
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "retention sweep failed"),
                    Err(e) => tracing::error!(error = %e, "retention sweep task died"),
                }
            }
        })
    }
}

/// What one retention sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub expired: usize,
    pub blobs_missing: usize,
    /// What [`sweep_retention`] pruned after expiring.
    pub pruned: store::PruneReport,
}

/// How long photos are kept (`[photos]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Photos no shopper is bound to (`photos.retention_days`).
    pub days: u32,
    /// Photos of a session bound to an openid (`photos.keep_bound_days`), at least `days`.
    pub bound_days: u32,
}

impl Retention {
    pub fn of(photos: &config::PhotosConfig) -> Self {
        Self {
            days: photos.retention_days,
            bound_days: photos.keep_bound_days.max(photos.retention_days),
        }
    }

    /// `(cutoff, bound_cutoff)` at `now`, unix seconds.
    fn cutoffs(self, now: i64) -> (i64, i64) {
        (
            now - i64::from(self.days) * 86_400,
            now - i64::from(self.bound_days) * 86_400,
        )
    }
}

/// Deletes the bytes of photos older than `retention_days` before `now`, bound or not, and
/// marks them expired: [`sweep_retention`] with one period for all.
pub fn sweep_expired(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    retention_days: u32,
    now: i64,
) -> Result<SweepReport, HubError> {
    let retention = Retention {
        days: retention_days,
        bound_days: retention_days,
    };
    expire_photos(store, blobs, retention, now)
}

/// One retention sweep: deletes the bytes of photos past their retention (`days`, or
/// `bound_days` for a session bound to a shopper) and marks them expired (the rows stay a
/// while, so the gallery can say the photos expired rather than that they never existed),
/// then prunes what retention made useless ([`Store::prune`]): scenes with nothing left,
/// their bindings, old WeChat pushes, activity and outbox rows.
pub fn sweep_retention(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    retention: Retention,
    now: i64,
) -> Result<SweepReport, HubError> {
    let mut report = expire_photos(store, blobs, retention, now)?;
    let (cutoff, bound_cutoff) = retention.cutoffs(now);
    report.pruned = store.prune(cutoff, bound_cutoff)?;
    Ok(report)
}

fn expire_photos(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    retention: Retention,
    now: i64,
) -> Result<SweepReport, HubError> {
    let (cutoff, bound_cutoff) = retention.cutoffs(now);
    let mut report = SweepReport::default();
    loop {
        let batch = store.photos_to_expire(cutoff, bound_cutoff, 500)?;
        if batch.is_empty() {
            return Ok(report);
        }
        for photo in batch {
            // Bytes first: if we crash here the row is still live and the next sweep retries.
            for key in photo.blob_keys() {
                if !blobs.delete(key)? {
                    report.blobs_missing += 1;
                }
            }
            store.mark_expired(&photo.scene, &photo.photo, now)?;
            report.expired += 1;
        }
    }
}

/// Blobs younger than this are never orphans: an upload stores the bytes a moment before
/// their row, and a retry may rewrite them; an hour covers any upload by far.
pub const ORPHAN_GRACE_S: i64 = 3600;

/// Temp files of the local blob store older than this are leftovers of a crash, removed when
/// `serve` starts; younger ones may be uploads in flight (of a hub serving from the same
/// directory while a CLI command runs).
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// What one orphan sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrphanReport {
    pub examined: usize,
    pub deleted: usize,
}

/// Deletes stored bytes no live photo row refers to and older than `grace_s`: what a crash
/// between storing bytes and their row, or between deleting a row and its bytes, leaves
/// behind. Several instances may sweep at once; deletes are idempotent.
pub fn sweep_orphans(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    now: i64,
    grace_s: i64,
) -> Result<OrphanReport, HubError> {
    let candidates: Vec<String> = blobs
        .list()?
        .into_iter()
        .filter(|b| b.modified <= now - grace_s && store::blob::is_photo_blob_key(&b.key))
        .map(|b| b.key)
        .collect();
    let mut report = OrphanReport {
        examined: candidates.len(),
        deleted: 0,
    };
    for chunk in candidates.chunks(500) {
        let live = store.referenced_blobs(chunk)?;
        for key in chunk.iter().filter(|k| !live.contains(*k)) {
            if blobs.delete(key)? {
                report.deleted += 1;
            }
        }
    }
    Ok(report)
}

/// A new device token: 256 random bits, base64url. Shown once; only its digest is stored.
pub fn new_device_token() -> Result<String, HubError> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| HubError::Io(std::io::Error::other(e.to_string())))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The digest under which a device token is stored.
pub fn token_digest(token: &str) -> String {
    http::sha256_hex(token.as_bytes())
}
