//! [`Store`] on PostgreSQL, for a chain whose hub instances share one database.
//!
//! Same tables and semantics as the SQLite store. Races between instances are settled by the
//! database, not by locks in the hub: every "create unless it exists" is an
//! `INSERT … ON CONFLICT DO NOTHING` followed by a read of the winner, so two instances taking
//! the same push, upload or scene at once both answer from the one row that was stored.
//! The default isolation (read committed) is enough for that: a conflicting insert waits for
//! the first transaction and then sees its row.

use std::collections::HashSet;
use std::time::Duration;

use std::path::PathBuf;
use std::sync::Arc;

use postgres::types::ToSql;
use postgres::{GenericClient, Row};
use r2d2_postgres::PostgresConnectionManager;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    Activity, Binding, Claim, Device, MintOutcome, MintedScene, NewWechatEvent, PhotoInsert,
    PhotoMeta, SceneRecord, SharedToken, StatsRow, Store, StoreError, Totals, activity_totals,
    fold_stats,
};

const SCHEMA_VERSION: i32 = 2;

/// Arbitrary constant: instances starting together take this advisory lock so only one of
/// them creates or migrates the schema.
const MIGRATION_LOCK: i64 = 0x6d69_7272_6f72_6875; // "mirrorhu"

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    store TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE IF NOT EXISTS scenes (
    scene TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    store TEXT NOT NULL,
    url TEXT,
    ticket TEXT,
    expires_at BIGINT,
    minted_at BIGINT,
    gallery_key TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    device TEXT NOT NULL,
    session_id TEXT NOT NULL,
    scene TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    PRIMARY KEY (device, session_id)
);
CREATE TABLE IF NOT EXISTS photos (
    scene TEXT NOT NULL,
    photo TEXT NOT NULL,
    device TEXT NOT NULL,
    session_id TEXT NOT NULL,
    taken_at_ms BIGINT NOT NULL,
    trigger TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    blob_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expired_at BIGINT,
    PRIMARY KEY (scene, photo)
);
CREATE INDEX IF NOT EXISTS photos_live_by_age ON photos (created_at) WHERE expired_at IS NULL;
CREATE INDEX IF NOT EXISTS photos_by_blob ON photos (blob_key);
CREATE TABLE IF NOT EXISTS bindings (
    scene TEXT NOT NULL,
    openid TEXT NOT NULL,
    event TEXT NOT NULL,
    bound_at BIGINT NOT NULL,
    PRIMARY KEY (scene, openid)
);
CREATE TABLE IF NOT EXISTS wechat_events (
    dedupe TEXT PRIMARY KEY,
    openid TEXT NOT NULL,
    event TEXT NOT NULL,
    event_key TEXT NOT NULL,
    scene TEXT,
    reply TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS activity (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    store TEXT NOT NULL,
    device TEXT NOT NULL,
    scene TEXT,
    dedupe TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS activity_by_time ON activity (at);
CREATE TABLE IF NOT EXISTS access_tokens (
    name TEXT PRIMARY KEY,
    token TEXT,
    expires_at BIGINT,
    fetched_at BIGINT,
    fetched_by TEXT,
    lease_holder TEXT,
    lease_until BIGINT
);
";

type Pool = r2d2::Pool<PostgresConnectionManager<MakeRustlsConnect>>;
type Conn = r2d2::PooledConnection<PostgresConnectionManager<MakeRustlsConnect>>;

/// How the hub connects: the URL from `database`, the password from the secrets.
#[derive(Clone)]
pub struct PostgresSettings {
    /// `postgres://user@host:port/dbname` (libpq URL or key=value form).
    pub url: String,
    pub password: Option<String>,
    /// Connections per instance.
    pub pool_size: u32,
    /// How long a request waits for a free connection (and a new connection for the server).
    pub connect_timeout: Duration,
    /// PEM file of the CA that signed the server's certificate (a chain's private CA); without
    /// it the system's trusted roots are used. Whether TLS is used at all is the URL's
    /// `sslmode` (`prefer` by default, `require` to refuse a plaintext server).
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("pool_size", &self.pool_size)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// PostgreSQL-backed [`Store`], with a connection pool shared by the blocking workers.
///
/// The driver blocks on a private runtime, which panics on a thread that drives async tasks.
/// The hub calls stores from blocking threads anyway, but a store must not turn a slip into a
/// crash: called on an async thread, an operation runs on a scoped thread of its own, and the
/// connections are closed on one when the store is dropped.
pub struct PostgresStore {
    /// Always `Some` until dropped.
    db: Option<Db>,
}

/// The pool and the queries, used only off async threads.
struct Db {
    pool: Pool,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(db) = self.db.take() {
            let closer = std::thread::Builder::new()
                .name("pg-close".into())
                .spawn(move || drop(db));
            if let Ok(closer) = closer {
                let _ = closer.join();
            }
        }
    }
}

/// Runs `job` where the driver may block: here, or on a scoped thread when this thread
/// belongs to an async runtime.
fn off_runtime<T: Send>(
    job: impl FnOnce() -> Result<T, StoreError> + Send,
) -> Result<T, StoreError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return job();
    }
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("pg-query".into())
            .spawn_scoped(scope, job)
            .map_err(|e| StoreError::Db(format!("cannot start a database thread: {e}")))?
            .join()
            .unwrap_or_else(|_| Err(StoreError::Db("database thread panicked".into())))
    })
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostgresStore")
    }
}

