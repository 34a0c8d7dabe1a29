//! The coarse stage of two-stage search: every page row replaced by a two-level residual code, scored for all
//! pages from a small per-query table (additive/residual quantization with look-up tables, as in PLAID's
//! decompression or product-quantized ColBERT, but in score space and without PLAID's candidate pruning).
//!
//! A row `x` is coded as `c1 + c2`: `c1` the nearest of 1,024 unit centroids (spherical k-means), `c2` the
//! nearest of 256 centroids of the residuals `x − c1` (Euclidean k-means). For a query row `q`,
//! `q·x ≈ q·c1 + q·c2`, two entries of a table computed once per query. A page's coarse score is MaxSim over
//! the reconstructed rows — per query row the best of `first[c1] + second[c2]` over the page's rows, summed —
//! so it approximates the exact score row by row (3 bytes a row in memory, ~2.2 KB a page) and the best
//! `rerank` pages are then scored exactly.
//!
//! Why two levels and a full pass over the codes: the first version kept only each page's *set* of first-level
//! centroids (PLAID's centroid interaction without residuals). On model embeddings of real pages (tiny model,
//! `colqwen-bench scale`, 1k pages) it kept 0.60 / 0.72 of the exact top-10 of text queries with 50 / 100
//! candidates; these codes keep 0.905 / 0.95 (known-item queries 0.96 / 0.99): a row's nearest of 1,024
//! centroids alone is too far from it to order pages, the residual brings the reconstruction close enough.
//! Pooling each page into 16 k-means vectors had done worse still on text queries (0.17 with 1000 at 10k). The
//! cost is a pass over every row's codes (two 32-byte loads, an add and a max per row for 32 query rows:
//! ~0.4–0.6 µs a 750-row page on one core), a small fraction of the exact scan's `rows × dim` multiply-adds per
//! query row (~30 µs). `bench/results.md` has the numbers, `NOTES.md` the variants that lost.
//!
//! Codes depend only on a page's vectors, which depend only on its point id (file content, page, model), so
//! codes are kept by point id and survive replacing a page with itself. Everything here is derived data:
//! `coarse.bin` is rebuilt if missing, unreadable or of an older layout, and pages it does not cover are scored
//! exactly by the search.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};

pub(crate) const COARSE_FILE: &str = "coarse.bin";
/// Version 4: two levels, per-row codes of 2 + 1 bytes. Older files are rebuilt: version 1 held each page's
/// distinct first-level codes; version 3 has version 4's layout, but its codebook may have been trained on a
/// collapsed sample (every page's row 0, the prompt's token, in indexes of more than 65,536 pages; see
/// `optimize::sampled_rows`).
const MAGIC: &[u8; 8] = b"CQCOARS4";
const KMEANS_ITERATIONS: usize = 8;
/// First-level centroids. 1,024 (a 32 KiB table per query, in L1/L2) rather than 256 (one-byte codes): with 256
/// the coarse stage lost known items (rows sampled from one page: recall@10 0.25 with 50 candidates at 1k pages,
/// against 0.96), as rows of different pages then share codes.
const FIRST_CENTROIDS: usize = 1024;
const FIRST_MASK: usize = FIRST_CENTROIDS - 1;
const _: () = assert!(FIRST_CENTROIDS.is_power_of_two() && CENTROIDS <= 256);
/// Second-level (residual) centroids.
const CENTROIDS: usize = 256;

/// `out[i * n + j] = a_i · b_j` for `a` (`m × k`) and `b` (`n × k`), row-major f32.
pub(crate) fn matmul_nt(a: &[f32], b: &[f32], k: usize, out: &mut [f32]) {
    let (m, n) = (a.len() / k, b.len() / k);
    assert!(a.len() == m * k && b.len() == n * k && out.len() == m * n, "matmul shapes");
    crate::linalg::matmul(m, n, k, a, (k, 1), b, (1, k), out);
}

/// Two levels of centroids, each `k × dim` row-major: unit first-level centroids, and centroids of the
/// residuals the first level leaves.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Codebook {
    pub(crate) dim: usize,
    pub(crate) centroids: Vec<f32>,
    pub(crate) residuals: Vec<f32>,
    /// `|c|² / 2` of every residual centroid (derived from `residuals`).
    half_norms: Vec<f32>,
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// splitmix64, for sampling (deterministic: the same pages give the same codebook).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

impl Codebook {
    /// Trains both levels on `sample` (`n × dim`): [`FIRST_CENTROIDS`] unit centroids by spherical k-means, then
    /// as many centroids of what the first level leaves (`row − its centroid`) by Euclidean k-means (fewer of
    /// either if the sample has fewer rows). One run from a fixed seed: the same sample gives the same codebook.
    /// The best of 3 runs by k-means' own objective (10 iterations each) was tried and ranked no better (10k
    /// stitched pages, 1,000 candidates: 0.913 of the exact top-10 against 0.958–0.960 for single runs; `NOTES.md`).
    pub(crate) fn train(sample: &[f32], dim: usize) -> Codebook {
        let mut rng = Rng(0x636F_6C71_7765_6E);
        let centroids = kmeans(sample, dim, FIRST_CENTROIDS, true, &mut rng);
        let first = assign(sample, &centroids, None, dim, &mut Vec::new());
        let residuals = kmeans(&residual_rows(sample, &centroids, &first, dim), dim, CENTROIDS, false, &mut rng);
        let half_norms = half_norms(&residuals, dim);
        Codebook { dim, centroids, residuals, half_norms }
    }

