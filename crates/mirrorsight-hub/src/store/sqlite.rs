//! The SQLite [`Driver`]: an embedded database file (WAL, `synchronous=FULL`: a binding
//! acknowledged to WeChat survives a power cut). The store logic is [`SqlStore`]'s.

use std::borrow::Cow;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;
use super::sql::SqlStore;
use super::sql::driver::{Cell, Conn, Dialect, Driver, Row, Value};
use super::sql::schema;

/// The SQLite-backed [`super::Store`].
pub type SqliteStore = SqlStore<Sqlite>;

/// One connection behind a mutex: SQLite serialises writers anyway, and the hub's load (a few
/// mirrors, a few scans a minute) is far below what that allows. Other processes (the CLI next
/// to a running hub) wait for the lock up to the busy timeout.
pub struct Sqlite {
    conn: Mutex<Connection>,
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

impl SqlStore<Sqlite> {
    /// Opens (creating it and its directory if needed) and migrates the database file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Db(format!("{}: {e}", parent.display())))?;
        }
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Db(format!("{}: {e}", path.display())))?;
        Self::init(conn)
    }

    /// A private in-memory database, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(db)?)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(Duration::from_secs(5)).map_err(db)?;
        // journal_mode answers with a row, so it cannot go through execute_batch's fast path.
        let _mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(db)?;
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
            .map_err(db)?;
        migrate(&mut conn)?;
        Ok(Self::new(Sqlite {
            conn: Mutex::new(conn),
        }))
    }
}

/// Brings the schema to this hub's version; a database a newer hub migrated is refused.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let has_history: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [schema::HISTORY_TABLE],
            |r| r.get(0),
        )
        .map_err(db)?;
    let newest: Option<i64> = if has_history {
        conn.query_row(
            &format!("SELECT MAX(version) FROM {}", schema::HISTORY_TABLE),
            [],
            |r| r.get(0),
        )
        .map_err(db)?
    } else {
        None
    };
    schema::bring_up_to_date(conn, Dialect::Sqlite, newest)
}

impl Sqlite {
    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection itself intact (SQLite rolls back
        // an open transaction when it is dropped), so keep serving.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Driver for Sqlite {
    const DIALECT: Dialect = Dialect::Sqlite;

    fn run<T: Send>(
        &self,
        job: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        job(&mut SqliteConn(&self.lock()))
    }

    fn transaction<T: Send>(
        &self,
        job: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        // IMMEDIATE: the write lock from the start, so a transaction that reads before it
        // writes never fails to upgrade when another process wrote meanwhile.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let out = job(&mut SqliteConn(&tx))?;
        tx.commit().map_err(db)?;
        Ok(out)
    }
}

/// A connection (or an open transaction on it) speaking the store logic's SQL.
struct SqliteConn<'a>(&'a Connection);

/// `$n` (the logic's numbered parameters, PostgreSQL's form) as `?n` (SQLite's).
fn sqlite_params(sql: &str) -> Cow<'_, str> {
    if !sql.contains('$') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Null => ValueRef::Null,
            Value::Int(n) => ValueRef::Integer(n),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

fn cell(value: ValueRef<'_>, column: usize) -> Result<Cell, StoreError> {
    match value {
        ValueRef::Null => Ok(Cell::Null),
        ValueRef::Integer(n) => Ok(Cell::Int(n)),
        ValueRef::Text(bytes) => String::from_utf8(bytes.to_vec())
            .map(Cell::Text)
            .map_err(|_| StoreError::Db(format!("column {column}: text is not UTF-8"))),
        other => Err(StoreError::Db(format!(
            "column {column}: unexpected {:?} value",
            other.data_type()
        ))),
    }
}

