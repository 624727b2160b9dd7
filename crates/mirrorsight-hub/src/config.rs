//! `mirrorsight-hub.toml`: every key has a default except `public_base_url`, unknown keys are
//! refused, and [`HubConfig::validate`] names the key of the first problem. Credentials are
//! never keys here, only where to find them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mirrorsight_wechat::WechatConfig;
use mirrorsight_wechat::secret::{
    APPSECRET_ENV, Secret, SecretError, SecretSpec, load_secret, require_secret,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub const CALLBACK_TOKEN_ENV: &str = "MIRRORSIGHT_HUB_CALLBACK_TOKEN";
pub const ENCODING_AES_KEY_ENV: &str = "MIRRORSIGHT_HUB_ENCODING_AES_KEY";
pub const ADMIN_TOKEN_ENV: &str = "MIRRORSIGHT_HUB_ADMIN_TOKEN";
pub const TOKEN_KEY_ENV: &str = "MIRRORSIGHT_HUB_TOKEN_KEY";
pub const MP_APPSECRET_ENV: &str = "MIRRORSIGHT_HUB_MP_APPSECRET";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// TOML syntax, a wrong type or an unknown key; toml's message names the key and line.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
    /// A credential that is present but unfit (too weak, wrong shape).
    #[error("{what}: {message}")]
    Credential { what: &'static str, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// Address to listen on. Default `"127.0.0.1:8480"` (a reverse proxy terminates TLS).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// How shoppers' phones and WeChat's servers reach the hub, e.g.
    /// `"https://hub.shop.example"`; gallery links and photo URLs start with it. Required.
    pub public_base_url: String,
    /// SQLite database file. Default `"/var/lib/mirrorsight-hub/hub.sqlite3"`.
    #[serde(default = "default_database")]
    pub database: PathBuf,
    /// Directory of photo bytes. Default `"/var/lib/mirrorsight-hub/photos"`.
    #[serde(default = "default_blob_dir")]
    pub blob_dir: PathBuf,
    #[serde(default)]
    pub photos: PhotosConfig,
    /// The official account: `appid`, API bases, token endpoint, and where the appsecret is.
    #[serde(default)]
    pub wechat: WechatConfig,
    #[serde(default)]
    pub callback: CallbackConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub relay: RelayConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub secrets: SecretsConfig,
    #[serde(default)]
    pub stats: StatsConfig,
    #[serde(default)]
    pub signin: SigninConfig,
    #[serde(default)]
    pub push: PushConfig,
    #[serde(default)]
    pub mini_program: MiniProgramConfig,
    /// Metadata in PostgreSQL instead of the SQLite file `database`: what a chain running
    /// several hub instances needs. Absent by default.
    #[serde(default)]
    pub postgres: Option<PostgresConfig>,
    /// Photo bytes in an S3-compatible bucket instead of `blob_dir`. Absent by default.
    #[serde(default)]
    pub s3: Option<S3Config>,
}

pub const DATABASE_PASSWORD_ENV: &str = "MIRRORSIGHT_HUB_DATABASE_PASSWORD";
pub const S3_SECRET_KEY_ENV: &str = "MIRRORSIGHT_HUB_S3_SECRET_KEY";
pub const S3_SESSION_TOKEN_ENV: &str = "MIRRORSIGHT_HUB_S3_SESSION_TOKEN";

/// `[postgres]`: the shared database of a chain's hub instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user@host:5432/dbname`, without a password (see `password_file`). Required.
    pub url: String,
    /// Connections per instance. Default 16.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// Seconds to wait for a connection. Default 10.
    #[serde(default = "default_connect_timeout_s")]
    pub connect_timeout_s: u64,
    /// The password: this file if set, else `$CREDENTIALS_DIRECTORY/<password_credential>`,
    /// else `$MIRRORSIGHT_HUB_DATABASE_PASSWORD`, else none (trust or peer authentication).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default = "default_password_credential")]
    pub password_credential: String,
    /// PEM file of the CA that signed the database server's certificate; without it the
    /// system's roots are trusted. TLS itself follows the URL's `sslmode` (`prefer` by
    /// default; add `?sslmode=require` to refuse a server without TLS).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_pool_size() -> u32 {
    16
}
fn default_connect_timeout_s() -> u64 {
    10
}
fn default_password_credential() -> String {
    "hub-database-password".to_string()
}

/// `[s3]`: an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, OSS/COS in S3 mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// `https://s3.eu-west-1.amazonaws.com`, `http://minio.internal:9000`, ... Required.
    pub endpoint: String,
    /// Required.
    pub bucket: String,
    /// Signing region. Default `"us-east-1"` (what most S3-compatible servers expect).
    #[serde(default = "default_region")]
    pub region: String,
    /// Prefix of every object key, e.g. `"photos/"`. Default `""`.
    #[serde(default)]
    pub prefix: String,
    /// `endpoint/bucket/key` (true, what self-hosted servers use) or `bucket.endpoint/key`.
    /// Default true.
    #[serde(default = "default_true")]
    pub path_style: bool,
    /// The key pair's id. The secret key is not a key here: `secret_key_file`, else
    /// `$CREDENTIALS_DIRECTORY/<secret_key_credential>`, else `$MIRRORSIGHT_HUB_S3_SECRET_KEY`.
    /// Temporary credentials add their session token: `$CREDENTIALS_DIRECTORY/
    /// <session_token_credential>`, else `$MIRRORSIGHT_HUB_S3_SESSION_TOKEN`. Absent (the
    /// default): AWS's credential chain (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`; a web identity token; the container's or the instance's role).
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_key_file: Option<PathBuf>,
    #[serde(default = "default_s3_credential")]
    pub secret_key_credential: String,
    #[serde(default = "default_s3_session_token_credential")]
    pub session_token_credential: String,
    /// Seconds per request. Default 30.
    #[serde(default = "default_s3_timeout_s")]
    pub timeout_s: u64,
}