    /// First-level centroids.
    pub(crate) fn len(&self) -> usize {
        self.centroids.len() / self.dim
    }

    fn residual_len(&self) -> usize {
        self.residuals.len() / self.dim
    }

    /// A page's codes (`rows × dim` in): the first-level and the residual centroid of every row, sorted by
    /// (first, residual) with repeated pairs kept once. A page's coarse score is a maximum over its rows, so
    /// neither their order nor a repeat changes it, and the scan, bound by its instructions per row, skips the
    /// repeats (17 % of a pooled page's pairs on the bench's pages).
    pub(crate) fn codes(&self, page: &[f32], scratch: &mut Vec<f32>) -> Arc<PageCodes> {
        let (first, second) = self.row_codes(page, scratch);
        let mut pairs: Vec<(u16, u8)> = first.iter().zip(&second).map(|(&a, &b)| (a as u16, b as u8)).collect();
        pairs.sort_unstable();
        pairs.dedup();
        let mut codes = Vec::with_capacity(3 * pairs.len());
        codes.extend(pairs.iter().flat_map(|&(a, _)| a.to_le_bytes()));
        codes.extend(pairs.iter().map(|&(_, b)| b));
        codes.into()
    }

    /// Every row's first-level and residual centroid, in row order.
    fn row_codes(&self, page: &[f32], scratch: &mut Vec<f32>) -> (Vec<usize>, Vec<usize>) {
        let first = assign(page, &self.centroids, None, self.dim, scratch);
        let rest = residual_rows(page, &self.centroids, &first, self.dim);
        let second = assign(&rest, &self.residuals, Some(&self.half_norms), self.dim, scratch);
        debug_assert_eq!(first.len(), page.len() / self.dim);
        (first, second)
    }

    /// The query's tables: every query row's dot product with every centroid of both levels, in fixed point
    /// (see [`ScoreTable`]).
    pub(crate) fn table(&self, query: &[f32]) -> ScoreTable {
        self.table_in_window(query, WINDOW)
    }

    /// [`Codebook::table`] resolving the top `window` of each query row's range (1.0: all of it, no clipping).
    fn table_in_window(&self, query: &[f32], window: f32) -> ScoreTable {
        let nq = query.len() / self.dim;
        let lanes = nq.div_ceil(LANES) * LANES;
        // A power of two, so that the scan turns a code into its entry's offset with a shift (a multiply by a
        // run-time stride took the one integer multiplier twice a row, and bounded the loop).
        let stride = lanes.next_power_of_two();
        let (k1, k2) = (self.len(), self.residual_len());
        let mut first = vec![0.0f32; nq * k1];
        let mut second = vec![0.0f32; nq * k2];
        matmul_nt(query, &self.centroids, self.dim, &mut first);
        matmul_nt(query, &self.residuals, self.dim, &mut second);
        let range =
            |v: &[f32]| v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        // Full-size tables (entries past a smaller codebook stay 0): any code the loop can read is in bounds.
        let mut t1 = AlignedTable::zeroed(FIRST_CENTROIDS * stride);
        let mut t2 = AlignedTable::zeroed(CENTROIDS * stride);
        // Per lane the value of one table step (0 on padding lanes, so that they add nothing).
        let mut step = vec![0.0f32; lanes];
        let (mut both_base, mut first_base) = (0.0f32, 0.0f32);
        for q in 0..nq {
            let (row1, row2) = (&first[q * k1..(q + 1) * k1], &second[q * k2..(q + 1) * k2]);
            let ((lo1, hi1), (lo2, hi2)) = (range(row1), range(row2));
            // One scale per query row for both levels, so that their sum is meaningful: 127 steps span the top
            // [`WINDOW`] of the wider level's range; lower values are clipped to its floor. First level in
            // 0..=127 (its maximum at 127), second in -127..=0 (its maximum at 0): every sum lies in -127..=127,
            // so a plain i8 add never overflows.
            let s = 127.0 / ((hi1 - lo1).max(hi2 - lo2) * window).max(1e-6);
            for (c, &v) in row1.iter().enumerate() {
                t1.as_mut()[c * stride + q] = ((v - hi1) * s + 127.0).round().clamp(0.0, 127.0) as i8;
            }
            for (c, &v) in row2.iter().enumerate() {
                t2.as_mut()[c * stride + q] = ((v - hi2) * s).round().clamp(-127.0, 0.0) as i8;
            }
            // value = stored / s + (hi1 − 127 / s + hi2) for both levels; (stored − 127) / s + hi1 for the first
            // alone. The constant parts of all query rows are summed once here.
            step[q] = 1.0 / s;
            both_base += hi1 - 127.0 / s + hi2;
            first_base += hi1 - 127.0 / s;
        }
        ScoreTable { stride, step, both_base, first_base, wide: wide(), first: t1, second: t2 }
    }
}

/// Rows of the input scored against the centroids at a time (bounds the scratch to `ASSIGN_CHUNK × k`).
const ASSIGN_CHUNK: usize = 8192;

