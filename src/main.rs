//! The `mirrorsight` command line.

mod check;
mod daemon;
mod replay_reach;

/// Counts Rust heap allocations, for `bench`'s allocations per frame (see `mirrorsight::heap`).
#[global_allocator]
static HEAP: mirrorsight::heap::CountingAllocator = mirrorsight::heap::CountingAllocator;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use mirrorsight::actions::overlay::OverlaySink;
use mirrorsight::augment::{self, Augmented, Chain};
use mirrorsight::bench::{self, BenchReport};
use mirrorsight::config::{Config, DisplayMode};
use mirrorsight::eval::{self, Labels};
use mirrorsight::ids::{DEFAULT_REPLAY_SEED, IdGenerator};
use mirrorsight::metrics::Metrics;
use mirrorsight::pipeline::{self, RunOptions, RunSummary};
use mirrorsight::sinks::{self, Collector, EventSink, SinkConfig, SinkContext};
use mirrorsight::source::{Source, VideoFile};
use mirrorsight::vision::runtime::{ModelsDir, Runtime};
use replay_reach::Reach;

#[derive(Parser)]
#[command(
    name = "mirrorsight",
    version,
    about = "Presence, gestures and QR codes for a smart fitting mirror"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct ConfigArgs {
    /// TOML config file (see systemd/mirrorsight.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override any config key, e.g. --set session.exit_after_s=2 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

impl ConfigArgs {
    fn load(&self) -> Result<Config> {
        Ok(Config::load(self.config.as_deref(), &self.overrides)?)
    }
}

#[derive(clap::Args, Clone, Copy)]
struct LiveArg {
    /// Talk to the backends the config names, with fresh random ids, like a live mirror.
    /// Without it a replay reaches loopback backends only and draws ids from the seed.
    #[arg(long)]
    live: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Display {
    Window,
    Headless,
    None,
}

#[derive(Subcommand)]
enum Command {
    /// Replay a recorded clip exactly like a live camera and print the events.
    Replay {
        clip: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
        /// Where JSON-lines events go: a file, or - for stdout.
        #[arg(long, value_name = "FILE|-")]
        events: Option<String>,
        /// Pace frames at the clip's frame rate and drop stale ones, like a live camera.
        #[arg(long)]
        realtime: bool,
        /// Seed for ids that are random on a live mirror.
        #[arg(long, default_value_t = DEFAULT_REPLAY_SEED, conflicts_with = "live")]
        seed: u64,
        #[command(flatten)]
        reach: LiveArg,
        /// What the mirror's screen does: a fullscreen X11 window, off-screen rendering, or nothing.
        #[arg(long, value_enum, default_value_t = Display::None)]
        display: Display,
        /// With --display headless (or window): write a PNG each time the picture changes.
        #[arg(long, value_name = "DIR")]
        snapshot_dir: Option<PathBuf>,
        /// Write each frame's body and hand landmarks as JSON lines (for tuning gestures).
        #[arg(long, value_name = "FILE", hide = true)]
        dump_observations: Option<PathBuf>,
        /// Transform the frames before vision, as `eval --augment` does (one chain).
        #[arg(long, value_name = "NAME[,NAME]")]
        augment: Option<String>,
    },
    /// Replay a clip and score sessions and gestures against ground-truth labels.
    Eval {
        clip: PathBuf,
        #[arg(long, value_name = "FILE")]
        labels: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Transform the frames (and the labels to match) before vision: a chain such as
        /// `hflip,scale=0.5` (hflip, scale=F[@x,y], pad=WxH@x,y, rotate=DEG, gamma=G,
        /// noise=S, fps=N, speed=F), or `all` for the fixed robustness suite, one row each.
        #[arg(long, value_name = "NAME[,NAME]|all")]
        augment: Option<String>,
        /// Present each frame at its media time, as a camera would (frames vision cannot keep
        /// up with are dropped, as live), and add how late each gesture event left the
        /// pipeline to its latency.
        #[arg(long)]
        realtime: bool,
        #[command(flatten)]
        reach: LiveArg,
    },
    /// Mint one QR code as configured, print it as JSON and optionally render it to PNG.
    Mint {
        #[command(flatten)]
        config: ConfigArgs,
        /// Scene to mint (default: a fresh unguessable id).
        #[arg(long)]
        scene: Option<String>,
        /// Write the rendered code (quiet zone included) here.
        #[arg(long, value_name = "OUT.png")]
        png: Option<PathBuf>,
    },
    /// Run the daemon (the systemd service): camera or clip → vision → QR, photos, screen.
    Run {
        /// TOML config file (see systemd/mirrorsight.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Override any config key, e.g. --set service.listen=127.0.0.1:9000 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Validate the config, the models and ONNX Runtime, and name what is still to provide
    /// (camera, QR target, store hub, credentials, screen); exit 78 until it is all there.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Measure replay speed, CPU per frame, per-stage and per-model time and peak memory on a clip.
    Bench {
        clip: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
        /// Transform the frames before vision, as `eval --augment` does (one chain).
        #[arg(long, value_name = "NAME[,NAME]")]
        augment: Option<String>,
        #[command(flatten)]
        reach: LiveArg,
        /// Print the report as one JSON object (for scripts).
        #[arg(long)]
        json: bool,
        /// Also time each model's session.run alone, this many times on one tensor, to set
        /// the pipeline's overhead against pure model time.
        #[arg(long, value_name = "RUNS")]
        models: Option<u32>,
        /// Instead: print every model's outputs on the clip's first frame as JSON (to compare
        /// execution providers).
        #[arg(long, hide = true)]
        model_outputs: bool,
        /// Also write every Nth input tensor of each model under DIR (models/convert.sh
        /// calibrates the INT8 models on them).
        #[arg(long, hide = true, value_name = "DIR")]
        calibration_dump: Option<PathBuf>,
        /// With --calibration-dump: keep every Nth call of each model.
        #[arg(long, hide = true, default_value_t = 5, value_name = "N")]
        calibration_every: u64,
    },
}

/// sysexits(3) EX_CONFIG: the config (or a credential it names) is wrong. The unit's
/// `RestartPreventExitStatus=78` stops systemd from restarting a daemon that cannot work.
const EX_CONFIG: u8 = 78;

fn main() -> ExitCode {
    if std::env::var_os("OPENCV_FFMPEG_LOGLEVEL").is_none() {
        // FFmpeg's own console chatter ("moov atom not found") would break the one-line error
        // contract; our errors name the problem. SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("OPENCV_FFMPEG_LOGLEVEL", "-8") };
    }
    let cli = Cli::parse();
    let logging = mirrorsight_logging::Logging::init(&mirrorsight_logging::Settings {
        program: "mirrorsight",
        filter_var: "MIRRORSIGHT_LOG",
        // The daemon tells its lifecycle; commands that print a report keep stderr for problems.
        default_filter: if matches!(cli.command, Command::Run { .. }) {
            "info"
        } else {
            "warn"
        },
        always: &[],
    });
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // One line, the whole chain, no backtrace: an operator reads this.
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            let mut line = chain.join(": ");
            // anyhow chains repeat transparent sources; keep each clause once.
            line = dedup_clauses(&line);
            logging.fatal(&format!("mirrorsight: error: {line}"));
            ExitCode::from(exit_status(&e))
        }
    }
}

/// [`EX_CONFIG`] when the cause is the configuration (a key, a value, a missing credential);
/// 1 for everything else (a missing clip, a broken install, a failing camera).
fn exit_status(e: &anyhow::Error) -> u8 {
    let config = e.chain().any(|cause| {
        cause.is::<mirrorsight::config::ConfigError>()
            || cause
                .downcast_ref::<check::NotReady>()
                .is_some_and(check::NotReady::is_config)
            || cause.is::<mirrorsight_wechat::secret::SecretError>()
            || cause.is::<mirrorsight_wechat::ConfigError>()
            || cause.is::<mirrorsight::sinks::mqtt::credentials::CredentialError>()
            || matches!(
                cause.downcast_ref::<mirrorsight_overlay::OverlayError>(),
                Some(mirrorsight_overlay::OverlayError::Config(_))
            )
    });
    if config { EX_CONFIG } else { 1 }
}

fn dedup_clauses(line: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in line.split(": ") {
        if !out.iter().any(|p| p.contains(part) && part.len() > 12) {
            out.push(part);
        }
    }
    out.join(": ")
}

fn run(cli: Cli) -> Result<ExitCode> {
    if matches!(
        cli.command,
        Command::Check { .. } | Command::Eval { .. } | Command::Bench { .. } | Command::Mint { .. }
    ) {
        // Report commands behave like other Unix tools when piped into `head`: end quietly.
        // SAFETY: restoring a default signal disposition before any thread is started.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match cli.command {
        Command::Replay {
            clip,
            config,
            events,
            realtime,
            seed,
            reach,
            display,
            snapshot_dir,
            dump_observations,
            augment,
        } => {
            let mut cfg = config.load()?;
            if let Some(target) = events {
                cfg.events.file = target;
            }
            // Before the sinks are built: a replay publishes to no broker it may not reach.
            let setup = replay_reach::prepare(&cfg, Reach::new(reach.live, seed))?;
            // A replay serves no HTTP: every configured sink but `/events`.
            let configured: Vec<SinkConfig> = setup
                .config
                .sinks()
                .into_iter()
                .filter(|s| !s.needs_http_server())
                .collect();
            let mut sinks = sinks::build(&configured, &SinkContext::from_process())?.sinks;
            let mode = match display {
                Display::Window => DisplayMode::Window,
                Display::Headless => DisplayMode::Headless,
                Display::None if snapshot_dir.is_some() => {
                    bail!("--snapshot-dir needs --display headless or window")
                }
                Display::None => DisplayMode::None,
            };
            if let Some(sink) = OverlaySink::start(&cfg.overlay, mode, snapshot_dir)? {
                sinks.push(Box::new(sink));
            }
            let opts = RunOptions {
                realtime,
                dump_observations,
                ..RunOptions::default()
            };
            let source = open_clip(&clip, augment.as_deref())?;
            let summary = replay(setup, source, &opts, sinks, Arc::new(Metrics::new()))?;
            tracing::info!(
                frames = summary.frames_processed,
                dropped = summary.frames_dropped,
                "replay finished"
            );
            if realtime && summary.frames_dropped > 0 {
                eprintln!(
                    "mirrorsight: realtime replay dropped {} stale frames",
                    summary.frames_dropped
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval {
            clip,
            labels,
            config,
            json,
            augment,
            realtime,
            reach,
        } => {
            let cfg = config.load()?;
            let labels = Labels::load(&labels)?;
            let opts = RunOptions {
                realtime,
                ..RunOptions::default()
            };
            let chains = match augment.as_deref() {
                None => vec![Chain::default()],
                Some("all") => {
                    let probe = VideoFile::open(&clip)?;
                    augment::suite(probe.info().width, probe.info().height)
                }
                Some(spec) => vec![Chain::parse(spec)?],
            };
            let mut reports = Vec::new();
            for chain in chains {
                let source = augmented(VideoFile::open(&clip)?, &chain)?;
                let collector = Collector::default();
                let summary = replay(
                    replay_reach::prepare(&cfg, Reach::new(reach.live, DEFAULT_REPLAY_SEED))?,
                    source,
                    &opts,
                    vec![Box::new(collector.clone())],
                    Arc::new(Metrics::new()),
                )?;
                let (events, arrivals): (Vec<_>, Vec<_>) =
                    collector.take_timed().into_iter().unzip();
                // How late each event left the pipeline after the media time it is about.
                let processing: Option<Vec<f64>> = summary.media_clock.map(|clock| {
                    events
                        .iter()
                        .zip(&arrivals)
                        .map(|(e, at)| clock.late(e.t, *at).as_secs_f64())
                        .collect()
                });
                let mut report =
                    eval::evaluate(&events, &chain.labels(&labels), cfg.session.exit_after_s);
                report.latency = eval::GestureLatency::of(&report, processing.as_deref());
                report.transform = chain.to_string();
                reports.push(report);
            }
            match (json, augment.is_some()) {
                (true, false) => println!("{}", serde_json::to_string_pretty(&reports[0])?),
                (true, true) => println!("{}", serde_json::to_string_pretty(&reports)?),
                (false, false) => print!("{}", reports[0]),
                (false, true) => {
                    println!("clip: {}", labels.clip);
                    print!("{}", eval::RobustnessTable(&reports));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => check(&config),
        Command::Run { config, overrides } => {
            daemon::run(&config, &overrides)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Mint { config, scene, png } => mint(&config.load()?, scene, png.as_deref()),
        Command::Bench {
            clip,
            config,
            augment,
            reach,
            json,
            models,
            model_outputs,
            calibration_dump,
            calibration_every,
        } => {
            let cfg = config.load()?;
            if let Some(dir) = calibration_dump {
                let tag = clip
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "clip".into());
                mirrorsight::vision::model::dump_inputs(dir.clone(), &tag, calibration_every)
                    .with_context(|| format!("calibration dump to {}", dir.display()))?;
            }
            if model_outputs {
                print_model_outputs(&cfg, &clip)
            } else {
                let setup =
                    replay_reach::prepare(&cfg, Reach::new(reach.live, DEFAULT_REPLAY_SEED))?;
                bench(setup, open_clip(&clip, augment.as_deref())?, json, models)
            }
        }
    }
}

/// A clip, through an `--augment` chain when one is given.
fn open_clip(clip: &Path, augment: Option<&str>) -> Result<Box<dyn Source>> {
    let chain = augment.map(Chain::parse).transpose()?.unwrap_or_default();
    augmented(VideoFile::open(clip)?, &chain)
}

fn augmented(video: VideoFile, chain: &Chain) -> Result<Box<dyn Source>> {
    Ok(if chain.0.is_empty() {
        Box::new(video)
    } else {
        Box::new(Augmented::new(
            Box::new(video),
            chain.clone(),
            DEFAULT_REPLAY_SEED,
        )?)
    })
}

/// Runs `source` through the daemon as `setup` (from [`replay_reach::prepare`]) allows.
fn replay(
    setup: replay_reach::ReplaySetup,
    source: Box<dyn Source>,
    opts: &RunOptions,
    sinks: Vec<Box<dyn EventSink>>,
    metrics: Arc<Metrics>,
) -> Result<RunSummary> {
    // Every consumer of randomness gets its own stream, so adding one never shifts another's ids.
    let mut seeds = setup.ids;
    let session_ids = seeds.fork();
    let runtime = daemon::io_runtime()?;
    let fps = source.info().fps;
    let actions = daemon::actions(
        &setup.config,
        &mut seeds,
        &setup.state_dir,
        &runtime,
        true,
        &metrics,
        fps,
    )?;
    let summary = pipeline::run(
        &setup.config.pipeline_sections(),
        source,
        session_ids,
        actions,
        sinks,
        metrics,
        opts,
    )?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(summary)
}

fn mint(cfg: &Config, scene: Option<String>, png: Option<&Path>) -> Result<ExitCode> {
    let settings = cfg.wechat_settings();
    let secrets = settings.load_secrets(&|k| std::env::var(k).ok())?;
    let minter = mirrorsight_wechat::Minter::from_settings(&settings, &secrets)?;
    let id = scene.unwrap_or_else(|| IdGenerator::from_os().next_id());
    let scene = minter.scene_for_id(&id);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let code = runtime.block_on(minter.mint(&scene))?;
    if let Some(path) = png {
        let bytes = match (&code.url, &code.image) {
            (Some(url), _) => mirrorsight_overlay::render_qr_png(
                url,
                cfg.overlay.qr_module_px,
                mirrorsight_overlay::QUIET_ZONE_MODULES,
            )?,
            // Mini-program codes have no URL: WeChat's image is the code.
            (None, Some(image)) => image.clone(),
            (None, None) => bail!("the minted code has neither a URL nor an image"),
        };
        std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let out = serde_json::json!({
        "scene": code.scene,
        "ticket": code.ticket,
        "url": code.url,
        "expire_seconds": code.expire_seconds,
    });
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn check(args: &ConfigArgs) -> Result<ExitCode> {
    let cfg = args.load().context("config")?;
    check::run(&cfg, args.config.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

fn bench(
    setup: replay_reach::ReplaySetup,
    source: Box<dyn Source>,
    json: bool,
    model_runs: Option<u32>,
) -> Result<ExitCode> {
    let metrics = Arc::new(Metrics::new());
    let opts = RunOptions {
        progress: !json,
        ..RunOptions::default()
    };
    let cfg = setup.config.clone();
    let cfg = &cfg;
    let summary = replay(setup, source, &opts, Vec::new(), metrics.clone())?;
    let runtime = Runtime::get(&cfg.onnxruntime)?;
    let report = BenchReport::new(
        &summary,
        &metrics,
        runtime.provider().name(),
        runtime.precision.name(),
    );
    let loops = match model_runs {
        Some(runs) => {
            let runtime = Runtime::get(&cfg.onnxruntime)?;
            let models = ModelsDir::locate(&cfg.models)?;
            let mut names = vec![mirrorsight::vision::presence::MODEL.to_string()];
            if cfg.hands.enabled {
                names.push(mirrorsight::vision::pose::MODEL.to_string());
                names.push(format!("palm_detection_{}", cfg.hands.palm_model.suffix()));
                names.push(format!(
                    "hand_landmark_{}",
                    cfg.hands.landmark_model.suffix()
                ));
            }
            Some(bench::model_loop(runtime, &models, &names, 5, runs)?)
        }
        None => None,
    };
    if json {
        let mut value = serde_json::to_value(&report)?;
        if let (Some(loops), Some(object)) = (&loops, value.as_object_mut()) {
            object.insert("model_loop".into(), serde_json::to_value(loops)?);
        }
        println!("{value}");
    } else {
        print!("{}", report.to_text());
        if let Some(loops) = &loops {
            print!("{}", bench::model_loop_text(loops));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_model_outputs(cfg: &Config, clip: &Path) -> Result<ExitCode> {
    let mut video = VideoFile::open(clip)?;
    let Some(frame) = video.next_frame()? else {
        bail!("{} has no frame", clip.display());
    };
    let runtime = Runtime::get(&cfg.onnxruntime)?;
    let models = ModelsDir::locate(&cfg.models)?;
    let outputs = bench::model_outputs(runtime, &models, &frame.image)?;
    let report = serde_json::json!({
        "provider": runtime.provider().name(),
        "fallback": runtime.fallback_reason(),
        "models": outputs,
    });
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}
