//! Transforms of decoded frames for `eval --augment`: the same footage as a left-handed
//! shopper, a shopper farther away, a crooked or dim camera, another frame rate would see it.
//!
//! A [`Chain`] (`hflip,scale=0.5`) is applied to every frame between the decoder and vision
//! by [`Augmented`], a [`Source`] wrapper, and to the ground truth by [`Chain::labels`] (a
//! mirror image swaps the swipe motions, a faster clip moves the times). Everything is a pure
//! function of the frame, its index and a fixed seed, so an augmented eval is as reproducible
//! as a plain one.
//!
//! | name | effect |
//! | --- | --- |
//! | `hflip` | mirror image (a left-handed shopper); swipe labels swap |
//! | `scale=F[@x,y]` | shrink by F (0 < F ≤ 1) and pad to the original size, centred or with the top-left corner at pixel x,y (a shopper farther away) |
//! | `pad=WxH@x,y` | place the frame in a larger black W×H frame, top-left corner at x,y |
//! | `rotate=DEG` | turn the picture DEG degrees counter-clockwise about its centre (a crooked camera) |
//! | `gamma=G` | `out = in^G` on 0..1 intensities: G > 1 darkens |
//! | `noise=S` | add seeded Gaussian noise of standard deviation S (8-bit levels) |
//! | `fps=N` | resample to N frames per second (drops frames, or repeats them for a faster camera) |
//! | `speed=F` | play F times faster (the shopper moves faster); label times scale by 1/F |
//! | `slide=V` | move the picture sideways at V frame widths per second, entering from the left again after leaving on the right (someone walking past who never stops); nobody is labelled present and no gesture is labelled |

use std::fmt;
use std::sync::Arc;

use opencv::boxed_ref::BoxedRef;
use opencv::core::{self as cv, Mat, MatTraitConst, MatTraitConstManual, Vec3b};
use opencv::imgproc;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use thiserror::Error;

use crate::eval::Labels;
use crate::frame::{Frame, RgbImage};
use crate::source::{Source, SourceError, SourceInfo};

#[derive(Debug, Error, PartialEq)]
pub enum AugmentError {
    #[error("--augment `{spec}`: {reason}")]
    Invalid { spec: String, reason: String },
}

/// One transform.
#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    HFlip,
    Scale {
        factor: f64,
        at: Option<(u32, u32)>,
    },
    Pad {
        width: u32,
        height: u32,
        at: (u32, u32),
    },
    Rotate {
        degrees: f64,
    },
    Gamma {
        gamma: f64,
    },
    Noise {
        sigma: f64,
    },
    Fps {
        fps: f64,
    },
    Speed {
        factor: f64,
    },
    Slide {
        widths_per_s: f64,
    },
}

impl fmt::Display for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transform::HFlip => write!(f, "hflip"),
            Transform::Scale { factor, at: None } => write!(f, "scale={factor}"),
            Transform::Scale {
                factor,
                at: Some((x, y)),
            } => write!(f, "scale={factor}@{x},{y}"),
            Transform::Pad {
                width,
                height,
                at: (x, y),
            } => write!(f, "pad={width}x{height}@{x},{y}"),
            Transform::Rotate { degrees } => write!(f, "rotate={degrees}"),
            Transform::Gamma { gamma } => write!(f, "gamma={gamma}"),
            Transform::Noise { sigma } => write!(f, "noise={sigma}"),
            Transform::Fps { fps } => write!(f, "fps={fps}"),
            Transform::Speed { factor } => write!(f, "speed={factor}"),
            Transform::Slide { widths_per_s } => write!(f, "slide={widths_per_s}"),
        }
    }
}

/// Transforms applied in order; empty is the clip as recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chain(pub Vec<Transform>);

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "none");
        }
        let names: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "{}", names.join(","))
    }
}

fn number(spec: &str, what: &str, text: &str) -> Result<f64, AugmentError> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| invalid(spec, format!("{what} must be a number, got `{text}`")))
}

fn invalid(spec: &str, reason: impl Into<String>) -> AugmentError {
    AugmentError::Invalid {
        spec: spec.to_string(),
        reason: reason.into(),
    }
}

