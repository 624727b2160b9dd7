//! ONNX Runtime: finding the shared library, choosing the execution provider (OpenVINO or
//! ONNX Runtime's own CPU kernels, falling back to the latter with a logged reason), and
//! loading models only after proving they are the ones this build was made for (sha256,
//! input and output names and shapes).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::ep::{ExecutionProviderDispatch, OpenVINO};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::ValueType;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::config::{ModelsConfig, OnnxRuntimeConfig};

/// The model list this binary was built against (sha256 and tensor shapes of every model).
const MANIFEST: &str = include_str!("../../models/manifest.json");

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime library not found (looked in {looked}): run scripts/setup.sh, or set onnxruntime.library or ORT_DYLIB_PATH"
    )]
    LibraryMissing { looked: String },
    #[error(
        "ONNX Runtime library {path} could not be loaded: {reason} (run scripts/setup.sh to install 1.32)"
    )]
    LibraryBroken { path: PathBuf, reason: String },
    #[error(
        "models folder not found (looked in {looked}): set models.dir or MIRRORSIGHT_MODELS_DIR"
    )]
    ModelsDirMissing { looked: String },
    #[error("model {name}: {path} is missing (restore it from the repository's models/ folder)")]
    ModelMissing { name: String, path: PathBuf },
    #[error(
        "model {name}: {path} has sha256 {actual}, expected {expected} (wrong or corrupted file: restore it from models/)"
    )]
    ModelChecksum {
        name: String,
        path: PathBuf,
        actual: String,
        expected: String,
    },
    #[error("model {name}: {detail} (wrong model file: restore it from models/)")]
    ModelShape { name: String, detail: String },
    #[error("model {name}: ONNX Runtime refused it: {reason}")]
    ModelLoad { name: String, reason: String },
    #[error("model {0} is not in models/manifest.json of this build")]
    UnknownModel(String),
    #[error("built-in model manifest is unreadable: {0}")]
    Manifest(String),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub models: Vec<ModelSpec>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ModelSpec {
    pub name: String,
    pub file: String,
    pub sha256: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// The INT8 (QDQ) form of the model, where one was kept (`models/convert.sh` makes it;
    /// the manifest records how it was calibrated). Same inputs and outputs.
    #[serde(default)]
    pub int8: Option<ModelFile>,
}

/// One file of a model: its name in the models folder and its sha256.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelFile {
    pub file: String,
    pub sha256: String,
}

impl ModelSpec {
    /// The file to load at this precision: the INT8 one where the manifest has it, the FP32
    /// one otherwise (models whose INT8 form lost accuracy are kept in FP32).
    pub fn file_for(&self, precision: Precision) -> (&str, &str) {
        match (precision, &self.int8) {
            (Precision::Int8, Some(q)) => (&q.file, &q.sha256),
            _ => (&self.file, &self.sha256),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<i64>,
    pub dtype: String,
}

pub fn manifest() -> Result<&'static Manifest, RuntimeError> {
    static PARSED: OnceLock<Result<Manifest, String>> = OnceLock::new();
    PARSED
        .get_or_init(|| serde_json::from_str(MANIFEST).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| RuntimeError::Manifest(e.clone()))
}

/// Which ONNX Runtime execution provider runs the models (`onnxruntime.provider`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Provider {
    /// ONNX Runtime's own CPU kernels (the 1.32 library from the PyPI `onnxruntime` wheel).
    #[serde(rename = "cpu")]
    Cpu,
    /// Intel's OpenVINO through ONNX Runtime (the library from the PyPI `onnxruntime-openvino`
    /// wheel, installed next to the CPU one in an `openvino/` folder): 1.3–2× faster per model
    /// on one thread on x86 CPUs, and it can use an Intel iGPU (`onnxruntime.device = "GPU"`).
    #[serde(rename = "openvino")]
    OpenVino,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::OpenVino => "openvino",
        }
    }
}

/// The numeric precision of the models (`onnxruntime.precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Precision {
    /// The converted MediaPipe models as they are (float32 weights and activations).
    #[serde(rename = "fp32")]
    Fp32,
    /// INT8 weights and activations (static QDQ quantisation calibrated on the shared footage)
    /// for the models whose INT8 form lost no accuracy; FP32 for the others.
    #[serde(rename = "int8")]
    Int8,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}

/// The provider library every OpenVINO build of ONNX Runtime ships beside libonnxruntime.so.
const OPENVINO_PROVIDER_LIBRARY: &str = "libonnxruntime_providers_openvino.so";

/// The folders the ONNX Runtime libraries are installed in, in search order.
fn install_dirs() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        out.push(dir);
    }
    out.push("/usr/local/lib/mirrorsight".into());
    out.push("/usr/lib/mirrorsight".into());
    out
}

