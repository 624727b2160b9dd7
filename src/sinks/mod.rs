//! Where events end up. Each sink is a component, as in Vector: its config section builds it
//! (one variant of [`SinkConfig`]), and [`build`] is the one place that turns the config's list
//! ([`crate::config::Config::sinks`]) into running sinks.
//!
//! - [`stdout`], [`file`]: JSON lines, the event file;
//! - [`sse`]: the `/events` Server-Sent Events stream (served by the daemon's HTTP server);
//! - [`mqtt`]: events, availability and health on an MQTT broker;
//! - [`metrics`]: the outcome counters of `/metrics` (always on, added by the pipeline);
//! - [`collector`]: keeps every event in memory, for `eval` and tests.
//!
//! A new sink is one file (or folder) here, one variant of [`SinkConfig`] and its arm in
//! [`SinkConfig::build`]. Sinks see every event in stream order and must never block the
//! dispatcher for long: anything slow (a network) goes behind a bounded buffer of its own.

pub mod collector;
pub mod file;
pub mod metrics;
pub mod mqtt;
pub mod sse;
pub mod stdout;

use std::path::PathBuf;
use std::sync::Arc;

use mirrorsight_contract::events::Event;
use thiserror::Error;

use crate::metrics::PrometheusText;

pub use collector::Collector;
pub use file::{FileSink, FileSinkConfig};
pub use mqtt::{MqttConfig, MqttSink};
pub use sse::{SseBroadcast, SseSinkConfig, SseSubscriber};
pub use stdout::StdoutSink;

