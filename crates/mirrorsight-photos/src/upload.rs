//! The background uploader: one tokio task that drains the spool to the store backend.
//!
//! ```text
//! POST {backend}/v1/sessions/{scene}/photos           body: the jpg, byte for byte
//!   Authorization: Bearer <device token>   Idempotency-Key / X-Photo-Id: <photo>
//!   X-Session-Id, X-Taken-At (unix ms), X-Trigger, X-Content-SHA256 (hex)
//!   201/200 {"photo","sha256","bytes"} → confirmed (sha256 checked) → sidecar `uploaded`
//! DELETE {backend}/v1/sessions/{scene}/photos/{photo}  204, or 404 (already gone)
//! ```
//! One request at a time, oldest photo first, through the upload loop of [`crate::delivery`].
//! A transient failure puts the photo at the back of the queue and waits with backoff; any
//! other 4xx is permanent: the photo stays in the spool as `failed` (never deleted) and is
//! retried after a restart. Because the photo id is the idempotency key, sending again after
//! a crash is harmless.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use mirrorsight_contract::backend::{self as api, PhotoUploadResponse};
use mirrorsight_contract::events::EventKind;
use reqwest::{Method, StatusCode};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::delivery::{Attempt, Cargo, Courier, Failure, Link, Running, Upload};
pub use crate::delivery::{Backend, ShutdownReport, UploadError, UploaderOptions};
use crate::spool::{Job, Marked, PhotoId, Sidecar, Spool};

/// What happened to a photo, for the event stream.
#[derive(Debug, Clone, PartialEq)]
pub enum UploadOutcome {
    /// The backend confirmed the photo (same sha256).
    Uploaded {
        photo: String,
        session: String,
        scene: String,
    },
    /// One attempt failed. `permanent`: the backend refused it (4xx); it stays in the spool and
    /// is not retried until the next start. Otherwise it is retried after a backoff.
    UploadFailed {
        photo: String,
        session: String,
        reason: String,
        attempt: u32,
        permanent: bool,
    },
    /// A discarded photo is gone from the backend too.
    RemoteDeleted { photo: String, session: String },
    /// Deleting a discarded photo from the backend failed; retried like an upload.
    RemoteDeleteFailed {
        photo: String,
        session: String,
        reason: String,
        attempt: u32,
        permanent: bool,
    },
}

impl UploadOutcome {
    /// The event to emit, if the contract has one for it.
    pub fn event(&self) -> Option<EventKind> {
        match self {
            UploadOutcome::Uploaded {
                photo,
                session,
                scene,
            } => Some(EventKind::PhotoUploaded {
                session: session.clone(),
                scene: scene.clone(),
                photo: photo.clone(),
            }),
            UploadOutcome::UploadFailed {
                photo,
                session,
                reason,
                attempt,
                permanent,
                ..
            } => Some(EventKind::PhotoUploadFailed {
                session: session.clone(),
                photo: photo.clone(),
                reason: reason.clone(),
                attempt: *attempt,
                permanent: *permanent,
            }),
            UploadOutcome::RemoteDeleted { .. } | UploadOutcome::RemoteDeleteFailed { .. } => None,
        }
    }
}

/// Handle on the background worker. Dropping it stops the worker at its next pause; call
/// `shutdown` to wait for the in-flight upload.
#[derive(Debug)]
pub struct Uploader {
    running: Running,
}

impl Uploader {
    /// Starts the worker on `runtime`. It first sends whatever the spool recovered, then waits
    /// for `Spool::save` / `discard_latest` to wake it.
    pub fn spawn(
        runtime: &tokio::runtime::Handle,
        spool: Arc<Spool>,
        backend: Backend,
        options: UploaderOptions,
    ) -> Result<(Self, mpsc::UnboundedReceiver<UploadOutcome>), UploadError> {
        let link = Link::new(
            &backend,
            options.timeout,
            concat!("mirrorsight-photos/", env!("CARGO_PKG_VERSION")),
        )?;
        let (events, outcomes) = mpsc::unbounded_channel();
        let photos = Photos {
            spool,
            events,
            sweep_interval: options.sweep_interval,
            next_sweep: tokio::time::Instant::now(),
        };
        let running = Courier::spawn(runtime, link, options, photos);
        Ok((Self { running }, outcomes))
    }

