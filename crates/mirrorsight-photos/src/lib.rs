//! Photos at the mirror: pick the sharpest recent frame over the shopper ([`select`]), encode it
//! ([`encode`]), write it durably to the spool ([`spool`]) and deliver it to the store backend
//! in the background ([`upload`]). A photo is what the shopper walks away with: nothing here
//! deletes a photo the backend has not confirmed, and the spool is readable by its owner only.
//!
//! Wiring in the daemon:
//! ```text
//! start-up      Spool::open(SpoolOptions::from_config(&cfg.photos)) → Arc<Spool>
//!               (an Err is a clear, typed reason: log it, run without photos, refuse each
//!               photo_requested with `photo_refused`)
//!               Uploader::spawn(&tokio_handle, spool.clone(), Backend{..}, UploaderOptions::from_config(..))
//!               → forward its UploadOutcome channel to the event writer (UploadOutcome::event)
//! vision thread FrameRing::push(Arc<Frame>) for every frame (ring_frames from config);
//!               countdown_s after photo_requested: ring.snapshot(best_frame_window_s) and the
//!               shopper's Region → photo thread (cheap: Arcs only)
//! photo thread  sharpest(&frames, region) → take_photo(&mut encoder, &spool, &best, &meta, id)
//!               → Taken.saved.event() (photo_saved) or TakeError::refused_event (photo_refused);
//!               photo_discard_requested → spool.discard_latest(session) → Discarded::event()
//!               (the uploader deletes the backend copy by itself when `remote_delete`)
//! shutdown      uploader.shutdown(timeout).await (finishes the upload in flight)
//! ```

pub mod capture;
pub mod clip_upload;
pub mod config;
mod delivery;
pub mod encode;
pub mod secret;
pub mod select;
pub mod spool;
pub mod upload;

pub use capture::{TakeError, Taken, take_photo};
pub use config::{PhotosConfig, PhotosConfigError};
pub use encode::{EncodeError, Encoded, JpegEncoder};
pub use secret::Secret;
pub use select::{Best, Frame, FrameError, FrameRing, PixelFormat, Region, sharpest, sharpness};
pub use spool::{
    Discarded, Manifest, PhotoId, PhotoMeta, PhotoState, RecoveryReport, SavedPhoto, Sidecar,
    Spool, SpoolError, SpoolOptions, SpoolStats,
};
pub use upload::{Backend, ShutdownReport, UploadError, UploadOutcome, Uploader, UploaderOptions};
