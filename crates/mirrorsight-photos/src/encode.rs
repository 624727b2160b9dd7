//! JPEG encoding with libjpeg-turbo (≈5 ms for 1080p, SIMD).

use std::time::{Duration, Instant};

use thiserror::Error;

use crate::select::{Frame, PixelFormat};

#[derive(Debug, Error)]
pub enum EncodeError {
    #[error("photos.jpeg_quality must be 1..=100, got {0}")]
    Quality(u8),
    #[error("JPEG encoder (libjpeg-turbo) failed: {0}")]
    Turbo(#[from] turbojpeg::Error),
}

/// An encoded photo.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// Wall time spent in the encoder, for the log and metrics.
    pub duration: Duration,
}

/// Holds one libjpeg-turbo compressor so its buffers are reused from photo to photo. `Send`
/// but not `Sync`: keep one per thread that encodes.
pub struct JpegEncoder {
    compressor: turbojpeg::Compressor,
    quality: u8,
}

impl std::fmt::Debug for JpegEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JpegEncoder")
            .field("quality", &self.quality)
            .finish_non_exhaustive()
    }
}

impl JpegEncoder {
    pub fn new(quality: u8) -> Result<Self, EncodeError> {
        if !(1..=100).contains(&quality) {
            return Err(EncodeError::Quality(quality));
        }
        let mut compressor = turbojpeg::Compressor::new()?;
        compressor.set_quality(i32::from(quality))?;
        // 4:2:0 is what every viewer expects and halves the size against 4:4:4 at the same
        // quality; skin and fabric show no visible loss at q≥85.
        compressor.set_subsamp(turbojpeg::Subsamp::Sub2x2)?;
        Ok(Self {
            compressor,
            quality,
        })
    }

    pub fn quality(&self) -> u8 {
        self.quality
    }

    pub fn encode(&mut self, frame: &Frame) -> Result<Encoded, EncodeError> {
        let format = match frame.format() {
            PixelFormat::Rgb8 => turbojpeg::PixelFormat::RGB,
            PixelFormat::Bgr8 => turbojpeg::PixelFormat::BGR,
            PixelFormat::Gray8 => turbojpeg::PixelFormat::GRAY,
        };
        // Grey input cannot be chroma-subsampled; libjpeg-turbo rejects the combination.
        let subsamp = if frame.format() == PixelFormat::Gray8 {
            turbojpeg::Subsamp::Gray
        } else {
            turbojpeg::Subsamp::Sub2x2
        };
        self.compressor.set_subsamp(subsamp)?;
        // `Frame` guarantees the buffer covers width × height at its stride, which is what
        // turbojpeg asserts on.
        let image = turbojpeg::Image {
            pixels: frame.data(),
            width: frame.width() as usize,
            pitch: frame.stride(),
            height: frame.height() as usize,
            format,
        };
        let start = Instant::now();
        let jpeg = self.compressor.compress_to_vec(image)?;
        Ok(Encoded {
            jpeg,
            width: frame.width(),
            height: frame.height(),
            duration: start.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::tests::textured_rgb;

    #[test]
    fn encodes_rgb_bgr_and_gray_that_decode_to_the_same_size() {
        let (w, h) = (641, 479);
        let rgb = textured_rgb(w, h, 2);
        let mut enc = JpegEncoder::new(90).unwrap();
        let e = enc
            .encode(&Frame::new(w, h, PixelFormat::Rgb8, rgb.clone(), 0.0).unwrap())
            .unwrap();
        assert_eq!(&e.jpeg[..2], &[0xFF, 0xD8], "JPEG SOI marker");
        assert_eq!((e.width, e.height), (w, h));
        let back = turbojpeg::decompress(&e.jpeg, turbojpeg::PixelFormat::RGB).unwrap();
        assert_eq!((back.width, back.height), (w as usize, h as usize));
        // Quality 90 keeps the picture: mean absolute error small against the source.
        let mae: f64 = rgb
            .iter()
            .zip(back.pixels.iter())
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
            .sum::<f64>()
            / rgb.len() as f64;
        assert!(mae < 12.0, "mean abs error {mae}");

        let bgr: Vec<u8> = rgb
            .chunks_exact(3)
            .flat_map(|p| [p[2], p[1], p[0]])
            .collect();
        let e = enc
            .encode(&Frame::new(w, h, PixelFormat::Bgr8, bgr, 0.0).unwrap())
            .unwrap();
        let back = turbojpeg::decompress(&e.jpeg, turbojpeg::PixelFormat::RGB).unwrap();
        assert_eq!((back.width, back.height), (w as usize, h as usize));

        let grey = vec![77u8; (w * h) as usize];
        let e = enc
            .encode(&Frame::new(w, h, PixelFormat::Gray8, grey, 0.0).unwrap())
            .unwrap();
        let back = turbojpeg::decompress(&e.jpeg, turbojpeg::PixelFormat::GRAY).unwrap();
        assert_eq!((back.width, back.height), (w as usize, h as usize));
        assert!(back.pixels.iter().all(|&v| v.abs_diff(77) <= 1));
    }

    #[test]
    fn quality_changes_size_and_is_checked() {
        let (w, h) = (320, 240);
        let frame = Frame::new(w, h, PixelFormat::Rgb8, textured_rgb(w, h, 4), 0.0).unwrap();
        let low = JpegEncoder::new(30).unwrap().encode(&frame).unwrap();
        let high = JpegEncoder::new(95).unwrap().encode(&frame).unwrap();
        assert!(high.jpeg.len() > low.jpeg.len());
        assert!(matches!(JpegEncoder::new(0), Err(EncodeError::Quality(0))));
        assert!(matches!(
            JpegEncoder::new(101),
            Err(EncodeError::Quality(101))
        ));
    }

    #[test]
    fn padded_stride_is_honoured_and_duration_reported() {
        let (w, h) = (100, 80);
        let rgb = textured_rgb(w, h, 6);
        let mut padded = Vec::new();
        for row in rgb.chunks_exact(w as usize * 3) {
            padded.extend_from_slice(row);
            padded.extend_from_slice(&[255; 12]);
        }
        let frame =
            Frame::with_stride(w, h, w as usize * 3 + 12, PixelFormat::Rgb8, padded, 0.0).unwrap();
        let e = JpegEncoder::new(90).unwrap().encode(&frame).unwrap();
        let back = turbojpeg::decompress(&e.jpeg, turbojpeg::PixelFormat::RGB).unwrap();
        assert_eq!((back.width, back.height), (100, 80));
        assert!(e.duration > Duration::ZERO);
    }
}
