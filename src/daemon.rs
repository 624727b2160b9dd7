//! `mirrorsight run`: the long-running daemon. Wires source → vision → events → actions
//! (QR, photos, the screen) and sinks (event file, /events, MQTT) as the config says, with systemd
//! readiness and watchdog, health and metrics over HTTP, and clean shutdown on SIGTERM/SIGINT.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mirrorsight::actions::Action;
use mirrorsight::actions::clips::ClipAction;
use mirrorsight::actions::compare::CompareAction;
use mirrorsight::actions::overlay::OverlaySink;
use mirrorsight::actions::photos::PhotoAction;
use mirrorsight::actions::qr::QrAction;
use mirrorsight::config::{Config, SourceKind};
use mirrorsight::ids::IdGenerator;
use mirrorsight::metrics::Metrics;
use mirrorsight::pipeline::{self, RunOptions};
use mirrorsight::service::watchdog::{
    WatchdogSettings, notifier_from_env, watchdog_timeout_from_env,
};
use mirrorsight::service::{
    Health, HttpServer, HttpState, ReloadRequests, Shutdown, WatchdogCore, WatchdogThread,
};
use mirrorsight::sinks::{self, HealthProbe, SinkContext};
use mirrorsight::source::{CameraSource, Source, UntilStopped, VideoFile};
use tracing::{info, warn};

/// Where durable state goes when `storage.dir` is unset: systemd's StateDirectory, else the
/// conventional path.
fn state_dir(cfg: &Config) -> PathBuf {
    cfg.storage
        .dir
        .clone()
        .or_else(|| std::env::var_os("STATE_DIRECTORY").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/lib/mirrorsight"))
}

/// The actions every pipeline runs: QR codes, photos, the compare view and clips. `fps`: the
/// source's frame rate (clips are encoded at it).
pub fn actions(
    cfg: &Config,
    seeds: &mut IdGenerator,
    state_dir: &Path,
    runtime: &tokio::runtime::Runtime,
    fill_pool_first: bool,
    metrics: &Arc<Metrics>,
    fps: f64,
) -> Result<Vec<Box<dyn Action>>> {
    // Durably: the binding log's records are only as safe as the directory entries above it.
    mirrorsight_wechat::binding::create_dir_all_durable(state_dir)
        .with_context(|| format!("storage.dir {}", state_dir.display()))?;
    let mut actions: Vec<Box<dyn Action>> = vec![
        Box::new(QrAction::start(
            &cfg.wechat_settings(),
            seeds.fork(),
            state_dir,
            runtime.handle().clone(),
            fill_pool_first,
        )?),
        Box::new(PhotoAction::start(
            &cfg.photos,
            &cfg.backend,
            seeds.fork(),
            runtime.handle().clone(),
            metrics.clone(),
        )?),
        // After the photo action, so a discard it makes is seen in the same pass.
        Box::new(CompareAction::new(
            cfg.overlay.compare_idle_s,
            cfg.camera.mirrored,
        )),
    ];
    if cfg.clips.enabled {
        // Clips go where photos go, with the photos' retry settings.
        let upload = match &cfg.backend.url {
            Some(url) => Some((
                mirrorsight_photos::Backend {
                    base_url: url.clone(),
                    token: mirrorsight::actions::photos::device_token(&cfg.backend)?,
                },
                mirrorsight_photos::UploaderOptions::from_config(&cfg.photos),
            )),
            None => None,
        };
        let clips = ClipAction::start(
            &cfg.clips,
            fps,
            seeds.fork(),
            metrics.clone(),
            runtime.handle().clone(),
            upload,
        )
        .map_err(anyhow::Error::msg)?;
        actions.push(Box::new(clips));
    }
    Ok(actions)
}

pub fn io_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("mirrorsight-io")
        .enable_all()
        .build()
        .context("cannot start the I/O runtime")
}

