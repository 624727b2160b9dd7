//! The live V4L2 camera, one job a file:
//! - [`settings`]: `[camera]` and its checks;
//! - [`convert`]: camera buffers to RGB8, refused when larger than the negotiated mode;
//! - [`devices`]: the cameras present and their modes, and the choice of mode;
//! - [`source`]: the camera as a [`crate::source::Source`].
//!
//! Reconnection and connection health are not camera-specific and live beside it
//! ([`crate::source::ReconnectingSource`]).
//!
//! `camera.mirrored` is deliberately not applied here: it describes the frames (selfie view or
//! not) to the gesture logic, and flipping pixels would only cost CPU.

pub mod convert;
pub mod devices;
pub mod settings;
pub mod source;

pub use convert::{ConvertError, FrameConverter, FrameSize, MjpegDecoder, yuyv_to_rgb};
pub use devices::{CameraDescription, CameraMode, choose_format, list_cameras};
pub use settings::{CameraDevice, CameraSettings, PixelFormat, SettingsError};
pub use source::CameraSource;
