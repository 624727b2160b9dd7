//! A bounded load generator for the hub on loopback, shared by `tests/load.rs` (correctness
//! on a small load) and `benches/load.rs` (figures on a bigger one):
//!
//! ```ignore
//! #[path = "support/load.rs"] // from tests/; `../tests/support/load.rs` from benches/
//! mod load;
//! let report = load::run_with(&load::LoadConfig::default(), load::Backends::sqlite).await?;
//! ```
//!
//! The hub runs in-process in front of the fake WeChat, on whatever [`Backends`] it is given
//! (a `Store` and a `BlobStore`; the generator does not care which). `N` mirrors, each a task
//! with its own device token, mint a scene per session and upload that session's photos (each
//! a distinct random payload with a unique photo id), one request at a time, re-sending some
//! uploads and mints as a mirror does after a lost answer. Meanwhile a pusher sends signed
//! `subscribe`/`SCAN` pushes for scenes that already exist at `M` per second (open loop: a
//! tick never waits for an answer), including exact re-sends, and checks that each is answered
//! with the session's `news` message. Every request's latency is recorded.
//!
//! At the end the store and the blob store are checked against what was sent: every
//! acknowledged photo stored exactly once with the same bytes, nothing extra (no stray row, no
//! orphaned blob), one push record per distinct push, the bindings and activity counts the
//! distinct pushes imply, one WeChat code per scene. Counts are taken as differences from
//! before the run and ids carry a random run prefix, so a shared database (PostgreSQL) works
//! as well as a fresh one, as long as nothing else writes to it meanwhile.
//!
//! Bounded in count (mirrors × sessions × photos) and in time ([`LoadConfig::duration_cap`]:
//! past it no new request starts; requests in flight finish or hit
//! [`LoadConfig::request_timeout`]).

#![allow(dead_code)] // each includer uses its own part of the API

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mirrorsight_contract::backend::{CreateSceneResponse, PhotoUploadResponse};
use mirrorsight_fake_backend::{FakeHandle, FakeServer, Route};
use mirrorsight_hub::http::unix_now;
use mirrorsight_hub::store::{Activity, BlobStore, LocalBlobStore, SqliteStore, Store};
use mirrorsight_hub::wechat::Incoming;
use mirrorsight_hub::wechat::xml::parse_article;
use mirrorsight_hub::{new_device_token, token_digest};

// `support::hub` beside this file: whoever includes this file declares both.
use crate::support::hub::{self, sha256_hex as sha_hex};

/// The callback Token the generated pushes are signed with.
pub const CALLBACK_TOKEN: &str = "loadCallbackToken0123456789";
/// The official account the pushes are addressed to.
const ACCOUNT: &str = "gh_load_test";
/// How many problems and error messages a report keeps verbatim.
const KEEP: usize = 20;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadConfig {
    /// Concurrent mirrors (`N`), each with its own device token.
    pub mirrors: usize,
    /// Sessions per mirror; each mints one scene.
    pub sessions_per_mirror: usize,
    /// Photos uploaded per session.
    pub photos_per_session: usize,
    /// Size of every photo, bytes (at least 8).
    pub photo_bytes: usize,
    /// Pushes sent per second (`M`), open loop.
    pub pushes_per_second: f64,
    /// The pusher keeps going after the mirrors finished until it sent this many distinct
    /// pushes (so a fast upload phase still measures pushes), within the duration cap.
    pub min_pushes: usize,
    /// No request starts after this long from the start.
    pub duration_cap: Duration,
    /// Client-side timeout of one request; a timeout is an error.
    pub request_timeout: Duration,
    /// Share of uploads sent a second time, after the session's other photos (a mirror
    /// retrying after a lost answer): must answer `200` with the same body, store nothing.
    pub upload_retry_fraction: f64,
    /// Share of mints sent a second time: `200`, same body, no second WeChat code.
    pub mint_retry_fraction: f64,
    /// Share of push ticks that re-send an answered push byte for byte (WeChat's retry): must
    /// get the same reply and record nothing.
    pub push_resend_fraction: f64,
    /// Share of distinct pushes that are a second scan (`SCAN`, later `CreateTime`) of a scene
    /// by someone who already scanned it: recorded, but no new binding.
    pub rescan_fraction: f64,
    /// Seeds the payloads and every random choice.
    pub seed: u64,
}

impl Default for LoadConfig {
    /// The small load of `tests/load.rs`: 8 mirrors × 3 sessions × 4 photos of 200 KB,
    /// 40 pushes/s, at most 10 s.
    fn default() -> Self {
        Self {
            mirrors: 8,
            sessions_per_mirror: 3,
            photos_per_session: 4,
            photo_bytes: 200 * 1000,
            pushes_per_second: 40.0,
            min_pushes: 80,
            duration_cap: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            upload_retry_fraction: 0.10,
            mint_retry_fraction: 0.10,
            push_resend_fraction: 0.10,
            rescan_fraction: 0.15,
            seed: 0x6d69_7272_6f72,
        }
    }
}

impl LoadConfig {
    /// The benchmark's default: 32 mirrors × 6 sessions × 10 photos of 500 KB (960 MB),
    /// 200 pushes/s while they upload, at most 60 s.
    pub fn bench() -> Self {
        Self {
            mirrors: 32,
            sessions_per_mirror: 6,
            photos_per_session: 10,
            photo_bytes: 500 * 1000,
            pushes_per_second: 200.0,
            min_pushes: 200,
            duration_cap: Duration::from_secs(60),
            ..Self::default()
        }
    }

    /// Photos the mirrors are to upload (without retries).
    pub fn planned_photos(&self) -> usize {
        self.mirrors * self.sessions_per_mirror * self.photos_per_session
    }

