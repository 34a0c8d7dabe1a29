//! Search over a snapshot: the exact scan (every page, the kernels of [`crate::kernel`] on all cores) and the
//! two-stage search (a cheap first stage picks candidates, the exact kernel ranks them).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use colqwen_core::{SearchMode, VectorStorage};
use half::f16;
use memmap2::Mmap;

use crate::accel::{ExactScorer, PagesView};
use crate::coarse::{self, Codebook, PageCodes};
use crate::kernel::{self, Isa, Stored};
use crate::store::{Slot, Snapshot};

/// `SearchMode::Auto` scans every candidate page exactly up to this many pages (≈ 45 ms on 2 cores at 22 µs a
/// page), and runs two-stage above. On 10,000 distinct model embeddings of real pages (tiny model, `colqwen-bench
/// scale`, 2026-12-03) two-stage kept 0.963 (text queries) / 0.975 (known-item) of the exact top-10 with 200
/// candidates and 0.988 / 1.000 with 500, at p50 / p95 11 / 18 ms and 19 / 29 ms on the 2-core dev box
/// ([`auto_prefetch`] picks the rerank size).
pub const AUTO_EXACT_MAX_PAGES: usize = 2_000;
/// Pages the coarse stage hands to the exact rerank at least when the index decides (`SearchMode::Auto`, and
/// `TwoStage` without a prefetch): 200, the measured point at 10k distinct pages where both query kinds kept ≥
/// 0.95 of the exact top-10 (it is the floor of [`auto_prefetch`]; the Weaviate backend reranks as many).
pub const AUTO_PREFETCH: usize = 200;
/// `SearchMode::Auto` reranks one page in [`AUTO_PREFETCH_PER_PAGES`] of the candidate pages, within
/// [`AUTO_PREFETCH`]..=[`AUTO_PREFETCH_MAX`], whatever the storage.
const AUTO_PREFETCH_PER_PAGES: usize = 5;
const AUTO_PREFETCH_MAX: usize = 2_000;

/// The rerank size of `SearchMode::Auto` for this many candidate pages: one in [`AUTO_PREFETCH_PER_PAGES`],
/// at least [`AUTO_PREFETCH`], at most [`AUTO_PREFETCH_MAX`] — 2,000 from 10,000 pages up, for f16 and compact
/// (pooled) indexes alike. Chosen so that a user who sets no flag keeps ≥ 0.95 of the exact top-10 on the
/// hardest data measured, manual-like pages that repeat their layouts (the bench's 600 embedded images stitched
/// into 10k pages, `bench/results.md` 2026-12-08): the default f16 index kept 0.773 / 0.905 / 0.948 / 0.973 of
/// the text queries' top-10 with 200 / 500 / 1,000 / 2,000 candidates, so its old rule (one page in 50, at
/// most 1,000: 200 at 10k) kept 0.773. The price is the rerank of 2,000 f16 pages (~25 µs a page on 2 cores:
/// `auto` at 10k 51 / 72 ms p50 / p95 on a quiet 2-core box where 200 took 8 / 10); a compact index scores its
/// pages 3–4× cheaper. At
/// 100k stitched pages of 3,000 images a compact index kept 0.961 / 0.995 with 2,000 (`bench/results.md`).
/// (Until 2026-12-08 a pooled index reranked 5× the unpooled one's number, up to 2,000; now both rerank the
/// same.)
pub fn auto_prefetch(candidates: usize) -> usize {
    (candidates / AUTO_PREFETCH_PER_PAGES).clamp(AUTO_PREFETCH, AUTO_PREFETCH_MAX)
}

/// Pages a search thread takes at a time (small enough to balance two threads when the other core is busy).
const CHUNK: usize = 16;
/// Pages a coarse-stage thread takes at a time.
const COARSE_CHUNK: usize = 256;
/// How many pages ahead of the one it scores the coarse scan prefetches codes.
const PREFETCH_AHEAD: usize = 8;
/// Below this many pages per thread, fewer threads are started (a thread costs ~20 µs to start).
const MIN_PAGES_PER_THREAD: usize = 64;

/// How a search runs, fixed per store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SearchPlan {
    pub(crate) isa: Isa,
    pub(crate) threads: usize,
    pub(crate) dim: usize,
    pub(crate) storage: VectorStorage,
}

