//! The one implementation of [`Store`], on any SQL [`Driver`] (SQLite, PostgreSQL).
//!
//! Every transaction is written here once; the drivers only run statements, and the SQL
//! dialect ([`Dialect`]) is the only thing that differs between backends. Races between
//! writers (threads, or hub instances sharing one PostgreSQL database) are settled by the
//! database, not by locks in the hub: every "create unless it exists" is an
//! `INSERT … ON CONFLICT DO NOTHING` followed by a read of the winner, so two writers taking
//! the same push, upload or scene at once both answer from the one row that was stored.
//! On PostgreSQL the default isolation (read committed) is enough for that: a conflicting
//! insert waits for the first transaction and then sees its row. On SQLite a transaction
//! holds the database's write lock from its start.
//!
//! The figures `/metrics` shows live in the `counters` table, changed by the same transaction
//! as the rows they count (a [`Tally`] applied at its end), so a scrape reads a handful of rows
//! whatever the size of the tables.
//!
//! A new table is a migration in [`schema`] and methods here; nothing per backend.

pub(crate) mod driver;
pub(crate) mod schema;

use std::collections::HashSet;

use self::driver::{Conn, Dialect, Driver, Row, Value, args};
use super::{
    Activity, Binding, Claim, Device, DuePush, Media, MintOutcome, MintedScene, NewWechatEvent,
    NonceUse, PhotoInsert, PhotoMeta, PruneReport, PushOutcome, PushRecord, SceneKind, SceneRecord,
    SceneScans, SharedToken, StatsRow, Store, StoreError, Totals, activity_totals, fold_stats,
};

/// A [`Store`] on the database behind `D`.
pub struct SqlStore<D: Driver> {
    pub(crate) driver: D,
}

impl<D: Driver> std::fmt::Debug for SqlStore<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqlStore<{:?}>", D::DIALECT)
    }
}

impl<D: Driver> SqlStore<D> {
    pub(crate) fn new(driver: D) -> Self {
        Self { driver }
    }

    /// Every row one statement answers (outside a transaction), each read by `read`.
    fn select<T>(
        &self,
        sql: &str,
        args: &[Value<'_>],
        read: fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        all(self.driver.run(|c| c.query(sql, args))?, read)
    }

    /// The first row one statement answers, if any, read by `read`.
    fn select_first<T>(
        &self,
        sql: &str,
        args: &[Value<'_>],
        read: fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        first(self.driver.run(|c| c.query_opt(sql, args))?, read)
    }
}

const DEVICE_COLUMNS: &str = "id, store, created_at, revoked_at";

fn device_from_row(r: &Row) -> Result<Device, StoreError> {
    Ok(Device {
        id: r.text(0)?,
        store: r.text(1)?,
        created_at: r.int(2)?,
        revoked_at: r.opt_int(3)?,
    })
}

const SCENE_COLUMNS: &str =
    "scene, device, store, url, ticket, expires_at, minted_at, gallery_key, created_at, kind";

fn scene_from_row(r: &Row) -> Result<SceneRecord, StoreError> {
    let code = match (r.opt_text(3)?, r.opt_int(5)?, r.opt_int(6)?) {
        (Some(url), Some(expires_at), Some(minted_at)) => Some(MintedScene {
            url,
            ticket: r.opt_text(4)?,
            expires_at,
            minted_at,
        }),
        _ => None,
    };
    Ok(SceneRecord {
        scene: r.text(0)?,
        device: r.text(1)?,
        store: r.text(2)?,
        code,
        gallery_key: r.text(7)?,
        created_at: r.int(8)?,
        kind: match r.text(9)?.as_str() {
            "idle" => SceneKind::Idle,
            _ => SceneKind::Session,
        },
    })
}

const PHOTO_COLUMNS: &str = "scene, photo, device, session_id, taken_at_ms, trigger, sha256, bytes, blob_key, created_at, expired_at, media, poster_key";

fn photo_from_row(r: &Row) -> Result<PhotoMeta, StoreError> {
    Ok(PhotoMeta {
        scene: r.text(0)?,
        photo: r.text(1)?,
        device: r.text(2)?,
        session_id: r.text(3)?,
        taken_at_ms: r.int(4)?,
        trigger: r.text(5)?,
        sha256: r.text(6)?,
        bytes: r.int(7)?,
        blob_key: r.text(8)?,
        created_at: r.int(9)?,
        expired_at: r.opt_int(10)?,
        media: Media::parse(&r.text(11)?),
        poster_key: r.opt_text(12)?,
    })
}

fn all<T>(rows: Vec<Row>, read: fn(&Row) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
    rows.iter().map(read).collect()
}

fn first<T>(
    row: Option<Row>,
    read: fn(&Row) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    row.as_ref().map(read).transpose()
}

/// The scene row; `lock` when the transaction will update it.
fn get_scene(
    conn: &mut dyn Conn,
    dialect: Dialect,
    scene: &str,
    lock: bool,
) -> Result<Option<SceneRecord>, StoreError> {
    let lock = if lock { dialect.lock_rows() } else { "" };
    first(
        conn.query_opt(
            &format!("SELECT {SCENE_COLUMNS} FROM scenes WHERE scene = $1{lock}"),
            args![scene],
        )?,
        scene_from_row,
    )
}

/// Names of the running totals in the `counters` table (besides `activity:<kind>`).
mod counter {
    pub const PHOTOS_STORED: &str = "photos_stored";
    pub const PHOTO_BYTES_STORED: &str = "photo_bytes_stored";
    pub const DEVICES_ACTIVE: &str = "devices_active";
    pub const BINDINGS: &str = "bindings";
    pub const WECHAT_EVENTS: &str = "wechat_events";
    pub const ACTIVITY_PREFIX: &str = "activity:";
}

/// The changes one transaction makes to the running totals, applied at its end by
/// [`Tally::apply`]. Last, because an updated counter row stays locked until the commit (on
/// PostgreSQL every writer of the hub touches a few of the same rows), and in name order, so
/// two transactions never wait for each other's counters crosswise.
#[derive(Debug, Default)]
struct Tally(Vec<(String, i64)>);

impl Tally {
    fn add(&mut self, name: &str, delta: i64) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, d)) => *d += delta,
            None => self.0.push((name.to_string(), delta)),
        }
    }

    /// `n` rows more of what `name` counts (`per_row` 1), or fewer (`per_row` -1).
    fn rows(&mut self, name: &str, n: u64, per_row: i64) {
        self.add(name, i64::try_from(n).unwrap_or(i64::MAX) * per_row);
    }

    /// A live photo of `bytes` no longer stored (deleted, expired, forgotten).
    fn photo_gone(&mut self, bytes: i64) {
        self.add(counter::PHOTOS_STORED, -1);
        self.add(counter::PHOTO_BYTES_STORED, -bytes);
    }

    fn activity(&mut self, kind: Activity) {
        self.add(&format!("{}{}", counter::ACTIVITY_PREFIX, kind.as_str()), 1);
    }

    fn apply(mut self, conn: &mut dyn Conn) -> Result<(), StoreError> {
        self.0.retain(|(_, d)| *d != 0);
        self.0.sort();
        for (name, delta) in &self.0 {
            conn.execute(
                "INSERT INTO counters (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value",
                args![name.as_str(), *delta],
            )?;
        }
        Ok(())
    }
}

