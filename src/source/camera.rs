//! Live V4L2 camera through nokhwa, converted to the pipeline's RGB8 [`Frame`]s, and
//! [`ReconnectingSource`], which keeps any source alive across unplugs, driver resets and
//! freezes while the rest of the daemon keeps running.
//!
//! `camera.mirrored` is deliberately not applied here: it describes the frames (selfie view or
//! not) to the gesture logic, and flipping pixels would only cost CPU.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvError, bounded, select};
use nokhwa::Camera;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{debug, info, warn};

use super::{Source, SourceError, SourceInfo};
use crate::config::ConfigError;
use crate::frame::{Frame, RgbImage};
use crate::service::Shutdown;

fn key_error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_string(),
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
    pub fn validate(&self) -> Result<(), ConfigError> {
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

#[derive(Debug, Error, PartialEq)]
pub enum ConvertError {
    #[error("{format} frame of {got} bytes is too short for {width}x{height} (need {need})")]
    Size {
        format: &'static str,
        width: u32,
        height: u32,
        need: usize,
        got: usize,
    },
    #[error("bad frame size {width}x{height}: {why}")]
    Dimensions {
        width: u32,
        height: u32,
        why: &'static str,
    },
    #[error("MJPEG frame: {0}")]
    Jpeg(String),
    #[error("pixel format {0} is not supported (use MJPEG or YUYV)")]
    Unsupported(String),
}

/// Packed YUYV 4:2:2 (BT.601, limited range, as UVC cameras send it) to RGB8.
///
/// Rows may be padded: the stride is taken from the buffer length when it divides evenly.
pub fn yuyv_to_rgb(data: &[u8], width: u32, height: u32) -> Result<RgbImage, ConvertError> {
    let (w, h) = (width as usize, height as usize);
    if w == 0 || h == 0 {
        return Err(ConvertError::Dimensions {
            width,
            height,
            why: "empty",
        });
    }
    if w % 2 != 0 {
        return Err(ConvertError::Dimensions {
            width,
            height,
            why: "YUYV needs an even width",
        });
    }
    let row = w * 2;
    let need = row * h;
    if data.len() < need {
        return Err(ConvertError::Size {
            format: "YUYV",
            width,
            height,
            need,
            got: data.len(),
        });
    }
    let stride = if data.len() % h == 0 {
        data.len() / h
    } else {
        row
    };
    let mut out = Vec::with_capacity(w * h * 3);
    for line in data.chunks(stride).take(h) {
        for px in line[..row].chunks_exact(4) {
            let d = i32::from(px[1]) - 128;
            let e = i32::from(px[3]) - 128;
            // Fixed-point BT.601 (×256): exact to ±1 of the float formula, far cheaper.
            let r = 409 * e + 128;
            let g = -100 * d - 208 * e + 128;
            let b = 516 * d + 128;
            let c0 = 298 * (i32::from(px[0]) - 16);
            let c1 = 298 * (i32::from(px[2]) - 16);
            out.extend_from_slice(&[
                clamp8((c0 + r) >> 8),
                clamp8((c0 + g) >> 8),
                clamp8((c0 + b) >> 8),
                clamp8((c1 + r) >> 8),
                clamp8((c1 + g) >> 8),
                clamp8((c1 + b) >> 8),
            ]);
        }
    }
    RgbImage::new(width, height, out).ok_or(ConvertError::Dimensions {
        width,
        height,
        why: "internal size mismatch",
    })
}

#[inline]
fn clamp8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// MJPEG frames to RGB8 through libjpeg-turbo (≈4× faster than a pure-Rust decoder, which
/// matters at 30 fps on a 2-core box). Keeps one decompressor for the stream.
#[derive(Default)]
pub struct MjpegDecoder {
    inner: Option<turbojpeg::Decompressor>,
}

impl MjpegDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one frame. Frames without Huffman tables (the MJPEG norm) use the standard
    /// ones; truncated frames (no EOI, a USB hiccup) are rejected instead of being shown with
    /// a grey bottom half.
    pub fn decode(&mut self, data: &[u8]) -> Result<RgbImage, ConvertError> {
        let data = jpeg_frame(data)?;
        let data = &*tidy_headers(data);
        let jpeg = |e: turbojpeg::Error| ConvertError::Jpeg(e.to_string());
        let decompressor = match &mut self.inner {
            Some(d) => d,
            None => self
                .inner
                .insert(turbojpeg::Decompressor::new().map_err(jpeg)?),
        };
        let header = decompressor.read_header(data).map_err(jpeg)?;
        let (w, h) = (header.width, header.height);
        if w == 0 || h == 0 || w > 16384 || h > 16384 {
            return Err(ConvertError::Jpeg(format!("implausible size {w}x{h}")));
        }
        let mut pixels = vec![0u8; w * h * 3];
        let image = turbojpeg::Image {
            pixels: &mut pixels[..],
            width: w,
            pitch: w * 3,
            height: h,
            format: turbojpeg::PixelFormat::RGB,
        };
        // TurboJPEG turns libjpeg warnings into errors. The one that matters, a scan cut
        // short ("premature end of data segment"), really is a broken picture: reject it.
        decompressor.decompress(data, image).map_err(jpeg)?;
        let (width, height) = (w as u32, h as u32);
        RgbImage::new(width, height, pixels).ok_or(ConvertError::Dimensions {
            width,
            height,
            why: "internal size mismatch",
        })
    }
}

