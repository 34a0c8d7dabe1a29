//! 8-bit weights for the CPU's language model (`TextWeights::Q8`, the CLI's `--dtype q8`): the projections of
//! the text tower held as Q8_0 blocks (32 weights of one row as `i8` with one f16 scale, the GGML format), run
//! by candle's quantized matmul, and a cache of those blocks on disk so that later starts skip the f32 widening,
//! the LoRA merge and the quantization.
//!
//! Why 8 bits, and why only there: a query encode on the CPU reads every text-tower weight once per batch of
//! waiting queries (≈ 2.8 G weights for the 3B model: 11 GB in f32) for a few dozen token rows, so it is bound
//! by memory and by multiply-adds. 8-bit weights are a quarter of the bytes, and `vpdpbusd` (AVX-512 VNNI) does
//! 4× the multiply-adds per instruction. On such CPUs the projections run our own kernel ([`vnni`]: the Q8_0
//! blocks re-tiled at load, activations quantized per 32 values by GGML's rule); elsewhere candle 0.11's
//! quantized matmul over the same blocks (its AVX-VNNI tiles where `in % 256 == 0` and `out % 16 == 0`, else
//! generic dot products). Shapes whose `in` is not a multiple of the 32-weight block ([`fits`]) stay f32. The
//! vision tower stays f32 (queries never run it), as do norms, embeddings and the head.
//!
//! The cache is one GGUF file per checkpoint (the format GGML tools read; candle writes it), named by a hash of
//! the source files' paths and holding their fingerprint (canonical path, size and modification time of every
//! weight file, the adapter and its config, and [`FORMAT`]). A file whose fingerprint differs, that is
//! truncated, or whose entries have other shapes is never trusted: what it lacks is rebuilt from the checkpoint
//! and the whole file rewritten, atomically (a temporary file in the same folder, renamed over the old one), so
//! a reader sees the old file or the new one, never half of one. Failing to write it is a warning, not an
//! error: the model is already loaded.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::quantized::{GgmlDType, GgmlType, QStorage, QTensor, gguf_file, k_quants::BlockQ8_0};
use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

mod vnni;

/// An 8-bit projection as the layers run it: our AVX-512 VNNI tiles ([`vnni`]) where the CPU has those
/// instructions, else candle's quantized matmul over the same Q8_0 blocks (its AVX-VNNI tiles or generic dot
/// products).
pub(crate) enum Q8Matmul {
    Tiles(vnni::Tiles),
    Candle(candle_core::quantized::QMatMul),
}

impl Q8Matmul {
    /// The layer of the Q8_0 weight `q` `[rows, cols]`; on a VNNI CPU ([`vnni::Tiles::pack`] decides) its blocks
    /// are re-tiled now (all cores) and `q` is not kept.
    pub(crate) fn new(q: Arc<QTensor>) -> Result<Self> {
        let (rows, cols) = q.shape().dims2()?;
        if q.dtype() == GgmlDType::Q8_0
            && let Some(tiles) = vnni::Tiles::pack(&q.data()?, rows, cols)
        {
            return Ok(Self::Tiles(tiles));
        }
        Ok(Self::Candle(candle_core::quantized::QMatMul::from_arc(q)?))
    }

    /// `[N, in]` f32 → `[N, out]` f32.
    pub(crate) fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        use candle_core::Module;
        match self {
            Self::Candle(q) => q.forward(&xs.contiguous()?),
            Self::Tiles(t) => {
                let xs = xs.to_dtype(DType::F32)?.contiguous()?;
                let (m, k) = xs.dims2()?;
                if k != t.cols() {
                    candle_core::bail!("8-bit projection of width {} given rows of width {k}", t.cols())
                }
                let (storage, layout) = xs.storage_and_layout();
                let candle_core::Storage::Cpu(cpu) = &*storage else {
                    candle_core::bail!("8-bit weights run on the CPU")
                };
                let x = &cpu.as_slice::<f32>()?[layout.start_offset()..];
                let ys = t.matmul(&x[..xs.elem_count()], m);
                Tensor::from_vec(ys, (m, t.rows()), &Device::Cpu)
            }
        }
    }
}