/// Runs a statement and counts the rows it changed in the running total `name` (`per_row`
/// 1 for rows added, -1 for rows removed), in the caller's transaction; the rows changed.
fn execute_counted(
    conn: &mut dyn Conn,
    sql: &str,
    args: &[Value<'_>],
    name: &str,
    per_row: i64,
) -> Result<u64, StoreError> {
    let n = conn.execute(sql, args)?;
    let mut tally = Tally::default();
    tally.rows(name, n, per_row);
    tally.apply(conn)?;
    Ok(n)
}

/// One row of the activity log.
struct ActivityEntry<'a> {
    kind: Activity,
    store: &'a str,
    device: &'a str,
    scene: Option<&'a str>,
    /// With a key, the activity is logged at most once.
    dedupe: Option<&'a str>,
    at: i64,
}

/// Logs one activity; with a dedupe key, at most once. `true` when logged now (and then
/// counted in `tally`).
fn log_activity(
    conn: &mut dyn Conn,
    tally: &mut Tally,
    entry: &ActivityEntry<'_>,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "INSERT INTO activity (at, kind, store, device, scene, dedupe) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        args![
            entry.at,
            entry.kind.as_str(),
            entry.store,
            entry.device,
            entry.scene,
            entry.dedupe
        ],
    )?;
    if n == 1 {
        tally.activity(entry.kind);
    }
    Ok(n == 1)
}

/// A QR code a device minted for a scene (through the hub, or itself and registered).
struct NewCode<'a> {
    scene: &'a str,
    device: &'a Device,
    code: &'a MintedScene,
    kind: SceneKind,
    /// Used only when the scene is new.
    gallery_key: &'a str,
    now: i64,
}

/// What becomes of a code the device already has for the scene.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnCode {
    /// The hub minted it: the stored code stands (`Existing`, unchanged).
    KeepMinted,
    /// The mirror minted it again, or registers it again after a restart: what WeChat
    /// answered last is what the code is (`Existing`, updated).
    Replace,
}

/// Records `new` in one transaction: a new scene (`Created`, with a `CodeMinted` activity),
/// a scene this device claimed by uploading before it minted (its code recorded, `Created`
/// too), this device's coded scene (per `own`), or `Forbidden` (another device's).
fn record_code(
    conn: &mut dyn Conn,
    dialect: Dialect,
    new: &NewCode<'_>,
    own: OwnCode,
) -> Result<MintOutcome, StoreError> {
    let NewCode {
        scene,
        device,
        code,
        kind,
        gallery_key,
        now,
    } = *new;
    let inserted = conn.execute(
        &format!(
            "INSERT INTO scenes ({SCENE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (scene) DO NOTHING"
        ),
        args![
            scene,
            &device.id,
            &device.store,
            &code.url,
            code.ticket.as_deref(),
            code.expires_at,
            code.minted_at,
            gallery_key,
            now,
            kind.as_str(),
        ],
    )? == 1;
    if !inserted {
        let existing = get_scene(conn, dialect, scene, true)?
            .ok_or_else(|| StoreError::Db("scene vanished while recording its code".into()))?;
        if existing.device != device.id {
            return Ok(MintOutcome::Forbidden);
        }
        let coded = existing.code.is_some();
        if coded && own == OwnCode::KeepMinted {
            return Ok(MintOutcome::Existing(existing));
        }
        conn.execute(
            "UPDATE scenes SET url = $2, ticket = $3, expires_at = $4, minted_at = $5, kind = $6 WHERE scene = $1",
            args![
                scene,
                &code.url,
                code.ticket.as_deref(),
                code.expires_at,
                code.minted_at,
                kind.as_str(),
            ],
        )?;
        if own == OwnCode::Replace {
            return Ok(MintOutcome::Existing(reread_scene(conn, dialect, scene)?));
        }
    }
    let mut tally = Tally::default();
    log_activity(
        conn,
        &mut tally,
        &ActivityEntry {
            kind: Activity::CodeMinted,
            store: &device.store,
            device: &device.id,
            scene: Some(scene),
            dedupe: None,
            at: now,
        },
    )?;
    tally.apply(conn)?;
    Ok(MintOutcome::Created(reread_scene(conn, dialect, scene)?))
}

