//! Camera buffers to the pipeline's RGB8 images: YUYV by fixed-point arithmetic, MJPEG through
//! libjpeg-turbo.
//!
//! Every buffer is checked against the mode the camera negotiated before anything is decoded:
//! a frame larger than that mode (a confused driver, a hostile USB device) is refused without
//! allocating for it, so one bad frame can neither exhaust memory nor pass for a picture.

use std::borrow::Cow;

use nokhwa::utils::FrameFormat;
use thiserror::Error;

use crate::frame::RgbImage;

/// The width and height the camera agreed to deliver (its negotiated mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSize {
    pub width: u32,
    pub height: u32,
}

/// Row padding a V4L2 driver may add to a YUYV line (`bytesperline` alignment is a few dozen
/// to a few hundred bytes in practice); anything wider is a frame of another mode.
const YUYV_MAX_ROW_PADDING: usize = 256;
/// Buffers may be rounded up to a page after the last row.
const YUYV_MAX_TRAILING_BYTES: usize = 4096;

/// The largest buffer a YUYV frame of `width`×`height` can honestly arrive in.
pub fn max_yuyv_bytes(width: u32, height: u32) -> usize {
    let row = width as usize * 2 + YUYV_MAX_ROW_PADDING;
    row * height as usize + YUYV_MAX_TRAILING_BYTES
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
    #[error(
        "{format} frame of {width}x{height} is larger than the negotiated mode {mode_width}x{mode_height}: refused before decoding"
    )]
    LargerThanMode {
        format: &'static str,
        width: u32,
        height: u32,
        mode_width: u32,
        mode_height: u32,
    },
    #[error(
        "{format} frame of {got} bytes is larger than the negotiated mode {width}x{height} allows (at most {max}): refused before decoding"
    )]
    TooManyBytes {
        format: &'static str,
        width: u32,
        height: u32,
        max: usize,
        got: usize,
    },
    #[error("MJPEG frame: {0}")]
    Jpeg(String),
    #[error("pixel format {0} is not supported (use MJPEG or YUYV)")]
    Unsupported(String),
}

/// Converts whatever the camera delivers, in the mode it negotiated, to RGB8.
pub struct FrameConverter {
    mode: FrameSize,
    jpeg: MjpegDecoder,
}

impl FrameConverter {
    pub fn new(mode: FrameSize) -> Self {
        Self {
            mode,
            jpeg: MjpegDecoder::new(),
        }
    }

    pub fn convert(&mut self, format: FrameFormat, data: &[u8]) -> Result<RgbImage, ConvertError> {
        match format {
            FrameFormat::YUYV => yuyv_to_rgb(data, self.mode.width, self.mode.height),
            FrameFormat::MJPEG => self.jpeg.decode(data, self.mode),
            other => Err(ConvertError::Unsupported(other.to_string())),
        }
    }
}

