//! Events, availability and health on an MQTT broker (`[mqtt]`), the message bus a store
//! chain's operations people already watch their edge devices on.
//!
//! | topic                           | payload                                   | QoS | retained |
//! |---------------------------------|-------------------------------------------|-----|----------|
//! | `<prefix>/<mirror>/events`      | each event, the exact JSON line of the event file, in stream order | 1 | no |
//! | `<prefix>/<mirror>/availability`| `online` on connect; `offline` on a clean exit, and as the last will when the daemon dies | 1 | yes |
//! | `<prefix>/<mirror>/health`      | a JSON snapshot every `health_interval_s` | 0   | no       |
//!
//! The dispatcher only ever appends to a bounded buffer ([`outbox`]); a connection thread
//! ([`connection`]) publishes from it, so a slow or absent broker never holds vision up. While
//! the broker is away the buffer keeps the newest `buffer_events` events, dropping (and
//! counting, in `/metrics`) the oldest. Layout: [`config`] (`[mqtt]`), [`credentials`] (TLS and
//! user name/password from the credentials directory), [`outbox`], [`connection`].

pub mod config;
mod connection;
pub mod credentials;
pub mod outbox;

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use mirrorsight_contract::events::Event;
use rumqttc::{AsyncClient, LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
use tracing::warn;

pub use config::{Broker, MqttConfig};

use super::{EventSink, SinkContext, SinkError};
use crate::metrics::PrometheusText;
use connection::{Connection, OFFLINE, Shared, Topics, WINDOW};

/// How long the broker has to notice a silent death (power cut, cable) and publish the will:
/// one and a half times this. A killed process closes its socket, which fires the will at once.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Largest MQTT packet either way: events are small, health a little larger.
const MAX_PACKET_BYTES: usize = 256 * 1024;

fn component(source: impl std::error::Error + Send + Sync + 'static) -> SinkError {
    SinkError::Component {
        sink: "mqtt",
        source: Box::new(source),
    }
}

pub struct MqttSink {
    shared: Arc<Shared>,
    stats: Arc<MqttStats>,
    worker: Option<JoinHandle<()>>,
}

/// The sink's counters, for `/metrics` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MqttStatus {
    pub connected: bool,
    /// Events waiting for the broker (in flight included).
    pub buffered: usize,
    /// Events dropped because the buffer was full while the broker was away.
    pub dropped: u64,
    /// Events the broker acknowledged.
    pub published: u64,
}

/// `/metrics` lines of the MQTT sink.
pub struct MqttStats {
    shared: Arc<Shared>,
}

impl MqttStats {
    pub fn status(&self) -> MqttStatus {
        let outbox = self.shared.outbox();
        MqttStatus {
            connected: self.shared.connected.load(Ordering::SeqCst),
            buffered: outbox.len(),
            dropped: outbox.dropped(),
            published: outbox.delivered(),
        }
    }
}

impl PrometheusText for MqttStats {
    fn render_prometheus(&self, out: &mut String) {
        let s = self.status();
        for (name, kind, help, value) in [
            (
                "mirrorsight_mqtt_connected",
                "gauge",
                "1 while connected to the MQTT broker.",
                u64::from(s.connected),
            ),
            (
                "mirrorsight_mqtt_events_buffered",
                "gauge",
                "Events waiting for the MQTT broker.",
                s.buffered as u64,
            ),
            (
                "mirrorsight_mqtt_events_published_total",
                "counter",
                "Events the MQTT broker acknowledged.",
                s.published,
            ),
            (
                "mirrorsight_mqtt_events_dropped_total",
                "counter",
                "Events dropped, oldest first, because the buffer (mqtt.buffer_events) was full while the broker was away.",
                s.dropped,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
}

impl MqttSink {
    /// Checks the config and credentials and starts connecting in the background: an absent
    /// broker is not an error (events wait for it), a wrong URL or credential is.
    pub fn start(config: &MqttConfig, context: &SinkContext) -> Result<Self, SinkError> {
        config.validate().map_err(component)?;
        let broker = config.broker().map_err(component)?;
        let mirror = config.mirror_id().map_err(component)?;
        let credentials = credentials::load(&broker, &*context.env).map_err(component)?;
        let topics = Topics {
            events: MqttConfig::topic(&config.prefix, &mirror, "events"),
            availability: MqttConfig::topic(&config.prefix, &mirror, "availability"),
            health: MqttConfig::topic(&config.prefix, &mirror, "health"),
        };

        let mut options =
            MqttOptions::new(format!("mirrorsight-{mirror}"), &broker.host, broker.port);
        options
            .set_keep_alive(KEEP_ALIVE)
            // A fresh session each time: what was unacknowledged is republished from the
            // outbox, never also from the client's own memory of an old session.
            .set_clean_session(true)
            .set_inflight(2 * WINDOW as u16)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
            .set_last_will(LastWill::new(
                &topics.availability,
                OFFLINE,
                QoS::AtLeastOnce,
                true,
            ));
        if let Some(user) = &credentials.username {
            let password = credentials
                .password
                .as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default();
            options.set_credentials(user.expose(), password);
        }
        if let Some(tls) = credentials.tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
        }
        // The window plus availability, health and the goodbye: never full in practice.
        let (client, eventloop) = AsyncClient::new(options, WINDOW + 8);

        let shared = Arc::new(Shared::new(config.buffer_events));
        let connection = Connection {
            shared: shared.clone(),
            topics,
            mirror,
            broker: broker.to_string(),
            health: context.health.clone(),
            health_interval: Duration::from_secs_f64(config.health_interval_s),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(component)?;
        let worker = std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || runtime.block_on(connection.run(client, eventloop)))
            .map_err(component)?;
        Ok(Self {
            stats: Arc::new(MqttStats {
                shared: shared.clone(),
            }),
            shared,
            worker: Some(worker),
        })
    }

    /// The sink's counters, for `/metrics`.
    pub fn stats(&self) -> Arc<dyn PrometheusText> {
        self.stats.clone()
    }

    pub fn status(&self) -> MqttStatus {
        self.stats.status()
    }
}

impl EventSink for MqttSink {
    /// Never blocks and never fails: the event joins the buffer (pushing out the oldest when
    /// the broker has been away too long).
    fn handle(&mut self, event: &Event) -> Result<(), SinkError> {
        let dropped = self.shared.outbox().push(Arc::from(event.to_json_line()));
        if dropped {
            let total = self.shared.outbox().dropped();
            if total.is_power_of_two() {
                warn!(
                    dropped = total,
                    "MQTT: buffer full; dropping the oldest events"
                );
            }
        }
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Waits (bounded) for the broker to take what is buffered, then says goodbye.
    fn flush(&mut self) -> Result<(), SinkError> {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
        Ok(())
    }
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        if self.worker.is_some() {
            // Not flushed (an error upstream): still leave cleanly, within the same bounds.
            let _ = self.flush();
        }
    }
}
