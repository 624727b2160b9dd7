//! Credentials (the WeChat appsecret, the device token, access tokens) and where they come from.
//!
//! They are never part of the main config, which is often shared, pasted into tickets or
//! committed. They come from an explicit file, a systemd credential
//! (`LoadCredential=NAME:/path` puts it at `$CREDENTIALS_DIRECTORY/NAME`), or an environment
//! variable, in that order of precedence.

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Environment variable holding the appsecret when no file is configured.
pub const APPSECRET_ENV: &str = "MIRRORSIGHT_WECHAT_APPSECRET";
/// Environment variable holding the device token when no file is configured.
pub const DEVICE_TOKEN_ENV: &str = "MIRRORSIGHT_DEVICE_TOKEN";
/// Set by systemd for units with `LoadCredential=`.
pub const CREDENTIALS_DIRECTORY_ENV: &str = "CREDENTIALS_DIRECTORY";

/// Longest credential file we read: WeChat tokens are ≤ 512 characters, secrets 32.
const MAX_SECRET_BYTES: u64 = 4096;

/// A string that prints as `[redacted]` however it is formatted.
///
/// It deliberately implements neither `Serialize` nor `Deserialize`: it can only reach the
/// wire through [`Secret::expose`], which is easy to grep for.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into().into_boxed_str())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where a credential came from, for a log line that says which source won.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Credential(PathBuf),
    Env(&'static str),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => write!(f, "file {}", p.display()),
            Self::Credential(p) => write!(f, "systemd credential {}", p.display()),
            Self::Env(name) => write!(f, "environment variable {name}"),
        }
    }
}

/// Why a credential could not be had. Never contains the credential.
#[derive(Debug, Error)]
pub enum SecretError {
    #[error("{what}: cannot read {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {path} is empty")]
    EmptyFile { what: &'static str, path: PathBuf },
    #[error("{what}: {path} is larger than {MAX_SECRET_BYTES} bytes; is it the right file?")]
    TooLarge { what: &'static str, path: PathBuf },
    #[error("{what}: environment variable {var} is set but empty")]
    EmptyEnv {
        what: &'static str,
        var: &'static str,
    },
    #[error(
        "{what} is required but missing: set `{file_key}`, give the unit `LoadCredential={credential}:<path>`, or set {env}"
    )]
    Missing {
        what: &'static str,
        file_key: &'static str,
        credential: String,
        env: &'static str,
    },
}

/// Where to look for one credential.
#[derive(Debug, Clone)]
pub struct SecretSpec<'a> {
    /// For messages: "WeChat appsecret".
    pub what: &'static str,
    /// Config key of the explicit file, for messages: "wechat.appsecret_file".
    pub file_key: &'static str,
    pub file: Option<&'a Path>,
    /// systemd credential name.
    pub credential: &'a str,
    pub env: &'static str,
}

