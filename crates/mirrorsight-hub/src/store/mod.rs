//! Where the hub keeps its state: metadata in a [`Store`] (SQLite by default, PostgreSQL for a
//! chain running several instances), photo bytes in a [`BlobStore`] (a local directory by
//! default, an S3-compatible bucket for a fleet). The hub itself keeps nothing in memory that
//! another instance would need, so both are the whole truth.
//!
//! Both traits are blocking: the HTTP layer calls them through `spawn_blocking`, so an
//! implementation may do plain file or socket I/O.
//!
//! The metadata logic is written once ([`sql::SqlStore`]); SQLite and PostgreSQL are drivers
//! under it that differ only in their SQL dialect and how they connect.

pub mod blob;
pub mod postgres;
pub mod s3;
pub mod sql;
pub mod sqlite;

pub use self::postgres::{PostgresSettings, PostgresStore, is_postgres_url};
pub use blob::{BlobEntry, BlobError, BlobStore, LocalBlobStore};
pub use s3::{CHAIN_VARIABLES, S3BlobStore, S3Credentials, S3Settings};
pub use sql::SqlStore;
pub use sqlite::SqliteStore;

use std::collections::HashSet;

pub use mirrorsight_contract::backend::SceneKind;
use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0} not found")]
    NotFound(String),
}

/// A mirror allowed to talk to the relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub id: String,
    /// The shop the mirror stands in; statistics are grouped by it.
    pub store: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A scene: the hub's view of one shopper session, keyed by what its QR code carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SceneRecord {
    pub scene: String,
    /// The device that owns it: the one that minted it, or else the first to upload to it.
    pub device: String,
    pub store: String,
    /// Set once the scene was minted through `/v1/scenes`.
    pub code: Option<MintedScene>,
    /// The gallery key (base64url of 128 random bits). Kept as-is because every scan and
    /// every retry must be answered with the same link; compared in constant time.
    pub gallery_key: String,
    pub created_at: i64,
    /// A session's code, or a mirror's permanent idle code (welcomed, counted, binds nothing).
    pub kind: SceneKind,
}

/// What WeChat answered when the scene was minted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintedScene {
    pub url: String,
    pub ticket: Option<String>,
    pub expires_at: i64,
    pub minted_at: i64,
}

/// Result of [`Store::record_minted_scene`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MintOutcome {
    /// Newly recorded (also when the device had claimed the scene by uploading first).
    Created(SceneRecord),
    /// This device had already minted it; the stored record, unchanged.
    Existing(SceneRecord),
    /// Another device owns the scene.
    Forbidden,
}

/// Result of [`Store::claim_scene`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Owned(SceneRecord),
    Forbidden,
}

/// What a row of the photo store holds: a photo, or a turn-around clip (H.264 MP4) with its
/// poster frame. Clips are kept, bound, expired and deleted exactly like photos.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Media {
    #[default]
    Photo,
    Clip,
}

impl Media {
    pub fn as_str(self) -> &'static str {
        match self {
            Media::Photo => "photo",
            Media::Clip => "clip",
        }
    }

    /// What the database column holds; anything unknown reads as a photo.
    pub fn parse(s: &str) -> Self {
        match s {
            "clip" => Media::Clip,
            _ => Media::Photo,
        }
    }
}

/// Metadata of one uploaded photo (or clip: see [`Media`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhotoMeta {
    pub scene: String,
    pub photo: String,
    pub device: String,
    pub session_id: String,
    pub taken_at_ms: i64,
    pub trigger: String,
    pub sha256: String,
    pub bytes: i64,
    pub blob_key: String,
    pub created_at: i64,
    /// Set when retention removed the bytes; the row stays so the gallery can say so.
    pub expired_at: Option<i64>,
    pub media: Media,
    /// A clip's poster frame (JPEG), once the mirror put it.
    pub poster_key: Option<String>,
}

impl PhotoMeta {
    /// Every blob the row owns: the bytes, and a clip's poster. Whoever removes the row or
    /// expires it removes all of them.
    pub fn blob_keys(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.blob_key.as_str()).chain(self.poster_key.as_deref())
    }
}

