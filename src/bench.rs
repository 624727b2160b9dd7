//! `mirrorsight bench`: what a replay cost (frames/s, CPU per frame, per-frame latency, the
//! share of each stage and of each model, peak memory), as a table for people or JSON for
//! scripts (`scripts/bench-vs-mediapipe.sh` reads it), and the pure model loop: each model's
//! `session.run` timed alone on one fixed tensor, so the pipeline's overhead over its models
//! can be stated; and every model's outputs on one image, to hold one execution provider's
//! answers against another's.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::frame::RgbImage;
use crate::metrics::{Histogram, Metrics, Stage};
use crate::pipeline::RunSummary;
use crate::vision::model::model_timings;
use crate::vision::runtime::{ModelsDir, Runtime, RuntimeError, manifest};
use crate::vision::tensor::{Range, Roi, sample_roi};

/// One replay's cost. Shares are fractions of the replay's wall time: the vision thread is
/// busy for all of it in a replay (frames never wait), so they say where its time goes; decoding
/// runs on the capture thread alongside and is shown for scale.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub runner: &'static str,
    /// The ONNX Runtime execution provider that ran the models.
    pub provider: &'static str,
    /// `onnxruntime.precision`: "fp32", or "int8" (the models kept in INT8).
    pub precision: &'static str,
    pub clip: String,
    pub width: u32,
    pub height: u32,
    pub source_fps: f64,
    pub frames: u64,
    pub wall_s: f64,
    pub fps: f64,
    pub realtime_factor: f64,
    /// Process CPU time (every thread) over the replay, model loading excluded.
    pub cpu_s: f64,
    pub cpu_ms_per_frame: f64,
    /// CPU over wall: how many cores the replay kept busy.
    pub cores_busy: f64,
    /// The vision thread's time per frame (all stages of one frame).
    pub frame_p50_ms: f64,
    pub frame_p95_ms: f64,
    pub presence_detector_runs: u64,
    pub palm_detector_runs: u64,
    pub peak_rss_mib: Option<f64>,
    /// How long the vision thread waited per frame for the capture thread to hand it one
    /// (decoding slower than vision; frames move through the queue, their pixels are not copied).
    pub vision_wait_ms_per_frame: f64,
    /// Rust heap allocations per frame, the whole process (ONNX Runtime, OpenVINO and OpenCV
    /// allocate outside Rust's allocator and are not counted); `None` when not counted.
    pub heap_allocations_per_frame: Option<f64>,
    pub heap_kib_per_frame: Option<f64>,
    pub stages: Vec<StageCost>,
    pub models: Vec<ModelCost>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageCost {
    pub name: &'static str,
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub ms_per_frame: f64,
    pub share: f64,
}

/// One model inside the replay: its calls, and the time of each part of a call.
#[derive(Debug, Clone, Serialize)]
pub struct ModelCost {
    pub name: &'static str,
    pub runs: u64,
    pub runs_per_frame: f64,
    pub run_p50_ms: f64,
    pub run_p95_ms: f64,
    /// `session.run` time per processed frame, and its share of the wall time.
    pub run_ms_per_frame: f64,
    pub share: f64,
    /// Crop and convert into the input tensor, per frame.
    pub prepare_ms_per_frame: f64,
    /// Output reading and decoding, per frame.
    pub read_ms_per_frame: f64,
}

/// A model's `session.run` alone, in a loop on one tensor.
#[derive(Debug, Clone, Serialize)]
pub struct ModelLoop {
    pub name: String,
    pub runs: u32,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub cpu_ms_per_run: f64,
}

