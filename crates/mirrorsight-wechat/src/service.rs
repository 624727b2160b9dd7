//! The QR service the daemon drives from its (non-async) pipeline thread.
//!
//! [`QrService::code_for_session`] never waits on the network: it answers from the pool (or
//! renders a `url` code) at once, or says [`CodeOutcome::Pending`] and lets a background
//! worker on the given tokio runtime mint one, retrying with bounded backoff for as long as
//! the session waits; the result arrives on [`QrService::updates`]. Every code handed out is
//! first recorded in the binding log (session ↔ scene), fsynced.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use mirrorsight_contract::events::QrSource;
use thiserror::Error;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::binding::{Binding, BindingLog, BindingLogError};
use crate::config::{ConfigError, QrKind, Settings};
use crate::error::Error;
use crate::minter::{MintedCode, Minter};
use crate::pool::{Backoff, Minted, PoolSettings, ScenePool};
use crate::secret::Secrets;

/// Source of locally generated scene ids for pool codes: a seeded RNG in replay, the OS RNG
/// live. Called only from the worker.
pub type IdGenerator = Box<dyn FnMut() -> String + Send + 'static>;

/// Sessions remembered for idempotent [`QrService::code_for_session`] calls.
const REMEMBERED_SESSIONS: usize = 4096;

/// The answer of [`QrService::code_for_session`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeOutcome {
    /// Show this now. The binding is already on disk.
    Ready { code: MintedCode, source: QrSource },
    /// Nothing ready: a code is being minted and will arrive as [`QrUpdate::Minted`].
    Pending,
}

/// Delivered on [`QrService::updates`] for sessions that got [`CodeOutcome::Pending`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QrUpdate {
    /// The session's code, bound and ready to show (`qr_minted`).
    Minted {
        session: String,
        code: MintedCode,
        source: QrSource,
    },
    /// An attempt failed; minting goes on with backoff (`qr_failed`). Sent on the first
    /// failure and whenever the reason changes, not on every retry.
    Failed {
        session: String,
        reason: String,
        attempt: u32,
    },
}

/// A snapshot for health checks and the overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrStatus {
    pub kind: QrKind,
    pub pool_ready: usize,
    pub pool_size: usize,
    /// Mints in flight (pool and live).
    pub minting: usize,
    /// Sessions still waiting for a code.
    pub waiting_sessions: usize,
    /// Consecutive failed pool mints (0 when healthy).
    pub consecutive_failures: u32,
    /// The last mint error, cleared by the next success.
    pub last_error: Option<String>,
    /// Binding-log writes that failed (a code was shown without a durable binding).
    pub binding_failures: u64,
}

/// What [`QrService::shutdown`] managed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every in-flight mint finished within the timeout.
    pub clean: bool,
    /// Mints cut off at the timeout.
    pub abandoned_mints: usize,
}