    /// Stops the worker: the in-flight request (if any) is finished and recorded, waiting at
    /// most `timeout`; backoff sleeps are cut short.
    pub async fn shutdown(self, timeout: std::time::Duration) -> ShutdownReport {
        self.running.shutdown(timeout).await
    }
}

/// The spool's photos as the upload loop's [`Cargo`]: uploads, remote deletes of discarded
/// photos, and the retention sweep between them.
struct Photos {
    spool: Arc<Spool>,
    events: mpsc::UnboundedSender<UploadOutcome>,
    sweep_interval: std::time::Duration,
    next_sweep: tokio::time::Instant,
}

impl Cargo for Photos {
    type Job = Job;
    const WHAT: &'static str = "photo";

    async fn next(&mut self) -> Option<Job> {
        if tokio::time::Instant::now() >= self.next_sweep {
            let now = unix_ms();
            if let Some(Err(e)) = self.blocking(move |s| s.sweep_retention(now)).await {
                warn!(error = %e, "removing uploaded photos past photos.retention_s failed");
            }
            self.next_sweep = tokio::time::Instant::now() + self.sweep_interval;
        }
        self.blocking(|s| s.next_job()).await.flatten()
    }

    async fn wait(&mut self) -> bool {
        let spool = Arc::clone(&self.spool);
        tokio::select! {
            _ = spool.changed().notified() => {}
            _ = tokio::time::sleep_until(self.next_sweep) => {}
        }
        true
    }

    async fn deliver(&mut self, link: &Link, job: Job) -> Attempt {
        match job {
            Job::Corrupt { sidecar, reason } => {
                self.emit(UploadOutcome::UploadFailed {
                    photo: sidecar.photo.to_string(),
                    session: sidecar.session,
                    reason: format!("not uploaded, quarantined: {reason}"),
                    attempt: 0,
                    permanent: true,
                });
                Attempt::Skipped
            }
            Job::Upload {
                sidecar,
                body,
                attempt,
            } => self.upload(link, sidecar, body, attempt).await,
            Job::Delete { sidecar, attempt } => self.delete(link, sidecar, attempt).await,
        }
    }
}

impl Photos {
    fn emit(&self, outcome: UploadOutcome) {
        // Nobody listening is fine: the log has it too.
        let _ = self.events.send(outcome);
    }