/// A ranked page: its position in the snapshot and its score.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    pub(crate) index: usize,
    pub(crate) score: f32,
    id: u64,
}

impl Candidate {
    /// Higher score first; equal scores by point id, so that ranks are deterministic.
    fn better(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.id.cmp(&self.id))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.better(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.better(other)
    }
}

/// The best `k` seen so far (a min-heap whose top is the worst kept).
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Reverse<Candidate>>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK { k, heap: BinaryHeap::with_capacity(k + 1) }
    }

    pub(crate) fn push(&mut self, c: Candidate) {
        if self.heap.len() < self.k {
            self.heap.push(Reverse(c));
        } else if let Some(Reverse(worst)) = self.heap.peek()
            && c > *worst
        {
            self.heap.pop();
            self.heap.push(Reverse(c));
        }
    }

    fn merge(&mut self, other: TopK) {
        for Reverse(c) in other.heap {
            self.push(c);
        }
    }

    /// Best first.
    pub(crate) fn into_sorted(self) -> Vec<Candidate> {
        let mut v: Vec<Candidate> = self.heap.into_iter().map(|Reverse(c)| c).collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }
}

/// The stored vectors of a page, as elements of the store's type.
pub(crate) fn elements<'a, T: Stored>(map: &'a Mmap, slot: &Slot) -> &'a [T] {
    let (at, len) = (slot.data.0 as usize, slot.data.1 as usize);
    let bytes = &map[at..at + len];
    assert!(bytes.as_ptr().align_offset(align_of::<T>()) == 0 && len % size_of::<T>() == 0, "misaligned page");
    // SAFETY: in bounds (sliced above), aligned (checked; records put vectors at 64-aligned offsets of a
    // page-aligned map), and every bit pattern is a valid f32/f16/i8.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), len / size_of::<T>()) }
}

/// A query as the kernels take it, prepared once per search: its f32 rows and, for i8 pages on a CPU with
/// 8-bit dot products ([`Isa::Avx512Vnni`]), the same rows quantized ([`kernel::QueryU8`]). Those pages are then
/// scored in integers, 3–4× fewer instructions than widening every stored byte to f32; the scores move by at
/// most half a query quantization step times a page row's absolute sum (the kernel's tests check the bound), on
/// a compact index already quantized to i8 on the page side.
pub(crate) struct Query<'a> {
    rows: &'a [f32],
    bytes: Option<kernel::QueryU8>,
}