/// Result of [`Store::insert_photo`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhotoInsert {
    Created,
    /// Already stored with the same digest (a retry).
    SameBytes,
    /// Already stored with another digest; the stored row is untouched.
    Conflict,
}

/// Counted things, one row each in the activity log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activity {
    /// A mirror session (`X-Session-Id`) uploaded its first photo.
    Session,
    CodeMinted,
    /// `subscribe` with a scene: the scanner followed the account.
    ScanNewFollower,
    /// `SCAN`: the scanner was already following.
    ScanAlreadyFollowing,
    /// A photo was downloaded from the gallery (first time only).
    PhotoDelivered,
    /// A session's gallery was opened (first time only).
    GalleryOpened,
}

impl Activity {
    pub const ALL: [Activity; 6] = [
        Activity::Session,
        Activity::CodeMinted,
        Activity::ScanNewFollower,
        Activity::ScanAlreadyFollowing,
        Activity::PhotoDelivered,
        Activity::GalleryOpened,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Session => "session",
            Activity::CodeMinted => "code_minted",
            Activity::ScanNewFollower => "scan_new_follower",
            Activity::ScanAlreadyFollowing => "scan_already_following",
            Activity::PhotoDelivered => "photo_delivered",
            Activity::GalleryOpened => "gallery_opened",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// A WeChat push to record, with the reply it got. Recording and binding happen in one
/// transaction, keyed by `dedupe`, so a retried push is recorded once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWechatEvent {
    /// FromUserName, CreateTime, Event and EventKey together.
    pub dedupe: String,
    pub openid: String,
    pub event: String,
    pub event_key: String,
    /// The known scene the push names, if any; with it the openid is bound to the scene.
    pub bind_scene: Option<SceneRecord>,
    pub activity: Option<Activity>,
    /// The plaintext reply XML.
    pub reply: String,
}

/// One scanner bound to a scene.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub scene: String,
    pub openid: String,
    pub event: String,
    pub bound_at: i64,
}

/// A customer-service message due, claimed by one instance until its lease ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuePush {
    pub id: i64,
    pub scene: String,
    pub openid: String,
    /// Tries so far (before this one).
    pub attempts: i64,
    /// When the shopper last interacted with the account (WeChat's 48 h window).
    pub last_interaction_at: i64,
    /// Set when the shopper unsubscribed or WeChat said the window passed: send nothing.
    pub stopped: bool,
}

/// Scans of one scene in a period (`/v1/stats/scenes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SceneScans {
    pub scene: String,
    pub store: String,
    /// The mirror whose code it is.
    pub device: String,
    /// `session` (a shopper session's code) or `idle` (the mirror's permanent code).
    pub source: String,
    /// Scans by people already following the account.
    pub scans_following: u64,
    /// Scans that made the scanner follow the account.
    pub scans_new_follower: u64,
}

/// Rows [`Store::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub scenes: u64,
    pub bindings: u64,
    pub wechat_events: u64,
    pub activity: u64,
    pub pushes: u64,
    pub followers: u64,
}

/// How a claimed push ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    Sent,
    /// Not sent, never to be: `reason` (`45015`, `43004`, `unsubscribed`, `window`); with
    /// `stop_openid`, nothing more is pushed to that openid until they interact again.
    Stopped {
        reason: String,
        stop_openid: bool,
    },
    /// Try again at `due_at` (`45047`, `-1`, WeChat unreachable).
    Retry {
        due_at: i64,
        error: String,
    },
    /// Not sent; retrying cannot help (`error`).
    Failed {
        error: String,
    },
}

/// One row of the push outbox, for tests and operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRecord {
    pub scene: String,
    pub openid: String,
    /// `pending`, `sent`, `stopped` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// Counts of one store, mirror and day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatsRow {
    pub store: String,
    pub mirror: String,
    /// `YYYY-MM-DD` in the configured UTC offset.
    pub day: String,
    pub sessions: u64,
    pub codes_minted: u64,
    /// New followers plus already-following.
    pub scans: u64,
    pub new_followers: u64,
    pub already_following: u64,
    pub photos_delivered: u64,
    pub galleries_opened: u64,
}

