//! Configuration: TOML, deserialised once, validated once, errors that name the key.
//!
//! Every key is documented with its default in `systemd/mirrorsight.toml`; keep the two in step.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use mirrorsight_core::presence::PresenceConfig;
pub use mirrorsight_core::session::SessionConfig;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source} (check the path given to --config)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
    #[error("--set {arg}: {message} (expected --set section.key=value)")]
    Override { arg: String, message: String },
}

fn key_error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_string(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub source: SourceConfig,
    pub camera: crate::source::CameraSettings,
    pub models: ModelsConfig,
    pub onnxruntime: OnnxRuntimeConfig,
    pub presence: PresenceConfig,
    pub session: SessionConfig,
    pub hands: HandsConfig,
    pub gestures: crate::gesture::GestureConfig,
    pub events: EventsConfig,
    pub overlay: mirrorsight_overlay::OverlayConfig,
    pub storage: StorageConfig,
    pub qr: mirrorsight_wechat::QrConfig,
    pub wechat: mirrorsight_wechat::WechatConfig,
    pub backend: mirrorsight_wechat::BackendConfig,
    pub photos: mirrorsight_photos::PhotosConfig,
    pub clips: crate::actions::clips::ClipsConfig,
    pub service: crate::service::ServiceConfig,
    pub display: DisplayConfig,
    pub mqtt: crate::sinks::MqttConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisplayMode {
    /// A borderless, screen-sized window on `$DISPLAY`.
    Window,
    /// Render off screen (with `display.snapshot_dir`: a PNG per change).
    Headless,
    /// Draw nothing.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DisplayConfig {
    /// What `mirrorsight run` does with the mirror's screen. (`replay` takes `--display`.)
    pub mode: DisplayMode,
    /// With `headless` or `window`: write a PNG each time the picture changes.
    pub snapshot_dir: Option<PathBuf>,
}

impl Default for DisplayConfig {
    fn default() -> Self {
        Self {
            mode: DisplayMode::Window,
            snapshot_dir: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Durable state (the session ↔ scene bindings). Unset: /var/lib/mirrorsight for `run`
    /// (systemd's StateDirectory), a temporary directory for `replay`.
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A recorded clip (`source.path`), paced at its own frame rate like a camera.
    File,
    /// A V4L2 camera (`[camera]`).
    #[default]
    Camera,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    pub kind: SourceKind,
    /// Clip to play when `kind = "file"`.
    pub path: Option<PathBuf>,
    /// `run` with a clip: pace it at its own frame rate and drop stale frames like a live
    /// camera (false: process every frame as fast as possible).
    pub realtime: bool,
    /// Frames buffered between capture and vision.
    pub queue_frames: usize,
}

impl SourceConfig {
    /// Checks `[source]`; errors name the full key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.queue_frames == 0 {
            return Err(key_error("source.queue_frames", "must be at least 1"));
        }
        if self.kind == SourceKind::File
            && self.path.as_ref().is_none_or(|p| p.as_os_str().is_empty())
        {
            return Err(key_error(
                "source.path",
                "is required when source.kind = \"file\"",
            ));
        }
        Ok(())
    }
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            kind: SourceKind::Camera,
            path: None,
            realtime: true,
            queue_frames: 4,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Folder with the ONNX files; empty = search the usual places.
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnnxRuntimeConfig {
    /// Path of libonnxruntime.so; empty = search the usual places.
    pub library: Option<PathBuf>,
    /// The execution provider: OpenVINO, or ONNX Runtime's own CPU kernels (also the
    /// fallback, with a logged reason, when OpenVINO is not installed or refuses a model).
    pub provider: crate::vision::runtime::Provider,
    /// OpenVINO's device: "CPU", "GPU" (an Intel iGPU), "AUTO", …
    pub device: String,
    /// The models' precision: "fp32", or "int8" (the INT8 models kept in models/manifest.json,
    /// FP32 for the others).
    pub precision: crate::vision::runtime::Precision,
    /// Intra-op threads per model.
    pub intra_threads: usize,
    /// Busy-wait in ONNX Runtime's thread pool (costs a core while idle).
    pub spinning: bool,
}

impl OnnxRuntimeConfig {
    /// Checks `[onnxruntime]`; errors name the full key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.device.trim().is_empty() {
            return Err(key_error(
                "onnxruntime.device",
                "must name an OpenVINO device such as \"CPU\" or \"GPU\"",
            ));
        }
        if self.intra_threads == 0 || self.intra_threads > 64 {
            return Err(key_error("onnxruntime.intra_threads", "must be 1..=64"));
        }
        Ok(())
    }
}

