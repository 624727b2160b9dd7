//! Official-account scene codes (`cgi-bin/qrcode/create`): the request, checked against every
//! documented limit before it is sent, and the answer.

use serde::{Deserialize, Serialize};

use crate::error::Error;

pub const MAX_EXPIRE_SECONDS: u32 = 2_592_000;
pub const MAX_TEMPORARY_SCENE_ID: u32 = 2_147_483_647;
pub const MAX_PERMANENT_SCENE_ID: u32 = 100_000;
pub const MAX_SCENE_STR_CHARS: usize = 64;

/// `action_name` of `qrcode/create`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ActionName {
    /// Temporary, numeric scene.
    #[serde(rename = "QR_SCENE")]
    QrScene,
    /// Temporary, string scene.
    #[default]
    #[serde(rename = "QR_STR_SCENE")]
    QrStrScene,
    /// Permanent, numeric scene 1..=100000.
    #[serde(rename = "QR_LIMIT_SCENE")]
    QrLimitScene,
    /// Permanent, string scene.
    #[serde(rename = "QR_LIMIT_STR_SCENE")]
    QrLimitStrScene,
}

impl ActionName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QrScene => "QR_SCENE",
            Self::QrStrScene => "QR_STR_SCENE",
            Self::QrLimitScene => "QR_LIMIT_SCENE",
            Self::QrLimitStrScene => "QR_LIMIT_STR_SCENE",
        }
    }

    pub fn is_temporary(self) -> bool {
        matches!(self, Self::QrScene | Self::QrStrScene)
    }

    pub fn uses_scene_id(self) -> bool {
        matches!(self, Self::QrScene | Self::QrLimitScene)
    }

    /// Largest `scene_id` this action accepts.
    pub fn max_scene_id(self) -> u32 {
        if self.is_temporary() {
            MAX_TEMPORARY_SCENE_ID
        } else {
            MAX_PERMANENT_SCENE_ID
        }
    }

    /// The scene a code of this action carries for an id such as a session id.
    ///
    /// String actions carry the id itself. Numeric actions carry a decimal number: the id
    /// itself when it already is one in range, else a stable hash of it into the range. The
    /// binding log records whichever scene was used, so a scan still finds its session.
    pub fn scene_for_id(self, id: &str) -> String {
        if !self.uses_scene_id() {
            return id.to_string();
        }
        let max = self.max_scene_id();
        if let Ok(n) = id.parse::<u32>()
            && (1..=max).contains(&n)
        {
            return n.to_string();
        }
        (fnv1a64(id.as_bytes()) % u64::from(max) + 1).to_string()
    }
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The scene inside `action_info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum SceneValue {
    #[serde(rename = "scene_id")]
    Id(u32),
    #[serde(rename = "scene_str")]
    Str(String),
}

/// A checked `qrcode/create` request. Construct with [`QrCodeRequest::new`]; a value of this
/// type always satisfies the documented limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrCodeRequest {
    action: ActionName,
    scene: SceneValue,
    expire_seconds: Option<u32>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    expire_seconds: Option<u32>,
    action_name: &'static str,
    action_info: ActionInfo<'a>,
}

#[derive(Serialize)]
struct ActionInfo<'a> {
    // Without this wrapper WeChat accepts the request and mints a code with scene 0.
    scene: SceneField<'a>,
}

#[derive(Serialize)]
struct SceneField<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    scene_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scene_str: Option<&'a str>,
}

impl QrCodeRequest {
    /// Checks every limit; the error names the offending field.
    pub fn new(
        action: ActionName,
        scene: SceneValue,
        expire_seconds: Option<u32>,
    ) -> Result<Self, Error> {
        match (action.is_temporary(), expire_seconds) {
            (true, None) => {
                // The documented default is 30 s or 60 s depending on the page: never rely on it.
                return Err(Error::invalid(
                    "expire_seconds",
                    format!("required for {}", action.as_str()),
                ));
            }
            (true, Some(s)) if !(1..=MAX_EXPIRE_SECONDS).contains(&s) => {
                return Err(Error::invalid(
                    "expire_seconds",
                    format!("{s} is not in 1..={MAX_EXPIRE_SECONDS}"),
                ));
            }
            (false, Some(_)) => {
                return Err(Error::invalid(
                    "expire_seconds",
                    format!(
                        "{} codes are permanent and take no expire_seconds",
                        action.as_str()
                    ),
                ));
            }
            _ => {}
        }
        match (&scene, action.uses_scene_id()) {
            (SceneValue::Id(id), true) => {
                let max = action.max_scene_id();
                if !(1..=max).contains(id) {
                    return Err(Error::invalid(
                        "scene_id",
                        format!("{id} is not in 1..={max} for {}", action.as_str()),
                    ));
                }
            }
            (SceneValue::Str(s), false) => {
                let chars = s.chars().count();
                if !(1..=MAX_SCENE_STR_CHARS).contains(&chars) {
                    return Err(Error::invalid(
                        "scene_str",
                        format!("{chars} characters, must be 1..={MAX_SCENE_STR_CHARS}"),
                    ));
                }
                if s.chars().any(char::is_control) {
                    return Err(Error::invalid("scene_str", "contains control characters"));
                }
            }
            (SceneValue::Id(_), false) => {
                return Err(Error::invalid(
                    "scene_str",
                    format!("{} takes scene_str, not scene_id", action.as_str()),
                ));
            }
            (SceneValue::Str(_), true) => {
                return Err(Error::invalid(
                    "scene_id",
                    format!("{} takes scene_id, not scene_str", action.as_str()),
                ));
            }
        }
        Ok(Self {
            action,
            scene,
            expire_seconds,
        })
    }

    /// For a scene given as text (the form sessions and the CLI use): numeric actions need a
    /// decimal `scene_id`.
    pub fn from_scene(
        action: ActionName,
        scene: &str,
        expire_seconds: Option<u32>,
    ) -> Result<Self, Error> {
        let value = if action.uses_scene_id() {
            let id = scene.parse::<u32>().map_err(|_| {
                Error::invalid(
                    "scene_id",
                    format!("{scene:?} is not a number for {}", action.as_str()),
                )
            })?;
            SceneValue::Id(id)
        } else {
            SceneValue::Str(scene.to_string())
        };
        Self::new(action, value, expire_seconds)
    }

    pub fn action(&self) -> ActionName {
        self.action
    }

    pub fn expire_seconds(&self) -> Option<u32> {
        self.expire_seconds
    }

    /// The scene as text (decimal for numeric scenes), as the scan event will carry it.
    pub fn scene_text(&self) -> String {
        match &self.scene {
            SceneValue::Id(id) => id.to_string(),
            SceneValue::Str(s) => s.clone(),
        }
    }

    /// The exact JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        let (scene_id, scene_str) = match &self.scene {
            SceneValue::Id(id) => (Some(*id), None),
            SceneValue::Str(s) => (None, Some(s.as_str())),
        };
        let body = Body {
            expire_seconds: self.expire_seconds,
            action_name: self.action.as_str(),
            action_info: ActionInfo {
                scene: SceneField {
                    scene_id,
                    scene_str,
                },
            },
        };
        // Serialising plain strings and integers cannot fail.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// The answer of `qrcode/create`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QrCodeTicket {
    /// Exchangeable for the image at `showqrcode`.
    pub ticket: String,
    /// Seconds the code lives; absent for permanent codes.
    #[serde(default)]
    pub expire_seconds: Option<u32>,
    /// The code's content: render it as a QR locally.
    pub url: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: &QrCodeRequest) -> String {
        String::from_utf8(r.to_json()).unwrap()
    }

    #[test]
    fn exact_bodies_for_each_action() {
        let r = QrCodeRequest::from_scene(ActionName::QrStrScene, "abc", Some(3600)).unwrap();
        assert_eq!(
            body(&r),
            r#"{"expire_seconds":3600,"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":"abc"}}}"#
        );
        let r = QrCodeRequest::from_scene(ActionName::QrScene, "123", Some(60)).unwrap();
        assert_eq!(
            body(&r),
            r#"{"expire_seconds":60,"action_name":"QR_SCENE","action_info":{"scene":{"scene_id":123}}}"#
        );
        let r = QrCodeRequest::from_scene(ActionName::QrLimitScene, "100000", None).unwrap();
        assert_eq!(
            body(&r),
            r#"{"action_name":"QR_LIMIT_SCENE","action_info":{"scene":{"scene_id":100000}}}"#
        );
        let r = QrCodeRequest::from_scene(ActionName::QrLimitStrScene, "shelf-7", None).unwrap();
        assert_eq!(
            body(&r),
            r#"{"action_name":"QR_LIMIT_STR_SCENE","action_info":{"scene":{"scene_str":"shelf-7"}}}"#
        );
    }

    fn field(r: Result<QrCodeRequest, Error>) -> &'static str {
        match r {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn limits_name_the_field() {
        use ActionName::*;
        assert_eq!(
            field(QrCodeRequest::from_scene(QrStrScene, "a", None)),
            "expire_seconds"
        );
        assert_eq!(
            field(QrCodeRequest::from_scene(QrStrScene, "a", Some(0))),
            "expire_seconds"
        );
        assert_eq!(
            field(QrCodeRequest::from_scene(QrStrScene, "a", Some(2_592_001))),
            "expire_seconds"
        );
        assert!(QrCodeRequest::from_scene(QrStrScene, "a", Some(2_592_000)).is_ok());
        assert_eq!(
            field(QrCodeRequest::from_scene(QrLimitStrScene, "a", Some(60))),
            "expire_seconds"
        );
        assert_eq!(
            field(QrCodeRequest::from_scene(QrStrScene, "", Some(60))),
            "scene_str"
        );
        assert_eq!(
            field(QrCodeRequest::from_scene(
                QrStrScene,
                &"x".repeat(65),
                Some(60)
            )),
            "scene_str"
        );
        assert!(QrCodeRequest::from_scene(QrStrScene, &"x".repeat(64), Some(60)).is_ok());
        assert!(
            QrCodeRequest::from_scene(QrStrScene, &"门".repeat(64), Some(60)).is_ok(),
            "characters, not bytes"
        );
        assert_eq!(
            field(QrCodeRequest::from_scene(QrScene, "0", Some(60))),
            "scene_id"
        );
        assert_eq!(
            field(QrCodeRequest::from_scene(QrScene, "2147483648", Some(60))),
            "scene_id"
        );
        assert!(QrCodeRequest::from_scene(QrScene, "2147483647", Some(60)).is_ok());
        assert_eq!(
            field(QrCodeRequest::from_scene(QrLimitScene, "100001", None)),
            "scene_id"
        );
        assert_eq!(
            field(QrCodeRequest::from_scene(QrLimitScene, "abc", None)),
            "scene_id"
        );
        assert_eq!(
            field(QrCodeRequest::new(QrStrScene, SceneValue::Id(5), Some(60))),
            "scene_str"
        );
    }

    #[test]
    fn numeric_scenes_from_ids_are_stable_and_in_range() {
        let a = ActionName::QrScene.scene_for_id("kJ3x_Zq8R0aUe-1mVbN4wA");
        assert_eq!(
            a,
            ActionName::QrScene.scene_for_id("kJ3x_Zq8R0aUe-1mVbN4wA")
        );
        let n: u32 = a.parse().unwrap();
        assert!((1..=MAX_TEMPORARY_SCENE_ID).contains(&n));
        let p: u32 = ActionName::QrLimitScene
            .scene_for_id("kJ3x_Zq8R0aUe-1mVbN4wA")
            .parse()
            .unwrap();
        assert!((1..=MAX_PERMANENT_SCENE_ID).contains(&p));
        assert_eq!(ActionName::QrScene.scene_for_id("42"), "42");
        assert_eq!(ActionName::QrStrScene.scene_for_id("abc"), "abc");
    }
}