#[derive(Debug, Error)]
pub enum SinkError {
    #[error("cannot write events to {path}: {source} (check the path and free space)")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A sink that failed in its own terms (a display, a broker's TLS settings).
    #[error("{sink}: {source}")]
    Component {
        sink: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Consumes events (writes, forwards, draws). Sinks see every event in stream order.
pub trait EventSink: Send {
    fn handle(&mut self, event: &Event) -> Result<(), SinkError>;
    /// Media time advanced to `t` (once per frame): lets time-driven sinks (the overlay's
    /// countdown) move on between events.
    fn tick(&mut self, _t: f64) {}
    /// Makes everything handled so far durable or visible. Called once, at the end.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A config value a sink cannot work with, with the key that holds it.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("config key `{key}`: {message}")]
pub struct SinkConfigError {
    pub key: &'static str,
    pub message: String,
}

/// One configured sink: its section of the config, which builds it.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkConfig {
    /// `events.file = "-"`.
    Stdout,
    /// `events.file = "<path>"`.
    File(FileSinkConfig),
    /// `/events` on the daemon's HTTP server (`service.listen`, `service.events_buffer`).
    Sse(SseSinkConfig),
    /// `[mqtt]` with `enabled = true`.
    Mqtt(MqttConfig),
}

/// The current state of the daemon, as a sink that reports it (MQTT's health topic) reads it:
/// the JSON of `/healthz`.
pub type HealthProbe = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Looks up an environment variable (`std::env::var` in production; a map in tests).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What sinks may need from the rest of the process while they are built.
#[derive(Clone)]
pub struct SinkContext {
    /// The daemon's health (`run`); `None` for replays.
    pub health: Option<HealthProbe>,
    /// Where credentials come from (`$CREDENTIALS_DIRECTORY`, `MIRRORSIGHT_*` variables).
    pub env: EnvLookup,
}

impl SinkContext {
    /// Credentials from this process's environment, no health.
    pub fn from_process() -> Self {
        Self {
            health: None,
            env: Arc::new(|key| std::env::var(key).ok()),
        }
    }

    pub fn with_health(mut self, health: HealthProbe) -> Self {
        self.health = Some(health);
        self
    }
}

/// One built sink and what it offers the rest of the daemon.
pub struct BuiltSink {
    pub sink: Box<dyn EventSink>,
    /// The `/events` stream to hand to the HTTP server (the SSE sink).
    pub event_stream: Option<SseSubscriber>,
    /// Lines for `/metrics` (a sink's own counters).
    pub metrics: Option<Arc<dyn PrometheusText>>,
}

impl BuiltSink {
    fn plain(sink: impl EventSink + 'static) -> Self {
        Self {
            sink: Box::new(sink),
            event_stream: None,
            metrics: None,
        }
    }
}

impl SinkConfig {
    /// The event-file setting as a sink: `-` is stdout, `""` is none, anything else a path.
    pub fn from_events_file(target: &str) -> Option<Self> {
        match target {
            "" => None,
            "-" => Some(SinkConfig::Stdout),
            path => Some(SinkConfig::File(FileSinkConfig { path: path.into() })),
        }
    }

    /// Whether the sink only makes sense next to the daemon's HTTP server.
    pub fn needs_http_server(&self) -> bool {
        matches!(self, SinkConfig::Sse(_))
    }

    pub fn build(&self, context: &SinkContext) -> Result<BuiltSink, SinkError> {
        Ok(match self {
            SinkConfig::Stdout => BuiltSink::plain(StdoutSink::new()),
            SinkConfig::File(config) => BuiltSink::plain(FileSink::create(config)?),
            SinkConfig::Sse(config) => {
                let sink = SseBroadcast::new(config.buffer);
                BuiltSink {
                    event_stream: Some(sink.subscriber()),
                    sink: Box::new(sink),
                    metrics: None,
                }
            }
            SinkConfig::Mqtt(config) => {
                let sink = MqttSink::start(config, context)?;
                BuiltSink {
                    metrics: Some(sink.stats()),
                    sink: Box::new(sink),
                    event_stream: None,
                }
            }
        })
    }
}

/// The running sinks of one command, in the config's order.
#[derive(Default)]
pub struct Sinks {
    pub sinks: Vec<Box<dyn EventSink>>,
    /// The `/events` stream, when the list has an SSE sink.
    pub event_stream: Option<SseSubscriber>,
    /// The sinks' own `/metrics` lines.
    pub metrics: Vec<Arc<dyn PrometheusText>>,
}

/// Builds every sink of `configs`, in order: the one place sinks are made.
pub fn build(configs: &[SinkConfig], context: &SinkContext) -> Result<Sinks, SinkError> {
    let mut sinks = Sinks::default();
    for config in configs {
        let built = config.build(context)?;
        sinks.sinks.push(built.sink);
        if let Some(stream) = built.event_stream {
            sinks.event_stream = Some(stream);
        }
        sinks.metrics.extend(built.metrics);
    }
    Ok(sinks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_file_setting_names_its_sink() {
        assert_eq!(SinkConfig::from_events_file(""), None);
        assert_eq!(SinkConfig::from_events_file("-"), Some(SinkConfig::Stdout));
        assert_eq!(
            SinkConfig::from_events_file("/tmp/e.jsonl"),
            Some(SinkConfig::File(FileSinkConfig {
                path: "/tmp/e.jsonl".into()
            }))
        );
    }

    #[test]
    fn build_hands_out_the_event_stream_and_keeps_the_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let configs = [
            SinkConfig::File(FileSinkConfig { path: path.clone() }),
            SinkConfig::Sse(SseSinkConfig { buffer: 4 }),
        ];
        let mut built = build(&configs, &SinkContext::from_process()).unwrap();
        assert_eq!(built.sinks.len(), 2);
        let stream = built.event_stream.clone().expect("the SSE sink's stream");
        assert_eq!(stream.clients(), 0);
        let event = Event::new(
            1.5,
            mirrorsight_contract::events::EventKind::SourceEnded { frames: 3 },
        );
        for sink in built.sinks.iter_mut() {
            sink.handle(&event).unwrap();
            sink.flush().unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", event.to_json_line())
        );
    }

    #[test]
    fn an_unwritable_event_file_is_an_error_naming_it() {
        let configs = [SinkConfig::File(FileSinkConfig {
            path: "/nonexistent-dir/events.jsonl".into(),
        })];
        let err = build(&configs, &SinkContext::from_process())
            .err()
            .expect("no such directory");
        assert!(
            err.to_string().contains("/nonexistent-dir/events.jsonl"),
            "{err}"
        );
    }
}
