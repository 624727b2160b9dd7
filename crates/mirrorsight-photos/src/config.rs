//! The `[photos]` section of the daemon's config.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

/// A config value that is out of range; `key` is the full dotted name, e.g. `photos.jpeg_quality`,
/// so the daemon can report it exactly like its own key errors.
#[derive(Debug, Error, Clone, PartialEq)]
#[error("config key `{key}`: {message}")]
pub struct PhotosConfigError {
    pub key: &'static str,
    pub message: String,
}

fn key_error(key: &'static str, message: impl Into<String>) -> PhotosConfigError {
    PhotosConfigError {
        key,
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhotosConfig {
    /// Directory holding photos not yet uploaded (and uploaded ones until `retention_s`).
    /// Created with mode 0700 if missing. Default: `/var/lib/mirrorsight/spool`.
    pub spool_dir: PathBuf,
    /// JPEG quality, 1–100. Default: 90.
    pub jpeg_quality: u8,
    /// Seconds between `photo_requested` and the capture (the overlay shows the countdown).
    /// Default: 3.
    pub countdown_s: f64,
    /// Full-resolution frames kept in the capture ring to pick the sharpest from. Default: 8.
    pub ring_frames: usize,
    /// Only frames this many seconds (media time) older than the newest are candidates for the
    /// photo, so a sharp frame from before the shopper struck the pose is not chosen. Default: 0.5.
    pub best_frame_window_s: f64,
    /// Also take a photo on every `outfit_switch`. Default: false.
    pub capture_on_outfit_switch: bool,
    /// Disk space the spool may use, in MiB (photos, sidecars, quarantine). When it is reached,
    /// uploaded photos are removed early; photos not yet uploaded never are: the new photo is
    /// refused instead. Default: 1024.
    pub spool_quota_mb: u64,
    /// Seconds an uploaded photo stays in the spool after the backend confirmed it. Default: 3600.
    pub retention_s: u64,
    /// Shortest wait before retrying an upload that failed for a transient reason (network
    /// down, 5xx, 408, 429), in seconds. Default: 1.
    pub upload_backoff_min_s: f64,
    /// Longest wait between upload retries; the wait doubles from `upload_backoff_min_s` up to
    /// this, with full jitter. Default: 60.
    pub upload_backoff_max_s: f64,
    /// Time limit for one upload request (connect, send, answer), in seconds. Default: 30.
    pub upload_timeout_s: f64,
}

impl Default for PhotosConfig {
    fn default() -> Self {
        Self {
            spool_dir: PathBuf::from("/var/lib/mirrorsight/spool"),
            jpeg_quality: 90,
            countdown_s: 3.0,
            ring_frames: 8,
            best_frame_window_s: 0.5,
            capture_on_outfit_switch: false,
            spool_quota_mb: 1024,
            retention_s: 3600,
            upload_backoff_min_s: 1.0,
            upload_backoff_max_s: 60.0,
            upload_timeout_s: 30.0,
        }
    }
}

impl PhotosConfig {
    pub fn validate(&self) -> Result<(), PhotosConfigError> {
        if self.spool_dir.as_os_str().is_empty() || !self.spool_dir.is_absolute() {
            return Err(key_error(
                "photos.spool_dir",
                format!(
                    "must be an absolute path, got {:?}",
                    self.spool_dir.display().to_string()
                ),
            ));
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return Err(key_error(
                "photos.jpeg_quality",
                format!("must be 1..=100, got {}", self.jpeg_quality),
            ));
        }
        in_range("photos.countdown_s", self.countdown_s, 0.0, 60.0)?;
        if !(1..=256).contains(&self.ring_frames) {
            // Each frame is a full-resolution copy (≈6 MB at 1080p), so the ring is bounded.
            return Err(key_error(
                "photos.ring_frames",
                format!("must be 1..=256, got {}", self.ring_frames),
            ));
        }
        in_range(
            "photos.best_frame_window_s",
            self.best_frame_window_s,
            0.0,
            60.0,
        )?;
        if self.spool_quota_mb == 0 {
            return Err(key_error("photos.spool_quota_mb", "must be at least 1"));
        }
        if self.spool_quota_mb > u64::MAX / (1024 * 1024) {
            return Err(key_error(
                "photos.spool_quota_mb",
                format!("too large: {}", self.spool_quota_mb),
            ));
        }
        positive("photos.upload_backoff_min_s", self.upload_backoff_min_s)?;
        positive("photos.upload_backoff_max_s", self.upload_backoff_max_s)?;
        if self.upload_backoff_max_s < self.upload_backoff_min_s {
            return Err(key_error(
                "photos.upload_backoff_max_s",
                format!(
                    "must be >= photos.upload_backoff_min_s ({}), got {}",
                    self.upload_backoff_min_s, self.upload_backoff_max_s
                ),
            ));
        }
        in_range(
            "photos.upload_backoff_max_s",
            self.upload_backoff_max_s,
            0.0,
            86_400.0,
        )?;
        positive("photos.upload_timeout_s", self.upload_timeout_s)?;
        in_range(
            "photos.upload_timeout_s",
            self.upload_timeout_s,
            0.0,
            3_600.0,
        )?;
        Ok(())
    }

    pub fn spool_quota_bytes(&self) -> u64 {
        self.spool_quota_mb.saturating_mul(1024 * 1024)
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_s)
    }

    pub fn countdown(&self) -> Duration {
        secs(self.countdown_s)
    }

    pub fn upload_backoff_min(&self) -> Duration {
        secs(self.upload_backoff_min_s)
    }

    pub fn upload_backoff_max(&self) -> Duration {
        secs(self.upload_backoff_max_s)
    }

    pub fn upload_timeout(&self) -> Duration {
        secs(self.upload_timeout_s)
    }
}

/// Saturating so an unvalidated config cannot panic in `Duration::from_secs_f64`.
fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(if s > 0.0 {
        Duration::MAX
    } else {
        Duration::ZERO
    })
}

