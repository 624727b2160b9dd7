//! The durable spool: every photo the shopper was told about is on disk before the
//! `photo_saved` event, and stays there until the backend confirmed it.
//!
//! Layout (directories 0700, files 0600, whatever the umask):
//! ```text
//! <spool_dir>/.lock               flock: one process per spool
//! <spool_dir>/<photo>.jpg         the photo, byte-identical to what is uploaded
//! <spool_dir>/<photo>.json        its sidecar (`Sidecar`): the source of truth for its state
//! <spool_dir>/sessions/<s>.json   per-session manifest (`Manifest`), rebuilt from sidecars on open
//! <spool_dir>/quarantine/         files that must never be uploaded (no or bad sidecar)
//! <dir>/.tmp-*                    a write in progress; deleted on open
//! ```
//! Every file is written as temp file → write → fsync → rename → fsync of the directory, so a
//! crash leaves either the old or the new file, never a partial one under the real name. The
//! jpg is written before its sidecar: a jpg without a sidecar is a save that never completed
//! (never reported, never uploaded: quarantined), a sidecar always describes a complete jpg
//! (checked against its sha256 before every upload).

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use mirrorsight_contract::events::EventKind;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::sync::Notify;
use tracing::{error, info, warn};

use crate::config::PhotosConfig;

const TMP_PREFIX: &str = ".tmp-";
const LOCK_FILE: &str = ".lock";
const SESSIONS_DIR: &str = "sessions";
const QUARANTINE_DIR: &str = "quarantine";
const SIDECAR_VERSION: u32 = 1;
const FILE_MODE: u32 = 0o600;
const LOCK_WAIT: Duration = Duration::from_secs(2);
const DIR_MODE: u32 = 0o700;

// ---------------------------------------------------------------------------------------------
// Ids

/// A photo id: 128 random bits as 22 base64url characters. Unguessable, because it appears in
/// URLs; and safe as a file name, because it is checked on the way in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhotoId(String);

impl PhotoId {
    /// The caller draws the bits (OS randomness live, a seeded stream in replay).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts exactly what `from_bytes` produces (e.g. the daemon's `IdGenerator::next_id`).
    pub fn parse(s: &str) -> Result<Self, SpoolError> {
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s);
        match decoded {
            Ok(bytes) if bytes.len() == 16 && s.len() == 22 => Ok(Self(s.to_string())),
            _ => Err(SpoolError::Invalid {
                what: "photo id",
                value: s.chars().take(40).collect(),
                expected: "22 base64url characters (128 random bits)",
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PhotoId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for PhotoId {
    type Error = SpoolError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<PhotoId> for String {
    fn from(id: PhotoId) -> Self {
        id.0
    }
}

/// Session and scene ids end up in file names, URL paths and HTTP headers: only
/// `[A-Za-z0-9_-]`, 1–64 characters.
fn check_token(what: &'static str, value: &str) -> Result<(), SpoolError> {
    let ok = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(SpoolError::Invalid {
            what,
            value: value.chars().take(70).collect(),
            expected: "1-64 characters of [A-Za-z0-9_-]",
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

#[derive(Debug, Error)]
pub enum SpoolError {
    #[error(
        "photo refused: spool quota reached ({used_bytes} of {quota_bytes} bytes used, {waiting} photo(s) waiting \
         for upload). Photos not yet uploaded are never deleted to make room; check that the uploader reaches the \
         backend, or raise photos.spool_quota_mb"
    )]
    QuotaExceeded {
        used_bytes: u64,
        quota_bytes: u64,
        waiting: usize,
    },
    #[error(
        "no space left on the filesystem holding {path}: free space there, or set photos.spool_quota_mb below the \
         free space; photos already in the spool are kept"
    )]
    DiskFull { path: PathBuf },
    #[error(
        "{path} is on a read-only filesystem: remount it read-write or point photos.spool_dir at a writable \
         directory; photos already in the spool are kept"
    )]
    ReadOnly { path: PathBuf },
    #[error(
        "permission denied on {path}: the spool directory must belong to the service user \
         (chown <service user> {dir} && chmod 0700 {dir}), or point photos.spool_dir elsewhere"
    )]
    PermissionDenied { path: PathBuf, dir: PathBuf },
    #[error(
        "spool {dir} is in use by another process (lock {dir}/.lock): run one daemon per spool directory"
    )]
    Locked { dir: PathBuf },
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid {what} {value:?}: expected {expected}")]
    Invalid {
        what: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("photo {0} is already in the spool (ids must be unique)")]
    Duplicate(PhotoId),
    #[error("refusing to spool {bytes} bytes that are not a JPEG (no FF D8 marker)")]
    NotJpeg { bytes: usize },
}

impl SpoolError {
    /// A short stable word for the `reason` of a `photo_refused` event.
    pub fn reason(&self) -> &'static str {
        match self {
            SpoolError::QuotaExceeded { .. } => "spool_quota_reached",
            SpoolError::DiskFull { .. } => "disk_full",
            SpoolError::ReadOnly { .. } => "spool_read_only",
            SpoolError::PermissionDenied { .. } => "spool_permission_denied",
            SpoolError::Locked { .. } => "spool_locked",
            SpoolError::Io { .. } => "spool_io_error",
            SpoolError::Invalid { .. } | SpoolError::NotJpeg { .. } => "invalid_photo",
            SpoolError::Duplicate(_) => "duplicate_photo_id",
        }
    }

    /// The `photo_refused` event for a photo this error prevented.
    pub fn refused_event(&self, session: &str) -> EventKind {
        EventKind::PhotoRefused {
            session: session.to_string(),
            reason: self.reason().to_string(),
        }
    }
}

/// Turns an OS error into the typed error that says what to do about it.
fn io_error(op: &'static str, path: &Path, spool_dir: &Path, e: io::Error) -> SpoolError {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => SpoolError::DiskFull {
            path: path.to_path_buf(),
        },
        Some(libc::EROFS) => SpoolError::ReadOnly {
            path: path.to_path_buf(),
        },
        Some(libc::EACCES) | Some(libc::EPERM) => SpoolError::PermissionDenied {
            path: path.to_path_buf(),
            dir: spool_dir.to_path_buf(),
        },
        _ => SpoolError::Io {
            op,
            path: path.to_path_buf(),
            source: e,
        },
    }
}