fn db(e: postgres::Error) -> StoreError {
    // The driver's Display is "db error"; the server's message is in the source.
    match e.as_db_error() {
        Some(server) => StoreError::Db(format!("{}: {}", server.severity(), server.message())),
        None => StoreError::Db(e.to_string()),
    }
}

fn pool_error(e: r2d2::Error) -> StoreError {
    StoreError::Db(format!("no PostgreSQL connection: {e}"))
}

/// True for a `postgres://` or `postgresql://` URL: how `database` picks this store.
pub fn is_postgres_url(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

impl PostgresStore {
    /// Connects, creates the schema if needed, and refuses a database a newer hub migrated.
    pub fn open(settings: &PostgresSettings) -> Result<Self, StoreError> {
        let mut config: postgres::Config = settings.url.parse().map_err(|e: postgres::Error| {
            StoreError::Db(format!(
                "database URL {:?} is not a PostgreSQL URL: {e}",
                redact_url(&settings.url)
            ))
        })?;
        if let Some(password) = &settings.password {
            config.password(password);
        }
        config.connect_timeout(settings.connect_timeout);
        // A database host that vanishes without closing connections (failover, partition)
        // must cost seconds, not the kernel's quarter of an hour of retransmits; a stuck lock
        // or query fails the request instead of holding a pooled connection forever.
        config.keepalives_idle(Duration::from_secs(30));
        config.tcp_user_timeout(Duration::from_secs(30));
        config.options("-c statement_timeout=30000 -c lock_timeout=30000");
        config.application_name("mirrorsight-hub");
        // One direct connection first: the pool only reports "timed out", while this names
        // the cause (refused, unknown host, authentication failed, no such database).
        let tls = tls_connector(settings)?;
        let probe = config.connect(tls.clone()).map_err(|e| {
            let cause = match e.as_db_error() {
                Some(server) => server.message().to_string(),
                // The driver's text is "error performing TLS handshake"; the why is below it.
                None => match std::error::Error::source(&e) {
                    Some(source) => format!("{e}: {source}"),
                    None => e.to_string(),
                },
            };
            let check = if cause.contains("TLS") || cause.contains("certificate") {
                "check `postgres.ca_file` (the CA that signed the server's certificate) and the URL's sslmode"
            } else {
                "check `postgres.url`, that the server is up, and the password"
            };
            StoreError::Db(format!(
                "cannot connect to PostgreSQL at {}: {cause}; {check}",
                redact_url(&settings.url)
            ))
        })?;
        drop(probe);
        let manager = PostgresConnectionManager::new(config, tls);
        let pool = r2d2::Pool::builder()
            .max_size(settings.pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(settings.connect_timeout)
            // A connection the server dropped (restart, failover) is noticed and replaced.
            .test_on_check_out(true)
            // Failures reach the caller as errors; the pool's own logging would repeat them.
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(manager)
            .map_err(|e| {
                StoreError::Db(format!(
                    "cannot open a pool of PostgreSQL connections at {}: {e}; check `postgres.pool_size` against the server's max_connections",
                    redact_url(&settings.url)
                ))
            })?;
        let db = Db { pool };
        db.migrate()?;
        let store = Self { db: Some(db) };
        match store.tls_version() {
            Ok(Some(version)) => tracing::info!(tls = %version, "connected to PostgreSQL"),
            Ok(None) => tracing::warn!(
                "connected to PostgreSQL without TLS; add ?sslmode=require to the URL to refuse that"
            ),
            Err(e) => tracing::warn!(error = %e, "connected to PostgreSQL; TLS state unknown"),
        }
        Ok(store)
    }

    /// The TLS version of a pooled connection (`None`: plaintext), as the server sees it.
    pub fn tls_version(&self) -> Result<Option<String>, StoreError> {
        let inner = self.db()?;
        off_runtime(|| {
            let row = inner
                .conn()?
                .query_opt(
                    "SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl",
                    &[],
                )
                .map_err(db)?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn db(&self) -> Result<&Db, StoreError> {
        self.db
            .as_ref()
            .ok_or_else(|| StoreError::Db("store closed".into()))
    }
}

impl Db {
    fn conn(&self) -> Result<Conn, StoreError> {
        self.pool.get().map_err(pool_error)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(db)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(db)?;
        // Read the version before any DDL: a database already at this version needs none,
        // so the hub's role may be one that can only read and write rows.
        let has_version_table: bool = tx
            .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
            .map_err(db)?
            .get(0);
        let read_version = |tx: &mut postgres::Transaction<'_>| -> Result<Option<i32>, StoreError> {
            Ok(tx
                .query_opt("SELECT max(version) FROM schema_version", &[])
                .map_err(db)?
                .and_then(|r| r.get(0)))
        };
        let mut version = if has_version_table {
            read_version(&mut tx)?
        } else {
            None
        };
        if version.is_none_or(|v| v < SCHEMA_VERSION) {
            tx.batch_execute(SCHEMA).map_err(db)?;
            version = read_version(&mut tx)?;
        }
        match version {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::Db(format!(
                    "database schema version {v} is newer than this hub ({SCHEMA_VERSION}); refusing to touch it"
                )));
            }
            Some(v) if v == SCHEMA_VERSION => {}
            _ => {
                tx.execute("DELETE FROM schema_version", &[]).map_err(db)?;
                tx.execute(
                    "INSERT INTO schema_version (version) VALUES ($1)",
                    &[&SCHEMA_VERSION],
                )
                .map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }
}

/// The TLS client: certificates checked against `ca_file` or the system's roots, with the
/// same crypto provider the rest of the hub uses.
fn tls_connector(settings: &PostgresSettings) -> Result<MakeRustlsConnect, StoreError> {
    let tls_error =
        |what: String| StoreError::Db(format!("PostgreSQL TLS: {what}; check `postgres.ca_file`"));
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_error(e.to_string()))?;
    let config = match &settings.ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| tls_error(format!("cannot read {}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(tls_error(format!("no certificate in {}", path.display())));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .map_err(|e| tls_error(format!("system roots: {e}")))?
                .with_no_client_auth()
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

/// The URL without its password, for messages.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}@{host}")
        }
        None => url.to_string(),
    }
}

const SCENE_COLUMNS: &str =
    "scene, device, store, url, ticket, expires_at, minted_at, gallery_key, created_at";

fn scene_from_row(r: &Row) -> SceneRecord {
    let code = match (
        r.get::<_, Option<String>>(3),
        r.get::<_, Option<i64>>(5),
        r.get::<_, Option<i64>>(6),
    ) {
        (Some(url), Some(expires_at), Some(minted_at)) => Some(MintedScene {
            url,
            ticket: r.get(4),
            expires_at,
            minted_at,
        }),
        _ => None,
    };
    SceneRecord {
        scene: r.get(0),
        device: r.get(1),
        store: r.get(2),
        code,
        gallery_key: r.get(7),
        created_at: r.get(8),
    }
}

const PHOTO_COLUMNS: &str = "scene, photo, device, session_id, taken_at_ms, trigger, sha256, bytes, blob_key, created_at, expired_at";

fn photo_from_row(r: &Row) -> PhotoMeta {
    PhotoMeta {
        scene: r.get(0),
        photo: r.get(1),
        device: r.get(2),
        session_id: r.get(3),
        taken_at_ms: r.get(4),
        trigger: r.get(5),
        sha256: r.get(6),
        bytes: r.get(7),
        blob_key: r.get(8),
        created_at: r.get(9),
        expired_at: r.get(10),
    }
}

fn device_from_row(r: &Row) -> Device {
    Device {
        id: r.get(0),
        store: r.get(1),
        created_at: r.get(2),
        revoked_at: r.get(3),
    }
}

fn get_scene(
    conn: &mut impl GenericClient,
    scene: &str,
    lock: bool,
) -> Result<Option<SceneRecord>, StoreError> {
    let suffix = if lock { " FOR UPDATE" } else { "" };
    Ok(conn
        .query_opt(
            &format!("SELECT {SCENE_COLUMNS} FROM scenes WHERE scene = $1{suffix}"),
            &[&scene],
        )
        .map_err(db)?
        .as_ref()
        .map(scene_from_row))
}

fn log_activity(
    conn: &mut impl GenericClient,
    kind: Activity,
    store: &str,
    device: &str,
    scene: Option<&str>,
    dedupe: Option<&str>,
    now: i64,
) -> Result<bool, StoreError> {
    let n = conn
        .execute(
            "INSERT INTO activity (at, kind, store, device, scene, dedupe) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            &[&now, &kind.as_str(), &store, &device, &scene, &dedupe],
        )
        .map_err(db)?;
    Ok(n == 1)
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Store for Db {
    fn ping(&self) -> Result<(), StoreError> {
        self.conn()?.execute("SELECT 1", &[]).map_err(db)?;
        Ok(())
    }

    fn add_device(
        &self,
        id: &str,
        store: &str,
        token_sha256: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let n = self
            .conn()?
            .execute(
                "INSERT INTO devices (id, store, token_sha256, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                &[&id, &store, &token_sha256, &now],
            )
            .map_err(db)?;
        if n == 0 {
            return Err(StoreError::Exists(format!("device {id}")));
        }
        Ok(())
    }

    fn revoke_device(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let n = self
            .conn()?
            .execute(
                "UPDATE devices SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                &[&id, &now],
            )
            .map_err(db)?;
        Ok(n == 1)
    }

    fn list_devices(&self) -> Result<Vec<Device>, StoreError> {
        Ok(self
            .conn()?
            .query(
                "SELECT id, store, created_at, revoked_at FROM devices ORDER BY id COLLATE \"C\"",
                &[],
            )
            .map_err(db)?
            .iter()
            .map(device_from_row)
            .collect())
    }

    fn device_by_token(&self, token_sha256: &str) -> Result<Option<Device>, StoreError> {
        Ok(self
            .conn()?
            .query_opt(
                "SELECT id, store, created_at, revoked_at FROM devices WHERE token_sha256 = $1 AND revoked_at IS NULL",
                &[&token_sha256],
            )
            .map_err(db)?
            .as_ref()
            .map(device_from_row))
    }

    fn scene(&self, scene: &str) -> Result<Option<SceneRecord>, StoreError> {
        get_scene(&mut *self.conn()?, scene, false)
    }

    fn record_minted_scene(
        &self,
        scene: &str,
        device: &Device,
        code: &MintedScene,
        gallery_key: &str,
        now: i64,
    ) -> Result<MintOutcome, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(db)?;
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO scenes ({SCENE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (scene) DO NOTHING"
                ),
                &[
                    &scene,
                    &device.id,
                    &device.store,
                    &code.url,
                    &code.ticket,
                    &code.expires_at,
                    &code.minted_at,
                    &gallery_key,
                    &now,
                ],
            )
            .map_err(db)?
            == 1;
        if !inserted {
            match get_scene(&mut tx, scene, true)? {
                Some(existing) if existing.device != device.id => {
                    return Ok(MintOutcome::Forbidden);
                }
                Some(existing) if existing.code.is_some() => {
                    return Ok(MintOutcome::Existing(existing));
                }
                Some(_) => {
                    tx.execute(
                        "UPDATE scenes SET url = $2, ticket = $3, expires_at = $4, minted_at = $5 WHERE scene = $1",
                        &[&scene, &code.url, &code.ticket, &code.expires_at, &code.minted_at],
                    )
                    .map_err(db)?;
                }
                None => return Err(StoreError::Db("scene vanished while minting".into())),
            }
        }
        log_activity(
            &mut tx,
            Activity::CodeMinted,
            &device.store,
            &device.id,
            Some(scene),
            None,
            now,
        )?;
        let record = get_scene(&mut tx, scene, false)?
            .ok_or_else(|| StoreError::Db("scene vanished inside its transaction".into()))?;
        tx.commit().map_err(db)?;
        Ok(MintOutcome::Created(record))
    }

    fn claim_scene(
        &self,
        scene: &str,
        device: &Device,
        gallery_key: &str,
        now: i64,
    ) -> Result<Claim, StoreError> {
        let mut conn = self.conn()?;
        conn.execute(
            "INSERT INTO scenes (scene, device, store, gallery_key, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scene) DO NOTHING",
            &[&scene, &device.id, &device.store, &gallery_key, &now],
        )
        .map_err(db)?;
        match get_scene(&mut *conn, scene, false)? {
            Some(record) if record.device == device.id => Ok(Claim::Owned(record)),
            Some(_) => Ok(Claim::Forbidden),
            None => Err(StoreError::Db("claimed scene not found".into())),
        }
    }

    fn insert_photo(&self, photo: &PhotoMeta, store: &str) -> Result<PhotoInsert, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(db)?;
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO photos ({PHOTO_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL) ON CONFLICT (scene, photo) DO NOTHING"
                ),
                &[
                    &photo.scene,
                    &photo.photo,
                    &photo.device,
                    &photo.session_id,
                    &photo.taken_at_ms,
                    &photo.trigger,
                    &photo.sha256,
                    &photo.bytes,
                    &photo.blob_key,
                    &photo.created_at,
                ],
            )
            .map_err(db)?
            == 1;
        if !inserted {
            let sha: String = tx
                .query_one(
                    "SELECT sha256 FROM photos WHERE scene = $1 AND photo = $2",
                    &[&photo.scene, &photo.photo],
                )
                .map_err(db)?
                .get(0);
            return Ok(if sha == photo.sha256 {
                PhotoInsert::SameBytes
            } else {
                PhotoInsert::Conflict
            });
        }
        let new_session = tx
            .execute(
                "INSERT INTO sessions (device, session_id, scene, first_seen) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&photo.device, &photo.session_id, &photo.scene, &photo.created_at],
            )
            .map_err(db)?
            == 1;
        if new_session {
            log_activity(
                &mut tx,
                Activity::Session,
                store,
                &photo.device,
                Some(&photo.scene),
                None,
                photo.created_at,
            )?;
        }
        tx.commit().map_err(db)?;
        Ok(PhotoInsert::Created)
    }

    fn photo(&self, scene: &str, photo: &str) -> Result<Option<PhotoMeta>, StoreError> {
        Ok(self
            .conn()?
            .query_opt(
                &format!("SELECT {PHOTO_COLUMNS} FROM photos WHERE scene = $1 AND photo = $2"),
                &[&scene, &photo],
            )
            .map_err(db)?
            .as_ref()
            .map(photo_from_row))
    }

    fn photos_of_scene(&self, scene: &str) -> Result<Vec<PhotoMeta>, StoreError> {
        Ok(self
            .conn()?
            .query(
                &format!(
                    "SELECT {PHOTO_COLUMNS} FROM photos WHERE scene = $1 ORDER BY taken_at_ms, photo COLLATE \"C\""
                ),
                &[&scene],
            )
            .map_err(db)?
            .iter()
            .map(photo_from_row)
            .collect())
    }

    fn delete_photo(&self, scene: &str, photo: &str) -> Result<Option<PhotoMeta>, StoreError> {
        Ok(self
            .conn()?
            .query_opt(
                &format!(
                    "DELETE FROM photos WHERE scene = $1 AND photo = $2 RETURNING {PHOTO_COLUMNS}"
                ),
                &[&scene, &photo],
            )
            .map_err(db)?
            .as_ref()
            .map(photo_from_row))
    }

    fn photos_to_expire(&self, cutoff: i64, limit: usize) -> Result<Vec<PhotoMeta>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self
            .conn()?
            .query(
                &format!(
                    "SELECT {PHOTO_COLUMNS} FROM photos WHERE expired_at IS NULL AND created_at < $1 ORDER BY created_at LIMIT $2"
                ),
                &[&cutoff, &limit],
            )
            .map_err(db)?
            .iter()
            .map(photo_from_row)
            .collect())
    }

    fn mark_expired(&self, scene: &str, photo: &str, now: i64) -> Result<(), StoreError> {
        self.conn()?
            .execute(
                "UPDATE photos SET expired_at = $3 WHERE scene = $1 AND photo = $2 AND expired_at IS NULL",
                &[&scene, &photo, &now],
            )
            .map_err(db)?;
        Ok(())
    }

    fn wechat_reply(&self, dedupe: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()?
            .query_opt(
                "SELECT reply FROM wechat_events WHERE dedupe = $1",
                &[&dedupe],
            )
            .map_err(db)?
            .map(|r| r.get(0)))
    }

    fn record_wechat_event(&self, event: &NewWechatEvent, now: i64) -> Result<String, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(db)?;
        let scene = event.bind_scene.as_ref().map(|s| s.scene.as_str());
        let inserted = tx
            .execute(
                "INSERT INTO wechat_events (dedupe, openid, event, event_key, scene, reply, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (dedupe) DO NOTHING",
                &[
                    &event.dedupe,
                    &event.openid,
                    &event.event,
                    &event.event_key,
                    &scene,
                    &event.reply,
                    &now,
                ],
            )
            .map_err(db)?
            == 1;
        if !inserted {
            // An identical push got here first, maybe on another instance; answer as it was.
            let reply: String = tx
                .query_one(
                    "SELECT reply FROM wechat_events WHERE dedupe = $1",
                    &[&event.dedupe],
                )
                .map_err(db)?
                .get(0);
            return Ok(reply);
        }
        if let Some(scene) = &event.bind_scene {
            tx.execute(
                "INSERT INTO bindings (scene, openid, event, bound_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&scene.scene, &event.openid, &event.event, &now],
            )
            .map_err(db)?;
            if let Some(kind) = event.activity {
                log_activity(
                    &mut tx,
                    kind,
                    &scene.store,
                    &scene.device,
                    Some(&scene.scene),
                    Some(&format!("wechat:{}", event.dedupe)),
                    now,
                )?;
            }
        }
        tx.commit().map_err(db)?;
        Ok(event.reply.clone())
    }

    fn bindings(&self, scene: &str) -> Result<Vec<Binding>, StoreError> {
        Ok(self
            .conn()?
            .query(
                "SELECT scene, openid, event, bound_at FROM bindings WHERE scene = $1 ORDER BY bound_at, openid COLLATE \"C\"",
                &[&scene],
            )
            .map_err(db)?
            .iter()
            .map(|r| Binding {
                scene: r.get(0),
                openid: r.get(1),
                event: r.get(2),
                bound_at: r.get(3),
            })
            .collect())
    }

    fn wechat_event_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn()?
            .query_one("SELECT COUNT(*) FROM wechat_events", &[])
            .map_err(db)?
            .get(0);
        Ok(count(n))
    }

    fn record_activity(
        &self,
        kind: Activity,
        scene: &SceneRecord,
        dedupe: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        log_activity(
            &mut *self.conn()?,
            kind,
            &scene.store,
            &scene.device,
            Some(&scene.scene),
            dedupe,
            now,
        )
    }

    fn stats(
        &self,
        utc_offset_s: i64,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<StatsRow>, StoreError> {
        let rows = self
            .conn()?
            .query(
                "SELECT store, device, day, kind, COUNT(*) FROM (
                    SELECT store, device, kind,
                           to_char(to_timestamp((at + $1::BIGINT)::DOUBLE PRECISION) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day
                    FROM activity
                 ) AS a
                 WHERE ($2::TEXT IS NULL OR day >= $2) AND ($3::TEXT IS NULL OR day <= $3)
                 GROUP BY store, device, day, kind
                 ORDER BY day COLLATE \"C\", store COLLATE \"C\", device COLLATE \"C\"",
                &[&utc_offset_s, &from, &to],
            )
            .map_err(db)?;
        Ok(fold_stats(rows.iter().map(|row| {
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
        })))
    }

    fn totals(&self) -> Result<Totals, StoreError> {
        let mut conn = self.conn()?;
        let activity = activity_totals(
            conn.query("SELECT kind, COUNT(*) FROM activity GROUP BY kind", &[])
                .map_err(db)?
                .iter()
                .map(|row| (row.get(0), row.get(1))),
        );
        let row = conn
            .query_one(
                "SELECT
                    (SELECT COUNT(*) FROM photos WHERE expired_at IS NULL),
                    (SELECT COALESCE(SUM(bytes), 0)::BIGINT FROM photos WHERE expired_at IS NULL),
                    (SELECT COUNT(*) FROM devices WHERE revoked_at IS NULL),
                    (SELECT COUNT(*) FROM bindings),
                    (SELECT COUNT(*) FROM wechat_events)",
                &[],
            )
            .map_err(db)?;
        Ok(Totals {
            activity,
            photos_stored: count(row.get(0)),
            photo_bytes_stored: count(row.get(1)),
            active_devices: count(row.get(2)),
            bindings: count(row.get(3)),
            wechat_events: count(row.get(4)),
        })
    }

    fn referenced_blobs(&self, keys: &[String]) -> Result<HashSet<String>, StoreError> {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let params: [&(dyn ToSql + Sync); 1] = [&keys];
        Ok(self
            .conn()?
            .query(
                "SELECT DISTINCT blob_key FROM photos WHERE expired_at IS NULL AND blob_key = ANY($1)",
                &params,
            )
            .map_err(db)?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn shared_token(&self, name: &str) -> Result<Option<SharedToken>, StoreError> {
        Ok(self
            .conn()?
            .query_opt(
                "SELECT token, expires_at, fetched_at, fetched_by FROM access_tokens WHERE name = $1 AND token IS NOT NULL",
                &[&name],
            )
            .map_err(db)?
            .map(|r| SharedToken {
                token: r.get(0),
                expires_at: r.get(1),
                fetched_at: r.get(2),
                holder: r.get(3),
            }))
    }

    fn acquire_token_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn()?
            .execute(
                "INSERT INTO access_tokens (name, lease_holder, lease_until) VALUES ($1, $2, $4)
                 ON CONFLICT (name) DO UPDATE SET lease_holder = excluded.lease_holder, lease_until = excluded.lease_until
                 WHERE access_tokens.lease_holder IS NULL OR access_tokens.lease_until <= $3 OR access_tokens.lease_holder = $2",
                &[&name, &holder, &now, &until],
            )
            .map_err(db)?;
        Ok(n == 1)
    }

    fn publish_token(
        &self,
        name: &str,
        holder: &str,
        token: &SharedToken,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn()?
            .execute(
                "UPDATE access_tokens SET token = $3, expires_at = $4, fetched_at = $5, fetched_by = $2,
                     lease_holder = NULL, lease_until = NULL
                 WHERE name = $1 AND lease_holder = $2",
                &[&name, &holder, &token.token, &token.expires_at, &token.fetched_at],
            )
            .map_err(db)?;
        Ok(n == 1)
    }

    fn release_token_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.conn()?
            .execute(
                "UPDATE access_tokens SET lease_holder = NULL, lease_until = NULL WHERE name = $1 AND lease_holder = $2",
                &[&name, &holder],
            )
            .map_err(db)?;
        Ok(())
    }
}