/// Folds `(store, mirror, day, activity kind, count)` rows, sorted by day, store and mirror,
/// into one [`StatsRow`] per store, mirror and day: the definitions (scans = new followers +
/// already following) in one place.
pub(crate) fn fold_stats(
    rows: impl IntoIterator<Item = (String, String, String, String, i64)>,
) -> Vec<StatsRow> {
    let mut out: Vec<StatsRow> = Vec::new();
    for (store, mirror, day, kind, n) in rows {
        let same = out
            .last()
            .is_some_and(|l| l.store == store && l.mirror == mirror && l.day == day);
        if !same {
            out.push(StatsRow {
                store,
                mirror,
                day,
                ..StatsRow::default()
            });
        }
        let Some(entry) = out.last_mut() else {
            continue;
        };
        let n = u64::try_from(n).unwrap_or(0);
        match Activity::parse(&kind) {
            Some(Activity::Session) => entry.sessions += n,
            Some(Activity::CodeMinted) => entry.codes_minted += n,
            Some(Activity::ScanNewFollower) => {
                entry.new_followers += n;
                entry.scans += n;
            }
            Some(Activity::ScanAlreadyFollowing) => {
                entry.already_following += n;
                entry.scans += n;
            }
            Some(Activity::PhotoDelivered) => entry.photos_delivered += n,
            Some(Activity::GalleryOpened) => entry.galleries_opened += n,
            None => {}
        }
    }
    out
}

/// Per-kind activity totals, every kind present (zero when never logged).
pub(crate) fn activity_totals(
    rows: impl IntoIterator<Item = (String, i64)>,
) -> Vec<(Activity, u64)> {
    let by_kind: std::collections::HashMap<Activity, u64> = rows
        .into_iter()
        .filter_map(|(kind, n)| Some((Activity::parse(&kind)?, u64::try_from(n).unwrap_or(0))))
        .collect();
    Activity::ALL
        .into_iter()
        .map(|k| (k, by_kind.get(&k).copied().unwrap_or(0)))
        .collect()
}

/// What [`Store::claim_push_nonce`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceUse {
    /// First seen now.
    Fresh,
    /// Seen before with the same body: WeChat retrying the same request.
    SameBody,
    /// Seen before with another body: a captured signed URL carrying a forged push.
    OtherBody,
}

/// Whole-hub figures for `/metrics`, kept up to date by the writes they count (never counted
/// from the tables on a scrape).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub activity: Vec<(Activity, u64)>,
    pub photos_stored: u64,
    pub photo_bytes_stored: u64,
    pub active_devices: u64,
    pub bindings: u64,
    pub wechat_events: u64,
}

/// The access token every hub instance shares (see `crate::lease`), as the lease holder
/// published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedToken {
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub fetched_at: i64,
    /// The instance that fetched it.
    pub holder: String,
}

