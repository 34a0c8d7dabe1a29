//! Checkpoint tensors: one or several memory-mapped safetensors files, the key renaming of fact sheet §1.1,
//! the LoRA merge of §1.4, and errors that name the file and the tensor.
//!
//! This is a small stand-in for candle's `VarBuilder` (same `pp` prefix idiom) because the errors must say
//! *which file* lacks a tensor or holds a wrong shape, and because adapter tensors are merged on the way in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use crate::config::AdapterConfig;
use crate::error::{Error, Result};
use crate::ops::Ops;
use crate::profile::Profiling;

/// The module name of the language model in every family's renaming (`language_model.*`).
const TEXT_TOWER: &str = "language_model";
/// The module name every family's renaming gives its vision tower.
pub(crate) const VISION_TOWER: &str = "visual";

/// How a family maps on-disk tensor names to its module names (its `_checkpoint_conversion_mapping`).
pub(crate) type Rename = fn(&str) -> String;

/// `disk_key` with the first matching prefix of `rules` (`(from, to)`, tried in order) replaced.
pub(crate) fn rename(disk_key: &str, rules: &[(&str, &str)]) -> String {
    for (from, to) in rules {
        if let Some(rest) = disk_key.strip_prefix(from) {
            return format!("{to}{rest}");
        }
    }
    disk_key.to_string()
}

