//! The MQTT sink's secrets and certificates, from where the other secrets come from: the
//! systemd credentials directory (`LoadCredential=mqtt-password:/etc/…`), or for the user name
//! and password also `MIRRORSIGHT_MQTT_USERNAME`/`MIRRORSIGHT_MQTT_PASSWORD`.
//!
//! | credential         | what                                                        |
//! |--------------------|-------------------------------------------------------------|
//! | `mqtt-username`    | user name (optional)                                        |
//! | `mqtt-password`    | password (needs a user name)                                |
//! | `mqtt-ca`          | PEM CA certificate(s) the broker's certificate must chain to; without it the system's roots |
//! | `mqtt-client-cert` | PEM client certificate chain, for brokers that want one     |
//! | `mqtt-client-key`  | its PEM private key                                         |
//!
//! Credentials never cross the network in clear text: with a user name or password the URL
//! must be `mqtts://` unless the broker is on this machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mirrorsight_wechat::secret::{
    CREDENTIALS_DIRECTORY_ENV, Secret, SecretError, SecretSpec, load_secret,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

use super::config::Broker;

pub const USERNAME_ENV: &str = "MIRRORSIGHT_MQTT_USERNAME";
pub const PASSWORD_ENV: &str = "MIRRORSIGHT_MQTT_PASSWORD";

#[derive(Debug, Error)]
pub enum CredentialError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(
        "an MQTT password is set (credential `mqtt-password` or {PASSWORD_ENV}) but no user name (`mqtt-username` or {USERNAME_ENV})"
    )]
    PasswordWithoutUser,
    #[error(
        "MQTT credentials would cross the network in clear text to {broker}: use an mqtts:// URL in `mqtt.url`"
    )]
    CleartextCredentials { broker: String },
    #[error("credential `{name}` is given but `mqtt.url` is {broker} (no TLS): use mqtts://")]
    TlsMaterialWithoutTls { name: &'static str, broker: String },
    #[error("credential `{given}` needs `{missing}` too (a client certificate and its key)")]
    HalfAClientIdentity {
        given: &'static str,
        missing: &'static str,
    },
    #[error("MQTT TLS: {0}")]
    Tls(String),
}