/// Where the ONNX Runtime library (CPU build) is looked for, in order.
pub fn library_candidates(cfg: &OnnxRuntimeConfig) -> Vec<PathBuf> {
    if let Some(path) = &cfg.library {
        return vec![path.clone()];
    }
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        out.push(PathBuf::from(p));
    }
    out.extend(install_dirs().iter().map(|d| d.join("libonnxruntime.so")));
    out
}

/// Where the OpenVINO build of ONNX Runtime is looked for, in order (`onnxruntime.library`,
/// when set, is used for either provider).
pub fn openvino_library_candidates(cfg: &OnnxRuntimeConfig) -> Vec<PathBuf> {
    if let Some(path) = &cfg.library {
        return vec![path.clone()];
    }
    install_dirs()
        .iter()
        .map(|d| d.join("openvino").join("libonnxruntime.so"))
        .collect()
}

fn first_file(candidates: &[PathBuf]) -> Option<PathBuf> {
    candidates.iter().find(|p| p.is_file()).cloned()
}

fn joined(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Picks the library for the configured provider. OpenVINO falls back to the CPU build, with
/// the reason, when its build of ONNX Runtime is not installed.
fn choose_library(
    cfg: &OnnxRuntimeConfig,
) -> Result<(PathBuf, Provider, Option<String>), RuntimeError> {
    let mut fallback = None;
    if cfg.provider == Provider::OpenVino {
        let candidates = openvino_library_candidates(cfg);
        match first_file(&candidates) {
            Some(library) => {
                let beside = library.with_file_name(OPENVINO_PROVIDER_LIBRARY);
                if cfg.library.is_some() || beside.is_file() {
                    return Ok((library, Provider::OpenVino, None));
                }
                fallback = Some(format!(
                    "{} is missing (run scripts/setup.sh)",
                    beside.display()
                ));
            }
            None => {
                fallback = Some(format!(
                    "the OpenVINO build of ONNX Runtime is not installed (looked in {}; scripts/setup.sh installs it)",
                    joined(&candidates)
                ));
            }
        }
    }
    let candidates = library_candidates(cfg);
    let library = first_file(&candidates).ok_or_else(|| RuntimeError::LibraryMissing {
        looked: joined(&candidates),
    })?;
    Ok((library, Provider::Cpu, fallback))
}

/// The process-wide ONNX Runtime environment, created on first use.
pub struct Runtime {
    env: ort::environment::Environment,
    pub library: PathBuf,
    threads: usize,
    spinning: bool,
    pub precision: Precision,
    /// The provider asked for; `load` uses it unless it already failed once.
    provider: Provider,
    device: String,
    /// Why the configured provider is not the one running models (logged once).
    fallback: Mutex<Option<String>>,
}

static RUNTIME: OnceLock<Result<Runtime, (PathBuf, String)>> = OnceLock::new();

impl Runtime {
    pub fn get(cfg: &OnnxRuntimeConfig) -> Result<&'static Runtime, RuntimeError> {
        // ONNX Runtime can be loaded once per process; a second config cannot change it.
        let (library, provider, fallback) = choose_library(cfg)?;
        if let Some(reason) = &fallback {
            tracing::warn!(
                "onnxruntime.provider = \"openvino\" but {reason}: using the CPU provider"
            );
        }
        let result = RUNTIME.get_or_init(|| {
            let fail = |e: String| (library.clone(), e);
            let env = ort::init_from(&library)
                .map_err(|e| fail(e.to_string()))?
                .with_name("mirrorsight")
                .build()
                .map_err(|e| fail(e.to_string()))?;
            Ok(Runtime {
                env,
                library: library.clone(),
                threads: cfg.intra_threads,
                spinning: cfg.spinning,
                precision: cfg.precision,
                provider,
                device: cfg.device.clone(),
                fallback: Mutex::new(fallback),
            })
        });
        result
            .as_ref()
            .map_err(|(path, reason)| RuntimeError::LibraryBroken {
                path: path.clone(),
                reason: reason.clone(),
            })
    }

    /// The provider that runs the models now: the configured one, or CPU after a fallback.
    pub fn provider(&self) -> Provider {
        if self.fallback_reason().is_some() {
            Provider::Cpu
        } else {
            self.provider
        }
    }

    /// Why the configured provider is not running the models, if it is not.
    pub fn fallback_reason(&self) -> Option<String> {
        self.fallback.lock().ok().and_then(|f| f.clone())
    }

    /// Remembers (and logs, the first time) why OpenVINO could not take a model.
    fn fall_back(&self, name: &str, reason: String) {
        let reason = reason.trim().trim_end_matches('.');
        if let Ok(mut fallback) = self.fallback.lock()
            && fallback.is_none()
        {
            tracing::warn!(
                "onnxruntime.provider = \"openvino\" failed on model {name}: {reason}: using the CPU provider"
            );
            *fallback = Some(format!("model {name}: {reason}"));
        }
    }

    /// Loads a model by manifest name after checking its bytes and tensor signature.
    pub fn load(&self, models: &ModelsDir, name: &str) -> Result<Session, RuntimeError> {
        let spec = models.spec(name)?;
        let (file, sha256) = spec.file_for(self.precision);
        let path = models.dir.join(file);
        let bytes = std::fs::read(&path).map_err(|_| RuntimeError::ModelMissing {
            name: name.into(),
            path: path.clone(),
        })?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != sha256 {
            return Err(RuntimeError::ModelChecksum {
                name: name.into(),
                path,
                actual,
                expected: sha256.to_string(),
            });
        }
        let session = match self.provider() {
            Provider::OpenVino => match self.session(&bytes, Some(self.openvino())) {
                Ok(session) => Ok(session),
                Err(e) => {
                    self.fall_back(name, e.to_string());
                    self.session(&bytes, None)
                }
            },
            Provider::Cpu => self.session(&bytes, None),
        }
        .map_err(|e| RuntimeError::ModelLoad {
            name: name.into(),
            reason: e.to_string(),
        })?;
        check_signature(name, spec, &session)?;
        Ok(session)
    }

    fn openvino(&self) -> ExecutionProviderDispatch {
        OpenVINO::default()
            .with_device_type(&self.device)
            .with_num_threads(self.threads)
            .build()
            .error_on_failure()
    }

    /// One session with the configured threading; on `provider`, if given, else on the CPU
    /// provider.
    fn session(
        &self,
        bytes: &[u8],
        provider: Option<ExecutionProviderDispatch>,
    ) -> Result<Session, ort::Error> {
        // OpenVINO compiles the graph itself; ONNX Runtime's fusions would turn nodes into
        // contrib operators OpenVINO does not know, splitting the graph between providers.
        let level = if provider.is_some() {
            GraphOptimizationLevel::Disable
        } else {
            GraphOptimizationLevel::Level3
        };
        let mut builder = Session::builder(&self.env)?
            .with_optimization_level(level)?
            .with_intra_threads(self.threads)?
            .with_intra_op_spinning(self.spinning)?;
        if let Some(provider) = provider {
            builder = builder.with_execution_providers([provider])?;
        }
        builder.commit_from_memory(bytes)
    }
}