impl<'a> Query<'a> {
    pub(crate) fn new(plan: &SearchPlan, rows: &'a [f32]) -> Query<'a> {
        let int8 = plan.storage == VectorStorage::I8;
        Query { rows, bytes: if int8 { kernel::QueryU8::for_isa(plan.isa, rows, plan.dim) } else { None } }
    }
}

/// MaxSim of `query` against the page in `slot`; `best` is scratch of one value per query row.
pub(crate) fn score(plan: &SearchPlan, map: &Mmap, slot: &Slot, query: &Query, best: &mut [f32]) -> f32 {
    let rows = query.rows;
    match (plan.storage, &query.bytes) {
        (VectorStorage::F32, _) => kernel::maxsim(plan.isa, rows, elements::<f32>(map, slot), plan.dim, best),
        (VectorStorage::F16, _) => kernel::maxsim(plan.isa, rows, elements::<f16>(map, slot), plan.dim, best),
        (VectorStorage::I8, Some(bytes)) => {
            kernel::maxsim_u8(plan.isa, bytes, elements::<i8>(map, slot), plan.dim, best)
        }
        (VectorStorage::I8, None) => kernel::maxsim(plan.isa, rows, elements::<i8>(map, slot), plan.dim, best),
    }
}

/// Pages a search over `doc_id` (or all) ranks: what sizes `Auto`'s choice and the default rerank.
fn candidate_pages(snap: &Snapshot, doc_id: Option<&str>, pick: &impl Fn(&Slot) -> bool) -> usize {
    match doc_id {
        Some(_) => snap.pages.iter().filter(|s| pick(s)).count(),
        None => snap.pages.len(),
    }
}

/// Top `k` pages for `query` (`nq × dim`, row-major), optionally of one document; `scorer` (a device) scores
/// every page for `Exact` and `Auto` when it accepts.
pub(crate) fn run(
    plan: &SearchPlan,
    snap: &Snapshot,
    query: &[f32],
    k: usize,
    doc_id: Option<&str>,
    mode: SearchMode,
    scorer: Option<&dyn ExactScorer>,
) -> Vec<Candidate> {
    let Some(map) = snap.map.as_deref() else { return Vec::new() };
    let pick = |slot: &Slot| doc_id.is_none_or(|d| slot.meta.doc_id == d);
    // A device that scores every page makes `auto` exact at any size; an explicit two-stage stays on the CPU.
    if let Some(scorer) = scorer
        && matches!(mode, SearchMode::Exact | SearchMode::Auto)
    {
        let view = PagesView { snap, dim: plan.dim, storage: plan.storage };
        match scorer.score_all(&view, query) {
            Some(scores) if scores.len() == snap.pages.len() => {
                let mut top = TopK::new(k);
                for (index, (slot, &score)) in snap.pages.iter().zip(&scores).enumerate() {
                    if pick(slot) {
                        top.push(Candidate { index, score, id: slot.meta.id });
                    }
                }
                return top.into_sorted();
            }
            Some(scores) => {
                tracing::warn!(got = scores.len(), pages = snap.pages.len(), scorer = %scorer.name(), "scorer answered for another page count; searching on the CPU");
            }
            None => {}
        }
    }
    let rerank = match mode {
        SearchMode::Exact => None,
        SearchMode::TwoStage { prefetch: Some(prefetch) } => Some(prefetch.max(k)),
        SearchMode::TwoStage { prefetch: None } => Some(auto_prefetch(candidate_pages(snap, doc_id, &pick)).max(k)),
        SearchMode::Auto => {
            let candidates = candidate_pages(snap, doc_id, &pick);
            (candidates > AUTO_EXACT_MAX_PAGES).then_some(auto_prefetch(candidates).max(k))
        }
    };
    match (rerank, snap.codebook.as_deref()) {
        (Some(rerank), Some(book)) => two_stage(plan, map, &snap.pages, book, query, k, rerank, &pick),
        // No coarse stage yet (a small or brand-new index): exact, which is never wrong.
        _ => exact(plan, map, &snap.pages, None, query, k, &pick),
    }
}

/// The coarse stage picks the `rerank` best coded pages; they and every page without codes yet (written since
/// the optimizer last ran) are scored exactly.
#[allow(clippy::too_many_arguments)]
fn two_stage(
    plan: &SearchPlan,
    map: &Mmap,
    pages: &[std::sync::Arc<Slot>],
    book: &Codebook,
    query: &[f32],
    k: usize,
    rerank: usize,
    pick: &(dyn Fn(&Slot) -> bool + Sync),
) -> Vec<Candidate> {
    let table = book.table(query);
    let n = pages.len();
    let next = AtomicUsize::new(0);
    let work = || {
        // The best pages by each coarse score ([`coarse::Scores`]).
        let (mut both, mut first) = (TopK::new(rerank), TopK::new(rerank));
        let mut uncoded = Vec::new();
        let mut batch: Vec<(usize, u64, &PageCodes)> = Vec::with_capacity(COARSE_CHUNK);
        loop {
            let start = next.fetch_add(COARSE_CHUNK, AtomicOrdering::Relaxed);
            if start >= n {
                break;
            }
            // First find every page's codes: the loads of different pages do not depend on each other, so their
            // cache misses overlap (interleaved with the scoring they would be paid one after another).
            batch.clear();
            for (index, slot) in pages.iter().enumerate().take((start + COARSE_CHUNK).min(n)).skip(start) {
                if !pick(slot) {
                    continue;
                }
                match slot.codes.get() {
                    Some(codes) => batch.push((index, slot.meta.id, codes)),
                    None => uncoded.push(index),
                }
            }
            for &(_, _, codes) in batch.iter().take(PREFETCH_AHEAD) {
                coarse::prefetch(codes);
            }
            for (j, &(index, id, codes)) in batch.iter().enumerate() {
                if let Some(&(_, _, ahead)) = batch.get(j + PREFETCH_AHEAD) {
                    coarse::prefetch(ahead);
                }
                let scores = table.score(codes);
                both.push(Candidate { index, score: scores.both, id });
                first.push(Candidate { index, score: scores.first, id });
            }
        }
        (both, first, uncoded)
    };
    let threads = plan.threads.min(n.div_ceil(COARSE_CHUNK * 4)).max(1);
    let (both, first, mut subset) = if threads == 1 {
        work()
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
            let (mut both, mut first, mut uncoded) = work();
            for h in handles {
                match h.join() {
                    Ok((b, f, u)) => {
                        both.merge(b);
                        first.merge(f);
                        uncoded.extend(u);
                    }
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            (both, first, uncoded)
        })
    };
    // `rerank` pages in all: the best by each score in turn (three by `both` for each by `first`: `both` is the
    // better ranking for text queries; `first` keeps groups of near-identical pages together), each page once.
    let (both, first) = (both.into_sorted(), first.into_sorted());
    let mut taken = std::collections::HashSet::with_capacity(rerank);
    let (mut b, mut f) = (both.iter(), first.iter());
    while taken.len() < rerank.min(both.len()) {
        let from_first = taken.len() % 4 == 3;
        let next = if from_first { f.next().or_else(|| b.next()) } else { b.next().or_else(|| f.next()) };
        let Some(c) = next else { break };
        if taken.insert(c.index) {
            subset.push(c.index);
        }
    }
    // File order: the rerank reads the map front to back.
    subset.sort_unstable();
    exact(plan, map, pages, Some(&subset), query, k, pick)
}

/// Scores every picked page (or only `subset`, positions into `pages`) with the exact kernel on up to
/// `plan.threads` threads, each taking [`CHUNK`] pages at a time.
pub(crate) fn exact(
    plan: &SearchPlan,
    map: &Mmap,
    pages: &[std::sync::Arc<Slot>],
    subset: Option<&[usize]>,
    query: &[f32],
    k: usize,
    pick: &(dyn Fn(&Slot) -> bool + Sync),
) -> Vec<Candidate> {
    let n = subset.map_or(pages.len(), <[usize]>::len);
    let nq = query.len() / plan.dim;
    let query = &Query::new(plan, query);
    let next = AtomicUsize::new(0);
    let work = || {
        let mut top = TopK::new(k);
        let mut best = vec![0.0f32; nq];
        loop {
            let start = next.fetch_add(CHUNK, AtomicOrdering::Relaxed);
            if start >= n {
                break;
            }
            for j in start..(start + CHUNK).min(n) {
                let index = subset.map_or(j, |s| s[j]);
                let slot = &pages[index];
                if !pick(slot) {
                    continue;
                }
                let score = score(plan, map, slot, query, &mut best);
                top.push(Candidate { index, score, id: slot.meta.id });
            }
        }
        top
    };
    let threads = plan.threads.min(n.div_ceil(MIN_PAGES_PER_THREAD)).max(1);
    if threads == 1 {
        return work().into_sorted();
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mut top = work();
        for h in handles {
            match h.join() {
                Ok(t) => top.merge(t),
                // A kernel cannot panic on valid slices; if one did, re-raise it on the caller's thread.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        top.into_sorted()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(index: usize, score: f32, id: u64) -> Candidate {
        Candidate { index, score, id }
    }

    #[test]
    fn auto_reranks_more_pages_in_larger_indexes() {
        assert_eq!(auto_prefetch(500), AUTO_PREFETCH);
        assert_eq!(auto_prefetch(2_001), 400);
        assert_eq!(auto_prefetch(5_000), 1_000);
        // From 10k pages up, 2,000: what the default f16 index needed for ≥ 0.95 of the exact top-10 on the
        // bench's stitched pages (the old rule's 200 kept 0.77).
        assert_eq!(auto_prefetch(10_000), 2_000);
        assert_eq!(auto_prefetch(100_000), 2_000);
        assert_eq!(auto_prefetch(10_000_000), 2_000);
    }

    #[test]
    fn top_k_keeps_the_best_and_breaks_ties_by_id() {
        let mut t = TopK::new(3);
        for (i, (s, id)) in [(1.0, 5), (3.0, 1), (2.0, 9), (3.0, 0), (0.5, 2), (2.0, 3)].into_iter().enumerate() {
            t.push(c(i, s, id));
        }
        let got: Vec<(f32, u64)> = t.into_sorted().iter().map(|c| (c.score, c.id)).collect();
        assert_eq!(got, vec![(3.0, 0), (3.0, 1), (2.0, 3)]);
    }
}
