//! `[camera]`: what the operator asks of the live camera, and the checks on it. Validation
//! errors name the key (`camera.fps`); the config loader turns them into its own error.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::source::reconnect::ReconnectOptions;
use crate::source::{SourceError, SourceInfo};

/// A `[camera]` value that cannot work, with the key that holds it.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("config key `{key}`: {message}")]
pub struct SettingsError {
    pub key: &'static str,
    pub message: String,
}

fn key_error(key: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError {
        key,
        message: message.into(),
    }
}

/// `camera.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// The mode closest to the requested size and rate; YUYV wins a tie (no decoding cost).
    #[default]
    Auto,
    /// Motion JPEG: high rates at high resolutions over USB 2, costs a JPEG decode per frame.
    Mjpeg,
    /// Uncompressed 4:2:2: cheap to convert, but USB 2 limits it to ~10 fps at 720p.
    Yuyv,
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PixelFormat::Auto => "auto",
            PixelFormat::Mjpeg => "mjpeg",
            PixelFormat::Yuyv => "yuyv",
        })
    }
}

/// `[camera]`: the live camera.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CameraSettings {
    /// The frames arrive flipped left-right, like a selfie preview (some cameras and drivers
    /// do this). Only the meaning of left and right in gestures depends on it. Default false.
    pub mirrored: bool,
    /// V4L2 device: an index ("0" = /dev/video0) or a path ("/dev/video0", or a stable
    /// "/dev/v4l/by-id/usb-…-video-index0" link). Default "0".
    pub device: String,
    /// Requested width in pixels; the closest mode the camera offers is used. Default 1280.
    pub width: u32,
    /// Requested height in pixels. Default 720.
    pub height: u32,
    /// Requested frames per second. Default 30.
    pub fps: u32,
    /// "mjpeg", "yuyv" or "auto". Default "auto".
    pub format: PixelFormat,
    /// An open camera that delivers no frame for this long counts as frozen and is reopened
    /// (seconds). Default 5.
    pub stall_timeout_s: f64,
    /// Longest wait between two attempts to reopen a lost camera (seconds); the first retry
    /// waits 0.5 s and each failure doubles the wait up to this. Default 10.
    pub reconnect_max_s: f64,
}

impl Default for CameraSettings {
    fn default() -> Self {
        Self {
            mirrored: false,
            device: "0".into(),
            width: 1280,
            height: 720,
            fps: 30,
            format: PixelFormat::Auto,
            stall_timeout_s: 5.0,
            reconnect_max_s: 10.0,
        }
    }
}

impl CameraSettings {
    /// Checks every key; errors name it as `camera.<key>`.
    pub fn validate(&self) -> Result<(), SettingsError> {
        CameraDevice::parse(&self.device).map_err(|m| key_error("camera.device", m))?;
        if !(16..=8192).contains(&self.width) {
            return Err(key_error("camera.width", "must be 16..=8192"));
        }
        if !(16..=8192).contains(&self.height) {
            return Err(key_error("camera.height", "must be 16..=8192"));
        }
        if !(1..=240).contains(&self.fps) {
            return Err(key_error("camera.fps", "must be 1..=240"));
        }
        if !(self.stall_timeout_s.is_finite() && self.stall_timeout_s >= 0.5) {
            return Err(key_error("camera.stall_timeout_s", "must be >= 0.5"));
        }
        if !(self.reconnect_max_s.is_finite() && self.reconnect_max_s >= 0.5) {
            return Err(key_error("camera.reconnect_max_s", "must be >= 0.5"));
        }
        Ok(())
    }

    /// How the reconnecting wrapper retries this camera.
    pub fn reconnect_options(&self) -> ReconnectOptions {
        let max_backoff = Duration::from_secs_f64(self.reconnect_max_s.clamp(0.5, 3600.0));
        ReconnectOptions {
            initial_backoff: Duration::from_millis(500).min(max_backoff),
            max_backoff,
            stall_timeout: Duration::from_secs_f64(self.stall_timeout_s.clamp(0.5, 3600.0)),
        }
    }

    /// What the pipeline sees before the camera is first opened (the requested mode).
    pub fn provisional_info(&self) -> SourceInfo {
        SourceInfo {
            name: format!("camera {}", self.device),
            width: self.width,
            height: self.height,
            fps: f64::from(self.fps),
            frames: None,
        }
    }
}

/// `camera.device`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraDevice {
    Index(u32),
    Path(PathBuf),
}

impl CameraDevice {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(CameraDevice::Index)
                .map_err(|_| format!("index {s} is too large"));
        }
        if s.starts_with('/') {
            return Ok(CameraDevice::Path(s.into()));
        }
        Err(format!(
            "{s:?}: expected an index like \"0\" or a path like \"/dev/video0\""
        ))
    }

    /// The V4L2 index and the node it names. by-id/by-path links are followed, which is what
    /// makes them survive re-enumeration after an unplug.
    pub fn resolve(&self) -> Result<(u32, PathBuf), SourceError> {
        match self {
            CameraDevice::Index(i) => {
                let path = PathBuf::from(format!("/dev/video{i}"));
                if !path.exists() {
                    return Err(SourceError::NotFound { path });
                }
                Ok((*i, path))
            }
            CameraDevice::Path(p) => {
                let real = std::fs::canonicalize(p).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => SourceError::NotFound { path: p.clone() },
                    _ => SourceError::Unreadable {
                        path: p.clone(),
                        reason: e.to_string(),
                    },
                })?;
                let index = real
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("video"))
                    .and_then(|n| n.parse::<u32>().ok())
                    .ok_or_else(|| SourceError::Unreadable {
                        path: p.clone(),
                        reason: format!(
                            "resolves to {}, which is not a V4L2 video node (/dev/videoN)",
                            real.display()
                        ),
                    })?;
                Ok((index, real))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_validate_naming_keys() {
        let s: CameraSettings =
            toml::from_str("device = \"/dev/video2\"\nformat = \"yuyv\"\nfps = 15").unwrap();
        assert_eq!(s.format, PixelFormat::Yuyv);
        assert_eq!(s.fps, 15);
        assert_eq!(s.width, 1280);
        s.validate().unwrap();
        assert_eq!(CameraDevice::parse("2"), Ok(CameraDevice::Index(2)));
        assert!(toml::from_str::<CameraSettings>("format = \"h264\"").is_err());
        assert!(toml::from_str::<CameraSettings>("colour = 1").is_err());
        let bad = CameraSettings {
            device: "video0".into(),
            ..Default::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("camera.device")
        );
        let bad = CameraSettings {
            fps: 0,
            ..Default::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("camera.fps")
        );
        let bad = CameraSettings {
            reconnect_max_s: f64::NAN,
            ..Default::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("camera.reconnect_max_s")
        );
    }

    #[test]
    fn default_settings_give_the_default_reconnect_options() {
        assert_eq!(
            CameraSettings::default().reconnect_options(),
            ReconnectOptions::default()
        );
    }
}