/// The scene row a transaction has just written.
fn reread_scene(
    conn: &mut dyn Conn,
    dialect: Dialect,
    scene: &str,
) -> Result<SceneRecord, StoreError> {
    get_scene(conn, dialect, scene, false)?
        .ok_or_else(|| StoreError::Db("scene vanished inside its transaction".into()))
}

impl<D: Driver> Store for SqlStore<D> {
    fn ping(&self) -> Result<(), StoreError> {
        self.driver
            .run(|c| c.query_one("SELECT 1", args![]).map(|_| ()))
    }

    fn add_device(
        &self,
        id: &str,
        store: &str,
        token_sha256: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let n = self.driver.transaction(|c| {
            execute_counted(
                c,
                "INSERT INTO devices (id, store, token_sha256, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                args![id, store, token_sha256, now],
                counter::DEVICES_ACTIVE,
                1,
            )
        })?;
        if n == 0 {
            return Err(StoreError::Exists(format!("device {id}")));
        }
        Ok(())
    }

    fn revoke_device(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let n = self.driver.transaction(|c| {
            execute_counted(
                c,
                "UPDATE devices SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                args![id, now],
                counter::DEVICES_ACTIVE,
                -1,
            )
        })?;
        Ok(n == 1)
    }

    fn list_devices(&self) -> Result<Vec<Device>, StoreError> {
        let order = D::DIALECT.bytewise();
        self.select(
            &format!("SELECT {DEVICE_COLUMNS} FROM devices ORDER BY id{order}"),
            args![],
            device_from_row,
        )
    }