fn position(spec: &str, text: &str) -> Result<(u32, u32), AugmentError> {
    let (x, y) = text.split_once(',').ok_or_else(|| {
        invalid(
            spec,
            format!("position must be x,y in pixels, got `{text}`"),
        )
    })?;
    let px = |v: &str| {
        v.trim().parse::<u32>().map_err(|_| {
            invalid(
                spec,
                format!("position must be x,y in pixels, got `{text}`"),
            )
        })
    };
    Ok((px(x)?, px(y)?))
}

impl Chain {
    /// Parses `NAME[,NAME]...`. The comma inside a position (`scale=0.5@10,20`) belongs to it.
    pub fn parse(spec: &str) -> Result<Self, AugmentError> {
        let spec = spec.trim();
        if spec.is_empty() || spec == "none" {
            return Ok(Self::default());
        }
        // Re-join `@x` `,` `y`: a bare number after a position's x is its y.
        let mut items: Vec<String> = Vec::new();
        for token in spec.split(',') {
            let token = token.trim();
            let continues_position = items.last().is_some_and(|last| {
                last.split_once('@')
                    .is_some_and(|(_, at)| !at.contains(','))
            }) && !token.is_empty()
                && token.chars().all(|c| c.is_ascii_digit());
            match items.last_mut() {
                Some(last) if continues_position => {
                    last.push(',');
                    last.push_str(token);
                }
                _ => items.push(token.to_string()),
            }
        }
        items
            .iter()
            .map(|item| Self::one(spec, item))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    fn one(spec: &str, item: &str) -> Result<Transform, AugmentError> {
        let (name, arg) = item.split_once('=').unwrap_or((item, ""));
        let need = |what: &str| {
            if arg.is_empty() {
                Err(invalid(spec, format!("`{name}` needs a value: {what}")))
            } else {
                Ok(())
            }
        };
        let t = match name {
            "hflip" => Transform::HFlip,
            "scale" => {
                need("scale=F or scale=F@x,y")?;
                let (f, at) = match arg.split_once('@') {
                    Some((f, at)) => (f, Some(position(spec, at)?)),
                    None => (arg, None),
                };
                let factor = number(spec, "scale", f)?;
                if !(factor > 0.0 && factor <= 1.0) {
                    return Err(invalid(
                        spec,
                        format!("scale must be in (0, 1], got {factor}"),
                    ));
                }
                Transform::Scale { factor, at }
            }
            "pad" => {
                need("pad=WxH@x,y")?;
                let (size, at) = arg
                    .split_once('@')
                    .ok_or_else(|| invalid(spec, "pad needs a position: pad=WxH@x,y"))?;
                let (w, h) = size
                    .split_once('x')
                    .ok_or_else(|| invalid(spec, format!("pad size must be WxH, got `{size}`")))?;
                let dim = |v: &str| {
                    v.parse::<u32>()
                        .ok()
                        .filter(|d| (1..=8192).contains(d))
                        .ok_or_else(|| invalid(spec, format!("pad size must be WxH, got `{size}`")))
                };
                Transform::Pad {
                    width: dim(w)?,
                    height: dim(h)?,
                    at: position(spec, at)?,
                }
            }
            "rotate" => {
                need("rotate=DEG")?;
                let degrees = number(spec, "rotate", arg)?;
                if degrees.abs() > 180.0 {
                    return Err(invalid(spec, "rotate must be within ±180 degrees"));
                }
                Transform::Rotate { degrees }
            }
            "gamma" => {
                need("gamma=G")?;
                let gamma = number(spec, "gamma", arg)?;
                if !(gamma > 0.0 && gamma <= 10.0) {
                    return Err(invalid(
                        spec,
                        format!("gamma must be in (0, 10], got {gamma}"),
                    ));
                }
                Transform::Gamma { gamma }
            }
            "noise" => {
                need("noise=S")?;
                let sigma = number(spec, "noise", arg)?;
                if !(0.0..=128.0).contains(&sigma) {
                    return Err(invalid(
                        spec,
                        format!("noise must be in [0, 128], got {sigma}"),
                    ));
                }
                Transform::Noise { sigma }
            }
            "fps" => {
                need("fps=N")?;
                let fps = number(spec, "fps", arg)?;
                if !(1.0..=240.0).contains(&fps) {
                    return Err(invalid(spec, format!("fps must be in [1, 240], got {fps}")));
                }
                Transform::Fps { fps }
            }
            "speed" => {
                need("speed=F")?;
                let factor = number(spec, "speed", arg)?;
                if !(0.1..=10.0).contains(&factor) {
                    return Err(invalid(
                        spec,
                        format!("speed must be in [0.1, 10], got {factor}"),
                    ));
                }
                Transform::Speed { factor }
            }
            "slide" => {
                need("slide=V")?;
                let widths_per_s = number(spec, "slide", arg)?;
                if !(0.01..=10.0).contains(&widths_per_s.abs()) {
                    return Err(invalid(
                        spec,
                        format!(
                            "slide must be within ±[0.01, 10] frame widths per second, got {widths_per_s}"
                        ),
                    ));
                }
                Transform::Slide { widths_per_s }
            }
            other => {
                return Err(invalid(
                    spec,
                    format!(
                        "unknown transform `{other}` (known: hflip, scale=F[@x,y], pad=WxH@x,y, \
                         rotate=DEG, gamma=G, noise=S, fps=N, speed=F, slide=V, or `all`)"
                    ),
                ));
            }
        };
        Ok(t)
    }

    /// The frame size after the chain, or an error when a placement does not fit.
    pub fn output_size(&self, width: u32, height: u32) -> Result<(u32, u32), AugmentError> {
        let mut size = (width, height);
        for t in &self.0 {
            match t {
                Transform::Scale {
                    factor,
                    at: Some((x, y)),
                } => {
                    let (w, h) = scaled(size, *factor);
                    if x + w > size.0 || y + h > size.1 {
                        return Err(invalid(
                            &self.to_string(),
                            format!(
                                "{t}: a {w}x{h} picture at {x},{y} does not fit in {}x{}",
                                size.0, size.1
                            ),
                        ));
                    }
                }
                Transform::Pad {
                    width: pw,
                    height: ph,
                    at: (x, y),
                } => {
                    if x + size.0 > *pw || y + size.1 > *ph {
                        return Err(invalid(
                            &self.to_string(),
                            format!(
                                "{t}: a {}x{} frame at {x},{y} does not fit in {pw}x{ph}",
                                size.0, size.1
                            ),
                        ));
                    }
                    size = (*pw, *ph);
                }
                _ => {}
            }
        }
        Ok(size)
    }

    /// True when the chain mirrors the picture an odd number of times.
    pub fn mirrored(&self) -> bool {
        self.0.iter().filter(|t| **t == Transform::HFlip).count() % 2 == 1
    }

    /// How much faster the augmented clip plays.
    pub fn speed(&self) -> f64 {
        self.0
            .iter()
            .map(|t| match t {
                Transform::Speed { factor } => *factor,
                _ => 1.0,
            })
            .product()
    }

    /// True when the picture keeps moving sideways: whoever is in it walks past.
    pub fn walks_past(&self) -> bool {
        self.0.iter().any(|t| matches!(t, Transform::Slide { .. }))
    }

    /// The ground truth of the augmented clip.
    pub fn labels(&self, labels: &Labels) -> Labels {
        let mut out = labels.clone();
        if self.walks_past() {
            // Someone who never stops is no visitor, and nothing they do is a gesture.
            out.presence = Some(Vec::new());
            out.gestures.clear();
            out.gestures_complete = true;
            return out;
        }
        let speed = self.speed();
        let time = |t: f64| t / speed;
        if let Some(presence) = &mut out.presence {
            for p in presence.iter_mut() {
                *p = [time(p[0]), time(p[1])];
            }
        }
        for g in &mut out.gestures {
            g.start = time(g.start);
            g.end = time(g.end);
            if self.mirrored() {
                g.motion = g.motion.as_deref().map(|m| match m {
                    "image_left_to_right" => "image_right_to_left".to_string(),
                    "image_right_to_left" => "image_left_to_right".to_string(),
                    other => other.to_string(),
                });
            }
        }
        out
    }
}

fn scaled((w, h): (u32, u32), factor: f64) -> (u32, u32) {
    (
        ((f64::from(w) * factor).round() as u32).max(1),
        ((f64::from(h) * factor).round() as u32).max(1),
    )
}

/// The fixed robustness suite of `eval --augment all`, for a clip of this size: the clip as
/// recorded, mirrored, at half and three-quarter size, tilted both ways, at 10 and 30 frames
/// per second, 1.25× faster, dim and noisy, and off-centre in a 1280×720 frame.
pub fn suite(width: u32, height: u32) -> Vec<Chain> {
    let off_centre = if width <= 1280 && height <= 720 {
        // Near the left edge, low: a shopper standing off to one side of a wide camera.
        let (x, y) = ((1280 - width) / 8, (720 - height) * 3 / 4);
        format!("pad=1280x720@{x},{y}")
    } else {
        // Already that large: shrink into the same corner of the frame instead.
        let factor = (640.0 / f64::from(width)).min(360.0 / f64::from(height));
        let (w, h) = scaled((width, height), factor);
        format!(
            "scale={factor:.4}@{},{}",
            (width - w) / 8,
            (height - h) * 3 / 4
        )
    };
    [
        "none",
        "hflip",
        "scale=0.5",
        "scale=0.75",
        "rotate=8",
        "rotate=-8",
        "fps=10",
        "fps=30",
        "speed=1.25",
        "gamma=1.5,noise=8",
        off_centre.as_str(),
    ]
    .iter()
    .map(|s| Chain::parse(s).expect("the suite's own specs parse"))
    .collect()
}

/// A [`Source`] whose frames pass through a [`Chain`].
pub struct Augmented {
    inner: Box<dyn Source>,
    chain: Chain,
    info: SourceInfo,
    seed: u64,
    /// The output frame rate when the chain resamples (`fps=N`).
    resample: Option<Resampler>,
    seq: u64,
}

/// `fps=N`: one output frame per tick of an N-per-second grid, the latest source frame at or
/// before the tick (a faster grid repeats frames, a slower one drops them).
struct Resampler {
    period: f64,
    /// How long the last source frame stands for (the source's own frame period).
    source_period: f64,
    next_tick: Option<f64>,
    current: Option<Frame>,
    ahead: Option<Frame>,
    ended: bool,
}

impl Augmented {
    pub fn new(inner: Box<dyn Source>, chain: Chain, seed: u64) -> Result<Self, AugmentError> {
        let base = inner.info().clone();
        let (width, height) = chain.output_size(base.width, base.height)?;
        let fps_out = chain.0.iter().rev().find_map(|t| match t {
            Transform::Fps { fps } => Some(*fps),
            _ => None,
        });
        let speed = chain.speed();
        let fps = fps_out.unwrap_or(base.fps * speed);
        let media_s = base.frames.map(|n| n as f64 / base.fps / speed);
        let info = SourceInfo {
            name: format!("{} [{}]", base.name, chain),
            width,
            height,
            fps,
            frames: match fps_out {
                Some(f) => media_s.map(|s| (s * f).ceil() as u64),
                None => base.frames,
            },
        };
        Ok(Self {
            inner,
            info,
            seed,
            resample: fps_out.map(|fps| Resampler {
                period: 1.0 / fps,
                source_period: 1.0 / (base.fps * speed),
                next_tick: None,
                current: None,
                ahead: None,
                ended: false,
            }),
            chain,
            seq: 0,
        })
    }