/// The frame from SOI to the last EOI: UVC drivers pad payloads after EOI, and a missing EOI
/// means the transfer was cut short.
fn jpeg_frame(data: &[u8]) -> Result<&[u8], ConvertError> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return Err(ConvertError::Jpeg(
            "no SOI marker (not a JPEG frame)".into(),
        ));
    }
    let end = data
        .windows(2)
        .rposition(|w| w == [0xFF, 0xD9])
        .ok_or_else(|| ConvertError::Jpeg("truncated frame (no EOI marker)".into()))?;
    Ok(&data[..end + 2])
}

/// Drops stray bytes between header segments, which some UVC firmware leaves: libjpeg only
/// warns about them, but TurboJPEG fails the whole frame on the warning.
fn tidy_headers(data: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut i = 2;
    while i < data.len() {
        let junk_start = i;
        while i < data.len() && data[i] != 0xFF {
            i += 1;
        }
        if i > junk_start && out.is_none() {
            out = Some(data[..junk_start].to_vec());
        }
        // 0xFF fill bytes may precede a marker.
        while i + 1 < data.len() && data[i + 1] == 0xFF {
            i += 1;
        }
        if i + 3 >= data.len() {
            break;
        }
        let marker = data[i + 1];
        if marker == 0xDA || marker == 0xD9 {
            // Entropy-coded data follows: left to the decoder.
            if let Some(o) = out.as_mut() {
                o.extend_from_slice(&data[i..]);
            }
            break;
        }
        let len = usize::from(u16::from_be_bytes([data[i + 2], data[i + 3]]));
        let end = (i + 2 + len).min(data.len());
        if let Some(o) = out.as_mut() {
            o.extend_from_slice(&data[i..end]);
        }
        i = end;
    }
    out.map_or(Cow::Borrowed(data), Cow::Owned)
}

/// The pixel formats we decode.
const DECODABLE: [FrameFormat; 2] = [FrameFormat::MJPEG, FrameFormat::YUYV];

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

fn describe_open_error(e: &str) -> String {
    if e.contains("Fufill") || e.contains("Fulfill") {
        // nokhwa's wording when the node has no capture formats (UVC metadata nodes).
        "no video capture formats (a metadata node?)".into()
    } else {
        e.to_string()
    }
}

/// Frames that fail to decode in a row before the camera counts as broken (and is reopened).
const MAX_BAD_FRAMES_IN_A_ROW: u32 = 30;

/// A V4L2 camera as a [`Source`]. Timestamps are seconds on the monotonic clock since the
/// first frame; the stream never ends by itself (errors do), so wrap it in
/// [`ReconnectingSource`] (see [`CameraSource::reconnecting`]).
pub struct CameraSource {
    camera: Camera,
    path: PathBuf,
    info: SourceInfo,
    jpeg: MjpegDecoder,
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
            unreadable(if e.contains("Fufill") {
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
            jpeg: MjpegDecoder::new(),
            seq: 0,
            epoch: None,
            bad_in_a_row: 0,
            bad_total: 0,
        })
    }

    /// The camera behind [`ReconnectingSource`] with the settings' backoff and stall timeout:
    /// what `mirrorsight run` uses for `source.kind = "camera"`.
    pub fn reconnecting(
        settings: &CameraSettings,
        shutdown: Shutdown,
    ) -> ReconnectingSource<impl FnMut() -> Result<Box<dyn Source>, SourceError> + Send + 'static>
    {
        let for_factory = settings.clone();
        ReconnectingSource::new(
            settings.provisional_info(),
            move || CameraSource::open(&for_factory).map(|c| Box::new(c) as Box<dyn Source>),
            settings.reconnect_options(),
            shutdown,
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
            let res = buffer.resolution();
            let converted = match buffer.source_frame_format() {
                FrameFormat::YUYV => yuyv_to_rgb(buffer.buffer(), res.width(), res.height()),
                FrameFormat::MJPEG => self.jpeg.decode(buffer.buffer()),
                other => Err(ConvertError::Unsupported(other.to_string())),
            };
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

/// How [`ReconnectingSource`] retries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReconnectOptions {
    /// Wait before the first reopen after a loss; doubles per failed attempt.
    pub initial_backoff: Duration,
    /// Upper bound of the wait between attempts.
    pub max_backoff: Duration,
    /// No frame for this long from an open source = frozen: abandon it and reopen.
    pub stall_timeout: Duration,
}

impl Default for ReconnectOptions {
    fn default() -> Self {
        CameraSettings::default().reconnect_options()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Not yet delivered a frame since start.
    Connecting,
    Connected,
    /// Lost (error, end of stream or freeze) and being reopened.
    Reconnecting,
    /// Shut down.
    Stopped,
}

impl ConnectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "connected",
            ConnectionState::Reconnecting => "reconnecting",
            ConnectionState::Stopped => "stopped",
        }
    }
}