impl BenchReport {
    /// Builds the report from a finished replay.
    pub fn new(
        summary: &RunSummary,
        metrics: &Metrics,
        provider: &'static str,
        precision: &'static str,
    ) -> Self {
        let cpu = summary.cpu;
        let wall_s = summary.wall.as_secs_f64().max(1e-9);
        let frames = summary.frames_processed;
        let per_frame = |ms: f64| ms / frames.max(1) as f64;
        let share = |ms: f64| ms / (wall_s * 1000.0);
        let stages = Stage::ALL
            .iter()
            .map(|&stage| (stage, metrics.stage(stage)))
            .filter(|(_, h)| h.count() > 0)
            .map(|(stage, h)| StageCost {
                name: stage.name(),
                count: h.count(),
                p50_ms: h.quantile_ms(0.5),
                p95_ms: h.quantile_ms(0.95),
                ms_per_frame: per_frame(h.total_ms()),
                share: share(h.total_ms()),
            })
            .collect();
        let models = model_timings()
            .into_iter()
            .map(|(name, t)| ModelCost {
                name,
                runs: t.run.count(),
                runs_per_frame: t.run.count() as f64 / frames.max(1) as f64,
                run_p50_ms: t.run.quantile_ms(0.5),
                run_p95_ms: t.run.quantile_ms(0.95),
                run_ms_per_frame: per_frame(t.run.total_ms()),
                share: share(t.run.total_ms()),
                prepare_ms_per_frame: per_frame(t.prepare.total_ms()),
                read_ms_per_frame: per_frame(t.read.total_ms()),
            })
            .collect();
        let frame = metrics.stage(Stage::Frame);
        let media_s = summary.frames_captured as f64 / summary.source.fps.max(1e-9);
        Self {
            runner: "mirrorsight",
            provider,
            precision,
            clip: summary.source.name.clone(),
            width: summary.source.width,
            height: summary.source.height,
            source_fps: summary.source.fps,
            frames,
            wall_s,
            fps: frames as f64 / wall_s,
            realtime_factor: media_s / wall_s,
            cpu_s: cpu.as_secs_f64(),
            cpu_ms_per_frame: per_frame(cpu.as_secs_f64() * 1000.0),
            cores_busy: cpu.as_secs_f64() / wall_s,
            frame_p50_ms: frame.quantile_ms(0.5),
            frame_p95_ms: frame.quantile_ms(0.95),
            presence_detector_runs: Metrics::get(&metrics.detector_runs),
            palm_detector_runs: Metrics::get(&metrics.palm_detector_runs),
            peak_rss_mib: peak_rss_kib().map(|kib| kib as f64 / 1024.0),
            vision_wait_ms_per_frame: per_frame(summary.vision_wait.as_secs_f64() * 1000.0),
            heap_allocations_per_frame: summary
                .heap
                .map(|h| h.allocations as f64 / frames.max(1) as f64),
            heap_kib_per_frame: summary
                .heap
                .map(|h| h.bytes as f64 / 1024.0 / frames.max(1) as f64),
            stages,
            models,
        }
    }

    /// The human-readable table.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let media_s = self.frames as f64 / self.source_fps.max(1e-9);
        let _ = writeln!(
            out,
            "clip: {} ({}x{}, {:.2} fps, {} frames, {:.1} s)",
            self.clip, self.width, self.height, self.source_fps, self.frames, media_s
        );
        let _ = writeln!(
            out,
            "replay: {:.1} frames/s, {:.1}x real time, wall {:.2} s",
            self.fps, self.realtime_factor, self.wall_s
        );
        let _ = writeln!(
            out,
            "cpu: {:.1} ms per frame ({:.2} cores busy), provider {}, precision {}",
            self.cpu_ms_per_frame, self.cores_busy, self.provider, self.precision
        );
        let _ = writeln!(
            out,
            "frame (vision, all stages): p50 {:.2} ms, p95 {:.2} ms",
            self.frame_p50_ms, self.frame_p95_ms
        );
        let _ = writeln!(
            out,
            "vision waited for frames: {:.2} ms per frame (the capture thread's hand-off)",
            self.vision_wait_ms_per_frame
        );
        if let (Some(n), Some(kib)) = (self.heap_allocations_per_frame, self.heap_kib_per_frame) {
            let _ = writeln!(
                out,
                "heap allocations (Rust, whole process): {n:.1} per frame, {kib:.1} KiB per frame"
            );
        }
        let _ = writeln!(
            out,
            "presence detector runs: {} ({:.2} per media second)",
            self.presence_detector_runs,
            self.presence_detector_runs as f64 / media_s.max(1e-9)
        );
        let _ = writeln!(
            out,
            "palm detector runs: {} ({:.2} per media second)",
            self.palm_detector_runs,
            self.palm_detector_runs as f64 / media_s.max(1e-9)
        );
        let _ = writeln!(
            out,
            "{:<11} {:>7} {:>9} {:>9} {:>10} {:>7}",
            "stage", "count", "p50 ms", "p95 ms", "ms/frame", "share"
        );
        for s in &self.stages {
            let _ = writeln!(
                out,
                "{:<11} {:>7} {:>9.2} {:>9.2} {:>10.2} {:>6.1}%",
                s.name,
                s.count,
                s.p50_ms,
                s.p95_ms,
                s.ms_per_frame,
                100.0 * s.share
            );
        }
        if !self.models.is_empty() {
            let _ = writeln!(
                out,
                "{:<19} {:>6} {:>7} {:>9} {:>9} {:>10} {:>7} {:>10} {:>10}",
                "model (session.run)",
                "runs",
                "/frame",
                "p50 ms",
                "p95 ms",
                "ms/frame",
                "share",
                "crop ms/f",
                "read ms/f"
            );
            for m in &self.models {
                let _ = writeln!(
                    out,
                    "{:<19} {:>6} {:>7.2} {:>9.2} {:>9.2} {:>10.2} {:>6.1}% {:>10.2} {:>10.2}",
                    m.name,
                    m.runs,
                    m.runs_per_frame,
                    m.run_p50_ms,
                    m.run_p95_ms,
                    m.run_ms_per_frame,
                    100.0 * m.share,
                    m.prepare_ms_per_frame,
                    m.read_ms_per_frame
                );
            }
        }
        let _ = writeln!(
            out,
            "peak RSS: {}",
            self.peak_rss_mib
                .map_or("unknown".into(), |mib| format!("{mib:.1} MiB"))
        );
        out
    }
}