    /// The next source frame with its time scaled by the chain's speed.
    fn pull(&mut self) -> Result<Option<Frame>, SourceError> {
        let speed = self.chain.speed();
        Ok(self.inner.next_frame()?.map(|mut f| {
            f.t /= speed;
            f
        }))
    }

    fn next_timed(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.resample.is_none() {
            return self.pull();
        }
        loop {
            let needs_ahead = self
                .resample
                .as_ref()
                .is_some_and(|r| r.ahead.is_none() && !r.ended);
            if needs_ahead {
                let next = self.pull()?;
                if let Some(r) = self.resample.as_mut() {
                    match next {
                        Some(f) => r.ahead = Some(f),
                        None => r.ended = true,
                    }
                }
            }
            let Some(r) = self.resample.as_mut() else {
                return Ok(None);
            };
            if r.current.is_none() {
                match r.ahead.take() {
                    Some(f) => {
                        r.next_tick.get_or_insert(f.t);
                        r.current = Some(f);
                    }
                    None => return Ok(None),
                }
            }
            let tick = r.next_tick.unwrap_or(0.0);
            // Move to the newest source frame at or before the tick.
            if r.ahead.as_ref().is_some_and(|a| a.t <= tick + 1e-6) {
                r.current = r.ahead.take();
                continue;
            }
            let current = r.current.as_ref().map(|c| c.t).unwrap_or(tick);
            if r.ended && r.ahead.is_none() && tick >= current + r.source_period - 1e-6 {
                return Ok(None);
            }
            r.next_tick = Some(tick + r.period);
            return Ok(r.current.clone().map(|mut f| {
                f.t = tick;
                f
            }));
        }
    }

