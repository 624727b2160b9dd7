//! A loaded model with one square NHWC image input and its reusable input buffer, and the
//! process-wide record of how long each model takes (crop and convert, `session.run`, output
//! reading), which `bench` reports; and, for `models/convert.sh`, a copy of what each model is
//! given (`bench --calibration-dump`), to calibrate the INT8 models on the crops they see.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ort::session::Session;
use ort::value::TensorRef;

use super::VisionError;
use super::tensor::{Range, Roi, sample_roi};
use crate::frame::RgbImage;
use crate::metrics::Histogram;

/// Where one model's time goes, per call.
#[derive(Debug, Clone, Default)]
pub struct ModelTiming {
    /// Cropping, resampling and normalising the region into the input tensor.
    pub prepare: Histogram,
    /// `session.run` alone: what ONNX Runtime spends.
    pub run: Histogram,
    /// Reading the outputs and decoding them (anchors, landmarks).
    pub read: Histogram,
}

/// Time spent in each model, by model name, for the whole process. A registry rather than a
/// field threaded through every tracker: models are built deep inside the vision stage, and
/// this is measurement, not behaviour (the lock is taken once per call, a few times a frame).
pub fn model_timings() -> BTreeMap<&'static str, ModelTiming> {
    registry().lock().map(|m| m.clone()).unwrap_or_default()
}

fn registry() -> &'static Mutex<BTreeMap<&'static str, ModelTiming>> {
    static TIMINGS: OnceLock<Mutex<BTreeMap<&'static str, ModelTiming>>> = OnceLock::new();
    TIMINGS.get_or_init(Default::default)
}

fn record(name: &'static str, part: fn(&mut ModelTiming) -> &mut Histogram, took: Duration) {
    if let Ok(mut timings) = registry().lock() {
        part(timings.entry(name).or_default()).record(took);
    }
}

/// Where `bench --calibration-dump` writes model inputs: `DIR/<model>/<tag>-<n>.f32`, raw
/// little-endian float32 NHWC tensors, every `every`-th call of each model.
struct CalibrationDump {
    dir: PathBuf,
    tag: String,
    every: u64,
    calls: Mutex<BTreeMap<&'static str, u64>>,
}

static CALIBRATION: OnceLock<CalibrationDump> = OnceLock::new();

/// From now on, every `every`-th input of each model is written under `dir` (files named
/// after `tag`, the clip). Once per process; a second call is refused.
pub fn dump_inputs(dir: PathBuf, tag: &str, every: u64) -> std::io::Result<()> {
    std::fs::create_dir_all(&dir)?;
    CALIBRATION
        .set(CalibrationDump {
            dir,
            tag: tag.to_string(),
            every: every.max(1),
            calls: Mutex::new(BTreeMap::new()),
        })
        .map_err(|_| std::io::Error::other("calibration dump already set"))
}

impl CalibrationDump {
    fn offer(&self, model: &'static str, input: &[f32]) {
        let call = match self.calls.lock() {
            Ok(mut calls) => {
                let n = calls.entry(model).or_insert(0);
                *n += 1;
                *n - 1
            }
            Err(_) => return,
        };
        if call % self.every != 0 {
            return;
        }
        let folder = self.dir.join(model);
        let path = folder.join(format!("{}-{:06}.f32", self.tag, call));
        let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
        if let Err(e) = std::fs::create_dir_all(&folder).and_then(|_| std::fs::write(&path, bytes))
        {
            tracing::warn!("calibration dump: cannot write {}: {e}", path.display());
        }
    }
}

pub struct ImageModel {
    pub name: &'static str,
    session: Session,
    size: usize,
    range: Range,
    input: Vec<f32>,
    outputs: Vec<String>,
}

impl ImageModel {
    pub fn new(name: &'static str, session: Session, size: usize, range: Range) -> Self {
        let outputs = session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        Self {
            name,
            session,
            size,
            range,
            input: vec![0.0; size * size * 3],
            outputs,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Samples the ROI of `image` into the input tensor.
    pub fn prepare(&mut self, image: &RgbImage, roi: &Roi) {
        let started = Instant::now();
        sample_roi(image, roi, self.size, self.range, &mut self.input);
        record(self.name, |t| &mut t.prepare, started.elapsed());
        if let Some(dump) = CALIBRATION.get() {
            dump.offer(self.name, &self.input);
        }
    }

    /// Runs the model on the prepared input and hands the chosen outputs (by index, in
    /// model order) to `read` without copying them.
    pub fn run<R>(
        &mut self,
        wanted: &[usize],
        read: impl FnOnce(&[&[f32]]) -> R,
    ) -> Result<R, VisionError> {
        let name = self.name;
        let fail = |e: ort::Error| VisionError::Inference {
            model: name,
            reason: e.to_string(),
        };
        let input =
            TensorRef::from_array_view(([1usize, self.size, self.size, 3], self.input.as_slice()))
                .map_err(fail)?;
        let started = Instant::now();
        let outputs = self.session.run(ort::inputs![input]).map_err(fail)?;
        let ran = Instant::now();
        record(name, |t| &mut t.run, ran - started);
        let mut views: Vec<&[f32]> = Vec::with_capacity(wanted.len());
        for &i in wanted {
            let key = self.outputs.get(i).ok_or_else(|| VisionError::Inference {
                model: name,
                reason: format!("output {i} does not exist"),
            })?;
            let (_, data) = outputs[key.as_str()]
                .try_extract_tensor::<f32>()
                .map_err(fail)?;
            views.push(data);
        }
        let result = read(&views);
        record(name, |t| &mut t.read, ran.elapsed());
        Ok(result)
    }
}