/// Loads a credential: the explicit file if configured (an error if unreadable, never a silent
/// fallback), else `$CREDENTIALS_DIRECTORY/<credential>` if present, else the environment
/// variable. `Ok(None)` when none is set.
///
/// `env` is the environment lookup (`|k| std::env::var(k).ok()` in production) so tests need
/// not touch the process environment.
pub fn load_secret(
    spec: &SecretSpec<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(Secret, SecretSource)>, SecretError> {
    if let Some(path) = spec.file {
        return read_secret_file(spec.what, path)
            .map(|s| Some((s, SecretSource::File(path.to_path_buf()))));
    }
    if let Some(dir) = env(CREDENTIALS_DIRECTORY_ENV).filter(|d| !d.is_empty())
        && !spec.credential.is_empty()
    {
        let path = Path::new(&dir).join(spec.credential);
        if path.exists() {
            return read_secret_file(spec.what, &path)
                .map(|s| Some((s, SecretSource::Credential(path))));
        }
    }
    match env(spec.env) {
        Some(value) => {
            let value = value.trim();
            if value.is_empty() {
                Err(SecretError::EmptyEnv {
                    what: spec.what,
                    var: spec.env,
                })
            } else {
                Ok(Some((Secret::new(value), SecretSource::Env(spec.env))))
            }
        }
        None => Ok(None),
    }
}

/// [`load_secret`], but a missing credential is an error naming every place it may come from.
pub fn require_secret(
    spec: &SecretSpec<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Secret, SecretSource), SecretError> {
    load_secret(spec, env)?.ok_or_else(|| SecretError::Missing {
        what: spec.what,
        file_key: spec.file_key,
        credential: spec.credential.to_string(),
        env: spec.env,
    })
}

fn read_secret_file(what: &'static str, path: &Path) -> Result<Secret, SecretError> {
    let read_err = |source| SecretError::Read {
        what,
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.len() > MAX_SECRET_BYTES {
        return Err(SecretError::TooLarge {
            what,
            path: path.to_path_buf(),
        });
    }
    warn_if_readable_by_others(what, path, &meta);
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    // Editors and `echo` add a trailing newline that is not part of the secret.
    let text = text.trim();
    if text.is_empty() {
        return Err(SecretError::EmptyFile {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(Secret::new(text))
}

#[cfg(unix)]
fn warn_if_readable_by_others(what: &'static str, path: &Path, meta: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "{what} file is readable by group or others; chmod 600 it");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &'static str, _: &Path, _: &std::fs::Metadata) {}

/// The credentials a [`crate::Minter`] may need; which ones depends on `qr.kind`.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// Needed by the `official_account` and `mini_program` kinds.
    pub appsecret: Option<Secret>,
    /// Needed by the `relay` kind.
    pub device_token: Option<Secret>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(file: Option<&'a Path>) -> SecretSpec<'a> {
        SecretSpec {
            what: "WeChat appsecret",
            file_key: "wechat.appsecret_file",
            file,
            credential: "wechat-appsecret",
            env: APPSECRET_ENV,
        }
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some([redacted])");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn precedence_file_then_credential_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("explicit");
        std::fs::write(&file, "from-file\n").unwrap();
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        std::fs::write(creds.join("wechat-appsecret"), "from-credential").unwrap();
        let creds_s = creds.to_string_lossy().to_string();
        let env = move |k: &str| match k {
            CREDENTIALS_DIRECTORY_ENV => Some(creds_s.clone()),
            APPSECRET_ENV => Some("from-env".to_string()),
            _ => None,
        };
        let (s, src) = require_secret(&spec(Some(&file)), &env).unwrap();
        assert_eq!(
            (s.expose(), src),
            ("from-file", SecretSource::File(file.clone()))
        );
        let (s, _) = require_secret(&spec(None), &env).unwrap();
        assert_eq!(s.expose(), "from-credential");
        let only_env = |k: &str| (k == APPSECRET_ENV).then(|| "from-env".to_string());
        let (s, src) = require_secret(&spec(None), &only_env).unwrap();
        assert_eq!(
            (s.expose(), src),
            ("from-env", SecretSource::Env(APPSECRET_ENV))
        );
    }

    #[test]
    fn missing_and_broken_sources_are_errors_without_the_secret() {
        let none = |_: &str| None;
        let e = require_secret(&spec(None), &none).unwrap_err().to_string();
        assert!(
            e.contains("wechat.appsecret_file")
                && e.contains(APPSECRET_ENV)
                && e.contains("LoadCredential"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert!(matches!(
            require_secret(&spec(Some(&missing)), &none),
            Err(SecretError::Read { .. })
        ));
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        assert!(matches!(
            require_secret(&spec(Some(&empty)), &none),
            Err(SecretError::EmptyFile { .. })
        ));
        let blank_env = |k: &str| (k == APPSECRET_ENV).then(String::new);
        assert!(matches!(
            require_secret(&spec(None), &blank_env),
            Err(SecretError::EmptyEnv { .. })
        ));
    }
}