    fn apply(&self, frame: Frame) -> Result<Frame, SourceError> {
        let failed = |reason: String| SourceError::Decode {
            path: self.info.name.clone().into(),
            frame: frame.seq,
            reason: format!("augmentation failed: {reason}"),
        };
        let mut image: Option<RgbImage> = None;
        for t in &self.chain.0 {
            let src = image.as_ref().unwrap_or(&frame.image);
            let out = match t {
                Transform::Fps { .. } | Transform::Speed { .. } => continue,
                Transform::Gamma { gamma } => gamma_lut(src, *gamma),
                Transform::Noise { sigma } => noise(src, *sigma, self.seed ^ frame.seq),
                Transform::Slide { widths_per_s } => {
                    slide(src, *widths_per_s, frame.t).map_err(|e| failed(e.message))?
                }
                _ => spatial(src, t).map_err(|e| failed(e.message))?,
            };
            image = Some(out);
        }
        Ok(Frame {
            image: image.map_or(frame.image, Arc::new),
            ..frame
        })
    }
}

impl Source for Augmented {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let Some(frame) = self.next_timed()? else {
            return Ok(None);
        };
        let mut frame = self.apply(frame)?;
        frame.seq = self.seq;
        self.seq += 1;
        Ok(Some(frame))
    }
}

