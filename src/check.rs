//! `mirrorsight check`: is this mirror ready to run?
//!
//! It checks the install (ONNX Runtime, every model against the manifest, the font) and names,
//! one line each, exactly what the technician still has to provide before
//! `systemctl enable --now mirrorsight`: the camera, where the QR codes lead, the store hub, the
//! credentials, the screen. Nothing is opened that a running daemon holds (the camera is looked
//! up, not streamed) and nothing goes over the network, so it is safe next to a running service.
//!
//! Exit status: 0 ready; 78 (EX_CONFIG) while something is still to provide; 1 when the
//! install itself is broken.

use std::fmt;
use std::path::{Path, PathBuf};

use mirrorsight::config::{Config, DisplayMode, SourceKind};
use mirrorsight::source::camera::{CameraDevice, list_cameras};
use mirrorsight::source::{Source, VideoFile};
use mirrorsight::vision::runtime::{ModelsDir, Precision, Provider, Runtime, manifest};
use mirrorsight_wechat::QrKind;
use mirrorsight_wechat::secret::{
    APPSECRET_ENV, CREDENTIALS_DIRECTORY_ENV, DEVICE_TOKEN_ENV, SecretSpec, load_secret,
};

/// Where the packaged unit's `LoadCredential=` lines read the secrets from. `check` runs in the
/// technician's shell, not in the unit, so it looks there when `$CREDENTIALS_DIRECTORY` is unset.
pub const UNIT_CREDENTIALS_DIR: &str = "/etc/mirrorsight/credentials";

/// The X display the packaged unit draws on (`Environment=DISPLAY=:0`).
const UNIT_DISPLAY: &str = ":0";

/// The mirror is not ready yet: what is still to provide (and what is broken), by name.
#[derive(Debug)]
pub struct NotReady {
    pub missing: Vec<String>,
    pub failed: Vec<String>,
}

impl NotReady {
    /// Only missing pieces (no broken install): the config is the cause.
    pub fn is_config(&self) -> bool {
        self.failed.is_empty()
    }
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!(
                "not ready, still to provide: {}",
                self.missing.join(", ")
            ));
        }
        if !self.failed.is_empty() {
            parts.push(format!(
                "{} check(s) failed: {}",
                self.failed.len(),
                self.failed.join(", ")
            ));
        }
        write!(f, "{} (see the report above)", parts.join("; "))
    }
}

impl std::error::Error for NotReady {}

enum Verdict {
    Ok(String),
    /// The technician has to provide or decide something.
    Missing(String),
    /// The install is broken (a library, a model, a font).
    Failed(String),
}

#[derive(Default)]
struct Report {
    missing: Vec<String>,
    failed: Vec<String>,
}

impl Report {
    fn line(&mut self, what: &str, verdict: Verdict) {
        match verdict {
            Verdict::Ok(detail) if detail.is_empty() => println!("{what}: ok"),
            Verdict::Ok(detail) => println!("{what}: ok ({detail})"),
            Verdict::Missing(why) => {
                println!("{what}: MISSING: {why}");
                self.missing.push(what.to_string());
            }
            Verdict::Failed(why) => {
                println!("{what}: FAILED: {why}");
                self.failed.push(what.to_string());
            }
        }
    }
}

/// Prints the report; `Err(NotReady)` unless everything is in place.
pub fn run(cfg: &Config, config_path: Option<&Path>) -> Result<(), NotReady> {
    let mut report = Report::default();
    report.line(
        "config",
        Verdict::Ok(
            config_path
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "built-in defaults".into()),
        ),
    );
    install(cfg, &mut report);
    source(cfg, &mut report);
    qr_and_backend(cfg, &mut report);
    credentials(cfg, &|k| std::env::var(k).ok(), &mut report);
    screen(cfg, &mut report);
    clips(
        cfg,
        &std::env::var_os("PATH").unwrap_or_default(),
        &mut report,
    );
    if report.missing.is_empty() && report.failed.is_empty() {
        println!("ready: systemctl enable --now mirrorsight");
        Ok(())
    } else {
        Err(NotReady {
            missing: report.missing,
            failed: report.failed,
        })
    }
}