fn default_region() -> String {
    "us-east-1".to_string()
}
fn default_true() -> bool {
    true
}
fn default_s3_credential() -> String {
    "hub-s3-secret-key".to_string()
}
fn default_s3_session_token_credential() -> String {
    "hub-s3-session-token".to_string()
}
fn default_s3_timeout_s() -> u64 {
    30
}

fn default_listen() -> String {
    "127.0.0.1:8480".to_string()
}
fn default_database() -> PathBuf {
    PathBuf::from("/var/lib/mirrorsight-hub/hub.sqlite3")
}
fn default_blob_dir() -> PathBuf {
    PathBuf::from("/var/lib/mirrorsight-hub/photos")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhotosConfig {
    /// Photos older than this many days are deleted (the gallery then says so), unless a
    /// shopper keeps them (`keep_bound_days`). Default 7.
    pub retention_days: u32,
    /// Photos of a session bound to a shopper's openid (by a scan or "keep these in my
    /// photos") are kept this many days; at least `retention_days`. Default 365.
    pub keep_bound_days: u32,
    /// Largest photo accepted, bytes. Default 10 MiB.
    pub max_bytes: u64,
    /// Largest turn-around clip accepted (H.264 MP4), bytes. Default 32 MiB (a mirror caps
    /// its clips at `clips.max_bytes`, 16 MB by default).
    pub max_clip_bytes: u64,
    /// How often the retention sweep runs, seconds. Default 3600.
    pub sweep_interval_s: u64,
}

impl Default for PhotosConfig {
    fn default() -> Self {
        Self {
            retention_days: 7,
            keep_bound_days: 365,
            max_bytes: 10 * 1024 * 1024,
            max_clip_bytes: 32 * 1024 * 1024,
            sweep_interval_s: 3600,
        }
    }
}

/// Which pushes `/wechat` accepts (WeChat's 消息加解密方式 setting of the account).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallbackMode {
    /// Only encrypted pushes (`encrypt_type=aes`); needs the EncodingAESKey. Plaintext pushes
    /// are refused: their signature does not cover the body, so a leaked callback URL could
    /// carry any push.
    Safe,
    /// Encrypted and plaintext pushes (WeChat's 兼容模式); needs the EncodingAESKey. Only on
    /// purpose, while switching an account over.
    Compatible,
    /// Only plaintext pushes, for an account without an EncodingAESKey.
    Plaintext,
}

impl CallbackMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Safe => "safe",
            Self::Compatible => "compatible",
            Self::Plaintext => "plaintext",
        }
    }

    /// Whether a plaintext push (no `encrypt_type=aes`) is accepted.
    pub fn accepts_plaintext(self) -> bool {
        matches!(self, Self::Compatible | Self::Plaintext)
    }

    /// Whether an encrypted push is accepted.
    pub fn accepts_encrypted(self) -> bool {
        matches!(self, Self::Safe | Self::Compatible)
    }
}

/// The `/wechat` callback and the replies it sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallbackConfig {
    /// Largest push body accepted, bytes. Default 65536.
    pub max_body_bytes: usize,
    /// Title of the `news` reply.
    pub title: String,
    /// Description of the `news` reply.
    pub description: String,
    /// Text reply for a scene the hub does not know or whose photos have expired.
    pub unknown_scene_text: String,
    /// Text reply to a scan of a mirror's idle code (`qr.idle_code`, shown while nobody is at
    /// the mirror).
    pub idle_welcome_text: String,
    /// Signed requests whose `timestamp` is further than this from the hub's clock are refused
    /// (a captured push cannot be replayed later), seconds; 0 turns the check off. Default 300.
    /// Where plaintext pushes are accepted, a push's timestamp and nonce are remembered this
    /// long (a day with 0), so the same pair with another message is refused.
    pub max_timestamp_skew_s: i64,
    /// `"safe"` (default), `"compatible"` or `"plaintext"`; see [`CallbackMode`].
    pub mode: CallbackMode,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            title: "你的试衣照片 · Your fitting photos".to_string(),
            description: "点击查看并保存照片 · Tap to view and save your photos".to_string(),
            unknown_scene_text:
                "这个二维码已过期，请在试衣镜前重新扫码。This code has expired; please scan the mirror again."
                    .to_string(),
            idle_welcome_text:
                "欢迎！站到试衣镜前，拍照后扫描镜子上的二维码即可获取照片。Welcome! Stand in front of the mirror, take photos, then scan the code it shows to get them."
                    .to_string(),
            max_timestamp_skew_s: 300,
            mode: CallbackMode::Safe,
        }
    }
}

/// `[http]`: how long a client may take and how many may be connected. Slow or idle clients
/// otherwise hold connections (and file descriptors) for ever, and WeChat's pushes queue
/// behind them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// A client must send a request's line and headers within this many seconds of starting
    /// it (or of the previous answer, on a kept-alive connection), else the connection is
    /// closed. Default 10.
    pub header_read_timeout_s: u64,
    /// A request body must arrive in full within this many seconds, else `408`. Default 60
    /// (a 10 MiB photo at 2 Mbit/s).
    pub body_read_timeout_s: u64,
    /// A whole request, body and storage included, must be answered within this many
    /// seconds, else `503` (the mirror retries). At least `body_read_timeout_s`. Default 90.
    pub request_timeout_s: u64,
    /// Connections open at once; further clients wait in the kernel's listen queue until one
    /// closes. Keep it well under the unit's `LimitNOFILE=`. Default 1024.
    pub max_connections: usize,
    /// On SIGTERM the hub stops accepting and gives requests in flight this many seconds to
    /// finish, then closes the rest. Keep it under the unit's `TimeoutStopSec=`. Default 10.
    pub shutdown_grace_s: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_s: 10,
            body_read_timeout_s: 60,
            request_timeout_s: 90,
            max_connections: 1024,
            shutdown_grace_s: 10,
        }
    }
}

impl HttpConfig {
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_s)
    }
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.body_read_timeout_s)
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_s)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_s)
    }
}