/// The hub's metadata. Blocking; see the module docs.
pub trait Store: Send + Sync + 'static {
    fn ping(&self) -> Result<(), StoreError>;

    fn add_device(
        &self,
        id: &str,
        store: &str,
        token_sha256: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// `false` when there is no such active device.
    fn revoke_device(&self, id: &str, now: i64) -> Result<bool, StoreError>;
    fn list_devices(&self) -> Result<Vec<Device>, StoreError>;
    /// The active (not revoked) device with this token digest.
    fn device_by_token(&self, token_sha256: &str) -> Result<Option<Device>, StoreError>;

    fn scene(&self, scene: &str) -> Result<Option<SceneRecord>, StoreError>;
    /// Records a code `device` minted itself (`PUT /v1/scenes/{scene}`), or a permanent idle
    /// code, with its `kind`: new (`Created`, a `CodeMinted` activity), or this device's scene
    /// updated to `code` and `kind` (`Existing`), or `Forbidden` (another device's).
    fn register_scene(
        &self,
        scene: &str,
        device: &Device,
        code: &MintedScene,
        kind: SceneKind,
        gallery_key: &str,
        now: i64,
    ) -> Result<MintOutcome, StoreError>;
    /// Scans per scene and source, for days `from..=to` (`YYYY-MM-DD`, inclusive).
    fn scene_scans(
        &self,
        utc_offset_s: i64,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<SceneScans>, StoreError>;
    /// Records a code minted for `scene` by `device` (and a `CodeMinted` activity), unless the
    /// scene is already minted or owned by someone else. `gallery_key` is used only when the
    /// scene is new.
    fn record_minted_scene(
        &self,
        scene: &str,
        device: &Device,
        code: &MintedScene,
        gallery_key: &str,
        now: i64,
    ) -> Result<MintOutcome, StoreError>;
    /// The scene for an upload or delete by `device`: its own, or claimed now if nobody has it.
    fn claim_scene(
        &self,
        scene: &str,
        device: &Device,
        gallery_key: &str,
        now: i64,
    ) -> Result<Claim, StoreError>;

    /// Inserts the photo unless its id is taken; also notes its mirror session.
    fn insert_photo(&self, photo: &PhotoMeta, store: &str) -> Result<PhotoInsert, StoreError>;
    fn photo(&self, scene: &str, photo: &str) -> Result<Option<PhotoMeta>, StoreError>;
    /// Points the clip `clip` of `scene` at its poster's blob `key`. Returns the key it had
    /// before (the caller removes those bytes), `Ok(None)` with nothing to remove, or
    /// `Err(StoreError::NotFound)` when no live clip has that id.
    fn set_poster(&self, scene: &str, clip: &str, key: &str) -> Result<Option<String>, StoreError>;
    /// All photos of a scene, expired ones included, in the order they were taken.
    fn photos_of_scene(&self, scene: &str) -> Result<Vec<PhotoMeta>, StoreError>;
    /// Removes the row; the caller then removes the bytes.
    fn delete_photo(&self, scene: &str, photo: &str) -> Result<Option<PhotoMeta>, StoreError>;
    /// Live photos to expire, at most `limit`: those of a session bound to no openid uploaded
    /// before `cutoff`, and every one uploaded before `bound_cutoff` (earlier).
    fn photos_to_expire(
        &self,
        cutoff: i64,
        bound_cutoff: i64,
        limit: usize,
    ) -> Result<Vec<PhotoMeta>, StoreError>;
    /// Forgets what retention has made useless, so openids are not kept forever: scenes whose
    /// photos all expired before `cutoff` (their sessions, photo rows and bindings), created
    /// before `bound_cutoff`, or before `cutoff` if nobody is bound; recorded WeChat pushes and
    /// activity rows before `bound_cutoff`; finished outbox rows and followers not heard from
    /// before `cutoff`. The running totals stay.
    fn prune(&self, cutoff: i64, bound_cutoff: i64) -> Result<PruneReport, StoreError>;
    fn mark_expired(&self, scene: &str, photo: &str, now: i64) -> Result<(), StoreError>;

    /// The reply recorded for a push with this dedupe key.
    fn wechat_reply(&self, dedupe: &str) -> Result<Option<String>, StoreError>;
    /// Records the push, binds and counts it, all or nothing. Returns the reply to send: this
    /// one, or the one recorded first if an identical push won a race.
    fn record_wechat_event(&self, event: &NewWechatEvent, now: i64) -> Result<String, StoreError>;
    fn bindings(&self, scene: &str) -> Result<Vec<Binding>, StoreError>;
    /// Binds `openid` to `scene` (`how`: the event, or `signin` for "keep these in my
    /// photos" from the gallery). `true` when the binding is new.
    fn bind(&self, scene: &str, openid: &str, how: &str, now: i64) -> Result<bool, StoreError>;
    /// The scenes bound to `openid`, newest first, across mirrors and stores.
    fn scenes_of_openid(&self, openid: &str) -> Result<Vec<SceneRecord>, StoreError>;
    /// The photo `photo` of a scene bound to `openid`, if there is one.
    fn photo_of_openid(&self, openid: &str, photo: &str) -> Result<Option<PhotoMeta>, StoreError>;
    /// "Forget me": removes every photo of a scene bound to `openid`, its bindings, its
    /// recorded pushes, and the openid from the activity log's dedupe keys, in one
    /// transaction. Returns the photos removed; the caller then removes their bytes.
    fn forget_openid(&self, openid: &str) -> Result<Vec<PhotoMeta>, StoreError>;
    fn wechat_event_count(&self) -> Result<u64, StoreError>;

    /// `openid` interacted with the account now (a scan): WeChat's 48 h window restarts and a
    /// stop (unsubscribe, `45015`, `43004`) is lifted.
    fn note_interaction(&self, openid: &str, now: i64) -> Result<(), StoreError>;
    /// `openid` unfollowed: nothing more is pushed to them; pending pushes are stopped.
    fn note_unsubscribe(&self, openid: &str, now: i64) -> Result<(), StoreError>;
    /// New photos of `scene`: for every openid bound to it that interacted since
    /// `window_start` and is not stopped, a pending push due at `due_at` (moved to `due_at`
    /// if one is pending already, so a burst of photos is one message). Returns how many.
    fn enqueue_pushes(
        &self,
        scene: &str,
        due_at: i64,
        window_start: i64,
        now: i64,
    ) -> Result<usize, StoreError>;
    /// Claims up to `limit` pending pushes due by `now` for `holder` until `until` (another
    /// instance, or this one after a restart, takes them once the claim lapses).
    fn claim_due_pushes(
        &self,
        holder: &str,
        now: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<DuePush>, StoreError>;
    /// Gives a claimed push back unsent (the instance is stopping), due as it was.
    fn release_push(&self, push: &DuePush) -> Result<(), StoreError>;
    /// Records how a claimed push ended.
    fn finish_push(
        &self,
        push: &DuePush,
        outcome: &PushOutcome,
        now: i64,
    ) -> Result<(), StoreError>;
    /// The outbox rows of `scene`, oldest first.
    fn pushes_of_scene(&self, scene: &str) -> Result<Vec<PushRecord>, StoreError>;

    /// Logs an activity of `scene`'s device. With a `dedupe` key it is logged at most once;
    /// `true` when logged now.
    fn record_activity(
        &self,
        kind: Activity,
        scene: &SceneRecord,
        dedupe: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Per store, mirror and day, for days `from..=to` (`YYYY-MM-DD`, inclusive).
    fn stats(
        &self,
        utc_offset_s: i64,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<StatsRow>, StoreError>;
    fn totals(&self) -> Result<Totals, StoreError>;

    /// Notes that a signed push with `(signed_at, nonce)` carried a body of digest
    /// `body_sha256`, remembered until `keep_until` (Unix seconds; pairs older than `now` are
    /// forgotten). Shared by every instance on the database.
    fn claim_push_nonce(
        &self,
        signed_at: i64,
        nonce: &str,
        body_sha256: &str,
        now: i64,
        keep_until: i64,
    ) -> Result<NonceUse, StoreError>;

    /// Which of `keys` a photo row still needs (live or not yet expired); the orphan sweep
    /// deletes blobs outside this set.
    fn referenced_blobs(&self, keys: &[String]) -> Result<HashSet<String>, StoreError>;

    /// The access token named `name` as last published, if any.
    fn shared_token(&self, name: &str) -> Result<Option<SharedToken>, StoreError>;
    /// Takes the refresh lease of `name` for `holder` until `until` (Unix seconds) if it is
    /// free, expired or already `holder`'s. `true` when `holder` now holds it. Only the holder
    /// asks WeChat for a token, so a chain's instances never refresh over each other.
    fn acquire_token_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError>;
    /// Publishes a fetched token and frees the lease, if `holder` still holds it (`false`
    /// otherwise: the lease ran out and another instance took over; the token is dropped).
    fn publish_token(
        &self,
        name: &str,
        holder: &str,
        token: &SharedToken,
    ) -> Result<bool, StoreError>;
    /// Frees the lease without publishing (the fetch failed).
    fn release_token_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;
}