/// ONNX Runtime and the models: the package's part.
fn install(cfg: &Config, report: &mut Report) {
    let runtime = match Runtime::get(&cfg.onnxruntime) {
        Ok(runtime) => {
            report.line(
                "onnxruntime",
                Verdict::Ok(runtime.library.display().to_string()),
            );
            runtime
        }
        Err(e) => {
            report.line("onnxruntime", Verdict::Failed(e.to_string()));
            return;
        }
    };
    let models = match ModelsDir::locate(&cfg.models) {
        Ok(models) => models,
        Err(e) => {
            report.line("models", Verdict::Failed(e.to_string()));
            return;
        }
    };
    match manifest() {
        Ok(manifest) => {
            for spec in &manifest.models {
                let verdict = match runtime.load(&models, &spec.name) {
                    Ok(_) => Verdict::Ok(
                        models
                            .dir
                            .join(spec.file_for(runtime.precision).0)
                            .display()
                            .to_string(),
                    ),
                    Err(e) => Verdict::Failed(e.to_string()),
                };
                report.line(&format!("model {}", spec.name), verdict);
            }
        }
        Err(e) => report.line("models", Verdict::Failed(e.to_string())),
    }
    // After the models: a provider that refuses one falls back, and that is known only now.
    let provider = match runtime.fallback_reason() {
        Some(reason) => format!(
            "cpu, onnxruntime.provider = \"{}\" fell back: {reason}",
            cfg.onnxruntime.provider.name()
        ),
        None if runtime.provider() == Provider::OpenVino => {
            format!("openvino, device {}", cfg.onnxruntime.device)
        }
        None => runtime.provider().name().to_string(),
    };
    report.line("onnxruntime provider", Verdict::Ok(provider));
    let precision = match (runtime.precision, manifest()) {
        (Precision::Int8, Ok(manifest)) => {
            let int8 = manifest.models.iter().filter(|m| m.int8.is_some()).count();
            format!("int8: {int8} models in INT8, the others in FP32")
        }
        (precision, _) => precision.name().to_string(),
    };
    report.line("onnxruntime precision", Verdict::Ok(precision));
}

/// The camera (looked up, not opened) or the clip of a trial.
fn source(cfg: &Config, report: &mut Report) {
    match cfg.source.kind {
        SourceKind::File => {
            let Some(path) = &cfg.source.path else {
                report.line(
                    "source",
                    Verdict::Missing("source.kind = \"file\" needs source.path".into()),
                );
                return;
            };
            let verdict = match VideoFile::open(path) {
                Ok(v) => {
                    let i = v.info();
                    Verdict::Ok(format!(
                        "{}, {}x{} at {:.2} fps",
                        i.name, i.width, i.height, i.fps
                    ))
                }
                Err(e) => Verdict::Missing(e.to_string()),
            };
            report.line("source", verdict);
        }
        SourceKind::Camera => {
            let cameras = list_cameras();
            let found = if cameras.is_empty() {
                "no camera found".to_string()
            } else {
                let list: Vec<String> = cameras
                    .iter()
                    .map(|c| format!("{} {}", c.path.display(), c.name))
                    .collect();
                format!("cameras found: {}", list.join("; "))
            };
            let device = &cfg.camera.device;
            let verdict = match CameraDevice::parse(device).map(|d| d.resolve()) {
                Ok(Ok((_, path))) => {
                    Verdict::Ok(format!("camera.device = {device:?}: {}", path.display()))
                }
                Ok(Err(e)) => Verdict::Missing(format!(
                    "camera.device = {device:?}: {e} ({found}); plug the camera in or set camera.device"
                )),
                Err(e) => Verdict::Missing(format!("camera.device: {e}")),
            };
            report.line("camera", verdict);
        }
    }
}

