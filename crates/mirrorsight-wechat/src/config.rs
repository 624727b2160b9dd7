//! The `[qr]`, `[wechat]` and `[backend]` sections of the daemon's TOML config.
//!
//! Every key has a default, unknown keys are refused, and [`Settings::validate`] names the
//! full key of the first problem (`qr.expire_seconds`). Credentials are never keys here: only
//! where to find them (see [`crate::secret`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use url::Url;

use crate::qrcode::ActionName;
use crate::url::UrlTemplate;
use crate::wxa::EnvVersion;

/// A config problem, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("config key `{key}`: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn key_error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        message: message.into(),
    }
}

/// How scene codes are made (`qr.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QrKind {
    /// Render `qr.url_template`; no network, no credentials. The offline default.
    #[default]
    Url,
    /// Official-account scene codes from `cgi-bin/qrcode/create` (needs the appsecret).
    OfficialAccount,
    /// Mini-program codes from `wxa/getwxacodeunlimit` (needs the appsecret).
    MiniProgram,
    /// Ask the store backend (`POST {backend.url}/v1/scenes`, needs the device token).
    Relay,
}

impl QrKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Url => "url",
            Self::OfficialAccount => "official_account",
            Self::MiniProgram => "mini_program",
            Self::Relay => "relay",
        }
    }

    /// Whether minting needs the network (and therefore the pool and the background worker).
    pub fn needs_network(self) -> bool {
        self != Self::Url
    }

    pub fn needs_appsecret(self) -> bool {
        matches!(self, Self::OfficialAccount | Self::MiniProgram)
    }
}

/// `[qr]`: what code each session shows and how codes are kept ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QrConfig {
    /// `"url"` (default), `"official_account"`, `"mini_program"` or `"relay"`.
    pub kind: QrKind,
    /// Kind `url`: the code's content; `{scene}` is replaced by the scene.
    /// Default `"https://mirror.example/s/{scene}"`.
    pub url_template: String,
    /// Kind `official_account`: `"QR_STR_SCENE"` (default; the scene is `scene_str`) or
    /// `"QR_SCENE"` (numeric scene derived from the id). The permanent `"QR_LIMIT_STR_SCENE"`
    /// and `"QR_LIMIT_SCENE"` are refused here (WeChat allows 100,000 in an account's
    /// lifetime, and numeric ones can collide): a fixed code is `qr.idle_code`.
    pub action_name: ActionName,
    /// Lifetime of temporary codes (official account, relay), 1..=2592000 s. Default 3600.
    pub expire_seconds: u32,
    /// Pre-minted codes kept ready so a session shows its code at once; 0 disables the pool
    /// (every session then waits for a live mint). Default 3.
    pub pool_size: usize,
    /// The pool always tops up to `pool_size`, one mint at a time; at or below this many
    /// ready codes it mints up to `max_concurrent_mints` at once. Below `pool_size`. Default 1.
    pub pool_low_water: usize,
    /// Pool codes are thrown away this long before they expire, so a shopper never gets a code
    /// about to die; must be below `expire_seconds`. Default 900.
    pub drop_before_expiry_s: u32,
    /// Most mints running at once in the background (when the pool is low). Default 2.
    pub max_concurrent_mints: usize,
    /// First pause after a failed background mint; doubles per failure. Default 500.
    pub retry_initial_ms: u64,
    /// Longest pause between background mint attempts while the network is down. Default 30.
    pub retry_max_s: u64,
    /// Kind `official_account`: also download the code's image from `showqrcode` (the `url`
    /// is enough to render it locally). Default false.
    pub fetch_image: bool,
    /// Kind `mini_program`: page the code opens, without leading `/` or query; unset = the
    /// mini-program's home page. Default unset.
    pub wxa_page: Option<String>,
    /// Kind `mini_program`: image width in pixels, 280..=1280. Default 430.
    pub wxa_width: u32,
    /// Kind `mini_program`: `"release"` (default), `"trial"` or `"develop"`.
    pub wxa_env_version: EnvVersion,
    /// Kind `mini_program`: ask WeChat to check that `wxa_page` is published. Default true.
    pub wxa_check_path: bool,
    /// The scene of this mirror's permanent idle code, shown while nobody is at the mirror
    /// (e.g. `"idle-mirror-7"`, unique per mirror): minted once (`QR_LIMIT_STR_SCENE`, or
    /// through the hub with `relay`) and kept in the state directory. The hub welcomes its
    /// scans and counts them for this mirror. Default unset: nothing is shown while idle.
    pub idle_code: Option<String>,
}

