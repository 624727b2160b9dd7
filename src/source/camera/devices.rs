//! The cameras on this machine and their modes (`mirrorsight check`), and the choice of the
//! mode that best matches `[camera]`.

use std::fmt;
use std::path::PathBuf;

use nokhwa::Camera;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
};
use serde::Serialize;
use tracing::warn;

use super::settings::{CameraSettings, PixelFormat};

/// The pixel formats we decode.
pub(super) const DECODABLE: [FrameFormat; 2] = [FrameFormat::MJPEG, FrameFormat::YUYV];

/// Picks the camera mode for `want`: closest resolution first (vision and photos are sized
/// for it), then the smallest shortfall in frame rate (gestures need the rate), then YUYV
/// over MJPEG in `auto` (no decode), then the smallest excess rate (less CPU).
pub fn choose_format(available: &[CameraFormat], want: &CameraSettings) -> Option<CameraFormat> {
    let allowed = |f: FrameFormat| match want.format {
        PixelFormat::Auto => DECODABLE.contains(&f),
        PixelFormat::Mjpeg => f == FrameFormat::MJPEG,
        PixelFormat::Yuyv => f == FrameFormat::YUYV,
    };
    available
        .iter()
        // V4L2 reports 29.97 fps as 30000/1001; nokhwa passes the denominator through.
        .filter(|f| allowed(f.format()) && (1..=1000).contains(&f.frame_rate()))
        .min_by_key(|f| {
            let dw = (i64::from(f.width()) - i64::from(want.width)).abs();
            let dh = (i64::from(f.height()) - i64::from(want.height)).abs();
            let fps = i64::from(f.frame_rate());
            let wanted = i64::from(want.fps);
            let format_rank = u8::from(f.format() != FrameFormat::YUYV);
            (
                dw + dh,
                (wanted - fps).max(0),
                format_rank,
                (fps - wanted).max(0),
            )
        })
        .copied()
}

/// One mode a camera offers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct CameraMode {
    /// "MJPEG", "YUYV", "NV12", "GRAY", …
    pub format: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

/// A camera as `mirrorsight check` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CameraDescription {
    pub index: u32,
    pub path: PathBuf,
    pub name: String,
    pub modes: Vec<CameraMode>,
    /// Why the modes could not be read (busy, a metadata-only node, permissions).
    pub error: Option<String>,
}

impl fmt::Display for CameraDescription {
    /// `/dev/video0 (camera.device = "0"): Name` then one line per format and size with its rates.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (camera.device = \"{}\"): {}",
            self.path.display(),
            self.index,
            self.name
        )?;
        if let Some(e) = &self.error {
            write!(f, "\n  modes unavailable: {e}")?;
        }
        let mut modes = self.modes.clone();
        // Largest sizes first, each with its rates from fastest.
        modes.sort_by(|a, b| {
            (&a.format, b.width, b.height, b.fps).cmp(&(&b.format, a.width, a.height, a.fps))
        });
        let mut i = 0;
        while i < modes.len() {
            let m = &modes[i];
            let same: Vec<String> = modes[i..]
                .iter()
                .take_while(|n| n.format == m.format && n.width == m.width && n.height == m.height)
                .map(|n| n.fps.to_string())
                .collect();
            write!(
                f,
                "\n  {} {}x{} @ {} fps",
                m.format,
                m.width,
                m.height,
                same.join("/")
            )?;
            i += same.len();
        }
        Ok(())
    }
}