// ---------------------------------------------------------------------------------------------
// On-disk records

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhotoState {
    /// On disk, not yet confirmed by the backend.
    Pending,
    /// The backend confirmed it (same sha256); deleted after `photos.retention_s`.
    Uploaded,
    /// The backend refused it for good (4xx). Kept; retried once after each restart, since
    /// the usual causes (token, config) are fixed by a restart.
    Failed,
    /// Discarded by the shopper: the jpg is gone, the sidecar stays as a tombstone until the
    /// backend confirmed the delete (if it may have a copy).
    Discarded,
}

/// `<photo>.json`. Unknown fields are tolerated so an older daemon can read a newer spool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    pub version: u32,
    pub photo: PhotoId,
    pub session: String,
    pub scene: String,
    /// Unix time in milliseconds when the photo was taken.
    pub taken_at: u64,
    /// Media time (seconds since the start of the source), as in the events.
    pub t: f64,
    pub trigger: String,
    /// Lower-case hex SHA-256 of the jpg.
    pub sha256: String,
    pub bytes: u64,
    pub state: PhotoState,
    /// Unix ms when the backend confirmed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_at: Option<u64>,
    /// Why the backend refused it (state `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Discarded and the backend may hold a copy: a DELETE is still owed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_remote: bool,
}

/// `sessions/<session>.json`: the session's photos in the order they were taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub session: String,
    pub scene: String,
    pub photos: Vec<ManifestPhoto>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestPhoto {
    pub photo: PhotoId,
    pub file: String,
    pub taken_at: u64,
    pub trigger: String,
}

// ---------------------------------------------------------------------------------------------
// API types

/// What the caller knows about a photo it hands to `save`.
#[derive(Debug, Clone, PartialEq)]
pub struct PhotoMeta {
    pub session: String,
    pub scene: String,
    /// Unix ms, wall clock.
    pub taken_at: u64,
    /// Media time of the chosen frame.
    pub t: f64,
    /// What asked for it, e.g. `thumbs_up` or `outfit_switch` (`[A-Za-z0-9_-]`, ≤ 64).
    pub trigger: String,
}

/// A photo that is durably in the spool.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedPhoto {
    pub photo: PhotoId,
    pub path: PathBuf,
    pub session: String,
    pub scene: String,
    pub trigger: String,
    pub sha256: String,
    pub bytes: u64,
}

impl SavedPhoto {
    pub fn event(&self) -> EventKind {
        EventKind::PhotoSaved {
            session: self.session.clone(),
            scene: self.scene.clone(),
            photo: self.photo.to_string(),
            path: self.path.display().to_string(),
            trigger: self.trigger.clone(),
        }
    }
}

/// The outcome of `discard_latest`.
#[derive(Debug, Clone, PartialEq)]
pub struct Discarded {
    pub photo: PhotoId,
    pub session: String,
    pub scene: String,
    /// The backend had confirmed it.
    pub was_uploaded: bool,
    /// The backend has or may have a copy (confirmed, or an upload was under way or its result
    /// unknown): the uploader sends a DELETE, by itself, also after a restart.
    pub remote_delete: bool,
}

impl Discarded {
    pub fn event(&self) -> EventKind {
        EventKind::PhotoDiscarded {
            session: self.session.clone(),
            photo: self.photo.to_string(),
        }
    }
}

/// What `open` found and repaired.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecoveryReport {
    /// Photos waiting for upload (including ones refused before the restart, retried once).
    pub pending: usize,
    pub uploaded: usize,
    /// Discarded photos whose backend copy still has to be deleted.
    pub deletes_owed: usize,
    /// Partial writes removed.
    pub temp_files_removed: Vec<PathBuf>,
    /// Files moved to `quarantine/`, with the reason. Never uploaded.
    pub quarantined: Vec<(PathBuf, String)>,
    /// Files or directories whose mode was tightened to 0600/0700.
    pub modes_fixed: Vec<PathBuf>,
    pub manifests_rewritten: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    pub pending: usize,
    pub uploaded: usize,
    pub failed: usize,
    pub deletes_owed: usize,
    pub used_bytes: u64,
    pub quota_bytes: u64,
}

/// Points inside `save` where a fault-injection test can stop the process.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveStage {
    /// Half of the jpg is in its temp file.
    JpegPartlyWritten,
    /// The jpg has its real name; the sidecar does not exist yet.
    JpegInPlace,
    /// Half of the sidecar is in its temp file.
    SidecarPartlyWritten,
    /// Both files are in place; the directory is not yet fsynced, the manifest not updated.
    SidecarInPlace,
}

#[doc(hidden)]
pub type SaveHook = Arc<dyn Fn(SaveStage) + Send + Sync>;

/// Spool settings; `from_config` takes them from `[photos]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolOptions {
    pub dir: PathBuf,
    pub quota_bytes: u64,
    pub retention: Duration,
}