    fn check(&self) -> Result<(), String> {
        let fraction = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} = {v} is not in 0..=1"))
            }
        };
        fraction("upload_retry_fraction", self.upload_retry_fraction)?;
        fraction("mint_retry_fraction", self.mint_retry_fraction)?;
        fraction("push_resend_fraction", self.push_resend_fraction)?;
        fraction("rescan_fraction", self.rescan_fraction)?;
        if self.mirrors == 0 || self.sessions_per_mirror == 0 {
            return Err("at least one mirror and one session".into());
        }
        if !(8..=(200 << 20)).contains(&self.photo_bytes) {
            return Err(format!(
                "photo_bytes = {} is not in 8..=209715200",
                self.photo_bytes
            ));
        }
        if !(self.pushes_per_second >= 0.0 && self.pushes_per_second <= 100_000.0) {
            return Err(format!(
                "pushes_per_second = {} is not in 0..=100000",
                self.pushes_per_second
            ));
        }
        Ok(())
    }
}

/// Where the hub keeps its state during the run. Any `Store` and `BlobStore` will do.
#[derive(Clone)]
pub struct Backends {
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    /// Named in the report, e.g. `"sqlite + local dir"`.
    pub label: String,
}

impl Backends {
    /// A fresh SQLite database and blob directory under `dir` (what `Hub::open` uses).
    pub fn sqlite(dir: &Path) -> Result<Self, String> {
        let store = SqliteStore::open(&dir.join("hub.sqlite3")).map_err(|e| e.to_string())?;
        let blobs = LocalBlobStore::open(&dir.join("photos")).map_err(|e| e.to_string())?;
        Ok(Self {
            store: Arc::new(store),
            blobs: Arc::new(blobs),
            label: "SQLite (WAL, synchronous=FULL) + local blob directory".into(),
        })
    }
}

/// Runs the load on backends `make` opens in a fresh temporary directory (under `$TMPDIR`),
/// removed afterwards.
pub async fn run_with<F>(config: &LoadConfig, make: F) -> Result<LoadReport, String>
where
    F: FnOnce(&Path) -> Result<Backends, String>,
{
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let backends = make(dir.path())?;
    run(config, backends).await
}

/// The kinds of request timed separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `POST /v1/scenes`, first time.
    Mint,
    /// `POST /v1/scenes` again for a minted scene.
    MintRetry,
    /// `POST /v1/sessions/{scene}/photos`, first time.
    Upload,
    /// The same upload again.
    UploadRetry,
    /// `POST /wechat`, a distinct push.
    Push,
    /// `POST /wechat`, an exact re-send of an answered push.
    PushResend,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Mint,
        Kind::MintRetry,
        Kind::Upload,
        Kind::UploadRetry,
        Kind::Push,
        Kind::PushResend,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Mint => "mint",
            Kind::MintRetry => "mint (retry)",
            Kind::Upload => "upload",
            Kind::UploadRetry => "upload (retry)",
            Kind::Push => "push",
            Kind::PushResend => "push (re-send)",
        }
    }
}

/// Requests and latencies of one [`Kind`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KindStats {
    pub requests: usize,
    pub errors: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub mean: Duration,
}

/// What the store and blob store hold compared with what was sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verification {
    /// Photos acknowledged (`201`, or `200` to a retry) and found stored exactly once with
    /// the sent bytes.
    pub photos_ok: usize,
    /// Acknowledged photos with no row, or whose bytes are gone.
    pub photos_missing: usize,
    /// Photo ids with more than one row.
    pub photos_duplicated: usize,
    /// Rows nobody sent, or blobs no row refers to.
    pub extra: usize,
    /// Rows or blobs whose size or SHA-256 differs from what was sent.
    pub bad_bytes: usize,
    /// Distinct pushes acknowledged; the push log must have grown by this much.
    pub distinct_pushes: u64,
    /// How much the push log grew.
    pub events_recorded: u64,
    /// Distinct (scene, openid) pairs among the acknowledged pushes.
    pub bindings_expected: usize,
    pub bindings_found: usize,
    /// Everything that did not match, at most [`KEEP`] verbatim.
    pub problems: Vec<String>,
    /// How many problems there were in all.
    pub problem_count: usize,
    /// How long reading everything back took.
    pub elapsed: Duration,
}

impl Verification {
    fn problem(&mut self, message: String) {
        self.problem_count += 1;
        if self.problems.len() < KEEP {
            self.problems.push(message);
        }
    }
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub config: LoadConfig,
    pub backends: String,
    /// Per kind, in [`Kind::ALL`] order.
    pub kinds: Vec<(Kind, KindStats)>,
    /// Scenes minted (acknowledged).
    pub scenes: usize,
    /// Photos acknowledged, and their bytes (retries not counted twice).
    pub photos: usize,
    pub photo_bytes: u64,
    /// Upload bytes put on the wire, retries included.
    pub upload_bytes_sent: u64,
    /// From the start until the last mirror finished.
    pub upload_elapsed: Duration,
    /// From the first push until the pusher stopped sending.
    pub push_elapsed: Duration,
    /// Pushes answered, re-sends included.
    pub pushes_answered: usize,
    /// The duration cap stopped the run before all planned work was done.
    pub timed_out: bool,
    pub errors: usize,
    /// The first error messages.
    pub error_samples: Vec<String>,
    pub verification: Verification,
    /// Start to end of the load (verification excluded).
    pub elapsed: Duration,
}

impl LoadReport {
    pub fn stats(&self, kind: Kind) -> &KindStats {
        &self
            .kinds
            .iter()
            .find(|(k, _)| *k == kind)
            .expect("every kind is reported")
            .1
    }

    pub fn photos_per_s(&self) -> f64 {
        per_s(self.photos as f64, self.upload_elapsed)
    }

