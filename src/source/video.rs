//! Recorded clips through OpenCV's FFmpeg backend (mp4, mkv, avi, gif, ...).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use opencv::core::{Mat, MatTraitConst, MatTraitConstManual};
use opencv::imgproc;
use opencv::prelude::{VideoCaptureTrait, VideoCaptureTraitConst};
use opencv::videoio::{self, VideoCapture};

use super::{Source, SourceError, SourceInfo};
use crate::frame::{Frame, RgbImage};

pub struct VideoFile {
    path: PathBuf,
    capture: VideoCapture,
    info: SourceInfo,
    seq: u64,
    last_t: f64,
    bgr: Mat,
    rgb: Mat,
    /// The first frame, decoded while opening to prove the file is really a video.
    pending: Option<Frame>,
}

// SAFETY: an OpenCV VideoCapture and Mats may move between threads; they are only ever used
// by the one thread that owns this source.
unsafe impl Send for VideoFile {}

impl VideoFile {
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        quiet_opencv_logs();
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SourceError::NotFound { path: path.into() },
            _ => SourceError::Unreadable {
                path: path.into(),
                reason: e.to_string(),
            },
        })?;
        if !meta.is_file() {
            return Err(SourceError::Unreadable {
                path: path.into(),
                reason: "is not a file".into(),
            });
        }
        std::fs::File::open(path).map_err(|e| SourceError::Unreadable {
            path: path.into(),
            reason: e.to_string(),
        })?;
        let undecodable = |reason: String| SourceError::Undecodable {
            path: path.into(),
            reason,
        };
        let capture = VideoCapture::from_file(path, videoio::CAP_FFMPEG)
            .map_err(|e| undecodable(e.message))?;
        if !capture.is_opened().unwrap_or(false) {
            return Err(undecodable("not a video container FFmpeg can open".into()));
        }
        let get = |prop| capture.get(prop).unwrap_or(0.0);
        let fps = get(videoio::CAP_PROP_FPS);
        let frame_count = get(videoio::CAP_PROP_FRAME_COUNT);
        let info = SourceInfo {
            name: path.display().to_string(),
            width: get(videoio::CAP_PROP_FRAME_WIDTH) as u32,
            height: get(videoio::CAP_PROP_FRAME_HEIGHT) as u32,
            fps: if fps.is_finite() && fps > 0.0 && fps < 1000.0 {
                fps
            } else {
                25.0
            },
            frames: (frame_count.is_finite() && frame_count >= 1.0).then_some(frame_count as u64),
        };
        let mut source = Self {
            path: path.into(),
            capture,
            info,
            seq: 0,
            last_t: f64::NEG_INFINITY,
            bgr: Mat::default(),
            rgb: Mat::default(),
            pending: None,
        };
        match source.decode()? {
            Some(first) => {
                source.info.width = first.image.width;
                source.info.height = first.image.height;
                source.pending = Some(first);
                Ok(source)
            }
            None => Err(undecodable("contains no decodable frame".into())),
        }
    }

    fn decode(&mut self) -> Result<Option<Frame>, SourceError> {
        let seq = self.seq;
        let failed = |reason: String| SourceError::Decode {
            path: self.path.clone(),
            frame: seq,
            reason,
        };
        let got = self
            .capture
            .read(&mut self.bgr)
            .map_err(|e| failed(e.message))?;
        if !got || self.bgr.empty() {
            return Ok(None);
        }
        if self.bgr.channels() != 3 {
            return Err(failed(format!(
                "unexpected {} channels",
                self.bgr.channels()
            )));
        }
        imgproc::cvt_color_def(&self.bgr, &mut self.rgb, imgproc::COLOR_BGR2RGB)
            .map_err(|e| failed(e.message))?;
        let (w, h) = (self.rgb.cols() as u32, self.rgb.rows() as u32);
        let bytes = self.rgb.data_bytes().map_err(|e| failed(e.message))?;
        let image = RgbImage::new(w, h, bytes.to_vec())
            .ok_or_else(|| failed("frame size mismatch".into()))?;
        // The container's presentation time when it is sane and increasing; otherwise the
        // nominal frame grid (some gif/avi files report nothing useful).
        let pts = self
            .capture
            .get(videoio::CAP_PROP_POS_MSEC)
            .unwrap_or(f64::NAN)
            / 1000.0;
        let grid = seq as f64 / self.info.fps;
        let t = if pts.is_finite() && pts >= 0.0 && pts > self.last_t && (seq == 0 || pts > 0.0) {
            pts
        } else {
            grid
        };
        let t = t.max(if self.last_t.is_finite() {
            self.last_t + 1e-4
        } else {
            0.0
        });
        self.last_t = t;
        self.seq += 1;
        Ok(Some(Frame {
            seq,
            t,
            image: Arc::new(image),
        }))
    }
}

impl Source for VideoFile {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        match self.pending.take() {
            Some(frame) => Ok(Some(frame)),
            None => self.decode(),
        }
    }
}

/// OpenCV's own warnings would break the one-clear-line contract for bad input; our errors say it all.
fn quiet_opencv_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = opencv::core::set_log_level(opencv::core::LogLevel::LOG_LEVEL_SILENT);
    });
}