/// `[relay]`: limits on what one mirror may ask of the hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Scene codes one device may have minted per hour, sustained; beyond it `POST
    /// /v1/scenes` answers `429` with `Retry-After`. A stolen device token then cannot burn
    /// the account's daily `qrcode/create` quota (100,000). Counted per hub instance. Answers
    /// for scenes already minted (retries) are not counted. Default 120.
    pub mints_per_hour: u32,
    /// Mints a device may make at once before the hourly rate applies (a mirror filling its
    /// pool of ready codes at start). Default 10.
    pub mint_burst: u32,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            mints_per_hour: 120,
            mint_burst: 10,
        }
    }
}

/// `[metrics]`: where Prometheus scrapes `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// A second listener serving only `/metrics`, without a token: keep it on loopback or an
    /// internal interface. `""` turns it off. On `listen`, `/metrics` always needs the admin
    /// token. Default `"127.0.0.1:9480"`.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9480".to_string(),
        }
    }
}

/// Where the hub's own credentials are. Each is looked up as: the `*_file` key if set, else
/// `$CREDENTIALS_DIRECTORY/<credential>` (systemd `LoadCredential=`), else the environment
/// variable. The appsecret's location is in `[wechat]` (`appsecret_file`,
/// `appsecret_credential`, `$MIRRORSIGHT_WECHAT_APPSECRET`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// The callback Token set in the official account's server configuration (required).
    pub callback_token_file: Option<PathBuf>,
    pub callback_token_credential: String,
    /// The 43-character EncodingAESKey; needed for safe mode (`encrypt_type=aes`).
    pub encoding_aes_key_file: Option<PathBuf>,
    pub encoding_aes_key_credential: String,
    /// Bearer token of `GET /v1/stats`; without one the endpoint refuses everyone.
    pub admin_token_file: Option<PathBuf>,
    pub admin_token_credential: String,
    /// The key (32 random bytes, 64 hex digits or base64) the shared WeChat access token is
    /// encrypted with in the database; the same on every instance. Without one it is derived
    /// from the appsecret (see `token_seal`).
    pub token_key_file: Option<PathBuf>,
    pub token_key_credential: String,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            callback_token_file: None,
            callback_token_credential: "wechat-callback-token".to_string(),
            encoding_aes_key_file: None,
            encoding_aes_key_credential: "wechat-encoding-aes-key".to_string(),
            admin_token_file: None,
            admin_token_credential: "hub-admin-token".to_string(),
            token_key_file: None,
            token_key_credential: "hub-token-key".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    /// Days in `/v1/stats` are counted in this offset from UTC, minutes. Default 480 (China).
    pub utc_offset_minutes: i32,
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self {
            utc_offset_minutes: 480,
        }
    }
}

/// `[signin]`: the shopper's WeChat sign-in (`/me`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigninConfig {
    /// How long a sign-in lasts in the shopper's browser, days; after it `/me` signs in again
    /// (silently, in WeChat). Default 30.
    pub cookie_days: u32,
}

impl Default for SigninConfig {
    fn default() -> Self {
        Self { cookie_days: 30 }
    }
}

/// `[push]`: photos that follow the scan, as customer-service messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Photos arriving for a scanned session are announced in one message this many seconds
    /// after the last of them. Default 20.
    pub batch_s: u64,
    /// First pause before retrying a message WeChat refused for now (`45047`, `-1`), seconds;
    /// it doubles per try, up to an hour. Default 30.
    pub retry_s: u64,
    /// Tries before a message is given up. Default 8.
    pub max_attempts: u32,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            batch_s: 20,
            retry_s: 30,
            max_attempts: 8,
        }
    }
}

/// `[mini_program]`: the store's mini-program, which lists a shopper's photos through
/// `POST /v1/mp/login` and `GET /v1/mp/photos`. Off while `appid` is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MiniProgramConfig {
    /// The mini-program's AppID (not the official account's). Default empty: the `/v1/mp`
    /// endpoints answer `404`.
    pub appid: String,
    /// File holding the mini-program's appsecret. Default unset: then
    /// `$CREDENTIALS_DIRECTORY/<appsecret_credential>`, then `$MIRRORSIGHT_HUB_MP_APPSECRET`.
    pub appsecret_file: Option<PathBuf>,
    /// systemd credential name of the mini-program's appsecret. Default
    /// `"wechat-mp-appsecret"`.
    pub appsecret_credential: String,
    /// How long the token `POST /v1/mp/login` hands out lasts, days. Default 7.
    pub token_days: u32,
}

impl Default for MiniProgramConfig {
    fn default() -> Self {
        Self {
            appid: String::new(),
            appsecret_file: None,
            appsecret_credential: "wechat-mp-appsecret".to_string(),
            token_days: 7,
        }
    }
}

impl MiniProgramConfig {
    pub fn enabled(&self) -> bool {
        !self.appid.trim().is_empty()
    }
}

