//! [`Store`] on an embedded SQLite database (WAL, `synchronous=FULL`: a binding acknowledged to
//! WeChat survives a power cut).

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{
    Activity, Binding, Claim, Device, MintOutcome, MintedScene, NewWechatEvent, PhotoInsert,
    PhotoMeta, SceneRecord, SharedToken, StatsRow, Store, StoreError, Totals, activity_totals,
    fold_stats,
};

// 2: access_tokens (the shared token and its refresh lease), photos_by_blob.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    store TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS scenes (
    scene TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    store TEXT NOT NULL,
    url TEXT,
    ticket TEXT,
    expires_at INTEGER,
    minted_at INTEGER,
    gallery_key TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    device TEXT NOT NULL,
    session_id TEXT NOT NULL,
    scene TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    PRIMARY KEY (device, session_id)
);
CREATE TABLE IF NOT EXISTS photos (
    scene TEXT NOT NULL,
    photo TEXT NOT NULL,
    device TEXT NOT NULL,
    session_id TEXT NOT NULL,
    taken_at_ms INTEGER NOT NULL,
    trigger TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    blob_key TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expired_at INTEGER,
    PRIMARY KEY (scene, photo)
);
CREATE INDEX IF NOT EXISTS photos_live_by_age ON photos (created_at) WHERE expired_at IS NULL;
CREATE TABLE IF NOT EXISTS bindings (
    scene TEXT NOT NULL,
    openid TEXT NOT NULL,
    event TEXT NOT NULL,
    bound_at INTEGER NOT NULL,
    PRIMARY KEY (scene, openid)
);
CREATE TABLE IF NOT EXISTS wechat_events (
    dedupe TEXT PRIMARY KEY,
    openid TEXT NOT NULL,
    event TEXT NOT NULL,
    event_key TEXT NOT NULL,
    scene TEXT,
    reply TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS activity (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    store TEXT NOT NULL,
    device TEXT NOT NULL,
    scene TEXT,
    dedupe TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS activity_by_time ON activity (at);
CREATE INDEX IF NOT EXISTS photos_by_blob ON photos (blob_key);
CREATE TABLE IF NOT EXISTS access_tokens (
    name TEXT PRIMARY KEY,
    token TEXT,
    expires_at INTEGER,
    fetched_at INTEGER,
    fetched_by TEXT,
    lease_holder TEXT,
    lease_until INTEGER
);
";

/// SQLite-backed [`Store`]. One connection behind a mutex: SQLite serialises writers anyway,
/// and the hub's load (a few mirrors, a few scans a minute) is far below what that allows.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Db(format!("{}: {e}", parent.display())))?;
        }
        let conn = Connection::open(path).map_err(db)?;
        Self::init(conn)
    }

    /// A private in-memory database, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(db)?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(Duration::from_secs(5)).map_err(db)?;
        // journal_mode answers with a row, so it cannot go through execute_batch's fast path.
        let _mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(db)?;
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
            .map_err(db)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Db(format!(
                "database schema version {version} is newer than this hub ({SCHEMA_VERSION}); refusing to touch it"
            )));
        }
        conn.execute_batch(SCHEMA).map_err(db)?;
        conn.execute_batch(&format!("PRAGMA user_version={SCHEMA_VERSION}"))
            .map_err(db)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection itself intact (SQLite rolls back
        // an open transaction when it is dropped), so keep serving.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

const SCENE_COLUMNS: &str =
    "scene, device, store, url, ticket, expires_at, minted_at, gallery_key, created_at";

fn scene_from_row(r: &Row<'_>) -> rusqlite::Result<SceneRecord> {
    let url: Option<String> = r.get(3)?;
    let code = match (
        url,
        r.get::<_, Option<i64>>(5)?,
        r.get::<_, Option<i64>>(6)?,
    ) {
        (Some(url), Some(expires_at), Some(minted_at)) => Some(MintedScene {
            url,
            ticket: r.get(4)?,
            expires_at,
            minted_at,
        }),
        _ => None,
    };
    Ok(SceneRecord {
        scene: r.get(0)?,
        device: r.get(1)?,
        store: r.get(2)?,
        code,
        gallery_key: r.get(7)?,
        created_at: r.get(8)?,
    })
}

const PHOTO_COLUMNS: &str = "scene, photo, device, session_id, taken_at_ms, trigger, sha256, bytes, blob_key, created_at, expired_at";

fn photo_from_row(r: &Row<'_>) -> rusqlite::Result<PhotoMeta> {
    Ok(PhotoMeta {
        scene: r.get(0)?,
        photo: r.get(1)?,
        device: r.get(2)?,
        session_id: r.get(3)?,
        taken_at_ms: r.get(4)?,
        trigger: r.get(5)?,
        sha256: r.get(6)?,
        bytes: r.get(7)?,
        blob_key: r.get(8)?,
        created_at: r.get(9)?,
        expired_at: r.get(10)?,
    })
}

fn device_from_row(r: &Row<'_>) -> rusqlite::Result<Device> {
    Ok(Device {
        id: r.get(0)?,
        store: r.get(1)?,
        created_at: r.get(2)?,
        revoked_at: r.get(3)?,
    })
}

fn get_scene(conn: &Connection, scene: &str) -> rusqlite::Result<Option<SceneRecord>> {
    conn.query_row(
        &format!("SELECT {SCENE_COLUMNS} FROM scenes WHERE scene = ?1"),
        [scene],
        scene_from_row,
    )
    .optional()
}

fn log_activity(
    conn: &Connection,
    kind: Activity,
    store: &str,
    device: &str,
    scene: Option<&str>,
    dedupe: Option<&str>,
    now: i64,
) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO activity (at, kind, store, device, scene, dedupe) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![now, kind.as_str(), store, device, scene, dedupe],
    )?;
    Ok(n == 1)
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Store for SqliteStore {
    fn ping(&self) -> Result<(), StoreError> {
        self.conn()
            .query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
            .map(|_| ())
            .map_err(db)
    }

    fn add_device(
        &self,
        id: &str,
        store: &str,
        token_sha256: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        let exists: bool = conn
            .query_row("SELECT 1 FROM devices WHERE id = ?1", [id], |_| Ok(true))
            .optional()
            .map_err(db)?
            .unwrap_or(false);
        if exists {
            return Err(StoreError::Exists(format!("device {id}")));
        }
        conn.execute(
            "INSERT INTO devices (id, store, token_sha256, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![id, store, token_sha256, now],
        )
        .map_err(db)?;
        Ok(())
    }

    fn revoke_device(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute(
                "UPDATE devices SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now],
            )
            .map_err(db)?;
        Ok(n == 1)
    }

    fn list_devices(&self) -> Result<Vec<Device>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, store, created_at, revoked_at FROM devices ORDER BY id")
            .map_err(db)?;
        let rows = stmt.query_map([], device_from_row).map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    fn device_by_token(&self, token_sha256: &str) -> Result<Option<Device>, StoreError> {
        self.conn()
            .query_row(
                "SELECT id, store, created_at, revoked_at FROM devices WHERE token_sha256 = ?1 AND revoked_at IS NULL",
                [token_sha256],
                device_from_row,
            )
            .optional()
            .map_err(db)
    }

    fn scene(&self, scene: &str) -> Result<Option<SceneRecord>, StoreError> {
        get_scene(&self.conn(), scene).map_err(db)
    }

    fn record_minted_scene(
        &self,
        scene: &str,
        device: &Device,
        code: &MintedScene,
        gallery_key: &str,
        now: i64,
    ) -> Result<MintOutcome, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        match get_scene(&tx, scene).map_err(db)? {
            Some(existing) if existing.device != device.id => return Ok(MintOutcome::Forbidden),
            Some(existing) if existing.code.is_some() => {
                return Ok(MintOutcome::Existing(existing));
            }
            Some(_) => {
                tx.execute(
                    "UPDATE scenes SET url = ?2, ticket = ?3, expires_at = ?4, minted_at = ?5 WHERE scene = ?1",
                    params![scene, code.url, code.ticket, code.expires_at, code.minted_at],
                )
                .map_err(db)?;
            }
            None => {
                tx.execute(
                    &format!("INSERT INTO scenes ({SCENE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                    params![
                        scene,
                        device.id,
                        device.store,
                        code.url,
                        code.ticket,
                        code.expires_at,
                        code.minted_at,
                        gallery_key,
                        now
                    ],
                )
                .map_err(db)?;
            }
        }
        log_activity(
            &tx,
            Activity::CodeMinted,
            &device.store,
            &device.id,
            Some(scene),
            None,
            now,
        )
        .map_err(db)?;
        let record = get_scene(&tx, scene)
            .map_err(db)?
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
        let conn = self.conn();
        conn.execute(
            "INSERT OR IGNORE INTO scenes (scene, device, store, gallery_key, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![scene, device.id, device.store, gallery_key, now],
        )
        .map_err(db)?;
        match get_scene(&conn, scene).map_err(db)? {
            Some(record) if record.device == device.id => Ok(Claim::Owned(record)),
            Some(_) => Ok(Claim::Forbidden),
            None => Err(StoreError::Db("claimed scene not found".into())),
        }
    }

    fn insert_photo(&self, photo: &PhotoMeta, store: &str) -> Result<PhotoInsert, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT sha256 FROM photos WHERE scene = ?1 AND photo = ?2",
                params![photo.scene, photo.photo],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
        if let Some(sha) = existing {
            return Ok(if sha == photo.sha256 {
                PhotoInsert::SameBytes
            } else {
                PhotoInsert::Conflict
            });
        }
        tx.execute(
            &format!("INSERT INTO photos ({PHOTO_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL)"),
            params![
                photo.scene,
                photo.photo,
                photo.device,
                photo.session_id,
                photo.taken_at_ms,
                photo.trigger,
                photo.sha256,
                photo.bytes,
                photo.blob_key,
                photo.created_at
            ],
        )
        .map_err(db)?;
        let new_session = tx
            .execute(
                "INSERT OR IGNORE INTO sessions (device, session_id, scene, first_seen) VALUES (?1, ?2, ?3, ?4)",
                params![photo.device, photo.session_id, photo.scene, photo.created_at],
            )
            .map_err(db)?
            == 1;
        if new_session {
            log_activity(
                &tx,
                Activity::Session,
                store,
                &photo.device,
                Some(&photo.scene),
                None,
                photo.created_at,
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(PhotoInsert::Created)
    }

    fn photo(&self, scene: &str, photo: &str) -> Result<Option<PhotoMeta>, StoreError> {
        self.conn()
            .query_row(
                &format!("SELECT {PHOTO_COLUMNS} FROM photos WHERE scene = ?1 AND photo = ?2"),
                params![scene, photo],
                photo_from_row,
            )
            .optional()
            .map_err(db)
    }

    fn photos_of_scene(&self, scene: &str) -> Result<Vec<PhotoMeta>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {PHOTO_COLUMNS} FROM photos WHERE scene = ?1 ORDER BY taken_at_ms, photo"
            ))
            .map_err(db)?;
        let rows = stmt.query_map([scene], photo_from_row).map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    fn delete_photo(&self, scene: &str, photo: &str) -> Result<Option<PhotoMeta>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        let existing = tx
            .query_row(
                &format!("SELECT {PHOTO_COLUMNS} FROM photos WHERE scene = ?1 AND photo = ?2"),
                params![scene, photo],
                photo_from_row,
            )
            .optional()
            .map_err(db)?;
        if existing.is_some() {
            tx.execute(
                "DELETE FROM photos WHERE scene = ?1 AND photo = ?2",
                params![scene, photo],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(existing)
    }

    fn photos_to_expire(&self, cutoff: i64, limit: usize) -> Result<Vec<PhotoMeta>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {PHOTO_COLUMNS} FROM photos WHERE expired_at IS NULL AND created_at < ?1 ORDER BY created_at LIMIT ?2"
            ))
            .map_err(db)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![cutoff, limit], photo_from_row)
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    fn mark_expired(&self, scene: &str, photo: &str, now: i64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE photos SET expired_at = ?3 WHERE scene = ?1 AND photo = ?2 AND expired_at IS NULL",
                params![scene, photo, now],
            )
            .map_err(db)?;
        Ok(())
    }

    fn wechat_reply(&self, dedupe: &str) -> Result<Option<String>, StoreError> {
        self.conn()
            .query_row(
                "SELECT reply FROM wechat_events WHERE dedupe = ?1",
                [dedupe],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)
    }

    fn record_wechat_event(&self, event: &NewWechatEvent, now: i64) -> Result<String, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        let inserted = tx
            .execute(
                "INSERT OR IGNORE INTO wechat_events (dedupe, openid, event, event_key, scene, reply, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    event.dedupe,
                    event.openid,
                    event.event,
                    event.event_key,
                    event.bind_scene.as_ref().map(|s| s.scene.as_str()),
                    event.reply,
                    now
                ],
            )
            .map_err(db)?
            == 1;
        if !inserted {
            // An identical push got here first (WeChat retries after 5 s); answer as it was.
            let reply: String = tx
                .query_row(
                    "SELECT reply FROM wechat_events WHERE dedupe = ?1",
                    [&event.dedupe],
                    |r| r.get(0),
                )
                .map_err(db)?;
            return Ok(reply);
        }
        if let Some(scene) = &event.bind_scene {
            tx.execute(
                "INSERT OR IGNORE INTO bindings (scene, openid, event, bound_at) VALUES (?1, ?2, ?3, ?4)",
                params![scene.scene, event.openid, event.event, now],
            )
            .map_err(db)?;
            if let Some(kind) = event.activity {
                log_activity(
                    &tx,
                    kind,
                    &scene.store,
                    &scene.device,
                    Some(&scene.scene),
                    Some(&format!("wechat:{}", event.dedupe)),
                    now,
                )
                .map_err(db)?;
            }
        }
        tx.commit().map_err(db)?;
        Ok(event.reply.clone())
    }

    fn bindings(&self, scene: &str) -> Result<Vec<Binding>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT scene, openid, event, bound_at FROM bindings WHERE scene = ?1 ORDER BY bound_at, openid")
            .map_err(db)?;
        let rows = stmt
            .query_map([scene], |r| {
                Ok(Binding {
                    scene: r.get(0)?,
                    openid: r.get(1)?,
                    event: r.get(2)?,
                    bound_at: r.get(3)?,
                })
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    fn wechat_event_count(&self) -> Result<u64, StoreError> {
        self.conn()
            .query_row("SELECT COUNT(*) FROM wechat_events", [], |r| r.get(0))
            .map(count)
            .map_err(db)
    }

    fn record_activity(
        &self,
        kind: Activity,
        scene: &SceneRecord,
        dedupe: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        log_activity(
            &self.conn(),
            kind,
            &scene.store,
            &scene.device,
            Some(&scene.scene),
            dedupe,
            now,
        )
        .map_err(db)
    }

    fn stats(
        &self,
        utc_offset_s: i64,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<StatsRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT store, device, day, kind, COUNT(*) FROM (
                    SELECT store, device, kind, strftime('%Y-%m-%d', at + ?1, 'unixepoch') AS day FROM activity
                 )
                 WHERE (?2 IS NULL OR day >= ?2) AND (?3 IS NULL OR day <= ?3)
                 GROUP BY store, device, day, kind
                 ORDER BY day, store, device",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(params![utc_offset_s, from, to], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(db)?;
        let rows = rows.collect::<Result<Vec<_>, _>>().map_err(db)?;
        Ok(fold_stats(rows))
    }

    fn totals(&self) -> Result<Totals, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT kind, COUNT(*) FROM activity GROUP BY kind")
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(db)?;
        let activity = activity_totals(rows.collect::<Result<Vec<_>, _>>().map_err(db)?);
        let (photos_stored, photo_bytes_stored): (i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM photos WHERE expired_at IS NULL",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(db)?;
        let one = |sql: &str| -> Result<u64, StoreError> {
            conn.query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(count)
                .map_err(db)
        };
        Ok(Totals {
            activity,
            photos_stored: count(photos_stored),
            photo_bytes_stored: count(photo_bytes_stored),
            active_devices: one("SELECT COUNT(*) FROM devices WHERE revoked_at IS NULL")?,
            bindings: one("SELECT COUNT(*) FROM bindings")?,
            wechat_events: one("SELECT COUNT(*) FROM wechat_events")?,
        })
    }

    fn referenced_blobs(&self, keys: &[String]) -> Result<HashSet<String>, StoreError> {
        let conn = self.conn();
        let mut out = HashSet::new();
        // Well under SQLite's bound-parameter limit.
        for chunk in keys.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(",");
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT DISTINCT blob_key FROM photos WHERE expired_at IS NULL AND blob_key IN ({marks})"
                ))
                .map_err(db)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(chunk), |r| r.get::<_, String>(0))
                .map_err(db)?;
            for key in rows {
                out.insert(key.map_err(db)?);
            }
        }
        Ok(out)
    }

    fn shared_token(&self, name: &str) -> Result<Option<SharedToken>, StoreError> {
        self.conn()
            .query_row(
                "SELECT token, expires_at, fetched_at, fetched_by FROM access_tokens WHERE name = ?1 AND token IS NOT NULL",
                [name],
                |r| {
                    Ok(SharedToken {
                        token: r.get(0)?,
                        expires_at: r.get(1)?,
                        fetched_at: r.get(2)?,
                        holder: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(db)
    }

    fn acquire_token_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute(
                "INSERT INTO access_tokens (name, lease_holder, lease_until) VALUES (?1, ?2, ?4)
                 ON CONFLICT (name) DO UPDATE SET lease_holder = excluded.lease_holder, lease_until = excluded.lease_until
                 WHERE access_tokens.lease_holder IS NULL OR access_tokens.lease_until <= ?3 OR access_tokens.lease_holder = ?2",
                params![name, holder, now, until],
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
            .conn()
            .execute(
                "UPDATE access_tokens SET token = ?3, expires_at = ?4, fetched_at = ?5, fetched_by = ?2,
                     lease_holder = NULL, lease_until = NULL
                 WHERE name = ?1 AND lease_holder = ?2",
                params![name, holder, token.token, token.expires_at, token.fetched_at],
            )
            .map_err(db)?;
        Ok(n == 1)
    }

    fn release_token_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE access_tokens SET lease_holder = NULL, lease_until = NULL WHERE name = ?1 AND lease_holder = ?2",
                params![name, holder],
            )
            .map_err(db)?;
        Ok(())
    }
}