/// What [`SourceHealth`] knows at one moment.
#[derive(Debug, Clone)]
pub struct SourceHealthSnapshot {
    pub state: ConnectionState,
    /// When `state` was entered.
    pub since: Instant,
    pub last_frame: Option<Instant>,
    /// Last attempt to open the source (successful or not).
    pub last_attempt: Option<Instant>,
    pub frames: u64,
    /// Successful reopenings after a loss.
    pub reconnects: u64,
    pub failed_attempts: u64,
    pub last_error: Option<String>,
    /// Wall instant of the first frame and its media time: maps instants to media time.
    pub epoch: Option<(Instant, f64)>,
}

impl SourceHealthSnapshot {
    /// The media time (`Frame::t` scale) of instant `at`, once a frame has been seen: lets
    /// another thread report media time while the source delivers nothing.
    pub fn media_time(&self, at: Instant) -> Option<f64> {
        self.epoch.map(|(epoch, t0)| {
            let since = at.saturating_duration_since(epoch).as_secs_f64();
            t0 + since
        })
    }
}

/// Connection health of a [`ReconnectingSource`], shared with health reporting and the watchdog.
#[derive(Debug)]
pub struct SourceHealth {
    state: Mutex<SourceHealthSnapshot>,
}

impl SourceHealth {
    pub fn new(now: Instant) -> Self {
        Self {
            state: Mutex::new(SourceHealthSnapshot {
                state: ConnectionState::Connecting,
                since: now,
                last_frame: None,
                last_attempt: None,
                frames: 0,
                reconnects: 0,
                failed_attempts: 0,
                last_error: None,
                epoch: None,
            }),
        }
    }

    pub fn snapshot(&self) -> SourceHealthSnapshot {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut SourceHealthSnapshot)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn set_state(&self, state: ConnectionState, now: Instant) {
        self.update(|h| {
            if h.state != state {
                h.state = state;
                h.since = now;
            }
        });
    }
}

type Delivery = Result<Option<Frame>, SourceError>;

/// One open inner source, read on its own thread so that a read blocked in the driver can be
/// abandoned (a frozen camera never returns from V4L2's poll) and shutdown is never stuck.
struct Connection {
    frames: Receiver<Delivery>,
    opened: Instant,
    last_frame: Option<Instant>,
    /// Offset added to the inner timestamps so time keeps running across reconnects.
    t_offset: Option<f64>,
}

/// Wraps a source factory and reopens the source with exponential backoff whenever it errors,
/// ends or stalls. Frames keep increasing `seq` and `t` across reconnects, so the session
/// logic sees one continuous stream with a gap. Returns `Ok(None)` only on shutdown.
pub struct ReconnectingSource<F> {
    factory: F,
    info: SourceInfo,
    options: ReconnectOptions,
    shutdown: Shutdown,
    health: Arc<SourceHealth>,
    connection: Option<Connection>,
    next_attempt: Option<Instant>,
    backoff: Duration,
    ever_connected: bool,
    seq: u64,
    last_t: Option<f64>,
    /// Wall instant of the first frame ever and that frame's own timestamp: the timeline
    /// later connections are mapped onto.
    epoch: Option<(Instant, f64)>,
    /// Failures since frames last flowed, and the last one logged at warn level.
    problems: u64,
    last_logged_problem: Option<String>,
}

