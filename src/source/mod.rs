//! Frame sources: everything that yields frames sits behind [`Source`], so replay, a paced
//! clip and a live camera feed the same pipeline. A source that must stop on request is handed
//! a [`StopSignal`]; sources never reach into the service that runs them.

pub mod camera;
pub mod health;
mod queue;
pub mod reconnect;
pub mod stop;
mod video;

pub use camera::{CameraSettings, CameraSource};
pub use health::{ConnectionState, SourceHealth, SourceHealthSnapshot};
pub use queue::{FrameQueue, FrameReceiver, QueuePolicy};
pub use reconnect::{ReconnectOptions, ReconnectingSource};
pub use stop::{StopSignal, StopTrigger, UntilStopped, stop_pair};
pub use video::VideoFile;

use std::path::PathBuf;

use thiserror::Error;

use crate::frame::Frame;

#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    /// What the frames come from (a path or a device), for logs.
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// Nominal frame rate (the clip's own, or the camera's).
    pub fps: f64,
    /// Number of frames if known in advance (clips).
    pub frames: Option<u64>,
}

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("video {path}: no such file (check the path)")]
    NotFound { path: PathBuf },
    #[error("video {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error(
        "video {path}: cannot decode: {reason} (is it a complete mp4/mkv/avi/gif? try `ffprobe {path}`)"
    )]
    Undecodable { path: PathBuf, reason: String },
    #[error("video {path}: decoding failed at frame {frame}: {reason}")]
    Decode {
        path: PathBuf,
        frame: u64,
        reason: String,
    },
}

/// Anything that yields frames in time order.
pub trait Source: Send {
    fn info(&self) -> &SourceInfo;
    /// The next frame, or `None` at the end of the stream.
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError>;
}