impl Default for OnnxRuntimeConfig {
    fn default() -> Self {
        Self {
            library: None,
            // OpenVINO on one thread per model with the INT8 hand models: about half the CPU
            // per frame of the CPU provider on two threads, with the same `eval --augment all`
            // results (README, "Performance against MediaPipe").
            provider: crate::vision::runtime::Provider::OpenVino,
            device: "CPU".into(),
            precision: crate::vision::runtime::Precision::Int8,
            intra_threads: 1,
            spinning: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelVariant {
    Lite,
    Full,
}

impl ModelVariant {
    pub fn suffix(self) -> &'static str {
        match self {
            ModelVariant::Lite => "lite",
            ModelVariant::Full => "full",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HandsConfig {
    /// Track hands (and the shopper's body landmarks) while a session is open.
    pub enabled: bool,
    /// Palm detector variant: "lite" or "full".
    pub palm_model: ModelVariant,
    /// Hand landmark variant: "lite" or "full".
    pub landmark_model: ModelVariant,
    /// Hands followed at once.
    pub max_hands: usize,
    /// Minimum palm-detector score.
    pub min_palm_score: f32,
    /// Hand-presence probability below which a hand counts as lost.
    pub min_presence: f32,
    /// While no hand is followed, run the palm detector this often (seconds; 0 = every frame).
    pub search_interval_s: f64,
    /// Each palm search that finds nothing doubles the wait before the next one, up to this
    /// (seconds; equal to `search_interval_s` = no backoff). A found hand starts over.
    pub search_backoff_max_s: f64,
    /// While one hand is followed, look for a second one this often (seconds).
    pub second_hand_interval_s: f64,
    /// Hands are searched in the shopper's region grown by this fraction on each side.
    pub search_margin: f32,
    /// While every raised arm of the shopper has a followed hand, run the body-landmark model
    /// only on every this-many-th frame (the hands move the arms in between; a lost hand runs
    /// it at once). 1 = every frame, the default: 2 loses one swipe of the sense clip mirrored
    /// and at 10 fps in the robustness suite.
    pub body_landmarks_every: u32,
}

impl HandsConfig {
    /// Checks `[hands]`; errors name the full key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=4).contains(&self.max_hands) {
            return Err(key_error("hands.max_hands", "must be 1..=4"));
        }
        let fraction = |key: &str, v: f32| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(key_error(key, format!("must be between 0 and 1, got {v}")))
            }
        };
        fraction("hands.min_palm_score", self.min_palm_score)?;
        fraction("hands.min_presence", self.min_presence)?;
        let v = self.second_hand_interval_s;
        if !(v.is_finite() && v > 0.0) {
            return Err(key_error(
                "hands.second_hand_interval_s",
                format!("must be > 0, got {v}"),
            ));
        }
        if !(self.search_interval_s >= 0.0 && self.search_interval_s.is_finite()) {
            return Err(key_error("hands.search_interval_s", "must be >= 0"));
        }
        let v = self.search_backoff_max_s;
        if !(v.is_finite() && v >= self.search_interval_s && v <= 10.0) {
            return Err(key_error(
                "hands.search_backoff_max_s",
                format!(
                    "must be between hands.search_interval_s ({}) and 10, got {v}",
                    self.search_interval_s
                ),
            ));
        }
        if !(0.0..=2.0).contains(&self.search_margin) {
            return Err(key_error("hands.search_margin", "must be between 0 and 2"));
        }
        if !(1..=10).contains(&self.body_landmarks_every) {
            return Err(key_error(
                "hands.body_landmarks_every",
                format!("must be 1..=10, got {}", self.body_landmarks_every),
            ));
        }
        Ok(())
    }
}

impl Default for HandsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            palm_model: ModelVariant::Lite,
            landmark_model: ModelVariant::Full,
            max_hands: 2,
            min_palm_score: 0.5,
            min_presence: 0.5,
            search_interval_s: 0.2,
            search_backoff_max_s: 0.8,
            second_hand_interval_s: 0.5,
            search_margin: 0.25,
            body_landmarks_every: 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Where JSON-lines events go: "-" for stdout, a path, or "" for nowhere.
    pub file: String,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self { file: "-".into() }
    }
}