/// Version of what a cache entry means (key names, stacking order, block format): bumped when that changes, so
/// that caches of an older layout are rebuilt instead of trusted.
const FORMAT: &str = "colqwen-q8 1";

/// GGUF metadata key of the fingerprint.
const FINGERPRINT_KEY: &str = "colqwen.fingerprint";

/// Weights per Q8_0 block (one f16 scale each).
const BLOCK: usize = 32;

/// Whether a `[rows, cols]` projection runs in 8 bits: `cols` a multiple of the Q8_0 block. candle runs its x86
/// tile kernels when also `cols % 256 == 0` and `rows % 16 == 0` ([`tiled`]), else its generic per-row Q8_0 dot
/// products (slower than the tiles, but only the tiny test fixtures have such shapes).
pub(crate) fn fits(rows: usize, cols: usize) -> bool {
    rows > 0 && cols > 0 && cols.is_multiple_of(BLOCK)
}

/// Whether candle's x86 8-bit tile kernels take a `[rows, cols]` weight (with VNNI; see [`kernel_level`]).
pub(crate) fn tiled(rows: usize, cols: usize) -> bool {
    fits(rows, cols) && rows.is_multiple_of(16) && cols.is_multiple_of(256)
}

/// The 8-bit kernel level of this CPU, for the load log: candle picks AVX-512 VNNI, else AVX-VNNI, and without
/// either runs Q8_0 through generic AVX2 dot products (correct, but no faster than f32).
pub(crate) fn kernel_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if vnni::available() {
            return "avx512-vnni (colqwen's tiles)";
        }
        if std::arch::is_x86_feature_detected!("avxvnni") {
            return "avx-vnni";
        }
    }
    "generic (no VNNI: 8-bit weights save memory, not time)"
}

/// `w` (`[rows, cols]`, any float dtype, on the CPU) as Q8_0 blocks, rows quantized in parallel (candle's
/// `QTensor::quantize` runs on one thread: 3 s per GB of f32 weights). Each block is GGML's `quantize_row_q8_0`:
/// scale `max|x| / 127`, values rounded to nearest.
pub(crate) fn quantize(w: &Tensor) -> Result<QTensor> {
    use rayon::prelude::*;
    let (rows, cols) = w.dims2()?;
    let w = w.to_dtype(DType::F32)?.contiguous()?;
    let (storage, layout) = w.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return Err(candle_core::Error::Msg("8-bit weights are built on the CPU".into()).into());
    };
    let data = &cpu.as_slice::<f32>()?[layout.start_offset()..layout.start_offset() + rows * cols];
    let per_row = cols / BLOCK;
    let mut blocks = vec![BlockQ8_0::zeros(); rows * per_row];
    // 64 rows per task: ≥ 0.5 MB of f32 each, few enough tasks to keep rayon's overhead out of the picture.
    blocks.par_chunks_mut(64 * per_row).zip(data.par_chunks(64 * cols)).for_each(|(b, x)| BlockQ8_0::from_float(x, b));
    Ok(QTensor::new(QStorage::Cpu(Box::new(blocks)), (rows, cols))?)
}

/// Has candle re-tile every weight of `weights` for its x86 kernels now, on all cores, instead of inside the
/// first query: a one-row product through each weight (the re-tiling runs on one thread per weight, on first use;
/// 3 GB of tiles for the 3B model), where candle's kernels run them: CPUs with AVX-VNNI but not AVX-512 VNNI.
/// With AVX-512 VNNI the layers run our tiles, built as they were loaded, and this does nothing; without VNNI
/// candle does not re-tile Q8_0 and this only reads the weights once.
pub(crate) fn prepack(weights: &[Arc<QTensor>]) -> Result<()> {
    use candle_core::Module;
    use rayon::prelude::*;
    if vnni::available() {
        // The layers run our own tiles (built as they were loaded); candle's would be 3 GB more, never read.
        return Ok(());
    }
    let t = std::time::Instant::now();
    weights.par_iter().try_for_each(|q| -> Result<()> {
        let (rows, cols) = q.shape().dims2()?;
        if !tiled(rows, cols) {
            return Ok(());
        }
        let x = Tensor::zeros((1, cols), DType::F32, &Device::Cpu)?;
        candle_core::quantized::QMatMul::from_arc(q.clone())?.forward(&x)?;
        Ok(())
    })?;
    tracing::info!(weights = weights.len(), seconds = t.elapsed().as_secs_f64(), "8-bit weights re-tiled");
    Ok(())
}