/// Whether the `host[:port][/path]` after `http://` names this machine.
fn is_loopback_authority(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    // Userinfo would let `http://127.0.0.1@elsewhere` pass for loopback.
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl HubConfig {
    /// Reads, parses and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// A config for `public_base_url` with every other key at its default.
    pub fn with_base_url(public_base_url: &str) -> Self {
        Self {
            listen: default_listen(),
            public_base_url: public_base_url.to_string(),
            database: default_database(),
            blob_dir: default_blob_dir(),
            photos: PhotosConfig::default(),
            wechat: WechatConfig::default(),
            callback: CallbackConfig::default(),
            http: HttpConfig::default(),
            relay: RelayConfig::default(),
            metrics: MetricsConfig::default(),
            secrets: SecretsConfig::default(),
            stats: StatsConfig::default(),
            signin: SigninConfig::default(),
            push: PushConfig::default(),
            mini_program: MiniProgramConfig::default(),
            postgres: None,
            s3: None,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        self.base_url()?;
        if self.database.as_os_str().is_empty() {
            return Err(invalid("database", "empty path"));
        }
        if self.blob_dir.as_os_str().is_empty() {
            return Err(invalid("blob_dir", "empty path"));
        }
        if !(1..=3650).contains(&self.photos.retention_days) {
            return Err(invalid(
                "photos.retention_days",
                format!("{} is not in 1..=3650", self.photos.retention_days),
            ));
        }
        if !(self.photos.retention_days..=3650).contains(&self.photos.keep_bound_days) {
            return Err(invalid(
                "photos.keep_bound_days",
                format!(
                    "{} is not in photos.retention_days ({})..=3650",
                    self.photos.keep_bound_days, self.photos.retention_days
                ),
            ));
        }
        if !(1024..=(256 << 20)).contains(&self.photos.max_bytes) {
            return Err(invalid(
                "photos.max_bytes",
                format!("{} is not in 1024..=268435456", self.photos.max_bytes),
            ));
        }
        if !(100_000..=(1 << 30)).contains(&self.photos.max_clip_bytes) {
            return Err(invalid(
                "photos.max_clip_bytes",
                format!(
                    "{} is not in 100000..=1073741824",
                    self.photos.max_clip_bytes
                ),
            ));
        }
        if !(1..=86_400).contains(&self.photos.sweep_interval_s) {
            return Err(invalid(
                "photos.sweep_interval_s",
                format!("{} is not in 1..=86400", self.photos.sweep_interval_s),
            ));
        }
        // The hub always mints through WeChat, so the AppID is required.
        self.wechat
            .validate(true)
            .map_err(|e| ConfigError::Invalid {
                key: e.key,
                message: e.message,
            })?;
        if !(1024..=(1 << 20)).contains(&self.callback.max_body_bytes) {
            return Err(invalid(
                "callback.max_body_bytes",
                format!("{} is not in 1024..=1048576", self.callback.max_body_bytes),
            ));
        }
        if !(0..=86_400).contains(&self.callback.max_timestamp_skew_s) {
            return Err(invalid(
                "callback.max_timestamp_skew_s",
                format!(
                    "{} is not in 0..=86400 (0 turns the check off)",
                    self.callback.max_timestamp_skew_s
                ),
            ));
        }
        self.validate_http()?;
        if !(1..=3600).contains(&self.push.batch_s) {
            return Err(invalid(
                "push.batch_s",
                format!("{} is not in 1..=3600", self.push.batch_s),
            ));
        }
        if !(1..=3600).contains(&self.push.retry_s) {
            return Err(invalid(
                "push.retry_s",
                format!("{} is not in 1..=3600", self.push.retry_s),
            ));
        }
        if !(1..=100).contains(&self.push.max_attempts) {
            return Err(invalid(
                "push.max_attempts",
                format!("{} is not in 1..=100", self.push.max_attempts),
            ));
        }
        if !(1..=90).contains(&self.mini_program.token_days) {
            return Err(invalid(
                "mini_program.token_days",
                format!("{} is not in 1..=90", self.mini_program.token_days),
            ));
        }
        if self.mini_program.enabled()
            && !self
                .mini_program
                .appid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric())
        {
            return Err(invalid(
                "mini_program.appid",
                "letters and digits only (wx followed by 16 hex digits)",
            ));
        }
        if !(1..=400).contains(&self.signin.cookie_days) {
            return Err(invalid(
                "signin.cookie_days",
                format!("{} is not in 1..=400", self.signin.cookie_days),
            ));
        }
        for (key, value) in [
            ("callback.title", &self.callback.title),
            (
                "callback.unknown_scene_text",
                &self.callback.unknown_scene_text,
            ),
            (
                "callback.idle_welcome_text",
                &self.callback.idle_welcome_text,
            ),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
        }
        for (key, value) in [
            (
                "secrets.callback_token_credential",
                &self.secrets.callback_token_credential,
            ),
            (
                "secrets.encoding_aes_key_credential",
                &self.secrets.encoding_aes_key_credential,
            ),
            (
                "secrets.admin_token_credential",
                &self.secrets.admin_token_credential,
            ),
            (
                "secrets.token_key_credential",
                &self.secrets.token_key_credential,
            ),
        ] {
            if value.contains('/') {
                return Err(invalid(key, "a credential name, not a path"));
            }
        }
        if let Some(pg) = &self.postgres {
            if !crate::store::is_postgres_url(&pg.url) {
                return Err(invalid(
                    "postgres.url",
                    format!("{:?} must start with postgres:// or postgresql://", pg.url),
                ));
            }
            let userinfo = pg
                .url
                .split_once("://")
                .and_then(|(_, rest)| rest.split_once('@'))
                .map(|(userinfo, _)| userinfo);
            if userinfo.is_some_and(|u| u.contains(':')) {
                return Err(invalid(
                    "postgres.url",
                    "holds a password; put it in postgres.password_file (or the hub-database-password credential) instead",
                ));
            }
            if !(1..=256).contains(&pg.pool_size) {
                return Err(invalid(
                    "postgres.pool_size",
                    format!("{} is not in 1..=256", pg.pool_size),
                ));
            }
            if !(1..=300).contains(&pg.connect_timeout_s) {
                return Err(invalid(
                    "postgres.connect_timeout_s",
                    format!("{} is not in 1..=300", pg.connect_timeout_s),
                ));
            }
            if pg.password_credential.contains('/') {
                return Err(invalid(
                    "postgres.password_credential",
                    "a credential name, not a path",
                ));
            }
        }
        if let Some(s3) = &self.s3 {
            let rest = s3
                .endpoint
                .strip_prefix("https://")
                .or_else(|| s3.endpoint.strip_prefix("http://"));
            if rest.is_none_or(|r| r.trim_end_matches('/').is_empty()) {
                return Err(invalid(
                    "s3.endpoint",
                    format!("{:?} must be an http:// or https:// URL", s3.endpoint),
                ));
            }
            // Photos and the request signatures would cross the network in the clear.
            if let Some(rest) = s3.endpoint.strip_prefix("http://")
                && !is_loopback_authority(rest)
            {
                return Err(invalid(
                    "s3.endpoint",
                    format!(
                        "{:?} must be https:// (plain http:// only to this machine: 127.0.0.1, [::1], localhost)",
                        s3.endpoint
                    ),
                ));
            }
            for (key, value) in [
                ("s3.bucket", Some(&s3.bucket)),
                ("s3.region", Some(&s3.region)),
                ("s3.access_key_id", s3.access_key_id.as_ref()),
            ] {
                if value.is_some_and(|v| v.trim().is_empty()) {
                    return Err(invalid(
                        key,
                        "must not be empty (leave access_key_id out for AWS's credential chain)",
                    ));
                }
            }
            if !(1..=600).contains(&s3.timeout_s) {
                return Err(invalid(
                    "s3.timeout_s",
                    format!("{} is not in 1..=600", s3.timeout_s),
                ));
            }
            for (key, name) in [
                ("s3.secret_key_credential", &s3.secret_key_credential),
                ("s3.session_token_credential", &s3.session_token_credential),
            ] {
                if name.contains('/') {
                    return Err(invalid(key, "a credential name, not a path"));
                }
            }
            if s3.access_key_id.is_none() && s3.secret_key_file.is_some() {
                return Err(invalid(
                    "s3.secret_key_file",
                    "needs s3.access_key_id (without it, AWS's credential chain is used)",
                ));
            }
        }
        if !(-14 * 60..=14 * 60).contains(&self.stats.utc_offset_minutes) {
            return Err(invalid(
                "stats.utc_offset_minutes",
                format!("{} is not in -840..=840", self.stats.utc_offset_minutes),
            ));
        }
        Ok(())
    }

    fn validate_http(&self) -> Result<(), ConfigError> {
        let http = &self.http;
        for (key, value, max) in [
            (
                "http.header_read_timeout_s",
                http.header_read_timeout_s,
                300,
            ),
            ("http.body_read_timeout_s", http.body_read_timeout_s, 3600),
            ("http.request_timeout_s", http.request_timeout_s, 3600),
            ("http.shutdown_grace_s", http.shutdown_grace_s, 300),
        ] {
            if !(1..=max).contains(&value) {
                return Err(invalid(key, format!("{value} is not in 1..={max}")));
            }
        }
        if http.request_timeout_s < http.body_read_timeout_s {
            return Err(invalid(
                "http.request_timeout_s",
                format!(
                    "{} is less than http.body_read_timeout_s ({}): a request includes its body",
                    http.request_timeout_s, http.body_read_timeout_s
                ),
            ));
        }
        if !(1..=65_536).contains(&http.max_connections) {
            return Err(invalid(
                "http.max_connections",
                format!("{} is not in 1..=65536", http.max_connections),
            ));
        }
        for (key, value) in [
            ("relay.mints_per_hour", self.relay.mints_per_hour),
            ("relay.mint_burst", self.relay.mint_burst),
        ] {
            if !(1..=100_000).contains(&value) {
                return Err(invalid(key, format!("{value} is not in 1..=100000")));
            }
        }
        if let Some(metrics) = self.metrics_addr()?
            && metrics == self.listen_addr()?
        {
            return Err(invalid(
                "metrics.listen",
                "must differ from `listen` (\"\" serves /metrics on `listen` only, behind the admin token)",
            ));
        }
        Ok(())
    }

    /// The address of the metrics listener, `None` when `metrics.listen` is `""`.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let listen = self.metrics.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        listen
            .parse()
            .map(Some)
            .map_err(|e| invalid("metrics.listen", format!("{listen:?}: {e}")))
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen
            .parse()
            .map_err(|e| invalid("listen", format!("{:?}: {e}", self.listen)))
    }

    /// `public_base_url` without its trailing `/`. `https://`, or `http://` to a loopback
    /// host only: gallery links carry the gallery key, which must not cross a network in
    /// clear text.
    pub fn base_url(&self) -> Result<String, ConfigError> {
        let url = self.public_base_url.trim().trim_end_matches('/');
        let (rest, plain_http) = match url.strip_prefix("https://") {
            Some(rest) => (rest, false),
            None => (
                url.strip_prefix("http://").ok_or_else(|| {
                    invalid(
                        "public_base_url",
                        "must start with https:// (or http:// to loopback)",
                    )
                })?,
                true,
            ),
        };
        if rest.is_empty() || rest.contains(char::is_whitespace) || rest.contains(['?', '#']) {
            return Err(invalid(
                "public_base_url",
                format!("{url:?} is not a base URL (host, optional path, no query)"),
            ));
        }
        if plain_http && !is_loopback_authority(rest) {
            return Err(invalid(
                "public_base_url",
                format!(
                    "{url:?}: http:// only to loopback (127.0.0.1, [::1], localhost); phones and WeChat need https://"
                ),
            ));
        }
        Ok(url.to_string())
    }

    /// Checks the loaded credentials against this config: the callback Token strong enough,
    /// an EncodingAESKey where `callback.mode` needs one.
    pub fn check_secrets(&self, secrets: &HubSecrets) -> Result<(), ConfigError> {
        if let Some(message) = callback_token_weakness(secrets.callback_token.expose()) {
            return Err(ConfigError::Credential {
                what: "the WeChat callback token",
                message,
            });
        }
        let mode = self.callback.mode;
        if mode.accepts_encrypted() && secrets.encoding_aes_key.is_none() {
            return Err(invalid(
                "callback.mode",
                format!(
                    "{:?} needs the EncodingAESKey (secrets.encoding_aes_key_file, the {} credential or ${ENCODING_AES_KEY_ENV}); for an account without one set callback.mode = \"plaintext\"",
                    mode.as_str(),
                    self.secrets.encoding_aes_key_credential
                ),
            ));
        }
        if mode == CallbackMode::Plaintext && secrets.encoding_aes_key.is_some() {
            tracing::warn!(
                "callback.mode = \"plaintext\" with an EncodingAESKey loaded: encrypted pushes are refused and plaintext ones accepted; use \"safe\" unless this is on purpose"
            );
        }
        Ok(())
    }

    /// Loads the hub's credentials. `env` is `|k| std::env::var(k).ok()` in production.
    pub fn load_secrets(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<HubSecrets, SecretError> {
        let (appsecret, source) = require_secret(
            &SecretSpec {
                what: "WeChat appsecret",
                file_key: "wechat.appsecret_file",
                file: self.wechat.appsecret_file.as_deref(),
                credential: &self.wechat.appsecret_credential,
                env: APPSECRET_ENV,
            },
            env,
        )?;
        tracing::info!(%source, "WeChat appsecret loaded");
        let (callback_token, source) = require_secret(
            &SecretSpec {
                what: "WeChat callback token",
                file_key: "secrets.callback_token_file",
                file: self.secrets.callback_token_file.as_deref(),
                credential: &self.secrets.callback_token_credential,
                env: CALLBACK_TOKEN_ENV,
            },
            env,
        )?;
        tracing::info!(%source, "callback token loaded");
        let encoding_aes_key = load_secret(
            &SecretSpec {
                what: "EncodingAESKey",
                file_key: "secrets.encoding_aes_key_file",
                file: self.secrets.encoding_aes_key_file.as_deref(),
                credential: &self.secrets.encoding_aes_key_credential,
                env: ENCODING_AES_KEY_ENV,
            },
            env,
        )?
        .map(|(secret, source)| {
            tracing::info!(%source, "EncodingAESKey loaded; safe mode available");
            secret
        });
        if encoding_aes_key.is_none() {
            tracing::warn!("no EncodingAESKey: safe-mode (encrypted) pushes will be refused");
        }
        let admin_token = load_secret(
            &SecretSpec {
                what: "admin token",
                file_key: "secrets.admin_token_file",
                file: self.secrets.admin_token_file.as_deref(),
                credential: &self.secrets.admin_token_credential,
                env: ADMIN_TOKEN_ENV,
            },
            env,
        )?
        .map(|(secret, source)| {
            tracing::info!(%source, "admin token loaded");
            secret
        });
        if admin_token.is_none() {
            tracing::warn!("no admin token: /v1/stats refuses every request");
        }
        let token_key = load_secret(
            &SecretSpec {
                what: "token key",
                file_key: "secrets.token_key_file",
                file: self.secrets.token_key_file.as_deref(),
                credential: &self.secrets.token_key_credential,
                env: TOKEN_KEY_ENV,
            },
            env,
        )?
        .map(|(secret, source)| {
            tracing::info!(%source, "token key loaded; the shared access token is sealed with it");
            secret
        });
        let mp_appsecret = if self.mini_program.enabled() {
            let (secret, source) = require_secret(
                &SecretSpec {
                    what: "mini-program appsecret",
                    file_key: "mini_program.appsecret_file",
                    file: self.mini_program.appsecret_file.as_deref(),
                    credential: &self.mini_program.appsecret_credential,
                    env: MP_APPSECRET_ENV,
                },
                env,
            )?;
            tracing::info!(%source, "mini-program appsecret loaded");
            Some(secret)
        } else {
            None
        };
        Ok(HubSecrets {
            appsecret,
            callback_token,
            encoding_aes_key,
            admin_token,
            token_key,
            mp_appsecret,
        })
    }
}

/// Shortest callback Token accepted. WeChat takes 3 to 32 letters and digits; the Token is
/// all that authenticates a plaintext push, so a short one can be guessed offline from one
/// logged signature.
pub const MIN_CALLBACK_TOKEN_LEN: usize = 16;
const MAX_CALLBACK_TOKEN_LEN: usize = 32;
/// Random 16-character tokens over 62 symbols almost always have 12 or more different ones;
/// fewer than 8 means a pattern (`aaaa…`, `abcabc…`), not randomness.
const MIN_CALLBACK_TOKEN_DISTINCT: usize = 8;

/// Why a callback Token is unfit, if it is.
pub fn callback_token_weakness(token: &str) -> Option<String> {
    let hint = "generate one with `openssl rand -hex 16`";
    if !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Some(format!(
            "must be letters and digits only (what WeChat accepts); {hint}"
        ));
    }
    if !(MIN_CALLBACK_TOKEN_LEN..=MAX_CALLBACK_TOKEN_LEN).contains(&token.len()) {
        return Some(format!(
            "is {} characters; it must be {MIN_CALLBACK_TOKEN_LEN} to {MAX_CALLBACK_TOKEN_LEN} (WeChat allows at most {MAX_CALLBACK_TOKEN_LEN}); {hint}",
            token.len()
        ));
    }
    let distinct = token
        .bytes()
        .collect::<std::collections::HashSet<u8>>()
        .len();
    if distinct < MIN_CALLBACK_TOKEN_DISTINCT {
        return Some(format!(
            "has only {distinct} different characters, a pattern rather than a random value; {hint}"
        ));
    }
    None
}

