//! The `url` kind: a configured template with `{scene}`, for stores with their own page and
//! for the offline demo.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use thiserror::Error;

const PLACEHOLDER: &str = "{scene}";

/// Characters left as they are inside a URL path segment or query value: the unreserved set.
/// Scenes are base64url ids, which are all unreserved; anything else gets escaped.
const SCENE_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TemplateError {
    #[error("must start with http:// or https://")]
    Scheme,
    #[error("must contain {PLACEHOLDER}")]
    NoPlaceholder,
    #[error("only {PLACEHOLDER} may appear in braces")]
    OtherBraces,
    #[error("must not contain whitespace")]
    Whitespace,
    #[error("{PLACEHOLDER} must come after the host")]
    PlaceholderInHost,
}

/// A validated URL template such as `https://shop.example/s/{scene}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate(String);

impl UrlTemplate {
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let rest = template
            .strip_prefix("https://")
            .or_else(|| template.strip_prefix("http://"))
            .ok_or(TemplateError::Scheme)?;
        if template.contains(char::is_whitespace) {
            return Err(TemplateError::Whitespace);
        }
        if !template.contains(PLACEHOLDER) {
            return Err(TemplateError::NoPlaceholder);
        }
        if template.replace(PLACEHOLDER, "").contains(['{', '}']) {
            return Err(TemplateError::OtherBraces);
        }
        // A scene in the host would let a crafted scene choose the host.
        let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if rest[..host_end].contains(PLACEHOLDER) {
            return Err(TemplateError::PlaceholderInHost);
        }
        Ok(Self(template.to_string()))
    }

    /// The template with every `{scene}` replaced by the percent-encoded scene.
    pub fn render(&self, scene: &str) -> String {
        self.0.replace(
            PLACEHOLDER,
            &utf8_percent_encode(scene, SCENE_SAFE).to_string(),
        )
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_escapes() {
        let t = UrlTemplate::parse("https://shop.example/s/{scene}").unwrap();
        assert_eq!(
            t.render("AbC-_9xyzAbC-_9xyzAbC1"),
            "https://shop.example/s/AbC-_9xyzAbC-_9xyzAbC1"
        );
        assert_eq!(t.render("a/b?c"), "https://shop.example/s/a%2Fb%3Fc");
        let q = UrlTemplate::parse("http://x.example/p?scene={scene}&again={scene}").unwrap();
        assert_eq!(q.render("s1"), "http://x.example/p?scene=s1&again=s1");
    }

    #[test]
    fn refuses_bad_templates() {
        assert_eq!(
            UrlTemplate::parse("shop.example/{scene}"),
            Err(TemplateError::Scheme)
        );
        assert_eq!(
            UrlTemplate::parse("https://shop.example/s"),
            Err(TemplateError::NoPlaceholder)
        );
        assert_eq!(
            UrlTemplate::parse("https://shop.example/{id}/{scene}"),
            Err(TemplateError::OtherBraces)
        );
        assert_eq!(
            UrlTemplate::parse("https://{scene}.example/"),
            Err(TemplateError::PlaceholderInHost)
        );
        assert_eq!(
            UrlTemplate::parse("https://shop.example/ {scene}"),
            Err(TemplateError::Whitespace)
        );
    }
}
