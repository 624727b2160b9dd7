//! What a replay (`replay`, `eval`, `bench`) may talk to, and where its ids come from.
//!
//! A replay runs a recorded clip through the whole daemon, and a production config names
//! production backends: WeChat, which mints real codes against the account's quota, and the
//! store hub, which keeps photos and hands gallery keys to shoppers. Replay ids come from a
//! fixed seed so that two runs print the same events; against a real backend that would mint
//! the same scenes again and send photos under ids the backend already holds. So:
//!
//! The store's MQTT broker counts as a backend too: its subscribers (dashboards, the store's
//! automations) would take a replay's sessions and photos for a shopper's.
//!
//! - Without `--live` a replay talks to loopback backends only (127.0.0.0/8, `[::1]`,
//!   `localhost`: a test double, a hub or a broker on this machine, which is how the tests
//!   run). If the config names any backend on another machine, the replay uses none of them:
//!   codes are rendered locally from `qr.url_template` (kind `url`), photos are not uploaded,
//!   events are not published over MQTT (the event file and stdout still get them), and the
//!   binding log and the spools go to a throwaway directory instead of `storage.dir`,
//!   `photos.spool_dir` and `clips.spool_dir` (a live mirror's spool would upload them later). One `info` line
//!   says so.
//! - With `--live` the config is used as it is and every id comes from the OS, as on a live
//!   mirror, so no two runs share a session, a scene or a photo id.

use std::path::PathBuf;

use anyhow::{Context, Result};
use mirrorsight::config::Config;
use mirrorsight::ids::IdGenerator;
use mirrorsight_wechat::QrKind;
use mirrorsight_wechat::config::is_loopback_url;
use tracing::info;

/// How far a replay reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Loopback backends only, ids from this seed.
    Offline { seed: u64 },
    /// The configured backends, ids from the OS (`--live`).
    Live,
}

impl Reach {
    pub fn new(live: bool, seed: u64) -> Self {
        if live {
            Reach::Live
        } else {
            Reach::Offline { seed }
        }
    }
}

/// The config a replay runs with, its state directory and its ids.
pub struct ReplaySetup {
    pub config: Config,
    /// Where the binding log goes (and the spool, unless `photos.spool_dir` says otherwise).
    pub state_dir: PathBuf,
    pub ids: IdGenerator,
    /// Holds the throwaway directory for as long as the replay runs.
    _scratch: tempfile::TempDir,
}

/// Applies `reach` to `config` (see the module docs).
pub fn prepare(config: &Config, reach: Reach) -> Result<ReplaySetup> {
    let scratch = tempfile::Builder::new()
        .prefix("mirrorsight-replay-")
        .tempdir()
        .context("cannot create the replay's throwaway state directory")?;
    let throwaway = std::path::absolute(scratch.path())?;
    let mut config = config.clone();
    let ids = match reach {
        Reach::Live => IdGenerator::from_os(),
        Reach::Offline { seed } => {
            let remote = remote_backends(&config);
            if !remote.is_empty() {
                stay_offline(&mut config, &throwaway);
                info!(
                    "replay without --live: {} on another machine not contacted; codes are rendered \
                     from qr.url_template, no event is published over MQTT and photos stay in the \
                     throwaway spool {} (--live uses the configured backends, with fresh random ids)",
                    remote.join(", "),
                    config.photos.spool_dir.display()
                );
            }
            IdGenerator::seeded(seed)
        }
    };
    // A replay keeps its state in a throwaway directory unless told otherwise, and never
    // writes into the live mirror's default spool.
    let state_dir = config.storage.dir.clone().unwrap_or(throwaway);
    config.place_spools_under(&state_dir)?;
    Ok(ReplaySetup {
        config,
        state_dir,
        ids,
        _scratch: scratch,
    })
}

/// The keys of the backends `config` would reach on another machine: WeChat for the kinds
/// that mint there, the store backend for relay minting and for photo uploads, the MQTT
/// broker when that sink is on.
pub fn remote_backends(config: &Config) -> Vec<&'static str> {
    let mut endpoints: Vec<(&'static str, &str)> = Vec::new();
    match config.qr.kind {
        QrKind::OfficialAccount => {
            endpoints.push(("wechat.api_base", &config.wechat.api_base));
            if config.qr.fetch_image {
                endpoints.push(("wechat.mp_base", &config.wechat.mp_base));
            }
        }
        QrKind::MiniProgram => endpoints.push(("wechat.api_base", &config.wechat.api_base)),
        QrKind::Relay | QrKind::Url => {}
    }
    if let Some(url) = &config.backend.url {
        endpoints.push(("backend.url", url));
    }
    let mut remote: Vec<&'static str> = endpoints
        .into_iter()
        .filter(|(_, url)| !is_loopback_url(url))
        .map(|(key, _)| key)
        .collect();
    // A URL that does not parse was refused at load; should one get here, it is not loopback.
    if config.mqtt.enabled && !config.mqtt.broker().is_ok_and(|b| b.is_loopback()) {
        remote.push("mqtt.url");
    }
    remote
}