/// k-means over the rows of `data` (`n × dim`): `k` centroids, unit ones if `spherical` (similarity = dot
/// product), otherwise Euclidean (squared distance, through `x·c − |c|²/2`). Starts from distinct random rows;
/// an empty cluster takes a random row, so every centroid stays useful.
fn kmeans(data: &[f32], dim: usize, k: usize, spherical: bool, rng: &mut Rng) -> Vec<f32> {
    let n = data.len() / dim;
    let k = k.min(n).max(1);
    let mut picks: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = i + rng.below(n - i);
        picks.swap(i, j);
    }
    let mut centroids: Vec<f32> = picks[..k].iter().flat_map(|&r| data[r * dim..(r + 1) * dim].to_vec()).collect();
    let mut scores = Vec::new();
    for _ in 0..KMEANS_ITERATIONS {
        let norms = (!spherical).then(|| half_norms(&centroids, dim));
        let assigned = assign(data, &centroids, norms.as_deref(), dim, &mut scores);
        let mut sums = vec![0.0f32; k * dim];
        let mut counts = vec![0usize; k];
        for (r, &c) in assigned.iter().enumerate() {
            counts[c] += 1;
            for (s, v) in sums[c * dim..(c + 1) * dim].iter_mut().zip(&data[r * dim..(r + 1) * dim]) {
                *s += v;
            }
        }
        for c in 0..k {
            let dst = &mut centroids[c * dim..(c + 1) * dim];
            if counts[c] == 0 {
                let r = rng.below(n);
                dst.copy_from_slice(&data[r * dim..(r + 1) * dim]);
            } else {
                let inv = 1.0 / counts[c] as f32;
                dst.iter_mut().zip(&sums[c * dim..(c + 1) * dim]).for_each(|(d, s)| *d = s * inv);
            }
            if spherical {
                normalize(dst);
            }
        }
    }
    centroids
}

/// Every row of `data` minus the centroid it was assigned (`assigned[r]`): what the first level leaves.
fn residual_rows(data: &[f32], centroids: &[f32], assigned: &[usize], dim: usize) -> Vec<f32> {
    let mut rest = data.to_vec();
    for (row, &c) in rest.chunks_exact_mut(dim).zip(assigned) {
        row.iter_mut().zip(&centroids[c * dim..(c + 1) * dim]).for_each(|(x, m)| *x -= m);
    }
    rest
}

/// `|c|² / 2` of every centroid (Euclidean assignment: argmin |x − c|² = argmax x·c − |c|²/2).
fn half_norms(centroids: &[f32], dim: usize) -> Vec<f32> {
    centroids.chunks_exact(dim).map(|c| c.iter().map(|x| x * x).sum::<f32>() / 2.0).collect()
}