/// Every V4L2 camera with its modes. Never fails: no cameras (or no V4L2) is an empty list.
pub fn list_cameras() -> Vec<CameraDescription> {
    let infos = match nokhwa::query(ApiBackend::Video4Linux) {
        Ok(infos) => infos,
        Err(e) => {
            warn!(error = %e, "cannot list V4L2 cameras");
            return Vec::new();
        }
    };
    let mut cameras: Vec<CameraDescription> = infos
        .into_iter()
        .filter_map(|info| {
            let index = info.index().as_index().ok()?;
            let (modes, error) = match camera_modes(index) {
                Ok(modes) => (modes, None),
                Err(e) => (Vec::new(), Some(e)),
            };
            Some(CameraDescription {
                index,
                path: PathBuf::from(format!("/dev/video{index}")),
                name: info.human_name(),
                modes,
                error,
            })
        })
        .collect();
    cameras.sort_by_key(|c| c.index);
    cameras
}

fn camera_modes(index: u32) -> Result<Vec<CameraMode>, String> {
    let all = nokhwa::utils::frame_formats();
    let mut camera = Camera::with_backend(
        CameraIndex::Index(index),
        RequestedFormat::with_formats(RequestedFormatType::None, all),
        ApiBackend::Video4Linux,
    )
    .map_err(|e| describe_open_error(&e.to_string()))?;
    let mut modes: Vec<CameraMode> = camera
        .compatible_camera_formats()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|f| (1..=1000).contains(&f.frame_rate()))
        .map(|f| CameraMode {
            format: f.format().to_string(),
            width: f.width(),
            height: f.height(),
            fps: f.frame_rate(),
        })
        .collect();
    modes.sort();
    modes.dedup();
    Ok(modes)
}

pub(super) fn describe_open_error(e: &str) -> String {
    if e.contains("Fufill") || e.contains("Fulfill") {
        // nokhwa's wording when the node has no capture formats (UVC metadata nodes).
        "no video capture formats (a metadata node?)".into()
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(f: FrameFormat, w: u32, h: u32, fps: u32) -> CameraFormat {
        CameraFormat::new_from(w, h, f, fps)
    }

    #[test]
    fn auto_prefers_rate_then_yuyv() {
        let modes = [
            mode(FrameFormat::YUYV, 1280, 720, 10),
            mode(FrameFormat::MJPEG, 1280, 720, 30),
            mode(FrameFormat::YUYV, 640, 480, 30),
            mode(FrameFormat::MJPEG, 640, 480, 30),
            mode(FrameFormat::NV12, 1280, 720, 60),
        ];
        let mut want = CameraSettings::default();
        assert_eq!(
            choose_format(&modes, &want),
            Some(mode(FrameFormat::MJPEG, 1280, 720, 30))
        );
        want.width = 640;
        want.height = 480;
        assert_eq!(
            choose_format(&modes, &want),
            Some(mode(FrameFormat::YUYV, 640, 480, 30))
        );
        want.format = PixelFormat::Mjpeg;
        assert_eq!(
            choose_format(&modes, &want),
            Some(mode(FrameFormat::MJPEG, 640, 480, 30))
        );
        want.format = PixelFormat::Yuyv;
        want.width = 1920;
        want.height = 1080;
        assert_eq!(
            choose_format(&modes, &want),
            Some(mode(FrameFormat::YUYV, 1280, 720, 10))
        );
        assert_eq!(
            choose_format(&[mode(FrameFormat::NV12, 640, 480, 30)], &want),
            None
        );
    }

    #[test]
    fn description_groups_rates() {
        let d = CameraDescription {
            index: 0,
            path: "/dev/video0".into(),
            name: "Cam".into(),
            modes: vec![
                CameraMode {
                    format: "MJPEG".into(),
                    width: 1280,
                    height: 720,
                    fps: 15,
                },
                CameraMode {
                    format: "MJPEG".into(),
                    width: 1280,
                    height: 720,
                    fps: 30,
                },
                CameraMode {
                    format: "YUYV".into(),
                    width: 640,
                    height: 480,
                    fps: 30,
                },
            ],
            error: None,
        };
        assert_eq!(
            d.to_string(),
            "/dev/video0 (camera.device = \"0\"): Cam\n  MJPEG 1280x720 @ 30/15 fps\n  YUYV 640x480 @ 30 fps"
        );
    }
}
