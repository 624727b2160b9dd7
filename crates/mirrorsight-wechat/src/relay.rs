//! The relay client: a mirror without the appsecret asks the store backend for its codes.
//!
//! One attempt per call: retrying is the caller's business (the pool and the pending-session
//! loop retry with backoff), so a down backend costs one request per backoff step.

use std::time::Duration;

use mirrorsight_contract::backend::{
    CreateSceneRequest, CreateSceneResponse, ErrorBody, MAX_EXPIRE_SECONDS, MAX_SCENE_LEN,
    RegisterSceneRequest, SCENES_PATH, SceneKind, scene_path,
};

use crate::config::{BackendConfig, validate_base_url};
use crate::error::Error;
use crate::http::{self, RawResponse};
use crate::secret::Secret;

pub(crate) const SCENES_ENDPOINT: &str = "POST /v1/scenes";
pub(crate) const REGISTER_ENDPOINT: &str = "PUT /v1/scenes/{scene}";

/// Client of `POST {backend}/v1/scenes`.
#[derive(Debug, Clone)]
pub struct RelayClient {
    http: reqwest::Client,
    base: String,
    device_token: Secret,
    timeout: Duration,
}

impl RelayClient {
    pub fn new(config: &BackendConfig, device_token: Secret) -> Result<Self, Error> {
        let url = config
            .url
            .as_deref()
            .ok_or_else(|| Error::Client("backend.url is not set".into()))?;
        let base =
            validate_base_url("backend.url", url).map_err(|e| Error::Client(e.to_string()))?;
        let timeout = config.timeout();
        Ok(Self {
            http: http::build_client(timeout)?,
            base,
            device_token,
            timeout,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Tells the backend about a code this mirror minted at WeChat itself
    /// (`PUT /v1/scenes/{scene}`), so a scan of it finds the session before any photo has.
    pub async fn register_scene(
        &self,
        scene: &str,
        code: &RegisterSceneRequest,
    ) -> Result<CreateSceneResponse, Error> {
        check_scene(scene)?;
        let request = self
            .http
            .put(format!("{}{}", self.base, scene_path(scene)))
            .bearer_auth(self.device_token.expose())
            .json(code);
        let raw = http::send(REGISTER_ENDPOINT, request, self.timeout, http::JSON_LIMIT).await?;
        parse_scene_answer(REGISTER_ENDPOINT, scene, &raw)
    }

    /// Asks the backend to mint a temporary code for `scene`.
    pub async fn create_scene(
        &self,
        scene: &str,
        expire_seconds: u32,
    ) -> Result<CreateSceneResponse, Error> {
        self.create_scene_of_kind(scene, expire_seconds, SceneKind::Session)
            .await
    }

    /// Asks the backend for this mirror's permanent idle code (minted once per scene there).
    pub async fn create_idle_scene(&self, scene: &str) -> Result<CreateSceneResponse, Error> {
        self.create_scene_of_kind(scene, MAX_EXPIRE_SECONDS, SceneKind::Idle)
            .await
    }

    async fn create_scene_of_kind(
        &self,
        scene: &str,
        expire_seconds: u32,
        kind: SceneKind,
    ) -> Result<CreateSceneResponse, Error> {
        check_scene(scene)?;
        if !(1..=MAX_EXPIRE_SECONDS).contains(&expire_seconds) {
            return Err(Error::invalid(
                "expire_seconds",
                format!("{expire_seconds} is not in 1..={MAX_EXPIRE_SECONDS}"),
            ));
        }
        let body = CreateSceneRequest {
            scene: scene.to_string(),
            expire_seconds,
            kind,
        };
        let request = self
            .http
            .post(format!("{}{SCENES_PATH}", self.base))
            .bearer_auth(self.device_token.expose())
            .json(&body);
        let raw = http::send(SCENES_ENDPOINT, request, self.timeout, http::JSON_LIMIT).await?;
        parse_scene_answer(SCENES_ENDPOINT, scene, &raw)
    }
}

/// A scene the contract allows: 1..=64 characters, no whitespace or control characters.
fn check_scene(scene: &str) -> Result<(), Error> {
    let len = scene.chars().count();
    if !(1..=MAX_SCENE_LEN).contains(&len) {
        return Err(Error::invalid(
            "scene",
            format!("{len} characters, must be 1..={MAX_SCENE_LEN}"),
        ));
    }
    if scene.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::invalid(
            "scene",
            "contains whitespace or control characters",
        ));
    }
    Ok(())
}

fn parse_scene_answer(
    endpoint: &'static str,
    scene: &str,
    raw: &RawResponse,
) -> Result<CreateSceneResponse, Error> {
    let malformed = |detail: String| Error::MalformedResponse {
        endpoint,
        status: raw.status,
        detail,
    };
    if raw.status == 200 || raw.status == 201 {
        let answer: CreateSceneResponse = serde_json::from_slice(&raw.body).map_err(|e| {
            if raw.looks_like_json() || raw.body.first() == Some(&b'{') {
                malformed(format!("{e}: {}", http::snippet(&raw.body)))
            } else {
                http::unexpected_body(endpoint, raw, "JSON")
            }
        })?;
        if answer.scene != scene {
            return Err(malformed(format!(
                "answered for scene {:?}, asked for {scene:?}",
                answer.scene
            )));
        }
        if answer.url.is_empty() {
            return Err(malformed("empty url".into()));
        }
        return Ok(answer);
    }
    if raw.is_success() {
        return Err(malformed(format!(
            "unexpected success status {}",
            raw.status
        )));
    }
    match serde_json::from_slice::<ErrorBody>(&raw.body) {
        Ok(body) => Err(Error::Backend {
            endpoint,
            status: raw.status,
            code: body.error,
            message: http::snippet(body.message.as_bytes()),
            retry_after: raw.retry_after,
        }),
        _ => Err(http::unexpected_body(endpoint, raw, "JSON")),
    }
}