fn gamma_lut(src: &RgbImage, gamma: f64) -> RgbImage {
    let lut: Vec<u8> = (0..256)
        .map(|v| (255.0 * (f64::from(v) / 255.0).powf(gamma)).round() as u8)
        .collect();
    RgbImage {
        width: src.width,
        height: src.height,
        data: src.data.iter().map(|&v| lut[usize::from(v)]).collect(),
    }
}

/// Gaussian noise (Box–Muller) from a generator seeded per frame, so every run is the same.
fn noise(src: &RgbImage, sigma: f64, seed: u64) -> RgbImage {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut data = src.data.clone();
    for pair in data.chunks_mut(2) {
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt() * sigma;
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        for (v, n) in pair.iter_mut().zip([r * c, r * s]) {
            *v = (f64::from(*v) + n).round().clamp(0.0, 255.0) as u8;
        }
    }
    RgbImage {
        width: src.width,
        height: src.height,
        data,
    }
}

/// The picture shifted sideways by where the walk is at media time `t`: it enters fully from
/// the left edge, crosses, leaves fully on the right, and enters again (one crossing every
/// `2 / |V|` seconds); what it uncovers is black.
fn slide(src: &RgbImage, widths_per_s: f64, t: f64) -> opencv::Result<RgbImage> {
    let w = f64::from(src.width);
    let travelled = (t * widths_per_s.abs()).rem_euclid(2.0);
    let mut dx = ((travelled - 1.0) * w).round() as i64;
    if widths_per_s < 0.0 {
        dx = -dx;
    }
    let (width, height) = (src.width as usize, src.height as usize);
    let mut data = vec![0u8; src.data.len()];
    let shift = dx.unsigned_abs() as usize;
    if shift < width {
        let kept = (width - shift) * 3;
        for row in 0..height {
            let line = row * width * 3;
            let (from, to) = if dx >= 0 {
                (line, line + shift * 3)
            } else {
                (line + shift * 3, line)
            };
            data[to..to + kept].copy_from_slice(&src.data[from..from + kept]);
        }
    }
    RgbImage::new(src.width, src.height, data)
        .ok_or_else(|| opencv::Error::new(cv::StsBadSize, "unexpected picture size after slide"))
}