impl Default for QrConfig {
    fn default() -> Self {
        Self {
            kind: QrKind::Url,
            url_template: "https://mirror.example/s/{scene}".to_string(),
            action_name: ActionName::QrStrScene,
            expire_seconds: 3600,
            pool_size: 3,
            pool_low_water: 1,
            drop_before_expiry_s: 900,
            max_concurrent_mints: 2,
            retry_initial_ms: 500,
            retry_max_s: 30,
            fetch_image: false,
            wxa_page: None,
            wxa_width: 430,
            wxa_env_version: EnvVersion::Release,
            wxa_check_path: true,
            idle_code: None,
        }
    }
}

/// Which token endpoint to use (`wechat.token_endpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpoint {
    /// `POST cgi-bin/stable_token`: independent holders do not knock each other out.
    #[default]
    StableToken,
    /// `GET cgi-bin/token`: each call invalidates the previous token after ~5 minutes.
    Token,
}

/// `[wechat]`: the WeChat API (kinds `official_account` and `mini_program`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WechatConfig {
    /// Base URL of the API. Default `"https://api.weixin.qq.com"`.
    pub api_base: String,
    /// Base URL of `showqrcode`. Default `"https://mp.weixin.qq.com"`.
    pub mp_base: String,
    /// Base URL of the web sign-in page (`connect/oauth2/authorize`), which the hub sends
    /// shoppers' browsers to; the mirror does not use it. Default `"https://open.weixin.qq.com"`.
    pub oauth_base: String,
    /// The official account's or mini-program's AppID. Default empty (required by the kinds
    /// that talk to WeChat).
    pub appid: String,
    /// `"stable_token"` (default) or `"token"`.
    pub token_endpoint: TokenEndpoint,
    /// Timeout of each request, seconds. Default 10.
    pub timeout_s: f64,
    /// Retries after WeChat's `-1` (system busy). Default 3.
    pub busy_retries: u32,
    /// First pause before a `-1` retry, doubling per retry (capped at 2 s). Default 200.
    pub busy_backoff_ms: u64,
    /// Refresh the access token this long before it expires. Default 300.
    pub refresh_ahead_s: u64,
    /// File holding the appsecret. Default unset: then `$CREDENTIALS_DIRECTORY/<appsecret_credential>`,
    /// then `$MIRRORSIGHT_WECHAT_APPSECRET`.
    pub appsecret_file: Option<PathBuf>,
    /// systemd credential name of the appsecret. Default `"wechat-appsecret"`.
    pub appsecret_credential: String,
}

impl Default for WechatConfig {
    fn default() -> Self {
        Self {
            api_base: "https://api.weixin.qq.com".to_string(),
            mp_base: "https://mp.weixin.qq.com".to_string(),
            oauth_base: "https://open.weixin.qq.com".to_string(),
            appid: String::new(),
            token_endpoint: TokenEndpoint::StableToken,
            timeout_s: 10.0,
            busy_retries: 3,
            busy_backoff_ms: 200,
            refresh_ahead_s: 300,
            appsecret_file: None,
            appsecret_credential: "wechat-appsecret".to_string(),
        }
    }
}

/// `[backend]`: the store's backend (kind `relay`, and photo upload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// Base URL, e.g. `"https://hub.shop.example"`. Default unset (required by kind `relay`;
    /// with kind `official_account` each code minted is registered there, `PUT /v1/scenes/{scene}`).
    pub url: Option<String>,
    /// File holding this mirror's device token. Default unset: then
    /// `$CREDENTIALS_DIRECTORY/<device_token_credential>`, then `$MIRRORSIGHT_DEVICE_TOKEN`.
    pub device_token_file: Option<PathBuf>,
    /// systemd credential name of the device token. Default `"device-token"`.
    pub device_token_credential: String,
    /// Timeout of each request, seconds. Default 10.
    pub timeout_s: f64,
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            url: None,
            device_token_file: None,
            device_token_credential: "device-token".to_string(),
            timeout_s: 10.0,
        }
    }
}

/// The three sections together, as the QR service needs them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub qr: QrConfig,
    pub wechat: WechatConfig,
    pub backend: BackendConfig,
}

/// A request timeout from config; values `validate` would refuse fall back to 10 s.
fn timeout_or_default(seconds: f64) -> Duration {
    Duration::from_secs_f64(if seconds.is_finite() && seconds > 0.0 {
        seconds
    } else {
        10.0
    })
}

