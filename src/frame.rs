//! The pipeline's frame type: packed RGB8 with a media timestamp.

use std::sync::Arc;

/// Packed 8-bit RGB, rows without padding.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbImage {
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Option<Self> {
        (data.len() == width as usize * height as usize * 3).then_some(Self {
            width,
            height,
            data,
        })
    }

    pub fn filled(width: u32, height: u32, rgb: [u8; 3]) -> Self {
        let data = rgb
            .iter()
            .copied()
            .cycle()
            .take(width as usize * height as usize * 3)
            .collect();
        Self {
            width,
            height,
            data,
        }
    }

    #[inline]
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}

/// One decoded frame. The image is shared, never copied, between the stages that look at it.
#[derive(Debug, Clone)]
pub struct Frame {
    /// 0-based index in the source.
    pub seq: u64,
    /// Seconds since the start of the source, from the media's own timestamps.
    pub t: f64,
    pub image: Arc<RgbImage>,
}

/// A photo due now, with candidate frames: made by the capture scheduler in the pipeline,
/// taken by the photo action.
pub type Capture = mirrorsight_core::capture::Capture<Frame>;

/// Work for the turn-around clip being recorded: made by the clip scheduler in the pipeline,
/// taken by the clip action.
pub type ClipJob = mirrorsight_core::clip::ClipWork<Frame>;

impl mirrorsight_core::frame::Timed for Frame {
    fn t(&self) -> f64 {
        self.t
    }
}
