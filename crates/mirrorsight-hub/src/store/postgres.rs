//! The PostgreSQL [`Driver`], for a chain whose hub instances share one database: a pool of
//! connections, TLS with the server's certificate checked, migrations under an advisory lock.
//! The store logic is [`SqlStore`]'s.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use postgres::GenericClient;
use postgres::config::SslMode;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use r2d2_postgres::PostgresConnectionManager;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::StoreError;
use super::sql::SqlStore;
use super::sql::driver::{Cell, Conn, Dialect, Driver, Row, Value};
use super::sql::schema;

/// Arbitrary constant: instances starting together take this advisory lock so only one of
/// them migrates the schema.
const MIGRATION_LOCK: i64 = 0x6d69_7272_6f72_6875; // "mirrorhu"

type Pool = r2d2::Pool<PostgresConnectionManager<MakeRustlsConnect>>;
type Pooled = r2d2::PooledConnection<PostgresConnectionManager<MakeRustlsConnect>>;

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
    /// PEM file of the CA that signed the server's certificate (a chain's private CA). Set, TLS
    /// is required and the certificate must be signed by it and name the host connected to
    /// (libpq's `sslmode=verify-full`). Unset, the URL's `sslmode` decides (`prefer` by
    /// default, `require` or `verify-full` to refuse a plaintext server) and the system's
    /// roots are trusted; the host name is checked whenever TLS is used.
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

/// The PostgreSQL-backed [`super::Store`].
pub type PostgresStore = SqlStore<Postgres>;

/// A pool of connections shared by the blocking workers.
///
/// The driver blocks on a private runtime, which panics on a thread that drives async tasks.
/// The hub calls stores from blocking threads anyway, but a store must not turn a slip into a
/// crash: called on an async thread, an operation runs on a scoped thread of its own, and the
/// connections are closed on one when the store is dropped.
pub struct Postgres {
    /// Always `Some` until dropped.
    pool: Option<Pool>,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let closer = std::thread::Builder::new()
                .name("pg-close".into())
                .spawn(move || drop(pool));
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

impl SqlStore<Postgres> {
    /// Connects, migrates the schema if needed, and refuses a database a newer hub migrated.
    pub fn open(settings: &PostgresSettings) -> Result<Self, StoreError> {
        let config = driver_config(settings)?;
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
        let driver = Postgres { pool: Some(pool) };
        driver.migrate()?;
        let store = Self::new(driver);
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
        let row = self.driver.run(|c| {
            c.query_opt(
                "SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl",
                &[],
            )
        })?;
        row.map(|r| r.text(0)).transpose()
    }
}

impl Postgres {
    fn conn(&self) -> Result<Pooled, StoreError> {
        self.pool
            .as_ref()
            .ok_or_else(|| StoreError::Db("store closed".into()))?
            .get()
            .map_err(pool_error)
    }

    /// Brings the schema to this hub's version, one instance at a time. A database already at
    /// it gets no DDL at all, so the hub's role there may be one that can only read and write
    /// rows; a database a newer hub migrated is refused.
    fn migrate(&self) -> Result<(), StoreError> {
        off_runtime(|| {
            let mut conn = self.conn()?;
            conn.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
                .map_err(db)?;
            let migrated = migrate_holding_lock(&mut conn);
            let unlocked = conn
                .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
                .map_err(db);
            migrated.and(unlocked.map(|_| ()))
        })
    }
}

fn migrate_holding_lock(conn: &mut postgres::Client) -> Result<(), StoreError> {
    let has_history: bool = conn
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&schema::HISTORY_TABLE],
        )
        .map_err(db)?
        .get(0);
    let newest: Option<i64> = if has_history {
        conn.query_one(
            &format!("SELECT MAX(version)::BIGINT FROM {}", schema::HISTORY_TABLE),
            &[],
        )
        .map_err(db)?
        .get(0)
    } else {
        None
    };
    schema::bring_up_to_date(conn, Dialect::Postgres, newest)
}

impl Driver for Postgres {
    const DIALECT: Dialect = Dialect::Postgres;

    fn run<T: Send>(
        &self,
        job: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        off_runtime(|| job(&mut PgConn(&mut *self.conn()?)))
    }

    fn transaction<T: Send>(
        &self,
        job: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        off_runtime(|| {
            let mut conn = self.conn()?;
            let mut tx = conn.transaction().map_err(db)?;
            let out = job(&mut PgConn(&mut tx))?;
            tx.commit().map_err(db)?;
            Ok(out)
        })
    }
}

/// A connection or transaction speaking the store logic's SQL (PostgreSQL's own already).
struct PgConn<'a, C: GenericClient>(&'a mut C);