    /// Megabytes (10⁶ bytes) of photos stored per second.
    pub fn mb_per_s(&self) -> f64 {
        per_s(self.photo_bytes as f64 / 1e6, self.upload_elapsed)
    }

    pub fn pushes_per_s(&self) -> f64 {
        per_s(self.pushes_answered as f64, self.push_elapsed)
    }

    /// No errors, and the stores hold exactly what was acknowledged.
    pub fn correct(&self) -> bool {
        let v = &self.verification;
        self.errors == 0
            && v.problem_count == 0
            && v.photos_missing == 0
            && v.photos_duplicated == 0
            && v.extra == 0
            && v.bad_bytes == 0
            && v.photos_ok == self.photos
            && v.events_recorded == v.distinct_pushes
            && v.bindings_found == v.bindings_expected
    }

    /// Every planned photo was acknowledged (the cap did not cut the run short).
    pub fn complete(&self) -> bool {
        !self.timed_out && self.photos == self.config.planned_photos()
    }

    /// A Markdown table per kind, then throughput and the correctness verdict.
    pub fn table(&self) -> String {
        let c = &self.config;
        let v = &self.verification;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| kind | requests | errors | p50 ms | p95 ms | p99 ms | max ms |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for (kind, s) in &self.kinds {
            if s.requests == 0 {
                continue;
            }
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                kind.name(),
                s.requests,
                s.errors,
                ms(s.p50),
                ms(s.p95),
                ms(s.p99),
                ms(s.max)
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "uploads: {} photos ({:.1} MB) from {} mirrors in {:.2} s: {:.1} photos/s, {:.1} MB/s ({:.1} MB sent with retries)",
            self.photos,
            self.photo_bytes as f64 / 1e6,
            c.mirrors,
            self.upload_elapsed.as_secs_f64(),
            self.photos_per_s(),
            self.mb_per_s(),
            self.upload_bytes_sent as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "pushes: {} answered ({} distinct) in {:.2} s: {:.1} pushes/s (target {})",
            self.pushes_answered,
            v.distinct_pushes,
            self.push_elapsed.as_secs_f64(),
            self.pushes_per_s(),
            c.pushes_per_second
        );
        let _ = writeln!(
            out,
            "correctness: {} - {}/{} photos stored exactly once with the sent bytes, {} missing, {} duplicated, {} extra, {} bad bytes; push log +{} for {} distinct pushes; {}/{} bindings; {} errors{}",
            if self.correct() { "OK" } else { "FAILED" },
            v.photos_ok,
            self.photos,
            v.photos_missing,
            v.photos_duplicated,
            v.extra,
            v.bad_bytes,
            v.events_recorded,
            v.distinct_pushes,
            v.bindings_found,
            v.bindings_expected,
            self.errors,
            if self.timed_out {
                format!(
                    "; stopped by the {} s cap",
                    self.config.duration_cap.as_secs_f64()
                )
            } else {
                String::new()
            }
        );
        for p in &v.problems {
            let _ = writeln!(out, "  problem: {p}");
        }
        for e in &self.error_samples {
            let _ = writeln!(out, "  error: {e}");
        }
        out
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn per_s(n: f64, over: Duration) -> f64 {
    let s = over.as_secs_f64();
    if s > 0.0 { n / s } else { 0.0 }
}

/// SplitMix64: small, fast, good enough to pick things and fill payloads.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// The bytes of one photo: JPEG markers around random bytes, a function of its coordinates,
/// so a retry can regenerate them instead of holding every payload in memory.
pub fn payload(seed: u64, mirror: usize, session: usize, photo: usize, size: usize) -> Vec<u8> {
    let mut rng = Rng::new(
        seed ^ ((mirror as u64) << 42) ^ ((session as u64) << 21) ^ (photo as u64) ^ 0xA5A5,
    );
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
    while bytes.len() + 8 <= size - 2 {
        bytes.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    let last = rng.next_u64().to_le_bytes();
    let missing = size - 2 - bytes.len();
    bytes.extend_from_slice(&last[..missing]);
    bytes.extend_from_slice(&[0xFF, 0xD9]);
    bytes
}

/// Latencies and errors, shared by every task.
#[derive(Default)]
struct Recorder {
    latencies: HashMap<Kind, Vec<Duration>>,
    errors: HashMap<Kind, usize>,
    samples: Vec<String>,
}

/// One answered distinct push, kept for re-sends and the binding check.
#[derive(Debug, Clone)]
struct AnsweredPush {
    scene: String,
    openid: String,
    url: String,
    xml: String,
    reply: String,
}

#[derive(Default)]
struct PushLog {
    answered: Vec<AnsweredPush>,
    /// Distinct pushes sent, whether or not answered.
    sent: u64,
    /// Scene → openid → event of the first acknowledged push binding them.
    bound: BTreeMap<String, BTreeMap<String, String>>,
    /// Scene → openids of pushes sent but not acknowledged (may or may not be bound).
    unsure: BTreeMap<String, BTreeSet<String>>,
    new_followers: u64,
    already_following: u64,
    /// Re-sends and distinct pushes answered.
    answered_total: usize,
}

struct Shared {
    config: LoadConfig,
    run: String,
    base: String,
    http: reqwest::Client,
    start: Instant,
    deadline: Instant,
    recorder: Mutex<Recorder>,
    /// Scenes minted so far: what the pusher may scan.
    scenes: Mutex<Vec<String>>,
    pushes: Mutex<PushLog>,
    mirrors_done: AtomicBool,
    timed_out: AtomicBool,
}

impl Shared {
    fn record(&self, kind: Kind, latency: Duration) {
        let mut r = self.recorder.lock().unwrap();
        r.latencies.entry(kind).or_default().push(latency);
    }

    fn error(&self, kind: Kind, message: String) {
        let mut r = self.recorder.lock().unwrap();
        *r.errors.entry(kind).or_default() += 1;
        if r.samples.len() < KEEP {
            r.samples.push(format!("{}: {message}", kind.name()));
        }
    }

    /// `false` (and the run marked as cut short) once the cap has passed.
    fn may_start(&self) -> bool {
        if Instant::now() < self.deadline {
            return true;
        }
        self.timed_out.store(true, Ordering::Relaxed);
        false
    }
}

/// A photo a mirror sent.
#[derive(Debug, Clone)]
struct SentPhoto {
    id: String,
    sha256: String,
    bytes: usize,
    acked: bool,
}

/// A session a mirror ran.
#[derive(Debug, Clone)]
struct SentScene {
    scene: String,
    minted: bool,
    photos: Vec<SentPhoto>,
}

/// Sends one request, reads the whole answer, times both.
async fn timed(request: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>, Duration), String> {
    let started = Instant::now();
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    Ok((status, body.to_vec(), started.elapsed()))
}

fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

async fn mint(
    shared: &Shared,
    token: &str,
    scene: &str,
    kind: Kind,
) -> Option<CreateSceneResponse> {
    let request = hub::mint_request(&shared.http, &shared.base, token, scene);
    let want = if kind == Kind::Mint { 201 } else { 200 };
    match timed(request).await {
        Ok((status, body, latency)) => {
            shared.record(kind, latency);
            if status != want {
                shared.error(
                    kind,
                    format!(
                        "{scene}: status {status}, wanted {want}: {}",
                        excerpt(&body)
                    ),
                );
                return None;
            }
            match serde_json::from_slice::<CreateSceneResponse>(&body) {
                Ok(answer) if answer.scene == scene && !answer.url.is_empty() => Some(answer),
                Ok(answer) => {
                    shared.error(kind, format!("{scene}: answered {answer:?}"));
                    None
                }
                Err(e) => {
                    shared.error(kind, format!("{scene}: answer {e}: {}", excerpt(&body)));
                    None
                }
            }
        }
        Err(e) => {
            shared.error(kind, format!("{scene}: {e}"));
            None
        }
    }
}

/// Uploads one photo with the contract headers; the answer, when its status is in `want`.
async fn upload(
    shared: &Shared,
    to: &hub::Upload<'_>,
    bytes: Vec<u8>,
    kind: Kind,
    want: &[u16],
) -> Option<PhotoUploadResponse> {
    let (scene, photo) = (to.scene, to.photo);
    let request = to.request(&shared.http, &shared.base, unix_now() * 1000, bytes);
    match timed(request).await {
        Ok((status, body, latency)) => {
            shared.record(kind, latency);
            if !want.contains(&status) {
                shared.error(
                    kind,
                    format!(
                        "{scene}/{photo}: status {status}, wanted {want:?}: {}",
                        excerpt(&body)
                    ),
                );
                return None;
            }
            match serde_json::from_slice::<PhotoUploadResponse>(&body) {
                Ok(answer) => Some(answer),
                Err(e) => {
                    shared.error(
                        kind,
                        format!("{scene}/{photo}: answer {e}: {}", excerpt(&body)),
                    );
                    None
                }
            }
        }
        Err(e) => {
            shared.error(kind, format!("{scene}/{photo}: {e}"));
            None
        }
    }
}

/// One mirror: a scene per session, that session's photos, then its retries.
async fn mirror(shared: Arc<Shared>, index: usize, token: String) -> Vec<SentScene> {
    let c = shared.config.clone();
    let mut rng = Rng::new(c.seed ^ (index as u64).wrapping_mul(0x0100_0000_01B3) ^ 0x5EED);
    let mut sent = Vec::new();
    for s in 0..c.sessions_per_mirror {
        if !shared.may_start() {
            break;
        }
        let scene = format!("{}-m{index:03}-s{s:03}", shared.run);
        let session = format!("sess-{}-m{index:03}-s{s:03}", shared.run);
        let Some(first) = mint(&shared, &token, &scene, Kind::Mint).await else {
            sent.push(SentScene {
                scene,
                minted: false,
                photos: Vec::new(),
            });
            continue;
        };
        if rng.chance(c.mint_retry_fraction)
            && shared.may_start()
            && let Some(again) = mint(&shared, &token, &scene, Kind::MintRetry).await
            && again != first
        {
            shared.error(
                Kind::MintRetry,
                format!("{scene}: answered {again:?}, first {first:?}"),
            );
        }
        shared.scenes.lock().unwrap().push(scene.clone());
        let mut photos = Vec::new();
        let mut retries = Vec::new();
        for p in 0..c.photos_per_session {
            if !shared.may_start() {
                break;
            }
            let id = format!("{}m{index:03}s{s:03}p{p:04}", shared.run);
            let (bytes, digest) = make_payload(c.seed, index, s, p, c.photo_bytes).await;
            let to = hub::Upload {
                token: &token,
                scene: &scene,
                session: &session,
                photo: &id,
                digest: &digest,
            };
            let answer = upload(&shared, &to, bytes, Kind::Upload, &[201]).await;
            let acked = check_upload(
                &shared,
                Kind::Upload,
                &scene,
                &id,
                &digest,
                c.photo_bytes,
                answer.as_ref(),
            );
            if rng.chance(c.upload_retry_fraction) {
                retries.push((photos.len(), p, answer));
            }
            photos.push(SentPhoto {
                id,
                sha256: digest,
                bytes: c.photo_bytes,
                acked,
            });
        }
        // Re-sent after the session's other photos, as after an answer lost on the way back.
        for (i, p, first) in retries {
            if !shared.may_start() {
                break;
            }
            let (bytes, digest) = make_payload(c.seed, index, s, p, c.photo_bytes).await;
            let photo = &mut photos[i];
            // Once acknowledged, a retry must find it stored; before, it may still create it.
            let want: &[u16] = if photo.acked { &[200] } else { &[200, 201] };
            let to = hub::Upload {
                token: &token,
                scene: &scene,
                session: &session,
                photo: &photo.id,
                digest: &digest,
            };
            let answer = upload(&shared, &to, bytes, Kind::UploadRetry, want).await;
            let ok = check_upload(
                &shared,
                Kind::UploadRetry,
                &scene,
                &photo.id,
                &digest,
                c.photo_bytes,
                answer.as_ref(),
            );
            if let (Some(first), Some(again)) = (&first, &answer)
                && first != again
            {
                shared.error(
                    Kind::UploadRetry,
                    format!("{scene}/{}: answered {again:?}, first {first:?}", photo.id),
                );
            }
            photo.acked |= ok;
        }
        sent.push(SentScene {
            scene,
            minted: true,
            photos,
        });
    }
    sent
}

/// Generates and hashes a payload off the async workers.
async fn make_payload(
    seed: u64,
    mirror: usize,
    session: usize,
    photo: usize,
    size: usize,
) -> (Vec<u8>, String) {
    tokio::task::spawn_blocking(move || {
        let bytes = payload(seed, mirror, session, photo, size);
        let digest = sha_hex(&bytes);
        (bytes, digest)
    })
    .await
    .expect("payload task")
}

/// Whether an upload's answer acknowledges exactly this photo.
fn check_upload(
    shared: &Shared,
    kind: Kind,
    scene: &str,
    id: &str,
    digest: &str,
    size: usize,
    answer: Option<&PhotoUploadResponse>,
) -> bool {
    let Some(answer) = answer else {
        return false;
    };
    if answer.photo == id && answer.sha256 == digest && answer.bytes == size as u64 {
        return true;
    }
    shared.error(kind, format!("{scene}/{id}: answered {answer:?}"));
    false
}

/// A signed `/wechat` URL; the nonce is fresh, so only an exact re-send repeats it.
fn push_url(base: &str, rng: &mut Rng, openid: &str) -> String {
    let nonce = (rng.next_u64() % 1_000_000_000).to_string();
    hub::push_url(base, CALLBACK_TOKEN, &nonce, openid)
}

/// The reply, when it is this scene's `news` message for `openid`.
fn check_news(
    base: &str,
    scene: &str,
    openid: &str,
    status: u16,
    body: &[u8],
) -> Result<String, String> {
    if status != 200 {
        return Err(format!("{scene}: status {status}: {}", excerpt(body)));
    }
    let reply =
        String::from_utf8(body.to_vec()).map_err(|_| format!("{scene}: reply not UTF-8"))?;
    let parsed = Incoming::parse(&reply).map_err(|e| format!("{scene}: reply {e}: {reply}"))?;
    if parsed.msg_type() != "news" || parsed.to_user() != openid || parsed.from_user() != ACCOUNT {
        return Err(format!("{scene}: not the news reply for {openid}: {reply}"));
    }
    let article = parse_article(&reply)
        .map_err(|e| format!("{scene}: reply {e}"))?
        .ok_or_else(|| format!("{scene}: news without an article: {reply}"))?;
    if !article.url.starts_with(&format!("{base}/s/{scene}?k=")) {
        return Err(format!("{scene}: article links to {}", article.url));
    }
    Ok(reply)
}

/// One distinct push: sends, checks, logs it.
async fn distinct_push(
    shared: Arc<Shared>,
    scene: String,
    openid: String,
    event: &'static str,
    create_time: i64,
    nonce_seed: u64,
) {
    let key = if event == "subscribe" {
        format!("qrscene_{scene}")
    } else {
        scene.clone()
    };
    let xml = hub::scan_xml(ACCOUNT, &openid, create_time, event, &key);
    let url = push_url(&shared.base, &mut Rng::new(nonce_seed), &openid);
    let result = timed(shared.http.post(&url).body(xml.clone())).await;
    let checked = match result {
        Ok((status, body, latency)) => {
            shared.record(Kind::Push, latency);
            check_news(&shared.base, &scene, &openid, status, &body)
        }
        Err(e) => Err(format!("{scene}: {e}")),
    };
    let mut log = shared.pushes.lock().unwrap();
    match checked {
        Ok(reply) => {
            log.answered_total += 1;
            // A binding keeps the event of the first push (a rescan only follows an answer).
            log.bound
                .entry(scene.clone())
                .or_default()
                .entry(openid.clone())
                .or_insert_with(|| event.to_string());
            if event == "subscribe" {
                log.new_followers += 1;
            } else {
                log.already_following += 1;
            }
            log.answered.push(AnsweredPush {
                scene,
                openid,
                url,
                xml,
                reply,
            });
        }
        Err(e) => {
            log.unsure.entry(scene).or_default().insert(openid);
            drop(log);
            shared.error(Kind::Push, e);
        }
    }
}

/// An exact re-send of an answered push: same URL, same body, same reply, nothing recorded.
async fn resend_push(shared: Arc<Shared>, original: AnsweredPush) {
    let result = timed(shared.http.post(&original.url).body(original.xml.clone())).await;
    match result {
        Ok((status, body, latency)) => {
            shared.record(Kind::PushResend, latency);
            if status != 200 || body != original.reply.as_bytes() {
                shared.error(
                    Kind::PushResend,
                    format!(
                        "{}: status {status}, reply differs from the first: {}",
                        original.scene,
                        excerpt(&body)
                    ),
                );
            } else {
                shared.pushes.lock().unwrap().answered_total += 1;
            }
        }
        Err(e) => shared.error(Kind::PushResend, format!("{}: {e}", original.scene)),
    }
}

/// The open-loop pusher: a tick every `1/M` s; each tick starts a push and never waits for
/// it. Returns how long it sent for.
async fn pusher(shared: Arc<Shared>) -> Duration {
    let c = shared.config.clone();
    if c.pushes_per_second <= 0.0 {
        return Duration::ZERO;
    }
    let mut rng = Rng::new(c.seed ^ 0x7075_7368);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / c.pushes_per_second));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let base_time = unix_now();
    let mut started: Option<Instant> = None;
    let mut distinct: u64 = 0;
    let mut last = Instant::now();
    loop {
        tick.tick().await;
        if shared.mirrors_done.load(Ordering::Relaxed) && distinct >= c.min_pushes as u64 {
            break;
        }
        // Past the cap: stop. Only the mirrors mark the run as cut short; `min_pushes` is a
        // wish, not planned work.
        if Instant::now() >= shared.deadline {
            break;
        }
        let scene = {
            let scenes = shared.scenes.lock().unwrap();
            if scenes.is_empty() {
                if shared.mirrors_done.load(Ordering::Relaxed) {
                    break; // nothing was minted; nothing to scan
                }
                continue;
            }
            scenes[rng.below(scenes.len())].clone()
        };
        started.get_or_insert_with(Instant::now);
        last = Instant::now();
        let resend = if rng.chance(c.push_resend_fraction) {
            let log = shared.pushes.lock().unwrap();
            (!log.answered.is_empty()).then(|| log.answered[rng.below(log.answered.len())].clone())
        } else {
            None
        };
        if let Some(original) = resend {
            tasks.spawn(resend_push(Arc::clone(&shared), original));
            continue;
        }
        let rescan = if rng.chance(c.rescan_fraction) {
            let log = shared.pushes.lock().unwrap();
            (!log.answered.is_empty()).then(|| {
                let a = &log.answered[rng.below(log.answered.len())];
                (a.scene.clone(), a.openid.clone())
            })
        } else {
            None
        };
        let (scene, openid, event) = match rescan {
            Some((scene, openid)) => (scene, openid, "SCAN"),
            None => {
                let event = if rng.chance(0.5) { "subscribe" } else { "SCAN" };
                (scene, format!("o{}{distinct:010}", shared.run), event)
            }
        };
        distinct += 1;
        shared.pushes.lock().unwrap().sent += 1;
        let create_time = base_time + distinct as i64;
        tasks.spawn(distinct_push(
            Arc::clone(&shared),
            scene,
            openid,
            event,
            create_time,
            rng.next_u64(),
        ));
        // Keep the set from growing without bound on a long run.
        while let Some(done) = tasks.try_join_next() {
            done.expect("push task");
        }
    }
    let sending = started.map_or(Duration::ZERO, |s| last.duration_since(s) + tick.period());
    while let Some(done) = tasks.join_next().await {
        done.expect("push task");
    }
    sending
}

/// The in-process hub in front of the fake WeChat, and the fake.
async fn start_hub(
    config: &LoadConfig,
    backends: &Backends,
) -> Result<(hub::Running, FakeHandle), String> {
    let (fake_url, fake) = FakeServer::start()
        .await
        .map_err(|e| format!("fake WeChat: {e}"))?;
    let running = hub::start(
        &fake_url,
        hub::fake_wechat_secrets(CALLBACK_TOKEN),
        Arc::clone(&backends.store),
        Arc::clone(&backends.blobs),
        |hub_config| {
            // Not opened: the hub runs on the given backends.
            hub_config.database = "unused-by-with_stores.sqlite3".into();
            hub_config.blob_dir = "unused-by-with_stores".into();
            hub_config.photos.max_bytes =
                hub_config.photos.max_bytes.max(config.photo_bytes as u64);
        },
    )
    .await?;
    Ok((running, fake))
}

/// What the stores held before the run.
struct Baseline {
    events: u64,
    activity: HashMap<Activity, u64>,
    blobs: HashSet<String>,
}

fn baseline(backends: &Backends) -> Result<Baseline, String> {
    let totals = backends
        .store
        .totals()
        .map_err(|e| format!("totals: {e}"))?;
    Ok(Baseline {
        events: backends
            .store
            .wechat_event_count()
            .map_err(|e| format!("wechat_event_count: {e}"))?,
        activity: totals.activity.into_iter().collect(),
        blobs: backends
            .blobs
            .list()
            .map_err(|e| format!("blob list: {e}"))?
            .into_iter()
            .map(|b| b.key)
            .collect(),
    })
}

/// Runs the load against a hub on `backends` and checks the stores afterwards.
pub async fn run(config: &LoadConfig, backends: Backends) -> Result<LoadReport, String> {
    config.check()?;
    let mut run_id = [0u8; 4];
    getrandom::fill(&mut run_id).map_err(|e| e.to_string())?;
    let run = hex::encode(run_id);
    let now = unix_now();
    let mut tokens = Vec::with_capacity(config.mirrors);
    for i in 0..config.mirrors {
        let token = new_device_token().map_err(|e| e.to_string())?;
        backends
            .store
            .add_device(
                &format!("load-{run}-mirror-{i:03}"),
                &format!("load-shop-{}", i % 4),
                &token_digest(&token),
                now,
            )
            .map_err(|e| format!("add_device: {e}"))?;
        tokens.push(token);
    }
    let before = {
        let b = backends.clone();
        tokio::task::spawn_blocking(move || baseline(&b))
            .await
            .map_err(|e| e.to_string())??
    };
    let (running, fake) = start_hub(config, &backends).await?;
    let http = reqwest::Client::builder()
        .timeout(config.request_timeout)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let start = Instant::now();
    let shared = Arc::new(Shared {
        config: config.clone(),
        run,
        base: running.base.clone(),
        http,
        start,
        deadline: start + config.duration_cap,
        recorder: Mutex::new(Recorder::default()),
        scenes: Mutex::new(Vec::new()),
        pushes: Mutex::new(PushLog::default()),
        mirrors_done: AtomicBool::new(false),
        timed_out: AtomicBool::new(false),
    });

    let push_task = tokio::spawn(pusher(Arc::clone(&shared)));
    let mut mirrors = tokio::task::JoinSet::new();
    for (i, token) in tokens.into_iter().enumerate() {
        mirrors.spawn(mirror(Arc::clone(&shared), i, token));
    }
    let mut sent: Vec<SentScene> = Vec::new();
    while let Some(done) = mirrors.join_next().await {
        sent.extend(done.map_err(|e| format!("mirror task: {e}"))?);
    }
    let upload_elapsed = start.elapsed();
    shared.mirrors_done.store(true, Ordering::Relaxed);
    let push_elapsed = push_task.await.map_err(|e| format!("pusher: {e}"))?;
    let elapsed = start.elapsed();
    let codes_minted = fake.count(Route::QrcodeCreate);

    let shared = Arc::try_unwrap(shared).map_err(|_| "a task still holds the run".to_string())?;
    // The client's idle connections closed first, so the hub's graceful shutdown is quick.
    drop(shared.http);
    let _ = running.stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), running.server).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), fake.stop()).await;
    let recorder = shared.recorder.into_inner().unwrap();
    let pushes = shared.pushes.into_inner().unwrap();
    let timed_out = shared.timed_out.load(Ordering::Relaxed);

    let mut kinds = Vec::new();
    let mut errors = 0;
    for kind in Kind::ALL {
        let mut samples = recorder.latencies.get(&kind).cloned().unwrap_or_default();
        let kind_errors = recorder.errors.get(&kind).copied().unwrap_or(0);
        errors += kind_errors;
        kinds.push((kind, kind_stats(&mut samples, kind_errors)));
    }
    let acked: Vec<&SentPhoto> = sent
        .iter()
        .flat_map(|s| &s.photos)
        .filter(|p| p.acked)
        .collect();
    let photos = acked.len();
    let photo_bytes = acked.iter().map(|p| p.bytes as u64).sum();
    let upload_requests = kinds
        .iter()
        .filter(|(k, _)| matches!(k, Kind::Upload | Kind::UploadRetry))
        .map(|(_, s)| s.requests as u64)
        .sum::<u64>();
    let scenes = sent.iter().filter(|s| s.minted).count();

    let verification = {
        let b = backends.clone();
        let sent = sent.clone();
        let expected = Expected {
            distinct_acked: pushes.answered.len() as u64,
            distinct_sent: pushes.sent,
            bound: pushes.bound.clone(),
            unsure: pushes.unsure.clone(),
            new_followers: pushes.new_followers,
            already_following: pushes.already_following,
            codes_minted,
        };
        tokio::task::spawn_blocking(move || verify(&b, &before, &sent, &expected))
            .await
            .map_err(|e| format!("verification: {e}"))?
    };

    Ok(LoadReport {
        config: config.clone(),
        backends: backends.label.clone(),
        kinds,
        scenes,
        photos,
        photo_bytes,
        upload_bytes_sent: upload_requests * config.photo_bytes as u64,
        upload_elapsed,
        push_elapsed,
        pushes_answered: pushes.answered_total,
        timed_out,
        errors,
        error_samples: recorder.samples,
        verification,
        elapsed,
    })
}