/// The best centroid of every row of `data`: the largest dot product, minus `half_norms` when given.
fn assign(
    data: &[f32],
    centroids: &[f32],
    half_norms: Option<&[f32]>,
    dim: usize,
    scratch: &mut Vec<f32>,
) -> Vec<usize> {
    let k = centroids.len() / dim;
    let mut out = Vec::with_capacity(data.len() / dim);
    for chunk in data.chunks(ASSIGN_CHUNK * dim) {
        let rows = chunk.len() / dim;
        scratch.resize(rows * k, 0.0);
        let s = &mut scratch[..rows * k];
        matmul_nt(chunk, centroids, dim, s);
        for r in 0..rows {
            let row = &mut s[r * k..(r + 1) * k];
            if let Some(norms) = half_norms {
                row.iter_mut().zip(norms).for_each(|(x, n)| *x -= n);
            }
            out.push(argmax(row));
        }
    }
    out
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Query lanes per vector of the scoring loop: 32 `i8` = one 256-bit register.
const LANES: usize = 32;
/// The part of a query row's range of centroid scores that its 8-bit table entries resolve (the top); lower
/// entries are clipped. A page's MaxSim takes, per query row, its best row, and the pages that compete for the
/// top ranks have their best rows near the top of the range: resolving that part finely ranks them better
/// than spreading 127 steps over the whole range. Chosen on the tiny model's embeddings at 1k pages (two-stage
/// with 50 / 100 candidates; recall@10 text, known-item): the whole range 0.88 / 0.94, 0.77 / 0.87; 0.3: 0.88 /
/// 0.94, 0.93 / 0.975; **0.15: 0.905 / 0.95, 0.96 / 0.99**; 0.08: 0.75 / 0.85, 0.965 / 0.99.
const WINDOW: f32 = 0.15;

/// A query's dot products with both levels of centroids, laid out centroid-major with one lane per query row
/// (`1,024 × stride` and `256 × stride` bytes: lanes = query rows rounded up to 32, stride = lanes rounded up to
/// a power of two; padding lanes and entries past a smaller codebook 0), as `i8`: an entry times its query row's
/// step, plus a constant summed over the query rows, is the dot product.
///
/// A page's coarse score is then, per query row (lane), the maximum over the page's rows of
/// `first[c1] + second[c2]` — the dot product with the row's reconstruction `c1 + c2` — summed over the query
/// rows: two loads, one add and one max per row for 32 query rows. 8-bit entries: a query row's dot products
/// with the centroids of a level span a narrow range (the rows are far from isotropic), 127 steps over its top
/// part ([`WINDOW`]) rank as well as `i16` entries did (1k pages: recall@10 0.905 / 0.95 with 50 / 100
/// candidates vs 0.88 / 0.94 with `i16`), and they halve the bytes loaded per row, which bounds the loop (1.1 µs
/// a page of 750 rows on one core vs 1.8).
pub(crate) struct ScoreTable {
    /// Bytes a centroid in both tables: the lanes rounded up to a power of two.
    stride: usize,
    /// Per lane (query rows rounded up to 32: its length is the lanes), the value of one step of its entries; 0
    /// on padding lanes.
    step: Vec<f32>,
    /// What the query rows' scores add beyond their entries times `step`: both levels, the first alone.
    both_base: f32,
    first_base: f32,
    /// Whether two 32-lane groups are scored in one 64-lane pass ([`wide`]), decided once per query.
    wide: bool,
    first: AlignedTable,
    second: AlignedTable,
}

/// `i8` values starting at a 64-byte boundary: every 32-lane load of the scoring loop then stays inside one cache
/// line, and so does every 64-lane load of a 64-lane query (a `Vec<i8>` may start anywhere, and half the loads
/// would straddle two lines).
struct AlignedTable(Vec<Line>);

/// Bytes of one aligned unit of a table.
const LINE: usize = 64;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([i8; LINE]);

impl AlignedTable {
    fn zeroed(len: usize) -> Self {
        AlignedTable(vec![Line([0; LINE]); len.div_ceil(LINE)])
    }
    fn as_ref(&self) -> &[i8] {
        // SAFETY: `Line` is `repr(C)` around `[i8; 64]` with size 64 (no padding), so the lines are
        // `64 × len` contiguous, initialised `i8`s.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<i8>(), self.0.len() * LINE) }
    }
    fn as_mut(&mut self) -> &mut [i8] {
        // SAFETY: as in `as_ref`, uniquely borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<i8>(), self.0.len() * LINE) }
    }
}

impl ScoreTable {
    /// The coarse scores of a page with these codes ([`Codebook::codes`]): MaxSim over the rows rebuilt from
    /// both levels, and over the first level alone (see [`Scores`]).
    pub(crate) fn score(&self, codes: &PageCodes) -> Scores {
        let (first, second) = split(codes);
        let lookup = Lookup::new(self.first.as_ref(), self.second.as_ref(), self.stride);
        let mut best = [[[0i8; LANES]; 2]; 2];
        let mut total = Scores { both: self.both_base, first: self.first_base };
        let (lanes, mut q0) = (self.step.len(), 0);
        while q0 < lanes {
            // Two groups in one pass where the CPU has 64-byte lanes (most text queries have 33–64 rows).
            let groups = if self.wide && lanes - q0 >= 2 * LANES { 2 } else { 1 };
            if groups == 2 {
                lut_max_pair(&lookup, q0, first, second, &mut best);
            } else {
                lut_max(&lookup, q0, first, second, &mut best[0]);
            }
            for (g, best) in best.iter().enumerate().take(groups) {
                let step: &[f32; LANES] = self.step[q0 + g * LANES..][..LANES].try_into().expect("32 lanes");
                total.both += dot_lanes(&best[0], step);
                total.first += dot_lanes(&best[1], step);
            }
            q0 += groups * LANES;
        }
        total
    }
}

/// `Σ best[l] · step[l]` over 32 lanes, in 8 partial sums (one vector register: a page's epilogue is a few
/// vector instructions, where a division per query row had cost about a fifth of the scan).
#[inline]
fn dot_lanes(best: &[i8; LANES], step: &[f32; LANES]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (b, s) in best.chunks_exact(8).zip(step.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += b[i] as f32 * s[i];
        }
    }
    acc.iter().sum()
}

/// A page's two coarse scores. `both` (rows rebuilt from both levels) ranks text queries far better; `first`
/// (each row replaced by its first-level centroid: PLAID's centroid interaction) gives near-identical pages the
/// same score, so a query made of one page's rows finds that page's whole group together, where `both` spreads
/// the group by residual noise. Two-stage search reranks the best of each.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scores {
    pub(crate) both: f32,
    pub(crate) first: f32,
}

/// Both levels' tables of a query, `1 << shift` bytes a centroid (the query's lanes, rounded up to a power of
/// two).
struct Lookup<'a> {
    first: &'a [i8],
    second: &'a [i8],
    shift: u32,
}

impl<'a> Lookup<'a> {
    fn new(first: &'a [i8], second: &'a [i8], stride: usize) -> Self {
        assert!(stride.is_power_of_two(), "a table's stride is a power of two");
        Lookup { first, second, shift: stride.trailing_zeros() }
    }

    fn stride(&self) -> usize {
        1 << self.shift
    }

    /// The bounds the kernels' unchecked loads rely on: one second-level code per row, and every masked code
    /// addresses `width` whole lanes at `offset` inside its table.
    fn check(&self, offset: usize, width: usize, c1: &[u8], c2: &[u8]) {
        assert_eq!(c1.len(), 2 * c2.len(), "one second-level code per row");
        assert!(
            offset.is_multiple_of(LANES)
                && offset + width <= self.stride()
                && self.first.len() >= FIRST_CENTROIDS * self.stride()
                && self.second.len() >= CENTROIDS * self.stride(),
            "tables smaller than the codes can address"
        );
    }
}

