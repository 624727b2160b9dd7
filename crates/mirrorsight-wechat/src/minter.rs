//! One front over the four ways to get a scene code.

use std::time::{SystemTime, UNIX_EPOCH};

use mirrorsight_contract::backend::{RegisterSceneRequest, SceneKind};

use crate::client::WechatClient;
use crate::config::{QrKind, Settings};
use crate::error::Error;
use crate::qrcode::{ActionName, QrCodeRequest};
use crate::relay::RelayClient;
use crate::secret::Secrets;
use crate::url::UrlTemplate;
use crate::wxa::{EnvVersion, WxaCodeRequest};

/// A code ready to show.
#[derive(Clone, PartialEq, Eq)]
pub struct MintedCode {
    /// What a scan reports back (`EventKey`), and what photos are filed under.
    pub scene: String,
    /// The QR's content, to render locally. `None` for mini-program codes (see `image`).
    pub url: Option<String>,
    /// WeChat's ticket (official-account codes, and relay codes when the backend has one).
    pub ticket: Option<String>,
    /// The code as an image: mini-program codes always, official-account codes with
    /// `qr.fetch_image`.
    pub image: Option<Vec<u8>>,
    /// When the code stops working, unix seconds; `None` for codes that do not expire.
    pub expires_at: Option<u64>,
    /// The code's lifetime as minted; `None` for codes that do not expire.
    pub expire_seconds: Option<u32>,
}

impl std::fmt::Debug for MintedCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedCode")
            .field("scene", &self.scene)
            .field("url", &self.url)
            .field("ticket", &self.ticket)
            .field("image_bytes", &self.image.as_ref().map(Vec::len))
            .field("expires_at", &self.expires_at)
            .field("expire_seconds", &self.expire_seconds)
            .finish()
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Debug, Clone)]
enum Kind {
    Url {
        template: UrlTemplate,
    },
    OfficialAccount {
        client: WechatClient,
        action: ActionName,
        expire_seconds: u32,
        fetch_image: bool,
        /// With `backend.url`: the store's hub, told each code minted (`PUT /v1/scenes/{scene}`)
        /// so a scan of it binds before any photo has arrived.
        register: Option<RelayClient>,
    },
    MiniProgram {
        client: WechatClient,
        page: Option<String>,
        width: u32,
        env_version: EnvVersion,
        check_path: bool,
    },
    Relay {
        client: RelayClient,
        expire_seconds: u32,
    },
}

/// Mints scene codes of the configured kind. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Minter {
    kind: Kind,
}

impl Minter {
    /// The minter `settings` describe, with the credentials it needs from `secrets`. Call
    /// [`Settings::validate`] first; this only repeats the checks it cannot do without.
    pub fn from_settings(settings: &Settings, secrets: &Secrets) -> Result<Self, Error> {
        let qr = &settings.qr;
        let appsecret = || {
            secrets.appsecret.clone().ok_or_else(|| {
                Error::Client(format!(
                    "qr.kind = {:?} needs the WeChat appsecret",
                    qr.kind.as_str()
                ))
            })
        };
        let kind = match qr.kind {
            QrKind::Url => Kind::Url {
                template: UrlTemplate::parse(&qr.url_template)
                    .map_err(|e| Error::Client(format!("qr.url_template: {e}")))?,
            },
            QrKind::OfficialAccount => Kind::OfficialAccount {
                client: WechatClient::new(&settings.wechat, appsecret()?)?,
                action: qr.action_name,
                expire_seconds: qr.expire_seconds,
                fetch_image: qr.fetch_image,
                register: match (&settings.backend.url, &secrets.device_token) {
                    (Some(_), Some(token)) => {
                        Some(RelayClient::new(&settings.backend, token.clone())?)
                    }
                    (Some(_), None) => {
                        return Err(Error::Client(
                            "qr.kind = \"official_account\" with backend.url needs the device token (codes are registered with the hub)".into(),
                        ));
                    }
                    (None, _) => None,
                },
            },
            QrKind::MiniProgram => Kind::MiniProgram {
                client: WechatClient::new(&settings.wechat, appsecret()?)?,
                page: qr.wxa_page.clone(),
                width: qr.wxa_width,
                env_version: qr.wxa_env_version,
                check_path: qr.wxa_check_path,
            },
            QrKind::Relay => {
                let token = secrets.device_token.clone().ok_or_else(|| {
                    Error::Client("qr.kind = \"relay\" needs the device token".into())
                })?;
                Kind::Relay {
                    client: RelayClient::new(&settings.backend, token)?,
                    expire_seconds: qr.expire_seconds,
                }
            }
        };
        Ok(Self { kind })
    }