/// Packed YUYV 4:2:2 (BT.601, limited range, as UVC cameras send it) to RGB8. `width` and
/// `height` are the negotiated mode: the buffer carries no size of its own, so one larger than
/// that mode can hold (see [`max_yuyv_bytes`]) is refused.
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
    let max = max_yuyv_bytes(width, height);
    if data.len() > max {
        return Err(ConvertError::TooManyBytes {
            format: "YUYV",
            width,
            height,
            max,
            got: data.len(),
        });
    }
    let stride = if data.len().is_multiple_of(h) {
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

    /// Decodes one frame of a stream negotiated at `mode`. Frames without Huffman tables (the
    /// MJPEG norm) use the standard ones; truncated frames (no EOI, a USB hiccup) are rejected
    /// instead of being shown with a grey bottom half; a frame whose header claims more pixels
    /// than `mode` is refused after reading the header, before any pixel memory is allocated.
    pub fn decode(&mut self, data: &[u8], mode: FrameSize) -> Result<RgbImage, ConvertError> {
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
        if w == 0 || h == 0 {
            return Err(ConvertError::Jpeg(format!("implausible size {w}x{h}")));
        }
        if w > mode.width as usize || h > mode.height as usize {
            return Err(ConvertError::LargerThanMode {
                format: "MJPEG",
                width: u32::try_from(w).unwrap_or(u32::MAX),
                height: u32::try_from(h).unwrap_or(u32::MAX),
                mode_width: mode.width,
                mode_height: mode.height,
            });
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const SIZE_64X32: FrameSize = FrameSize {
        width: 64,
        height: 32,
    };
    const SIZE_720P: FrameSize = FrameSize {
        width: 1280,
        height: 720,
    };

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
        assert_red_blue(&dec.decode(&jpeg, SIZE_64X32).unwrap());
        // The decoder is reused across frames.
        assert_red_blue(&dec.decode(&jpeg, SIZE_64X32).unwrap());
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
        assert_red_blue(&MjpegDecoder::new().decode(&bare, SIZE_64X32).unwrap());
    }

    #[test]
    fn mjpeg_tolerates_padding_and_rejects_truncation() {
        let jpeg = encoded_test_jpeg();
        let mut padded = jpeg.clone();
        padded.extend_from_slice(&[0; 100]);
        assert_red_blue(&MjpegDecoder::new().decode(&padded, SIZE_64X32).unwrap());

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
        assert_red_blue(&MjpegDecoder::new().decode(&stray, SIZE_64X32).unwrap());

        // Cut inside the scan but with an EOI (a lost USB packet): rejected, not shown grey.
        let mut cut = jpeg[..(sos + jpeg.len()) / 2].to_vec();
        cut.extend_from_slice(&[0xFF, 0xD9]);
        let err = MjpegDecoder::new().decode(&cut, SIZE_64X32).unwrap_err();
        assert!(err.to_string().contains("premature end"), "{err}");

        let truncated = &jpeg[..jpeg.len() / 2];
        let err = MjpegDecoder::new()
            .decode(truncated, SIZE_64X32)
            .unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        assert!(
            MjpegDecoder::new()
                .decode(b"not a jpeg", SIZE_64X32)
                .is_err()
        );
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
            dec.decode(&jpeg, SIZE_720P).unwrap();
        }
        let mjpeg_ms = t.elapsed().as_secs_f64() * 1000.0 / f64::from(n);
        eprintln!(
            "1280x720: YUYV→RGB {yuyv_ms:.2} ms, MJPEG ({} KiB)→RGB {mjpeg_ms:.2} ms",
            jpeg.len() / 1024
        );
    }

    /// The test JPEG with its frame header (SOF0) claiming `width`×`height` and its scan cut to
    /// a few bytes: any attempt to decode it fails in the decoder, never with a size refusal.
    fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
        let jpeg = encoded_test_jpeg();
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        let mut forged = jpeg[..sos + 20].to_vec();
        forged[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
        forged[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
        forged.extend_from_slice(&[0xFF, 0xD9]);
        forged
    }

    #[test]
    fn mjpeg_larger_than_the_negotiated_mode_is_refused_before_decoding() {
        let jpeg = encoded_test_jpeg();
        let small_mode = FrameSize {
            width: 32,
            height: 32,
        };
        let err = MjpegDecoder::new().decode(&jpeg, small_mode).unwrap_err();
        assert_eq!(
            err,
            ConvertError::LargerThanMode {
                format: "MJPEG",
                width: 64,
                height: 32,
                mode_width: 32,
                mode_height: 32,
            }
        );
        assert!(err.to_string().contains("refused before decoding"), "{err}");
        // The same frame in a mode that holds it decodes, and a smaller picture than the
        // mode is no threat.
        assert_red_blue(&MjpegDecoder::new().decode(&jpeg, SIZE_64X32).unwrap());
        assert_red_blue(&MjpegDecoder::new().decode(&jpeg, SIZE_720P).unwrap());

        // A header claiming 60000x60000 (10 GB of RGB) with nothing behind it: refused on the
        // header alone, whereas a decoder would have to allocate for it first.
        let bomb = jpeg_claiming(60000, 60000);
        let err = MjpegDecoder::new().decode(&bomb, SIZE_720P).unwrap_err();
        assert!(
            matches!(
                err,
                ConvertError::LargerThanMode {
                    width: 60000,
                    height: 60000,
                    ..
                }
            ),
            "{err}"
        );
        // Only the size check refused it: within the mode the same header fails in the decoder.
        let empty = jpeg_claiming(64, 32);
        let err = MjpegDecoder::new().decode(&empty, SIZE_64X32).unwrap_err();
        assert!(matches!(err, ConvertError::Jpeg(_)), "{err}");
    }

    #[test]
    fn yuyv_larger_than_the_negotiated_mode_is_refused_before_decoding() {
        let (w, h) = (640u32, 480u32);
        let exact = vec![128u8; (w * h * 2) as usize];
        assert!(yuyv_to_rgb(&exact, w, h).is_ok());
        // Padded rows and a page-rounded tail are how drivers really deliver: accepted.
        let padded = vec![128u8; (w as usize * 2 + 64) * h as usize];
        assert!(yuyv_to_rgb(&padded, w, h).is_ok());
        let rounded = vec![128u8; (w * h * 2) as usize + 1000];
        assert!(yuyv_to_rgb(&rounded, w, h).is_ok());
        // A frame of twice the width (1280x480) in a buffer for this mode: refused.
        let bigger = vec![128u8; (w * 2 * h * 2) as usize];
        let err = yuyv_to_rgb(&bigger, w, h).unwrap_err();
        assert_eq!(
            err,
            ConvertError::TooManyBytes {
                format: "YUYV",
                width: w,
                height: h,
                max: max_yuyv_bytes(w, h),
                got: bigger.len(),
            }
        );
        assert!(err.to_string().contains("refused before decoding"), "{err}");
    }

    #[test]
    fn the_converter_checks_every_format_against_its_mode() {
        let mut converter = FrameConverter::new(FrameSize {
            width: 32,
            height: 16,
        });
        let err = converter
            .convert(FrameFormat::MJPEG, &encoded_test_jpeg())
            .unwrap_err();
        assert!(matches!(err, ConvertError::LargerThanMode { .. }), "{err}");
        let err = converter
            .convert(FrameFormat::YUYV, &vec![0u8; 64 * 32 * 2 * 4])
            .unwrap_err();
        assert!(matches!(err, ConvertError::TooManyBytes { .. }), "{err}");
        let image = converter
            .convert(FrameFormat::YUYV, &[128u8; 32 * 16 * 2])
            .unwrap();
        assert_eq!((image.width, image.height), (32, 16));
        assert!(matches!(
            converter.convert(FrameFormat::NV12, &[0u8; 32 * 16 * 3 / 2]),
            Err(ConvertError::Unsupported(_))
        ));
    }
}