#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("QR minter: {0}")]
    Minter(#[from] Error),
    #[error(transparent)]
    BindingLog(#[from] BindingLogError),
}

struct Waiting {
    session: String,
    in_flight: bool,
    backoff: Backoff,
    attempts: u32,
    last_reason: Option<String>,
}

struct State {
    pool: ScenePool,
    waiting: VecDeque<Waiting>,
    issued: HashMap<String, (MintedCode, QrSource)>,
    issued_order: VecDeque<String>,
    shutting_down: bool,
    minting: usize,
    last_error: Option<String>,
    binding_failures: u64,
    /// This mirror's idle code (`qr.idle_code`), once minted or read back.
    idle: Option<MintedCode>,
}

impl State {
    fn remember(&mut self, session: &str, code: &MintedCode, source: QrSource) {
        if self
            .issued
            .insert(session.to_string(), (code.clone(), source))
            .is_none()
        {
            self.issued_order.push_back(session.to_string());
        }
        while self.issued_order.len() > REMEMBERED_SESSIONS {
            if let Some(old) = self.issued_order.pop_front() {
                self.issued.remove(&old);
            }
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// Signalled whenever the pool changes, for [`QrService::wait_filled`].
    changed: Condvar,
    /// Wakes the worker.
    wake: Notify,
    binding_log: Mutex<BindingLog>,
    updates: Sender<QrUpdate>,
    minter: Minter,
    retry_initial: Duration,
    retry_max: Duration,
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a handful of assignments; a panic inside one (a bug)
    // must not take the mirror's QR display down with it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        relock(&self.state)
    }

    /// Writes the binding and waits for the disk. A failure is logged and counted: the code
    /// is still shown, since a shopper with a code is better than one without.
    fn record_binding(&self, session: &str, code: &MintedCode, source: QrSource) {
        let binding = Binding {
            session: session.to_string(),
            scene: code.scene.clone(),
            url: code.url.clone(),
            ticket: code.ticket.clone(),
            expires_at: code.expires_at,
            source,
            bound_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        };
        if let Err(e) = relock(&self.binding_log).append(&binding) {
            tracing::error!(session, scene = %code.scene, error = %e, "cannot record the session's scene binding");
            self.lock().binding_failures += 1;
        }
    }
}

enum Job {
    Pool { seq: u64 },
    Live { session: String },
}

/// Signals the end of the worker however it ends (return, abort, runtime shutdown).
struct DoneGuard(Sender<()>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        let _ = self.0.try_send(());
    }
}

/// The QR service. See the module documentation.
pub struct QrService {
    shared: Arc<Shared>,
    updates: Receiver<QrUpdate>,
    worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
    done: Receiver<()>,
    /// Mints (or reads back) the idle code, retrying until it has one.
    idle_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for QrService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QrService")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl QrService {
    /// Validates `settings`, builds the minter with `secrets`, opens the binding log, and
    /// starts the background worker on `runtime` (which fills the pool right away).
    pub fn start(
        settings: &Settings,
        secrets: &Secrets,
        id_gen: IdGenerator,
        binding_log: &Path,
        runtime: Handle,
    ) -> Result<Self, StartError> {
        settings.validate()?;
        let minter = {
            let _inside = runtime.enter();
            Minter::from_settings(settings, secrets)?
        };
        let service = Self::with_minter(
            minter,
            PoolSettings::from_config(&settings.qr),
            id_gen,
            binding_log,
            runtime.clone(),
        )?;
        if let Some(scene) = &settings.qr.idle_code {
            service.start_idle_code(
                scene,
                &binding_log.with_file_name("idle_code.json"),
                &runtime,
            );
        }
        Ok(service)
    }

    /// Like [`Self::start`] with a ready-made minter and pool settings.
    pub fn with_minter(
        minter: Minter,
        pool: PoolSettings,
        id_gen: IdGenerator,
        binding_log: &Path,
        runtime: Handle,
    ) -> Result<Self, StartError> {
        let log = BindingLog::open(binding_log)?;
        let (updates_tx, updates_rx) = crossbeam_channel::unbounded();
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let pool = if minter.kind().needs_network() {
            pool
        } else {
            PoolSettings { size: 0, ..pool }
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pool: ScenePool::new(pool.clone()),
                waiting: VecDeque::new(),
                issued: HashMap::new(),
                issued_order: VecDeque::new(),
                shutting_down: false,
                minting: 0,
                last_error: None,
                binding_failures: 0,
                idle: None,
            }),
            changed: Condvar::new(),
            wake: Notify::new(),
            binding_log: Mutex::new(log),
            updates: updates_tx,
            minter,
            retry_initial: pool.retry_initial,
            retry_max: pool.retry_max,
        });
        let worker = runtime.spawn(run_worker(Arc::clone(&shared), id_gen, DoneGuard(done_tx)));
        Ok(Self {
            shared,
            updates: updates_rx,
            worker: Mutex::new(Some(worker)),
            done: done_rx,
            idle_task: Mutex::new(None),
        })
    }

    /// Gets this mirror's idle code for `scene` in the background: read back from `cache`
    /// (written when it was first minted, so a permanent code is minted once in the mirror's
    /// life), else minted with backoff until it succeeds. [`Self::idle_code`] has it then.
    pub fn start_idle_code(&self, scene: &str, cache: &Path, runtime: &Handle) {
        let shared = Arc::clone(&self.shared);
        let (scene, cache) = (scene.to_string(), cache.to_path_buf());
        let task = runtime.spawn(async move {
            let kind = shared.minter.kind();
            if let Some(code) = crate::idle::read_cache(&cache, &scene, kind) {
                tracing::info!(scene = %code.scene, "idle code read back");
                shared.lock().idle = Some(code);
                shared.changed.notify_all();
                return;
            }
            let mut backoff = Backoff::new(shared.retry_initial, shared.retry_max);
            loop {
                if shared.lock().shutting_down {
                    return;
                }
                match shared.minter.mint_idle(&scene).await {
                    Ok(code) => {
                        if let Err(e) = crate::idle::write_cache(&cache, kind, &code) {
                            // Shown anyway; the next start mints (or the hub answers) again.
                            tracing::warn!(error = %e, path = %cache.display(), "cannot keep the idle code");
                        }
                        tracing::info!(scene = %code.scene, "idle code minted");
                        shared.lock().idle = Some(code);
                        shared.changed.notify_all();
                        return;
                    }
                    Err(e) => {
                        let pause = backoff.on_failure(Instant::now());
                        tracing::warn!(error = %e, ?pause, "minting the idle code failed; retrying");
                        tokio::time::sleep(pause).await;
                    }
                }
            }
        });
        *relock(&self.idle_task) = Some(task);
    }

    /// This mirror's idle code, once it is ready.
    pub fn idle_code(&self) -> Option<MintedCode> {
        self.shared.lock().idle.clone()
    }

    /// Blocks the calling (non-async) thread until the idle code is ready or `timeout`
    /// passes.
    pub fn wait_idle_code(&self, timeout: Duration) -> Option<MintedCode> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if state.idle.is_some() {
                return state.idle.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    pub fn minter(&self) -> &Minter {
        &self.shared.minter
    }

    /// The code for `session`, without waiting on the network. Calling again for the same
    /// session returns the same code (the binding is one-to-one).
    pub fn code_for_session(&self, session: &str) -> CodeOutcome {
        let shared = &self.shared;
        if let Some(code) = shared.minter.render_offline(session) {
            let mut state = shared.lock();
            if let Some((code, source)) = state.issued.get(session) {
                return CodeOutcome::Ready {
                    code: code.clone(),
                    source: *source,
                };
            }
            state.remember(session, &code, QrSource::Url);
            drop(state);
            shared.record_binding(session, &code, QrSource::Url);
            return CodeOutcome::Ready {
                code,
                source: QrSource::Url,
            };
        }
        let mut state = shared.lock();
        if let Some((code, source)) = state.issued.get(session) {
            return CodeOutcome::Ready {
                code: code.clone(),
                source: *source,
            };
        }
        if state.waiting.iter().any(|w| w.session == session) {
            return CodeOutcome::Pending;
        }
        if let Some(code) = state.pool.take(Instant::now()) {
            state.remember(session, &code, QrSource::Pool);
            drop(state);
            shared.changed.notify_all();
            // The pool shrank: let the worker decide whether to refill.
            shared.wake.notify_one();
            shared.record_binding(session, &code, QrSource::Pool);
            tracing::info!(session, scene = %code.scene, "QR code from the pool");
            return CodeOutcome::Ready {
                code,
                source: QrSource::Pool,
            };
        }
        if state.shutting_down {
            return CodeOutcome::Pending;
        }
        state.waiting.push_back(Waiting {
            session: session.to_string(),
            in_flight: false,
            backoff: Backoff::new(shared.retry_initial, shared.retry_max),
            attempts: 0,
            last_reason: None,
        });
        drop(state);
        shared.wake.notify_one();
        tracing::info!(session, "no pooled QR code; minting one live");
        CodeOutcome::Pending
    }

    /// The session is over: stop minting for it if it still waits.
    pub fn session_ended(&self, session: &str) {
        self.shared.lock().waiting.retain(|w| w.session != session);
    }

    /// Results for sessions that got [`CodeOutcome::Pending`].
    pub fn updates(&self) -> &Receiver<QrUpdate> {
        &self.updates
    }

    /// Blocks the calling (non-async) thread until the pool is full or `timeout` passes.
    /// True at once when the kind needs no pool.
    pub fn wait_filled(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if !state.pool.is_enabled() || state.pool.is_full() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    pub fn status(&self) -> QrStatus {
        let state = self.shared.lock();
        QrStatus {
            kind: self.shared.minter.kind(),
            pool_ready: state.pool.ready(),
            pool_size: state.pool.settings().size,
            minting: state.minting,
            waiting_sessions: state.waiting.len(),
            consecutive_failures: state.pool.backoff().failures(),
            last_error: state.last_error.clone(),
            binding_failures: state.binding_failures,
        }
    }

    /// Stops starting mints, lets those in flight finish (delivering their codes) for up to
    /// `timeout`, then cuts off the rest. Blocks the calling thread; do not call it from
    /// inside the runtime. Later calls return at once.
    pub fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        self.shared.lock().shutting_down = true;
        self.shared.wake.notify_one();
        // An idle code not minted yet is minted at the next start.
        if let Some(task) = relock(&self.idle_task).take() {
            task.abort();
        }
        let Some(worker) = relock(&self.worker).take() else {
            return ShutdownReport {
                clean: true,
                abandoned_mints: 0,
            };
        };
        if self.done.recv_timeout(timeout).is_ok() {
            return ShutdownReport {
                clean: true,
                abandoned_mints: 0,
            };
        }
        let abandoned = self.shared.lock().minting;
        tracing::warn!(
            abandoned,
            "QR service shutdown timed out; abandoning in-flight mints"
        );
        worker.abort();
        // Aborting drops the worker's JoinSet, which aborts the mints; give that a moment.
        let _ = self.done.recv_timeout(Duration::from_millis(500));
        ShutdownReport {
            clean: false,
            abandoned_mints: abandoned,
        }
    }
}