impl Config {
    /// Reads `path` (if any), applies `--set` overrides, deserialises and validates.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Self, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Syntax {
                        path: path.to_path_buf(),
                        message: format!("{}{}", e.message().trim(), locate(&text, &e)),
                    })?
            }
            None => toml::Table::new(),
        };
        for arg in overrides {
            apply_override(&mut table, arg)?;
        }
        let old_overlay_countdown = take_old_overlay_countdown(&mut table)?;
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                let message = e.into_inner().to_string();
                // serde appends "in `section`" on a second line; the key already says where.
                let message = message.lines().next().unwrap_or_default().to_string();
                // serde names an unknown field without its section; the path gives the section.
                key_error(
                    if key == "." { "(top level)" } else { &key },
                    message.trim().to_string(),
                )
            })?;
        config.validate()?;
        if let Some(old) = old_overlay_countdown {
            check_old_overlay_countdown(old, config.photos.countdown_s)?;
        }
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        // Every section validates itself; the errors name the full key.
        self.source.validate()?;
        self.camera
            .validate()
            .map_err(|e| key_error(e.key, e.message))?;
        self.mqtt
            .validate()
            .map_err(|e| key_error(e.key, e.message))?;
        self.service
            .validate()
            .map_err(|e| key_error(e.key, e.message))?;
        self.onnxruntime.validate()?;
        let component = |e: mirrorsight_core::ConfigError| key_error(&e.key, e.message);
        self.presence.validate().map_err(component)?;
        self.session.validate().map_err(component)?;
        self.hands.validate()?;
        if let Err(errors) = self.overlay.validate()
            && let Some(first) = errors.into_iter().next()
        {
            return Err(key_error(&first.key, first.message));
        }
        self.wechat_settings()
            .validate()
            .map_err(|e| key_error(&e.key, e.message))?;
        self.gestures
            .validate()
            .map_err(|e| key_error(&e.key, e.message))?;
        self.photos
            .validate()
            .map_err(|e| key_error(e.key, e.message))?;
        self.clips
            .validate()
            .map_err(|(key, message)| key_error(key, message))?;
        Ok(())
    }
}

impl Config {
    /// Spool directories left at their defaults (under /var/lib/mirrorsight) move under
    /// `state_dir`, so a mirror whose `storage.dir` says otherwise keeps its photos and clips
    /// there too and never writes into a live mirror's default spool. Explicit settings stay.
    pub fn place_spools_under(&mut self, state_dir: &Path) -> std::io::Result<()> {
        if self.photos.spool_dir == mirrorsight_photos::PhotosConfig::default().spool_dir {
            self.photos.spool_dir = std::path::absolute(state_dir.join("spool"))?;
        }
        if self.clips.spool_dir == crate::actions::clips::ClipsConfig::default().spool_dir {
            self.clips.spool_dir = std::path::absolute(state_dir.join("clips"))?;
        }
        Ok(())
    }
}

impl Config {
    /// The event sinks this config asks for, in delivery order: the one list every command
    /// builds its sinks from (see [`crate::sinks::build`]).
    pub fn sinks(&self) -> Vec<crate::sinks::SinkConfig> {
        use crate::sinks::{SinkConfig, SseSinkConfig};
        let mut sinks: Vec<SinkConfig> = SinkConfig::from_events_file(&self.events.file)
            .into_iter()
            .collect();
        if matches!(self.service.listen_addr(), Ok(Some(_))) {
            sinks.push(SinkConfig::Sse(SseSinkConfig {
                buffer: self.service.events_buffer,
            }));
        }
        if self.mqtt.enabled {
            sinks.push(SinkConfig::Mqtt(self.mqtt.clone()));
        }
        sinks
    }