/// The hub's credentials, never printed.
#[derive(Debug, Clone)]
pub struct HubSecrets {
    pub appsecret: Secret,
    pub callback_token: Secret,
    pub encoding_aes_key: Option<Secret>,
    pub admin_token: Option<Secret>,
    /// Seals the shared access token in the database; `None`: a key derived from the
    /// appsecret.
    pub token_key: Option<Secret>,
    /// The mini-program's appsecret, when `[mini_program]` is on.
    pub mp_appsecret: Option<Secret>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(r: Result<(), ConfigError>) -> String {
        match r {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid key, got {other:?}"),
        }
    }

    fn valid() -> HubConfig {
        let mut c = HubConfig::with_base_url("https://hub.shop.example/");
        c.wechat.appid = "wx0123456789".into();
        c
    }

    #[test]
    fn defaults_with_base_url_and_appid_are_valid() {
        let c = valid();
        c.validate().unwrap();
        assert_eq!(c.base_url().unwrap(), "https://hub.shop.example");
        assert_eq!(c.photos.retention_days, 7);
        assert_eq!(c.photos.keep_bound_days, 365);
    }

    #[test]
    fn errors_name_the_key() {
        let mut c = valid();
        c.listen = "nope".into();
        assert_eq!(key_of(c.validate()), "listen");
        let mut c = valid();
        c.public_base_url = "ftp://x".into();
        assert_eq!(key_of(c.validate()), "public_base_url");
        let mut c = valid();
        c.photos.retention_days = 0;
        assert_eq!(key_of(c.validate()), "photos.retention_days");
        let mut c = valid();
        c.wechat.appid = String::new();
        assert_eq!(key_of(c.validate()), "wechat.appid");
        let mut c = valid();
        c.callback.max_body_bytes = 10;
        assert_eq!(key_of(c.validate()), "callback.max_body_bytes");
        let mut c = valid();
        c.secrets.admin_token_credential = "/etc/x".into();
        assert_eq!(key_of(c.validate()), "secrets.admin_token_credential");
        let mut c = valid();
        c.stats.utc_offset_minutes = 9999;
        assert_eq!(key_of(c.validate()), "stats.utc_offset_minutes");
    }