/// One load's view of the cache: what a valid file holds, and every entry of this load (to rewrite the file when
/// any had to be built).
pub(crate) struct Cache {
    /// The cache file; `None`: no cache folder, quantize at every load.
    path: Option<PathBuf>,
    fingerprint: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The mapped file when its fingerprint matched.
    found: Option<Found>,
    /// Every entry of this load, in load order.
    entries: Vec<(String, Arc<QTensor>)>,
    /// Some entry was built from the checkpoint (no file, another fingerprint, a missing or bad entry).
    built: usize,
}

struct Found {
    map: Arc<memmap2::Mmap>,
    content: gguf_file::Content,
}

/// Q8_0 blocks read in place from the mapped cache file: the storage of a cached weight, so a start from the cache
/// copies nothing (candle copies a `QStorage::from_data` into a fresh vector, 3 GB for the 3B model, and its x86
/// kernels copy the blocks once more into their own tiles on first use, after which these are never read again).
struct MappedQ8 {
    map: Arc<memmap2::Mmap>,
    /// Byte offset of the first block in `map` (2-byte aligned, checked by [`Found::entry`]).
    start: usize,
    blocks: usize,
}

impl MappedQ8 {
    fn blocks(&self) -> &[BlockQ8_0] {
        let bytes = &self.map[self.start..self.start + self.blocks * std::mem::size_of::<BlockQ8_0>()];
        // SAFETY: `BlockQ8_0` is `repr(C)` (an f16 and 32 i8, 34 bytes, alignment 2) and valid for any bits; the
        // range lies inside the map and is 2-byte aligned (both checked in `Found::entry`); the map is read-only
        // and lives as long as `self`. The file is only ever replaced by a rename (a new inode), never rewritten
        // in place, so its pages do not change under the map.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<BlockQ8_0>(), self.blocks) }
    }
}

impl candle_core::quantized::QuantizedType for MappedQ8 {
    fn dtype(&self) -> GgmlDType {
        GgmlDType::Q8_0
    }
    fn matmul_t(&self, mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) -> candle_core::Result<()> {
        candle_core::quantized::k_quants::matmul(mkn, lhs, self.blocks(), dst)
    }
    fn matmul_t_f16(
        &self,
        mkn: (usize, usize, usize),
        lhs: &[half::f16],
        dst: &mut [half::f16],
    ) -> candle_core::Result<()> {
        candle_core::quantized::k_quants::matmul_f16(mkn, lhs, self.blocks(), dst)
    }
    fn embedding(&self, _: &[u32], _: usize, _: usize) -> candle_core::Result<candle_core::CpuStorage> {
        candle_core::bail!("8-bit projection weights are not an embedding table")
    }
    fn dequantize(&self, elem_count: usize) -> candle_core::Result<candle_core::CpuStorage> {
        let mut ys = vec![0f32; elem_count];
        BlockQ8_0::to_float(self.blocks(), &mut ys);
        Ok(candle_core::CpuStorage::F32(ys))
    }
    fn storage_size_in_bytes(&self) -> usize {
        self.blocks * std::mem::size_of::<BlockQ8_0>()
    }
    fn as_ptr(&self) -> *const u8 {
        self.blocks().as_ptr().cast()
    }
    fn block_size(&self) -> usize {
        BLOCK
    }
    /// Never called: candle quantizes only into storage it allocated itself (`QTensor::quantize`), and this
    /// storage is read-only. Left unchanged.
    fn from_float(&mut self, _: &[f32]) {}
    /// As [`Self::from_float`].
    fn from_float_imatrix(&mut self, _: &[f32], _: &[f32], _: usize) {}
    fn size(&self) -> usize {
        self.storage_size_in_bytes()
    }
}