fn check_signature(name: &str, spec: &ModelSpec, session: &Session) -> Result<(), RuntimeError> {
    let mismatch = |detail: String| RuntimeError::ModelShape {
        name: name.into(),
        detail,
    };
    for (kind, want, have) in [
        ("input", &spec.inputs, session.inputs()),
        ("output", &spec.outputs, session.outputs()),
    ] {
        if want.len() != have.len() {
            return Err(mismatch(format!(
                "has {} {kind}s, expected {}",
                have.len(),
                want.len()
            )));
        }
        for (w, h) in want.iter().zip(have) {
            let shape: Vec<i64> = match h.dtype() {
                ValueType::Tensor { shape, .. } => shape.iter().copied().collect(),
                other => {
                    return Err(mismatch(format!(
                        "{kind} {} is {other}, expected a tensor",
                        h.name()
                    )));
                }
            };
            if h.name() != w.name || shape != w.shape {
                return Err(mismatch(format!(
                    "{kind} {} has shape {:?}, expected {} {:?}",
                    h.name(),
                    shape,
                    w.name,
                    w.shape
                )));
            }
        }
    }
    Ok(())
}

/// The folder holding the ONNX files.
#[derive(Debug, Clone)]
pub struct ModelsDir {
    pub dir: PathBuf,
}

impl ModelsDir {
    pub fn locate(cfg: &ModelsConfig) -> Result<Self, RuntimeError> {
        let mut candidates = Vec::new();
        if let Some(dir) = &cfg.dir {
            candidates.push(dir.clone());
        } else {
            if let Some(d) = std::env::var_os("MIRRORSIGHT_MODELS_DIR") {
                candidates.push(PathBuf::from(d));
            }
            candidates.push(PathBuf::from("models"));
            candidates.push(PathBuf::from("/usr/share/mirrorsight/models"));
            candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
        }
        candidates
            .iter()
            .find(|d| d.join("manifest.json").is_file() || d.join("pose_detection.onnx").is_file())
            .map(|dir| Self { dir: dir.clone() })
            .ok_or_else(|| RuntimeError::ModelsDirMissing {
                looked: candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    pub fn spec(&self, name: &str) -> Result<&'static ModelSpec, RuntimeError> {
        manifest()?
            .models
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| RuntimeError::UnknownModel(name.into()))
    }
}