    /// The sections [`crate::pipeline::run`] takes.
    pub fn pipeline_sections(&self) -> crate::pipeline::PipelineSections<'_> {
        crate::pipeline::PipelineSections {
            source: &self.source,
            camera: &self.camera,
            onnxruntime: &self.onnxruntime,
            models: &self.models,
            presence: &self.presence,
            session: &self.session,
            hands: &self.hands,
            gestures: &self.gestures,
            photos: &self.photos,
            clips: &self.clips,
        }
    }

    /// The QR minting sections as the WeChat crate takes them.
    pub fn wechat_settings(&self) -> mirrorsight_wechat::Settings {
        mirrorsight_wechat::Settings {
            qr: self.qr.clone(),
            wechat: self.wechat.clone(),
            backend: self.backend.clone(),
        }
    }
}

/// `overlay.countdown_s` was a second copy of `photos.countdown_s`; the screen now counts down
/// to the `capture_at_ms` of each `photo_requested`. Taken out of the table before the sections
/// are read, so the overlay's section does not know it.
const OLD_OVERLAY_COUNTDOWN: &str = "overlay.countdown_s";

fn take_old_overlay_countdown(table: &mut toml::Table) -> Result<Option<f64>, ConfigError> {
    let Some(overlay) = table.get_mut("overlay").and_then(toml::Value::as_table_mut) else {
        return Ok(None);
    };
    match overlay.remove("countdown_s") {
        None => Ok(None),
        Some(toml::Value::Float(v)) => Ok(Some(v)),
        Some(toml::Value::Integer(v)) => Ok(Some(v as f64)),
        Some(other) => Err(key_error(
            OLD_OVERLAY_COUNTDOWN,
            format!(
                "is no longer a key (got {other}): delete it; photos.countdown_s sets the countdown"
            ),
        )),
    }
}

/// Every config that was valid before the key went (it had to equal `photos.countdown_s`)
/// keeps working, with a warning to delete the key; one that disagrees is refused rather than
/// silently counting down to a different moment than the operator wrote.
fn check_old_overlay_countdown(old: f64, photos: f64) -> Result<(), ConfigError> {
    if (old - photos).abs() > 1e-9 {
        return Err(key_error(
            OLD_OVERLAY_COUNTDOWN,
            format!(
                "is no longer a key and disagrees with photos.countdown_s ({old} ≠ {photos}): \
                 delete it and set photos.countdown_s, which alone sets the countdown"
            ),
        ));
    }
    tracing::warn!(
        "config key `{OLD_OVERLAY_COUNTDOWN}` is no longer used (photos.countdown_s sets the countdown): delete it"
    );
    Ok(())
}

fn locate(text: &str, e: &toml::de::Error) -> String {
    e.span()
        .map(|s| {
            let before = &text[..s.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!(" at line {line}, column {column}")
        })
        .unwrap_or_default()
}

/// `a.b.c=value`: the value is parsed as TOML (`2`, `true`, `"x"`, `[1,2]`), else taken as a string.
fn apply_override(table: &mut toml::Table, arg: &str) -> Result<(), ConfigError> {
    let bad = |message: &str| ConfigError::Override {
        arg: arg.to_string(),
        message: message.to_string(),
    };
    let (key, raw) = arg.split_once('=').ok_or_else(|| bad("missing `=`"))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(bad("empty key"));
    }
    let value = parse_value(raw.trim());
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().ok_or_else(|| bad("empty key"))?;
    let mut cursor = table;
    for part in parts {
        let entry = cursor
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cursor = entry
            .as_table_mut()
            .ok_or_else(|| bad(&format!("`{part}` is not a section")))?;
    }
    cursor.insert(last.to_string(), value);
    Ok(())
}

