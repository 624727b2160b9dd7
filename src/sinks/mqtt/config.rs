//! `[mqtt]`: which broker, which topics, how often health goes out and how much is kept while
//! the broker is away. Checked once at load; errors name the key.
//!
//! Credentials never live here (configs get shared and pasted): the username, password and
//! certificates come from the systemd credentials directory (see [`super::credentials`]).

use serde::Deserialize;

use crate::sinks::SinkConfigError;

/// `[mqtt]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Publish to the broker. Default false.
    pub enabled: bool,
    /// `mqtt://host:1883`, or `mqtts://host:8883` for TLS. Default "mqtt://127.0.0.1:1883".
    pub url: String,
    /// First topic level(s): topics are `<prefix>/<mirror>/events|availability|health`.
    /// Default "mirrorsight".
    pub prefix: String,
    /// This mirror's id, one topic level; "" = the machine's host name. Default "".
    pub mirror: String,
    /// Seconds between two messages on the health topic. Default 30.
    pub health_interval_s: f64,
    /// Events kept while the broker is away; beyond it the oldest is dropped and counted.
    /// Default 1000.
    pub buffer_events: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            url: "mqtt://127.0.0.1:1883".into(),
            prefix: "mirrorsight".into(),
            mirror: String::new(),
            health_interval_s: 30.0,
            buffer_events: 1000,
        }
    }
}

/// The broker, from `mqtt.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl Broker {
    /// Loopback brokers are the only ones credentials may reach without TLS.
    pub fn is_loopback(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl std::fmt::Display for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

fn key_error(key: &'static str, message: impl Into<String>) -> SinkConfigError {
    SinkConfigError {
        key,
        message: message.into(),
    }
}

/// Longest mirror id: topic levels stay readable and client ids short.
const MAX_MIRROR_ID: usize = 64;

/// A topic level of ours: no wildcards, no separators, no NUL, not empty.
fn check_level(key: &'static str, level: &str) -> Result<(), SinkConfigError> {
    if level.is_empty() {
        return Err(key_error(key, "has an empty topic level"));
    }
    if let Some(c) = level
        .chars()
        .find(|c| matches!(c, '+' | '#' | '\0') || c.is_control())
    {
        return Err(key_error(
            key,
            format!("{level:?} contains {c:?}, which MQTT topics cannot carry literally"),
        ));
    }
    Ok(())
}

impl MqttConfig {
    /// Checks every key, enabled or not; errors name it as `mqtt.<key>`.
    pub fn validate(&self) -> Result<(), SinkConfigError> {
        self.broker()?;
        if self.prefix.starts_with('$') {
            return Err(key_error(
                "mqtt.prefix",
                "must not start with `$` (reserved for the broker's own topics)",
            ));
        }
        for level in self.prefix.split('/') {
            check_level("mqtt.prefix", level)?;
        }
        if !self.mirror.is_empty() {
            mirror_id(&self.mirror)?;
        }
        if !(self.health_interval_s.is_finite()
            && (1.0..=86_400.0).contains(&self.health_interval_s))
        {
            return Err(key_error(
                "mqtt.health_interval_s",
                format!("must be 1..=86400 seconds, got {}", self.health_interval_s),
            ));
        }
        if !(1..=1_000_000).contains(&self.buffer_events) {
            return Err(key_error("mqtt.buffer_events", "must be 1..=1000000"));
        }
        Ok(())
    }

    /// `mqtt.url`, parsed.
    pub fn broker(&self) -> Result<Broker, SinkConfigError> {
        let bad = |message: String| key_error("mqtt.url", message);
        let url = url::Url::parse(self.url.trim()).map_err(|e| {
            bad(format!(
                "{:?} is not a URL ({e}); expected mqtt://host:1883 or mqtts://host:8883",
                self.url
            ))
        })?;
        let tls = match url.scheme() {
            "mqtt" => false,
            "mqtts" => true,
            other => {
                return Err(bad(format!(
                    "scheme {other:?} is not supported; use mqtt:// or mqtts:// (TLS)"
                )));
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "holds a user name or password; give them as the `mqtt-username` and `mqtt-password` credentials instead".into(),
            ));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(bad(format!(
                "{:?}: a broker URL has no path or query; expected mqtt://host:port",
                self.url
            )));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(bad(format!("{:?} names no host", self.url))),
        };
        let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });
        Ok(Broker { host, port, tls })
    }

    /// `mqtt.mirror`, or the host name when it is empty.
    pub fn mirror_id(&self) -> Result<String, SinkConfigError> {
        if !self.mirror.is_empty() {
            return mirror_id(&self.mirror);
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        mirror_id(&host).map_err(|e| {
            key_error(
                "mqtt.mirror",
                format!(
                    "is empty, and the host name cannot stand in for it ({}); set it",
                    e.message
                ),
            )
        })
    }

    /// `<prefix>/<mirror>/<leaf>`.
    pub fn topic(prefix: &str, mirror: &str, leaf: &str) -> String {
        format!("{prefix}/{mirror}/{leaf}")
    }
}