/// Times each named model's `session.run` alone: `warmup` untimed runs, then `runs` timed
/// ones, all on one mid-grey input tensor of the model's shape, with the session settings the
/// pipeline uses.
pub fn model_loop(
    runtime: &Runtime,
    models: &ModelsDir,
    names: &[String],
    warmup: u32,
    runs: u32,
) -> Result<Vec<ModelLoop>, RuntimeError> {
    let mut out = Vec::new();
    for name in names {
        let spec = models.spec(name)?;
        let mut session = runtime.load(models, name)?;
        let shape: Vec<usize> = spec.inputs[0]
            .shape
            .iter()
            .map(|&d| d.max(1) as usize)
            .collect();
        let input = vec![0.5f32; shape.iter().product()];
        let fail = |e: ort::Error| RuntimeError::ModelLoad {
            name: name.clone(),
            reason: e.to_string(),
        };
        let mut histogram = Histogram::default();
        let mut cpu = Duration::ZERO;
        for i in 0..warmup + runs {
            let tensor = ort::value::TensorRef::from_array_view((shape.clone(), input.as_slice()))
                .map_err(fail)?;
            let cpu_before = process_cpu_time();
            let started = Instant::now();
            session.run(ort::inputs![tensor]).map_err(fail)?;
            let took = started.elapsed();
            if i >= warmup {
                histogram.record(took);
                cpu += process_cpu_time().saturating_sub(cpu_before);
            }
        }
        out.push(ModelLoop {
            name: name.clone(),
            runs,
            p50_ms: histogram.quantile_ms(0.5),
            p95_ms: histogram.quantile_ms(0.95),
            cpu_ms_per_run: cpu.as_secs_f64() * 1000.0 / runs.max(1) as f64,
        });
    }
    Ok(out)
}

/// Every model's outputs on one image (letterboxed into its input), for comparing execution
/// providers: the same image must give the same answers on OpenVINO as on the CPU provider.
pub fn model_outputs(
    runtime: &Runtime,
    models: &ModelsDir,
    image: &RgbImage,
) -> Result<Vec<ModelOutputs>, RuntimeError> {
    let mut out = Vec::new();
    for spec in &manifest()?.models {
        let mut session = runtime.load(models, &spec.name)?;
        let fail = |e: ort::Error| RuntimeError::ModelLoad {
            name: spec.name.clone(),
            reason: e.to_string(),
        };
        let side = spec.inputs[0].shape.get(1).copied().unwrap_or(1).max(1) as usize;
        // The detectors take [-1, 1], the landmark models [0, 1] (MediaPipe's settings).
        let range = if spec.name.contains("_detection") && !spec.name.starts_with("palm") {
            Range::Signed
        } else {
            Range::Unit
        };
        let mut input = vec![0.0f32; side * side * 3];
        sample_roi(image, &Roi::letterbox(image), side, range, &mut input);
        let tensor =
            ort::value::TensorRef::from_array_view(([1usize, side, side, 3], input.as_slice()))
                .map_err(fail)?;
        let outputs = session.run(ort::inputs![tensor]).map_err(fail)?;
        let mut values = Vec::new();
        for o in &spec.outputs {
            let (_, data) = outputs[o.name.as_str()]
                .try_extract_tensor::<f32>()
                .map_err(fail)?;
            values.push(NamedTensor {
                name: o.name.clone(),
                values: data.to_vec(),
            });
        }
        out.push(ModelOutputs {
            model: spec.name.clone(),
            outputs: values,
        });
    }
    Ok(out)
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelOutputs {
    pub model: String,
    pub outputs: Vec<NamedTensor>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NamedTensor {
    pub name: String,
    pub values: Vec<f32>,
}

/// The pure loop as a table.
pub fn model_loop_text(loops: &[ModelLoop]) -> String {
    let mut out = format!(
        "{:<26} {:>6} {:>9} {:>9} {:>11}\n",
        "model alone (session.run)", "runs", "p50 ms", "p95 ms", "CPU ms/run"
    );
    for l in loops {
        let _ = writeln!(
            out,
            "{:<26} {:>6} {:>9.2} {:>9.2} {:>11.2}",
            l.name, l.runs, l.p50_ms, l.p95_ms, l.cpu_ms_per_run
        );
    }
    out
}

/// CPU time of the whole process (all threads, user and system) so far.
pub fn process_cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we own; RUSAGE_SELF is always valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// VmHWM from /proc: the process's peak resident set size in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}