/// systemd credential names are file names inside `$CREDENTIALS_DIRECTORY`, never paths.
fn validate_credential_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if name.contains('/') {
        return Err(key_error(key, "a credential name, not a path"));
    }
    Ok(())
}

fn validate_timeout(key: &str, seconds: f64) -> Result<Duration, ConfigError> {
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 300.0 {
        return Err(key_error(
            key,
            format!("{seconds} is not in (0, 300] seconds"),
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// An `http://` or `https://` base URL, returned without its trailing `/`.
///
/// Plain `http://` is accepted for loopback hosts only (a test double or a proxy on this
/// machine): anywhere else the appsecret, the device token and the shopper's photos would cross
/// the network readable by anyone on the way.
pub(crate) fn validate_base_url(key: &str, url: &str) -> Result<String, ConfigError> {
    let trimmed = url.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .ok_or_else(|| key_error(key, format!("{url:?} must start with http:// or https://")))?;
    if rest.is_empty() || rest.contains(char::is_whitespace) || rest.contains(['?', '#']) {
        return Err(key_error(
            key,
            format!("{url:?} is not a base URL (host, optional path, no query)"),
        ));
    }
    let parsed =
        Url::parse(trimmed).map_err(|e| key_error(key, format!("{url:?} is not a URL: {e}")))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(key_error(
            key,
            format!(
                "{url:?} carries credentials: they belong in a credential file, not in the URL"
            ),
        ));
    }
    if parsed.scheme() == "http" && !is_loopback(&parsed) {
        return Err(key_error(
            key,
            format!(
                "{url:?} is plain http to another machine, where anyone on the network could read \
                 the credentials and photos sent there: use https:// (http:// is accepted for \
                 loopback only: 127.0.0.0/8, [::1], localhost)"
            ),
        ));
    }
    Ok(trimmed.to_string())
}

/// Whether `url` names this machine (127.0.0.0/8, `[::1]` or `localhost`). Anything that does
/// not parse counts as another machine.
pub fn is_loopback_url(url: &str) -> bool {
    Url::parse(url.trim()).is_ok_and(|u| is_loopback(&u))
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        None => false,
    }
}

impl QrConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        UrlTemplate::parse(&self.url_template)
            .map_err(|e| key_error("qr.url_template", e.to_string()))?;
        if self.kind == QrKind::OfficialAccount && !self.action_name.is_temporary() {
            // A permanent code per session spends the account's 100,000 for good, and
            // QR_LIMIT_SCENE's 1..100000 forces session ids through a hash where two sessions
            // can meet: one shopper would see another's photos.
            return Err(key_error(
                "qr.action_name",
                format!(
                    "{} is a permanent code; one per session must be temporary (QR_STR_SCENE or QR_SCENE)",
                    self.action_name.as_str()
                ),
            ));
        }
        if !(1..=crate::qrcode::MAX_EXPIRE_SECONDS).contains(&self.expire_seconds) {
            return Err(key_error(
                "qr.expire_seconds",
                format!(
                    "{} is not in 1..={}",
                    self.expire_seconds,
                    crate::qrcode::MAX_EXPIRE_SECONDS
                ),
            ));
        }
        if self.pool_size > 64 {
            return Err(key_error(
                "qr.pool_size",
                format!("{} is more than 64", self.pool_size),
            ));
        }
        if self.pool_size > 0 && self.pool_low_water >= self.pool_size {
            return Err(key_error(
                "qr.pool_low_water",
                format!(
                    "{} must be below qr.pool_size ({})",
                    self.pool_low_water, self.pool_size
                ),
            ));
        }
        if self.temporary_codes() && self.drop_before_expiry_s >= self.expire_seconds {
            return Err(key_error(
                "qr.drop_before_expiry_s",
                format!(
                    "{} must be below qr.expire_seconds ({})",
                    self.drop_before_expiry_s, self.expire_seconds
                ),
            ));
        }
        if !(1..=16).contains(&self.max_concurrent_mints) {
            return Err(key_error(
                "qr.max_concurrent_mints",
                format!("{} is not in 1..=16", self.max_concurrent_mints),
            ));
        }
        if !(1..=60_000).contains(&self.retry_initial_ms) {
            return Err(key_error(
                "qr.retry_initial_ms",
                format!("{} is not in 1..=60000", self.retry_initial_ms),
            ));
        }
        if !(1..=3600).contains(&self.retry_max_s) {
            return Err(key_error(
                "qr.retry_max_s",
                format!("{} is not in 1..=3600", self.retry_max_s),
            ));
        }
        if let Some(scene) = &self.idle_code {
            let len = scene.chars().count();
            if !(1..=mirrorsight_contract::backend::MAX_SCENE_LEN).contains(&len)
                || scene.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(key_error(
                    "qr.idle_code",
                    "must be 1..=64 characters without whitespace or control characters",
                ));
            }
        }
        if let Some(page) = &self.wxa_page {
            crate::wxa::validate_page(page).map_err(|e| key_error("qr.wxa_page", e.to_string()))?;
        }
        if !(crate::wxa::MIN_WIDTH..=crate::wxa::MAX_WIDTH).contains(&self.wxa_width) {
            return Err(key_error(
                "qr.wxa_width",
                format!(
                    "{} is not in {}..={}",
                    self.wxa_width,
                    crate::wxa::MIN_WIDTH,
                    crate::wxa::MAX_WIDTH
                ),
            ));
        }
        Ok(())
    }

    /// Whether this configuration mints codes that expire (and so must leave the pool early).
    pub fn temporary_codes(&self) -> bool {
        match self.kind {
            QrKind::OfficialAccount => self.action_name.is_temporary(),
            QrKind::Relay => true,
            QrKind::Url | QrKind::MiniProgram => false,
        }
    }

    pub(crate) fn retry_initial(&self) -> Duration {
        Duration::from_millis(self.retry_initial_ms)
    }

    pub(crate) fn retry_max(&self) -> Duration {
        Duration::from_secs(self.retry_max_s)
    }
}