/// Where a scanned code leads, and where photos go.
fn qr_and_backend(cfg: &Config, report: &mut Report) {
    match cfg.qr.kind {
        QrKind::Url => {
            let verdict = match placeholder_host(&cfg.qr.url_template) {
                Some(host) => Verdict::Missing(format!(
                    "qr.url_template = {:?} leads to the placeholder host {host}: set the shop's page, \
                     or let the store hub mint the codes (qr.kind = \"relay\")",
                    cfg.qr.url_template
                )),
                None => Verdict::Ok(format!("kind \"url\": {}", cfg.qr.url_template)),
            };
            report.line("qr", verdict);
        }
        QrKind::OfficialAccount => report.line(
            "qr",
            Verdict::Ok(format!(
                "kind \"official_account\", appid {}",
                cfg.wechat.appid
            )),
        ),
        QrKind::Relay => report.line(
            "qr",
            Verdict::Ok("kind \"relay\": the store hub mints".into()),
        ),
        QrKind::MiniProgram => report.line(
            "qr",
            Verdict::Ok(format!(
                "kind \"mini_program\", appid {}: the screen shows WeChat's code image",
                cfg.wechat.appid
            )),
        ),
    }
    let verdict = match &cfg.backend.url {
        None => Verdict::Missing(
            "backend.url is not set: photos would stay on this mirror and never reach the \
             shopper; set it to the store hub (mirrorsight-hub)"
                .into(),
        ),
        Some(url) => match placeholder_host(url) {
            Some(host) => Verdict::Missing(format!(
                "backend.url = {url:?} is the placeholder host {host}: set the store hub's URL"
            )),
            None => Verdict::Ok(url.clone()),
        },
    };
    report.line("backend.url", verdict);
}

/// The secrets the config needs, looked up where the unit will find them.
fn credentials(cfg: &Config, env: &dyn Fn(&str) -> Option<String>, report: &mut Report) {
    let unit_env = |key: &str| match env(key) {
        None if key == CREDENTIALS_DIRECTORY_ENV => Some(UNIT_CREDENTIALS_DIR.to_string()),
        value => value,
    };
    let mut specs = Vec::new();
    if cfg.qr.kind.needs_appsecret() {
        specs.push(SecretSpec {
            what: "WeChat appsecret",
            file_key: "wechat.appsecret_file",
            file: cfg.wechat.appsecret_file.as_deref(),
            credential: &cfg.wechat.appsecret_credential,
            env: APPSECRET_ENV,
        });
    }
    if cfg.qr.kind == QrKind::Relay || cfg.backend.url.is_some() {
        specs.push(SecretSpec {
            what: "device token",
            file_key: "backend.device_token_file",
            file: cfg.backend.device_token_file.as_deref(),
            credential: &cfg.backend.device_token_credential,
            env: DEVICE_TOKEN_ENV,
        });
    }
    for spec in specs {
        let dir = unit_env(CREDENTIALS_DIRECTORY_ENV).unwrap_or_default();
        let verdict = match load_secret(&spec, &unit_env) {
            Ok(Some((_, source))) => Verdict::Ok(format!("from {source}")),
            Ok(None) => Verdict::Missing(format!(
                "put it in {} (mode 0600; the unit hands it over with LoadCredential=), or set `{}`",
                Path::new(&dir).join(spec.credential).display(),
                spec.file_key
            )),
            Err(e) if is_permission_denied(&e) => {
                Verdict::Missing(format!("{e} (run `mirrorsight check` as root)"))
            }
            Err(e) => Verdict::Missing(e.to_string()),
        };
        report.line(spec.what, verdict);
    }
}

fn is_permission_denied(e: &mirrorsight_wechat::SecretError) -> bool {
    matches!(e, mirrorsight_wechat::SecretError::Read { source, .. }
        if source.kind() == std::io::ErrorKind::PermissionDenied)
}