/// Codes from the local template, no uploads, no MQTT, all state in `throwaway`.
fn stay_offline(config: &mut Config, throwaway: &std::path::Path) {
    config.qr.kind = QrKind::Url;
    config.backend.url = None;
    config.mqtt.enabled = false;
    config.storage.dir = Some(throwaway.to_path_buf());
    config.photos.spool_dir = throwaway.join("spool");
    config.clips.spool_dir = throwaway.join("clips");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn production() -> Config {
        let mut config = Config::default();
        config.qr.kind = QrKind::Relay;
        config.backend.url = Some("https://hub.shop.example".into());
        config.storage.dir = Some("/var/lib/mirrorsight".into());
        config.photos.spool_dir = "/var/lib/mirrorsight/spool".into();
        config
    }

    #[test]
    fn a_production_config_replays_offline_in_a_throwaway_directory() {
        let setup = prepare(&production(), Reach::Offline { seed: 1 }).unwrap();
        assert_eq!(setup.config.qr.kind, QrKind::Url);
        assert_eq!(setup.config.backend.url, None);
        assert!(setup.state_dir.starts_with(std::env::temp_dir()));
        assert!(setup.config.photos.spool_dir.starts_with(&setup.state_dir));
        assert!(setup.config.clips.spool_dir.starts_with(&setup.state_dir));
        assert_eq!(setup.config.storage.dir.as_ref(), Some(&setup.state_dir));
        setup.config.validate().unwrap();
    }

    #[test]
    fn a_remote_broker_gets_no_events_without_live() {
        use mirrorsight::sinks::SinkConfig;
        let publishes = |config: &Config| {
            config
                .sinks()
                .iter()
                .any(|s| matches!(s, SinkConfig::Mqtt(_)))
        };
        let mut config = Config::default();
        config.mqtt.enabled = true;
        config.mqtt.url = "mqtt://broker.shop.example:1883".into();
        assert_eq!(remote_backends(&config), ["mqtt.url"]);
        let offline = prepare(&config, Reach::Offline { seed: 1 }).unwrap();
        assert!(!publishes(&offline.config), "{:?}", offline.config.sinks());
        let live = prepare(&config, Reach::Live).unwrap();
        assert!(publishes(&live.config));

        // A broker on this machine is reached like any loopback backend.
        for url in [
            "mqtt://127.0.0.1:1883",
            "mqtts://localhost",
            "mqtt://[::1]:1883",
        ] {
            config.mqtt.url = url.into();
            assert!(remote_backends(&config).is_empty(), "{url}");
            let offline = prepare(&config, Reach::Offline { seed: 1 }).unwrap();
            assert!(publishes(&offline.config), "{url}");
        }
        // A remote broker takes the rest offline with it (and the other way round).
        config.mqtt.url = "mqtts://broker.shop.example".into();
        config.qr.kind = QrKind::Relay;
        config.backend.url = Some("http://127.0.0.1:8080".into());
        let offline = prepare(&config, Reach::Offline { seed: 1 }).unwrap();
        assert_eq!(offline.config.qr.kind, QrKind::Url);
        assert_eq!(offline.config.backend.url, None);
        config.mqtt.url = "mqtt://127.0.0.1".into();
        config.backend.url = Some("https://hub.shop.example".into());
        let offline = prepare(&config, Reach::Offline { seed: 1 }).unwrap();
        assert!(!publishes(&offline.config));
    }

    #[test]
    fn live_keeps_the_config_and_draws_fresh_ids() {
        let config = production();
        let mut a = prepare(&config, Reach::Live).unwrap();
        let mut b = prepare(&config, Reach::Live).unwrap();
        assert_eq!(a.config.backend.url, config.backend.url);
        assert_eq!(a.config.qr.kind, QrKind::Relay);
        assert_eq!(a.state_dir, PathBuf::from("/var/lib/mirrorsight"));
        assert_ne!(a.ids.next_id(), b.ids.next_id());
        let mut seeded = prepare(&config, Reach::Offline { seed: 7 }).unwrap();
        assert_eq!(seeded.ids.next_id(), IdGenerator::seeded(7).next_id());
    }

    #[test]
    fn loopback_backends_are_kept_and_remote_ones_named() {
        let mut config = Config::default();
        assert!(
            remote_backends(&config).is_empty(),
            "kind url reaches nothing"
        );
        config.qr.kind = QrKind::Relay;
        config.backend.url = Some("http://127.0.0.1:8080".into());
        assert!(remote_backends(&config).is_empty());
        let setup = prepare(&config, Reach::Offline { seed: 1 }).unwrap();
        assert_eq!(setup.config.qr.kind, QrKind::Relay);
        assert_eq!(setup.config.backend.url, config.backend.url);

        config.qr.kind = QrKind::OfficialAccount;
        config.qr.fetch_image = true;
        config.wechat.mp_base = "http://[::1]:9".into();
        assert_eq!(remote_backends(&config), ["wechat.api_base"]);
        config.backend.url = Some("https://hub.shop.example".into());
        assert_eq!(remote_backends(&config), ["wechat.api_base", "backend.url"]);
    }
}
