//! The schema, as versioned migrations (`refinery`) written once for both backends.
//!
//! A migration is SQL both databases take (`TEXT`, `BIGINT`, which SQLite stores as an
//! integer); where they differ it names the difference as a `{placeholder}` that
//! [`migrations`] fills in from the [`Dialect`]. A new table is a new entry at the end of
//! [`MIGRATIONS`]; an applied entry is never edited (refinery refuses a database whose applied
//! migrations differ from the hub's, and so do we).
//!
//! `V1` uses `IF NOT EXISTS` throughout: databases created before the migrations were
//! versioned (the same tables, versioned by `PRAGMA user_version` or a `schema_version` table)
//! adopt it without change.

use super::driver::Dialect;
use crate::store::StoreError;

/// `(refinery name, SQL template)`, oldest first.
const MIGRATIONS: &[(&str, &str)] = &[
    ("V1__initial", V1_INITIAL),
    ("V2__counters_and_push_nonces", V2_COUNTERS_AND_PUSH_NONCES),
    ("V3__shopper_bindings", V3_SHOPPER_BINDINGS),
    ("V4__push_outbox", V4_PUSH_OUTBOX),
    ("V5__scene_kind", V5_SCENE_KIND),
    ("V6__clips", V6_CLIPS),
];

const V1_INITIAL: &str = "
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
    id {serial_primary_key},
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

/// Running totals for `/metrics`, kept by the writes they count (`sql::Tally`) so a scrape reads
/// a few rows instead of counting whole tables; seeded here once from the tables as they are.
/// And the (timestamp, nonce) pairs of signed pushes seen, with a digest of the body each
/// carried, until their timestamp leaves the skew window: one logged callback URL must not
/// carry another body, whichever instance it reaches.
const V2_COUNTERS_AND_PUSH_NONCES: &str = "
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value)
    SELECT 'activity:' || kind, COUNT(*) FROM activity GROUP BY kind;
INSERT INTO counters (name, value) VALUES
    ('photos_stored', (SELECT COUNT(*) FROM photos WHERE expired_at IS NULL)),
    ('photo_bytes_stored', (SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM photos WHERE expired_at IS NULL)),
    ('devices_active', (SELECT COUNT(*) FROM devices WHERE revoked_at IS NULL)),
    ('bindings', (SELECT COUNT(*) FROM bindings)),
    ('wechat_events', (SELECT COUNT(*) FROM wechat_events));
CREATE TABLE push_nonces (
    signed_at BIGINT NOT NULL,
    nonce TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    keep_until BIGINT NOT NULL,
    PRIMARY KEY (signed_at, nonce)
);
CREATE INDEX push_nonces_by_expiry ON push_nonces (keep_until);
";

/// `/me` lists a shopper's sessions and "forget me" deletes them: both look bindings up by
/// openid.
const V3_SHOPPER_BINDINGS: &str = "
CREATE INDEX IF NOT EXISTS bindings_by_openid ON bindings (openid);
CREATE INDEX IF NOT EXISTS wechat_events_by_openid ON wechat_events (openid);
";

/// Photos that follow the scan: who may still get customer-service messages, and the durable
/// outbox of messages to send (one pending row per scene and openid, batched by `due_at`).
const V4_PUSH_OUTBOX: &str = "
CREATE TABLE IF NOT EXISTS followers (
    openid TEXT PRIMARY KEY,
    last_interaction_at BIGINT NOT NULL,
    stopped_at BIGINT,
    stop_reason TEXT
);
CREATE TABLE IF NOT EXISTS push_outbox (
    id {serial_primary_key},
    scene TEXT NOT NULL,
    openid TEXT NOT NULL,
    state TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    claimed_by TEXT,
    claimed_until BIGINT,
    created_at BIGINT NOT NULL,
    finished_at BIGINT,
    last_error TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS push_outbox_one_pending ON push_outbox (scene, openid) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS push_outbox_due ON push_outbox (due_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS push_outbox_by_openid ON push_outbox (openid);
";

/// What a scene's code is for (`mirrorsight_contract::backend::SceneKind`): `session`, or
/// `idle` for a mirror's permanent code, whose scans are welcomed and counted but bind nothing.
const V5_SCENE_KIND: &str = "
ALTER TABLE scenes ADD COLUMN kind TEXT NOT NULL DEFAULT 'session';
";

/// Turn-around clips live beside the photos, in the same rows (so retention, bindings, deletion
/// and forget-me treat them alike): `media` says which, `poster_key` is a clip's poster frame.
const V6_CLIPS: &str = "
ALTER TABLE photos ADD COLUMN media TEXT NOT NULL DEFAULT 'photo';
ALTER TABLE photos ADD COLUMN poster_key TEXT;
";

/// The table refinery records applied migrations in.
pub const HISTORY_TABLE: &str = "refinery_schema_history";

/// The version of the newest migration: what a database this hub fully migrated is at.
pub fn latest_version() -> i64 {
    MIGRATIONS
        .iter()
        .filter_map(|(name, _)| version_of(name))
        .max()
        .unwrap_or(0)
}

fn version_of(name: &str) -> Option<i64> {
    name.strip_prefix('V')?.split_once("__")?.0.parse().ok()
}

/// The migrations in `dialect`'s SQL.
pub fn migrations(dialect: Dialect) -> Result<Vec<refinery::Migration>, StoreError> {
    MIGRATIONS
        .iter()
        .map(|(name, template)| {
            let sql = template.replace("{serial_primary_key}", dialect.serial_primary_key());
            refinery::Migration::unapplied(name, &sql)
                .map_err(|e| StoreError::Db(format!("migration {name}: {e}")))
        })
        .collect()
}

/// Brings a database whose newest recorded migration is `newest_applied` (`None`: no history
/// table yet) to this hub's version, in `dialect`'s SQL. A database already there gets no DDL
/// at all (the hub's role may be one that can only read and write rows); one a newer hub
/// migrated is refused. The caller reads `newest_applied`, the one query that differs.
pub fn bring_up_to_date<C: refinery::Migrate>(
    conn: &mut C,
    dialect: Dialect,
    newest_applied: Option<i64>,
) -> Result<(), StoreError> {
    check_not_newer(newest_applied)?;
    if newest_applied == Some(latest_version()) {
        return Ok(());
    }
    refinery::Runner::new(&migrations(dialect)?)
        .set_grouped(true)
        .run(conn)
        .map_err(|e| StoreError::Db(format!("migrating the schema: {e}")))?;
    Ok(())
}

/// Refuses a database ahead of this hub (a newer hub migrated it): `newest_applied` is the
/// newest migration it records.
fn check_not_newer(newest_applied: Option<i64>) -> Result<(), StoreError> {
    let latest = latest_version();
    match newest_applied {
        Some(v) if v > latest => Err(StoreError::Db(format!(
            "database schema version {v} is newer than this hub ({latest}); refusing to touch it"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_filled_in() {
        let mut last = 0;
        for (name, _) in MIGRATIONS {
            let v = version_of(name).expect("named V<n>__<what>");
            assert!(v > last, "{name} after version {last}");
            last = v;
        }
        assert_eq!(latest_version(), last);
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            for m in migrations(dialect).unwrap() {
                let sql = m.sql().unwrap();
                assert!(!sql.contains('{'), "unfilled placeholder in {}", m.name());
            }
        }
        assert!(check_not_newer(Some(last + 1)).is_err());
        assert!(check_not_newer(Some(last)).is_ok());
        assert!(check_not_newer(None).is_ok());
    }
}