impl Cache {
    /// The cache of the checkpoint made of `sources` (its weight files, adapter and adapter config) in `dir`.
    /// Never fails: a file that cannot be read or does not match is a miss (logged), rebuilt at [`Cache::finish`].
    /// `options` is whatever else changes the weights (the adapter's config).
    pub(crate) fn open(dir: Option<&Path>, sources: &[&Path], options: &str) -> Self {
        let canonical: Vec<PathBuf> =
            sources.iter().map(|p| p.canonicalize().unwrap_or_else(|_| p.to_path_buf())).collect();
        let mut fingerprint = format!("{FORMAT}\n{options}");
        for p in &canonical {
            let (len, mtime) = std::fs::metadata(p)
                .map(|m| {
                    let t = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                    (m.len(), t.map_or(0, |t| t.as_nanos()))
                })
                .unwrap_or((0, 0));
            fingerprint.push_str(&format!("\n{} {len} {mtime}", p.display()));
        }
        let path = dir.map(|d| {
            let names: Vec<String> = canonical.iter().map(|p| p.display().to_string()).collect();
            d.join(format!("q8-{:016x}.gguf", fnv1a(names.join("\n").as_bytes())))
        });
        let found = path.as_deref().and_then(|p| match Found::open(p, &fingerprint) {
            Ok(found) => found,
            Err(e) => {
                // Unreadable (truncated header, not GGUF): rebuilt and replaced like a stale one.
                tracing::warn!(cache = %p.display(), error = %e, "8-bit weight cache unreadable: rebuilding it");
                None
            }
        });
        Self { path, fingerprint, state: Mutex::new(State { found, ..Default::default() }) }
    }

    /// The Q8_0 weight `key` of shape `[rows, cols]`: from the cache file when it holds a valid entry, else
    /// quantized from the dense weight that `build` loads.
    pub(crate) fn get_or_build(
        &self,
        key: &str,
        (rows, cols): (usize, usize),
        build: impl FnOnce() -> Result<Tensor>,
    ) -> Result<Arc<QTensor>> {
        let cached = {
            let state = self.state.lock().map_err(|_| poisoned())?;
            state.found.as_ref().and_then(|f| f.entry(key, (rows, cols)))
        };
        let (q, built) = match cached {
            Some(q) => (q, false),
            None => (quantize(&build()?)?, true),
        };
        let q = Arc::new(q);
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        state.built += usize::from(built);
        state.entries.push((key.to_string(), q.clone()));
        Ok(q)
    }

    /// Ends the load: drops this load's handle on the file (entries read from it keep their pages mapped), and
    /// when any entry was built, writes every entry of this load to a new file that replaces the old one
    /// atomically (a failed write is logged, not returned). Returns the weights of this load, for [`prepack`].
    pub(crate) fn finish(&self) -> Vec<Arc<QTensor>> {
        let Ok(mut state) = self.state.lock() else { return Vec::new() };
        let hit = state.found.take().is_some();
        let entries = std::mem::take(&mut state.entries);
        let built = std::mem::take(&mut state.built);
        drop(state);
        match &self.path {
            Some(path) if !entries.is_empty() && built == 0 => {
                tracing::info!(cache = %path.display(), entries = entries.len(), "8-bit weights from the cache");
            }
            Some(path) if !entries.is_empty() => {
                let t = std::time::Instant::now();
                match write_atomically(path, &self.fingerprint, &entries) {
                    Ok(bytes) => tracing::info!(
                        cache = %path.display(), entries = entries.len(), rebuilt = built, stale = hit, bytes,
                        seconds = t.elapsed().as_secs_f64(), "wrote the 8-bit weight cache"
                    ),
                    Err(e) => {
                        tracing::warn!(cache = %path.display(), error = %e, "cannot write the 8-bit weight cache")
                    }
                }
            }
            _ => {}
        }
        entries.into_iter().map(|(_, q)| q).collect()
    }