/// The font the screen needs, and the X server the window goes to.
fn screen(cfg: &Config, report: &mut Report) {
    if cfg.display.mode == DisplayMode::None {
        return;
    }
    let verdict = match mirrorsight_overlay::Font::for_config(&cfg.overlay) {
        Ok(font) => Verdict::Ok(font.path().display().to_string()),
        Err(e) => Verdict::Failed(e.to_string()),
    };
    report.line("font", verdict);
    if cfg.display.mode != DisplayMode::Window {
        return;
    }
    let display = std::env::var("DISPLAY")
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| UNIT_DISPLAY.to_string());
    let verdict = match x_socket(&display) {
        None => Verdict::Ok(format!("DISPLAY={display} is not local; not checked")),
        Some(socket) if x_server_listens(&socket) => Verdict::Ok(format!(
            "X server {display} is running; admit the service with `xhost +si:localuser:mirrorsight`"
        )),
        Some(socket) => Verdict::Missing(format!(
            "display.mode = \"window\" but no X server runs on {display} (no {}): start the \
             kiosk's X session (or set display.mode = \"none\" for a mirror without a screen)",
            socket.display()
        )),
    };
    report.line("display", verdict);
}

/// The encoder turn-around clips need (`clips.ffmpeg`, H.264 through libx264), when clips are
/// enabled. Without it every palm hold would end in a refused clip, found only in the journal.
fn clips(cfg: &Config, path_var: &std::ffi::OsStr, report: &mut Report) {
    if !cfg.clips.enabled {
        return;
    }
    let program = &cfg.clips.ffmpeg;
    let verdict = match find_program(program, path_var) {
        None => Verdict::Failed(format!(
            "clips.ffmpeg = {:?} {}: install ffmpeg (apt install ffmpeg), set clips.ffmpeg, \
             or set clips.enabled = false",
            program.display().to_string(),
            if program.components().count() > 1 {
                "is not an executable file"
            } else {
                "is not on $PATH"
            }
        )),
        Some(found) => match has_encoder(&found, CLIP_ENCODER) {
            Ok(true) => Verdict::Ok(found.display().to_string()),
            Ok(false) => Verdict::Failed(format!(
                "{} has no {CLIP_ENCODER} encoder (clips are H.264): install a full ffmpeg \
                 (apt install ffmpeg) or set clips.enabled = false",
                found.display()
            )),
            Err(e) => Verdict::Failed(format!("{}: {e}", found.display())),
        },
    };
    report.line("ffmpeg", verdict);
}

/// The encoder `actions::clips` asks ffmpeg for.
const CLIP_ENCODER: &str = "libx264";

/// `program` itself when it names a path, else the first executable of that name on `path_var`.
fn find_program(program: &Path, path_var: &std::ffi::OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 {
        return executable(program).then(|| program.to_path_buf());
    }
    std::env::split_paths(path_var)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}

/// Whether `ffmpeg -encoders` lists `encoder`.
fn has_encoder(ffmpeg: &Path, encoder: &str) -> Result<bool, String> {
    let out = std::process::Command::new(ffmpeg)
        .args(["-hide_banner", "-nostdin", "-encoders"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run it ({e})"))?;
    if !out.status.success() {
        return Err(format!("`-encoders` failed ({})", out.status));
    }
    // Lines look like ` V....D libx264              libx264 H.264 / AVC ...`.
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(encoder)))
}

/// `/tmp/.X11-unix/X<n>` for a local display `:n` or `:n.screen`; `None` for a remote one.
fn x_socket(display: &str) -> Option<PathBuf> {
    let number = display.strip_prefix(':')?;
    let number = number.split('.').next()?;
    number
        .parse::<u32>()
        .ok()
        .map(|n| PathBuf::from(format!("/tmp/.X11-unix/X{n}")))
}

/// The socket file, or its abstract twin (`@/tmp/.X11-unix/Xn`) that Xlib tries first.
fn x_server_listens(socket: &Path) -> bool {
    if socket.exists() {
        return true;
    }
    let abstract_name = format!("@{}", socket.display());
    std::fs::read_to_string("/proc/net/unix")
        .map(|table| {
            table
                .lines()
                .any(|l| l.split_whitespace().last() == Some(abstract_name.as_str()))
        })
        .unwrap_or(false)
}

