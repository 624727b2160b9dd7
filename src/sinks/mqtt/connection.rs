//! The MQTT sink's connection: one thread with a single-threaded tokio runtime that drives
//! rumqttc's event loop, feeds it from the [`Outbox`] and publishes health.
//!
//! Why one thread and one task: rumqttc moves everything unacknowledged (and still queued in
//! its request channel) into its own "pending" list when a connection fails, and discards that
//! list when the broker starts a fresh session. The outbox therefore keeps every event until
//! its PUBACK and republishes it itself after a reconnect; that bookkeeping is only exact if
//! nothing is handed to the client between the connection failing and the outbox hearing of
//! it, which is what running the poller and the sender as futures of one task guarantees.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, Incoming, Outgoing, QoS};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::outbox::Outbox;
use crate::sinks::HealthProbe;

/// Publishes in flight at once. Events are a few per second at most; this only matters when
/// a buffer's worth is flushed after an outage.
pub(super) const WINDOW: usize = 32;
/// First wait before reconnecting; doubles per failure up to [`RECONNECT_MAX`].
const RECONNECT_MIN: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// At the end of the stream, how long to wait for the broker to take what is still buffered.
pub(super) const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// After asking to disconnect, how long the DISCONNECT may take to leave.
const DISCONNECT_GRACE: Duration = Duration::from_secs(1);
/// How often the sender looks at the clock while idle (end-of-stream deadline).
const IDLE_CHECK: Duration = Duration::from_millis(200);

/// What the dispatcher thread and the connection thread share.
pub(super) struct Shared {
    pub outbox: std::sync::Mutex<Outbox>,
    /// Something to send (a new event, an ack freeing the window, the connection came up).
    pub wake: Notify,
    pub connected: AtomicBool,
    /// The stream ended: drain, say "offline", disconnect.
    pub closing: AtomicBool,
}

impl Shared {
    pub fn new(capacity: usize) -> Self {
        Self {
            outbox: std::sync::Mutex::new(Outbox::new(capacity)),
            wake: Notify::new(),
            connected: AtomicBool::new(false),
            closing: AtomicBool::new(false),
        }
    }

    pub fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The topics of one mirror.
#[derive(Debug, Clone)]
pub(super) struct Topics {
    pub events: String,
    pub availability: String,
    pub health: String,
}

pub(super) const ONLINE: &str = "online";
pub(super) const OFFLINE: &str = "offline";

pub(super) struct Connection {
    pub shared: Arc<Shared>,
    pub topics: Topics,
    pub mirror: String,
    pub broker: String,
    pub health: Option<HealthProbe>,
    pub health_interval: Duration,
}

impl Connection {
    /// Runs until the stream is closed and drained (or the drain timed out).
    pub async fn run(self, client: AsyncClient, mut eventloop: EventLoop) {
        let this = &self;
        let client = &client;
        tokio::select! {
            () = this.poll_loop(client, &mut eventloop) => {}
            () = async {
                this.send_loop(client).await;
                tokio::time::sleep(DISCONNECT_GRACE).await;
            } => {}
            () = this.health_loop(client) => {}
        }
        let left = self.shared.outbox().len();
        if left > 0 {
            warn!(
                broker = %self.broker,
                events = left,
                "MQTT: events not delivered before exit (the broker did not take them in time)"
            );
        }
    }