impl WechatConfig {
    /// `required`: the chosen kind talks to WeChat, so the AppID must be there.
    pub fn validate(&self, required: bool) -> Result<(), ConfigError> {
        validate_base_url("wechat.api_base", &self.api_base)?;
        validate_base_url("wechat.mp_base", &self.mp_base)?;
        validate_base_url("wechat.oauth_base", &self.oauth_base)?;
        validate_timeout("wechat.timeout_s", self.timeout_s)?;
        if required && self.appid.trim().is_empty() {
            return Err(key_error(
                "wechat.appid",
                "required when qr.kind talks to WeChat",
            ));
        }
        if !self.appid.is_empty()
            && (self.appid.len() > 64
                || !self
                    .appid
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        {
            return Err(key_error(
                "wechat.appid",
                format!("{:?} is not an AppID (letters and digits)", self.appid),
            ));
        }
        if self.busy_retries > 10 {
            return Err(key_error(
                "wechat.busy_retries",
                format!("{} is more than 10", self.busy_retries),
            ));
        }
        if !(1..=10_000).contains(&self.busy_backoff_ms) {
            return Err(key_error(
                "wechat.busy_backoff_ms",
                format!("{} is not in 1..=10000", self.busy_backoff_ms),
            ));
        }
        if self.refresh_ahead_s > 3600 {
            return Err(key_error(
                "wechat.refresh_ahead_s",
                format!("{} is more than 3600", self.refresh_ahead_s),
            ));
        }
        validate_credential_name("wechat.appsecret_credential", &self.appsecret_credential)?;
        Ok(())
    }

    pub fn timeout(&self) -> Duration {
        timeout_or_default(self.timeout_s)
    }

    pub fn retry_policy(&self) -> crate::token::RetryPolicy {
        crate::token::RetryPolicy {
            busy_retries: self.busy_retries,
            busy_backoff: Duration::from_millis(self.busy_backoff_ms),
            busy_backoff_max: Duration::from_secs(2),
        }
    }

    pub fn token_policy(&self) -> crate::token::TokenPolicy {
        crate::token::TokenPolicy {
            refresh_ahead: Duration::from_secs(self.refresh_ahead_s),
            ..crate::token::TokenPolicy::default()
        }
    }
}

impl BackendConfig {
    /// `required`: the chosen kind is `relay`, so the URL must be there.
    pub fn validate(&self, required: bool) -> Result<(), ConfigError> {
        match &self.url {
            Some(url) => {
                validate_base_url("backend.url", url)?;
            }
            None if required => {
                return Err(key_error(
                    "backend.url",
                    "required when qr.kind = \"relay\"",
                ));
            }
            None => {}
        }
        validate_timeout("backend.timeout_s", self.timeout_s)?;
        validate_credential_name(
            "backend.device_token_credential",
            &self.device_token_credential,
        )?;
        Ok(())
    }

