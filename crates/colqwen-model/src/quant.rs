//! 8-bit weights for the CPU's language model (`TextWeights::Q8`, the CLI's `--dtype q8`): the projections of
//! the text tower held as Q8_0 blocks (32 weights of one row as `i8` with one f16 scale, the GGML format), run
//! by candle's quantized matmul, and a cache of those blocks on disk so that later starts skip the f32 widening,
//! the LoRA merge and the quantization.
//!
//! Why 8 bits, and why only there: a query encode on the CPU reads every text-tower weight once per batch of
//! waiting queries (≈ 2.8 G weights for the 3B model: 11 GB in f32) for a few dozen token rows, so it is bound
//! by memory and by multiply-adds. candle 0.11's x86 kernels for Q8_0 (`quantized/repack_x86.rs`: weights
//! re-tiled into 16-row tiles once, on first use; activations quantized to 8 bits per 256-value row block;
//! `vpdpbusd` on AVX-512 VNNI or AVX-VNNI) read a quarter of the bytes and do 4× the multiply-adds per
//! instruction. Those kernels need `in % 256 == 0` and `out % 16 == 0` ([`fits`]); other shapes stay f32. The
//! vision tower stays f32 (its MLP width 3420 fits neither, and queries never run it), as do norms, embeddings
//! and the head.
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

/// Version of what a cache entry means (key names, stacking order, block format): bumped when that changes, so
/// that caches of an older layout are rebuilt instead of trusted.
const FORMAT: &str = "colqwen-q8 1";

/// GGUF metadata key of the fingerprint.
const FINGERPRINT_KEY: &str = "colqwen.fingerprint";

/// Weights per Q8_0 block (one f16 scale each).
const BLOCK: usize = 32;

/// Whether a `[rows, cols]` projection runs in 8 bits: the shapes candle's x86 tile kernels take (`cols` a
/// multiple of 256, the activation block; `rows` a multiple of the 16-row tile). Other shapes would fall back
/// to candle's generic per-row dot products, slower than the f32 GEMM.
pub(crate) fn fits(rows: usize, cols: usize) -> bool {
    rows > 0 && rows.is_multiple_of(16) && cols > 0 && cols.is_multiple_of(256)
}

/// The 8-bit kernel level of this CPU, for the load log: candle picks AVX-512 VNNI, else AVX-VNNI, and without
/// either runs Q8_0 through generic AVX2 dot products (correct, but no faster than f32).
pub(crate) fn kernel_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512vnni") && std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512-vnni";
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
    map: memmap2::Mmap,
    content: gguf_file::Content,
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

    /// Ends the load: unmaps the file, and when any entry was built, writes every entry of this load to a new
    /// file that replaces the old one atomically. A failed write is logged, not returned.
    pub(crate) fn finish(&self) {
        let Ok(mut state) = self.state.lock() else { return };
        let hit = state.found.take().is_some();
        let entries = std::mem::take(&mut state.entries);
        let built = std::mem::take(&mut state.built);
        let Some(path) = &self.path else { return };
        if entries.is_empty() {
            return;
        }
        if built == 0 {
            tracing::info!(cache = %path.display(), entries = entries.len(), "8-bit weights from the cache");
            return;
        }
        let t = std::time::Instant::now();
        match write_atomically(path, &self.fingerprint, &entries) {
            Ok(bytes) => tracing::info!(
                cache = %path.display(), entries = entries.len(), rebuilt = built, stale = hit, bytes,
                seconds = t.elapsed().as_secs_f64(), "wrote the 8-bit weight cache"
            ),
            Err(e) => tracing::warn!(cache = %path.display(), error = %e, "cannot write the 8-bit weight cache"),
        }
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
        // place, and every entry is copied out (and bounds-checked) before the map is dropped.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| e.to_string())?;
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
        let storage = QStorage::from_data(std::borrow::Cow::Borrowed(data), &Device::Cpu, GgmlDType::Q8_0).ok()?;
        QTensor::new(storage, (rows, cols)).ok()
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
