//! The hub under load on loopback: `N` mirrors uploading while WeChat pushes scans at `M`/s;
//! prints requests, throughput and latency percentiles per kind, then checks that the stores
//! hold exactly what was acknowledged (exit status 1 if not).
//!
//! ```sh
//! cargo bench -p mirrorsight-hub --bench load
//! cargo bench -p mirrorsight-hub --bench load -- --mirrors 64 --push-rate 500 --photo-kb 1000
//! MIRRORSIGHT_LOAD_MIRRORS=8 cargo bench -p mirrorsight-hub --bench load
//! ```
//!
//! Defaults: 32 mirrors × 6 sessions × 10 photos of 500 KB, 200 pushes/s, at most 60 s.
//! Options (each also `MIRRORSIGHT_LOAD_<NAME>`, e.g. `MIRRORSIGHT_LOAD_PUSH_RATE`; options win):
//! `--mirrors N`, `--sessions N` (per mirror), `--photos N` (per session), `--photo-kb KB`
//! (10³ bytes), `--push-rate M`, `--min-pushes N`, `--cap-s S`, `--seed N`, `--dir PATH` (where
//! the database and blobs go; default `$TMPDIR`), `--store sqlite|postgres` (postgres: a fresh database on `$MIRRORSIGHT_TEST_POSTGRES`).
//! Without `--bench` (`cargo test --benches`) it runs a tiny load as a smoke test.

#[path = "../tests/support/load.rs"]
mod load;
#[path = "../tests/support/pg.rs"]
mod pg;
/// `load` uses it as `crate::support::hub`, as from `tests/load.rs`.
#[path = "../tests/support"]
mod support {
    pub mod hub;
}

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use load::{Backends, LoadConfig};
use mirrorsight_hub::store::LocalBlobStore;

const USAGE: &str = "usage: load [--mirrors N] [--sessions N] [--photos N] [--photo-kb KB] \
[--push-rate M] [--min-pushes N] [--cap-s S] [--seed N] [--dir PATH] [--store sqlite|postgres]";

struct Options {
    config: LoadConfig,
    dir: Option<PathBuf>,
    store: String,
}

fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("--{name}: {value:?} is not a valid value\n{USAGE}"))
}

fn set(options: &mut Options, name: &str, value: &str) -> Result<(), String> {
    let c = &mut options.config;
    match name {
        "mirrors" => c.mirrors = parse(name, value)?,
        "sessions" => c.sessions_per_mirror = parse(name, value)?,
        "photos" => c.photos_per_session = parse(name, value)?,
        "photo-kb" => c.photo_bytes = parse::<usize>(name, value)? * 1000,
        "push-rate" => c.pushes_per_second = parse(name, value)?,
        "min-pushes" => c.min_pushes = parse(name, value)?,
        "cap-s" => c.duration_cap = Duration::from_secs_f64(parse(name, value)?),
        "seed" => c.seed = parse(name, value)?,
        "dir" => options.dir = Some(PathBuf::from(value)),
        "store" => options.store = value.to_string(),
        _ => return Err(format!("unknown option --{name}\n{USAGE}")),
    }
    Ok(())
}

const NAMES: [&str; 10] = [
    "mirrors",
    "sessions",
    "photos",
    "photo-kb",
    "push-rate",
    "min-pushes",
    "cap-s",
    "seed",
    "dir",
    "store",
];

/// Defaults, then `MIRRORSIGHT_LOAD_*`, then the command line. `None` without `--bench`.
fn options() -> Result<Option<Options>, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let mut options = Options {
        config: if bench { LoadConfig::bench() } else { smoke() },
        dir: None,
        store: "sqlite".into(),
    };
    if bench {
        for name in NAMES {
            let var = format!(
                "MIRRORSIGHT_LOAD_{}",
                name.to_ascii_uppercase().replace('-', "_")
            );
            if let Ok(value) = std::env::var(&var) {
                set(&mut options, name, &value).map_err(|e| format!("{var}: {e}"))?;
            }
        }
    }
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--bench" {
            continue;
        }
        if arg == "-h" || arg == "--help" {
            println!("{USAGE}");
            return Ok(None);
        }
        let Some(flag) = arg.strip_prefix("--") else {
            // A name filter cargo passes along (`cargo bench -- load`): there is one bench.
            continue;
        };
        let (name, value) = match flag.split_once('=') {
            Some((name, value)) => (name.to_string(), value.to_string()),
            None => {
                let value = args
                    .next()
                    .ok_or_else(|| format!("--{flag} needs a value\n{USAGE}"))?;
                (flag.to_string(), value)
            }
        };
        set(&mut options, &name, &value)?;
    }
    Ok(Some(options))
}

/// The load of a test-mode run: seconds, not a benchmark.
fn smoke() -> LoadConfig {
    LoadConfig {
        mirrors: 2,
        sessions_per_mirror: 2,
        photos_per_session: 3,
        photo_bytes: 50 * 1000,
        pushes_per_second: 20.0,
        min_pushes: 10,
        ..LoadConfig::default()
    }
}

/// The backends named by `--store`, in `dir`; with PostgreSQL also the throwaway database,
/// to drop after the runtime.
fn backends(store: &str, dir: &Path) -> Result<(Backends, Option<pg::TestDb>), String> {
    match store {
        "sqlite" => Ok((Backends::sqlite(dir)?, None)),
        "postgres" => {
            let db = pg::TestDb::create("load_bench").ok_or(
                "--store postgres: set $MIRRORSIGHT_TEST_POSTGRES (eval \"$(scripts/pg.sh)\")",
            )?;
            let blobs = LocalBlobStore::open(&dir.join("photos")).map_err(|e| e.to_string())?;
            let backends = Backends {
                store: db.store(),
                blobs: Arc::new(blobs),
                label: "PostgreSQL (loopback) + local dir".into(),
            };
            Ok((backends, Some(db)))
        }
        other => Err(format!("--store {other}: `sqlite` or `postgres`")),
    }
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(Some(options)) => options,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = match &options.dir {
        Some(parent) => tempfile::tempdir_in(parent),
        None => tempfile::tempdir(),
    };
    let dir = match dir {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("cannot create a directory for the database and blobs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let c = &options.config;
    println!(
        "load: {} mirrors × {} sessions × {} photos of {} KB ({} photos, {:.1} MB), {} pushes/s, cap {:.0} s; hub and clients share {} cores; data in {}",
        c.mirrors,
        c.sessions_per_mirror,
        c.photos_per_session,
        c.photo_bytes as f64 / 1000.0,
        c.planned_photos(),
        (c.planned_photos() * c.photo_bytes) as f64 / 1e6,
        c.pushes_per_second,
        c.duration_cap.as_secs_f64(),
        threads,
        dir.path().display()
    );
    // Opened outside the runtime: the PostgreSQL driver blocks, which async threads must not.
    let (backends, pg_db) = match backends(&options.store, dir.path()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("load: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("store: {}", backends.label);
    let result = runtime.block_on(load::run(&options.config, backends));
    drop(runtime);
    drop(pg_db);
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            eprintln!("load: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!();
    print!("{}", report.table());
    println!(
        "(load {:.2} s, then verification {:.2} s)",
        report.elapsed.as_secs_f64(),
        report.verification.elapsed.as_secs_f64()
    );
    if report.correct() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