/// A stored tensor's little-endian bytes as f32, converted on all cores (bf16 and f16 widen exactly).
fn host_f32(bytes: &[u8], stored: DType) -> Result<Vec<f32>> {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 16;
    let elem = stored.size_in_bytes();
    let n = bytes.len() / elem;
    let mut out = vec![0f32; n];
    let mut widen = |f: fn(&[u8]) -> f32| {
        out.par_chunks_mut(CHUNK).zip(bytes.par_chunks(CHUNK * elem)).for_each(|(o, b)| {
            o.iter_mut().zip(b.chunks_exact(elem)).for_each(|(o, b)| *o = f(b));
        });
    };
    match stored {
        DType::BF16 => widen(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        DType::F16 => widen(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
        DType::F32 => widen(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        other => {
            // Anything else (never in a ColQwen checkpoint) through candle's own conversion.
            let t = Tensor::from_raw_buffer(bytes, other, &[n], &Device::Cpu)?.to_dtype(DType::F32)?;
            return Ok(t.to_vec1()?);
        }
    }
    Ok(out)
}

/// Where a tensor lives: file index and its on-disk name.
#[derive(Clone)]
struct Entry {
    file: usize,
    disk_name: String,
}

/// One LoRA pair for a module (names after renaming, without `.weight`).
struct LoraPair {
    a: Entry,
    b: Entry,
}

struct Store {
    files: Vec<(PathBuf, MmapedSafetensors)>,
    /// The ops of the language model (`language_model.*`), which may differ from the rest's: see [`Weights::pp`].
    text_ops: Ops,
    /// The 8-bit weight cache of this checkpoint, when the language model runs [`Ops::CpuQ8`].
    q8: Option<crate::quant::Cache>,
    tensors: HashMap<String, Entry>,
    adapter: Option<Adapter>,
    /// Module names whose weight was loaded, to prove every adapter pair found its module.
    used: std::sync::Mutex<std::collections::HashSet<String>>,
}

struct Adapter {
    config: AdapterConfig,
    path: PathBuf,
    files: Vec<(PathBuf, MmapedSafetensors)>,
    pairs: HashMap<String, LoraPair>,
    replacements: HashMap<String, Entry>,
}

/// Tensor source with a name prefix, like candle's `VarBuilder::pp`. Like the device and dtype a
/// `VarBuilder` carries, it also carries what every layer constructor needs besides tensors: the ops the model
/// runs ([`Ops`], chosen once at load) and the profiling slot its stages report to.
#[derive(Clone)]
pub(crate) struct Weights {
    store: Arc<Store>,
    prefix: String,
    dtype: DType,
    device: Device,
    ops: Ops,
    profiling: Profiling,
}

fn open(path: &Path) -> Result<MmapedSafetensors> {
    if !path.exists() {
        return Err(Error::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "file not found")));
    }
    // SAFETY: the file is mapped read-only; like every mmap loader we rely on nobody truncating it while we run.
    unsafe { MmapedSafetensors::new(path) }.map_err(|source| Error::Safetensors { path: path.into(), source })
}

fn index_files(files: &[(PathBuf, MmapedSafetensors)], rename: impl Fn(&str) -> String) -> HashMap<String, Entry> {
    let mut map = HashMap::new();
    for (i, (_, st)) in files.iter().enumerate() {
        for (name, _) in st.tensors() {
            map.insert(rename(&name), Entry { file: i, disk_name: name });
        }
    }
    map
}

impl Weights {
    /// Maps the base checkpoint files and, if given, the adapter (`adapter_model.safetensors` + config), their
    /// tensor names mapped by the family's `rename`, for layers in `dtype` on `device` that run `ops` (the
    /// language model: `text_ops`) and report to `profiling`. With `text_ops` [`Ops::CpuQ8`], the 8-bit weights
    /// are cached in `cache_dir` (`None`: quantized at every load).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        files: &[PathBuf],
        rename: Rename,
        adapter: Option<(&Path, AdapterConfig)>,
        dtype: DType,
        device: &Device,
        (ops, text_ops): (&Ops, &Ops),
        cache_dir: Option<&Path>,
        profiling: &Profiling,
    ) -> Result<Self> {
        let q8 = matches!(text_ops, Ops::CpuQ8).then(|| {
            let mut sources: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
            sources.extend(adapter.as_ref().map(|(p, _)| *p));
            let options = adapter.as_ref().map(|(_, c)| format!("{c:?}")).unwrap_or_default();
            crate::quant::Cache::open(cache_dir, &sources, &options)
        });
        let files: Vec<_> = files.iter().map(|p| Ok((p.clone(), open(p)?))).collect::<Result<_>>()?;
        let tensors = index_files(&files, rename);
        let adapter = adapter.map(|(path, config)| Adapter::open(path, config, rename)).transpose()?;
        Ok(Self {
            store: Arc::new(Store {
                files,
                text_ops: text_ops.clone(),
                q8,
                tensors,
                adapter,
                used: Default::default(),
            }),
            prefix: String::new(),
            dtype,
            device: device.clone(),
            ops: ops.clone(),
            profiling: profiling.clone(),
        })
    }

    /// The ops the layers run.
    pub(crate) fn ops(&self) -> &Ops {
        &self.ops
    }

    /// The profiling slot the layers' stages report to.
    pub(crate) fn profiling(&self) -> &Profiling {
        &self.profiling
    }

    /// A view one level down: `pp("layers").pp(3)` → `layers.3.`. The view of the language model
    /// (`language_model`, the module name every family's renaming gives its text tower) carries the text
    /// tower's ops, which differ from the rest's with 8-bit text weights (`Ops::CpuQ8`).
    pub(crate) fn pp(&self, name: impl std::fmt::Display) -> Self {
        let name = name.to_string();
        if self.prefix.is_empty() && name == TEXT_TOWER {
            return Self { prefix: name, ops: self.store.text_ops.clone(), ..self.clone() };
        }
        let prefix = if self.prefix.is_empty() { name } else { format!("{}.{name}", self.prefix) };
        Self { prefix, ..self.clone() }
    }

    /// The module name of this view (its prefix).
    pub(crate) fn name(&self) -> &str {
        &self.prefix
    }

    /// The 8-bit (Q8_0) weight `key` of shape `[rows, cols]` stacked from the weights `parts` (full names under
    /// the root): from the cache when it holds it, else quantized from what `build` loads. Marks `parts` used,
    /// as loading them would.
    pub(crate) fn q8(
        &self,
        key: &str,
        parts: &[String],
        shape: (usize, usize),
        build: impl FnOnce() -> Result<Tensor>,
    ) -> Result<Arc<candle_core::quantized::QTensor>> {
        let Some(cache) = &self.store.q8 else {
            return Err(candle_core::Error::Msg(format!("{key}: 8-bit weights outside the 8-bit text tower")).into());
        };
        if let Ok(mut used) = self.store.used.lock() {
            used.extend(parts.iter().cloned());
        }
        cache.get_or_build(key, shape, build)
    }

    /// Ends the load: writes the 8-bit weight cache when this load had to build entries of it, and has the 8-bit
    /// weights re-tiled for candle's kernels now rather than in the first query ([`crate::quant::prepack`]).
    pub(crate) fn finish(&self) -> Result<()> {
        match &self.store.q8 {
            Some(cache) => crate::quant::prepack(&cache.finish()),
            None => Ok(()),
        }
    }

    /// The 8-bit weight cache file (`None` without 8-bit weights or a cache folder).
    pub(crate) fn q8_cache_path(&self) -> Option<&Path> {
        self.store.q8.as_ref().and_then(|c| c.path())
    }

    pub(crate) fn full(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) }
    }

    pub(crate) fn files_list(&self) -> String {
        let names: Vec<_> = self.store.files.iter().map(|(p, _)| p.display().to_string()).collect();
        names.join(", ")
    }

    /// The stored tensor of `entry`, checked against the expected `shape`, with its dtype.
    fn checked_view<'a>(
        files: &'a [(PathBuf, MmapedSafetensors)],
        entry: &Entry,
        shape: &[usize],
    ) -> Result<(safetensors::tensor::TensorView<'a>, DType)> {
        let (path, st) = &files[entry.file];
        let view = st.get(&entry.disk_name).map_err(|source| Error::Safetensors { path: path.clone(), source })?;
        if view.shape() != shape {
            return Err(Error::ShapeMismatch {
                path: path.clone(),
                name: entry.disk_name.clone(),
                expected: shape.to_vec(),
                actual: view.shape().to_vec(),
            });
        }
        let stored: DType =
            view.dtype().try_into().map_err(|source| Error::Safetensors { path: path.clone(), source })?;
        Ok((view, stored))
    }

    fn load_entry(
        &self,
        files: &[(PathBuf, MmapedSafetensors)],
        entry: &Entry,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        let (view, stored) = Self::checked_view(files, entry, shape)?;
        if self.device.is_cpu() && dtype == DType::F32 {
            // The CPU's f32 model: one parallel pass from the mapped file into the tensor's own buffer.
            return Ok(Tensor::from_vec(host_f32(view.data(), stored)?, shape, &self.device)?);
        }
        // Straight to the device in the stored dtype, then cast there (no host-side f32 detour).
        let t = Tensor::from_raw_buffer(view.data(), stored, shape, &self.device)?;
        Ok(t.to_dtype(dtype)?)
    }

    /// The stored shape of `name` under this prefix (an adapter's replacement first), `None` when no file has
    /// it: for sizes a config does not state (ColQwen3's head width is fixed by its weight, not its config).
    pub(crate) fn shape_of(&self, name: &str) -> Result<Option<Vec<usize>>> {
        let full = self.full(name);
        let adapter = self.store.adapter.as_ref();
        let found = adapter
            .and_then(|a| a.replacements.get(&full).map(|e| (&a.files, e)))
            .or_else(|| self.store.tensors.get(&full).map(|e| (&self.store.files, e)));
        let Some((files, entry)) = found else { return Ok(None) };
        let (path, st) = &files[entry.file];
        let view = st.get(&entry.disk_name).map_err(|source| Error::Safetensors { path: path.clone(), source })?;
        Ok(Some(view.shape().to_vec()))
    }

    /// Loads `prefix.name` with the expected shape in the model dtype, with the adapter merged in when the
    /// adapter targets this module (fact sheet §1.4: `W' = W + s·B·A`, computed in f32, rounded once).
    pub(crate) fn get(&self, shape: &[usize], name: &str) -> Result<Tensor> {
        let full = self.full(name);
        if let Ok(mut used) = self.store.used.lock() {
            used.insert(full.clone());
        }
        if let Some(adapter) = &self.store.adapter
            && let Some(entry) = adapter.replacements.get(&full)
        {
            return self.load_entry(&adapter.files, entry, shape, self.dtype);
        }
        let entry = self
            .store
            .tensors
            .get(&full)
            .ok_or_else(|| Error::MissingTensor { name: full.clone(), files: self.files_list() })?;
        let module = full.strip_suffix(".weight");
        let pair = module.and_then(|m| self.store.adapter.as_ref().and_then(|a| a.pairs.get(m).map(|p| (a, m, p))));
        let Some((adapter, module, pair)) = pair else {
            return self.load_entry(&self.store.files, entry, shape, self.dtype);
        };
        let (rank, _) = adapter.config.rank_alpha(module);
        let (out_dim, in_dim) = (shape[0], shape[1]);
        let a = self.load_entry(&adapter.files, &pair.a, &[rank, in_dim], DType::F32)?;
        let b = self.load_entry(&adapter.files, &pair.b, &[out_dim, rank], DType::F32)?;
        let scale = adapter.config.scaling(module);
        if self.device.is_cpu() && self.dtype == DType::F32 {
            return self.merge_on_host(entry, shape, &a, &b, scale as f32);
        }
        // The result is allocated first and filled in row blocks whose f32 temporaries stay ≤ 16 MiB: merging a
        // whole [11008, 2048] module at once leaves 90 MB f32 blocks behind in the GPU's stream-ordered pool, and
        // the weights allocated into them afterwards pin those blocks for the life of the process.
        let merged = Tensor::zeros((out_dim, in_dim), self.dtype, &self.device)?;
        let rows = ((4 << 20) / in_dim.max(1)).clamp(1, out_dim.max(1));
        for r0 in (0..out_dim).step_by(rows) {
            let n = rows.min(out_dim - r0);
            let w = self.load_rows(&self.store.files, entry, shape, r0, n)?.to_dtype(DType::F32)?;
            let delta = (b.narrow(0, r0, n)?.matmul(&a)? * scale)?;
            merged.slice_set(&(w + delta)?.to_dtype(self.dtype)?, 0, r0)?;
        }
        Ok(merged)
    }

    /// The LoRA merge for the CPU's f32 model, in place: `W` converted once into the result's buffer (all cores),
    /// then `s·(B·A)` added block by block — the same f32 operations in the same order as the device path
    /// (`W + (B·A)·s`, nothing to round at f32), with two passes over the weights instead of six single-threaded
    /// ones (it was most of the 31–36 s start-up of the 3B model on 2 cores).
    fn merge_on_host(&self, entry: &Entry, shape: &[usize], a: &Tensor, b: &Tensor, scale: f32) -> Result<Tensor> {
        let (view, stored) = Self::checked_view(&self.store.files, entry, shape)?;
        let (out_dim, in_dim) = (shape[0], shape[1]);
        let mut out = host_f32(view.data(), stored)?;
        let rows = ((4 << 20) / in_dim.max(1)).clamp(1, out_dim.max(1));
        for r0 in (0..out_dim).step_by(rows) {
            let n = rows.min(out_dim - r0);
            let delta = b.narrow(0, r0, n)?.matmul(a)?.contiguous()?;
            let (storage, layout) = delta.storage_and_layout();
            let candle_core::Storage::Cpu(cpu) = &*storage else {
                unreachable!("a CPU tensor's storage is on the CPU")
            };
            let d = &cpu.as_slice::<f32>()?[layout.start_offset()..layout.start_offset() + n * in_dim];
            use rayon::prelude::*;
            out[r0 * in_dim..(r0 + n) * in_dim]
                .par_chunks_mut(1 << 14)
                .zip(d.par_chunks(1 << 14))
                .for_each(|(o, d)| o.iter_mut().zip(d).for_each(|(o, d)| *o += d * scale));
        }
        Ok(Tensor::from_vec(out, (out_dim, in_dim), &self.device)?)
    }

    /// Rows `r0..r0+n` of the 2-D tensor of `entry` (expected `shape`), on the device in its stored dtype.
    fn load_rows(
        &self,
        files: &[(PathBuf, MmapedSafetensors)],
        entry: &Entry,
        shape: &[usize],
        r0: usize,
        n: usize,
    ) -> Result<Tensor> {
        let (view, stored) = Self::checked_view(files, entry, shape)?;
        let row_bytes = shape[1] * stored.size_in_bytes();
        let bytes = &view.data()[r0 * row_bytes..(r0 + n) * row_bytes];
        Ok(Tensor::from_raw_buffer(bytes, stored, &[n, shape[1]], &self.device)?)
    }

    /// Checks that every adapter pair found its module: an adapter aimed at modules this model lacks is an
    /// error, not a silent no-op. Call once the whole model is built; modules under `deferred` (a module name,
    /// built later) are not checked: they merge their pairs when they are built.
    pub(crate) fn check_adapter_used(&self, deferred: Option<&str>) -> Result<()> {
        let Some(adapter) = &self.store.adapter else { return Ok(()) };
        let used = self.store.used.lock().map(|u| u.clone()).unwrap_or_default();
        let mut unused: Vec<_> = adapter
            .pairs
            .keys()
            .map(|m| format!("{m}.weight"))
            .chain(adapter.replacements.keys().cloned())
            .filter(|w| !used.contains(w))
            .filter(|w| deferred.is_none_or(|d| !w.starts_with(&format!("{d}."))))
            .collect();
        unused.sort();
        match unused.first() {
            None => Ok(()),
            Some(first) => Err(Error::Adapter {
                path: adapter.path.clone(),
                reason: format!(
                    "{} adapter tensor(s) target modules the model does not have, e.g. {first}",
                    unused.len()
                ),
            }),
        }
    }

    /// Number of LoRA pairs in the adapter (0 without adapter).
    pub(crate) fn lora_pairs(&self) -> usize {
        self.store.adapter.as_ref().map_or(0, |a| a.pairs.len())
    }
}