fn view(src: &RgbImage) -> opencv::Result<BoxedRef<'_, Mat>> {
    Mat::new_rows_cols_with_bytes::<Vec3b>(src.height as i32, src.width as i32, &src.data)
}

fn to_image(mat: &Mat) -> opencv::Result<RgbImage> {
    let (w, h) = (mat.cols() as u32, mat.rows() as u32);
    let bytes = if mat.is_continuous() {
        mat.data_bytes()?.to_vec()
    } else {
        mat.try_clone()?.data_bytes()?.to_vec()
    };
    RgbImage::new(w, h, bytes).ok_or_else(|| {
        opencv::Error::new(cv::StsBadSize, "unexpected picture size after a transform")
    })
}

/// Places `picture` on a black canvas of `size` with its top-left corner at `at`.
fn place(picture: &impl MatTraitConst, size: (u32, u32), at: (u32, u32)) -> opencv::Result<Mat> {
    let mut canvas = Mat::new_rows_cols_with_default(
        size.1 as i32,
        size.0 as i32,
        cv::CV_8UC3,
        cv::Scalar::all(0.0),
    )?;
    let rect = cv::Rect::new(at.0 as i32, at.1 as i32, picture.cols(), picture.rows());
    let mut target = Mat::roi_mut(&mut canvas, rect)?;
    picture.copy_to(&mut target)?;
    Ok(canvas)
}

