//! Test helpers shared by the workspace's tests (dev-dependency only): where the committed fixtures are,
//! a loader for the golden tensors written by `fixtures/gen/make_fixtures.py`, and the tolerance checks of
//! the parity contract, defined once.

pub mod hostile;
pub mod index_suite;
pub mod server;
pub mod synth;
pub mod weaviate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

/// `fixtures/` at the workspace root.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").canonicalize().expect("fixtures/ exists")
}

/// The tiny random ColQwen2.5 checkpoint (base, colqwen2.5-base layout).
pub fn tiny_base() -> PathBuf {
    fixtures_dir().join("tiny/colqwen2.5-tiny-base")
}

/// The tiny LoRA adapter (vidore adapter layout), whose `base_model_name_or_path` is the sibling base.
pub fn tiny_adapter() -> PathBuf {
    fixtures_dir().join("tiny/colqwen2.5-tiny-v0.2")
}

/// `fixtures/tiny/golden/` (the ColQwen2.5 golden set).
pub fn golden_dir() -> PathBuf {
    fixtures_dir().join("tiny/golden")
}

/// `fixtures/tiny/NAME`: a tiny checkpoint or another family's golden set (`golden-qwen3`, …).
pub fn tiny(name: &str) -> PathBuf {
    fixtures_dir().join("tiny").join(name)
}

/// One input image of the golden set.
#[derive(Debug, Clone, Deserialize)]
pub struct GoldenImage {
    /// PNG path relative to the golden folder.
    pub file: String,
    /// Original width.
    pub width: usize,
    /// Original height.
    pub height: usize,
    /// Target width after smart_resize.
    pub resized_width: usize,
    /// Target height after smart_resize.
    pub resized_height: usize,
    /// Already at its target size (no resampling).
    pub presized: bool,
}

/// `golden/manifest.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    /// Reference package versions.
    pub versions: HashMap<String, String>,
    /// Input images.
    pub images: Vec<GoldenImage>,
    /// Query strings.
    pub queries: Vec<String>,
    /// `max_pixels` in force (the ColQwen2.5 set; the others state their preprocessor whole).
    #[serde(default)]
    pub max_pixels: usize,
}

/// Reads the ColQwen2.5 manifest.
pub fn manifest() -> Manifest {
    Manifest::read(&golden_dir())
}

impl Manifest {
    /// Reads `DIR/manifest.json`.
    pub fn read(dir: &Path) -> Self {
        let p = dir.join("manifest.json");
        serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }
}

/// A golden safetensors file.
pub struct Golden {
    tensors: HashMap<String, Tensor>,
    name: String,
}

impl Golden {
    /// Loads `golden/<name>.safetensors`.
    pub fn load(name: &str) -> Self {
        Self::load_from(&golden_dir(), name)
    }

    /// Loads `DIR/<name>.safetensors`.
    pub fn load_from(dir: &Path, name: &str) -> Self {
        let p = dir.join(format!("{name}.safetensors"));
        let tensors = candle_core::safetensors::load(&p, &Device::Cpu)
            .unwrap_or_else(|e| panic!("cannot load {}: {e}", p.display()));
        Self { tensors, name: name.into() }
    }

    /// Tensor by key; panics naming the key if absent.
    pub fn tensor(&self, key: &str) -> &Tensor {
        self.tensors.get(key).unwrap_or_else(|| panic!("{}.safetensors has no {key}", self.name))
    }

    /// Whether a key exists.
    pub fn has(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// f32 values, flattened, and the shape.
    pub fn f32(&self, key: &str) -> (Vec<f32>, Vec<usize>) {
        let t = self.tensor(key);
        let v = t.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1()).expect("f32 tensor");
        (v, t.dims().to_vec())
    }

    /// Integer values, flattened, and the shape.
    pub fn i64(&self, key: &str) -> (Vec<i64>, Vec<usize>) {
        let t = self.tensor(key);
        let v = t.to_dtype(DType::I64).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1()).expect("int tensor");
        (v, t.dims().to_vec())
    }
}

/// Tolerance of one comparison: per-row cosine floor and max absolute difference.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// Minimum cosine similarity of each row with its reference row.
    pub min_cos: f64,
    /// Maximum absolute difference of any element.
    pub max_abs: f64,
}

/// The f32 CPU parity bound of the model issue: cosine ≥ 0.9999, |Δ| ≤ 1e-4.
pub const F32_PARITY: Tolerance = Tolerance { min_cos: 0.9999, max_abs: 1e-4 };

/// What a comparison measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Diff {
    /// Smallest per-row cosine.
    pub min_cos: f64,
    /// Largest absolute difference.
    pub max_abs: f64,
}

/// Compares two `[rows, dim]` matrices row by row.
pub fn compare_rows(ours: &[f32], theirs: &[f32], dim: usize) -> Diff {
    assert_eq!(ours.len(), theirs.len(), "lengths differ: ours {} vs reference {}", ours.len(), theirs.len());
    let mut d = Diff { min_cos: 1.0, max_abs: 0.0 };
    for (a, b) in ours.chunks(dim).zip(theirs.chunks(dim)) {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let cos = if na == 0.0 && nb == 0.0 { 1.0 } else { dot / (na * nb).max(1e-30) };
        d.min_cos = d.min_cos.min(cos);
        for (x, y) in a.iter().zip(b) {
            let diff = (*x as f64 - *y as f64).abs();
            if diff.is_nan() || diff > d.max_abs {
                d.max_abs = if diff.is_nan() { f64::INFINITY } else { diff };
            }
        }
    }
    d
}

/// Asserts `compare_rows` within `tol`, naming `what` on failure; returns the measured diff.
pub fn assert_rows_close(what: &str, ours: &[f32], theirs: &[f32], dim: usize, tol: Tolerance) -> Diff {
    let d = compare_rows(ours, theirs, dim);
    assert!(
        d.min_cos >= tol.min_cos && d.max_abs <= tol.max_abs,
        "{what}: min cosine {:.7} (need ≥ {}), max |Δ| {:.3e} (need ≤ {:.0e})",
        d.min_cos,
        tol.min_cos,
        d.max_abs,
        tol.max_abs
    );
    d
}