/// The host of `url` when it is one of the names reserved for examples (RFC 2606, RFC 6761):
/// the shipped config's `mirror.example` and `hub.shop.example` never reach a shopper.
fn placeholder_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = host_port
        .split(':')
        .next()
        .unwrap_or("")
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let reserved = [
        "example",
        "invalid",
        "example.com",
        "example.net",
        "example.org",
    ];
    reserved
        .iter()
        .any(|r| host == *r || host.ends_with(&format!(".{r}")))
        .then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_hosts_are_the_reserved_example_names() {
        assert_eq!(
            placeholder_host("https://mirror.example/s/{scene}").as_deref(),
            Some("mirror.example")
        );
        assert_eq!(
            placeholder_host("https://hub.shop.example").as_deref(),
            Some("hub.shop.example")
        );
        assert_eq!(
            placeholder_host("http://user@WWW.Example.COM:8080/x").as_deref(),
            Some("www.example.com")
        );
        assert!(placeholder_host("https://hub.myshop.cn/s/{scene}").is_none());
        assert!(placeholder_host("https://examples.com/s/{scene}").is_none());
        assert!(placeholder_host("http://127.0.0.1:8480").is_none());
    }

    #[test]
    fn local_displays_name_their_socket() {
        assert_eq!(x_socket(":0"), Some(PathBuf::from("/tmp/.X11-unix/X0")));
        assert_eq!(x_socket(":1.0"), Some(PathBuf::from("/tmp/.X11-unix/X1")));
        assert_eq!(x_socket("kiosk:0"), None);
    }

    #[test]
    fn ffmpeg_is_looked_up_on_path_or_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("ffmpeg");
        std::fs::write(&fake, "#!/bin/sh\n").unwrap();
        let path_var = std::ffi::OsString::from(format!("/nonexistent:{}", dir.path().display()));
        assert_eq!(find_program(Path::new("ffmpeg"), &path_var), None);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            find_program(Path::new("ffmpeg"), &path_var),
            Some(fake.clone())
        );
        assert_eq!(find_program(&fake, "".as_ref()), Some(fake.clone()));
        assert_eq!(
            find_program(Path::new("/nonexistent/ffmpeg"), &path_var),
            None
        );
        // An ffmpeg without libx264 cannot make the clips.
        std::fs::write(&fake, "#!/bin/sh\necho ' V....D libopenh264 OpenH264'\n").unwrap();
        assert_eq!(has_encoder(&fake, "libx264"), Ok(false));
        assert_eq!(has_encoder(&fake, "libopenh264"), Ok(true));
    }

    #[test]
    fn clips_need_ffmpeg_only_when_enabled() {
        let mut cfg = Config::default();
        let mut report = Report::default();
        clips(&cfg, "/nonexistent".as_ref(), &mut report);
        assert_eq!(report.failed, ["ffmpeg"]);
        cfg.clips.enabled = false;
        let mut report = Report::default();
        clips(&cfg, "/nonexistent".as_ref(), &mut report);
        assert!(report.failed.is_empty() && report.missing.is_empty());
    }

    #[test]
    fn credentials_are_looked_up_where_the_unit_loads_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::default();
        cfg.backend.url = Some("https://hub.myshop.cn".into());
        let creds = dir.path().to_string_lossy().into_owned();
        let env = |k: &str| (k == CREDENTIALS_DIRECTORY_ENV).then(|| creds.clone());
        let mut report = Report::default();
        credentials(&cfg, &env, &mut report);
        assert_eq!(report.missing, ["device token"]);
        std::fs::write(dir.path().join("device-token"), "t0k3n\n").unwrap();
        let mut report = Report::default();
        credentials(&cfg, &env, &mut report);
        assert!(report.missing.is_empty());
    }
}
