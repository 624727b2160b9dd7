//! Test helper for the crash tests (`tests/crash.rs`): saves and uploads photos so the test can
//! SIGKILL it at chosen or random points and restart it. Not part of the daemon.
//!
//! ```text
//! spool-crash-helper <spool dir> save   --seed S --count N [--hang-stage STAGE --hang-at K]
//! spool-crash-helper <spool dir> upload --backend URL --token T
//! spool-crash-helper <spool dir> both   --backend URL --token T --seed S --count N [--interval-ms M]
//! ```
//! Prints one line per fact, flushed at once: `SAVED <id> <sha256>`, `HANG <stage>`,
//! `UPLOADED <id>`, `REFUSED <reason>`, `DRAINED`, `ERROR <message>`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use mirrorsight_photos::spool::SaveStage;
use mirrorsight_photos::{
    Backend, Frame, JpegEncoder, PhotoId, PhotoMeta, PixelFormat, Secret, Spool, SpoolOptions,
    UploadOutcome, Uploader, UploaderOptions,
};
use sha2::{Digest, Sha256};

struct Args {
    dir: PathBuf,
    mode: String,
    seed: u64,
    count: u64,
    hang_stage: Option<SaveStage>,
    hang_at: u64,
    backend: String,
    token: String,
    interval_ms: u64,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let dir = PathBuf::from(it.next().ok_or("missing spool dir")?);
    let mode = it.next().ok_or("missing mode")?;
    let mut a = Args {
        dir,
        mode,
        seed: 0,
        count: 0,
        hang_stage: None,
        hang_at: 0,
        backend: String::new(),
        token: String::new(),
        interval_ms: 0,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = || value.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--seed" => a.seed = num()?,
            "--count" => a.count = num()?,
            "--hang-at" => a.hang_at = num()?,
            "--interval-ms" => a.interval_ms = num()?,
            "--backend" => a.backend = value,
            "--token" => a.token = value,
            "--hang-stage" => {
                a.hang_stage = Some(match value.as_str() {
                    "jpeg-partly-written" => SaveStage::JpegPartlyWritten,
                    "jpeg-in-place" => SaveStage::JpegInPlace,
                    "sidecar-partly-written" => SaveStage::SidecarPartlyWritten,
                    "sidecar-in-place" => SaveStage::SidecarInPlace,
                    other => return Err(format!("unknown stage {other}")),
                })
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn photo_id(seed: u64, n: u64) -> PhotoId {
    let d = Sha256::digest(format!("{seed}/{n}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    PhotoId::from_bytes(b)
}

/// A ≈300 kB JPEG: big enough that a kill can land inside the write.
struct Photos {
    base: Vec<u8>,
    encoder: JpegEncoder,
}

impl Photos {
    const W: u32 = 1280;
    const H: u32 = 720;

    fn new() -> Result<Self, String> {
        let mut s = 0x9E37_79B9u32;
        let mut base = Vec::with_capacity((Self::W * Self::H * 3) as usize);
        for _ in 0..Self::W * Self::H * 3 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            base.push((s >> 24) as u8);
        }
        Ok(Self {
            base,
            encoder: JpegEncoder::new(90).map_err(|e| e.to_string())?,
        })
    }

    fn make(&mut self, seed: u64, n: u64) -> Result<Vec<u8>, String> {
        let mut data = self.base.clone();
        // A band that differs per photo makes every photo's bytes distinct.
        let tag = Sha256::digest(format!("{seed}/{n}").as_bytes());
        for (i, px) in data[..(Self::W * 3 * 32) as usize].iter_mut().enumerate() {
            *px = tag[i % 32];
        }
        let frame = Frame::new(Self::W, Self::H, PixelFormat::Rgb8, data, 0.0)
            .map_err(|e| e.to_string())?;
        Ok(self.encoder.encode(&frame).map_err(|e| e.to_string())?.jpeg)
    }
}

fn open(args: &Args) -> Result<Arc<Spool>, String> {
    let (spool, _) = Spool::open(SpoolOptions {
        dir: args.dir.clone(),
        quota_bytes: 4 << 30,
        retention: Duration::from_secs(86_400),
    })
    .map_err(|e| e.to_string())?;
    Ok(Arc::new(spool))
}

fn save_one(spool: &Spool, photos: &mut Photos, seed: u64, n: u64) -> Result<(), String> {
    let body = photos.make(seed, n)?;
    let meta = PhotoMeta {
        session: format!("crash{seed}"),
        scene: format!("scene{seed}"),
        taken_at: 1_700_000_000_000 + n,
        t: n as f64,
        trigger: "thumbs_up".into(),
    };
    match spool.save(&meta, &body, photo_id(seed, n)) {
        Ok(saved) => {
            say(&format!("SAVED {} {}", saved.photo, saved.sha256));
            Ok(())
        }
        Err(e) => {
            say(&format!("REFUSED {}", e.reason()));
            Ok(())
        }
    }
}

fn start_uploader(
    rt: &tokio::runtime::Runtime,
    spool: &Arc<Spool>,
    args: &Args,
) -> Result<Uploader, String> {
    let (uploader, mut rx) = Uploader::spawn(
        rt.handle(),
        Arc::clone(spool),
        Backend {
            base_url: args.backend.clone(),
            token: Secret::new(args.token.clone()),
        },
        UploaderOptions {
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            timeout: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(60),
        },
    )
    .map_err(|e| e.to_string())?;
    rt.spawn(async move {
        while let Some(o) = rx.recv().await {
            if let UploadOutcome::Uploaded { photo, .. } = o {
                say(&format!("UPLOADED {photo}"));
            }
        }
    });
    Ok(uploader)
}

fn drain(rt: &tokio::runtime::Runtime, spool: &Spool, uploader: Uploader) {
    loop {
        let s = spool.stats();
        if s.pending == 0 && s.deletes_owed == 0 && s.failed == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.block_on(uploader.shutdown(Duration::from_secs(5)));
    say("DRAINED");
}

fn run(args: Args) -> Result<(), String> {
    let spool = open(&args)?;
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    match args.mode.as_str() {
        "save" => {
            let mut photos = Photos::new()?;
            if let Some(stage) = args.hang_stage {
                let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let armed2 = Arc::clone(&armed);
                spool.set_save_hook(Some(Arc::new(move |s: SaveStage| {
                    if s == stage && armed2.load(std::sync::atomic::Ordering::SeqCst) {
                        say(&format!("HANG {s:?}"));
                        loop {
                            std::thread::sleep(Duration::from_secs(60));
                        }
                    }
                })));
                for n in 0..args.count {
                    armed.store(n == args.hang_at, std::sync::atomic::Ordering::SeqCst);
                    save_one(&spool, &mut photos, args.seed, n)?;
                }
            } else {
                for n in 0..args.count {
                    save_one(&spool, &mut photos, args.seed, n)?;
                }
            }
            Ok(())
        }
        "upload" => {
            let uploader = start_uploader(&rt, &spool, &args)?;
            drain(&rt, &spool, uploader);
            Ok(())
        }
        "both" => {
            let uploader = start_uploader(&rt, &spool, &args)?;
            let mut photos = Photos::new()?;
            for n in 0..args.count {
                save_one(&spool, &mut photos, args.seed, n)?;
                std::thread::sleep(Duration::from_millis(args.interval_ms));
            }
            drain(&rt, &spool, uploader);
            Ok(())
        }
        other => Err(format!("unknown mode {other}")),
    }
}

fn main() -> ExitCode {
    match parse().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("ERROR {e}"));
            ExitCode::FAILURE
        }
    }
}
