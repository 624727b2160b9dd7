//! Turn-around clips to the store backend, the way photos go ([`crate::upload`]): one request at
//! a time, the clip id as idempotency key, the sha256 checked in the confirmation, transient
//! failures retried with backoff, a refusal (4xx) kept in the spool for the next start.
//!
//! ```text
//! POST {backend}/v1/sessions/{scene}/clips                 body: the mp4, byte for byte
//!   Idempotency-Key / X-Clip-Id, X-Session-Id, X-Taken-At, X-Trigger, X-Content-SHA256
//!   201/200 {"clip","sha256","bytes"} → confirmed
//! PUT  {backend}/v1/sessions/{scene}/clips/{clip}/poster   body: the jpg   → 204
//! then `<clip>.json` says `uploaded` (rewritten durably)
//! ```
//! The clip spool holds `<clip>.mp4`, `<clip>.jpg` and `<clip>.json` (a [`ClipRecord`]). The
//! record is written before the MP4 gets its final name, so a record without its MP4 is what a
//! crash left between the two: [`ClipRecord::pending`] removes it.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mirrorsight_contract::backend::{self as api, ClipUploadResponse};
use mirrorsight_contract::events::EventKind;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::delivery::{
    Attempt, Backend, Cargo, Courier, Failure, Link, Running, Upload, UploadError, UploaderOptions,
};

/// What the clip spool knows of one clip (`<clip>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipRecord {
    pub clip: String,
    pub session: String,
    pub scene: String,
    pub trigger: String,
    /// When recording started, unix milliseconds.
    pub taken_at_ms: u64,
    /// SHA-256 of the MP4, lowercase hex.
    pub sha256: String,
    pub bytes: u64,
    /// The backend confirmed the clip and took its poster.
    pub uploaded: bool,
}

impl ClipRecord {
    pub fn mp4_path(dir: &Path, clip: &str) -> PathBuf {
        dir.join(format!("{clip}.mp4"))
    }

    pub fn poster_path(dir: &Path, clip: &str) -> PathBuf {
        dir.join(format!("{clip}.jpg"))
    }

    pub fn record_path(dir: &Path, clip: &str) -> PathBuf {
        dir.join(format!("{clip}.json"))
    }

    /// Writes `<clip>.json` ([`write_spool_file`]), then fsyncs the directory: a crash
    /// leaves the old record or the new one, never half of one.
    pub fn write_durably(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_spool_file(&Self::record_path(dir, &self.clip), &json)?;
        std::fs::File::open(dir)?.sync_all()
    }

    fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read(path).map_err(|e| e.to_string())?;
        serde_json::from_slice(&text).map_err(|e| e.to_string())
    }

    /// The clips in `dir` not yet uploaded, oldest first. Records whose MP4 is missing (a
    /// crash before the MP4 got its name) are removed; unreadable ones are skipped with a
    /// warning and left for a person to look at.
    pub fn pending(dir: &Path) -> Vec<ClipRecord> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut pending: Vec<ClipRecord> = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            match Self::read(&path) {
                Ok(record) if !Self::mp4_path(dir, &record.clip).is_file() => {
                    warn!(clip = %record.clip, "clip record without its MP4 (a crash while saving): removed");
                    let _ = std::fs::remove_file(&path);
                }
                Ok(record) if !record.uploaded => pending.push(record),
                Ok(_) => {}
                Err(e) => {
                    warn!(file = %path.display(), error = %e, "unreadable clip record: not uploaded")
                }
            }
        }
        pending.sort_by_key(|r| r.taken_at_ms);
        pending
    }
}

/// Writes a file of the clip spool (owner-only) as a hidden `.<name>.part` beside `path`,
/// fsynced, then renamed to `path`; on failure the part is removed, and a crash leaves it for
/// the spool's opening to delete. The caller fsyncs the directory.
pub fn write_spool_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.part"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// What happened to a clip, for the event stream.
#[derive(Debug, Clone, PartialEq)]
pub enum ClipUploadOutcome {
    Uploaded {
        clip: String,
        session: String,
        scene: String,
    },
    /// One attempt failed; `permanent`: refused by the backend, kept for the next start.
    UploadFailed {
        clip: String,
        session: String,
        reason: String,
        attempt: u32,
        permanent: bool,
    },
}