fn parse_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str, overrides: &[&str]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        Config::load(Some(&path), &overrides)
    }

    #[test]
    fn default_spools_follow_the_state_directory_and_explicit_ones_stay() {
        let mut moved = load_str("", &[]).unwrap();
        moved.place_spools_under(Path::new("/srv/mirror")).unwrap();
        assert_eq!(moved.photos.spool_dir, Path::new("/srv/mirror/spool"));
        assert_eq!(moved.clips.spool_dir, Path::new("/srv/mirror/clips"));

        let mut kept = load_str(
            "[photos]\nspool_dir = \"/data/photos\"\n[clips]\nspool_dir = \"/data/clips\"\n",
            &[],
        )
        .unwrap();
        kept.place_spools_under(Path::new("/srv/mirror")).unwrap();
        assert_eq!(kept.photos.spool_dir, Path::new("/data/photos"));
        assert_eq!(kept.clips.spool_dir, Path::new("/data/clips"));
    }

    #[test]
    fn the_example_config_lists_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/mirrorsight.toml");
        let example = Config::load(Some(&path), &[]).unwrap();
        assert_eq!(format!("{example:#?}"), format!("{:#?}", Config::default()));
        // Every section of the config appears in the example.
        let text = std::fs::read_to_string(&path).unwrap();
        let debug = format!("{:#?}", Config::default());
        let sections = debug
            .lines()
            .filter_map(|l| l.strip_prefix("    ")?.strip_suffix(": ")?.into());
        for section in sections.chain(debug.lines().filter_map(|l| {
            let name = l.strip_prefix("    ")?.split(':').next()?;
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_')
                .then_some(name)
        })) {
            assert!(
                text.contains(&format!("[{section}]")),
                "[{section}] missing from the example config"
            );
        }
    }

    #[test]
    fn the_countdown_is_one_key() {
        let c = load_str("", &["photos.countdown_s=2"]).unwrap();
        assert_eq!(c.photos.countdown_s, 2.0);
        // An old config that still sets overlay.countdown_s: accepted while it agrees...
        let old = "[overlay]\ncountdown_s = 2\n[photos]\ncountdown_s = 2.0\n";
        assert_eq!(load_str(old, &[]).unwrap().photos.countdown_s, 2.0);
        assert!(load_str("[overlay]\ncountdown_s = 3.0\n", &[]).is_ok());
        // ...refused, naming both keys, once it disagrees.
        let err = load_str(old, &["photos.countdown_s=4"])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("config key `overlay.countdown_s`")
                && err.contains("photos.countdown_s"),
            "{err}"
        );
        let err = load_str("", &["overlay.countdown_s=soon"])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("config key `overlay.countdown_s`") && err.contains("delete it"),
            "{err}"
        );
    }

    #[test]
    fn the_sink_list_follows_the_config() {
        use crate::sinks::{FileSinkConfig, SinkConfig, SseSinkConfig};
        let c = load_str("", &[]).unwrap();
        assert_eq!(
            c.sinks(),
            [
                SinkConfig::Stdout,
                SinkConfig::Sse(SseSinkConfig { buffer: 256 })
            ]
        );
        let c = load_str(
            "[events]\nfile = \"/tmp/e.jsonl\"\n[service]\nlisten = \"\"\n[mqtt]\nenabled = true\nmirror = \"m1\"\n",
            &[],
        )
        .unwrap();
        let sinks = c.sinks();
        assert_eq!(
            sinks[0],
            SinkConfig::File(FileSinkConfig {
                path: "/tmp/e.jsonl".into()
            })
        );
        assert!(matches!(&sinks[1..], [SinkConfig::Mqtt(m)] if m.mirror == "m1"));
        let err = load_str("", &["mqtt.url=tcp://broker:1883"])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("config key `mqtt.url`"), "{err}");
    }

    #[test]
    fn section_validators_are_applied() {
        let err = load_str("", &["gestures.swipe_min_travel_shoulders=-1"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("gestures.swipe_min_travel_shoulders"), "{err}");
        let err = load_str("", &["photos.jpeg_quality=0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("photos.jpeg_quality"), "{err}");
        let err = load_str("", &["qr.expire_seconds=0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("qr.expire_seconds"), "{err}");
        let err = load_str("", &["camera.width=1"]).unwrap_err().to_string();
        assert!(err.contains("camera.width"), "{err}");
    }

    #[test]
    fn source_onnxruntime_and_hands_check_their_own_sections() {
        // Each section on its own, as a component given only its section sees it...
        let key = |r: Result<(), ConfigError>| match r {
            Err(ConfigError::Key { key, .. }) => key,
            other => panic!("expected a key error, got {other:?}"),
        };
        let source = SourceConfig {
            kind: SourceKind::File,
            ..SourceConfig::default()
        };
        assert_eq!(key(source.validate()), "source.path");
        let source = SourceConfig {
            queue_frames: 0,
            ..SourceConfig::default()
        };
        assert_eq!(key(source.validate()), "source.queue_frames");
        let onnxruntime = OnnxRuntimeConfig {
            intra_threads: 65,
            ..OnnxRuntimeConfig::default()
        };
        assert_eq!(key(onnxruntime.validate()), "onnxruntime.intra_threads");
        let onnxruntime = OnnxRuntimeConfig {
            device: " ".into(),
            ..OnnxRuntimeConfig::default()
        };
        assert_eq!(key(onnxruntime.validate()), "onnxruntime.device");
        for (hands, expected) in [
            (
                HandsConfig {
                    max_hands: 5,
                    ..HandsConfig::default()
                },
                "hands.max_hands",
            ),
            (
                HandsConfig {
                    min_presence: 1.5,
                    ..HandsConfig::default()
                },
                "hands.min_presence",
            ),
            (
                HandsConfig {
                    second_hand_interval_s: 0.0,
                    ..HandsConfig::default()
                },
                "hands.second_hand_interval_s",
            ),
            (
                HandsConfig {
                    search_interval_s: f64::NAN,
                    ..HandsConfig::default()
                },
                "hands.search_interval_s",
            ),
            (
                HandsConfig {
                    search_backoff_max_s: 0.1,
                    ..HandsConfig::default()
                },
                "hands.search_backoff_max_s",
            ),
            (
                HandsConfig {
                    search_margin: 3.0,
                    ..HandsConfig::default()
                },
                "hands.search_margin",
            ),
        ] {
            assert_eq!(key(hands.validate()), expected);
        }
        // ...and through the loaded config.
        for (set, expected) in [
            ("source.queue_frames=0", "config key `source.queue_frames`"),
            (
                "onnxruntime.intra_threads=0",
                "config key `onnxruntime.intra_threads`",
            ),
            (
                "hands.min_palm_score=2.0",
                "config key `hands.min_palm_score`",
            ),
        ] {
            let err = load_str("", &[set]).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{set}: {err}");
        }
    }

    #[test]
    fn defaults_are_valid() {
        let c = load_str("", &[]).unwrap();
        assert_eq!(c.session.enter_after_s, 0.3);
        assert_eq!(c.session.exit_after_s, 30.0);
    }

    #[test]
    fn set_overrides_any_key_with_typed_values() {
        let c = load_str(
            "[session]\nexit_after_s = 9\n",
            &["session.exit_after_s=2", "camera.mirrored=false"],
        )
        .unwrap();
        assert_eq!(c.session.exit_after_s, 2.0);
        assert!(!c.camera.mirrored);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load_str("[session]\nexit_afer_s = 2\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("session"), "{err}");
        assert!(err.contains("exit_afer_s"), "{err}");
        let err = load_str("", &["presense.min_score=0.3"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("presense"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = load_str("[session]\nexit_after_s = \"soon\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("config key `session.exit_after_s`"),
            "{err}"
        );
    }

    #[test]
    fn out_of_range_names_the_key() {
        let err = load_str("", &["presence.min_height_fraction=1.5"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("presence.min_height_fraction"), "{err}");
        let err = load_str("", &["session.exit_after_s=0.2"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("session.absent_after_s"), "{err}");
    }

    #[test]
    fn syntax_error_names_the_file() {
        let err = load_str("[session\n", &[]).unwrap_err().to_string();
        assert!(
            err.contains("c.toml") && err.contains("not valid TOML"),
            "{err}"
        );
    }

    #[test]
    fn malformed_override_is_explained() {
        let err = load_str("", &["session.exit_after_s"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing `=`"), "{err}");
    }
}