fn spatial(src: &RgbImage, t: &Transform) -> opencv::Result<RgbImage> {
    let input = view(src)?;
    let mut out = Mat::default();
    match t {
        Transform::HFlip => cv::flip(&input, &mut out, 1)?,
        Transform::Scale { factor, at } => {
            let (w, h) = scaled((src.width, src.height), *factor);
            let mut small = Mat::default();
            imgproc::resize(
                &input,
                &mut small,
                cv::Size::new(w as i32, h as i32),
                0.0,
                0.0,
                imgproc::INTER_AREA,
            )?;
            let at = at.unwrap_or(((src.width - w) / 2, (src.height - h) / 2));
            out = place(&small, (src.width, src.height), at)?;
        }
        Transform::Pad { width, height, at } => {
            out = place(&input, (*width, *height), *at)?;
        }
        Transform::Rotate { degrees } => {
            let centre = cv::Point2f::new(src.width as f32 / 2.0, src.height as f32 / 2.0);
            let m = imgproc::get_rotation_matrix_2d(centre, *degrees, 1.0)?;
            imgproc::warp_affine(
                &input,
                &mut out,
                &m,
                cv::Size::new(src.width as i32, src.height as i32),
                imgproc::INTER_LINEAR,
                cv::BORDER_CONSTANT,
                cv::Scalar::all(0.0),
            )?;
        }
        Transform::Gamma { .. }
        | Transform::Noise { .. }
        | Transform::Fps { .. }
        | Transform::Speed { .. }
        | Transform::Slide { .. } => return Ok(src.clone()),
    }
    to_image(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_parse_with_positions_and_print_back() {
        let c = Chain::parse("hflip,scale=0.5@10,20,gamma=1.5").unwrap();
        assert_eq!(
            c.0,
            vec![
                Transform::HFlip,
                Transform::Scale {
                    factor: 0.5,
                    at: Some((10, 20))
                },
                Transform::Gamma { gamma: 1.5 }
            ]
        );
        assert_eq!(c.to_string(), "hflip,scale=0.5@10,20,gamma=1.5");
        assert_eq!(
            Chain::parse("pad=1280x720@40,200").unwrap().0,
            vec![Transform::Pad {
                width: 1280,
                height: 720,
                at: (40, 200)
            }]
        );
        assert_eq!(Chain::parse("none").unwrap(), Chain::default());
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (spec, needle) in [
            ("blur=3", "unknown transform `blur`"),
            ("scale=2", "scale must be in (0, 1]"),
            ("scale", "needs a value"),
            ("pad=1280x720", "needs a position"),
            ("pad=axb@0,0", "WxH"),
            ("fps=0", "fps must be"),
            ("rotate=x", "must be a number"),
            ("scale=0.5@1", "x,y"),
        ] {
            let e = Chain::parse(spec).unwrap_err().to_string();
            assert!(e.contains(needle), "{spec}: {e}");
        }
        let too_big = Chain::parse("pad=800x600@200,200").unwrap();
        assert!(too_big.output_size(640, 480).is_err());
        assert_eq!(too_big.output_size(320, 240).unwrap(), (800, 600));
    }

    fn gradient(w: u32, h: u32) -> RgbImage {
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                data.extend([(x * 255 / (w - 1)) as u8, (y * 255 / (h - 1)) as u8, 7]);
            }
        }
        RgbImage::new(w, h, data).unwrap()
    }

    #[test]
    fn spatial_transforms_move_pixels_where_they_should() {
        let img = gradient(64, 48);
        let flipped = spatial(&img, &Transform::HFlip).unwrap();
        assert_eq!(flipped.pixel(0, 5), img.pixel(63, 5));
        let half = spatial(
            &img,
            &Transform::Scale {
                factor: 0.5,
                at: None,
            },
        )
        .unwrap();
        assert_eq!((half.width, half.height), (64, 48));
        assert_eq!(half.pixel(2, 2), [0, 0, 0], "border is black");
        let centre = half.pixel(32, 24);
        assert!((i32::from(centre[0]) - 128).abs() < 12, "{centre:?}");
        let padded = spatial(
            &img,
            &Transform::Pad {
                width: 100,
                height: 60,
                at: (30, 10),
            },
        )
        .unwrap();
        assert_eq!((padded.width, padded.height), (100, 60));
        assert_eq!(padded.pixel(30 + 63, 10 + 5), img.pixel(63, 5));
        assert_eq!(padded.pixel(0, 0), [0, 0, 0]);
        let square = gradient(48, 48);
        let turned = spatial(&square, &Transform::Rotate { degrees: 90.0 }).unwrap();
        // Counter-clockwise: the right edge (bright red) comes to the top.
        assert!(turned.pixel(24, 2)[0] > 200, "{:?}", turned.pixel(24, 2));
        assert!(turned.pixel(24, 45)[0] < 50, "{:?}", turned.pixel(24, 45));
    }

    #[test]
    fn slide_walks_the_picture_across_and_labels_nobody() {
        let img = gradient(64, 48);
        // 0.5 widths/s: fully off to the left at t = 0, in place at t = 2 s, half-way out to
        // the right at t = 3 s.
        let at = |t: f64| slide(&img, 0.5, t).unwrap();
        assert!(at(0.0).data.iter().all(|&v| v == 0));
        assert_eq!(at(2.0).data, img.data);
        let half_out = at(3.0);
        assert_eq!(half_out.pixel(40, 5), img.pixel(8, 5));
        assert_eq!(half_out.pixel(10, 5), [0, 0, 0]);
        // The other way round.
        assert_eq!(
            slide(&img, -0.5, 3.0).unwrap().pixel(10, 5),
            img.pixel(42, 5)
        );
        let chain = Chain::parse("scale=0.5,slide=0.25").unwrap();
        assert!(chain.walks_past());
        let labels: Labels = serde_json::from_str(
            r#"{"presence": [[1.0, 5.0]], "gestures": [{"kind": "thumbs_up", "start": 2, "end": 3}]}"#,
        )
        .unwrap();
        let walked = chain.labels(&labels);
        assert_eq!(walked.presence, Some(Vec::new()));
        assert!(walked.gestures.is_empty() && walked.gestures_complete);
        assert!(Chain::parse("slide=0").is_err());
    }

    #[test]
    fn photometric_transforms_are_seeded_and_bounded() {
        let img = gradient(32, 32);
        let dark = gamma_lut(&img, 1.5);
        assert!(dark.pixel(16, 0)[0] < img.pixel(16, 0)[0]);
        assert_eq!(dark.pixel(31, 0)[0], 255);
        let a = noise(&img, 8.0, 3);
        assert_eq!(a, noise(&img, 8.0, 3));
        assert_ne!(a, noise(&img, 8.0, 4));
        let mean_diff = a
            .data
            .iter()
            .zip(&img.data)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
            .sum::<f64>()
            / a.data.len() as f64;
        assert!((4.0..9.0).contains(&mean_diff), "{mean_diff}");
    }

    struct Clip {
        info: SourceInfo,
        frames: std::vec::IntoIter<Frame>,
    }

    impl Source for Clip {
        fn info(&self) -> &SourceInfo {
            &self.info
        }
        fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
            Ok(self.frames.next())
        }
    }

    fn clip(fps: f64, n: u64) -> Box<dyn Source> {
        let image = Arc::new(RgbImage::filled(4, 4, [1, 2, 3]));
        Box::new(Clip {
            info: SourceInfo {
                name: "clip".into(),
                width: 4,
                height: 4,
                fps,
                frames: Some(n),
            },
            frames: (0..n)
                .map(|seq| Frame {
                    seq,
                    t: seq as f64 / fps,
                    image: image.clone(),
                })
                .collect::<Vec<_>>()
                .into_iter(),
        })
    }

    fn times(mut s: Augmented) -> Vec<(u64, f64)> {
        let mut out = Vec::new();
        while let Some(f) = s.next_frame().unwrap() {
            out.push((f.seq, (f.t * 1000.0).round() / 1000.0));
        }
        out
    }

    #[test]
    fn fps_drops_or_repeats_frames_on_the_new_grid_and_speed_scales_time() {
        let down = Augmented::new(clip(30.0, 30), Chain::parse("fps=10").unwrap(), 0).unwrap();
        assert_eq!(down.info().fps, 10.0);
        let t = times(down);
        assert_eq!(t.len(), 10, "{t:?}");
        assert_eq!(t[3], (3, 0.3));

        let up = Augmented::new(clip(10.0, 10), Chain::parse("fps=30").unwrap(), 0).unwrap();
        let t = times(up);
        assert_eq!(t.len(), 30, "{t:?}");
        assert!(t.windows(2).all(|w| w[1].1 > w[0].1));

        let fast = Augmented::new(clip(10.0, 10), Chain::parse("speed=2").unwrap(), 0).unwrap();
        assert_eq!(fast.info().fps, 20.0);
        let t = times(fast);
        assert_eq!(t[9], (9, 0.45));
    }

    #[test]
    fn labels_follow_the_picture() {
        let labels: Labels = serde_json::from_str(
            r#"{"clip":"x","presence":[[1.0,5.0]],"gestures":[
                {"kind":"swipe","motion":"image_left_to_right","start":1.0,"end":1.5},
                {"kind":"thumbs_up","start":3.0,"end":3.5}],
                "gestures_complete":true,"tolerance_s":0.5}"#,
        )
        .unwrap();
        let l = Chain::parse("hflip,speed=2").unwrap().labels(&labels);
        assert_eq!(l.gestures[0].motion.as_deref(), Some("image_right_to_left"));
        assert_eq!((l.gestures[0].start, l.gestures[0].end), (0.5, 0.75));
        assert_eq!(l.presence.unwrap()[0], [0.5, 2.5]);
        let twice = Chain::parse("hflip,hflip").unwrap().labels(&labels);
        assert_eq!(
            twice.gestures[0].motion.as_deref(),
            Some("image_left_to_right")
        );
    }

    #[test]
    fn the_suite_fits_every_clip_size() {
        for (w, h) in [
            (640, 480),
            (768, 432),
            (1280, 720),
            (1920, 1080),
            (320, 240),
        ] {
            let suite = suite(w, h);
            assert!(suite.len() >= 10);
            for chain in &suite {
                let (ow, oh) = chain.output_size(w, h).unwrap();
                assert!(ow >= w.min(1280) && oh >= h.min(720), "{chain} on {w}x{h}");
            }
        }
    }
}