enum Wake {
    Delivery(Result<Delivery, RecvError>),
    Stop,
    Timeout,
}

impl<F> ReconnectingSource<F>
where
    F: FnMut() -> Result<Box<dyn Source>, SourceError> + Send,
{
    /// `info` stands in until the first connection (the pipeline reads it once, at start).
    /// Nothing is opened here: the first `next_frame` does, so a missing camera at boot does
    /// not stop the daemon from starting.
    pub fn new(
        info: SourceInfo,
        factory: F,
        options: ReconnectOptions,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            factory,
            info,
            backoff: options.initial_backoff,
            options,
            shutdown,
            health: Arc::new(SourceHealth::new(Instant::now())),
            connection: None,
            next_attempt: None,
            ever_connected: false,
            seq: 0,
            last_t: None,
            epoch: None,
            problems: 0,
            last_logged_problem: None,
        }
    }

    pub fn health(&self) -> Arc<SourceHealth> {
        self.health.clone()
    }

    /// Waits for the next attempt (interruptibly) and tries to open the source once.
    fn connect(&mut self) {
        if let Some(at) = self.next_attempt
            && let Some(wait) = at.checked_duration_since(Instant::now())
            && self.shutdown.wait_timeout(wait)
        {
            return;
        }
        let now = Instant::now();
        self.health.update(|h| h.last_attempt = Some(now));
        let source = match (self.factory)() {
            Ok(source) => source,
            Err(e) => return self.failed(e.to_string()),
        };
        let info = source.info().clone();
        let (tx, rx) = bounded::<Delivery>(1);
        let spawned = thread::Builder::new()
            .name("camera-read".into())
            .spawn(move || {
                let mut source = source;
                loop {
                    let item = source.next_frame();
                    let last = !matches!(item, Ok(Some(_)));
                    // A send error means the wrapper abandoned us (stall or shutdown): close
                    // the source by dropping it.
                    if tx.send(item).is_err() || last {
                        break;
                    }
                }
            });
        if let Err(e) = spawned {
            return self.failed(format!("cannot start the reader thread: {e}"));
        }
        self.info = info;
        if self.ever_connected {
            self.health.update(|h| h.reconnects += 1);
        }
        self.connection = Some(Connection {
            frames: rx,
            opened: now,
            last_frame: None,
            t_offset: None,
        });
    }

    fn schedule_retry(&mut self, now: Instant) {
        self.next_attempt = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(self.options.max_backoff);
    }

    fn failed(&mut self, error: String) {
        self.health.update(|h| h.failed_attempts += 1);
        self.problem("cannot open the source", error);
    }

    fn lose(&mut self, reason: String) {
        // Dropping the receiver lets a blocked reader exit as soon as its read returns.
        self.connection = None;
        self.problem("source lost; reopening", reason);
    }

    fn problem(&mut self, what: &'static str, error: String) {
        let now = Instant::now();
        self.problems += 1;
        // Months of an unplugged camera must not fill the journal: log changes, then sparsely.
        if self.last_logged_problem.as_deref() != Some(error.as_str()) || self.problems % 60 == 0 {
            warn!(
                source = %self.info.name,
                %error,
                attempts = self.problems,
                retry_in_s = self.backoff.as_secs_f64(),
                "{what}"
            );
            self.last_logged_problem = Some(error.clone());
        } else {
            debug!(
                source = %self.info.name,
                %error,
                attempts = self.problems,
                "{what}"
            );
        }
        self.health.update(|h| h.last_error = Some(error));
        self.health.set_state(
            if self.ever_connected {
                ConnectionState::Reconnecting
            } else {
                ConnectionState::Connecting
            },
            now,
        );
        self.schedule_retry(now);
    }

    fn accept(&mut self, mut frame: Frame) -> Frame {
        let now = Instant::now();
        let (epoch, t0) = *self.epoch.get_or_insert_with(|| {
            self.health.update(|h| h.epoch = Some((now, frame.t)));
            (now, frame.t)
        });
        let Some(conn) = self.connection.as_mut() else {
            return frame;
        };
        let first_of_connection = conn.last_frame.is_none();
        conn.last_frame = Some(now);
        // Each connection restarts its own clock; map it onto the first one's by wall time.
        let offset = *conn
            .t_offset
            .get_or_insert_with(|| t0 + now.duration_since(epoch).as_secs_f64() - frame.t);
        let mut t = frame.t + offset;
        if let Some(last) = self.last_t
            && t <= last
        {
            t = last + 1e-6;
        }
        frame.t = t;
        frame.seq = self.seq;
        self.seq += 1;
        self.last_t = Some(t);
        if first_of_connection {
            info!(
                source = %self.info.name,
                after_failures = self.problems,
                "source delivering frames"
            );
            self.backoff = self.options.initial_backoff;
            self.problems = 0;
            self.last_logged_problem = None;
        }
        self.ever_connected = true;
        self.health.set_state(ConnectionState::Connected, now);
        self.health.update(|h| {
            h.last_frame = Some(now);
            h.frames += 1;
        });
        frame
    }
}

