//! Scene QR codes for mirrorsight: every shopper session shows its own code, and scanning it
//! leads to that session's photos.
//!
//! - [`QrService`]: what the daemon calls. Instant codes from a pre-minted pool, live minting
//!   with backoff when the pool is empty, a durable session ↔ scene [`binding`] log.
//! - [`Minter`]: one front over the four kinds (`url`, `official_account`, `mini_program`,
//!   `relay`), returning a [`MintedCode`].
//! - [`WechatClient`]: `cgi-bin/qrcode/create`, `showqrcode`, `wxa/getwxacodeunlimit`, with the
//!   access token handled by the sans-IO [`token`] core (single-flight, refresh ahead, one
//!   retry on a token error, bounded backoff on `-1`).
//! - [`RelayClient`]: `POST {backend}/v1/scenes` for mirrors that hold no appsecret.
//! - [`config`]: the `[qr]`, `[wechat]` and `[backend]` sections; [`secret`]: credentials from
//!   files, systemd credentials or the environment, never printed.
//!
//! The WeChat facts this follows are in `shared/notes/wechat-api.md`; the backend contract in
//! `docs/openapi.yaml` and `mirrorsight_contract::backend`.

pub mod binding;
pub mod client;
pub mod config;
pub mod error;
mod http;
mod idle;
pub mod minter;
pub mod pool;
pub mod qrcode;
pub mod relay;
pub mod secret;
pub mod service;
pub mod sns;
pub mod token;
pub mod url;
pub mod wxa;

pub use binding::{Binding, BindingLog, BindingLogContents, BindingLogError};
pub use client::{NewsArticle, WechatClient};
pub use config::{
    BackendConfig, ConfigError, QrConfig, QrKind, Settings, TokenEndpoint, WechatConfig,
};
pub use error::Error;
pub use minter::{MintedCode, Minter};
pub use mirrorsight_contract::events::QrSource;
pub use pool::{PoolSettings, ScenePool};
pub use qrcode::{ActionName, QrCodeRequest, QrCodeTicket, SceneValue};
pub use relay::RelayClient;
pub use secret::{Secret, SecretError, Secrets};
pub use service::{
    CodeOutcome, IdGenerator, QrService, QrStatus, QrUpdate, ShutdownReport, StartError,
};
pub use sns::{MiniProgramIdentity, OauthIdentity, SnsClient};
pub use url::UrlTemplate;
pub use wxa::{EnvVersion, WxaCode, WxaCodeRequest};
