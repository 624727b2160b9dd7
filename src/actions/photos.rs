//! Photos: the sharpest frame of the moment, encoded, written durably to the spool, and
//! delivered to the store backend in the background, bound to the session's scene.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mirrorsight_contract::events::{Event, EventKind};
use mirrorsight_photos::{
    Backend, JpegEncoder, PhotoId, PhotoMeta, PhotosConfig, PixelFormat, Region, Spool,
    SpoolOptions, UploadOutcome, Uploader, UploaderOptions, sharpest, take_photo,
};
use thiserror::Error;
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{error, info, warn};

use super::Action;
use crate::frame::Capture;
use crate::ids::IdGenerator;

/// At the end of a replay (or a shutdown): how long queued uploads may still go out, then
/// how long the upload in flight may take to finish.
const UPLOAD_DRAIN_WAIT: Duration = Duration::from_secs(10);
const UPLOAD_SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum PhotoStartError {
    #[error("photos: {0}")]
    Encoder(#[from] mirrorsight_photos::EncodeError),
    #[error("device token: {0}")]
    Secret(#[from] mirrorsight_wechat::SecretError),
    #[error("photo uploads: {0}")]
    Upload(#[from] mirrorsight_photos::UploadError),
}

pub struct PhotoAction {
    /// `Err` keeps the reason the spool could not be opened: every photo is then refused
    /// with it, and the mirror keeps working otherwise.
    spool: Result<Arc<Spool>, String>,
    encoder: JpegEncoder,
    uploader: Option<(Uploader, UnboundedReceiver<UploadOutcome>)>,
    runtime: tokio::runtime::Handle,
    /// Session → scene, learnt from `qr_minted`.
    scenes: HashMap<String, String>,
    /// Session → the photo the compare view shows (a thumbs down discards that one).
    compared: HashMap<String, String>,
    ids: IdGenerator,
    now: f64,
    metrics: Arc<crate::metrics::Metrics>,
    /// Media time the spool gauges were last refreshed.
    gauges_at: f64,
}

impl PhotoAction {
    /// Opens the spool (`[photos]`) and, with `backend.url` set, starts uploading to it.
    pub fn start(
        photos: &PhotosConfig,
        backend: &mirrorsight_wechat::BackendConfig,
        ids: IdGenerator,
        runtime: tokio::runtime::Handle,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Self, PhotoStartError> {
        let encoder = JpegEncoder::new(photos.jpeg_quality)?;
        let spool = match Spool::open(SpoolOptions::from_config(photos)) {
            Ok((spool, report)) => {
                info!(?report, dir = %photos.spool_dir.display(), "photo spool ready");
                Ok(Arc::new(spool))
            }
            Err(e) => {
                // One clear line for the operator; photos are refused until it is fixed.
                error!("{e}");
                Err(e.reason().to_string())
            }
        };
        let uploader = match (&backend.url, &spool) {
            (Some(url), Ok(spool)) => {
                let token = device_token(backend)?;
                let backend = Backend {
                    base_url: url.clone(),
                    token,
                };
                let options = UploaderOptions::from_config(photos);
                Some(Uploader::spawn(&runtime, spool.clone(), backend, options)?)
            }
            _ => None,
        };
        Ok(Self {
            spool,
            encoder,
            uploader,
            runtime,
            scenes: HashMap::new(),
            compared: HashMap::new(),
            ids,
            now: 0.0,
            metrics,
            gauges_at: f64::NEG_INFINITY,
        })
    }

    fn take(&mut self, capture: &Capture) -> Event {
        let refused = |reason: String| {
            Event::new(
                capture.t,
                EventKind::PhotoRefused {
                    session: capture.session.clone(),
                    reason,
                },
            )
        };
        let spool = match &self.spool {
            Ok(spool) => spool.clone(),
            Err(reason) => return refused(reason.clone()),
        };
        // Copies only the few candidate frames, and only when a photo is actually taken.
        let frames: Vec<_> = capture
            .frames
            .iter()
            .filter_map(|f| {
                mirrorsight_photos::Frame::new(
                    f.image.width,
                    f.image.height,
                    PixelFormat::Rgb8,
                    f.image.data.clone(),
                    f.t,
                )
                .ok()
                .map(Arc::new)
            })
            .collect();
        let Some(first) = frames.first() else {
            return refused("no_frame".into());
        };
        let roi = match capture.region {
            Some(r) => Region::from_normalized(
                r[0] / first.width() as f32,
                r[1] / first.height() as f32,
                r[2] / first.width() as f32,
                r[3] / first.height() as f32,
                first.width(),
                first.height(),
            ),
            None => Region::full(first),
        };
        let Some(best) = sharpest(&frames, roi) else {
            return refused("no_frame".into());
        };
        // The scene ties the photo to the shopper's scan; until a code is minted the session id stands in.
        let scene = self
            .scenes
            .get(&capture.session)
            .cloned()
            .unwrap_or_else(|| capture.session.clone());
        let meta = PhotoMeta {
            session: capture.session.clone(),
            scene,
            taken_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            t: capture.t,
            trigger: capture.trigger.clone(),
        };
        let id = match self.unused_photo_id(&spool) {
            Ok(id) => id,
            Err(e) => return refused(e.reason().to_string()),
        };
        match take_photo(&mut self.encoder, &spool, &best, &meta, id) {
            Ok(taken) => {
                info!(
                    encode_ms = taken.encode.as_secs_f64() * 1e3,
                    sharpness = taken.sharpness,
                    "photo saved"
                );
                Event::new(capture.t, taken.saved.event())
            }
            Err(e) => {
                warn!("photo refused: {e}");
                Event::new(capture.t, e.refused_event(&capture.session))
            }
        }
    }

    /// The next id that no photo in the spool has. A live mirror's ids never repeat, but a
    /// seeded replay that resumes a spool it wrote before draws the same ids again; taking the
    /// next one keeps its photos from being refused as duplicates (and the run deterministic).
    fn unused_photo_id(
        &mut self,
        spool: &Spool,
    ) -> Result<PhotoId, mirrorsight_photos::SpoolError> {
        loop {
            let id = PhotoId::parse(&self.ids.next_id())?;
            if !spool.contains(&id) {
                return Ok(id);
            }
        }
    }

    fn drain_uploads(&mut self, emit: &mut Vec<Event>) {
        if let Some((_, outcomes)) = &mut self.uploader {
            while let Ok(outcome) = outcomes.try_recv() {
                if let Some(kind) = outcome.event() {
                    emit.push(Event::new(self.now, kind));
                }
            }
        }
    }
}

impl Action for PhotoAction {
    fn on_event(&mut self, event: &Event, emit: &mut Vec<Event>) {
        self.now = self.now.max(event.t);
        match &event.kind {
            EventKind::QrMinted { session, scene, .. } => {
                self.scenes.insert(session.clone(), scene.clone());
            }
            EventKind::CompareShown { session, photo, .. } => {
                self.compared.insert(session.clone(), photo.clone());
            }
            EventKind::CompareClosed { session, .. } => {
                self.compared.remove(session);
            }
            EventKind::PhotoDiscardRequested { session } => {
                let Ok(spool) = &self.spool else { return };
                // The photo on show in the compare view, else the latest.
                let result = match self.compared.get(session).map(|p| PhotoId::parse(p)) {
                    Some(Ok(photo)) => spool.discard_photo(session, &photo),
                    _ => spool.discard_latest(session),
                };
                match result {
                    // The uploader deletes the backend's copy itself when it already had one.
                    Ok(Some(discarded)) => emit.push(Event::new(event.t, discarded.event())),
                    Ok(None) => {}
                    Err(e) => warn!("discard failed: {e}"),
                }
            }
            EventKind::SessionEnded { session, .. } => {
                self.scenes.remove(session);
                self.compared.remove(session);
            }
            _ => {}
        }
    }

    fn on_capture(&mut self, capture: &Capture, emit: &mut Vec<Event>) {
        emit.push(self.take(capture));
    }

    fn poll(&mut self, t: f64, emit: &mut Vec<Event>) {
        self.now = self.now.max(t);
        self.drain_uploads(emit);
        // The spool gauges need a lock and a walk over the index: once a second is plenty.
        if t - self.gauges_at >= 1.0
            && let Ok(spool) = &self.spool
        {
            self.gauges_at = t;
            let stats = spool.stats();
            let relaxed = std::sync::atomic::Ordering::Relaxed;
            self.metrics.spool_bytes.store(stats.used_bytes, relaxed);
            self.metrics
                .spool_pending_uploads
                .store(stats.pending as u64, relaxed);
        }
    }

    fn finish(&mut self, emit: &mut Vec<Event>) {
        let Some((uploader, mut outcomes)) = self.uploader.take() else {
            return;
        };
        // Give queued photos a bounded chance to reach the backend before stopping; whatever
        // is left stays in the spool and goes out after the next start.
        if let Ok(spool) = &self.spool {
            let deadline = std::time::Instant::now() + UPLOAD_DRAIN_WAIT;
            while std::time::Instant::now() < deadline {
                let stats = spool.stats();
                if stats.pending == 0 && stats.deletes_owed == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let report = self
            .runtime
            .block_on(uploader.shutdown(UPLOAD_SHUTDOWN_WAIT));
        info!(?report, "uploader stopped");
        while let Ok(outcome) = outcomes.try_recv() {
            if let Some(kind) = outcome.event() {
                emit.push(Event::new(self.now, kind));
            }
        }
    }
}

/// Loads the device token for uploads (file, systemd credential, or environment).
pub fn device_token(
    backend: &mirrorsight_wechat::BackendConfig,
) -> Result<mirrorsight_photos::Secret, mirrorsight_wechat::SecretError> {
    use mirrorsight_wechat::secret::{DEVICE_TOKEN_ENV, SecretSpec, require_secret};
    let spec = SecretSpec {
        what: "device token",
        file_key: "backend.device_token_file",
        file: backend.device_token_file.as_deref(),
        credential: &backend.device_token_credential,
        env: DEVICE_TOKEN_ENV,
    };
    let (secret, _) = require_secret(&spec, &|k| std::env::var(k).ok())?;
    Ok(mirrorsight_photos::Secret::new(secret.expose()))
}