impl<F> Source for ReconnectingSource<F>
where
    F: FnMut() -> Result<Box<dyn Source>, SourceError> + Send,
{
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        loop {
            if self.shutdown.is_triggered() {
                self.connection = None;
                self.health
                    .set_state(ConnectionState::Stopped, Instant::now());
                return Ok(None);
            }
            let Some(conn) = &self.connection else {
                self.connect();
                continue;
            };
            let deadline = conn.last_frame.unwrap_or(conn.opened) + self.options.stall_timeout;
            let Some(wait) = deadline.checked_duration_since(Instant::now()) else {
                self.lose(format!(
                    "no frame for {:.1} s (frozen)",
                    self.options.stall_timeout.as_secs_f64()
                ));
                continue;
            };
            let wake = select! {
                recv(conn.frames) -> d => Wake::Delivery(d),
                recv(self.shutdown.receiver()) -> _ => Wake::Stop,
                default(wait) => Wake::Timeout,
            };
            match wake {
                Wake::Delivery(Ok(Ok(Some(frame)))) => return Ok(Some(self.accept(frame))),
                Wake::Delivery(Ok(Ok(None))) => self.lose("stream ended".into()),
                Wake::Delivery(Ok(Err(e))) => self.lose(e.to_string()),
                Wake::Delivery(Err(_)) => self.lose("reader thread ended".into()),
                // The loop head handles both: shutdown, or the stall deadline.
                Wake::Stop | Wake::Timeout => {}
            }
        }
    }
}