/// Sorts `samples` and summarises them (nearest-rank percentiles).
pub fn kind_stats(samples: &mut [Duration], errors: usize) -> KindStats {
    samples.sort_unstable();
    let n = samples.len();
    // Nearest rank: the smallest sample with at least p % of the samples at or below it.
    let pct = |p: f64| -> Duration {
        if n == 0 {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        samples[rank.clamp(1, n) - 1]
    };
    KindStats {
        requests: n,
        errors,
        p50: pct(50.0),
        p95: pct(95.0),
        p99: pct(99.0),
        max: samples.last().copied().unwrap_or_default(),
        mean: if n == 0 {
            Duration::ZERO
        } else {
            samples.iter().sum::<Duration>() / n as u32
        },
    }
}

/// What the pushes and mints should have left behind.
struct Expected {
    distinct_acked: u64,
    distinct_sent: u64,
    bound: BTreeMap<String, BTreeMap<String, String>>,
    unsure: BTreeMap<String, BTreeSet<String>>,
    new_followers: u64,
    already_following: u64,
    /// `qrcode/create` requests the fake WeChat received.
    codes_minted: usize,
}

fn verify(
    backends: &Backends,
    before: &Baseline,
    sent: &[SentScene],
    expected: &Expected,
) -> Verification {
    let started = Instant::now();
    let mut v = Verification {
        distinct_pushes: expected.distinct_acked,
        ..Verification::default()
    };
    let store = backends.store.as_ref();
    let blobs = backends.blobs.as_ref();
    let mut referenced = HashSet::new();
    let mut sessions_with_photos = 0u64;

    for scene in sent {
        let rows = match store.photos_of_scene(&scene.scene) {
            Ok(rows) => rows,
            Err(e) => {
                v.problem(format!("photos_of_scene({}): {e}", scene.scene));
                continue;
            }
        };
        if !rows.is_empty() {
            sessions_with_photos += 1;
        }
        let mut by_id: HashMap<&str, Vec<&mirrorsight_hub::store::PhotoMeta>> = HashMap::new();
        for row in &rows {
            by_id.entry(row.photo.as_str()).or_default().push(row);
            referenced.insert(row.blob_key.clone());
        }
        let sent_ids: HashMap<&str, &SentPhoto> =
            scene.photos.iter().map(|p| (p.id.as_str(), p)).collect();
        for (id, found) in &by_id {
            if !sent_ids.contains_key(id) {
                v.extra += 1;
                v.problem(format!("{}/{id}: stored but never sent", scene.scene));
            }
            if found.len() > 1 {
                v.photos_duplicated += 1;
                v.problem(format!(
                    "{}/{id}: stored {} times",
                    scene.scene,
                    found.len()
                ));
            }
        }
        for photo in &scene.photos {
            let Some(found) = by_id.get(photo.id.as_str()) else {
                if photo.acked {
                    v.photos_missing += 1;
                    v.problem(format!(
                        "{}/{}: acknowledged but not stored",
                        scene.scene, photo.id
                    ));
                }
                continue;
            };
            let row = found[0];
            let mut ok = true;
            if row.sha256 != photo.sha256 || row.bytes != photo.bytes as i64 {
                v.bad_bytes += 1;
                ok = false;
                v.problem(format!(
                    "{}/{}: row says {} bytes sha256 {}, sent {} bytes {}",
                    scene.scene, photo.id, row.bytes, row.sha256, photo.bytes, photo.sha256
                ));
            }
            match blobs.get(&row.blob_key) {
                Ok(Some(bytes)) => {
                    if bytes.len() != photo.bytes || sha_hex(&bytes) != photo.sha256 {
                        v.bad_bytes += 1;
                        ok = false;
                        v.problem(format!(
                            "{}/{}: blob {} holds other bytes",
                            scene.scene, photo.id, row.blob_key
                        ));
                    }
                }
                Ok(None) => {
                    v.photos_missing += 1;
                    ok = false;
                    v.problem(format!(
                        "{}/{}: blob {} is gone",
                        scene.scene, photo.id, row.blob_key
                    ));
                }
                Err(e) => {
                    ok = false;
                    v.problem(format!("{}/{}: blob get: {e}", scene.scene, photo.id));
                }
            }
            if photo.acked && ok && found.len() == 1 {
                v.photos_ok += 1;
            }
        }
    }

    // Bytes nobody refers to: retries and races must not leave orphans.
    match blobs.list() {
        Ok(list) => {
            for entry in list {
                if !before.blobs.contains(&entry.key) && !referenced.contains(&entry.key) {
                    v.extra += 1;
                    v.problem(format!("blob {} is referenced by no photo", entry.key));
                }
            }
        }
        Err(e) => v.problem(format!("blob list: {e}")),
    }

    // One record per distinct push, however often it was sent.
    match store.wechat_event_count() {
        Ok(n) => {
            v.events_recorded = n.saturating_sub(before.events);
            if !(expected.distinct_acked..=expected.distinct_sent).contains(&v.events_recorded) {
                v.problem(format!(
                    "push log grew by {}, for {} distinct pushes acknowledged ({} sent)",
                    v.events_recorded, expected.distinct_acked, expected.distinct_sent
                ));
            }
        }
        Err(e) => v.problem(format!("wechat_event_count: {e}")),
    }

    // Bindings: each (scene, openid) of an acknowledged push once, with its first event.
    let scenes: BTreeSet<&String> = expected
        .bound
        .keys()
        .chain(expected.unsure.keys())
        .collect();
    for scene in scenes {
        let want = expected.bound.get(scene.as_str());
        let unsure = expected.unsure.get(scene.as_str());
        v.bindings_expected += want.map_or(0, BTreeMap::len);
        let found = match store.bindings(scene) {
            Ok(found) => found,
            Err(e) => {
                v.problem(format!("bindings({scene}): {e}"));
                continue;
            }
        };
        let mut seen = HashSet::new();
        for b in &found {
            if !seen.insert(b.openid.as_str()) {
                v.problem(format!("{scene}: {} bound twice", b.openid));
                continue;
            }
            match want.and_then(|w| w.get(&b.openid)) {
                Some(event) => {
                    v.bindings_found += 1;
                    if *event != b.event {
                        v.problem(format!(
                            "{scene}: {} bound by {}, first push was {event}",
                            b.openid, b.event
                        ));
                    }
                }
                None if unsure.is_some_and(|u| u.contains(&b.openid)) => {}
                None => v.problem(format!("{scene}: {} bound but never pushed", b.openid)),
            }
        }
    }

    // The activity log behind the statistics counts the same things.
    match store.totals() {
        Ok(totals) => {
            let after: HashMap<Activity, u64> = totals.activity.into_iter().collect();
            let grew = |kind: Activity| {
                after
                    .get(&kind)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(before.activity.get(&kind).copied().unwrap_or(0))
            };
            let minted = sent.iter().filter(|s| s.minted).count() as u64;
            let unsure = expected.distinct_sent - expected.distinct_acked;
            for (kind, want, slack) in [
                (Activity::CodeMinted, minted, 0),
                (Activity::Session, sessions_with_photos, 0),
                (Activity::ScanNewFollower, expected.new_followers, unsure),
                (
                    Activity::ScanAlreadyFollowing,
                    expected.already_following,
                    unsure,
                ),
            ] {
                let got = grew(kind);
                if !(want..=want + slack).contains(&got) {
                    v.problem(format!(
                        "activity {}: +{got}, expected {want}",
                        kind.as_str()
                    ));
                }
            }
            if expected.codes_minted as u64 != minted {
                v.problem(format!(
                    "WeChat minted {} codes for {minted} scenes (a retry must not mint again)",
                    expected.codes_minted
                ));
            }
        }
        Err(e) => v.problem(format!("totals: {e}")),
    }
    v.elapsed = started.elapsed();
    v
}