    pub fn url(template: UrlTemplate) -> Self {
        Self {
            kind: Kind::Url { template },
        }
    }

    pub fn official_account(
        client: WechatClient,
        action: ActionName,
        expire_seconds: u32,
        fetch_image: bool,
    ) -> Self {
        Self {
            kind: Kind::OfficialAccount {
                client,
                action,
                expire_seconds,
                fetch_image,
                register: None,
            },
        }
    }

    pub fn mini_program(
        client: WechatClient,
        page: Option<String>,
        width: u32,
        env_version: EnvVersion,
        check_path: bool,
    ) -> Self {
        Self {
            kind: Kind::MiniProgram {
                client,
                page,
                width,
                env_version,
                check_path,
            },
        }
    }

    pub fn relay(client: RelayClient, expire_seconds: u32) -> Self {
        Self {
            kind: Kind::Relay {
                client,
                expire_seconds,
            },
        }
    }

    pub fn kind(&self) -> QrKind {
        match self.kind {
            Kind::Url { .. } => QrKind::Url,
            Kind::OfficialAccount { .. } => QrKind::OfficialAccount,
            Kind::MiniProgram { .. } => QrKind::MiniProgram,
            Kind::Relay { .. } => QrKind::Relay,
        }
    }

    /// The scene a code of this kind carries for `id` (a session id or a generated pool id):
    /// the id itself, except for numeric official-account scenes (see
    /// [`ActionName::scene_for_id`]).
    pub fn scene_for_id(&self, id: &str) -> String {
        match &self.kind {
            Kind::OfficialAccount { action, .. } => action.scene_for_id(id),
            _ => id.to_string(),
        }
    }

    /// Mints a code for `scene`. Only the `url` kind never touches the network.
    pub async fn mint(&self, scene: &str) -> Result<MintedCode, Error> {
        match &self.kind {
            Kind::Url { .. } => self.render_url(scene),
            Kind::OfficialAccount {
                client,
                action,
                expire_seconds,
                fetch_image,
                register,
            } => {
                let temporary = action.is_temporary();
                let request = QrCodeRequest::from_scene(
                    *action,
                    scene,
                    temporary.then_some(*expire_seconds),
                )?;
                let ticket = client.create_qrcode(&request).await?;
                let lifetime = temporary.then(|| ticket.expire_seconds.unwrap_or(*expire_seconds));
                let image = if *fetch_image {
                    match client.show_qrcode(&ticket.ticket).await {
                        Ok(image) => Some(image),
                        Err(e) => {
                            // The url renders the same code locally: an image is a nicety,
                            // not worth throwing a minted code away for.
                            tracing::warn!(error = %e, "showqrcode failed; the code's url is still usable");
                            None
                        }
                    }
                } else {
                    None
                };
                let code = MintedCode {
                    scene: request.scene_text(),
                    url: Some(ticket.url),
                    ticket: Some(ticket.ticket),
                    image,
                    expires_at: lifetime.map(|s| unix_now() + u64::from(s)),
                    expire_seconds: lifetime,
                };
                if let Some(hub) = register {
                    // A code the hub does not know answers a scan with "expired": better
                    // not shown at all. The caller retries the mint with backoff.
                    hub.register_scene(
                        &code.scene,
                        &RegisterSceneRequest {
                            url: code.url.clone().unwrap_or_default(),
                            ticket: code.ticket.clone(),
                            expires_at: code.expires_at,
                            kind: SceneKind::Session,
                        },
                    )
                    .await?;
                }
                Ok(code)
            }
            Kind::MiniProgram {
                client,
                page,
                width,
                env_version,
                check_path,
            } => {
                let request =
                    WxaCodeRequest::new(scene, page.as_deref(), *width, *env_version, *check_path)?;
                let code = client.get_wxacode_unlimit(&request).await?;
                Ok(MintedCode {
                    scene: scene.to_string(),
                    url: None,
                    ticket: None,
                    image: Some(code.image),
                    expires_at: None,
                    expire_seconds: None,
                })
            }
            Kind::Relay {
                client,
                expire_seconds,
            } => {
                let answer = client.create_scene(scene, *expire_seconds).await?;
                // Trust the backend's expiry only where it shortens the lifetime and agrees
                // with our clock; a skewed kiosk clock must not make every code look dead.
                let remaining = answer.expires_at.saturating_sub(unix_now());
                let lifetime = match u32::try_from(remaining) {
                    Ok(r) if r > 0 && r < *expire_seconds => r,
                    _ => *expire_seconds,
                };
                Ok(MintedCode {
                    scene: answer.scene,
                    url: Some(answer.url),
                    ticket: answer.ticket,
                    image: None,
                    expires_at: Some(answer.expires_at),
                    expire_seconds: Some(lifetime),
                })
            }
        }
    }