/// What the connection authenticates with.
#[derive(Debug, Default)]
pub struct MqttCredentials {
    pub username: Option<Secret>,
    pub password: Option<Secret>,
    /// Set for `mqtts://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// `$CREDENTIALS_DIRECTORY/<name>` when it exists.
fn credential_file(name: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let dir = env(CREDENTIALS_DIRECTORY_ENV).filter(|d| !d.is_empty())?;
    let path = Path::new(&dir).join(name);
    path.exists().then_some(path)
}

fn secret(
    what: &'static str,
    credential: &'static str,
    env_var: &'static str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, SecretError> {
    let spec = SecretSpec {
        what,
        file_key: "",
        file: None,
        credential,
        env: env_var,
    };
    Ok(load_secret(&spec, env)?.map(|(secret, _)| secret))
}

/// Loads what `broker` needs, checking that it is used safely.
pub fn load(
    broker: &Broker,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<MqttCredentials, CredentialError> {
    let username = secret("MQTT user name", "mqtt-username", USERNAME_ENV, env)?;
    let password = secret("MQTT password", "mqtt-password", PASSWORD_ENV, env)?;
    if password.is_some() && username.is_none() {
        return Err(CredentialError::PasswordWithoutUser);
    }
    let ca = credential_file("mqtt-ca", env);
    let client_cert = credential_file("mqtt-client-cert", env);
    let client_key = credential_file("mqtt-client-key", env);
    if !broker.tls {
        if username.is_some() && !broker.is_loopback() {
            return Err(CredentialError::CleartextCredentials {
                broker: broker.to_string(),
            });
        }
        for (name, file) in [
            ("mqtt-ca", &ca),
            ("mqtt-client-cert", &client_cert),
            ("mqtt-client-key", &client_key),
        ] {
            if file.is_some() {
                return Err(CredentialError::TlsMaterialWithoutTls {
                    name,
                    broker: broker.to_string(),
                });
            }
        }
        return Ok(MqttCredentials {
            username,
            password,
            tls: None,
        });
    }
    let identity = match (client_cert, client_key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(CredentialError::HalfAClientIdentity {
                given: "mqtt-client-cert",
                missing: "mqtt-client-key",
            });
        }
        (None, Some(_)) => {
            return Err(CredentialError::HalfAClientIdentity {
                given: "mqtt-client-key",
                missing: "mqtt-client-cert",
            });
        }
    };
    Ok(MqttCredentials {
        username,
        password,
        tls: Some(Arc::new(tls_config(ca.as_deref(), identity)?)),
    })
}

/// The TLS client: the broker's certificate checked against `mqtt-ca` or the system's roots,
/// with the crypto provider the rest of the daemon's TLS uses.
fn tls_config(
    ca: Option<&Path>,
    identity: Option<(PathBuf, PathBuf)>,
) -> Result<rustls::ClientConfig, CredentialError> {
    let tls = |what: String| CredentialError::Tls(what);
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls(e.to_string()))?;
    let builder = match ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(path)? {
                roots
                    .add(cert)
                    .map_err(|e| tls(format!("{}: {e}", path.display())))?;
            }
            builder.with_root_certificates(roots)
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .map_err(|e| tls(format!("system roots: {e}")))?
        }
    };
    match identity {
        Some((cert, key)) => {
            let chain = certificates(&cert)?;
            let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| {
                tls(format!(
                    "credential mqtt-client-key ({}): {e}",
                    key.display()
                ))
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls(format!("client certificate: {e}")))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, CredentialError> {
    let tls = |what: String| CredentialError::Tls(what);
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls(format!("cannot read {}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(tls(format!("no PEM certificate in {}", path.display())));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn broker(url: &str) -> Broker {
        super::super::MqttConfig {
            url: url.into(),
            ..Default::default()
        }
        .broker()
        .unwrap()
    }

    fn env_of(vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        move |k| vars.get(k).cloned()
    }

    #[test]
    fn user_and_password_come_from_the_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mqtt-username"), "mirror\n").unwrap();
        std::fs::write(dir.path().join("mqtt-password"), "s3cret\n").unwrap();
        let env = env_of(&[(CREDENTIALS_DIRECTORY_ENV, dir.path().display().to_string())]);
        let c = load(&broker("mqtt://127.0.0.1:1883"), &env).unwrap();
        assert_eq!(c.username.unwrap().expose(), "mirror");
        assert_eq!(c.password.unwrap().expose(), "s3cret");
        assert!(c.tls.is_none());
        let nothing = load(&broker("mqtt://broker.lan"), &env_of(&[])).unwrap();
        assert!(nothing.username.is_none() && nothing.tls.is_none());
    }

    #[test]
    fn unsafe_or_incomplete_credentials_are_refused() {
        let user = (USERNAME_ENV, "u".to_string());
        let pass = (PASSWORD_ENV, "p".to_string());
        let err = load(
            &broker("mqtt://broker.lan"),
            &env_of(std::slice::from_ref(&user)),
        )
        .unwrap_err();
        assert!(
            matches!(err, CredentialError::CleartextCredentials { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("mqtts://"), "{err}");
        let err = load(&broker("mqtt://127.0.0.1"), &env_of(&[pass])).unwrap_err();
        assert!(matches!(err, CredentialError::PasswordWithoutUser), "{err}");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mqtt-ca"), "x").unwrap();
        std::fs::write(dir.path().join("mqtt-client-cert"), "x").unwrap();
        let env = env_of(&[(CREDENTIALS_DIRECTORY_ENV, dir.path().display().to_string())]);
        let err = load(&broker("mqtt://127.0.0.1"), &env).unwrap_err();
        assert!(
            matches!(err, CredentialError::TlsMaterialWithoutTls { .. }),
            "{err}"
        );
        let err = load(&broker("mqtts://broker.lan"), &env).unwrap_err();
        assert!(
            matches!(err, CredentialError::HalfAClientIdentity { .. }),
            "{err}"
        );
        std::fs::remove_file(dir.path().join("mqtt-client-cert")).unwrap();
        let err = load(&broker("mqtts://broker.lan"), &env).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn mqtts_without_a_ca_uses_the_system_roots() {
        let c = load(&broker("mqtts://broker.lan"), &env_of(&[])).unwrap();
        assert!(c.tls.is_some());
    }
}
