//! What the core knows of a frame: its place in the stream, its media time and its size.
//! The pixels stay with the pipeline; the core only ever reads timestamps.

/// Anything that carries a media timestamp (seconds since the start of the source).
pub trait Timed {
    fn t(&self) -> f64;
}

/// A frame's metadata, without its pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameMeta {
    /// 0-based index in the source.
    pub seq: u64,
    /// Seconds since the start of the source, from the media's own timestamps.
    pub t: f64,
    pub width: u32,
    pub height: u32,
}

impl Timed for FrameMeta {
    fn t(&self) -> f64 {
        self.t
    }
}