impl Conn for SqliteConn<'_> {
    fn execute(&mut self, sql: &str, args: &[Value<'_>]) -> Result<u64, StoreError> {
        let mut stmt = self.0.prepare_cached(&sqlite_params(sql)).map_err(db)?;
        let n = stmt.execute(rusqlite::params_from_iter(args)).map_err(db)?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, args: &[Value<'_>]) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self.0.prepare_cached(&sqlite_params(sql)).map_err(db)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(args)).map_err(db)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(db)? {
            let cells = (0..columns)
                .map(|i| cell(row.get_ref(i).map_err(db)?, i))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(Row(cells));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_parameters_become_sqlites() {
        assert_eq!(
            sqlite_params("SELECT $1, $12 WHERE a = $2 AND b = '$x'"),
            "SELECT ?1, ?12 WHERE a = ?2 AND b = '$x'"
        );
        assert!(matches!(sqlite_params("SELECT 1"), Cow::Borrowed(_)));
    }

    /// A database a hub before the counters filled: migrating counts what it holds, once,
    /// and from then on a scrape reads the counters, not the tables.
    #[test]
    fn counters_are_seeded_from_an_older_database_and_then_read_alone() {
        use crate::store::{Activity, Store};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.sqlite3");
        let mut conn = Connection::open(&path).unwrap();
        let v1 = schema::migrations(Dialect::Sqlite).unwrap();
        refinery::Runner::new(&v1[..1]).run(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO devices VALUES ('m1', 'shop-1', 'd1', 1, NULL), ('m2', 'shop-1', 'd2', 1, 2);
             INSERT INTO photos VALUES ('sc', 'p1', 'm1', 's', 0, 'thumbs_up', 'x', 100, 'k1', 1, NULL),
                                       ('sc', 'p2', 'm1', 's', 0, 'thumbs_up', 'y', 50, 'k2', 1, NULL),
                                       ('sc', 'p3', 'm1', 's', 0, 'thumbs_up', 'z', 70, 'k3', 1, 5);
             INSERT INTO bindings VALUES ('sc', 'o1', 'SCAN', 1);
             INSERT INTO wechat_events VALUES ('e1', 'o1', 'SCAN', 'sc', 'sc', '<xml/>', 1);
             INSERT INTO activity (at, kind, store, device) VALUES (1, 'session', 'shop-1', 'm1'),
                 (1, 'code_minted', 'shop-1', 'm1'), (2, 'code_minted', 'shop-1', 'm1');",
        )
        .unwrap();
        drop(conn);
        let store = SqliteStore::open(&path).unwrap();
        let totals = store.totals().unwrap();
        assert_eq!(
            (
                totals.photos_stored,
                totals.photo_bytes_stored,
                totals.active_devices,
                totals.bindings,
                totals.wechat_events
            ),
            (2, 150, 1, 1, 1)
        );
        assert!(totals.activity.contains(&(Activity::CodeMinted, 2)));
        assert!(totals.activity.contains(&(Activity::Session, 1)));
        drop(store);
        // Reopening does not count again; and what a scrape shows is the counters' rows.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("UPDATE counters SET value = 123456 WHERE name = 'photos_stored';")
            .unwrap();
        drop(conn);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.totals().unwrap().photos_stored, 123_456);
    }

    #[test]
    fn a_database_of_the_unversioned_schema_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.sqlite3");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE devices (id TEXT PRIMARY KEY, store TEXT NOT NULL, token_sha256 TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL, revoked_at INTEGER);
             INSERT INTO devices VALUES ('mirror-1', 'shop-1', 'digest', 1, NULL);
             PRAGMA user_version = 2;",
        )
        .unwrap();
        drop(conn);
        use crate::store::Store;
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.list_devices().unwrap()[0].id, "mirror-1");
        drop(store);
        // What a newer hub's migration leaves: refused, not run on.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "INSERT INTO refinery_schema_history VALUES (999, 'future', '2030-01-01T00:00:00Z', '0')",
        )
        .unwrap();
        drop(conn);
        let err = SqliteStore::open(&path).unwrap_err().to_string();
        assert!(err.contains("newer than this hub"), "{err}");
    }
}