impl ClipUploadOutcome {
    pub fn event(&self) -> EventKind {
        match self.clone() {
            ClipUploadOutcome::Uploaded {
                clip,
                session,
                scene,
            } => EventKind::ClipUploaded {
                session,
                scene,
                clip,
            },
            ClipUploadOutcome::UploadFailed {
                clip,
                session,
                reason,
                attempt,
                permanent,
            } => EventKind::ClipUploadFailed {
                session,
                clip,
                reason,
                attempt,
                permanent,
            },
        }
    }
}

/// Handle on the background clip uploader.
#[derive(Debug)]
pub struct ClipUploader {
    queue: mpsc::UnboundedSender<ClipRecord>,
    /// Clips queued or in flight.
    pending: Arc<AtomicUsize>,
    running: Running,
}

impl ClipUploader {
    /// Starts the worker on `runtime`; it first sends what `dir` holds un-uploaded.
    pub fn spawn(
        runtime: &tokio::runtime::Handle,
        dir: PathBuf,
        backend: Backend,
        options: UploaderOptions,
    ) -> Result<(Self, mpsc::UnboundedReceiver<ClipUploadOutcome>), UploadError> {
        // A clip is a few megabytes: room for a slow uplink.
        let link = Link::new(
            &backend,
            options.timeout.saturating_mul(4),
            concat!("mirrorsight-clips/", env!("CARGO_PKG_VERSION")),
        )?;
        let (queue, jobs) = mpsc::unbounded_channel();
        let (events, outcomes) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let recovered = ClipRecord::pending(&dir);
        pending.fetch_add(recovered.len(), Ordering::SeqCst);
        let clips = Clips {
            dir,
            jobs,
            queue: recovered.into_iter().map(|r| (r, 1)).collect(),
            events,
            pending: pending.clone(),
        };
        let running = Courier::spawn(runtime, link, options, clips);
        Ok((
            Self {
                queue,
                pending,
                running,
            },
            outcomes,
        ))
    }

    /// A clip was saved: send it.
    pub fn enqueue(&self, record: ClipRecord) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.queue.send(record).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Clips waiting or in flight.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Stops the worker, letting the request in flight finish within `timeout`.
    pub async fn shutdown(self, timeout: Duration) {
        self.running.shutdown(timeout).await;
    }
}

/// The clip spool's clips as the upload loop's [`Cargo`]: those found at start, then each
/// one the recorder saves, in order; a transient failure goes to the back of the queue.
struct Clips {
    dir: PathBuf,
    jobs: mpsc::UnboundedReceiver<ClipRecord>,
    /// (record, attempt), oldest first.
    queue: VecDeque<(ClipRecord, u32)>,
    events: mpsc::UnboundedSender<ClipUploadOutcome>,
    pending: Arc<AtomicUsize>,
}

impl Cargo for Clips {
    type Job = (ClipRecord, u32);
    const WHAT: &'static str = "clip";

    async fn next(&mut self) -> Option<(ClipRecord, u32)> {
        while let Ok(record) = self.jobs.try_recv() {
            self.queue.push_back((record, 1));
        }
        self.queue.pop_front()
    }

    async fn wait(&mut self) -> bool {
        match self.jobs.recv().await {
            Some(record) => {
                self.queue.push_back((record, 1));
                true
            }
            None => false,
        }
    }

    async fn deliver(&mut self, link: &Link, (record, attempt): (ClipRecord, u32)) -> Attempt {
        match self.send(link, &record).await {
            Ok(()) => {
                self.pending.fetch_sub(1, Ordering::SeqCst);
                info!(clip = %record.clip, session = %record.session, attempt, "clip uploaded");
                let _ = self.events.send(ClipUploadOutcome::Uploaded {
                    clip: record.clip,
                    session: record.session,
                    scene: record.scene,
                });
                Attempt::Delivered
            }
            Err(failure) => {
                let permanent = failure.is_permanent();
                let reason = failure.reason().to_string();
                let _ = self.events.send(ClipUploadOutcome::UploadFailed {
                    clip: record.clip.clone(),
                    session: record.session.clone(),
                    reason: reason.clone(),
                    attempt,
                    permanent,
                });
                if permanent {
                    error!(clip = %record.clip, attempt, reason, "clip upload refused by the backend; kept in the clip spool");
                    self.pending.fetch_sub(1, Ordering::SeqCst);
                } else {
                    warn!(clip = %record.clip, attempt, reason, "clip upload failed; will retry");
                    self.queue.push_back((record, attempt + 1));
                }
                Attempt::Failed(failure)
            }
        }
    }
}

