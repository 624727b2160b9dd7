//! Mini-program codes (`wxa/getwxacodeunlimit`): the request and its limits.

use serde::{Deserialize, Serialize};

use crate::error::Error;

pub const MAX_SCENE_CHARS: usize = 32;
pub const MIN_WIDTH: u32 = 280;
pub const MAX_WIDTH: u32 = 1280;
pub const DEFAULT_WIDTH: u32 = 430;

/// Punctuation WeChat allows in a mini-program scene besides ASCII letters and digits.
const SCENE_PUNCTUATION: &str = "!#$&'()*+,/:;=?@-._~";

/// `env_version`: which build of the mini-program the code opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvVersion {
    #[default]
    Release,
    Trial,
    Develop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct LineColor {
    pub r: u8,
    pub g: u8,
    pub b: u8,
}

/// A checked `getwxacodeunlimit` request. Field order is the wire order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WxaCodeRequest {
    scene: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<String>,
    check_path: bool,
    env_version: EnvVersion,
    width: u32,
    auto_color: bool,
    line_color: LineColor,
    is_hyaline: bool,
}

pub(crate) fn validate_scene(scene: &str) -> Result<(), Error> {
    let chars = scene.chars().count();
    if !(1..=MAX_SCENE_CHARS).contains(&chars) {
        return Err(Error::invalid(
            "scene",
            format!("{chars} characters, must be 1..={MAX_SCENE_CHARS}"),
        ));
    }
    if let Some(bad) = scene
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !SCENE_PUNCTUATION.contains(*c))
    {
        return Err(Error::invalid(
            "scene",
            format!("character {bad:?} is not allowed (0-9A-Za-z{SCENE_PUNCTUATION})"),
        ));
    }
    Ok(())
}

pub(crate) fn validate_page(page: &str) -> Result<(), Error> {
    if page.is_empty() {
        return Err(Error::invalid(
            "page",
            "empty (leave it unset for the home page)",
        ));
    }
    if page.starts_with('/') {
        return Err(Error::invalid("page", "must not start with '/'"));
    }
    if page.contains(['?', '#']) {
        return Err(Error::invalid(
            "page",
            "must not carry a query; the scene is the parameter",
        ));
    }
    if page.chars().any(|c| c.is_whitespace() || c.is_control()) || page.len() > 256 {
        return Err(Error::invalid("page", "not a page path"));
    }
    Ok(())
}

impl WxaCodeRequest {
    /// Checks the scene, page and width; errors name the field.
    pub fn new(
        scene: &str,
        page: Option<&str>,
        width: u32,
        env_version: EnvVersion,
        check_path: bool,
    ) -> Result<Self, Error> {
        validate_scene(scene)?;
        if let Some(p) = page {
            validate_page(p)?;
        }
        if !(MIN_WIDTH..=MAX_WIDTH).contains(&width) {
            return Err(Error::invalid(
                "width",
                format!("{width} is not in {MIN_WIDTH}..={MAX_WIDTH}"),
            ));
        }
        Ok(Self {
            scene: scene.to_string(),
            page: page.map(str::to_string),
            check_path,
            env_version,
            width,
            auto_color: false,
            line_color: LineColor::default(),
            is_hyaline: false,
        })
    }

    pub fn scene(&self) -> &str {
        &self.scene
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A mini-program code image as WeChat sent it.
#[derive(Clone, PartialEq, Eq)]
pub struct WxaCode {
    pub content_type: String,
    pub image: Vec<u8>,
}

impl std::fmt::Debug for WxaCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WxaCode")
            .field("content_type", &self.content_type)
            .field("bytes", &self.image.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(r: Result<WxaCodeRequest, Error>) -> &'static str {
        match r {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn exact_body() {
        let r = WxaCodeRequest::new(
            "kJ3x_Zq8R0aUe-1mVbN4wA",
            Some("pages/photo/index"),
            430,
            EnvVersion::Trial,
            true,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(r.to_json()).unwrap(),
            r#"{"scene":"kJ3x_Zq8R0aUe-1mVbN4wA","page":"pages/photo/index","check_path":true,"env_version":"trial","width":430,"auto_color":false,"line_color":{"r":0,"g":0,"b":0},"is_hyaline":false}"#
        );
        let home = WxaCodeRequest::new("a", None, 280, EnvVersion::Release, false).unwrap();
        assert!(!String::from_utf8(home.to_json()).unwrap().contains("page"));
    }

    #[test]
    fn limits_name_the_field() {
        let ok = |s: &str| WxaCodeRequest::new(s, None, 430, EnvVersion::Release, true);
        assert_eq!(field(ok("")), "scene");
        assert_eq!(field(ok(&"a".repeat(33))), "scene");
        assert!(ok(&"a".repeat(32)).is_ok());
        assert_eq!(field(ok("50%off")), "scene");
        assert_eq!(field(ok("a b")), "scene");
        assert!(ok("id=1&x=(a)*~'!$:;@,/?#").is_ok());
        let page = |p: &str| WxaCodeRequest::new("a", Some(p), 430, EnvVersion::Release, true);
        assert_eq!(field(page("/pages/a")), "page");
        assert_eq!(field(page("pages/a?x=1")), "page");
        assert_eq!(field(page("")), "page");
        assert!(page("pages/photo/index").is_ok());
        let width = |w| WxaCodeRequest::new("a", None, w, EnvVersion::Release, true);
        assert_eq!(field(width(279)), "width");
        assert_eq!(field(width(1281)), "width");
        assert!(width(1280).is_ok());
    }
}