    /// Spool work does fsyncs: keep it off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Spool) -> T + Send + 'static,
    ) -> Option<T> {
        let spool = Arc::clone(&self.spool);
        match tokio::task::spawn_blocking(move || f(&spool)).await {
            Ok(v) => Some(v),
            Err(e) => {
                error!(error = %e, "photo spool task failed");
                None
            }
        }
    }

    async fn upload(
        &mut self,
        link: &Link,
        sidecar: Sidecar,
        body: Vec<u8>,
        attempt: u32,
    ) -> Attempt {
        let id = sidecar.photo.clone();
        match post(link, &sidecar, body).await {
            Ok(()) => {
                let at = unix_ms();
                let mark_id = id.clone();
                let marked = self.blocking(move |s| s.mark_uploaded(&mark_id, at)).await;
                if marked == Some(Marked::DiscardedMeanwhile) {
                    info!(photo = %id, "photo was discarded during its upload: deleting it from the backend");
                } else {
                    info!(photo = %id, session = %sidecar.session, attempt, "photo uploaded");
                    self.emit(UploadOutcome::Uploaded {
                        photo: id.to_string(),
                        session: sidecar.session.clone(),
                        scene: sidecar.scene.clone(),
                    });
                }
                Attempt::Delivered
            }
            Err(failure) => {
                let permanent = failure.is_permanent();
                let reason = failure.reason().to_string();
                let requeue_id = id.clone();
                if permanent {
                    error!(photo = %id, session = %sidecar.session, attempt, reason, "photo upload refused by the backend; kept in the spool");
                    let r = reason.clone();
                    self.blocking(move |s| s.mark_failed(&requeue_id, &r)).await;
                } else {
                    warn!(photo = %id, session = %sidecar.session, attempt, reason, "photo upload failed; will retry");
                    self.blocking(move |s| s.requeue(&requeue_id)).await;
                }
                self.emit(UploadOutcome::UploadFailed {
                    photo: id.to_string(),
                    session: sidecar.session,
                    reason,
                    attempt,
                    permanent,
                });
                Attempt::Failed(failure)
            }
        }
    }

    async fn delete(&mut self, link: &Link, sidecar: Sidecar, attempt: u32) -> Attempt {
        let id = sidecar.photo.clone();
        let request = link.request(
            Method::DELETE,
            &api::photo_path(&sidecar.scene, id.as_str()),
        );
        let result = link
            .send(request, |status| {
                status.is_success() || status == StatusCode::NOT_FOUND
            })
            .await;
        match result {
            Ok(()) => {
                let finish_id = id.clone();
                if let Some(Err(e)) = self.blocking(move |s| s.finish_delete(&finish_id)).await {
                    warn!(photo = %id, error = %e, "backend copy deleted but the tombstone could not be removed");
                }
                info!(photo = %id, session = %sidecar.session, "discarded photo deleted from the backend");
                self.emit(UploadOutcome::RemoteDeleted {
                    photo: id.to_string(),
                    session: sidecar.session,
                });
                Attempt::Delivered
            }
            Err(failure) => {
                let permanent = failure.is_permanent();
                let reason = failure.reason().to_string();
                let rid = id.clone();
                if permanent {
                    error!(photo = %id, reason, "backend refused to delete a discarded photo; retried after a restart");
                    self.blocking(move |s| s.delete_refused(&rid)).await;
                } else {
                    warn!(photo = %id, reason, "deleting a discarded photo from the backend failed; will retry");
                    self.blocking(move |s| s.requeue(&rid)).await;
                }
                self.emit(UploadOutcome::RemoteDeleteFailed {
                    photo: id.to_string(),
                    session: sidecar.session,
                    reason,
                    attempt,
                    permanent,
                });
                Attempt::Failed(failure)
            }
        }
    }
}

/// Uploads one photo and checks the backend's confirmation.
async fn post(link: &Link, sidecar: &Sidecar, body: Vec<u8>) -> Result<(), Failure> {
    let len = body.len() as u64;
    let upload = Upload {
        path: api::photos_path(&sidecar.scene),
        content_type: api::PHOTO_CONTENT_TYPE,
        id_header: api::header::PHOTO_ID,
        id: sidecar.photo.as_str(),
        session: &sidecar.session,
        taken_at_ms: sidecar.taken_at,
        trigger: &sidecar.trigger,
        sha256: &sidecar.sha256,
    };
    let confirmation: PhotoUploadResponse = link.upload(&upload, body).await?;
    verify_confirmation(&sidecar.photo, &sidecar.sha256, len, &confirmation)
}

fn verify_confirmation(
    photo: &PhotoId,
    sha256: &str,
    bytes: u64,
    c: &PhotoUploadResponse,
) -> Result<(), Failure> {
    if c.photo != photo.as_str() {
        return Err(Failure::Permanent(format!(
            "backend confirmed photo {:?}, not {photo}",
            c.photo
        )));
    }
    if !c.sha256.eq_ignore_ascii_case(sha256) || c.bytes != bytes {
        return Err(Failure::Permanent(format!(
            "backend stored a different photo (sha256 {}, {} bytes; sent {sha256}, {bytes} bytes)",
            c.sha256, c.bytes
        )));
    }
    Ok(())
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