impl Clips {
    /// The clip, its poster, then the record marked uploaded.
    async fn send(&self, link: &Link, record: &ClipRecord) -> Result<(), Failure> {
        let mp4 = tokio::fs::read(ClipRecord::mp4_path(&self.dir, &record.clip))
            .await
            .map_err(|e| Failure::Permanent(format!("cannot read the clip from the spool: {e}")))?;
        if crate::spool::sha256_hex(&mp4) != record.sha256 {
            return Err(Failure::Permanent(
                "the clip in the spool no longer matches its record's sha256".into(),
            ));
        }
        post(link, record, mp4).await?;
        let poster = tokio::fs::read(ClipRecord::poster_path(&self.dir, &record.clip))
            .await
            .map_err(|e| Failure::Permanent(format!("cannot read the poster frame: {e}")))?;
        let request = link
            .request(
                Method::PUT,
                &api::clip_poster_path(&record.scene, &record.clip),
            )
            .header(reqwest::header::CONTENT_TYPE, api::PHOTO_CONTENT_TYPE)
            .header(
                api::header::CONTENT_SHA256,
                crate::spool::sha256_hex(&poster),
            )
            .body(poster);
        link.send(request, |status| status.is_success()).await?;
        let mut done = record.clone();
        done.uploaded = true;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || done.write_durably(&dir))
            .await
            .map_err(|e| Failure::transient(format!("clip spool task failed: {e}")))?
            .map_err(|e| {
                // Sent again after a restart, which the idempotency key makes harmless.
                Failure::transient(format!("cannot mark the clip uploaded in its record: {e}"))
            })
    }
}

/// Uploads one clip and checks the backend's confirmation.
async fn post(link: &Link, record: &ClipRecord, body: Vec<u8>) -> Result<(), Failure> {
    let len = body.len() as u64;
    let upload = Upload {
        path: api::clips_path(&record.scene),
        content_type: api::CLIP_CONTENT_TYPE,
        id_header: api::header::CLIP_ID,
        id: &record.clip,
        session: &record.session,
        taken_at_ms: record.taken_at_ms,
        trigger: &record.trigger,
        sha256: &record.sha256,
    };
    let c: ClipUploadResponse = link.upload(&upload, body).await?;
    if c.clip != record.clip || !c.sha256.eq_ignore_ascii_case(&record.sha256) || c.bytes != len {
        return Err(Failure::Permanent(format!(
            "backend confirmed clip {:?} (sha256 {}, {} bytes), not the one sent ({}, {}, {len} bytes)",
            c.clip, c.sha256, c.bytes, record.clip, record.sha256
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_records_skip_uploaded_ones_and_drop_orphans() {
        let dir = tempfile::tempdir().unwrap();
        let record = |clip: &str, at: u64, uploaded: bool| ClipRecord {
            clip: clip.into(),
            session: "s".into(),
            scene: "sc".into(),
            trigger: "open_palm_hold".into(),
            taken_at_ms: at,
            sha256: "ab".repeat(32),
            bytes: 3,
            uploaded,
        };
        for (clip, at, uploaded, mp4) in [
            ("b", 2, false, true),
            ("a", 1, false, true),
            ("done", 0, true, true),
            ("orphan", 3, false, false),
        ] {
            record(clip, at, uploaded)
                .write_durably(dir.path())
                .unwrap();
            if mp4 {
                std::fs::write(ClipRecord::mp4_path(dir.path(), clip), b"mp4").unwrap();
            }
        }
        std::fs::write(dir.path().join("junk.json"), b"{").unwrap();
        let pending: Vec<String> = ClipRecord::pending(dir.path())
            .into_iter()
            .map(|r| r.clip)
            .collect();
        assert_eq!(pending, ["a", "b"]);
        assert!(!ClipRecord::record_path(dir.path(), "orphan").exists());
        assert!(dir.path().join("junk.json").exists(), "left for a person");
    }
}
