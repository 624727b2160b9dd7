//! `mirrorsight-hub`: the store's official-account server.
//!
//! - The relay the mirrors speak (`docs/openapi.yaml`, types in
//!   `mirrorsight_contract::backend`): scene codes minted through WeChat (the hub is the only
//!   holder of the appsecret), idempotent photo upload, photo delete; per-device tokens.
//! - The WeChat callback `/wechat`: a scan of a session's code binds the scanner's openid to
//!   the session and answers with a `news` message linking to the gallery.
//! - The gallery `/s/{scene}?k=<key>` and scan statistics (`/v1/stats`, `/metrics`).
//!
//! State lives in a [`store::Store`] (SQLite) and a [`store::BlobStore`] (a directory).

pub mod config;
pub mod http;
pub mod store;
pub mod wechat;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mirrorsight_wechat::WechatClient;
use thiserror::Error;
use tokio::net::TcpListener;

pub use config::{ConfigError, HubConfig, HubSecrets};
pub use http::AppState;
use store::{BlobStore, LocalBlobStore, SqliteStore, Store};
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
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A configured hub, ready to serve.
#[derive(Clone)]
pub struct Hub {
    state: Arc<AppState>,
}

impl Hub {
    /// Opens the SQLite database and blob directory named in `config`.
    pub fn open(config: HubConfig, secrets: HubSecrets) -> Result<Self, HubError> {
        config.validate()?;
        let store = Arc::new(SqliteStore::open(&config.database)?);
        let blobs = Arc::new(LocalBlobStore::open(&config.blob_dir)?);
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
        let base_url = config.base_url()?;
        let wechat = WechatClient::new(&config.wechat, secrets.appsecret.clone())?;
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

    /// Serves on `listener` until `shutdown` completes, sweeping expired photos meanwhile.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let sweeper = self.spawn_sweeper();
        let result = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await;
        sweeper.abort();
        result
    }

    /// Runs [`sweep_expired`] every `photos.sweep_interval_s`, starting now.
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
                    sweep_expired(
                        s.store.as_ref(),
                        s.blobs.as_ref(),
                        s.config.photos.retention_days,
                        http::unix_now(),
                    )
                })
                .await;
                match result {
                    Ok(Ok(report)) if report.expired > 0 => {
                        tracing::info!(expired = report.expired, "expired photos removed");
                    }
                    Ok(Ok(_)) => {}
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
}

/// Deletes the bytes of photos uploaded more than `retention_days` before `now` and marks
/// them expired (the rows stay, so the gallery can say the photos expired rather than that
/// they never existed).
pub fn sweep_expired(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    retention_days: u32,
    now: i64,
) -> Result<SweepReport, HubError> {
    let cutoff = now - i64::from(retention_days) * 86_400;
    let mut report = SweepReport::default();
    loop {
        let batch = store.photos_to_expire(cutoff, 500)?;
        if batch.is_empty() {
            return Ok(report);
        }
        for photo in batch {
            // Bytes first: if we crash here the row is still live and the next sweep retries.
            if !blobs.delete(&photo.blob_key)? {
                report.blobs_missing += 1;
            }
            store.mark_expired(&photo.scene, &photo.photo, now)?;
            report.expired += 1;
        }
    }
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