/// `best[0][l] = max over rows r of first[c1[r]·stride + offset + l] + second[c2[r]·stride + offset + l]` and
/// `best[1][l] = max over rows r of first[c1[r]·stride + offset + l]` (the first level alone) for the 32
/// lanes at `offset` (wrapping `i8` adds; the table's ranges keep every sum in range). An empty page gives
/// `i8::MIN`. First-level codes are taken modulo [`FIRST_CENTROIDS`] (a mask, so that no code can read out of
/// bounds without a pass over the codes to check them). Dispatches to AVX2 (with BMI2's shifts, for the codes'
/// offsets) when the CPU has them (detection is cached by the standard library).
fn lut_max(t: &Lookup, offset: usize, c1: &[u8], c2: &[u8], best: &mut [[i8; LANES]; 2]) {
    t.check(offset, LANES, c1, c2);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("bmi2") {
        // SAFETY: the CPU has AVX2 and BMI2 (checked); every load is in bounds (asserted above).
        unsafe { lut_max_avx2(t, offset, c1, c2, best) };
        return;
    }
    lut_max_portable(t, offset, c1, c2, best);
}

/// Whether [`lut_max_pair`] runs as one 64-lane pass (AVX-512BW and BMI2; detection is cached by the standard
/// library).
fn wide() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512bw") && std::arch::is_x86_feature_detected!("bmi2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// [`lut_max`] for the two 32-lane groups at `offset` and `offset + 32` (`best[g]`), in one pass of 64-byte
/// loads where the CPU has them ([`wide`]), else as two passes.
fn lut_max_pair(t: &Lookup, offset: usize, c1: &[u8], c2: &[u8], best: &mut [[[i8; LANES]; 2]; 2]) {
    t.check(offset, 2 * LANES, c1, c2);
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: the CPU has AVX-512BW and BMI2 (checked); every 64-byte load is in bounds (asserted above).
        unsafe { lut_max_pair_avx512(t, offset, c1, c2, best) };
        return;
    }
    let [a, b] = best;
    lut_max(t, offset, c1, c2, a);
    lut_max(t, offset + LANES, c1, c2, b);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw,bmi2")]
unsafe fn lut_max_pair_avx512(t: &Lookup, offset: usize, c1: &[u8], c2: &[u8], best: &mut [[[i8; LANES]; 2]; 2]) {
    use std::arch::x86_64::*;
    // SAFETY: the caller checked the CPU feature and that every code addresses 64 lanes in bounds.
    unsafe {
        let (f, s) = (t.first.as_ptr().add(offset), t.second.as_ptr().add(offset));
        let min = _mm512_set1_epi8(i8::MIN);
        let (mut both, mut alone) = ([min; 2], [min; 2]);
        each_row(c1, c2, t.shift, |x_at, y_at, acc| {
            let x = _mm512_loadu_si512(f.add(x_at).cast());
            let y = _mm512_loadu_si512(s.add(y_at).cast());
            both[acc] = _mm512_max_epi8(both[acc], _mm512_add_epi8(x, y));
            alone[acc] = _mm512_max_epi8(alone[acc], x);
        });
        let mut out = [[0i8; 2 * LANES]; 2];
        _mm512_storeu_si512(out[0].as_mut_ptr().cast(), _mm512_max_epi8(both[0], both[1]));
        _mm512_storeu_si512(out[1].as_mut_ptr().cast(), _mm512_max_epi8(alone[0], alone[1]));
        for g in 0..2 {
            for kind in 0..2 {
                best[g][kind].copy_from_slice(&out[kind][g * LANES..(g + 1) * LANES]);
            }
        }
    }
}

/// Calls `row(first_at, second_at, acc)` for every row of a page: the byte offsets of its first- and
/// second-level table entries (codes times `stride`; first-level codes masked into range) and which of two
/// accumulators to use, alternating so that the max of one row does not wait for the previous one. The SIMD
/// kernels' shared loop (inlined into each).
#[inline(always)]
fn each_row(c1: &[u8], c2: &[u8], shift: u32, mut row: impl FnMut(usize, usize, usize)) {
    assert_eq!(c1.len(), 2 * c2.len(), "one second-level code per row");
    let at = |i: usize| {
        // SAFETY: `i < c2.len()` and `c1` holds 2 bytes a row (asserted): the first-level code of row i is
        // bytes 2i and 2i + 1, little-endian (one unaligned 16-bit load).
        let (a, b) = unsafe { (c1.as_ptr().add(2 * i).cast::<u16>().read_unaligned().to_le(), *c2.get_unchecked(i)) };
        ((a as usize & FIRST_MASK) << shift, (b as usize) << shift)
    };
    let rows = c2.len();
    for i in 0..rows / 2 {
        let ((x0, y0), (x1, y1)) = (at(2 * i), at(2 * i + 1));
        row(x0, y0, 0);
        row(x1, y1, 1);
    }
    if rows % 2 == 1 {
        let (x, y) = at(rows - 1);
        row(x, y, 0);
    }
}