impl<F> Drop for ReconnectingSource<F> {
    fn drop(&mut self) {
        self.health
            .set_state(ConnectionState::Stopped, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};

    // ---- conversion ----

    /// (Y, U, V) → RGB for BT.601 limited range, reference values.
    const BLACK: (u8, u8, u8) = (16, 128, 128);
    const WHITE: (u8, u8, u8) = (235, 128, 128);
    const RED: (u8, u8, u8) = (81, 90, 240);
    const GREEN: (u8, u8, u8) = (145, 54, 34);
    const BLUE: (u8, u8, u8) = (41, 240, 110);

    #[test]
    fn yuyv_known_colours_convert_exactly() {
        // A 4x2 frame: row 0 = black, white | red, red; row 1 = green, green | blue, blue.
        let px = |a: (u8, u8, u8), b: (u8, u8, u8)| [a.0, a.1, b.0, a.2];
        let mut data = Vec::new();
        data.extend_from_slice(&px(BLACK, WHITE));
        data.extend_from_slice(&px(RED, RED));
        data.extend_from_slice(&px(GREEN, GREEN));
        data.extend_from_slice(&px(BLUE, BLUE));
        let img = yuyv_to_rgb(&data, 4, 2).unwrap();
        assert_eq!((img.width, img.height), (4, 2));
        assert_eq!(img.pixel(0, 0), [0, 0, 0]);
        assert_eq!(img.pixel(1, 0), [255, 255, 255]);
        assert_eq!(img.pixel(2, 0), [255, 0, 0]);
        assert_eq!(img.pixel(3, 0), [255, 0, 0]);
        // Rounded reference values of the float BT.601 inverse for these triples.
        assert_eq!(img.pixel(0, 1), [0, 255, 1]);
        assert_eq!(img.pixel(2, 1), [0, 0, 255]);
    }

    #[test]
    fn yuyv_mid_grey_and_padded_rows() {
        // 2x2 mid grey with 4 bytes of padding per row (stride 8).
        let row = [126, 128, 126, 128, 0xAA, 0xAA, 0xAA, 0xAA];
        let data: Vec<u8> = row.iter().chain(row.iter()).copied().collect();
        let img = yuyv_to_rgb(&data, 2, 2).unwrap();
        assert_eq!(img.data, vec![128; 12]);
    }

    #[test]
    fn yuyv_rejects_short_buffers_and_odd_widths() {
        assert!(matches!(
            yuyv_to_rgb(&[0; 7], 2, 2),
            Err(ConvertError::Size {
                need: 8,
                got: 7,
                ..
            })
        ));
        assert!(matches!(
            yuyv_to_rgb(&[0; 6], 3, 1),
            Err(ConvertError::Dimensions { .. })
        ));
        assert!(yuyv_to_rgb(&[], 0, 0).is_err());
    }

    /// A 64x32 picture: left half red, right half blue, as a baseline 4:2:0 JPEG.
    fn encoded_test_jpeg() -> Vec<u8> {
        let (w, h) = (64usize, 32usize);
        let mut pixels = Vec::with_capacity(w * h * 3);
        for _y in 0..h {
            for x in 0..w {
                pixels.extend_from_slice(if x < w / 2 {
                    &[220, 20, 30]
                } else {
                    &[20, 40, 210]
                });
            }
        }
        let image = turbojpeg::Image {
            pixels: &pixels[..],
            width: w,
            pitch: w * 3,
            height: h,
            format: turbojpeg::PixelFormat::RGB,
        };
        turbojpeg::compress(image, 90, turbojpeg::Subsamp::Sub2x2)
            .unwrap()
            .to_vec()
    }

    fn assert_close(got: [u8; 3], want: [u8; 3]) {
        let ok = got
            .iter()
            .zip(want)
            .all(|(g, w)| (i16::from(*g) - i16::from(w)).abs() <= 12);
        assert!(ok, "got {got:?}, want about {want:?}");
    }

    fn assert_red_blue(img: &RgbImage) {
        assert_eq!((img.width, img.height), (64, 32));
        // Away from the edge, where 4:2:0 chroma blurs the colours together.
        assert_close(img.pixel(8, 16), [220, 20, 30]);
        assert_close(img.pixel(56, 16), [20, 40, 210]);
    }

    #[test]
    fn mjpeg_decodes_to_dimensions_and_colours() {
        let jpeg = encoded_test_jpeg();
        let mut dec = MjpegDecoder::new();
        assert_red_blue(&dec.decode(&jpeg).unwrap());
        // The decoder is reused across frames.
        assert_red_blue(&dec.decode(&jpeg).unwrap());
    }

    /// Removes every DHT segment, as UVC cameras send MJPEG.
    fn strip_huffman_tables(jpeg: &[u8]) -> Vec<u8> {
        let mut out = jpeg[..2].to_vec();
        let mut i = 2;
        while i + 4 <= jpeg.len() && jpeg[i] == 0xFF {
            let marker = jpeg[i + 1];
            let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
            if marker == 0xDA {
                out.extend_from_slice(&jpeg[i..]);
                return out;
            }
            if marker != 0xC4 {
                out.extend_from_slice(&jpeg[i..i + 2 + len]);
            }
            i += 2 + len;
        }
        panic!("no SOS in the test JPEG");
    }

    #[test]
    fn mjpeg_without_huffman_tables_uses_the_standard_ones() {
        let jpeg = encoded_test_jpeg();
        let bare = strip_huffman_tables(&jpeg);
        assert!(bare.len() < jpeg.len());
        assert!(!bare.windows(2).any(|w| w == [0xFF, 0xC4]));
        assert_red_blue(&MjpegDecoder::new().decode(&bare).unwrap());
    }

    #[test]
    fn mjpeg_tolerates_padding_and_rejects_truncation() {
        let jpeg = encoded_test_jpeg();
        let mut padded = jpeg.clone();
        padded.extend_from_slice(&[0; 100]);
        assert_red_blue(&MjpegDecoder::new().decode(&padded).unwrap());

        // Stray bytes between segments: libjpeg warns, TurboJPEG fails on that, yet the
        // picture is complete and must be kept.
        let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        let mut stray = jpeg[..sos].to_vec();
        stray.extend_from_slice(&[0x12, 0x34, 0x56]);
        stray.extend_from_slice(&jpeg[sos..]);
        let raw = turbojpeg::decompress(&stray, turbojpeg::PixelFormat::RGB);
        assert!(
            matches!(&raw, Err(turbojpeg::Error::TurboJpegError(m)) if m.contains("extraneous bytes")),
            "{:?}",
            raw.err()
        );
        assert_red_blue(&MjpegDecoder::new().decode(&stray).unwrap());

        // Cut inside the scan but with an EOI (a lost USB packet): rejected, not shown grey.
        let mut cut = jpeg[..(sos + jpeg.len()) / 2].to_vec();
        cut.extend_from_slice(&[0xFF, 0xD9]);
        let err = MjpegDecoder::new().decode(&cut).unwrap_err();
        assert!(err.to_string().contains("premature end"), "{err}");

        let truncated = &jpeg[..jpeg.len() / 2];
        let err = MjpegDecoder::new().decode(truncated).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        assert!(MjpegDecoder::new().decode(b"not a jpeg").is_err());
    }

    /// `cargo test --release --lib -- --ignored conversion_speed --nocapture`
    #[test]
    #[ignore = "timing, not a check"]
    fn conversion_speed_720p() {
        let (w, h) = (1280usize, 720usize);
        let yuyv: Vec<u8> = (0..w * h * 2).map(|i| (i * 7 % 251) as u8).collect();
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| ((i / 3) % 256) as u8).collect();
        let jpeg = turbojpeg::compress(
            turbojpeg::Image {
                pixels: &rgb[..],
                width: w,
                pitch: w * 3,
                height: h,
                format: turbojpeg::PixelFormat::RGB,
            },
            80,
            turbojpeg::Subsamp::Sub2x1,
        )
        .unwrap()
        .to_vec();
        let n = 60;
        let t = Instant::now();
        for _ in 0..n {
            yuyv_to_rgb(&yuyv, w as u32, h as u32).unwrap();
        }
        let yuyv_ms = t.elapsed().as_secs_f64() * 1000.0 / f64::from(n);
        let mut dec = MjpegDecoder::new();
        let t = Instant::now();
        for _ in 0..n {
            dec.decode(&jpeg).unwrap();
        }
        let mjpeg_ms = t.elapsed().as_secs_f64() * 1000.0 / f64::from(n);
        eprintln!(
            "1280x720: YUYV→RGB {yuyv_ms:.2} ms, MJPEG ({} KiB)→RGB {mjpeg_ms:.2} ms",
            jpeg.len() / 1024
        );
    }

