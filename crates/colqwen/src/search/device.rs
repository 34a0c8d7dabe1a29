//! Exact MaxSim of every page on the model's device (a GPU), for the embedded store ([`ExactScorer`]).
//!
//! The store keeps the pages on disk and ranks; this keeps a copy of their vectors in device memory and scores
//! them all per query. Pages are grouped by their padded row count (`rows`, a multiple of 16: pages of one paper
//! size have the same count) into chunks of at most [`CHUNK_ROWS`] rows, each a row-major `[pages·rows, dim]`
//! tensor in the store's element type. For a query `Q` (`nq × dim`) one chunk costs one GEMM
//! `Q · Pᵀ → [nq, pages·rows]`, then a max over each page's rows and a sum over the query rows in f32 (one fused
//! kernel on CUDA, [`colqwen_model::maxsim`]): exactly the store's MaxSim (the padding rows repeat a page's last row, so they
//! never change a maximum). The GEMM accumulates in f32 and rounds each dot product to the store's type (f16 by
//! default: a relative error of ≤ 2⁻¹¹ per dot product), so near-ties may swap against the CPU scan; the bench
//! reports the top-10 overlap.
//!
//! Copies follow the store's snapshots: within one lineage new pages are appended to the open chunk of their
//! row count; in a new lineage (a page replaced or deleted, a compaction) the pages already copied are found again
//! by point id and only new ones are copied, so a delete does not stall the next search with a full upload.
//! An index larger than the memory budget is declined and the CPU scans it.

use std::collections::HashMap;
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};
use colqwen_core::VectorStorage;
use colqwen_store::{ExactScorer, PagesView};

/// Rows of one chunk (2 Mi rows: 512 MiB of f16 vectors, ≈ 2,700 pages of 768 rows). Large enough that a chunk's
/// GEMM streams at memory bandwidth, small enough that appending to the open chunk (a device copy) stays cheap
/// and the `[nq, rows]` score matrix small (≈ 80 MiB for 20 query rows).
const CHUNK_ROWS: usize = 1 << 21;

/// A copy of the store's pages on one device.
pub struct DeviceScorer {
    device: Device,
    /// Most bytes of page vectors to hold; a larger index is declined (searched on the CPU).
    budget_bytes: usize,
    /// Rows per chunk ([`CHUNK_ROWS`]).
    chunk_rows: usize,
    /// Smaller indexes are left to the CPU scan, and not copied until they grow past it.
    min_pages: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    lineage: u64,
    /// Positions of the view below this are on the device (every later view of the lineage keeps them).
    copied: usize,
    chunks: Vec<Chunk>,
    bytes: usize,
    /// The lineage is too large or the device failed: decline until the next lineage.
    declined: Option<u64>,
}

struct Chunk {
    /// Padded rows per page.
    rows: usize,
    /// `[pages·rows, dim]`, row-major.
    vectors: Tensor,
    /// The pages' positions in the current view ([`GONE`]: no longer in the index).
    positions: Vec<u32>,
    /// The pages' point ids (to find them again in a new lineage).
    ids: Vec<u64>,
}

/// A chunk slot whose page left the index.
const GONE: u32 = u32::MAX;

impl DeviceScorer {
    /// A scorer on `device` holding at most `budget_bytes` of vectors.
    pub fn new(device: Device, budget_bytes: usize) -> Self {
        Self { device, budget_bytes, chunk_rows: CHUNK_ROWS, min_pages: 0, state: Mutex::new(State::default()) }
    }

    /// Declines searches of indexes under `pages` pages (and copies nothing for them): there the CPU scan is as
    /// fast, and it does not queue behind page batches on a busy GPU.
    pub fn with_min_pages(mut self, pages: usize) -> Self {
        self.min_pages = pages;
        self
    }

    /// The same with chunks of `rows` rows (tests use small chunks to exercise the grouping).
    pub fn with_chunk_rows(mut self, rows: usize) -> Self {
        self.chunk_rows = rows.max(1);
        self
    }