fn mirror_id(id: &str) -> Result<String, SinkConfigError> {
    if id.contains('/') {
        return Err(key_error(
            "mqtt.mirror",
            format!("{id:?} must be one topic level (no `/`)"),
        ));
    }
    if id.len() > MAX_MIRROR_ID {
        return Err(key_error(
            "mqtt.mirror",
            format!("{id:?} is longer than {MAX_MIRROR_ID} bytes"),
        ));
    }
    check_level("mqtt.mirror", id)?;
    Ok(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut MqttConfig)) -> MqttConfig {
        let mut c = MqttConfig::default();
        f(&mut c);
        c
    }

    #[test]
    fn urls_give_host_port_and_tls() {
        let broker = |url: &str| with(|c| c.url = url.into()).broker().unwrap();
        assert_eq!(
            broker("mqtt://broker.store.lan"),
            Broker {
                host: "broker.store.lan".into(),
                port: 1883,
                tls: false
            }
        );
        assert_eq!(broker("mqtts://broker.store.lan").port, 8883);
        assert!(broker("mqtts://broker.store.lan:9999").tls);
        assert_eq!(broker("mqtt://[::1]:1884").host, "::1");
        assert!(broker("mqtt://[::1]:1884").is_loopback());
        assert!(broker("mqtt://localhost").is_loopback());
        assert!(broker("mqtt://127.0.0.2").is_loopback());
        assert!(!broker("mqtt://10.0.0.5").is_loopback());
        assert_eq!(
            broker("mqtts://b.example:8884").to_string(),
            "mqtts://b.example:8884"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (config, key, says) in [
            (
                with(|c| c.url = "tcp://b:1883".into()),
                "mqtt.url",
                "mqtt://",
            ),
            (with(|c| c.url = "broker:1883".into()), "mqtt.url", ""),
            (
                with(|c| c.url = "mqtt://user:pw@b:1883".into()),
                "mqtt.url",
                "mqtt-password",
            ),
            (
                with(|c| c.url = "mqtt://b:1883/x".into()),
                "mqtt.url",
                "path",
            ),
            (with(|c| c.prefix = "a/#".into()), "mqtt.prefix", "'#'"),
            (with(|c| c.prefix = "a//b".into()), "mqtt.prefix", "empty"),
            (with(|c| c.prefix = "$SYS".into()), "mqtt.prefix", "$"),
            (
                with(|c| c.mirror = "a/b".into()),
                "mqtt.mirror",
                "one topic level",
            ),
            (with(|c| c.mirror = "m+".into()), "mqtt.mirror", "'+'"),
            (with(|c| c.mirror = "x".repeat(65)), "mqtt.mirror", "longer"),
            (
                with(|c| c.health_interval_s = 0.5),
                "mqtt.health_interval_s",
                "1..=86400",
            ),
            (
                with(|c| c.health_interval_s = f64::NAN),
                "mqtt.health_interval_s",
                "",
            ),
            (with(|c| c.buffer_events = 0), "mqtt.buffer_events", "1..="),
        ] {
            let err = config.validate().unwrap_err();
            assert_eq!(err.key, key, "{config:?}: {err}");
            assert!(err.to_string().contains(says), "{err}");
        }
        MqttConfig::default().validate().unwrap();
        with(|c| c.prefix = "chain/store-42".into())
            .validate()
            .unwrap();
    }

    #[test]
    fn the_mirror_id_defaults_to_the_host_name() {
        let c = with(|c| c.mirror = "mirror-07".into());
        assert_eq!(c.mirror_id().unwrap(), "mirror-07");
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(MqttConfig::default().mirror_id().unwrap(), host.trim());
        assert_eq!(
            MqttConfig::topic("mirrorsight", "mirror-07", "events"),
            "mirrorsight/mirror-07/events"
        );
    }
}