impl SpoolOptions {
    pub fn from_config(config: &PhotosConfig) -> Self {
        Self {
            dir: config.spool_dir.clone(),
            quota_bytes: config.spool_quota_bytes(),
            retention: config.retention(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Internal state

#[derive(Debug)]
struct Entry {
    sidecar: Sidecar,
    /// jpg + sidecar bytes on disk, for the quota.
    disk_bytes: u64,
    /// Order of taking, for "latest photo of the session".
    order: u64,
    /// The backend may have received it (an upload started, here or before a restart).
    possibly_sent: bool,
    in_flight: bool,
    queued: bool,
    attempts: u32,
}

#[derive(Debug, Default)]
struct Index {
    entries: HashMap<PhotoId, Entry>,
    /// Upload and delete jobs, oldest first.
    queue: VecDeque<PhotoId>,
    used_bytes: u64,
    next_order: u64,
    /// Sessions whose manifest could not be written; retried on the next change.
    stale_manifests: Vec<String>,
    /// Photos being written by `save` (not yet in `entries`).
    saving: Vec<PhotoId>,
}

impl Index {
    fn enqueue(&mut self, id: &PhotoId) {
        if let Some(e) = self.entries.get_mut(id)
            && !e.queued
        {
            e.queued = true;
            self.queue.push_back(id.clone());
        }
    }

    fn waiting(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e.sidecar.state, PhotoState::Pending | PhotoState::Failed))
            .count()
    }
}

/// Work for the uploader, taken from the queue by `next_job`.
#[derive(Debug)]
pub(crate) enum Job {
    /// The body was read and checked against the sidecar's sha256.
    Upload {
        sidecar: Sidecar,
        body: Vec<u8>,
        attempt: u32,
    },
    Delete {
        sidecar: Sidecar,
        attempt: u32,
    },
    /// The jpg did not match its sidecar (or vanished); it was quarantined and is never sent.
    Corrupt {
        sidecar: Sidecar,
        reason: String,
    },
}

/// What `mark_uploaded` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marked {
    Uploaded,
    /// The shopper discarded it while it was in flight: its DELETE is already queued.
    DiscardedMeanwhile,
}

// ---------------------------------------------------------------------------------------------
// The spool

pub struct Spool {
    dir: PathBuf,
    sessions_dir: PathBuf,
    quarantine_dir: PathBuf,
    quota_bytes: u64,
    retention: Duration,
    index: Mutex<Index>,
    changed: Notify,
    save_hook: Mutex<Option<SaveHook>>,
    /// Holds the flock for as long as the spool is open.
    _lock: File,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("quota_bytes", &self.quota_bytes)
            .finish_non_exhaustive()
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl Spool {
    /// Opens (creating if needed) the spool and recovers from whatever a crash left: removes
    /// partial writes, quarantines photos without a valid sidecar, re-queues everything not yet
    /// uploaded. Fails with a typed error if the directory cannot be written.
    pub fn open(options: SpoolOptions) -> Result<(Self, RecoveryReport), SpoolError> {
        let dir = options.dir.clone();
        if !dir.is_absolute() {
            return Err(SpoolError::Invalid {
                what: "photos.spool_dir",
                value: dir.display().to_string(),
                expected: "an absolute path",
            });
        }
        let mut report = RecoveryReport::default();
        let sessions_dir = dir.join(SESSIONS_DIR);
        let quarantine_dir = dir.join(QUARANTINE_DIR);
        for d in [&dir, &sessions_dir, &quarantine_dir] {
            ensure_dir(d, &dir, &mut report)?;
        }
        let lock = take_lock(&dir)?;
        fix_mode(&dir.join(LOCK_FILE), FILE_MODE, &mut report);
        probe_writable(&dir)?;

        let spool = Self {
            dir,
            sessions_dir,
            quarantine_dir,
            quota_bytes: options.quota_bytes,
            retention: options.retention,
            index: Mutex::new(Index::default()),
            changed: Notify::new(),
            save_hook: Mutex::new(None),
            _lock: lock,
        };
        spool.recover(&mut report)?;
        info!(
            dir = %spool.dir.display(),
            pending = report.pending,
            uploaded = report.uploaded,
            deletes_owed = report.deletes_owed,
            temp_removed = report.temp_files_removed.len(),
            quarantined = report.quarantined.len(),
            "photo spool open"
        );
        Ok((spool, report))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn photo_path(&self, photo: &PhotoId) -> PathBuf {
        self.dir.join(format!("{photo}.jpg"))
    }

    pub fn sidecar_path(&self, photo: &PhotoId) -> PathBuf {
        self.dir.join(format!("{photo}.json"))
    }

    pub fn manifest_path(&self, session: &str) -> PathBuf {
        self.sessions_dir.join(format!("{session}.json"))
    }

    pub fn quarantine_dir(&self) -> &Path {
        &self.quarantine_dir
    }

    /// Fault-injection for crash tests: called at each `SaveStage`.
    #[doc(hidden)]
    pub fn set_save_hook(&self, hook: Option<SaveHook>) {
        *self.save_hook.lock().unwrap_or_else(|p| p.into_inner()) = hook;
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        // A panic elsewhere while holding the lock must not stop photos from being saved.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves when the spool has new work for the uploader (a permit is stored if nobody
    /// waits, so no wake-up is lost).
    pub(crate) fn changed(&self) -> &Notify {
        &self.changed
    }

    pub fn stats(&self) -> SpoolStats {
        let idx = self.lock();
        let mut s = SpoolStats {
            used_bytes: idx.used_bytes,
            quota_bytes: self.quota_bytes,
            ..Default::default()
        };
        for e in idx.entries.values() {
            match e.sidecar.state {
                PhotoState::Pending => s.pending += 1,
                PhotoState::Uploaded => s.uploaded += 1,
                PhotoState::Failed => s.failed += 1,
                PhotoState::Discarded => s.deletes_owed += 1,
            }
        }
        s
    }

    /// The sidecar as the spool knows it now.
    pub fn get(&self, photo: &PhotoId) -> Option<Sidecar> {
        self.lock().entries.get(photo).map(|e| e.sidecar.clone())
    }

    /// Whether `photo` is taken: known to the spool, being saved, or on disk under its name.
    /// `save` refuses such an id as a duplicate.
    pub fn contains(&self, photo: &PhotoId) -> bool {
        self.is_taken(&self.lock(), photo)
    }

    fn is_taken(&self, idx: &Index, photo: &PhotoId) -> bool {
        idx.entries.contains_key(photo)
            || idx.saving.contains(photo)
            || self.photo_path(photo).exists()
            || self.sidecar_path(photo).exists()
    }

    /// The session's photos still in the spool (not discarded), oldest first.
    pub fn session_photos(&self, session: &str) -> Vec<Sidecar> {
        let idx = self.lock();
        let mut v: Vec<_> = idx
            .entries
            .values()
            .filter(|e| e.sidecar.session == session && e.sidecar.state != PhotoState::Discarded)
            .map(|e| (e.order, e.sidecar.clone()))
            .collect();
        v.sort_by_key(|(o, _)| *o);
        v.into_iter().map(|(_, s)| s).collect()
    }

    /// Writes the photo and its sidecar durably. On success the photo will be uploaded, also
    /// after a crash. On error nothing of this photo is left behind and nothing already in the
    /// spool was touched, except uploaded photos removed early to make room under the quota.
    pub fn save(
        &self,
        meta: &PhotoMeta,
        jpeg: &[u8],
        photo: PhotoId,
    ) -> Result<SavedPhoto, SpoolError> {
        check_token("session id", &meta.session)?;
        check_token("scene id", &meta.scene)?;
        check_token("trigger", &meta.trigger)?;
        if jpeg.len() < 4 || jpeg[..2] != [0xFF, 0xD8] {
            return Err(SpoolError::NotJpeg { bytes: jpeg.len() });
        }
        let sha256 = sha256_hex(jpeg);
        let sidecar = Sidecar {
            version: SIDECAR_VERSION,
            photo: photo.clone(),
            session: meta.session.clone(),
            scene: meta.scene.clone(),
            taken_at: meta.taken_at,
            t: if meta.t.is_finite() { meta.t } else { 0.0 },
            trigger: meta.trigger.clone(),
            sha256: sha256.clone(),
            bytes: jpeg.len() as u64,
            state: PhotoState::Pending,
            uploaded_at: None,
            failure: None,
            delete_remote: false,
        };
        let sidecar_json = to_json(&sidecar);
        let need = jpeg.len() as u64 + sidecar_json.len() as u64;
        let jpg_path = self.photo_path(&photo);

        // Reserve the space under the lock so concurrent saves cannot both squeeze in; write
        // outside it so the uploader is not held up by our fsyncs.
        {
            let mut idx = self.lock();
            if self.is_taken(&idx, &photo) {
                return Err(SpoolError::Duplicate(photo));
            }
            self.make_room(&mut idx, need)?;
            idx.used_bytes += need;
            idx.saving.push(photo.clone());
        }

        let hook = self
            .save_hook
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let written = self.write_photo_files(&photo, jpeg, &sidecar_json, hook.as_ref());

        let mut idx = self.lock();
        idx.saving.retain(|p| p != &photo);
        if let Err(e) = written {
            idx.used_bytes = idx.used_bytes.saturating_sub(need);
            warn!(photo = %photo, session = %meta.session, error = %e, "photo not saved");
            return Err(e);
        }
        let order = idx.next_order;
        idx.next_order += 1;
        idx.entries.insert(
            photo.clone(),
            Entry {
                sidecar,
                disk_bytes: need,
                order,
                possibly_sent: false,
                in_flight: false,
                queued: false,
                attempts: 0,
            },
        );
        idx.enqueue(&photo);
        self.refresh_manifest(&mut idx, &meta.session);
        drop(idx);
        self.changed.notify_one();
        info!(photo = %photo, session = %meta.session, bytes = jpeg.len(), "photo saved");
        Ok(SavedPhoto {
            photo,
            path: jpg_path,
            session: meta.session.clone(),
            scene: meta.scene.clone(),
            trigger: meta.trigger.clone(),
            sha256,
            bytes: jpeg.len() as u64,
        })
    }

    fn write_photo_files(
        &self,
        photo: &PhotoId,
        jpeg: &[u8],
        sidecar_json: &[u8],
        hook: Option<&SaveHook>,
    ) -> Result<(), SpoolError> {
        let jpg_name = format!("{photo}.jpg");
        let json_name = format!("{photo}.json");
        let stage = |s: SaveStage| {
            if let Some(h) = hook {
                h(s)
            }
        };
        write_file_atomic(&self.dir, &self.dir, &jpg_name, jpeg, || {
            stage(SaveStage::JpegPartlyWritten)
        })?;
        stage(SaveStage::JpegInPlace);
        let result = write_file_atomic(&self.dir, &self.dir, &json_name, sidecar_json, || {
            stage(SaveStage::SidecarPartlyWritten)
        })
        .and_then(|()| {
            stage(SaveStage::SidecarInPlace);
            fsync_dir(&self.dir, &self.dir)
        });
        if let Err(e) = result {
            // The photo was never reported: take the jpg away again rather than leave a file
            // that recovery would have to quarantine.
            for name in [&json_name, &jpg_name] {
                let _ = fs::remove_file(self.dir.join(name));
            }
            let _ = fsync_dir(&self.dir, &self.dir);
            return Err(e);
        }
        Ok(())
    }

    /// Frees uploaded photos (oldest confirmation first) until `need` more bytes fit under the
    /// quota. Never touches a photo the backend has not confirmed.
    fn make_room(&self, idx: &mut Index, need: u64) -> Result<(), SpoolError> {
        if idx.used_bytes + need <= self.quota_bytes {
            return Ok(());
        }
        let mut uploaded: Vec<(u64, PhotoId)> = idx
            .entries
            .iter()
            .filter(|(_, e)| e.sidecar.state == PhotoState::Uploaded)
            .map(|(id, e)| (e.sidecar.uploaded_at.unwrap_or(0), id.clone()))
            .collect();
        uploaded.sort();
        let fits = |idx: &Index| idx.used_bytes + need <= self.quota_bytes;
        let mut touched = Vec::new();
        for (_, id) in uploaded {
            if fits(idx) {
                break;
            }
            if let Some(session) = self.remove_entry_files(idx, &id)? {
                info!(photo = %id, "uploaded photo removed early to stay under photos.spool_quota_mb");
                touched.push(session);
            }
        }
        for session in touched {
            self.refresh_manifest(idx, &session);
        }
        if fits(idx) {
            Ok(())
        } else {
            let e = SpoolError::QuotaExceeded {
                used_bytes: idx.used_bytes,
                quota_bytes: self.quota_bytes,
                waiting: idx.waiting(),
            };
            warn!(error = %e, "photo refused");
            Err(e)
        }
    }

    /// Deletes an entry's jpg, then its sidecar (a sidecar whose jpg is missing is only ever
    /// left for uploaded or discarded photos, which recovery then completes).
    fn remove_entry_files(
        &self,
        idx: &mut Index,
        id: &PhotoId,
    ) -> Result<Option<String>, SpoolError> {
        let Some(entry) = idx.entries.get(id) else {
            return Ok(None);
        };
        let session = entry.sidecar.session.clone();
        let bytes = entry.disk_bytes;
        remove_if_exists(&self.photo_path(id), &self.dir)?;
        remove_if_exists(&self.sidecar_path(id), &self.dir)?;
        fsync_dir(&self.dir, &self.dir)?;
        idx.entries.remove(id);
        idx.used_bytes = idx.used_bytes.saturating_sub(bytes);
        Ok(Some(session))
    }

    /// Removes the session's most recent photo from the spool. `None` if it has none.
    pub fn discard_latest(&self, session: &str) -> Result<Option<Discarded>, SpoolError> {
        self.discard(session, None)
    }

    /// Removes one photo of the session (the one the compare view shows) from the spool.
    /// `None` if the session has no such photo (another session's, or already discarded).
    pub fn discard_photo(
        &self,
        session: &str,
        photo: &PhotoId,
    ) -> Result<Option<Discarded>, SpoolError> {
        self.discard(session, Some(photo))
    }

    fn discard(
        &self,
        session: &str,
        photo: Option<&PhotoId>,
    ) -> Result<Option<Discarded>, SpoolError> {
        check_token("session id", session)?;
        let mut guard = self.lock();
        let idx = &mut *guard;
        let chosen = idx
            .entries
            .iter()
            .filter(|(id, e)| {
                e.sidecar.session == session
                    && e.sidecar.state != PhotoState::Discarded
                    && photo.is_none_or(|p| *id == p)
            })
            .max_by_key(|(_, e)| e.order)
            .map(|(id, _)| id.clone());
        let Some(id) = chosen else { return Ok(None) };
        let Some(entry) = idx.entries.get(&id) else {
            return Ok(None);
        };
        let was_uploaded = entry.sidecar.state == PhotoState::Uploaded;
        let remote_delete = was_uploaded || entry.possibly_sent || entry.in_flight;
        let mut tombstone = entry.sidecar.clone();
        tombstone.state = PhotoState::Discarded;
        tombstone.delete_remote = remote_delete;
        let scene = tombstone.scene.clone();

        // Tombstone first: from here on the discard is decided, and a crash (or a failure
        // below) is finished on the next open instead of resurrecting the photo.
        let json = to_json(&tombstone);
        write_file_atomic(&self.dir, &self.dir, &format!("{id}.json"), &json, || {})?;
        let json_len = json.len() as u64;
        if let Some(e) = idx.entries.get_mut(&id) {
            idx.used_bytes = idx.used_bytes.saturating_sub(e.disk_bytes) + json_len;
            e.disk_bytes = json_len;
            e.sidecar = tombstone;
            e.attempts = 0;
        }
        let removed = remove_if_exists(&self.photo_path(&id), &self.dir)
            .and_then(|()| {
                if remote_delete {
                    Ok(())
                } else {
                    remove_if_exists(&self.sidecar_path(&id), &self.dir)
                }
            })
            .and_then(|()| fsync_dir(&self.dir, &self.dir));
        match removed {
            Err(err) => {
                error!(photo = %id, error = %err, "discarded photo not fully removed yet: finished on the next start");
            }
            Ok(()) if !remote_delete => {
                if let Some(e) = idx.entries.remove(&id) {
                    idx.used_bytes = idx.used_bytes.saturating_sub(e.disk_bytes);
                }
            }
            Ok(()) => {}
        }
        if remote_delete {
            idx.enqueue(&id);
        }
        self.refresh_manifest(idx, session);
        drop(guard);
        if remote_delete {
            self.changed.notify_one();
        }
        info!(photo = %id, session, was_uploaded, remote_delete, "photo discarded");
        Ok(Some(Discarded {
            photo: id,
            session: session.to_string(),
            scene,
            was_uploaded,
            remote_delete,
        }))
    }

    /// Deletes uploaded photos confirmed more than `photos.retention_s` before `now_ms`.
    /// Returns how many were removed.
    pub fn sweep_retention(&self, now_ms: u64) -> Result<usize, SpoolError> {
        let retention_ms = self.retention.as_millis() as u64;
        let mut idx = self.lock();
        let due: Vec<PhotoId> = idx
            .entries
            .iter()
            .filter(|(_, e)| {
                e.sidecar.state == PhotoState::Uploaded
                    && e.sidecar
                        .uploaded_at
                        .unwrap_or(0)
                        .saturating_add(retention_ms)
                        <= now_ms
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut sessions = Vec::new();
        for id in &due {
            if let Some(s) = self.remove_entry_files(&mut idx, id)? {
                sessions.push(s);
            }
        }
        sessions.sort();
        sessions.dedup();
        for s in sessions {
            self.refresh_manifest(&mut idx, &s);
        }
        if !due.is_empty() {
            info!(
                removed = due.len(),
                "uploaded photos past photos.retention_s removed"
            );
        }
        Ok(due.len())
    }

    // ---- for the uploader --------------------------------------------------------------------

    /// The next upload or delete, marked in flight. Reads and verifies the jpg under the lock
    /// so a concurrent discard cannot hand out a half-deleted file.
    pub(crate) fn next_job(&self) -> Option<Job> {
        let mut guard = self.lock();
        let idx = &mut *guard;
        while let Some(id) = idx.queue.pop_front() {
            let Some(e) = idx.entries.get_mut(&id) else {
                continue;
            };
            e.queued = false;
            match e.sidecar.state {
                PhotoState::Pending | PhotoState::Failed => {}
                PhotoState::Discarded if e.sidecar.delete_remote => {
                    e.in_flight = true;
                    e.attempts += 1;
                    return Some(Job::Delete {
                        sidecar: e.sidecar.clone(),
                        attempt: e.attempts,
                    });
                }
                PhotoState::Discarded | PhotoState::Uploaded => continue,
            }
            let sidecar = e.sidecar.clone();
            let path = self.photo_path(&id);
            let problem = match fs::read(&path) {
                Ok(body) if body.len() as u64 != sidecar.bytes => Err(format!(
                    "jpg has {} bytes, its sidecar says {}",
                    body.len(),
                    sidecar.bytes
                )),
                Ok(body) if sha256_hex(&body) != sidecar.sha256 => {
                    Err("jpg does not match the sha256 in its sidecar".to_string())
                }
                Ok(body) => Ok(body),
                Err(err) => Err(format!("cannot read {}: {err}", path.display())),
            };
            match problem {
                Ok(body) => {
                    if let Some(e) = idx.entries.get_mut(&id) {
                        e.in_flight = true;
                        e.possibly_sent = true;
                        e.attempts += 1;
                        return Some(Job::Upload {
                            sidecar,
                            body,
                            attempt: e.attempts,
                        });
                    }
                }
                Err(reason) => {
                    error!(photo = %id, reason, "photo will not be uploaded: moved to quarantine");
                    self.quarantine_entry(idx, &id, &reason);
                    return Some(Job::Corrupt { sidecar, reason });
                }
            }
        }
        None
    }

    fn quarantine_entry(&self, idx: &mut Index, id: &PhotoId, reason: &str) {
        let mut moved = Vec::new();
        for path in [self.photo_path(id), self.sidecar_path(id)] {
            if path.exists() {
                match self.move_to_quarantine(&path) {
                    Ok(p) => moved.push(p),
                    Err(e) => error!(path = %path.display(), error = %e, "cannot quarantine"),
                }
            }
        }
        if let Some(e) = idx.entries.remove(id) {
            // The bytes are still on disk (in quarantine) and still count against the quota.
            let session = e.sidecar.session;
            self.refresh_manifest(idx, &session);
        }
        warn!(photo = %id, reason, files = ?moved, "quarantined");
    }

    /// The backend confirmed the photo: record it durably. If the sidecar cannot be written
    /// the photo still counts as uploaded for this run (re-sending after a restart is
    /// idempotent), so a full disk cannot make the uploader loop.
    pub(crate) fn mark_uploaded(&self, id: &PhotoId, at_ms: u64) -> Marked {
        let mut guard = self.lock();
        let idx = &mut *guard;
        let Some(e) = idx.entries.get_mut(id) else {
            return Marked::DiscardedMeanwhile;
        };
        e.in_flight = false;
        if e.sidecar.state == PhotoState::Discarded {
            return Marked::DiscardedMeanwhile;
        }
        let mut updated = e.sidecar.clone();
        updated.state = PhotoState::Uploaded;
        updated.uploaded_at = Some(at_ms);
        updated.failure = None;
        let json = to_json(&updated);
        let written = write_file_atomic(&self.dir, &self.dir, &format!("{id}.json"), &json, || {})
            .and_then(|()| fsync_dir(&self.dir, &self.dir));
        let old = e.disk_bytes;
        match written {
            Ok(()) => e.disk_bytes = updated.bytes + json.len() as u64,
            Err(err) => {
                error!(photo = %id, error = %err, "backend has the photo but the sidecar could not be updated")
            }
        }
        let new = e.disk_bytes;
        e.sidecar = updated;
        idx.used_bytes = idx.used_bytes.saturating_sub(old) + new;
        Marked::Uploaded
    }

    /// A transient failure: back in the queue, behind the others.
    pub(crate) fn requeue(&self, id: &PhotoId) {
        let mut idx = self.lock();
        if let Some(e) = idx.entries.get_mut(id) {
            e.in_flight = false;
        }
        idx.enqueue(id);
    }

    /// The backend refused the photo for good. Kept on disk, not retried in this run.
    pub(crate) fn mark_failed(&self, id: &PhotoId, reason: &str) {
        let mut idx = self.lock();
        let Some(e) = idx.entries.get_mut(id) else {
            return;
        };
        e.in_flight = false;
        if e.sidecar.state == PhotoState::Discarded {
            return;
        }
        let mut updated = e.sidecar.clone();
        updated.state = PhotoState::Failed;
        updated.failure = Some(reason.to_string());
        let json = to_json(&updated);
        if let Err(err) =
            write_file_atomic(&self.dir, &self.dir, &format!("{id}.json"), &json, || {})
                .and_then(|()| fsync_dir(&self.dir, &self.dir))
        {
            warn!(photo = %id, error = %err, "cannot record the upload failure in the sidecar");
        }
        if let Some(e) = idx.entries.get_mut(id) {
            e.sidecar = updated;
        }
    }

    /// A delete the backend will not do (4xx): keep the tombstone, try again after a restart.
    pub(crate) fn delete_refused(&self, id: &PhotoId) {
        if let Some(e) = self.lock().entries.get_mut(id) {
            e.in_flight = false;
        }
    }

    /// The backend no longer has the photo: drop the tombstone.
    pub(crate) fn finish_delete(&self, id: &PhotoId) -> Result<(), SpoolError> {
        let mut idx = self.lock();
        if let Some(e) = idx.entries.get_mut(id) {
            e.in_flight = false;
        }
        self.remove_entry_files(&mut idx, id).map(|_| ())
    }

    // ---- manifests ---------------------------------------------------------------------------

    fn manifest_for(&self, idx: &Index, session: &str) -> Option<Manifest> {
        let mut photos: Vec<(u64, &Sidecar)> = idx
            .entries
            .values()
            .filter(|e| e.sidecar.session == session && e.sidecar.state != PhotoState::Discarded)
            .map(|e| (e.order, &e.sidecar))
            .collect();
        photos.sort_by_key(|(o, _)| *o);
        let scene = photos.first()?.1.scene.clone();
        Some(Manifest {
            session: session.to_string(),
            scene,
            photos: photos
                .into_iter()
                .map(|(_, s)| ManifestPhoto {
                    photo: s.photo.clone(),
                    file: format!("{}.jpg", s.photo),
                    taken_at: s.taken_at,
                    trigger: s.trigger.clone(),
                })
                .collect(),
        })
    }

    /// Rewrites (or removes) one session's manifest. A failure is logged, not returned: the
    /// sidecars are the truth and the manifest is rebuilt from them on the next open.
    fn refresh_manifest(&self, idx: &mut Index, session: &str) {
        let mut sessions = std::mem::take(&mut idx.stale_manifests);
        if !sessions.iter().any(|s| s == session) {
            sessions.push(session.to_string());
        }
        for s in sessions {
            if let Err(e) = self.write_manifest(idx, &s) {
                warn!(session = %s, error = %e, "session manifest not updated (rebuilt on next start)");
                idx.stale_manifests.push(s);
            }
        }
    }

    fn write_manifest(&self, idx: &Index, session: &str) -> Result<(), SpoolError> {
        let name = format!("{session}.json");
        match self.manifest_for(idx, session) {
            Some(m) => {
                write_file_atomic(&self.sessions_dir, &self.dir, &name, &to_json(&m), || {})?
            }
            None => remove_if_exists(&self.sessions_dir.join(&name), &self.dir)?,
        }
        fsync_dir(&self.sessions_dir, &self.dir)
    }

    // ---- recovery ----------------------------------------------------------------------------

    fn move_to_quarantine(&self, path: &Path) -> Result<PathBuf, SpoolError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut target = self.quarantine_dir.join(&name);
        let mut n = 1;
        while target.exists() {
            target = self.quarantine_dir.join(format!("{name}.{n}"));
            n += 1;
        }
        fs::rename(path, &target)
            .map_err(|e| io_error("move to quarantine", path, &self.dir, e))?;
        fsync_dir(&self.quarantine_dir, &self.dir)?;
        fsync_dir(&self.dir, &self.dir)?;
        Ok(target)
    }

    fn recover(&self, report: &mut RecoveryReport) -> Result<(), SpoolError> {
        let mut jpgs: Vec<String> = Vec::new();
        let mut sidecars: Vec<String> = Vec::new();
        for name in list_dir(&self.dir)? {
            let path = self.dir.join(&name);
            if name.starts_with(TMP_PREFIX) {
                remove_if_exists(&path, &self.dir)?;
                warn!(path = %path.display(), "removed a partial write left by a crash");
                report.temp_files_removed.push(path);
            } else if let Some(stem) = name.strip_suffix(".jpg") {
                jpgs.push(stem.to_string());
            } else if let Some(stem) = name.strip_suffix(".json") {
                sidecars.push(stem.to_string());
            } else if name != LOCK_FILE && name != SESSIONS_DIR && name != QUARANTINE_DIR {
                warn!(path = %path.display(), "unexpected file in the photo spool: left alone");
            }
        }
        for name in list_dir(&self.sessions_dir)? {
            if name.starts_with(TMP_PREFIX) {
                let path = self.sessions_dir.join(&name);
                remove_if_exists(&path, &self.dir)?;
                report.temp_files_removed.push(path);
            }
        }

        let mut idx = Index::default();
        let mut recovered: Vec<Entry> = Vec::new();
        for stem in &sidecars {
            let json_path = self.dir.join(format!("{stem}.json"));
            let jpg_path = self.dir.join(format!("{stem}.jpg"));
            let has_jpg = jpgs.iter().any(|j| j == stem);
            match self.check_sidecar(stem, &json_path, &jpg_path, has_jpg) {
                Ok(Recovered::Keep(sidecar, disk_bytes)) => recovered.push(Entry {
                    sidecar,
                    disk_bytes,
                    order: 0,
                    possibly_sent: true,
                    in_flight: false,
                    queued: false,
                    attempts: 0,
                }),
                Ok(Recovered::Finished(what)) => {
                    info!(photo = %stem, what, "completed an interrupted change")
                }
                Err(reason) => {
                    error!(photo = %stem, reason, "photo will not be uploaded: moved to quarantine");
                    for p in [&jpg_path, &json_path] {
                        if p.exists() {
                            let q = self.move_to_quarantine(p)?;
                            report.quarantined.push((q, reason.clone()));
                        }
                    }
                }
            }
        }
        for stem in jpgs.iter().filter(|j| !sidecars.contains(j)) {
            let path = self.dir.join(format!("{stem}.jpg"));
            let reason = "jpg without a sidecar (a save interrupted by a crash)".to_string();
            error!(path = %path.display(), reason, "photo will not be uploaded: moved to quarantine");
            let q = self.move_to_quarantine(&path)?;
            report.quarantined.push((q, reason));
        }

        // Queue in the order the photos were taken.
        recovered.sort_by(|a, b| {
            (a.sidecar.taken_at, &a.sidecar.photo).cmp(&(b.sidecar.taken_at, &b.sidecar.photo))
        });
        for mut e in recovered {
            fix_mode(&self.photo_path(&e.sidecar.photo), FILE_MODE, report);
            fix_mode(&self.sidecar_path(&e.sidecar.photo), FILE_MODE, report);
            e.order = idx.next_order;
            idx.next_order += 1;
            idx.used_bytes += e.disk_bytes;
            let id = e.sidecar.photo.clone();
            match e.sidecar.state {
                PhotoState::Pending | PhotoState::Failed => report.pending += 1,
                PhotoState::Uploaded => report.uploaded += 1,
                PhotoState::Discarded => report.deletes_owed += 1,
            }
            let queue = e.sidecar.state != PhotoState::Uploaded;
            idx.entries.insert(id.clone(), e);
            if queue {
                idx.enqueue(&id);
            }
        }
        for name in list_dir(&self.quarantine_dir)? {
            let path = self.quarantine_dir.join(&name);
            fix_mode(&path, FILE_MODE, report);
            idx.used_bytes += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        }

        // Manifests: rebuild each from the sidecars, remove those of sessions with no photos.
        let mut sessions: Vec<String> = idx
            .entries
            .values()
            .map(|e| e.sidecar.session.clone())
            .collect();
        sessions.sort();
        sessions.dedup();
        for name in list_dir(&self.sessions_dir)? {
            if let Some(s) = name.strip_suffix(".json")
                && !sessions.iter().any(|x| x == s)
            {
                remove_if_exists(&self.sessions_dir.join(&name), &self.dir)?;
                report.manifests_rewritten += 1;
            }
        }
        for s in &sessions {
            let path = self.manifest_path(s);
            let want = self.manifest_for(&idx, s);
            let have = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok());
            if want != have {
                // Not fatal: on a full disk the photos must still be uploadable.
                match self.write_manifest(&idx, s) {
                    Ok(()) => report.manifests_rewritten += 1,
                    Err(e) => {
                        warn!(session = %s, error = %e, "session manifest not rebuilt (retried on the next change)");
                        idx.stale_manifests.push(s.clone());
                    }
                }
            } else {
                fix_mode(&path, FILE_MODE, report);
            }
        }
        *self.lock() = idx;
        Ok(())
    }

    fn check_sidecar(
        &self,
        stem: &str,
        json_path: &Path,
        jpg_path: &Path,
        has_jpg: bool,
    ) -> Result<Recovered, String> {
        let id =
            PhotoId::parse(stem).map_err(|_| format!("file name {stem:?} is not a photo id"))?;
        let raw = fs::read(json_path).map_err(|e| format!("cannot read sidecar: {e}"))?;
        let sidecar: Sidecar = serde_json::from_slice(&raw)
            .map_err(|e| format!("sidecar is incomplete or not valid JSON: {e}"))?;
        if sidecar.photo != id {
            return Err(format!(
                "sidecar names photo {} but is stored as {stem}",
                sidecar.photo
            ));
        }
        if check_token("session id", &sidecar.session).is_err()
            || check_token("scene id", &sidecar.scene).is_err()
            || check_token("trigger", &sidecar.trigger).is_err()
        {
            return Err("sidecar has an invalid session, scene or trigger".into());
        }
        let json_len = raw.len() as u64;
        match sidecar.state {
            PhotoState::Discarded => {
                if has_jpg {
                    remove_if_exists(jpg_path, &self.dir).map_err(|e| e.to_string())?;
                }
                if sidecar.delete_remote {
                    Ok(Recovered::Keep(sidecar, json_len))
                } else {
                    remove_if_exists(json_path, &self.dir).map_err(|e| e.to_string())?;
                    Ok(Recovered::Finished("discard"))
                }
            }
            PhotoState::Uploaded if !has_jpg => {
                remove_if_exists(json_path, &self.dir).map_err(|e| e.to_string())?;
                Ok(Recovered::Finished("retention"))
            }
            PhotoState::Uploaded => Ok(Recovered::Keep(sidecar.clone(), sidecar.bytes + json_len)),
            PhotoState::Pending | PhotoState::Failed => {
                if !has_jpg {
                    return Err("sidecar without its jpg".into());
                }
                let body = fs::read(jpg_path).map_err(|e| format!("cannot read jpg: {e}"))?;
                if body.len() as u64 != sidecar.bytes || sha256_hex(&body) != sidecar.sha256 {
                    return Err("jpg does not match the size/sha256 in its sidecar".into());
                }
                Ok(Recovered::Keep(sidecar.clone(), sidecar.bytes + json_len))
            }
        }
    }
}

enum Recovered {
    Keep(Sidecar, u64),
    Finished(&'static str),
}

// ---------------------------------------------------------------------------------------------
// File helpers

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain data with string keys: serialisation cannot fail.
    let mut v = serde_json::to_vec_pretty(value).unwrap_or_default();
    v.push(b'\n');
    v
}

/// temp file in `dir` → write → fsync → rename over `name`. The caller fsyncs `dir` (once for
/// several files). `partly` runs after the first half is written (fault-injection tests).
fn write_file_atomic(
    dir: &Path,
    spool_dir: &Path,
    name: &str,
    data: &[u8],
    partly: impl FnOnce(),
) -> Result<(), SpoolError> {
    let tmp = dir.join(format!("{TMP_PREFIX}{name}"));
    let target = dir.join(name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)
            .map_err(|e| io_error("create", &tmp, spool_dir, e))?;
        // `mode` above is filtered by the umask; set it exactly.
        f.set_permissions(fs::Permissions::from_mode(FILE_MODE))
            .map_err(|e| io_error("chmod", &tmp, spool_dir, e))?;
        let (first, rest) = data.split_at(data.len() / 2);
        f.write_all(first)
            .map_err(|e| io_error("write", &tmp, spool_dir, e))?;
        partly();
        f.write_all(rest)
            .map_err(|e| io_error("write", &tmp, spool_dir, e))?;
        f.sync_all()
            .map_err(|e| io_error("fsync", &tmp, spool_dir, e))?;
        drop(f);
        fs::rename(&tmp, &target).map_err(|e| io_error("rename", &target, spool_dir, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn fsync_dir(dir: &Path, spool_dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("fsync directory", dir, spool_dir, e))
}

fn remove_if_exists(path: &Path, spool_dir: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("remove", path, spool_dir, e)),
    }
}

fn list_dir(dir: &Path) -> Result<Vec<String>, SpoolError> {
    let mut names = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| io_error("list", dir, dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error("list", dir, dir, e))?;
        match entry.file_name().into_string() {
            Ok(n) => names.push(n),
            Err(n) => {
                warn!(name = ?n, dir = %dir.display(), "non-UTF-8 file name in the spool: left alone")
            }
        }
    }
    names.sort();
    Ok(names)
}

fn fix_mode(path: &Path, mode: u32, report: &mut RecoveryReport) {
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o777 != mode
    {
        match fs::set_permissions(path, fs::Permissions::from_mode(mode)) {
            Ok(()) => {
                warn!(path = %path.display(), was = format!("{:o}", meta.permissions().mode() & 0o777), "tightened mode");
                report.modes_fixed.push(path.to_path_buf());
            }
            Err(e) => warn!(path = %path.display(), error = %e, "cannot tighten mode"),
        }
    }
}

/// Creates `dir` and its missing ancestors (0700) and fsyncs the parent of each one it created,
/// so the new directories' entries survive a power cut along with the photos written into them.
fn ensure_dir(dir: &Path, spool_dir: &Path, report: &mut RecoveryReport) -> Result<(), SpoolError> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    for created in missing.into_iter().rev() {
        match fs::DirBuilder::new().mode(DIR_MODE).create(created) {
            Ok(()) => {}
            // Made meanwhile by someone else, whose job its durability is.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && created.is_dir() => continue,
            Err(e) => return Err(io_error("create directory", created, spool_dir, e)),
        }
        if let Some(parent) = created.parent()
            && let Err(e) = fsync_dir(parent, spool_dir)
        {
            // Not fatal: the directory is there; only its survival of a power cut is less sure.
            warn!(dir = %created.display(), error = %e, "cannot fsync the parent of a new spool directory");
        }
    }
    let meta = fs::metadata(dir).map_err(|e| io_error("stat", dir, spool_dir, e))?;
    if !meta.is_dir() {
        return Err(SpoolError::Io {
            op: "use as spool directory",
            path: dir.to_path_buf(),
            source: io::Error::other("exists and is not a directory"),
        });
    }
    if meta.permissions().mode() & 0o777 != DIR_MODE {
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
            .map_err(|e| io_error("chmod 0700", dir, spool_dir, e))?;
        report.modes_fixed.push(dir.to_path_buf());
    }
    Ok(())
}

fn take_lock(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join(LOCK_FILE);
    if !path.exists() {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(|e| io_error("create lock file", &path, dir, e))?;
    }
    // Held read-only: flock does not need write access, and an fd open for writing would
    // keep the filesystem from being remounted read-only under us.
    let file = File::open(&path).map_err(|e| io_error("open lock file", &path, dir, e))?;
    // A lock can outlive its holder by a moment: a process being restarted, or a fork in
    // flight elsewhere in this process that still shares the descriptor until it execs.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(io_error("lock", &path, dir, e));
        }
        if std::time::Instant::now() >= deadline {
            return Err(SpoolError::Locked {
                dir: dir.to_path_buf(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(file)
}

/// Write access is checked up front so a read-only or foreign-owned spool is reported at
/// start-up, not at the first photo. A full disk is not an error here: the photos already
/// spooled can still be uploaded, and new ones are refused one by one.
fn probe_writable(dir: &Path) -> Result<(), SpoolError> {
    let name = "write-probe";
    match write_file_atomic(dir, dir, name, b"ok", || {}) {
        Ok(()) => remove_if_exists(&dir.join(name), dir),
        Err(SpoolError::DiskFull { path }) => {
            warn!(path = %path.display(), "photo spool disk is full: new photos will be refused");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn photo_ids_round_trip_and_reject_path_tricks() {
        let id = PhotoId::from_bytes([7; 16]);
        assert_eq!(id.as_str().len(), 22);
        assert_eq!(PhotoId::parse(id.as_str()).unwrap(), id);
        for bad in [
            "",
            "../../etc/passwd",
            "AAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAA/",
            "a.jpg",
        ] {
            assert!(PhotoId::parse(bad).is_err(), "{bad}");
        }
        assert!(check_token("session id", "../x").is_err());
        assert!(check_token("session id", "abc_DEF-123").is_ok());
    }

    #[test]
    fn os_errors_become_typed_errors() {
        let p = Path::new("/spool/x");
        let d = Path::new("/spool");
        assert!(matches!(
            io_error("write", p, d, io::Error::from_raw_os_error(libc::ENOSPC)),
            SpoolError::DiskFull { .. }
        ));
        assert!(matches!(
            io_error("write", p, d, io::Error::from_raw_os_error(libc::EROFS)),
            SpoolError::ReadOnly { .. }
        ));
        let e = io_error("write", p, d, io::Error::from_raw_os_error(libc::EACCES));
        assert!(matches!(e, SpoolError::PermissionDenied { .. }));
        assert!(
            e.to_string().contains("/spool/x") && e.to_string().contains("chmod 0700 /spool"),
            "{e}"
        );
        assert_eq!(e.reason(), "spool_permission_denied");
    }
}