    /// This mirror's permanent idle code for `scene` (`qr.idle_code`): a `QR_LIMIT_STR_SCENE`
    /// (registered with the hub as `idle` when there is one), the hub's idle code in relay
    /// mode, a mini-program code (those never expire), or the rendered URL.
    pub async fn mint_idle(&self, scene: &str) -> Result<MintedCode, Error> {
        match &self.kind {
            Kind::Url { .. } | Kind::MiniProgram { .. } => self.mint(scene).await,
            Kind::OfficialAccount {
                client, register, ..
            } => {
                let request = QrCodeRequest::from_scene(ActionName::QrLimitStrScene, scene, None)?;
                let ticket = client.create_qrcode(&request).await?;
                let code = MintedCode {
                    scene: request.scene_text(),
                    url: Some(ticket.url),
                    ticket: Some(ticket.ticket),
                    image: None,
                    expires_at: None,
                    expire_seconds: None,
                };
                if let Some(hub) = register {
                    hub.register_scene(
                        &code.scene,
                        &RegisterSceneRequest {
                            url: code.url.clone().unwrap_or_default(),
                            ticket: code.ticket.clone(),
                            expires_at: None,
                            kind: SceneKind::Idle,
                        },
                    )
                    .await?;
                }
                Ok(code)
            }
            Kind::Relay { client, .. } => {
                let answer = client.create_idle_scene(scene).await?;
                Ok(MintedCode {
                    scene: answer.scene,
                    url: Some(answer.url),
                    ticket: answer.ticket,
                    image: None,
                    expires_at: None,
                    expire_seconds: None,
                })
            }
        }
    }

    /// For the `url` kind: the code, without any I/O. `None` for the other kinds.
    pub fn render_offline(&self, scene: &str) -> Option<MintedCode> {
        match &self.kind {
            Kind::Url { .. } => self.render_url(scene).ok(),
            _ => None,
        }
    }

    fn render_url(&self, scene: &str) -> Result<MintedCode, Error> {
        let Kind::Url { template } = &self.kind else {
            return Err(Error::Internal("render_url on a network kind".into()));
        };
        if scene.is_empty() {
            return Err(Error::invalid("scene", "empty"));
        }
        Ok(MintedCode {
            scene: scene.to_string(),
            url: Some(template.render(scene)),
            ticket: None,
            image: None,
            expires_at: None,
            expire_seconds: None,
        })
    }
}