/// Each operation of [`Db`], run where the driver may block (see [`off_runtime`]).
macro_rules! off_runtime_store {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        impl Store for PostgresStore {
            $(
                fn $name(&self $(, $arg: $ty)*) -> Result<$ret, StoreError> {
                    let inner = self.db()?;
                    off_runtime(|| inner.$name($($arg),*))
                }
            )*
        }
    };
}

off_runtime_store! {
    fn ping(&self) -> ();
    fn add_device(&self, id: &str, store: &str, token_sha256: &str, now: i64) -> ();
    fn revoke_device(&self, id: &str, now: i64) -> bool;
    fn list_devices(&self) -> Vec<Device>;
    fn device_by_token(&self, token_sha256: &str) -> Option<Device>;
    fn scene(&self, scene: &str) -> Option<SceneRecord>;
    fn record_minted_scene(&self, scene: &str, device: &Device, code: &MintedScene, gallery_key: &str, now: i64) -> MintOutcome;
    fn claim_scene(&self, scene: &str, device: &Device, gallery_key: &str, now: i64) -> Claim;
    fn insert_photo(&self, photo: &PhotoMeta, store: &str) -> PhotoInsert;
    fn photo(&self, scene: &str, photo: &str) -> Option<PhotoMeta>;
    fn photos_of_scene(&self, scene: &str) -> Vec<PhotoMeta>;
    fn delete_photo(&self, scene: &str, photo: &str) -> Option<PhotoMeta>;
    fn photos_to_expire(&self, cutoff: i64, limit: usize) -> Vec<PhotoMeta>;
    fn mark_expired(&self, scene: &str, photo: &str, now: i64) -> ();
    fn wechat_reply(&self, dedupe: &str) -> Option<String>;
    fn record_wechat_event(&self, event: &NewWechatEvent, now: i64) -> String;
    fn bindings(&self, scene: &str) -> Vec<Binding>;
    fn wechat_event_count(&self) -> u64;
    fn record_activity(&self, kind: Activity, scene: &SceneRecord, dedupe: Option<&str>, now: i64) -> bool;
    fn stats(&self, utc_offset_s: i64, from: Option<&str>, to: Option<&str>) -> Vec<StatsRow>;
    fn totals(&self) -> Totals;
    fn referenced_blobs(&self, keys: &[String]) -> HashSet<String>;
    fn shared_token(&self, name: &str) -> Option<SharedToken>;
    fn acquire_token_lease(&self, name: &str, holder: &str, now: i64, until: i64) -> bool;
    fn publish_token(&self, name: &str, holder: &str, token: &SharedToken) -> bool;
    fn release_token_lease(&self, name: &str, holder: &str) -> ();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_store_and_lose_their_password_in_messages() {
        assert!(is_postgres_url("postgres://hub@db:5432/hub"));
        assert!(is_postgres_url("postgresql://hub@db/hub"));
        assert!(!is_postgres_url("/var/lib/mirrorsight-hub/hub.sqlite3"));
        assert_eq!(
            redact_url("postgres://hub:s3cret@db:5432/hub"),
            "postgres://hub@db:5432/hub"
        );
        assert_eq!(redact_url("postgres://db/hub"), "postgres://db/hub");
    }

    #[test]
    fn an_unreachable_server_is_one_clear_error() {
        let err = PostgresStore::open(&PostgresSettings {
            url: "postgres://hub:pw@127.0.0.1:1/hub".into(),
            password: None,
            pool_size: 1,
            connect_timeout: Duration::from_millis(500),
            ca_file: None,
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("cannot connect to PostgreSQL at postgres://hub@127.0.0.1:1/hub"),
            "{err}"
        );
        assert!(!err.contains("pw"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}
