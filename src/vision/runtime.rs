//! ONNX Runtime: finding the shared library, and loading models only after proving they are
//! the ones this build was made for (sha256, input and output names and shapes).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::ValueType;
use serde::Deserialize;
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

/// Where the ONNX Runtime library is looked for, in order.
pub fn library_candidates(cfg: &OnnxRuntimeConfig) -> Vec<PathBuf> {
    if let Some(path) = &cfg.library {
        return vec![path.clone()];
    }
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        out.push(PathBuf::from(p));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        out.push(dir.join("libonnxruntime.so"));
    }
    out.push("/usr/local/lib/mirrorsight/libonnxruntime.so".into());
    out.push("/usr/lib/mirrorsight/libonnxruntime.so".into());
    out
}

/// The process-wide ONNX Runtime environment, created on first use.
pub struct Runtime {
    env: ort::environment::Environment,
    pub library: PathBuf,
    threads: usize,
    spinning: bool,
}

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

impl Runtime {
    pub fn get(cfg: &OnnxRuntimeConfig) -> Result<&'static Runtime, RuntimeError> {
        // ONNX Runtime can be loaded once per process; a second config cannot change it.
        let candidates = library_candidates(cfg);
        let Some(library) = candidates.iter().find(|p| p.is_file()).cloned() else {
            let looked = candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(RuntimeError::LibraryMissing { looked });
        };
        let result = RUNTIME.get_or_init(|| {
            let builder = ort::init_from(&library).map_err(|e| e.to_string())?;
            let env = builder
                .with_name("mirrorsight")
                .build()
                .map_err(|e| e.to_string())?;
            Ok(Runtime {
                env,
                library: library.clone(),
                threads: cfg.intra_threads,
                spinning: cfg.spinning,
            })
        });
        result
            .as_ref()
            .map_err(|reason| RuntimeError::LibraryBroken {
                path: library,
                reason: reason.clone(),
            })
    }

    /// Loads a model by manifest name after checking its bytes and tensor signature.
    pub fn load(&self, models: &ModelsDir, name: &str) -> Result<Session, RuntimeError> {
        let spec = models.spec(name)?;
        let path = models.dir.join(&spec.file);
        let bytes = std::fs::read(&path).map_err(|_| RuntimeError::ModelMissing {
            name: name.into(),
            path: path.clone(),
        })?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != spec.sha256 {
            return Err(RuntimeError::ModelChecksum {
                name: name.into(),
                path,
                actual,
                expected: spec.sha256.clone(),
            });
        }
        let load_err = |e: ort::Error| RuntimeError::ModelLoad {
            name: name.into(),
            reason: e.to_string(),
        };
        let session = Session::builder(&self.env)
            .map_err(load_err)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| load_err(e.into()))?
            .with_intra_threads(self.threads)
            .map_err(|e| load_err(e.into()))?
            .with_intra_op_spinning(self.spinning)
            .map_err(|e| load_err(e.into()))?
            .commit_from_memory(&bytes)
            .map_err(load_err)?;
        check_signature(name, spec, &session)?;
        Ok(session)
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