fn lut_max_portable(t: &Lookup, offset: usize, c1: &[u8], c2: &[u8], best: &mut [[i8; LANES]; 2]) {
    *best = [[i8::MIN; LANES]; 2];
    for (a, &b) in c1.chunks_exact(2).map(|a| u16::from_le_bytes([a[0], a[1]])).zip(c2) {
        let x = &t.first[((a as usize & FIRST_MASK) << t.shift) + offset..][..LANES];
        let y = &t.second[((b as usize) << t.shift) + offset..][..LANES];
        for l in 0..LANES {
            best[0][l] = best[0][l].max(x[l].wrapping_add(y[l]));
            best[1][l] = best[1][l].max(x[l]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi2")]
unsafe fn lut_max_avx2(t: &Lookup, offset: usize, c1: &[u8], c2: &[u8], best: &mut [[i8; LANES]; 2]) {
    use std::arch::x86_64::*;
    // SAFETY: the caller checked the CPU feature and that every code addresses a whole group in bounds.
    unsafe {
        let (f, s) = (t.first.as_ptr().add(offset), t.second.as_ptr().add(offset));
        // Two accumulators per score: the max of one row does not wait for the previous one.
        let min = _mm256_set1_epi8(i8::MIN);
        let (mut both, mut alone) = ([min; 2], [min; 2]);
        each_row(c1, c2, t.shift, |x_at, y_at, acc| {
            let x = _mm256_loadu_si256(f.add(x_at).cast());
            let y = _mm256_loadu_si256(s.add(y_at).cast());
            both[acc] = _mm256_max_epi8(both[acc], _mm256_add_epi8(x, y));
            alone[acc] = _mm256_max_epi8(alone[acc], x);
        });
        _mm256_storeu_si256(best[0].as_mut_ptr().cast(), _mm256_max_epi8(both[0], both[1]));
        _mm256_storeu_si256(best[1].as_mut_ptr().cast(), _mm256_max_epi8(alone[0], alone[1]));
    }
}

/// A page's codes, 3 bytes a row: every row's first-level centroid (< 1,024) as a little-endian `u16`, then
/// every row's residual centroid (< 256) as one byte. One allocation (held as `Arc<PageCodes>`, the bytes right
/// after the reference counts): the scan over 100k pages is bound by memory traffic, and each further pointer
/// between a page and its codes would cost a cache miss per page.
pub(crate) type PageCodes = [u8];

/// Asks the CPU to load every cache line of a page's codes. The scan calls it a few pages ahead of the page it
/// scores: a page's codes are ~1 KB of their own allocation, too short for the hardware prefetcher to lock on,
/// so without it every page paid several full memory latencies (profiled: the scan at 100k pages waited on the
/// code loads ~60 % of its time).
pub(crate) fn prefetch(codes: &PageCodes) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        for line in codes.chunks(64) {
            // SAFETY: a prefetch is only a hint; the address is inside the slice.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = codes;
}

/// The first-level code bytes and the second-level codes of a page.
fn split(codes: &PageCodes) -> (&[u8], &[u8]) {
    codes.split_at(codes.len() / 3 * 2)
}

/// A page's first-level codes.
#[cfg(test)]
fn first_codes(codes: &PageCodes) -> Vec<u16> {
    split(codes).0.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect()
}

/// The codebook and the codes of the pages it covers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Coarse {
    pub(crate) codebook: Codebook,
    /// Rows in the index when the codebook was trained (it is retrained once the index has grown well past it).
    pub(crate) trained_rows: usize,
    pub(crate) codes: HashMap<u64, Arc<PageCodes>>,
}

impl Coarse {
    /// Writes `coarse.bin` atomically (a new file renamed over the old).
    pub(crate) fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(COARSE_FILE);
        let tmp = dir.join(format!("{COARSE_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut w = BufWriter::new(std::fs::File::create(&tmp)?);
            w.write_all(MAGIC)?;
            let book = &self.codebook;
            for v in [book.dim, book.len(), book.residual_len(), self.trained_rows, self.codes.len()] {
                w.write_all(&(v as u64).to_le_bytes())?;
            }
            for c in book.centroids.iter().chain(&book.residuals) {
                w.write_all(&c.to_le_bytes())?;
            }
            let mut ids: Vec<&u64> = self.codes.keys().collect();
            ids.sort_unstable();
            for id in ids {
                let codes = &self.codes[id];
                w.write_all(&id.to_le_bytes())?;
                w.write_all(&((codes.len() / 3) as u32).to_le_bytes())?;
                w.write_all(codes)?;
            }
            let file = w.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()
        };
        write().map_err(Error::io("writing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(Error::io("replacing", &path))?;
        Ok(())
    }

    /// Reads `coarse.bin`; `None` if it is missing or not readable as one (it is then rebuilt).
    pub(crate) fn load(dir: &Path, dim: usize) -> Option<Coarse> {
        let path = dir.join(COARSE_FILE);
        let file = std::fs::File::open(&path).ok()?;
        let mut r = BufReader::new(file);
        let read = |r: &mut BufReader<std::fs::File>| -> std::io::Result<Coarse> {
            let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not a coarse index");
            let mut magic = [0u8; 8];
            r.read_exact(&mut magic)?;
            if &magic != MAGIC {
                return Err(bad());
            }
            let mut u64s = [0u64; 5];
            for v in &mut u64s {
                let mut b = [0u8; 8];
                r.read_exact(&mut b)?;
                *v = u64::from_le_bytes(b);
            }
            let [file_dim, k, k2, trained_rows, pages] = u64s.map(|v| v as usize);
            if file_dim != dim
                || !(1..=FIRST_CENTROIDS).contains(&k)
                || !(1..=CENTROIDS).contains(&k2)
                || pages > 1 << 32
            {
                return Err(bad());
            }
            let mut b4 = [0u8; 4];
            let mut floats = |n: usize| -> std::io::Result<Vec<f32>> {
                let mut v = vec![0.0f32; n];
                for c in &mut v {
                    r.read_exact(&mut b4)?;
                    *c = f32::from_le_bytes(b4);
                }
                Ok(v)
            };
            let centroids = floats(k * dim)?;
            let residuals = floats(k2 * dim)?;
            let mut codes = HashMap::with_capacity(pages);
            let mut b8 = [0u8; 8];
            for _ in 0..pages {
                r.read_exact(&mut b8)?;
                r.read_exact(&mut b4)?;
                // Rows of the page (a page has at most a few thousand).
                let n = u32::from_le_bytes(b4) as usize;
                if n > 1 << 20 {
                    return Err(bad());
                }
                let mut bytes = vec![0u8; 3 * n];
                r.read_exact(&mut bytes)?;
                let (first, second) = split(&bytes);
                let first_ok = first.chunks_exact(2).all(|b| (u16::from_le_bytes([b[0], b[1]]) as usize) < k);
                if !first_ok || second.iter().any(|&c| c as usize >= k2) {
                    return Err(bad());
                }
                codes.insert(u64::from_le_bytes(b8), bytes.into());
            }
            let half_norms = half_norms(&residuals, dim);
            Ok(Coarse { codebook: Codebook { dim, centroids, residuals, half_norms }, trained_rows, codes })
        };
        match read(&mut r) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "ignoring an unreadable coarse index; rebuilding it");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng(seed);
        let mut v: Vec<f32> = (0..n * dim).map(|_| (rng.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5).collect();
        v.chunks_exact_mut(dim).for_each(normalize);
        v
    }

    #[test]
    fn matmul_matches_loops() {
        let (a, b) = (rows(7, 33, 1), rows(5, 33, 2));
        let mut out = vec![0.0; 35];
        matmul_nt(&a, &b, 33, &mut out);
        for i in 0..7 {
            for j in 0..5 {
                let dot: f32 = a[i * 33..(i + 1) * 33].iter().zip(&b[j * 33..(j + 1) * 33]).map(|(x, y)| x * y).sum();
                assert!((out[i * 5 + j] - dot).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn coarse_score_is_maxsim_over_centroids() {
        let dim = 16;
        let sample = rows(4000, dim, 3);
        let book = Codebook::train(&sample, dim);
        assert_eq!(book.len(), FIRST_CENTROIDS);
        let page = rows(40, dim, 4);
        let query = rows(5, dim, 5);
        let mut scratch = Vec::new();
        let codes = book.codes(&page, &mut scratch);
        let (first, second) = book.row_codes(&page, &mut scratch);
        assert_eq!((first.len(), second.len()), (40, 40));
        // The stored codes: the rows' pairs sorted, each pair once (the score is a maximum over rows).
        let mut pairs: Vec<(u16, u8)> = first.iter().zip(&second).map(|(&a, &b)| (a as u16, b as u8)).collect();
        pairs.sort_unstable();
        pairs.dedup();
        let stored: Vec<(u16, u8)> = first_codes(&codes).into_iter().zip(split(&codes).1.iter().copied()).collect();
        assert_eq!(stored, pairs);
        assert_eq!(book.residual_len(), CENTROIDS);
        let replaced: Vec<f32> = first
            .iter()
            .zip(&second)
            .flat_map(|(&a, &b)| {
                let (c1, c2) = (&book.centroids[a as usize * dim..][..dim], &book.residuals[b as usize * dim..][..dim]);
                c1.iter().zip(c2).map(|(x, y)| x + y).collect::<Vec<f32>>()
            })
            .collect();
        // The reconstruction is closer to the page than the first level alone.
        let err = |rec: &[f32]| page.iter().zip(rec).map(|(x, y)| (x - y) * (x - y)).sum::<f32>();
        let first_only: Vec<f32> =
            first.iter().flat_map(|&a| book.centroids[a as usize * dim..][..dim].to_vec()).collect();
        assert!(err(&replaced) < 0.7 * err(&first_only), "{} vs {}", err(&replaced), err(&first_only));
        let want = colqwen_core::maxsim(&query, &replaced, dim);
        // Over the whole range: MaxSim over the reconstructed rows, to half a step (1/254 of a query row's widest
        // level range, ≤ 2/254 here) per table entry, two entries per query row.
        let tolerance = 5.0 * 2.0 * 2.0 / 254.0;
        let got = book.table_in_window(&query, 1.0).score(&codes);
        assert!((got.both - want).abs() < tolerance, "{} vs {want}", got.both);
        let want_first = colqwen_core::maxsim(&query, &first_only, dim);
        assert!((got.first - want_first).abs() < tolerance / 2.0, "{} vs {want_first}", got.first);
        // Clipped to the top of the range, a query row whose best is below it counts as its floor: never less.
        let clipped = book.table(&query).score(&codes).both;
        assert!(clipped > want - tolerance * WINDOW, "{clipped} vs {want}");
        // And it ranks: the page itself scores above an unrelated page for rows taken from it.
        let from_page = &page[..5 * dim];
        let other = rows(40, dim, 8);
        let other_codes = book.codes(&other, &mut scratch);
        let table = book.table(from_page);
        assert!(table.score(&codes).both > table.score(&other_codes).both);
        assert!(table.score(&codes).first >= table.score(&other_codes).first);
    }

    #[test]
    fn every_lut_kernel_equals_the_plain_loop() {
        let mut rng = Rng(9);
        let (k1, k2, stride) = (FIRST_CENTROIDS, CENTROIDS, 64);
        let mut table = |k: usize| (0..k * stride).map(|_| rng.next() as i8).collect::<Vec<i8>>();
        let (first, second) = (table(k1), table(k2));
        for rows in [0, 1, 2, 7, 750] {
            let c1: Vec<u8> = (0..rows).flat_map(|_| (rng.below(k1) as u16).to_le_bytes()).collect();
            let c2: Vec<u8> = (0..rows).map(|_| rng.below(k2) as u8).collect();
            for offset in [0, 32] {
                let mut want = [[0i8; LANES]; 2];
                let t = Lookup::new(&first, &second, stride);
                lut_max_portable(&t, offset, &c1, &c2, &mut want);
                let mut got = [[0i8; LANES]; 2];
                lut_max(&t, offset, &c1, &c2, &mut got);
                assert_eq!(got, want, "{rows} rows");
            }
            // Both groups in one pass (64-byte lanes where the CPU has them) = the two groups one by one.
            let t = Lookup::new(&first, &second, stride);
            let mut want = [[[0i8; LANES]; 2]; 2];
            lut_max_portable(&t, 0, &c1, &c2, &mut want[0]);
            lut_max_portable(&t, LANES, &c1, &c2, &mut want[1]);
            let mut got = [[[0i8; LANES]; 2]; 2];
            lut_max_pair(&t, 0, &c1, &c2, &mut got);
            assert_eq!(got, want, "{rows} rows, pair (wide: {})", wide());
        }
    }

    /// A 33–64-row query scores the same whether its two groups run in one pass or two.
    #[test]
    fn a_two_group_query_scores_alike_in_one_pass_or_two() {
        let dim = 16;
        let book = Codebook::train(&rows(600, dim, 2), dim);
        let mut scratch = Vec::new();
        let page = book.codes(&rows(40, dim, 3), &mut scratch);
        let query = rows(50, dim, 4);
        let table = book.table(&query);
        let got = table.score(&page);
        // Two single-group passes, summed the way `score` sums.
        let (first, second) = split(&page);
        let lookup = Lookup::new(table.first.as_ref(), table.second.as_ref(), table.stride);
        let mut both = table.both_base;
        for q0 in [0, LANES] {
            let mut best = [[0i8; LANES]; 2];
            lut_max_portable(&lookup, q0, first, second, &mut best);
            for l in 0..LANES {
                both += best[0][l] as f32 * table.step[q0 + l];
            }
        }
        assert!((got.both - both).abs() <= 1e-4 * both.abs().max(1.0), "{} vs {both}", got.both);
    }

    #[test]
    #[should_panic(expected = "tables smaller than the codes can address")]
    fn a_table_smaller_than_the_codes_can_address_is_refused() {
        let (first, second) = (vec![0i8; 2 * LANES], vec![0i8; CENTROIDS * LANES]);
        let t = Lookup::new(&first, &second, LANES);
        lut_max(&t, 0, &[1, 0], &[0], &mut [[0; LANES]; 2]);
    }

    #[test]
    fn saves_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let dim = 8;
        let book = Codebook::train(&rows(300, dim, 6), dim);
        let mut scratch = Vec::new();
        let codes = HashMap::from([(7u64, book.codes(&rows(9, dim, 7), &mut scratch))]);
        let coarse = Coarse { codebook: book, trained_rows: 100, codes };
        coarse.save(dir.path()).unwrap();
        assert_eq!(Coarse::load(dir.path(), dim), Some(coarse));
        assert_eq!(Coarse::load(dir.path(), dim + 1), None);
        std::fs::write(dir.path().join(COARSE_FILE), b"garbage").unwrap();
        assert_eq!(Coarse::load(dir.path(), dim), None);
        // The first layout (each page's distinct first-level codes) is not read as this one: it is rebuilt.
        let mut v1 = b"CQCOARS1".to_vec();
        v1.extend([8u64, 16, 100, 0].iter().flat_map(|v| v.to_le_bytes()));
        v1.extend(vec![0u8; 16 * 8 * 4]);
        std::fs::write(dir.path().join(COARSE_FILE), v1).unwrap();
        assert_eq!(Coarse::load(dir.path(), dim), None);
    }
}