impl Drop for QrService {
    fn drop(&mut self) {
        // No blocking in drop: the worker notices and ends once its mints finish.
        self.shared.lock().shutting_down = true;
        self.shared.wake.notify_one();
    }
}

async fn run_worker(shared: Arc<Shared>, mut id_gen: IdGenerator, done: DoneGuard) {
    let _done = done;
    let mut tasks: JoinSet<Result<MintedCode, Error>> = JoinSet::new();
    let mut jobs: HashMap<tokio::task::Id, Job> = HashMap::new();
    let mut pool_seq: u64 = 0;
    loop {
        let now = Instant::now();
        let mut deliveries = Vec::new();
        let wake_at;
        let exit;
        {
            let mut state = shared.lock();
            // Waiting sessions come first: a pooled code beats any live mint still running.
            while !state.waiting.is_empty() {
                let Some(code) = state.pool.take(now) else {
                    break;
                };
                let Some(waiting) = state.waiting.pop_front() else {
                    break;
                };
                state.remember(&waiting.session, &code, QrSource::Pool);
                deliveries.push((waiting.session, code, QrSource::Pool));
            }
            let mut next = None;
            if !state.shutting_down {
                let mut live = Vec::new();
                for w in state.waiting.iter_mut() {
                    if w.in_flight {
                        continue;
                    }
                    if w.backoff.ready(now) {
                        w.in_flight = true;
                        w.attempts += 1;
                        live.push(w.session.clone());
                    } else {
                        next = earliest(next, w.backoff.retry_at());
                    }
                }
                for session in live {
                    let scene = shared.minter.scene_for_id(&session);
                    let minter = shared.minter.clone();
                    let handle = tasks.spawn(async move { minter.mint(&scene).await });
                    jobs.insert(handle.id(), Job::Live { session });
                    state.minting += 1;
                }
                let plan = state.pool.poll(now);
                for _ in 0..plan.start {
                    let scene = shared.minter.scene_for_id(&id_gen());
                    let minter = shared.minter.clone();
                    let handle = tasks.spawn(async move { minter.mint(&scene).await });
                    pool_seq += 1;
                    jobs.insert(handle.id(), Job::Pool { seq: pool_seq });
                    state.minting += 1;
                }
                next = earliest(next, plan.wake_at);
            }
            wake_at = next;
            exit = state.shutting_down && tasks.is_empty();
        }
        shared.changed.notify_all();
        for (session, code, source) in deliveries {
            deliver(&shared, session, code, source).await;
        }
        if exit {
            break;
        }
        let sleep = async {
            match wake_at {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shared.wake.notified() => {}
            () = sleep => {}
            Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let (id, result) = match joined {
                    Ok((id, result)) => (id, result),
                    Err(e) => (e.id(), Err(Error::Internal(format!("mint task failed: {e}")))),
                };
                if let Some(job) = jobs.remove(&id) {
                    finish_job(&shared, job, result).await;
                }
            }
        }
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn finish_job(shared: &Arc<Shared>, job: Job, result: Result<MintedCode, Error>) {
    let now = Instant::now();
    match job {
        Job::Pool { seq } => {
            let mut state = shared.lock();
            state.minting = state.minting.saturating_sub(1);
            match result {
                Ok(code) => {
                    let lifetime = code
                        .expire_seconds
                        .map(|s| Duration::from_secs(u64::from(s)));
                    let scene = code.scene.clone();
                    match state.pool.on_minted(now, seq, code, lifetime) {
                        Minted::Added => {
                            state.last_error = None;
                            tracing::debug!(scene, ready = state.pool.ready(), "pool code minted");
                        }
                        Minted::TooShortLived => {
                            let reason = format!(
                                "minted code lives {lifetime:?}, not longer than qr.drop_before_expiry_s"
                            );
                            tracing::warn!(scene, "{reason}");
                            state.last_error = Some(reason);
                        }
                    }
                }
                Err(e) => {
                    let pause = state.pool.on_mint_failed(now);
                    tracing::warn!(error = %e, ?pause, "pool mint failed; retrying after a pause");
                    state.last_error = Some(e.to_string());
                }
            }
            drop(state);
            shared.changed.notify_all();
        }
        Job::Live { session } => {
            let delivery = {
                let mut state = shared.lock();
                state.minting = state.minting.saturating_sub(1);
                // Gone means served from the pool meanwhile, or the session ended.
                let pos = state.waiting.iter().position(|w| w.session == session);
                match (pos, result) {
                    (None, _) => None,
                    (Some(pos), Ok(code)) => {
                        state.waiting.remove(pos);
                        state.last_error = None;
                        let source = if shared.minter.kind() == QrKind::Relay {
                            QrSource::Relay
                        } else {
                            QrSource::Live
                        };
                        state.remember(&session, &code, source);
                        Some((code, source))
                    }
                    (Some(pos), Err(e)) => {
                        let reason = e.to_string();
                        state.last_error = Some(reason.clone());
                        if let Some(w) = state.waiting.get_mut(pos) {
                            w.in_flight = false;
                            let pause = w.backoff.on_failure(now);
                            let report = w.last_reason.as_deref() != Some(reason.as_str());
                            w.last_reason = Some(reason.clone());
                            tracing::warn!(session, attempt = w.attempts, ?pause, error = %reason, "live mint failed; retrying");
                            if report {
                                let _ = shared.updates.send(QrUpdate::Failed {
                                    session: session.clone(),
                                    reason,
                                    attempt: w.attempts,
                                });
                            }
                        }
                        None
                    }
                }
            };
            if let Some((code, source)) = delivery {
                deliver(shared, session, code, source).await;
            }
        }
    }
}

async fn deliver(shared: &Arc<Shared>, session: String, code: MintedCode, source: QrSource) {
    let writer = Arc::clone(shared);
    let (s, c) = (session.clone(), code.clone());
    // fsync blocks: keep it off the runtime's worker threads.
    if let Err(e) = tokio::task::spawn_blocking(move || writer.record_binding(&s, &c, source)).await
    {
        tracing::error!(error = %e, "binding writer task failed");
    }
    tracing::info!(session, scene = %code.scene, ?source, "QR code delivered");
    // The daemon may have stopped listening at shutdown; the binding is on disk regardless.
    let _ = shared.updates.send(QrUpdate::Minted {
        session,
        code,
        source,
    });
}