    // ---- settings and mode choice ----

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
        assert!(list_cameras().is_empty());
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

    // ---- reconnect ----

    fn info() -> SourceInfo {
        SourceInfo {
            name: "fake".into(),
            width: 2,
            height: 2,
            fps: 100.0,
            frames: None,
        }
    }

    /// Plays a script: frames, errors, end of stream or a freeze.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        Frame,
        Error,
        End,
        Freeze(Duration),
    }

    struct Scripted {
        info: SourceInfo,
        steps: VecDeque<Step>,
        t: f64,
    }

    impl Source for Scripted {
        fn info(&self) -> &SourceInfo {
            &self.info
        }
        fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
            match self.steps.pop_front().unwrap_or(Step::End) {
                Step::Frame => {
                    // Inner time runs with wall time, like a camera's.
                    std::thread::sleep(Duration::from_millis(10));
                    self.t += 0.01;
                    Ok(Some(Frame {
                        seq: 0,
                        t: self.t,
                        image: Arc::new(RgbImage::filled(2, 2, [1, 2, 3])),
                    }))
                }
                Step::Error => Err(SourceError::Decode {
                    path: "/dev/video9".into(),
                    frame: 0,
                    reason: "camera read failed: No such device".into(),
                }),
                Step::End => Ok(None),
                Step::Freeze(d) => {
                    std::thread::sleep(d);
                    Ok(None)
                }
            }
        }
    }

    fn fast_options() -> ReconnectOptions {
        ReconnectOptions {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            stall_timeout: Duration::from_millis(150),
        }
    }

    /// A factory that fails `fails` times, then hands out the scripted connections in turn.
    fn factory(
        fails: usize,
        connections: Vec<Vec<Step>>,
    ) -> (
        impl FnMut() -> Result<Box<dyn Source>, SourceError> + Send,
        Arc<AtomicUsize>,
    ) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let mut connections: VecDeque<Vec<Step>> = connections.into();
        let f = move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            if n < fails {
                return Err(SourceError::NotFound {
                    path: "/dev/video9".into(),
                });
            }
            let steps = connections.pop_front().unwrap_or_default();
            Ok(Box::new(Scripted {
                info: info(),
                steps: steps.into(),
                t: 0.0,
            }) as Box<dyn Source>)
        };
        (f, calls)
    }

    fn frames(n: usize) -> Vec<Step> {
        vec![Step::Frame; n]
    }

    #[test]
    fn reopens_after_failed_opens_with_growing_backoff() {
        let (f, calls) = factory(4, vec![frames(3)]);
        let shutdown = Shutdown::new();
        let mut src = ReconnectingSource::new(info(), f, fast_options(), shutdown.clone());
        let health = src.health();
        let started = Instant::now();
        let frame = src
            .next_frame()
            .unwrap()
            .expect("a frame after the failures");
        let waited = started.elapsed();
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        // 10 + 20 + 40 + 40 ms of backoff, bounded by max_backoff.
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        assert_eq!(frame.seq, 0);
        let h = health.snapshot();
        assert_eq!(h.state, ConnectionState::Connected);
        assert_eq!(h.failed_attempts, 4);
        assert_eq!(h.reconnects, 0);
        assert!(h.last_frame.is_some());
        shutdown.trigger();
        assert!(src.next_frame().unwrap().is_none());
        assert_eq!(health.snapshot().state, ConnectionState::Stopped);
    }

    #[test]
    fn recovers_from_errors_mid_stream_with_continuous_seq_and_time() {
        let mut first = frames(3);
        first.push(Step::Error);
        let mut second = frames(2);
        second.push(Step::End);
        let third = frames(3);
        let (f, calls) = factory(0, vec![first, second, third]);
        let shutdown = Shutdown::new();
        let mut src = ReconnectingSource::new(info(), f, fast_options(), shutdown.clone());
        let health = src.health();
        let mut seen = Vec::new();
        for _ in 0..8 {
            seen.push(src.next_frame().unwrap().expect("frames keep coming"));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let seqs: Vec<u64> = seen.iter().map(|f| f.seq).collect();
        assert_eq!(seqs, (0..8).collect::<Vec<_>>());
        assert!(
            seen.windows(2).all(|w| w[1].t > w[0].t),
            "time must increase: {:?}",
            seen.iter().map(|f| f.t).collect::<Vec<_>>()
        );
        // The reconnect gap (10 ms backoff + 10 ms until the next frame) shows in media time.
        assert!(
            seen[3].t - seen[2].t >= 0.015,
            "{} {}",
            seen[2].t,
            seen[3].t
        );
        let h = health.snapshot();
        assert_eq!(h.reconnects, 2);
        assert_eq!(h.state, ConnectionState::Connected);
        assert_eq!(h.last_error.as_deref(), Some("stream ended"));
        // Media time of "now" lines up with the frames' own clock.
        let now_t = h.media_time(Instant::now()).unwrap();
        assert!(
            now_t >= seen[7].t && now_t < seen[7].t + 0.5,
            "{now_t} {}",
            seen[7].t
        );
        shutdown.trigger();
        assert!(src.next_frame().unwrap().is_none());
    }

    #[test]
    fn a_frozen_source_is_abandoned_and_reopened() {
        let mut first = frames(2);
        first.push(Step::Freeze(Duration::from_secs(3)));
        let (f, calls) = factory(0, vec![first, frames(2)]);
        let shutdown = Shutdown::new();
        let mut src = ReconnectingSource::new(info(), f, fast_options(), shutdown.clone());
        let health = src.health();
        src.next_frame().unwrap().unwrap();
        src.next_frame().unwrap().unwrap();
        let started = Instant::now();
        let frame = src.next_frame().unwrap().expect("reopened");
        let waited = started.elapsed();
        assert_eq!(frame.seq, 2);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // About the stall timeout (150 ms) plus backoff, well before the freeze (3 s) ends.
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        assert!(health.snapshot().last_error.unwrap().contains("frozen"));
        shutdown.trigger();
    }

    #[test]
    fn shutdown_interrupts_backoff_and_blocked_reads() {
        // Never opens: shutdown must end a long backoff wait promptly.
        let (f, _) = factory(usize::MAX, vec![]);
        let shutdown = Shutdown::new();
        let opts = ReconnectOptions {
            initial_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(30),
        };
        let mut src = ReconnectingSource::new(info(), f, opts, shutdown.clone());
        let waiter = std::thread::spawn(move || {
            let started = Instant::now();
            let r = src.next_frame();
            (r.map(|f| f.is_none()).unwrap_or(false), started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(100));
        shutdown.trigger();
        let (ended, took) = waiter.join().unwrap();
        assert!(ended);
        assert!(took < Duration::from_secs(2), "{took:?}");

        // Opens, then blocks inside the read: shutdown still returns at once.
        let (f, _) = factory(0, vec![vec![Step::Freeze(Duration::from_secs(5))]]);
        let shutdown = Shutdown::new();
        let mut src = ReconnectingSource::new(info(), f, opts, shutdown.clone());
        let waiter = std::thread::spawn(move || {
            let started = Instant::now();
            let r = src.next_frame();
            (r.map(|f| f.is_none()).unwrap_or(false), started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(100));
        shutdown.trigger();
        let (ended, took) = waiter.join().unwrap();
        assert!(ended);
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
}