    /// Bytes of page vectors held on the device now.
    pub fn copied_bytes(&self) -> usize {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).bytes
    }

    /// Brings the copy up to `view`; false when declined.
    fn sync(&self, state: &mut State, view: &PagesView<'_>) -> bool {
        if state.declined == Some(view.lineage()) {
            return false;
        }
        if state.lineage != view.lineage() || state.copied > view.len() {
            self.remap(state, view);
        }
        if state.copied == view.len() {
            return true;
        }
        let missing: Vec<usize> = (state.copied..view.len()).collect();
        self.copy(state, view, &missing)
    }

    /// A new lineage (pages replaced or deleted, a compaction): pages already on the device are found again by
    /// their point id (a page's vectors depend only on its id), only the others are copied; slots of pages gone
    /// stay as dead weight until they outweigh the live ones, then everything is copied afresh.
    fn remap(&self, state: &mut State, view: &PagesView<'_>) {
        let at: HashMap<u64, u32> = (0..view.len()).map(|i| (view.id(i), i as u32)).collect();
        let mut covered = vec![false; view.len()];
        let (mut live, mut dead) = (0usize, 0usize);
        for chunk in &mut state.chunks {
            let page_bytes = chunk.rows * view.dim() * view.storage_bytes();
            for (slot, id) in chunk.positions.iter_mut().zip(&chunk.ids) {
                match at.get(id) {
                    Some(&p) if !covered[p as usize] => {
                        *slot = p;
                        covered[p as usize] = true;
                        live += page_bytes;
                    }
                    _ => {
                        *slot = GONE;
                        dead += page_bytes;
                    }
                }
            }
        }
        state.lineage = view.lineage();
        if dead > live {
            *state = State { lineage: view.lineage(), ..State::default() };
            return;
        }
        // Pages not on the device are copied now (they come after the last covered position in file order only
        // by accident, so the copy takes an explicit list).
        let missing: Vec<usize> = covered.iter().enumerate().filter(|(_, c)| !**c).map(|(i, _)| i).collect();
        state.copied = view.len();
        if !missing.is_empty() {
            self.copy(state, view, &missing);
        }
    }

    /// Copies the pages at `positions` of `view` (ascending), within the budget; false (and declined for this
    /// lineage) when they do not fit or the device fails.
    fn copy(&self, state: &mut State, view: &PagesView<'_>, positions: &[usize]) -> bool {
        let new_bytes: usize = positions.iter().map(|&i| view.stored(i).len()).sum();
        if state.bytes + new_bytes > self.budget_bytes {
            tracing::warn!(
                bytes = state.bytes + new_bytes,
                budget = self.budget_bytes,
                device = %self.name(),
                "the index no longer fits the device's search budget; exact search runs on the CPU"
            );
            *state = State { lineage: view.lineage(), declined: Some(view.lineage()), ..State::default() };
            return false;
        }
        match self.append(state, view, positions) {
            Ok(()) => {
                state.copied = state.copied.max(positions.last().map_or(0, |&p| p + 1));
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, device = %self.name(), "copying pages to the device failed; exact search runs on the CPU");
                *state = State { lineage: view.lineage(), declined: Some(view.lineage()), ..State::default() };
                false
            }
        }
    }

    /// Appends the pages at `positions` to the chunks of their row counts.
    fn append(&self, state: &mut State, view: &PagesView<'_>, positions: &[usize]) -> candle_core::Result<()> {
        let dim = view.dim();
        let dtype = match view.storage() {
            VectorStorage::F16 => DType::F16,
            VectorStorage::F32 => DType::F32,
            VectorStorage::I8 => candle_core::bail!("i8 pages are scored on the CPU"),
        };
        let mut start = 0;
        while start < positions.len() {
            // A run of pages of one row count that fits the open chunk of that count (or a new one).
            let rows = view.padded_rows(positions[start]);
            let open = state.chunks.iter().rposition(|c| c.rows == rows && c.positions.len() * rows < self.chunk_rows);
            let room = (self.chunk_rows / rows).saturating_sub(open.map_or(0, |c| state.chunks[c].positions.len()));
            let mut end = start;
            while end < positions.len() && end - start < room.max(1) && view.padded_rows(positions[end]) == rows {
                end += 1;
            }
            let run = &positions[start..end];
            let mut bytes = Vec::with_capacity(run.iter().map(|&i| view.stored(i).len()).sum());
            for &i in run {
                bytes.extend_from_slice(view.stored(i));
            }
            let blocks = run.len() * rows / PagesView::BLOCK;
            // Block layout (blocks of 16 rows, dimension-major) → row-major rows, on the device.
            let vectors = Tensor::from_raw_buffer(&bytes, dtype, &[blocks, dim, PagesView::BLOCK], &self.device)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((run.len() * rows, dim))?;
            let ids = run.iter().map(|&i| view.id(i));
            let at = run.iter().map(|&i| i as u32);
            match open {
                Some(c) => {
                    let chunk = &mut state.chunks[c];
                    chunk.vectors = Tensor::cat(&[&chunk.vectors, &vectors], 0)?;
                    chunk.positions.extend(at);
                    chunk.ids.extend(ids);
                }
                None => state.chunks.push(Chunk { rows, vectors, positions: at.collect(), ids: ids.collect() }),
            }
            state.bytes += bytes.len();
            start = end;
        }
        Ok(())
    }

    fn score(&self, state: &State, query: &[f32], dim: usize, pages: usize) -> candle_core::Result<Vec<f32>> {
        let Some(first) = state.chunks.first() else { return Ok(vec![0.0; pages]) };
        let q = Tensor::from_slice(query, (query.len() / dim, dim), &self.device)?.to_dtype(first.vectors.dtype())?;
        let mut per_chunk = Vec::with_capacity(state.chunks.len());
        for chunk in &state.chunks {
            let dots = q.matmul(&chunk.vectors.t()?)?; // [nq, n·rows]
            per_chunk.push(colqwen_model::maxsim::maxsim_reduce(&dots, chunk.rows)?); // [n] f32
        }
        let all = Tensor::cat(&per_chunk, 0)?.to_vec1::<f32>()?;
        let mut scores = vec![f32::NEG_INFINITY; pages];
        let positions = state.chunks.iter().flat_map(|c| &c.positions);
        for (&p, s) in positions.zip(all) {
            if p != GONE {
                scores[p as usize] = s;
            }
        }
        Ok(scores)
    }
}

impl ExactScorer for DeviceScorer {
    fn score_all(&self, pages: &PagesView<'_>, query: &[f32]) -> Option<Vec<f32>> {
        // i8 pages (the compact storage for disk- and RAM-bound hosts) are scored by the CPU kernels: a device
        // copy would widen them back to f16.
        if pages.storage() == VectorStorage::I8 {
            return None;
        }
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if pages.len() < self.min_pages || !self.sync(&mut state, pages) {
            return None;
        }
        match self.score(&state, query, pages.dim(), pages.len()) {
            Ok(scores) => Some(scores),
            Err(e) => {
                tracing::warn!(error = %e, device = %self.name(), "device search failed; this search runs on the CPU");
                None
            }
        }
    }

    fn prepare(&self, pages: &PagesView<'_>) {
        if pages.len() < self.min_pages || pages.storage() == VectorStorage::I8 {
            return; // copied by the first search once the index is large enough
        }
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.sync(&mut state, pages);
    }

    fn name(&self) -> String {
        match self.device.location() {
            candle_core::DeviceLocation::Cpu => "cpu".into(),
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
        }
    }
}