    #[test]
    fn toml_refuses_unknown_keys_and_inline_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.toml");
        std::fs::write(
            &path,
            "public_base_url = \"https://h.example\"\n[wechat]\nappid = \"wx1\"\n[photos]\nretention_days = 3\n",
        )
        .unwrap();
        let c = HubConfig::load(&path).unwrap();
        assert_eq!(c.photos.retention_days, 3);
        for bad in [
            "public_base_url = \"https://h.example\"\nbogus = 1\n",
            "public_base_url = \"https://h.example\"\n[wechat]\nappid = \"wx1\"\nappsecret = \"s\"\n",
            "public_base_url = \"https://h.example\"\n[secrets]\ncallback_token = \"t\"\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            let e = HubConfig::load(&path).unwrap_err().to_string();
            assert!(e.contains("unknown field"), "{e}");
        }
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\n").unwrap();
        let e = HubConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("public_base_url"), "{e}");
    }

    /// The shipped example parses and validates.
    #[test]
    fn example_config_is_valid() {
        let c: HubConfig = toml::from_str(include_str!("../hub.example.toml")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.stats.utc_offset_minutes, 480);
        assert_eq!(c.callback, CallbackConfig::default());
        assert_eq!(c.photos, PhotosConfig::default());
        assert_eq!(c.secrets, SecretsConfig::default());
        assert_eq!(c.http, HttpConfig::default());
        assert_eq!(c.relay, RelayConfig::default());
        assert_eq!(c.metrics, MetricsConfig::default());
        assert_eq!(c.signin, SigninConfig::default());
        assert_eq!(c.push, PushConfig::default());
        assert_eq!(c.wechat.oauth_base, WechatConfig::default().oauth_base);
    }

    #[test]
    fn http_relay_and_metrics_keys_are_checked() {
        type Spoil = fn(&mut HubConfig);
        let cases: [(&str, Spoil); 9] = [
            ("http.header_read_timeout_s", |c| {
                c.http.header_read_timeout_s = 0
            }),
            ("http.body_read_timeout_s", |c| {
                c.http.body_read_timeout_s = 0
            }),
            ("http.request_timeout_s", |c| c.http.request_timeout_s = 30),
            ("http.max_connections", |c| c.http.max_connections = 0),
            ("http.shutdown_grace_s", |c| c.http.shutdown_grace_s = 301),
            ("relay.mints_per_hour", |c| c.relay.mints_per_hour = 0),
            ("relay.mint_burst", |c| c.relay.mint_burst = 0),
            ("metrics.listen", |c| c.metrics.listen = "nowhere".into()),
            ("metrics.listen", |c| c.metrics.listen = c.listen.clone()),
        ];
        for (key, spoil) in cases {
            let mut c = valid();
            spoil(&mut c);
            assert_eq!(key_of(c.validate()), key);
        }
        let mut c = valid();
        c.metrics.listen = String::new();
        c.validate().unwrap();
        assert_eq!(c.metrics_addr().unwrap(), None);
        let toml_mode = |mode: &str| {
            toml::from_str::<HubConfig>(&format!(
                "public_base_url = \"https://h.example\"\n[callback]\nmode = \"{mode}\"\n"
            ))
        };
        assert_eq!(
            toml_mode("compatible").unwrap().callback.mode,
            CallbackMode::Compatible
        );
        assert!(toml_mode("aes").is_err());
    }

    #[test]
    fn public_base_url_is_https_or_loopback() {
        for ok in [
            "https://hub.shop.example",
            "https://hub.shop.example/mirror/",
            "http://127.0.0.1:8480",
            "http://127.8.9.10",
            "http://[::1]:8480/hub",
            "http://localhost:8480",
        ] {
            let mut c = valid();
            c.public_base_url = ok.into();
            c.validate().unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "http://hub.shop.example",
            "http://10.0.0.5:8480",
            "http://127.0.0.1.nip.io",
            "http://localhost.shop.example",
            "http://user@127.0.0.1",
            "http://[::2]:80",
        ] {
            let mut c = valid();
            c.public_base_url = bad.into();
            let e = c.validate().unwrap_err().to_string();
            assert!(
                e.contains("public_base_url") && e.contains("loopback"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn callback_token_strength() {
        for strong in ["3f9a1c0b7e2d4a6f8b1c3e5d7f9a0b2c", "Kq7vN2xR8mT4pL9w"] {
            assert_eq!(callback_token_weakness(strong), None, "{strong}");
        }
        for weak in [
            "AAAAA",
            "spamtest",
            "callback-token-AAAAA",
            "aaaaaaaaaaaaaaaaaaaa",
            "abcabcabcabcabcabc",
            "0123456789abcdef0123456789abcdef0",
            "",
        ] {
            assert!(callback_token_weakness(weak).is_some(), "{weak}");
        }
    }

    #[test]
    fn secrets_are_checked_against_the_callback_mode() {
        let secrets = |token: &str, aes: bool| HubSecrets {
            appsecret: Secret::new("as"),
            callback_token: Secret::new(token),
            encoding_aes_key: aes
                .then(|| Secret::new("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")),
            admin_token: None,
            token_key: None,
            mp_appsecret: None,
        };
        const STRONG: &str = "Kq7vN2xR8mT4pL9w";
        let mut c = valid();
        c.check_secrets(&secrets(STRONG, true)).unwrap();
        let e = c
            .check_secrets(&secrets(STRONG, false))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("callback.mode") && e.contains("EncodingAESKey"),
            "{e}"
        );
        c.callback.mode = CallbackMode::Compatible;
        assert!(c.check_secrets(&secrets(STRONG, false)).is_err());
        c.callback.mode = CallbackMode::Plaintext;
        c.check_secrets(&secrets(STRONG, false)).unwrap();
        let e = c
            .check_secrets(&secrets("spamtest", false))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("callback token") && !e.contains("spamtest"),
            "{e}"
        );
    }

    /// The commented chain sections of the example, uncommented, are a valid config too.
    #[test]
    fn example_chain_sections_are_valid() {
        let text = include_str!("../hub.example.toml");
        let (single, chain) = text
            .split_once("# A chain running several")
            .expect("the chain part of the example");
        let uncommented: String = chain
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| !l.starts_with('#') && (l.starts_with('[') || l.contains(" = ")))
            .map(|l| format!("{l}\n"))
            .collect();
        let c: HubConfig = toml::from_str(&format!("{single}\n{uncommented}")).unwrap();
        c.validate().unwrap();
        let pg = c.postgres.expect("[postgres]");
        assert_eq!(
            (pg.pool_size, pg.password_credential.as_str()),
            (16, "hub-database-password")
        );
        let s3 = c.s3.expect("[s3]");
        assert_eq!(
            (s3.bucket.as_str(), s3.path_style),
            ("mirrorsight-photos", true)
        );
    }

    #[test]
    fn storage_errors_name_the_key() {
        let pg = |url: &str| {
            let mut c = valid();
            c.postgres = Some(PostgresConfig {
                url: url.into(),
                pool_size: 16,
                connect_timeout_s: 10,
                password_file: None,
                password_credential: "hub-database-password".into(),
                ca_file: None,
            });
            c
        };
        assert_eq!(key_of(pg("mysql://db/hub").validate()), "postgres.url");
        let err = pg("postgres://hub:hunter2@db/hub")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("postgres.url") && !err.contains("hunter2"),
            "{err}"
        );
        let mut c = pg("postgres://hub@db/hub");
        c.validate().unwrap();
        if let Some(p) = c.postgres.as_mut() {
            p.pool_size = 0;
        }
        assert_eq!(key_of(c.validate()), "postgres.pool_size");

        let s3 = |endpoint: &str, bucket: &str| {
            let mut c = valid();
            c.s3 = Some(S3Config {
                endpoint: endpoint.into(),
                bucket: bucket.into(),
                region: "us-east-1".into(),
                prefix: String::new(),
                path_style: true,
                access_key_id: Some("AKIA".into()),
                secret_key_file: None,
                secret_key_credential: "hub-s3-secret-key".into(),
                session_token_credential: "hub-s3-session-token".into(),
                timeout_s: 30,
            });
            c
        };
        s3("http://127.0.0.1:9000", "photos").validate().unwrap();
        // Plain HTTP only to this machine: photos and signatures never cross a network bare.
        for loopback in [
            "http://localhost:9000",
            "http://127.0.0.2:9000/",
            "http://[::1]:9000",
        ] {
            s3(loopback, "photos").validate().unwrap();
        }
        for remote in [
            "http://minio.internal:9000",
            "http://10.0.0.5:9000",
            "http://127.0.0.1@minio.internal:9000",
            "http://localhost.example.com",
        ] {
            let err = s3(remote, "photos").validate().unwrap_err().to_string();
            assert!(
                err.contains("config key `s3.endpoint`") && err.contains("https://"),
                "{remote}: {err}"
            );
        }
        s3("https://minio.internal:9000", "photos")
            .validate()
            .unwrap();
        assert_eq!(key_of(s3("minio:9000", "photos").validate()), "s3.endpoint");
        assert_eq!(key_of(s3("https://", "photos").validate()), "s3.endpoint");
        assert_eq!(
            key_of(s3("https://s3.example", " ").validate()),
            "s3.bucket"
        );
        // Without a key id, AWS's credential chain; an empty one is a mistake, and so is a
        // secret key file with nothing to pair it with.
        let mut chain = s3("https://s3.example", "photos");
        if let Some(s) = chain.s3.as_mut() {
            s.access_key_id = None;
        }
        chain.validate().unwrap();
        if let Some(s) = chain.s3.as_mut() {
            s.secret_key_file = Some("/etc/mirrorsight/s3-secret".into());
        }
        assert_eq!(key_of(chain.validate()), "s3.secret_key_file");
        if let Some(s) = chain.s3.as_mut() {
            s.access_key_id = Some(" ".into());
        }
        assert_eq!(key_of(chain.validate()), "s3.access_key_id");
    }

    #[test]
    fn secrets_come_from_files_or_env_only() {
        let c = valid();
        let env = |k: &str| match k {
            APPSECRET_ENV => Some("as".to_string()),
            CALLBACK_TOKEN_ENV => Some("tok".to_string()),
            _ => None,
        };
        let s = c.load_secrets(&env).unwrap();
        assert_eq!(s.callback_token.expose(), "tok");
        assert!(s.encoding_aes_key.is_none() && s.admin_token.is_none());
        let none = |_: &str| None;
        let e = c.load_secrets(&none).unwrap_err().to_string();
        assert!(e.contains("appsecret"), "{e}");
    }
}
