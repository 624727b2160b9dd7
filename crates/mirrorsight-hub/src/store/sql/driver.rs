//! What the store logic asks of a database driver: run statements on a connection, inside a
//! transaction or not, with a handful of value types. A driver (SQLite, PostgreSQL) maps these
//! onto its crate; the SQL it is given is written once, in the [`Dialect`]-neutral form below.
//!
//! The SQL the logic writes:
//! - parameters are `$1`, `$2`, …, as PostgreSQL numbers them (SQLite's driver renames them
//!   `?1`, `?2`, …, its own numbered form, so a parameter may appear twice or out of order);
//! - everything else is the common subset of both: `ON CONFLICT … DO NOTHING/UPDATE`,
//!   `RETURNING`, `CAST(… AS TEXT)`, scalar subqueries;
//! - the few things that differ come from [`Dialect`] (bytewise ordering, row locks, calendar
//!   days, column types in the schema).

use super::super::StoreError;

/// A statement parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Text(&'a str),
}

impl From<i64> for Value<'_> {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Self {
        Value::Text(s)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(s: &'a String) -> Self {
        Value::Text(s)
    }
}

impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// `args![a, b, …]`: the parameters `$1`, `$2`, … of one statement.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$($crate::store::sql::driver::Value::from($value)),*][..]
    };
}
pub(crate) use args;

/// One column of a result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
}

/// One result row, read by column position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub Vec<Cell>);

fn wrong_type(column: usize, want: &str, got: &Cell) -> StoreError {
    StoreError::Db(format!("column {column}: expected {want}, found {got:?}"))
}

impl Row {
    fn cell(&self, column: usize) -> Result<&Cell, StoreError> {
        self.0.get(column).ok_or_else(|| {
            StoreError::Db(format!(
                "column {column} missing from a row of {}",
                self.0.len()
            ))
        })
    }

    pub fn text(&self, column: usize) -> Result<String, StoreError> {
        match self.cell(column)? {
            Cell::Text(s) => Ok(s.clone()),
            other => Err(wrong_type(column, "text", other)),
        }
    }

    pub fn opt_text(&self, column: usize) -> Result<Option<String>, StoreError> {
        match self.cell(column)? {
            Cell::Null => Ok(None),
            _ => self.text(column).map(Some),
        }
    }

    pub fn int(&self, column: usize) -> Result<i64, StoreError> {
        match self.cell(column)? {
            Cell::Int(n) => Ok(*n),
            other => Err(wrong_type(column, "an integer", other)),
        }
    }

    pub fn opt_int(&self, column: usize) -> Result<Option<i64>, StoreError> {
        match self.cell(column)? {
            Cell::Null => Ok(None),
            _ => self.int(column).map(Some),
        }
    }

    /// A count: negative (impossible) reads as 0.
    pub fn count(&self, column: usize) -> Result<u64, StoreError> {
        Ok(u64::try_from(self.int(column)?).unwrap_or(0))
    }
}

/// A connection, or a transaction on one.
pub trait Conn {
    /// Runs a statement that returns no rows; the number of rows it changed.
    fn execute(&mut self, sql: &str, args: &[Value<'_>]) -> Result<u64, StoreError>;
    /// Runs a statement that returns rows (`SELECT`, or a write with `RETURNING`).
    fn query(&mut self, sql: &str, args: &[Value<'_>]) -> Result<Vec<Row>, StoreError>;
}

impl dyn Conn + '_ {
    /// The first row, if any.
    pub fn query_opt(&mut self, sql: &str, args: &[Value<'_>]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// Exactly the first row; none is an error.
    pub fn query_one(&mut self, sql: &str, args: &[Value<'_>]) -> Result<Row, StoreError> {
        self.query_opt(sql, args)?
            .ok_or_else(|| StoreError::Db("a query that always answers returned no row".into()))
    }
}

/// What differs between the SQL of the backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// Appended to an `ORDER BY` text column: byte order, as SQLite's default collation sorts
    /// (PostgreSQL's default follows the locale, so lists would differ between backends).
    pub fn bytewise(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " COLLATE \"C\"",
        }
    }

    /// Appended to a `SELECT` inside a transaction that will update what it read. SQLite's
    /// transactions already hold the database's write lock (the driver begins them
    /// `IMMEDIATE`), so it needs nothing.
    pub fn lock_rows(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// `YYYY-MM-DD` of the UTC calendar day of `unix_seconds` (an SQL integer expression).
    pub fn utc_day(self, unix_seconds: &str) -> String {
        match self {
            Dialect::Sqlite => format!("strftime('%Y-%m-%d', {unix_seconds}, 'unixepoch')"),
            Dialect::Postgres => format!(
                "to_char(to_timestamp(({unix_seconds})::DOUBLE PRECISION) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
            ),
        }
    }

    /// The column type of a table's own increasing row id.
    pub fn serial_primary_key(self) -> &'static str {
        match self {
            // The rowid alias: SQLite picks the next id itself.
            Dialect::Sqlite => "INTEGER PRIMARY KEY",
            Dialect::Postgres => "BIGSERIAL PRIMARY KEY",
        }
    }
}

/// A database the store logic runs on.
pub trait Driver: Send + Sync + 'static {
    const DIALECT: Dialect;

    /// Runs `job` on one connection, each statement committed on its own.
    fn run<T: Send>(
        &self,
        job: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError>;

    /// Runs `job` in one transaction: committed when it returns `Ok`, rolled back otherwise.
    fn transaction<T: Send>(
        &self,
        job: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError>;
}