impl Adapter {
    /// PEFT save format (fact sheet §1.4): keys start with `base_model.model.`; `lora_A`/`lora_B` pairs per
    /// targeted Linear; any other tensor replaces the base tensor of the same name (`modules_to_save`).
    fn open(path: &Path, config: AdapterConfig, rename: Rename) -> Result<Self> {
        let files = vec![(path.to_path_buf(), open(path)?)];
        let strip = |k: &str| {
            let k = k.strip_prefix("base_model.model.").unwrap_or(k);
            let k = k.replace(".modules_to_save.default", "");
            rename(&k)
        };
        let all = index_files(&files, strip);
        let mut a_half: HashMap<String, Entry> = HashMap::new();
        let mut b_half: HashMap<String, Entry> = HashMap::new();
        let mut replacements = HashMap::new();
        for (name, entry) in all {
            let name = name.replace(".default.weight", ".weight");
            if let Some(m) = name.strip_suffix(".lora_A.weight") {
                a_half.insert(m.to_string(), entry);
            } else if let Some(m) = name.strip_suffix(".lora_B.weight") {
                b_half.insert(m.to_string(), entry);
            } else if name.contains("lora_") {
                return Err(Error::Adapter {
                    path: path.into(),
                    reason: format!(
                        "unsupported LoRA tensor {} (LoRA biases, embeddings and DoRA magnitudes are not implemented)",
                        entry.disk_name
                    ),
                });
            } else {
                replacements.insert(name, entry);
            }
        }
        let mut pairs = HashMap::new();
        for (module, a) in a_half {
            let b = b_half.remove(&module).ok_or_else(|| Error::Adapter {
                path: path.into(),
                reason: format!("{module} has lora_A but no lora_B"),
            })?;
            pairs.insert(module, LoraPair { a, b });
        }
        if let Some(module) = b_half.keys().next() {
            return Err(Error::Adapter { path: path.into(), reason: format!("{module} has lora_B but no lora_A") });
        }
        Ok(Self { config, path: path.into(), files, pairs, replacements })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A module wider than one row block (5000 rows of 1024: two blocks) merges to exactly `W + s·B·A` rounded
    /// once, as the whole-matrix formula gives it.
    #[test]
    fn lora_merge_in_row_blocks_equals_the_whole_formula() {
        lora_merge_matches(DType::BF16);
    }

    /// The same for the CPU's f32 model, whose merge runs in place on the host (`merge_on_host`).
    #[test]
    fn lora_merge_on_the_host_equals_the_whole_formula() {
        lora_merge_matches(DType::F32);
    }

    /// An adapter pair of a module built later (the deferred vision tower) is not "unused" at load, and is merged
    /// when that module is built.
    #[test]
    fn adapter_pairs_of_a_deferred_tower_wait_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let dev = Device::Cpu;
        let w = Tensor::ones((8, 32), DType::BF16, &dev).unwrap();
        let (a, b) =
            (Tensor::ones((2, 32), DType::F32, &dev).unwrap(), Tensor::ones((8, 2), DType::F32, &dev).unwrap());
        let (base, adapter) = (dir.path().join("model.safetensors"), dir.path().join("adapter_model.safetensors"));
        let module = "model.visual.blocks.0.mlp.up_proj";
        candle_core::safetensors::save(&HashMap::from([(format!("{module}.weight"), w)]), &base).unwrap();
        let lora = HashMap::from([
            (format!("base_model.model.{module}.lora_A.weight"), a),
            (format!("base_model.model.{module}.lora_B.weight"), b),
        ]);
        candle_core::safetensors::save(&lora, &adapter).unwrap();
        let config: AdapterConfig = serde_json::from_str(r#"{"peft_type": "LORA", "r": 2, "lora_alpha": 2}"#).unwrap();
        let ops = (&Ops::Generic, &Ops::Generic);
        let weights = Weights::open(
            &[base],
            crate::qwen2_5::module_key,
            Some((&adapter, config)),
            DType::F32,
            &dev,
            ops,
            None,
            &Profiling::new(&dev),
        )
        .unwrap();
        assert!(weights.check_adapter_used(None).is_err(), "the vision module was not loaded");
        assert!(weights.check_adapter_used(Some(VISION_TOWER)).is_ok(), "deferred: checked when built");
        let merged = weights.pp(VISION_TOWER).pp("blocks.0.mlp.up_proj").get(&[8, 32], "weight").unwrap();
        // 1 + s·(B·A) = 1 + 1·2.
        assert_eq!(merged.flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![3.0; 8 * 32]);
        assert!(weights.check_adapter_used(None).is_ok());
    }

    fn lora_merge_matches(dtype: DType) {
        let dir = tempfile::tempdir().unwrap();
        let dev = Device::Cpu;
        let (out_dim, in_dim, r) = (5000, 1024, 4);
        let w = Tensor::randn(0f32, 1.0, (out_dim, in_dim), &dev).unwrap().to_dtype(DType::BF16).unwrap();
        let a = Tensor::randn(0f32, 0.1, (r, in_dim), &dev).unwrap();
        let b = Tensor::randn(0f32, 0.1, (out_dim, r), &dev).unwrap();
        let base = dir.path().join("model.safetensors");
        let adapter = dir.path().join("adapter_model.safetensors");
        candle_core::safetensors::save(
            &HashMap::from([("model.layers.0.mlp.up_proj.weight".to_string(), w.clone())]),
            &base,
        )
        .unwrap();
        let lora = HashMap::from([
            ("base_model.model.model.layers.0.mlp.up_proj.lora_A.weight".to_string(), a.clone()),
            ("base_model.model.model.layers.0.mlp.up_proj.lora_B.weight".to_string(), b.clone()),
        ]);
        candle_core::safetensors::save(&lora, &adapter).unwrap();
        let config: AdapterConfig = serde_json::from_str(r#"{"peft_type": "LORA", "r": 4, "lora_alpha": 8}"#).unwrap();
        let weights = Weights::open(
            &[base],
            crate::qwen2_5::module_key,
            Some((&adapter, config)),
            dtype,
            &dev,
            (&Ops::Generic, &Ops::Generic),
            None,
            &Profiling::new(&dev),
        )
        .unwrap();
        let merged = weights.pp("language_model.layers.0.mlp.up_proj").get(&[out_dim, in_dim], "weight").unwrap();
        assert_eq!(merged.dtype(), dtype);
        let expected = (w.to_dtype(DType::F32).unwrap() + (b.matmul(&a).unwrap() * 2.0).unwrap())
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let diff = (merged.to_dtype(DType::F32).unwrap() - expected.to_dtype(DType::F32).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0);
        assert_eq!(weights.lora_pairs(), 1);
        assert!(weights.check_adapter_used(None).is_ok());
    }
}