pub fn run(config_path: &Path, overrides: &[String]) -> Result<()> {
    let mut cfg = Config::load(Some(config_path), overrides)?;
    let state_dir = state_dir(&cfg);
    cfg.place_spools_under(&state_dir)
        .with_context(|| format!("storage.dir {}", state_dir.display()))?;
    let shutdown = Shutdown::new();
    let reload = ReloadRequests::new();
    let signals = mirrorsight::service::signals::install(shutdown.clone(), reload.clone())
        .context("cannot install signal handlers")?;
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new(cfg.service.health_settings()));

    let (source, realtime): (Box<dyn Source>, bool) = match cfg.source.kind {
        SourceKind::Camera => {
            let camera = CameraSource::reconnecting(&cfg.camera, shutdown.stop_signal());
            health.attach_source(camera.health());
            (Box::new(camera), true)
        }
        SourceKind::File => {
            let path = cfg
                .source
                .path
                .as_deref()
                .context("source.path is required when source.kind = \"file\"")?;
            let clip = VideoFile::open(path)?;
            (
                Box::new(UntilStopped::new(Box::new(clip), shutdown.stop_signal())),
                cfg.source.realtime,
            )
        }
    };
    let source_fps = source.info().fps;
    let source = health.tap(source);

    let runtime = io_runtime()?;
    let mut seeds = IdGenerator::from_os();
    let session_ids = seeds.fork();
    let actions = actions(
        &cfg, &mut seeds, &state_dir, &runtime, false, &metrics, source_fps,
    )?;

    let probe: HealthProbe = {
        let health = health.clone();
        Arc::new(move || serde_json::to_value(health.report(health.now())).unwrap_or_default())
    };
    let built = sinks::build(
        &cfg.sinks(),
        &SinkContext::from_process().with_health(probe),
    )?;
    let mut http_state = HttpState::new(metrics.clone(), health.clone());
    if let Some(events) = built.event_stream {
        http_state = http_state.with_events(events);
    }
    for extra in built.metrics {
        http_state = http_state.with_metrics(extra);
    }
    let http = match cfg.service.listen_addr()? {
        Some(addr) => Some(HttpServer::start_on_own_thread(addr, http_state)?),
        None => None,
    };
    let mut sinks = built.sinks;
    if let Some(overlay) = OverlaySink::start(
        &cfg.overlay,
        cfg.display.mode,
        cfg.display.snapshot_dir.clone(),
    )? {
        sinks.push(Box::new(overlay));
    }

    let watchdog = WatchdogThread::spawn(
        WatchdogCore::new(
            WatchdogSettings::new(
                &cfg.service,
                watchdog_timeout_from_env(),
                &cfg.camera.reconnect_options(),
            ),
            Instant::now(),
        ),
        notifier_from_env(),
        health.clone(),
        shutdown.clone(),
    )?;
    let reloader = spawn_reload_watcher(
        config_path.to_path_buf(),
        overrides.to_vec(),
        reload,
        shutdown.clone(),
    );
    let status = spawn_status_reporter(
        cfg.service.status_interval(),
        metrics.clone(),
        shutdown.clone(),
    );
    info!(listen = %cfg.service.listen, "mirrorsight running");

    let opts = RunOptions {
        realtime,
        progress: false,
        dump_observations: None,
        health: Some(health.clone()),
        shutdown: Some(shutdown.clone()),
    };
    let result = pipeline::run(
        &cfg.pipeline_sections(),
        source,
        session_ids,
        actions,
        sinks,
        metrics,
        &opts,
    );
    // The source may also end by itself (a clip): everything else stops the same way.
    shutdown.trigger();
    watchdog.join();
    let _ = status.join();
    if let Some(http) = http {
        http.shutdown();
    }
    let _ = reloader.join();
    signals.close();
    runtime.shutdown_timeout(Duration::from_secs(2));
    result?;
    info!("mirrorsight stopped cleanly");
    Ok(())
}

/// Totals the status line reports, and the previous ones for the "since last time" figures.
#[derive(Debug, Default, Clone, Copy)]
struct StatusCounts {
    sessions: u64,
    photos_saved: u64,
    photos_uploaded: u64,
    upload_failures: u64,
    frames_processed: u64,
    frames_dropped: u64,
}

impl StatusCounts {
    fn read(metrics: &Metrics) -> Self {
        const PHOTOS: &str = "mirrorsight_photos_total";
        Self {
            sessions: Metrics::get(&metrics.sessions_started),
            photos_saved: metrics.outcome(PHOTOS, "saved"),
            photos_uploaded: metrics.outcome(PHOTOS, "uploaded"),
            upload_failures: metrics.outcome(PHOTOS, "upload_failed"),
            frames_processed: Metrics::get(&metrics.frames_processed),
            frames_dropped: Metrics::get(&metrics.frames_dropped),
        }
    }
}

/// The operator's heartbeat in the journal: every `interval` (and at shutdown) one `info`
/// line with the sessions and photos since the last line and since start.
fn spawn_status_reporter(
    interval: Option<Duration>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut last = StatusCounts::default();
        let mut since = Instant::now();
        loop {
            let stopping = shutdown.wait_timeout(interval.unwrap_or(Duration::from_secs(3600)));
            if !stopping && interval.is_none() {
                continue;
            }
            let now = StatusCounts::read(&metrics);
            info!(
                sessions = now.sessions - last.sessions,
                photos_saved = now.photos_saved - last.photos_saved,
                photos_uploaded = now.photos_uploaded - last.photos_uploaded,
                period_s = since.elapsed().as_secs(),
                sessions_total = now.sessions,
                photos_saved_total = now.photos_saved,
                photos_uploaded_total = now.photos_uploaded,
                upload_failures_total = now.upload_failures,
                frames_processed_total = now.frames_processed,
                frames_dropped_total = now.frames_dropped,
                "{}",
                if stopping {
                    "status at shutdown"
                } else {
                    "status"
                }
            );
            if stopping {
                return;
            }
            last = now;
            since = Instant::now();
        }
    })
}

/// SIGHUP re-reads and validates the config and says so in the log. It is not applied in
/// place: the camera, the models and the window are opened once, and swapping them would cut
/// off the shopper standing at the mirror; `systemctl restart mirrorsight` applies a checked
/// config between shoppers.
fn spawn_reload_watcher(
    path: PathBuf,
    overrides: Vec<String>,
    reload: ReloadRequests,
    shutdown: Shutdown,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        loop {
            crossbeam_channel::select! {
                recv(reload.receiver()) -> _ => {
                    if !reload.take() {
                        continue;
                    }
                    match Config::load(Some(&path), &overrides) {
                        Ok(_) => info!(
                            config = %path.display(),
                            "SIGHUP: config is valid; it takes effect at the next restart (systemctl restart mirrorsight)"
                        ),
                        Err(e) => warn!("SIGHUP: new config rejected, keeping the running one: {e}"),
                    }
                }
                recv(shutdown.receiver()) -> _ => return,
            }
        }
    })
}