    pub fn timeout(&self) -> Duration {
        timeout_or_default(self.timeout_s)
    }
}

impl Settings {
    /// Checks every key, and those that the chosen `qr.kind` makes required.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.qr.validate()?;
        self.wechat.validate(self.qr.kind.needs_appsecret())?;
        self.backend.validate(self.qr.kind == QrKind::Relay)?;
        Ok(())
    }

    /// Loads the credentials the chosen kind needs, from files or the environment (see
    /// [`crate::secret`]). `env` is `|k| std::env::var(k).ok()` in production.
    pub fn load_secrets(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<crate::secret::Secrets, crate::secret::SecretError> {
        use crate::secret::{APPSECRET_ENV, DEVICE_TOKEN_ENV, SecretSpec, require_secret};
        let mut secrets = crate::secret::Secrets::default();
        if self.qr.kind.needs_appsecret() {
            let spec = SecretSpec {
                what: "WeChat appsecret",
                file_key: "wechat.appsecret_file",
                file: self.wechat.appsecret_file.as_deref(),
                credential: &self.wechat.appsecret_credential,
                env: APPSECRET_ENV,
            };
            let (secret, source) = require_secret(&spec, env)?;
            tracing::info!(%source, "WeChat appsecret loaded");
            secrets.appsecret = Some(secret);
        }
        // An official-account mirror with a hub registers its codes there, as a device.
        let registers = self.qr.kind == QrKind::OfficialAccount && self.backend.url.is_some();
        if self.qr.kind == QrKind::Relay || registers {
            let spec = SecretSpec {
                what: "device token",
                file_key: "backend.device_token_file",
                file: self.backend.device_token_file.as_deref(),
                credential: &self.backend.device_token_credential,
                env: DEVICE_TOKEN_ENV,
            };
            let (secret, source) = require_secret(&spec, env)?;
            tracing::info!(%source, "device token loaded");
            secrets.device_token = Some(secret);
        }
        Ok(secrets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(r: Result<(), ConfigError>) -> String {
        r.expect_err("must be refused").key
    }

    #[test]
    fn defaults_are_valid_and_offline() {
        let s = Settings::default();
        s.validate().unwrap();
        assert_eq!(s.qr.kind, QrKind::Url);
        assert_eq!(s.qr.url_template, "https://mirror.example/s/{scene}");
        assert_eq!(s.qr.expire_seconds, 3600);
        assert_eq!(s.wechat.api_base, "https://api.weixin.qq.com");
        assert_eq!(s.wechat.token_endpoint, TokenEndpoint::StableToken);
    }

    #[test]
    fn errors_name_the_full_key() {
        let mut s = Settings::default();
        s.qr.expire_seconds = 0;
        assert_eq!(key_of(s.validate()), "qr.expire_seconds");
        s.qr.expire_seconds = 2_592_001;
        assert_eq!(key_of(s.validate()), "qr.expire_seconds");

        let mut s = Settings::default();
        s.qr.url_template = "https://shop.example/s/".into();
        assert_eq!(key_of(s.validate()), "qr.url_template");

        let mut s = Settings::default();
        s.qr.pool_low_water = 3;
        assert_eq!(key_of(s.validate()), "qr.pool_low_water");

        let mut s = Settings::default();
        s.qr.kind = QrKind::OfficialAccount;
        s.qr.drop_before_expiry_s = 3600;
        assert_eq!(key_of(s.validate()), "qr.drop_before_expiry_s");

        let mut s = Settings::default();
        s.qr.kind = QrKind::OfficialAccount;
        assert_eq!(key_of(s.validate()), "wechat.appid");
        s.wechat.appid = "wx1234".into();
        s.wechat.timeout_s = 0.0;
        assert_eq!(key_of(s.validate()), "wechat.timeout_s");
        s.wechat.timeout_s = 2.0;
        s.wechat.api_base = "ftp://x".into();
        assert_eq!(key_of(s.validate()), "wechat.api_base");

        let mut s = Settings::default();
        s.qr.kind = QrKind::Relay;
        assert_eq!(key_of(s.validate()), "backend.url");
        s.backend.url = Some("http://127.0.0.1:9".into());
        s.validate().unwrap();

        let mut s = Settings::default();
        s.wechat.appid = "wx1234".into();
        s.wechat.mp_base = "http://mp.weixin.qq.com".into();
        assert_eq!(key_of(s.validate()), "wechat.mp_base");

        let mut s = Settings::default();
        s.qr.idle_code = Some("idle mirror".into());
        assert_eq!(key_of(s.validate()), "qr.idle_code");
        s.qr.idle_code = Some("i".repeat(65));
        assert_eq!(key_of(s.validate()), "qr.idle_code");
        s.qr.idle_code = Some("idle-mirror-7".into());
        s.validate().unwrap();

        // A permanent code per session is refused, whatever else is right.
        for permanent in [ActionName::QrLimitScene, ActionName::QrLimitStrScene] {
            let mut s = Settings::default();
            s.qr.kind = QrKind::OfficialAccount;
            s.wechat.appid = "wx1234".into();
            s.qr.action_name = permanent;
            let e = s.validate().expect_err("permanent code per session");
            assert_eq!(e.key, "qr.action_name");
            assert!(e.message.contains("temporary"), "{e}");
            s.qr.action_name = ActionName::QrScene;
            s.validate().unwrap();
        }

        let mut s = Settings::default();
        s.qr.wxa_width = 279;
        assert_eq!(key_of(s.validate()), "qr.wxa_width");
        s.qr.wxa_width = 1280;
        s.qr.wxa_page = Some("/pages/x".into());
        assert_eq!(key_of(s.validate()), "qr.wxa_page");
    }

    /// Plain http would hand the device token, the appsecret and the photos to anyone on the
    /// network path: only this machine may be spoken to without TLS.
    #[test]
    fn plain_http_is_for_loopback_only() {
        let relay = |url: &str| {
            let mut s = Settings::default();
            s.qr.kind = QrKind::Relay;
            s.backend.url = Some(url.into());
            s.validate()
        };
        for remote in [
            "http://hub.shop.example",
            "http://10.0.0.7:8080/api",
            "http://[2001:db8::1]/",
            "http://localhost.shop.example",
            "http://127.0.0.1.nip.io",
        ] {
            let e = relay(remote).expect_err(remote);
            assert_eq!(e.key, "backend.url", "{remote}");
            assert!(e.message.contains("https://"), "{e}");
        }
        for local in [
            "http://127.0.0.1:9",
            "http://127.1.2.3",
            "http://[::1]:8080/hub/",
            "http://localhost:1",
            "http://LOCALHOST",
            "https://hub.shop.example",
            "https://10.0.0.7:8443/api",
        ] {
            relay(local).unwrap_or_else(|e| panic!("{local}: {e}"));
        }
        let e = relay("https://mirror:pw@hub.shop.example").unwrap_err();
        assert!(e.message.contains("credentials"), "{e}");
        // The same rule for the WeChat bases: the appsecret travels to `api_base`.
        let mut s = Settings::default();
        s.wechat.api_base = "http://api.weixin.qq.com".into();
        assert_eq!(key_of(s.validate()), "wechat.api_base");
        s.wechat.api_base = "http://127.0.0.1:8".into();
        s.validate().unwrap();

        assert!(is_loopback_url("http://127.0.0.1:9/x"));
        assert!(is_loopback_url("https://[::1]"));
        assert!(!is_loopback_url("https://hub.shop.example"));
        assert!(!is_loopback_url("not a url"));
    }

    /// The README's reference block is the defaults, and parses as the daemon will parse it.
    #[test]
    fn readme_reference_is_the_defaults() {
        let readme = include_str!("../README.md");
        let start = readme.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let block = &readme[start..start + readme[start..].find("```").expect("closed")];
        let parsed: Settings = toml::from_str(block).expect("README toml parses");
        assert_eq!(parsed, Settings::default());
    }

    #[test]
    fn toml_shape_and_unknown_keys() {
        let s: Settings = serde_json::from_value(serde_json::json!({
            "qr": {"kind": "official_account", "action_name": "QR_SCENE", "wxa_env_version": "trial"},
            "wechat": {"token_endpoint": "token", "appid": "wxabc"}
        }))
        .unwrap();
        assert_eq!(s.qr.action_name, ActionName::QrScene);
        assert_eq!(s.qr.wxa_env_version, EnvVersion::Trial);
        assert_eq!(s.wechat.token_endpoint, TokenEndpoint::Token);
        let bad =
            serde_json::from_value::<Settings>(serde_json::json!({"wechat": {"appsecret": "x"}}));
        assert!(
            bad.is_err(),
            "an appsecret key in the main config must be refused"
        );
    }
}
