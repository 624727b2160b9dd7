//! `mirrorsight-hub serve | device add|revoke|list | sweep`.

use clap::{Parser, Subcommand};
use mirrorsight_hub::{
    ConfigError, Hub, HubConfig, HubError, ORPHAN_GRACE_S, Retention, STALE_TEMP_AGE,
    new_device_token, open_stores, sweep_orphans, sweep_retention, token_digest,
};
use mirrorsight_wechat::secret::SecretError;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "The store's official-account server for mirrorsight mirrors"
)]
struct Cli {
    /// The hub's TOML config.
    #[arg(
        long,
        short,
        default_value = "/etc/mirrorsight/hub.toml",
        global = true
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the relay, the WeChat callback and the gallery.
    Serve,
    /// Manage the mirrors allowed to use the relay.
    Device {
        #[command(subcommand)]
        action: DeviceAction,
    },
    /// Remove photos past `photos.retention_days` (`photos.keep_bound_days` for a session a
    /// shopper is bound to) and prune what they leave, now (serve also does this periodically).
    Sweep,
}

#[derive(Debug, Subcommand)]
enum DeviceAction {
    /// Register a mirror and print its new token (shown once; only a digest is kept). Put it
    /// in the mirror's `backend.device_token_file`.
    Add {
        /// Device id, e.g. `mirror-1`; statistics are reported per device.
        id: String,
        /// The shop it stands in, e.g. `shanghai-01`.
        #[arg(long)]
        store: String,
    },
    /// Revoke a mirror's token at once.
    Revoke { id: String },
    /// List mirrors and whether their token is valid.
    List,
}

/// The certificate verifier logs each failure itself; the error that reaches the operator
/// already names the cause, so that log would only repeat it.
const QUIET_VERIFIER: &str = "rustls_platform_verifier=off";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logging = mirrorsight_logging::Logging::init(&mirrorsight_logging::Settings {
        program: "mirrorsight-hub",
        filter_var: "MIRRORSIGHT_HUB_LOG",
        default_filter: "info",
        always: &[QUIET_VERIFIER],
    });
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            logging.fatal(&format!("mirrorsight-hub: {e}"));
            if is_config_error(e.as_ref()) {
                ExitCode::from(EX_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// sysexits' EX_CONFIG. The unit has `RestartPreventExitStatus=78`: a hub that cannot work
/// with its config or credentials is left stopped (and the error stays at the end of its
/// journal) instead of being restarted every two seconds.
const EX_CONFIG: u8 = 78;

/// Whether `e`, or an error behind it, is something only the operator can fix (a config key, a
/// credential), as opposed to a database or network that may come back.
fn is_config_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<ConfigError>()
            || c.is::<SecretError>()
            || matches!(
                c.downcast_ref::<HubError>(),
                Some(
                    HubError::Config(_)
                        | HubError::Secret(_)
                        | HubError::AesKey(_)
                        | HubError::TokenKey(_)
                )
            )
        {
            return true;
        }
        cause = c.source();
    }
    false
}

fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let config = HubConfig::load(&cli.config)?;
    let now = mirrorsight_hub::http::unix_now();
    match cli.command {
        Command::Serve => serve(config),
        Command::Device { action } => {
            let (store, _) = open_stores(&config, &env)?;
            match action {
                DeviceAction::Add { id, store: shop } => {
                    if !valid_name(&id) || !valid_name(&shop) {
                        return Err("device id and store: 1..=64 of [A-Za-z0-9._-]".into());
                    }
                    let token = new_device_token()?;
                    store.add_device(&id, &shop, &token_digest(&token), now)?;
                    eprintln!("device {id} added; its token follows (shown once):");
                    println!("{token}");
                }
                DeviceAction::Revoke { id } => {
                    if !store.revoke_device(&id, now)? {
                        return Err(format!("no active device {id}").into());
                    }
                    eprintln!("device {id} revoked");
                }
                DeviceAction::List => {
                    for d in store.list_devices()? {
                        let state = if d.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        };
                        println!("{}\t{}\t{state}", d.id, d.store);
                    }
                }
            }
            Ok(())
        }
        Command::Sweep => {
            let (store, blobs) = open_stores(&config, &env)?;
            let report = sweep_retention(
                store.as_ref(),
                blobs.as_ref(),
                Retention::of(&config.photos),
                now,
            )?;
            eprintln!(
                "{} photos expired ({} already without bytes)",
                report.expired, report.blobs_missing
            );
            let p = report.pruned;
            eprintln!(
                "pruned past retention: {} scenes, {} bindings, {} WeChat pushes, {} activity rows, {} outbox rows, {} followers",
                p.scenes, p.bindings, p.wechat_events, p.activity, p.pushes, p.followers
            );
            let orphans = sweep_orphans(store.as_ref(), blobs.as_ref(), now, ORPHAN_GRACE_S)?;
            eprintln!(
                "{} stored files without a photo removed ({} examined)",
                orphans.deleted, orphans.examined
            );
            Ok(())
        }
    }
}

fn serve(config: HubConfig) -> Result<(), Box<dyn std::error::Error>> {
    let secrets = config.load_secrets(&env)?;
    // A weak callback Token or a missing EncodingAESKey stops the hub before it touches the
    // database.
    config.check_secrets(&secrets)?;
    let addr = config.listen_addr()?;
    let metrics_addr = config.metrics_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Opened outside the runtime: the PostgreSQL driver blocks, which async threads must not.
    let (store, blobs) = open_stores(&config, &env)?;
    // Only here, never in the CLI commands that may run next to a serving hub: younger temp
    // files may be uploads in flight.
    let stale = blobs.remove_stale_temp_files(STALE_TEMP_AGE)?;
    if stale > 0 {
        tracing::info!(stale, "removed temp files of writes a crash interrupted");
    }
    runtime.block_on(async move {
        let stop = shutdown_signal()?;
        let hub = Hub::with_stores(config, secrets, store, blobs)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("listen {addr}: {e}"))?;
        let metrics = match metrics_addr {
            Some(metrics_addr) => {
                let metrics = tokio::net::TcpListener::bind(metrics_addr)
                    .await
                    .map_err(|e| format!("metrics.listen {metrics_addr}: {e}"))?;
                tracing::info!(%metrics_addr, "serving /metrics without a token");
                Some(metrics)
            }
            None => None,
        };
        tracing::info!(%addr, "mirrorsight-hub listening");
        hub.serve_with_metrics(listener, metrics, stop).await?;
        tracing::info!("mirrorsight-hub stopped");
        Ok(())
    })
}

/// SIGTERM (systemd's stop) or SIGINT, listened for from the call on: a stop that arrives
/// while the hub is still starting is graceful too.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
