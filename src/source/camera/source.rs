//! A V4L2 camera through nokhwa as a [`Source`]: opens the device in the mode that best
//! matches `[camera]`, reads buffers and converts them (see [`super::convert`]), skipping the
//! odd corrupt USB frame and giving up (for the reconnecting wrapper to reopen) on a run of them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use nokhwa::Camera;
use nokhwa::utils::{ApiBackend, CameraIndex, RequestedFormat, RequestedFormatType};
use tracing::{info, warn};

use super::convert::{FrameConverter, FrameSize};
use super::devices::{DECODABLE, choose_format};
use super::settings::{CameraDevice, CameraSettings};
use crate::frame::Frame;
use crate::source::reconnect::ReconnectingSource;
use crate::source::stop::StopSignal;
use crate::source::{Source, SourceError, SourceInfo};

/// Frames that fail to decode in a row before the camera counts as broken (and is reopened).
const MAX_BAD_FRAMES_IN_A_ROW: u32 = 30;

/// A V4L2 camera as a [`Source`]. Timestamps are seconds on the monotonic clock since the
/// first frame; the stream never ends by itself (errors do), so wrap it in
/// [`ReconnectingSource`] (see [`CameraSource::reconnecting`]).
pub struct CameraSource {
    camera: Camera,
    path: PathBuf,
    info: SourceInfo,
    converter: FrameConverter,
    seq: u64,
    epoch: Option<Instant>,
    bad_in_a_row: u32,
    bad_total: u64,
}

impl CameraSource {
    pub fn open(settings: &CameraSettings) -> Result<Self, SourceError> {
        let device =
            CameraDevice::parse(&settings.device).map_err(|reason| SourceError::Unreadable {
                path: settings.device.clone().into(),
                reason,
            })?;
        let (index, path) = device.resolve()?;
        let unreadable = |reason: String| SourceError::Unreadable {
            path: path.clone(),
            reason,
        };
        let mut camera = Camera::with_backend(
            CameraIndex::Index(index),
            RequestedFormat::with_formats(RequestedFormatType::None, &DECODABLE),
            ApiBackend::Video4Linux,
        )
        .map_err(|e| {
            let e = e.to_string();
            unreadable(if e.contains("Fufill") || e.contains("Fulfill") {
                "offers neither MJPEG nor YUYV (see `mirrorsight check`)".into()
            } else {
                format!(
                    "cannot open camera: {e} (is it plugged in, free, and is the user in group `video`?)"
                )
            })
        })?;
        let available = camera
            .compatible_camera_formats()
            .map_err(|e| unreadable(format!("cannot list camera modes: {e}")))?;
        let chosen = choose_format(&available, settings).ok_or_else(|| {
            unreadable(format!(
                "no {} mode (camera.format); see `mirrorsight check` for what it offers",
                settings.format
            ))
        })?;
        if camera.camera_format() != chosen {
            let only = [chosen.format()];
            camera
                .set_camera_requset(RequestedFormat::with_formats(
                    RequestedFormatType::Exact(chosen),
                    &only,
                ))
                .map_err(|e| unreadable(format!("camera refused mode {chosen}: {e}")))?;
        }
        camera
            .open_stream()
            .map_err(|e| unreadable(format!("cannot start streaming: {e}")))?;
        let mode = camera.camera_format();
        let name = camera.info().human_name();
        info!(
            device = %path.display(),
            camera = %name,
            mode = %mode,
            "camera open"
        );
        Ok(Self {
            info: SourceInfo {
                name: format!("camera {} ({name})", path.display()),
                width: mode.width(),
                height: mode.height(),
                fps: f64::from(mode.frame_rate()),
                frames: None,
            },
            camera,
            path,
            converter: FrameConverter::new(FrameSize {
                width: mode.width(),
                height: mode.height(),
            }),
            seq: 0,
            epoch: None,
            bad_in_a_row: 0,
            bad_total: 0,
        })
    }

    /// The camera behind [`ReconnectingSource`] with the settings' backoff and stall timeout:
    /// what `mirrorsight run` uses for `source.kind = "camera"`. It ends when `stop` fires.
    pub fn reconnecting(
        settings: &CameraSettings,
        stop: StopSignal,
    ) -> ReconnectingSource<impl FnMut() -> Result<Box<dyn Source>, SourceError> + Send + 'static>
    {
        let for_factory = settings.clone();
        ReconnectingSource::new(
            settings.provisional_info(),
            move || CameraSource::open(&for_factory).map(|c| Box::new(c) as Box<dyn Source>),
            settings.reconnect_options(),
            stop,
        )
    }

    fn read_error(&self, reason: String) -> SourceError {
        SourceError::Decode {
            path: self.path.clone(),
            frame: self.seq,
            reason,
        }
    }
}

impl Source for CameraSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        loop {
            let buffer = self
                .camera
                .frame()
                .map_err(|e| self.read_error(format!("camera read failed: {e}")))?;
            let now = Instant::now();
            // Checked against the mode negotiated at open, not the buffer's own claim.
            let converted = self
                .converter
                .convert(buffer.source_frame_format(), buffer.buffer());
            match converted {
                Ok(image) => {
                    self.bad_in_a_row = 0;
                    let epoch = *self.epoch.get_or_insert(now);
                    let frame = Frame {
                        seq: self.seq,
                        t: now.duration_since(epoch).as_secs_f64(),
                        image: Arc::new(image),
                    };
                    self.seq += 1;
                    return Ok(Some(frame));
                }
                Err(e) => {
                    self.bad_in_a_row += 1;
                    self.bad_total += 1;
                    if self.bad_in_a_row >= MAX_BAD_FRAMES_IN_A_ROW {
                        return Err(self.read_error(format!(
                            "{} undecodable frames in a row, last: {e}",
                            self.bad_in_a_row
                        )));
                    }
                    // Occasional corrupt USB frames are normal; say so without flooding the journal.
                    if self.bad_total.is_power_of_two() {
                        warn!(
                            device = %self.path.display(),
                            error = %e,
                            skipped = self.bad_total,
                            "skipping undecodable camera frame"
                        );
                    }
                }
            }
        }
    }
}

impl Drop for CameraSource {
    fn drop(&mut self) {
        let _ = self.camera.stop_stream();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_camera_is_an_error_not_a_panic() {
        if std::path::Path::new("/dev/video0").exists() {
            return; // a real camera: nothing to prove here
        }
        let err = CameraSource::open(&CameraSettings::default())
            .err()
            .expect("no camera, no source");
        assert!(matches!(err, SourceError::NotFound { .. }), "{err}");
        let err = CameraSource::open(&CameraSettings {
            device: "/dev/v4l/by-id/nothing-video-index0".into(),
            ..Default::default()
        })
        .err()
        .expect("no camera, no source");
        assert!(matches!(err, SourceError::NotFound { .. }), "{err}");
        assert!(super::super::list_cameras().is_empty());
    }
}