    /// The cache file's path (`None` without a cache folder).
    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl Found {
    /// The file at `path` when it exists and carries `fingerprint`; `Ok(None)` when it does not exist or belongs
    /// to other files (an older checkpoint, another layout).
    fn open(path: &Path, fingerprint: &str) -> std::result::Result<Option<Self>, String> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let content = gguf_file::Content::read(&mut std::io::BufReader::new(&file)).map_err(|e| e.to_string())?;
        match content.metadata.get(FINGERPRINT_KEY).and_then(|v| v.to_string().ok()) {
            Some(f) if f == fingerprint => {}
            _ => {
                tracing::info!(cache = %path.display(), "8-bit weight cache is of other files: rebuilding it");
                return Ok(None);
            }
        }
        // SAFETY: mapped read-only; the file is only ever replaced by a rename (a new inode), never rewritten in
        // place, so what the entries read in place ([`MappedQ8`]) does not change while they live.
        let map = Arc::new(unsafe { memmap2::Mmap::map(&file) }.map_err(|e| e.to_string())?);
        Ok(Some(Self { map, content }))
    }

    /// Entry `key` when it is Q8_0 of shape `[rows, cols]` and lies wholly inside the file.
    fn entry(&self, key: &str, (rows, cols): (usize, usize)) -> Option<QTensor> {
        let info = self.content.tensor_infos.get(key)?;
        if info.ggml_dtype != GgmlDType::Q8_0 || info.shape.dims() != [rows, cols] || !fits(rows, cols) {
            return None;
        }
        let bytes = rows * cols / BLOCK * GgmlDType::Q8_0.type_size();
        let start = usize::try_from(self.content.tensor_data_offset.checked_add(info.offset)?).ok()?;
        let data = self.map.get(start..start.checked_add(bytes)?)?;
        // candle's Q8_0 blocks hold an f16: 2-byte alignment (GGUF aligns entries to 32 bytes).
        if !(data.as_ptr() as usize).is_multiple_of(std::mem::align_of::<BlockQ8_0>()) {
            return None;
        }
        let storage = MappedQ8 { map: self.map.clone(), start, blocks: rows * cols / BLOCK };
        QTensor::new(QStorage::Cpu(Box::new(storage)), (rows, cols)).ok()
    }
}

/// Writes `entries` with `fingerprint` to a temporary file beside `path`, then renames it over `path`. Returns
/// the file's size.
fn write_atomically(path: &Path, fingerprint: &str, entries: &[(String, Arc<QTensor>)]) -> Result<u64> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = std::io::BufWriter::with_capacity(8 << 20, file);
        let fingerprint = gguf_file::Value::String(fingerprint.to_string());
        let tensors: Vec<(&str, &QTensor)> = entries.iter().map(|(k, q)| (k.as_str(), q.as_ref())).collect();
        gguf_file::write(&mut w, &[(FINGERPRINT_KEY, &fingerprint)], &tensors)?;
        let file = w.into_inner().map_err(|e| Error::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        let len = file.metadata().map_err(|e| Error::io(&tmp, e))?.len();
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        Ok(len)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// FNV-1a, 64 bits: a hash that stays the same across Rust releases (the cache file's name).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn poisoned() -> Error {
    candle_core::Error::Msg("8-bit weight cache lock poisoned".into()).into()
}