fn positive(key: &'static str, v: f64) -> Result<(), PhotosConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(key_error(key, format!("must be > 0, got {v}")))
    }
}

fn in_range(key: &'static str, v: f64, lo: f64, hi: f64) -> Result<(), PhotosConfigError> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(key_error(
            key,
            format!("must be between {lo} and {hi}, got {v}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = PhotosConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.spool_dir, PathBuf::from("/var/lib/mirrorsight/spool"));
        assert_eq!(c.jpeg_quality, 90);
        assert_eq!(c.countdown_s, 3.0);
        assert_eq!(c.ring_frames, 8);
        assert!(!c.capture_on_outfit_switch);
        assert_eq!(c.spool_quota_bytes(), 1024 * 1024 * 1024);
    }

    #[test]
    fn errors_name_the_full_key() {
        let c = PhotosConfig {
            jpeg_quality: 0,
            ..Default::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "photos.jpeg_quality");
        assert!(e.to_string().contains("photos.jpeg_quality"), "{e}");

        let c = PhotosConfig {
            upload_backoff_min_s: 10.0,
            upload_backoff_max_s: 1.0,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "photos.upload_backoff_max_s");

        let c = PhotosConfig {
            countdown_s: f64::NAN,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "photos.countdown_s");

        let c = PhotosConfig {
            spool_dir: "relative/spool".into(),
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "photos.spool_dir");

        let c = PhotosConfig {
            ring_frames: 0,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "photos.ring_frames");

        let c = PhotosConfig {
            spool_quota_mb: 0,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "photos.spool_quota_mb");
    }

    #[test]
    fn partial_sections_take_defaults_and_unknown_keys_are_rejected() {
        let c: PhotosConfig = serde_json::from_str(r#"{"jpeg_quality": 80}"#).unwrap();
        assert_eq!(c.jpeg_quality, 80);
        assert_eq!(c.countdown_s, 3.0);
        let e = serde_json::from_str::<PhotosConfig>(r#"{"jpeg_qualty": 80}"#).unwrap_err();
        assert!(e.to_string().contains("jpeg_qualty"), "{e}");
    }
}