    /// Drives the connection: connects, reconnects with backoff, and tells the outbox what
    /// went on the wire and what the broker acknowledged.
    async fn poll_loop(&self, client: &AsyncClient, eventloop: &mut EventLoop) {
        let mut backoff = RECONNECT_MIN;
        let mut last_problem: Option<String> = None;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    backoff = RECONNECT_MIN;
                    last_problem = None;
                    self.connected(client);
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) if pkid != 0 => {
                    self.shared.outbox().on_wire(pkid);
                }
                Ok(Event::Incoming(Incoming::PubAck(ack))) => {
                    self.shared.outbox().acked(ack.pkid);
                    self.shared.wake.notify_one();
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(error) => {
                    let was_connected = self.shared.connected.swap(false, Ordering::SeqCst);
                    let held = {
                        let mut outbox = self.shared.outbox();
                        outbox.connection_lost();
                        outbox.len()
                    };
                    let problem = describe(&error);
                    if was_connected || last_problem.as_deref() != Some(problem.as_str()) {
                        warn!(
                            broker = %self.broker,
                            error = %problem,
                            buffered = held,
                            retry_in_s = backoff.as_secs_f64(),
                            "MQTT: broker unreachable; buffering events"
                        );
                    } else {
                        debug!(broker = %self.broker, error = %problem, "MQTT: still unreachable");
                    }
                    last_problem = Some(problem);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RECONNECT_MAX);
                }
            }
        }
    }

    /// The broker took us: say "online" (retained) first, then let events flow.
    fn connected(&self, client: &AsyncClient) {
        {
            let mut outbox = self.shared.outbox();
            match client.try_publish(&self.topics.availability, QoS::AtLeastOnce, true, ONLINE) {
                Ok(()) => outbox.control_sent(),
                Err(e) => warn!(error = %e, "MQTT: cannot queue the availability message"),
            }
            self.shared.connected.store(true, Ordering::SeqCst);
        }
        info!(broker = %self.broker, mirror = %self.mirror, "MQTT: connected");
        self.publish_health(client);
        self.shared.wake.notify_one();
    }

    /// Hands buffered events to the client while connected and the window allows; at the end
    /// of the stream, drains (bounded), says "offline" and disconnects.
    async fn send_loop(&self, client: &AsyncClient) {
        let mut deadline: Option<Instant> = None;
        loop {
            let _ = tokio::time::timeout(IDLE_CHECK, self.shared.wake.notified()).await;
            let drained = self.pump(client);
            if !self.shared.closing.load(Ordering::SeqCst) {
                continue;
            }
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + DRAIN_TIMEOUT);
            let connected = self.shared.connected.load(Ordering::SeqCst);
            if connected && (drained || Instant::now() >= deadline) {
                // A clean goodbye: the final counters, then "offline" (the will is only for
                // deaths).
                self.publish_health(client);
                let _ =
                    client.try_publish(&self.topics.availability, QoS::AtLeastOnce, true, OFFLINE);
                let _ = client.try_disconnect();
                return;
            }
            if Instant::now() >= deadline {
                return;
            }
        }
    }

    /// Moves events from the outbox to the client. Returns whether everything was delivered.
    fn pump(&self, client: &AsyncClient) -> bool {
        let mut outbox = self.shared.outbox();
        if !self.shared.connected.load(Ordering::SeqCst) {
            return outbox.is_drained();
        }
        while let Some(event) = outbox.take_next(WINDOW) {
            if let Err(e) = client.try_publish(
                &self.topics.events,
                QoS::AtLeastOnce,
                false,
                event.as_bytes().to_vec(),
            ) {
                // The request channel is sized for the window: this is a bug, not weather.
                warn!(error = %e, "MQTT: cannot queue an event; keeping it for later");
                outbox.unsend_last();
                break;
            }
        }
        outbox.is_drained()
    }

    async fn health_loop(&self, client: &AsyncClient) {
        let mut tick = tokio::time::interval(self.health_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // The first tick is immediate; the connection publishes health itself when it comes up.
        tick.tick().await;
        loop {
            tick.tick().await;
            if self.shared.connected.load(Ordering::SeqCst) {
                self.publish_health(client);
            }
        }
    }

    /// Health is a snapshot: QoS 0, not retained, never buffered (a stale one is worthless).
    fn publish_health(&self, client: &AsyncClient) {
        let payload = self.health_payload();
        if let Err(e) = client.try_publish(&self.topics.health, QoS::AtMostOnce, false, payload) {
            debug!(error = %e, "MQTT: health message skipped");
        }
    }

    fn health_payload(&self) -> Vec<u8> {
        let mut health = match &self.health {
            Some(probe) => probe(),
            None => serde_json::json!({ "status": "ok" }),
        };
        let (buffered, dropped, published) = {
            let outbox = self.shared.outbox();
            (outbox.len(), outbox.dropped(), outbox.delivered())
        };
        if let Some(fields) = health.as_object_mut() {
            fields.insert("mirror".into(), self.mirror.clone().into());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            fields.insert("time".into(), now.into());
            fields.insert(
                "mqtt".into(),
                serde_json::json!({
                    "buffered": buffered,
                    "dropped": dropped,
                    "published": published,
                }),
            );
        }
        serde_json::to_vec(&health).unwrap_or_default()
    }
}

/// One line an operator can act on.
fn describe(error: &ConnectionError) -> String {
    match error {
        ConnectionError::ConnectionRefused(code) => format!(
            "the broker refused the connection ({code:?}); check the mqtt-username/mqtt-password credentials and the broker's ACL"
        ),
        ConnectionError::Tls(e) => format!(
            "TLS: {e}; check the broker's certificate against the mqtt-ca credential (or the system roots)"
        ),
        other => other.to_string(),
    }
}