    fn device_by_token(&self, token_sha256: &str) -> Result<Option<Device>, StoreError> {
        self.select_first(
            &format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE token_sha256 = $1 AND revoked_at IS NULL"
            ),
            args![token_sha256],
            device_from_row,
        )
    }

    fn scene(&self, scene: &str) -> Result<Option<SceneRecord>, StoreError> {
        self.driver.run(|c| get_scene(c, D::DIALECT, scene, false))
    }

    fn record_minted_scene(
        &self,
        scene: &str,
        device: &Device,
        code: &MintedScene,
        gallery_key: &str,
        now: i64,
    ) -> Result<MintOutcome, StoreError> {
        let minted = NewCode {
            scene,
            device,
            code,
            kind: SceneKind::Session,
            gallery_key,
            now,
        };
        self.driver
            .transaction(|c| record_code(c, D::DIALECT, &minted, OwnCode::KeepMinted))
    }

    fn register_scene(
        &self,
        scene: &str,
        device: &Device,
        code: &MintedScene,
        kind: SceneKind,
        gallery_key: &str,
        now: i64,
    ) -> Result<MintOutcome, StoreError> {
        let registered = NewCode {
            scene,
            device,
            code,
            kind,
            gallery_key,
            now,
        };
        self.driver
            .transaction(|c| record_code(c, D::DIALECT, &registered, OwnCode::Replace))
    }

    fn scene_scans(
        &self,
        utc_offset_s: i64,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<SceneScans>, StoreError> {
        let day = D::DIALECT.utc_day("a.at + CAST($1 AS BIGINT)");
        let order = D::DIALECT.bytewise();
        self.select(
            &format!(
                "SELECT scene, store, device, source,
                    SUM(CASE WHEN kind = 'scan_already_following' THEN 1 ELSE 0 END),
                    SUM(CASE WHEN kind = 'scan_new_follower' THEN 1 ELSE 0 END)
                 FROM (
                    SELECT a.scene AS scene, a.store AS store, a.device AS device, a.kind AS kind,
                        COALESCE(s.kind, 'session') AS source, {day} AS day
                    FROM activity a LEFT JOIN scenes s ON s.scene = a.scene
                    WHERE a.scene IS NOT NULL AND a.kind IN ('scan_already_following', 'scan_new_follower')
                 ) AS t
                 WHERE (CAST($2 AS TEXT) IS NULL OR day >= $2) AND (CAST($3 AS TEXT) IS NULL OR day <= $3)
                 GROUP BY scene, store, device, source
                 ORDER BY store{order}, device{order}, scene{order}"
            ),
            args![utc_offset_s, from, to],
            |r| {
                Ok(SceneScans {
                    scene: r.text(0)?,
                    store: r.text(1)?,
                    device: r.text(2)?,
                    source: r.text(3)?,
                    scans_following: r.count(4)?,
                    scans_new_follower: r.count(5)?,
                })
            },
        )
    }

    fn claim_scene(
        &self,
        scene: &str,
        device: &Device,
        gallery_key: &str,
        now: i64,
    ) -> Result<Claim, StoreError> {
        let record = self.driver.run(|c| {
            c.execute(
                "INSERT INTO scenes (scene, device, store, gallery_key, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scene) DO NOTHING",
                args![scene, &device.id, &device.store, gallery_key, now],
            )?;
            get_scene(c, D::DIALECT, scene, false)
        })?;
        match record {
            Some(record) if record.device == device.id => Ok(Claim::Owned(record)),
            Some(_) => Ok(Claim::Forbidden),
            None => Err(StoreError::Db("claimed scene not found".into())),
        }
    }

    fn insert_photo(&self, photo: &PhotoMeta, store: &str) -> Result<PhotoInsert, StoreError> {
        self.driver.transaction(|c| {
            let inserted = c.execute(
                &format!(
                    "INSERT INTO photos ({PHOTO_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, NULL) ON CONFLICT (scene, photo) DO NOTHING"
                ),
                args![
                    &photo.scene,
                    &photo.photo,
                    &photo.device,
                    &photo.session_id,
                    photo.taken_at_ms,
                    &photo.trigger,
                    &photo.sha256,
                    photo.bytes,
                    &photo.blob_key,
                    photo.created_at,
                    photo.media.as_str(),
                ],
            )? == 1;
            if !inserted {
                let sha = c
                    .query_one(
                        "SELECT sha256 FROM photos WHERE scene = $1 AND photo = $2",
                        args![&photo.scene, &photo.photo],
                    )?
                    .text(0)?;
                return Ok(if sha == photo.sha256 {
                    PhotoInsert::SameBytes
                } else {
                    PhotoInsert::Conflict
                });
            }
            let mut tally = Tally::default();
            tally.add(counter::PHOTOS_STORED, 1);
            tally.add(counter::PHOTO_BYTES_STORED, photo.bytes);
            let new_session = c.execute(
                "INSERT INTO sessions (device, session_id, scene, first_seen) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                args![&photo.device, &photo.session_id, &photo.scene, photo.created_at],
            )? == 1;
            if new_session {
                log_activity(
                    c,
                    &mut tally,
                    &ActivityEntry {
                        kind: Activity::Session,
                        store,
                        device: &photo.device,
                        scene: Some(&photo.scene),
                        dedupe: None,
                        at: photo.created_at,
                    },
                )?;
            }
            tally.apply(c)?;
            Ok(PhotoInsert::Created)
        })
    }

    fn photo(&self, scene: &str, photo: &str) -> Result<Option<PhotoMeta>, StoreError> {
        self.select_first(
            &format!("SELECT {PHOTO_COLUMNS} FROM photos WHERE scene = $1 AND photo = $2"),
            args![scene, photo],
            photo_from_row,
        )
    }

    fn set_poster(&self, scene: &str, clip: &str, key: &str) -> Result<Option<String>, StoreError> {
        self.driver.transaction(|c| {
            let Some(row) = c.query_opt(
                "SELECT poster_key FROM photos WHERE scene = $1 AND photo = $2 AND media = 'clip' AND expired_at IS NULL",
                args![scene, clip],
            )?
            else {
                return Err(StoreError::NotFound(format!("clip {clip}")));
            };
            let old = row.opt_text(0)?;
            c.execute(
                "UPDATE photos SET poster_key = $3 WHERE scene = $1 AND photo = $2",
                args![scene, clip, key],
            )?;
            Ok(old)
        })
    }

    fn photos_of_scene(&self, scene: &str) -> Result<Vec<PhotoMeta>, StoreError> {
        let order = D::DIALECT.bytewise();
        self.select(
            &format!(
                "SELECT {PHOTO_COLUMNS} FROM photos WHERE scene = $1 ORDER BY taken_at_ms, photo{order}"
            ),
            args![scene],
            photo_from_row,
        )
    }

    fn delete_photo(&self, scene: &str, photo: &str) -> Result<Option<PhotoMeta>, StoreError> {
        self.driver.transaction(|c| {
            let row = c.query_opt(
                &format!(
                    "DELETE FROM photos WHERE scene = $1 AND photo = $2 RETURNING {PHOTO_COLUMNS}"
                ),
                args![scene, photo],
            )?;
            let deleted = first(row, photo_from_row)?;
            if let Some(live) = deleted.as_ref().filter(|p| p.expired_at.is_none()) {
                let mut tally = Tally::default();
                tally.photo_gone(live.bytes);
                tally.apply(c)?;
            }
            Ok(deleted)
        })
    }

    fn photos_to_expire(
        &self,
        cutoff: i64,
        bound_cutoff: i64,
        limit: usize,
    ) -> Result<Vec<PhotoMeta>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.select(
            &format!(
                "SELECT {PHOTO_COLUMNS} FROM photos p WHERE expired_at IS NULL AND created_at < $1
                 AND (created_at < $2 OR NOT EXISTS (SELECT 1 FROM bindings b WHERE b.scene = p.scene))
                 ORDER BY created_at LIMIT $3"
            ),
            args![cutoff, bound_cutoff, limit],
            photo_from_row,
        )
    }

    fn prune(&self, cutoff: i64, bound_cutoff: i64) -> Result<PruneReport, StoreError> {
        // Scenes nothing is left of: every photo expired before `cutoff` (so the gallery says
        // "expired" for one more retention period before it says "not found"), old enough for
        // whoever is bound. Deleting their expired photo rows and sessions first does not
        // change which scenes these are; their bindings go last, as the bindings of scenes no
        // longer there.
        const DEAD: &str = "SELECT s.scene FROM scenes s WHERE s.created_at < $1
             AND NOT EXISTS (SELECT 1 FROM photos p WHERE p.scene = s.scene AND (p.expired_at IS NULL OR p.expired_at >= $1))
             AND (s.created_at < $2 OR NOT EXISTS (SELECT 1 FROM bindings b WHERE b.scene = s.scene))";
        self.driver.transaction(|c| {
            let mut report = PruneReport::default();
            c.execute(
                &format!("DELETE FROM photos WHERE scene IN ({DEAD})"),
                args![cutoff, bound_cutoff],
            )?;
            c.execute(
                &format!("DELETE FROM sessions WHERE scene IN ({DEAD})"),
                args![cutoff, bound_cutoff],
            )?;
            report.scenes = c.execute(
                &format!("DELETE FROM scenes WHERE scene IN ({DEAD})"),
                args![cutoff, bound_cutoff],
            )?;
            report.bindings = c.execute(
                "DELETE FROM bindings WHERE NOT EXISTS (SELECT 1 FROM scenes s WHERE s.scene = bindings.scene)",
                args![],
            )?;
            report.wechat_events = c.execute(
                "DELETE FROM wechat_events WHERE received_at < $1",
                args![bound_cutoff],
            )?;
            report.activity =
                c.execute("DELETE FROM activity WHERE at < $1", args![bound_cutoff])?;
            report.pushes = c.execute(
                "DELETE FROM push_outbox WHERE state <> 'pending' AND created_at < $1",
                args![cutoff],
            )?;
            report.followers = c.execute(
                "DELETE FROM followers WHERE last_interaction_at < $1
                 AND NOT EXISTS (SELECT 1 FROM push_outbox p WHERE p.openid = followers.openid AND p.state = 'pending')",
                args![cutoff],
            )?;
            let mut tally = Tally::default();
            tally.rows(counter::BINDINGS, report.bindings, -1);
            tally.rows(counter::WECHAT_EVENTS, report.wechat_events, -1);
            tally.apply(c)?;
            Ok(report)
        })
    }

    fn mark_expired(&self, scene: &str, photo: &str, now: i64) -> Result<(), StoreError> {
        self.driver.transaction(|c| {
            let expired = c.query_opt(
                "UPDATE photos SET expired_at = $3 WHERE scene = $1 AND photo = $2 AND expired_at IS NULL RETURNING bytes",
                args![scene, photo, now],
            )?;
            if let Some(row) = expired {
                let mut tally = Tally::default();
                tally.photo_gone(row.int(0)?);
                tally.apply(c)?;
            }
            Ok(())
        })
    }

    fn wechat_reply(&self, dedupe: &str) -> Result<Option<String>, StoreError> {
        self.select_first(
            "SELECT reply FROM wechat_events WHERE dedupe = $1",
            args![dedupe],
            |r| r.text(0),
        )
    }

    fn record_wechat_event(&self, event: &NewWechatEvent, now: i64) -> Result<String, StoreError> {
        self.driver.transaction(|c| {
            let scene = event.bind_scene.as_ref().map(|s| s.scene.as_str());
            let inserted = c.execute(
                "INSERT INTO wechat_events (dedupe, openid, event, event_key, scene, reply, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (dedupe) DO NOTHING",
                args![
                    &event.dedupe,
                    &event.openid,
                    &event.event,
                    &event.event_key,
                    scene,
                    &event.reply,
                    now,
                ],
            )? == 1;
            if !inserted {
                // An identical push got here first (WeChat retries after 5 s, maybe to another
                // instance); answer as it was answered.
                return c
                    .query_one(
                        "SELECT reply FROM wechat_events WHERE dedupe = $1",
                        args![&event.dedupe],
                    )?
                    .text(0);
            }
            let mut tally = Tally::default();
            tally.add(counter::WECHAT_EVENTS, 1);
            if let Some(scene) = &event.bind_scene {
                // A mirror's idle code is counted for the mirror but leads to no photos.
                if scene.kind == SceneKind::Session {
                    let bound = c.execute(
                        "INSERT INTO bindings (scene, openid, event, bound_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        args![&scene.scene, &event.openid, &event.event, now],
                    )?;
                    tally.rows(counter::BINDINGS, bound, 1);
                }
                if let Some(kind) = event.activity {
                    log_activity(
                        c,
                        &mut tally,
                        &ActivityEntry {
                            kind,
                            store: &scene.store,
                            device: &scene.device,
                            scene: Some(&scene.scene),
                            dedupe: Some(&format!("wechat:{}", event.dedupe)),
                            at: now,
                        },
                    )?;
                }
            }
            tally.apply(c)?;
            Ok(event.reply.clone())
        })
    }

    fn bindings(&self, scene: &str) -> Result<Vec<Binding>, StoreError> {
        let order = D::DIALECT.bytewise();
        self.select(
            &format!(
                "SELECT scene, openid, event, bound_at FROM bindings WHERE scene = $1 ORDER BY bound_at, openid{order}"
            ),
            args![scene],
            |r| {
                Ok(Binding {
                    scene: r.text(0)?,
                    openid: r.text(1)?,
                    event: r.text(2)?,
                    bound_at: r.int(3)?,
                })
            },
        )
    }

    fn bind(&self, scene: &str, openid: &str, how: &str, now: i64) -> Result<bool, StoreError> {
        let n = self.driver.transaction(|c| {
            execute_counted(
                c,
                "INSERT INTO bindings (scene, openid, event, bound_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                args![scene, openid, how, now],
                counter::BINDINGS,
                1,
            )
        })?;
        Ok(n == 1)
    }

    fn scenes_of_openid(&self, openid: &str) -> Result<Vec<SceneRecord>, StoreError> {
        let order = D::DIALECT.bytewise();
        let columns = SCENE_COLUMNS
            .split(", ")
            .map(|c| format!("s.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.select(
            &format!(
                "SELECT {columns} FROM scenes s JOIN bindings b ON b.scene = s.scene
                 WHERE b.openid = $1 ORDER BY s.created_at DESC, s.scene{order}"
            ),
            args![openid],
            scene_from_row,
        )
    }

    fn photo_of_openid(&self, openid: &str, photo: &str) -> Result<Option<PhotoMeta>, StoreError> {
        self.select_first(
            &format!(
                "SELECT {PHOTO_COLUMNS} FROM photos WHERE photo = $2 AND scene IN (SELECT scene FROM bindings WHERE openid = $1) ORDER BY scene LIMIT 1"
            ),
            args![openid, photo],
            photo_from_row,
        )
    }

    fn forget_openid(&self, openid: &str) -> Result<Vec<PhotoMeta>, StoreError> {
        // Activity rows of a scan carry `wechat:` + the push's dedupe key, which starts with
        // the openid; the count stays, the openid goes.
        let dedupe_prefix = format!("wechat:{openid}\u{1f}");
        self.driver.transaction(|c| {
            let photos = all(
                c.query(
                    &format!(
                        "DELETE FROM photos WHERE scene IN (SELECT scene FROM bindings WHERE openid = $1) RETURNING {PHOTO_COLUMNS}"
                    ),
                    args![openid],
                )?,
                photo_from_row,
            )?;
            let bindings = c.execute("DELETE FROM bindings WHERE openid = $1", args![openid])?;
            let events =
                c.execute("DELETE FROM wechat_events WHERE openid = $1", args![openid])?;
            c.execute("DELETE FROM push_outbox WHERE openid = $1", args![openid])?;
            c.execute("DELETE FROM followers WHERE openid = $1", args![openid])?;
            c.execute(
                "UPDATE activity SET dedupe = NULL WHERE substr(dedupe, 1, length($1)) = $1",
                args![&dedupe_prefix],
            )?;
            let mut tally = Tally::default();
            for live in photos.iter().filter(|p| p.expired_at.is_none()) {
                tally.photo_gone(live.bytes);
            }
            tally.rows(counter::BINDINGS, bindings, -1);
            tally.rows(counter::WECHAT_EVENTS, events, -1);
            tally.apply(c)?;
            Ok(photos)
        })
    }

    fn note_interaction(&self, openid: &str, now: i64) -> Result<(), StoreError> {
        self.driver.run(|c| {
            c.execute(
                "INSERT INTO followers (openid, last_interaction_at) VALUES ($1, $2)
                 ON CONFLICT (openid) DO UPDATE SET last_interaction_at = excluded.last_interaction_at, stopped_at = NULL, stop_reason = NULL",
                args![openid, now],
            )
        })?;
        Ok(())
    }

    fn note_unsubscribe(&self, openid: &str, now: i64) -> Result<(), StoreError> {
        self.driver.transaction(|c| {
            c.execute(
                "INSERT INTO followers (openid, last_interaction_at, stopped_at, stop_reason) VALUES ($1, $2, $2, 'unsubscribed')
                 ON CONFLICT (openid) DO UPDATE SET stopped_at = excluded.stopped_at, stop_reason = excluded.stop_reason",
                args![openid, now],
            )?;
            c.execute(
                "UPDATE push_outbox SET state = 'stopped', finished_at = $2, last_error = 'unsubscribed' WHERE openid = $1 AND state = 'pending'",
                args![openid, now],
            )?;
            Ok(())
        })
    }

    fn enqueue_pushes(
        &self,
        scene: &str,
        due_at: i64,
        window_start: i64,
        now: i64,
    ) -> Result<usize, StoreError> {
        let n = self.driver.run(|c| {
            c.execute(
                "INSERT INTO push_outbox (scene, openid, state, due_at, attempts, created_at)
                 SELECT b.scene, b.openid, 'pending', CAST($2 AS BIGINT), 0, CAST($4 AS BIGINT) FROM bindings b JOIN followers f ON f.openid = b.openid
                 WHERE b.scene = $1 AND f.stopped_at IS NULL AND f.last_interaction_at >= $3
                 ON CONFLICT (scene, openid) WHERE state = 'pending' DO UPDATE SET due_at = excluded.due_at",
                args![scene, due_at, window_start, now],
            )
        })?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn claim_due_pushes(
        &self,
        holder: &str,
        now: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<DuePush>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.driver.transaction(|c| {
            c.execute(
                "UPDATE push_outbox SET claimed_by = $1, claimed_until = $3 WHERE id IN (
                     SELECT id FROM push_outbox WHERE state = 'pending' AND due_at <= $2
                         AND (claimed_until IS NULL OR claimed_until <= $2)
                     ORDER BY due_at LIMIT $4)",
                args![holder, now, until, limit],
            )?;
            c.query(
                "SELECT p.id, p.scene, p.openid, p.attempts, COALESCE(f.last_interaction_at, 0), f.stopped_at
                 FROM push_outbox p LEFT JOIN followers f ON f.openid = p.openid
                 WHERE p.state = 'pending' AND p.claimed_by = $1 AND p.claimed_until = $2
                 ORDER BY p.due_at, p.id",
                args![holder, until],
            )
        })?;
        all(rows, |r| {
            Ok(DuePush {
                id: r.int(0)?,
                scene: r.text(1)?,
                openid: r.text(2)?,
                attempts: r.int(3)?,
                last_interaction_at: r.int(4)?,
                stopped: r.opt_int(5)?.is_some(),
            })
        })
    }

    fn release_push(&self, push: &DuePush) -> Result<(), StoreError> {
        self.driver.run(|c| {
            c.execute(
                "UPDATE push_outbox SET claimed_by = NULL, claimed_until = NULL WHERE id = $1 AND state = 'pending'",
                args![push.id],
            )
        })?;
        Ok(())
    }

    fn finish_push(
        &self,
        push: &DuePush,
        outcome: &PushOutcome,
        now: i64,
    ) -> Result<(), StoreError> {
        self.driver.transaction(|c| {
            match outcome {
                PushOutcome::Sent => c.execute(
                    "UPDATE push_outbox SET state = 'sent', attempts = attempts + 1, finished_at = $2, claimed_by = NULL, claimed_until = NULL WHERE id = $1",
                    args![push.id, now],
                )?,
                PushOutcome::Stopped { reason, stop_openid } => {
                    if *stop_openid {
                        c.execute(
                            "UPDATE followers SET stopped_at = $2, stop_reason = $3 WHERE openid = $1",
                            args![&push.openid, now, reason],
                        )?;
                        c.execute(
                            "UPDATE push_outbox SET state = 'stopped', finished_at = $2, last_error = $3 WHERE openid = $1 AND state = 'pending' AND id <> $4",
                            args![&push.openid, now, reason, push.id],
                        )?;
                    }
                    c.execute(
                        "UPDATE push_outbox SET state = 'stopped', attempts = attempts + 1, finished_at = $2, last_error = $3, claimed_by = NULL, claimed_until = NULL WHERE id = $1",
                        args![push.id, now, reason],
                    )?
                }
                PushOutcome::Retry { due_at, error } => c.execute(
                    "UPDATE push_outbox SET attempts = attempts + 1, due_at = $2, last_error = $3, claimed_by = NULL, claimed_until = NULL WHERE id = $1",
                    args![push.id, *due_at, error],
                )?,
                PushOutcome::Failed { error } => c.execute(
                    "UPDATE push_outbox SET state = 'failed', attempts = attempts + 1, finished_at = $2, last_error = $3, claimed_by = NULL, claimed_until = NULL WHERE id = $1",
                    args![push.id, now, error],
                )?,
            };
            Ok(())
        })
    }

    fn pushes_of_scene(&self, scene: &str) -> Result<Vec<PushRecord>, StoreError> {
        self.select(
            "SELECT scene, openid, state, attempts, last_error FROM push_outbox WHERE scene = $1 ORDER BY id",
            args![scene],
            |r| {
                Ok(PushRecord {
                    scene: r.text(0)?,
                    openid: r.text(1)?,
                    state: r.text(2)?,
                    attempts: r.int(3)?,
                    last_error: r.opt_text(4)?,
                })
            },
        )
    }

    fn wechat_event_count(&self) -> Result<u64, StoreError> {
        self.driver
            .run(|c| c.query_one("SELECT COUNT(*) FROM wechat_events", args![]))?
            .count(0)
    }

    fn record_activity(
        &self,
        kind: Activity,
        scene: &SceneRecord,
        dedupe: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.driver.transaction(|c| {
            let mut tally = Tally::default();
            let logged = log_activity(
                c,
                &mut tally,
                &ActivityEntry {
                    kind,
                    store: &scene.store,
                    device: &scene.device,
                    scene: Some(&scene.scene),
                    dedupe,
                    at: now,
                },
            )?;
            tally.apply(c)?;
            Ok(logged)
        })
    }

    fn stats(
        &self,
        utc_offset_s: i64,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<StatsRow>, StoreError> {
        let day = D::DIALECT.utc_day("at + CAST($1 AS BIGINT)");
        let order = D::DIALECT.bytewise();
        let rows = self.select(
            &format!(
                "SELECT store, device, day, kind, COUNT(*) FROM (
                    SELECT store, device, kind, {day} AS day FROM activity
                 ) AS a
                 WHERE (CAST($2 AS TEXT) IS NULL OR day >= $2) AND (CAST($3 AS TEXT) IS NULL OR day <= $3)
                 GROUP BY store, device, day, kind
                 ORDER BY day{order}, store{order}, device{order}"
            ),
            args![utc_offset_s, from, to],
            |r| Ok((r.text(0)?, r.text(1)?, r.text(2)?, r.text(3)?, r.int(4)?)),
        )?;
        Ok(fold_stats(rows))
    }

    fn totals(&self) -> Result<Totals, StoreError> {
        let rows = self
            .driver
            .run(|c| c.query("SELECT name, value FROM counters", args![]))?;
        let mut totals = Totals::default();
        let mut by_kind = Vec::new();
        for row in &rows {
            let (name, value) = (row.text(0)?, row.count(1)?);
            match name.as_str() {
                counter::PHOTOS_STORED => totals.photos_stored = value,
                counter::PHOTO_BYTES_STORED => totals.photo_bytes_stored = value,
                counter::DEVICES_ACTIVE => totals.active_devices = value,
                counter::BINDINGS => totals.bindings = value,
                counter::WECHAT_EVENTS => totals.wechat_events = value,
                other => {
                    if let Some(kind) = other.strip_prefix(counter::ACTIVITY_PREFIX) {
                        by_kind.push((kind.to_string(), row.int(1)?));
                    }
                }
            }
        }
        totals.activity = activity_totals(by_kind);
        Ok(totals)
    }

    fn claim_push_nonce(
        &self,
        signed_at: i64,
        nonce: &str,
        body_sha256: &str,
        now: i64,
        keep_until: i64,
    ) -> Result<NonceUse, StoreError> {
        self.driver.transaction(|c| {
            c.execute(
                "DELETE FROM push_nonces WHERE keep_until < $1",
                args![now],
            )?;
            let fresh = c.execute(
                "INSERT INTO push_nonces (signed_at, nonce, body_sha256, keep_until) VALUES ($1, $2, $3, $4) ON CONFLICT (signed_at, nonce) DO NOTHING",
                args![signed_at, nonce, body_sha256, keep_until],
            )? == 1;
            if fresh {
                return Ok(NonceUse::Fresh);
            }
            let seen = c
                .query_one(
                    "SELECT body_sha256 FROM push_nonces WHERE signed_at = $1 AND nonce = $2",
                    args![signed_at, nonce],
                )?
                .text(0)?;
            Ok(if seen == body_sha256 {
                NonceUse::SameBody
            } else {
                NonceUse::OtherBody
            })
        })
    }

    fn referenced_blobs(&self, keys: &[String]) -> Result<HashSet<String>, StoreError> {
        let mut out = HashSet::new();
        // Well under either database's bound-parameter limit.
        for chunk in keys.chunks(500) {
            let marks = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let values: Vec<_> = chunk.iter().map(driver::Value::from).collect();
            let rows = self.driver.run(|c| {
                c.query(
                    &format!(
                        "SELECT blob_key FROM photos WHERE expired_at IS NULL AND blob_key IN ({marks})
                         UNION SELECT poster_key FROM photos WHERE expired_at IS NULL AND poster_key IN ({marks})"
                    ),
                    &values,
                )
            })?;
            for row in rows {
                out.insert(row.text(0)?);
            }
        }
        Ok(out)
    }

    fn shared_token(&self, name: &str) -> Result<Option<SharedToken>, StoreError> {
        self.select_first(
            "SELECT token, expires_at, fetched_at, fetched_by FROM access_tokens WHERE name = $1 AND token IS NOT NULL",
            args![name],
            |r| {
                Ok(SharedToken {
                    token: r.text(0)?,
                    expires_at: r.int(1)?,
                    fetched_at: r.int(2)?,
                    holder: r.text(3)?,
                })
            },
        )
    }

    fn acquire_token_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        let n = self.driver.run(|c| {
            c.execute(
                "INSERT INTO access_tokens (name, lease_holder, lease_until) VALUES ($1, $2, $4)
                 ON CONFLICT (name) DO UPDATE SET lease_holder = excluded.lease_holder, lease_until = excluded.lease_until
                 WHERE access_tokens.lease_holder IS NULL OR access_tokens.lease_until <= $3 OR access_tokens.lease_holder = $2",
                args![name, holder, now, until],
            )
        })?;
        Ok(n == 1)
    }

    fn publish_token(
        &self,
        name: &str,
        holder: &str,
        token: &SharedToken,
    ) -> Result<bool, StoreError> {
        let n = self.driver.run(|c| {
            c.execute(
                "UPDATE access_tokens SET token = $3, expires_at = $4, fetched_at = $5, fetched_by = $2,
                     lease_holder = NULL, lease_until = NULL
                 WHERE name = $1 AND lease_holder = $2",
                args![name, holder, &token.token, token.expires_at, token.fetched_at],
            )
        })?;
        Ok(n == 1)
    }

    fn release_token_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.driver.run(|c| {
            c.execute(
                "UPDATE access_tokens SET lease_holder = NULL, lease_until = NULL WHERE name = $1 AND lease_holder = $2",
                args![name, holder],
            )
        })?;
        Ok(())
    }
}