impl ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(n) if *ty == Type::INT4 => i32::try_from(n)?.to_sql(ty, out),
            Value::Int(n) => n.to_sql(ty, out),
            Value::Text(s) => s.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty) || <i32 as ToSql>::accepts(ty) || <&str as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

fn cell(row: &postgres::Row, column: usize) -> Result<Cell, StoreError> {
    let ty = row.columns()[column].type_();
    let value = if *ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(column)
            .map(|v| v.map(Cell::Int))
    } else if *ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(column)
            .map(|v| v.map(|n| Cell::Int(n.into())))
    } else if *ty == Type::INT2 {
        row.try_get::<_, Option<i16>>(column)
            .map(|v| v.map(|n| Cell::Int(n.into())))
    } else {
        row.try_get::<_, Option<String>>(column)
            .map(|v| v.map(Cell::Text))
    };
    value
        .map(|v| v.unwrap_or(Cell::Null))
        .map_err(|e| StoreError::Db(format!("column {column} ({ty}): {e}")))
}

impl<C: GenericClient> Conn for PgConn<'_, C> {
    fn execute(&mut self, sql: &str, args: &[Value<'_>]) -> Result<u64, StoreError> {
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as _).collect();
        self.0.execute(sql, &params).map_err(db)
    }

    fn query(&mut self, sql: &str, args: &[Value<'_>]) -> Result<Vec<Row>, StoreError> {
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as _).collect();
        self.0
            .query(sql, &params)
            .map_err(db)?
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| cell(row, i))
                    .collect::<Result<_, _>>()
                    .map(Row)
            })
            .collect()
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

/// The driver's connection settings: the URL's, with TLS required when `ca_file` is set, the
/// password from the secrets, and timeouts.
fn driver_config(settings: &PostgresSettings) -> Result<postgres::Config, StoreError> {
    let mut config: postgres::Config =
        driver_sslmode(&settings.url)
            .parse()
            .map_err(|e: postgres::Error| {
                StoreError::Db(format!(
                    "database URL {:?} is not a PostgreSQL URL: {e}",
                    redact_url(&settings.url)
                ))
            })?;
    if settings.ca_file.is_some() {
        if config.get_ssl_mode() == SslMode::Disable {
            return Err(StoreError::Db(
                "`postgres.ca_file` is set, so TLS is required, but `postgres.url` says sslmode=disable; drop one of them".into(),
            ));
        }
        // A private CA is only ever given to be checked against: never fall back to
        // plaintext, whatever the URL says.
        config.ssl_mode(SslMode::Require);
    }
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
    Ok(config)
}

/// The URL with libpq's `sslmode=verify-full` and `verify-ca` as the driver's `require`: the
/// driver knows only disable, prefer and require, and with rustls every TLS connection checks
/// the certificate's chain and host name anyway (`verify-ca` gets the stricter check).
fn driver_sslmode(url: &str) -> String {
    url.replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require")
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
    fn libpq_sslmodes_map_onto_the_drivers() {
        for (url, mode) in [
            ("postgres://db/hub", SslMode::Prefer),
            ("postgres://db/hub?sslmode=verify-full", SslMode::Require),
            ("postgres://db/hub?sslmode=verify-ca", SslMode::Require),
            ("postgres://db/hub?sslmode=disable", SslMode::Disable),
        ] {
            let config: postgres::Config = driver_sslmode(url).parse().unwrap();
            assert_eq!(config.get_ssl_mode(), mode, "{url}");
        }
    }

    #[test]
    fn a_ca_file_means_tls_is_required() {
        let settings = |url: &str, ca: Option<&str>| PostgresSettings {
            url: url.into(),
            password: None,
            pool_size: 1,
            connect_timeout: Duration::from_secs(1),
            ca_file: ca.map(PathBuf::from),
        };
        let mode = |url: &str, ca: Option<&str>| {
            driver_config(&settings(url, ca))
                .map(|c| c.get_ssl_mode())
                .map_err(|e| e.to_string())
        };
        assert_eq!(mode("postgres://db/hub", None), Ok(SslMode::Prefer));
        assert_eq!(
            mode("postgres://db/hub", Some("ca.pem")),
            Ok(SslMode::Require)
        );
        assert_eq!(
            mode("postgres://db/hub?sslmode=prefer", Some("ca.pem")),
            Ok(SslMode::Require)
        );
        let err = mode("postgres://db/hub?sslmode=disable", Some("ca.pem")).unwrap_err();
        assert!(
            err.contains("postgres.ca_file") && err.contains("sslmode=disable"),
            "{err}"
        );
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