/// The entries of a cache file, for tests: key → `[rows, cols]`.
#[cfg(test)]
pub(crate) fn entries_of(path: &Path) -> std::collections::HashMap<String, Vec<usize>> {
    let file = std::fs::File::open(path).expect("cache file");
    let content = gguf_file::Content::read(&mut std::io::BufReader::new(file)).expect("gguf");
    content.tensor_infos.iter().map(|(k, i)| (k.clone(), i.shape.dims().to_vec())).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use candle_core::Module;
    use candle_core::quantized::QMatMul;

    use super::*;

    /// `[rows, cols]` of values in [-1, 1) from a fixed linear congruential sequence, with a few large ones
    /// (real weights have outliers, which set the block scales).
    fn values(rows: usize, cols: usize, seed: u64) -> Tensor {
        let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let v: Vec<f32> = (0..rows * cols)
            .map(|i| {
                s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let x = ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
                if i % 97 == 0 { 4.0 * x } else { x }
            })
            .collect();
        Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
    }

    fn rows_of(t: &Tensor) -> Vec<Vec<f32>> {
        t.to_vec2().unwrap()
    }

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (n(a) * n(b))
    }

    #[test]
    fn eight_bit_products_stay_close_to_f32() {
        // A shape of candle's x86 tile kernels (every projection of the published checkpoints) and one of its
        // generic Q8_0 path (the tiny fixtures'), at one and at several activation rows.
        for (rows, cols) in [(32, 512), (48, 64)] {
            for m in [1, 5] {
                let (w, x) = (values(rows, cols, 1), values(m, cols, 2));
                let exact = x.matmul(&w.t().unwrap()).unwrap();
                let q = QMatMul::from_arc(Arc::new(quantize(&w).unwrap())).unwrap().forward(&x).unwrap();
                let (exact, q) = (rows_of(&exact), rows_of(&q));
                assert_ne!(exact, q, "{rows}×{cols}, {m} rows: the 8-bit product is not the f32 one");
                for (e, q) in exact.iter().zip(&q) {
                    let c = cos(e, q);
                    assert!(c > 0.999, "{rows}×{cols}, {m} rows: cos {c}");
                }
            }
        }
    }

    #[test]
    fn parallel_quantization_is_candles() {
        let w = values(64, 256, 3);
        let ours = quantize(&w).unwrap().dequantize(&Device::Cpu).unwrap();
        let candles = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap().dequantize(&Device::Cpu).unwrap();
        assert_eq!(rows_of(&ours), rows_of(&candles));
    }

    #[test]
    fn the_cache_is_read_in_place_and_rebuilt_when_stale_or_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("model.safetensors");
        std::fs::write(&source, b"weights v1").unwrap();
        let cache_dir = dir.path().join("cache");
        let w = values(32, 512, 4);
        let expected = rows_of(&w);
        // One load: `built` counts the entries quantized from the checkpoint; returns the entry as f32.
        let load = |key: &str| -> (usize, Vec<Vec<f32>>) {
            let cache = Cache::open(Some(&cache_dir), &[&source], "");
            let mut built = 0;
            let q = cache
                .get_or_build(key, (32, 512), || {
                    built += 1;
                    Ok(w.clone())
                })
                .unwrap();
            assert_eq!(cache.finish().len(), 1);
            (built, rows_of(&q.dequantize(&Device::Cpu).unwrap()))
        };
        let (built, first) = load("layers.0.mlp");
        assert_eq!(built, 1, "no cache yet");
        let file = std::fs::read_dir(&cache_dir).unwrap().next().unwrap().unwrap().path();
        assert_eq!(entries_of(&file).get("layers.0.mlp"), Some(&vec![32, 512]));
        // 8 bits per weight: close to, not equal to, the f32 weight.
        assert_ne!(first, expected);
        let (built, again) = load("layers.0.mlp");
        assert_eq!((built, &again), (0, &first), "read from the cache, the same blocks");
        // A key the file lacks is built, and the rewritten file holds this load's entries.
        assert_eq!(load("layers.1.mlp").0, 1);
        assert_eq!(load("layers.1.mlp").0, 0);
        // Another checkpoint at the same path (size and modification time change): rebuilt.
        std::fs::write(&source, b"weights v2, longer").unwrap();
        assert_eq!(load("layers.1.mlp").0, 1);
        assert_eq!(load("layers.1.mlp").0, 0);
        // A damaged file (cut short, then not GGUF at all): rebuilt, never an error, never trusted.
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
        let (built, cut) = load("layers.1.mlp");
        assert_eq!((built, &cut), (1, &first));
        std::fs::write(&file, b"not a cache").unwrap();
        assert_eq!(load("layers.1.mlp").0, 1);
        assert_eq!(load("layers.1.mlp").0, 0);
        // No stray temporary files beside the cache.
        assert_eq!(std::fs::read_dir(&cache_dir).unwrap().count(), 1);
    }
}
