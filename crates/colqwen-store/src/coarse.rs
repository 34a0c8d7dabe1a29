//! The coarse stage of two-stage search: a codebook of centroids over page rows, and for each page the set of
//! centroids its rows fall into (PLAID's "centroid interaction", Santhanam et al. 2022, without residuals).
//!
//! A page's coarse score for a query is Σ over query rows of the best centroid score among the page's codes:
//! MaxSim with every page row replaced by its nearest centroid. Per page that is one lane-wise max per distinct
//! code (a few hundred) over a small table of query × centroid dot products computed once per query, so the
//! whole index is scored in a fraction of an exact scan; the best `rerank` pages are then scored exactly.
//!
//! The codebook is spherical k-means (dot product, unit centroids) on a sample of rows. Codes depend only on a
//! page's vectors, which depend only on its point id (file content, page, model), so codes are kept by point id
//! and survive replacing a page with itself. Everything here is derived data: `coarse.bin` is rebuilt if missing
//! or unreadable, and pages it does not cover are scored exactly by the search.
//!
//! Measured on model embeddings of real pages (tiny model, 10k pages, `colqwen-bench scale`): recall@10 against
//! exact MaxSim 0.54 (text queries) / 0.29 (known-item) with 256 candidates, 0.73 / 0.59 with 1000. An
//! alternative tried the same day, each page pooled into 16 vectors by k-means inside the page and scored by the
//! exact kernel, gave 0.02 / 0.80 at 256 and 0.17 / 0.90 at 1000: better for known-item queries, far worse for
//! text queries (pooling averages away the single rows that MaxSim rewards), so this codebook stage stays.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use crate::error::{Error, Result};

pub(crate) const COARSE_FILE: &str = "coarse.bin";
const MAGIC: &[u8; 8] = b"CQCOARS1";
const KMEANS_ITERATIONS: usize = 8;
/// Codebook size: the field uses more centroids for more rows; assignment costs rows × centroids × dim, which
/// bounds it here (1024: ~2 ms of one core per 768-row page).
const MAX_CENTROIDS: usize = 1024;
const MIN_CENTROIDS: usize = 16;

/// `out[i * n + j] = a_i · b_j` for `a` (`m × k`) and `b` (`n × k`), row-major f32 (the `gemm` crate, which
/// candle uses too: runtime-dispatched AVX-512/AVX2/NEON kernels).
pub(crate) fn matmul_nt(a: &[f32], b: &[f32], k: usize, out: &mut [f32]) {
    let (m, n) = (a.len() / k, b.len() / k);
    assert!(a.len() == m * k && b.len() == n * k && out.len() == m * n, "matmul shapes");
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the pointers cover `m × k`, `n × k` and `m × n` elements with the strides given (checked above).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Unit centroids, `k × dim` row-major.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Codebook {
    pub(crate) dim: usize,
    pub(crate) centroids: Vec<f32>,
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
    /// Centroids for an index of `total_rows` rows: about √rows, a power of two in 16..=1024.
    pub(crate) fn size_for(total_rows: usize) -> usize {
        let target = (total_rows as f64).sqrt() as usize;
        target.next_power_of_two().clamp(MIN_CENTROIDS, MAX_CENTROIDS)
    }

    /// Spherical k-means over `sample` (`n × dim`): `k` unit centroids (fewer if the sample has fewer rows).
    pub(crate) fn train(sample: &[f32], dim: usize, k: usize) -> Codebook {
        let n = sample.len() / dim;
        let k = k.min(n).max(1);
        let mut rng = Rng(0x636F_6C71_7765_6E);
        // Initial centroids: distinct random rows.
        let mut picks: Vec<usize> = (0..n).collect();
        for i in 0..k {
            let j = i + rng.below(n - i);
            picks.swap(i, j);
        }
        let mut centroids: Vec<f32> =
            picks[..k].iter().flat_map(|&r| sample[r * dim..(r + 1) * dim].to_vec()).collect();
        let mut scores = vec![0.0f32; n.min(8192) * k];
        let mut assign = vec![0usize; n];
        for _ in 0..KMEANS_ITERATIONS {
            for (chunk_i, chunk) in sample.chunks(8192 * dim).enumerate() {
                let rows = chunk.len() / dim;
                let s = &mut scores[..rows * k];
                matmul_nt(chunk, &centroids, dim, s);
                for r in 0..rows {
                    assign[chunk_i * 8192 + r] = argmax(&s[r * k..(r + 1) * k]);
                }
            }
            let mut sums = vec![0.0f32; k * dim];
            let mut counts = vec![0usize; k];
            for (r, &c) in assign.iter().enumerate() {
                counts[c] += 1;
                for (s, v) in sums[c * dim..(c + 1) * dim].iter_mut().zip(&sample[r * dim..(r + 1) * dim]) {
                    *s += v;
                }
            }
            for c in 0..k {
                let dst = &mut centroids[c * dim..(c + 1) * dim];
                if counts[c] == 0 {
                    // An empty cluster takes a random row: every centroid stays useful.
                    let r = rng.below(n);
                    dst.copy_from_slice(&sample[r * dim..(r + 1) * dim]);
                } else {
                    dst.copy_from_slice(&sums[c * dim..(c + 1) * dim]);
                }
                normalize(dst);
            }
        }
        Codebook { dim, centroids }
    }

    pub(crate) fn len(&self) -> usize {
        self.centroids.len() / self.dim
    }

    /// The distinct centroids the rows of a page (`rows × dim`) fall into, ascending.
    pub(crate) fn codes(&self, page: &[f32], scratch: &mut Vec<f32>) -> Box<[u16]> {
        let (rows, k) = (page.len() / self.dim, self.len());
        scratch.resize(rows * k, 0.0);
        matmul_nt(page, &self.centroids, self.dim, scratch);
        let mut codes: Vec<u16> = (0..rows).map(|r| argmax(&scratch[r * k..(r + 1) * k]) as u16).collect();
        codes.sort_unstable();
        codes.dedup();
        codes.into_boxed_slice()
    }

    /// Query × centroid dot products, laid out centroid-major with one lane per query row (`k × lanes`,
    /// lanes = query rows rounded up to 16; padding lanes 0).
    pub(crate) fn table(&self, query: &[f32]) -> ScoreTable {
        let (nq, k) = (query.len() / self.dim, self.len());
        let lanes = nq.div_ceil(16) * 16;
        let mut qc = vec![0.0f32; nq * k];
        matmul_nt(query, &self.centroids, self.dim, &mut qc);
        let mut values = vec![0.0f32; k * lanes];
        for q in 0..nq {
            for c in 0..k {
                values[c * lanes + q] = qc[q * k + c];
            }
        }
        ScoreTable { nq, lanes, values }
    }
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

/// See [`Codebook::table`].
pub(crate) struct ScoreTable {
    nq: usize,
    lanes: usize,
    values: Vec<f32>,
}

impl ScoreTable {
    /// The coarse score of a page with these codes.
    pub(crate) fn score(&self, codes: &[u16]) -> f32 {
        match self.lanes {
            16 => self.score_lanes::<16>(codes),
            32 => self.score_lanes::<32>(codes),
            48 => self.score_lanes::<48>(codes),
            64 => self.score_lanes::<64>(codes),
            _ => {
                let mut best = vec![f32::NEG_INFINITY; self.lanes];
                for &c in codes {
                    let row = &self.values[c as usize * self.lanes..][..self.lanes];
                    for (b, v) in best.iter_mut().zip(row) {
                        *b = b.max(*v);
                    }
                }
                best[..self.nq].iter().sum()
            }
        }
    }

    fn score_lanes<const L: usize>(&self, codes: &[u16]) -> f32 {
        let mut best = [f32::NEG_INFINITY; L];
        for &c in codes {
            let row: &[f32; L] = self.values[c as usize * L..][..L].try_into().expect("L lanes");
            for i in 0..L {
                best[i] = best[i].max(row[i]);
            }
        }
        best[..self.nq].iter().sum()
    }
}

/// The codebook and the codes of the pages it covers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Coarse {
    pub(crate) codebook: Codebook,
    /// Rows in the index when the codebook was trained (it is retrained once the index has grown well past it).
    pub(crate) trained_rows: usize,
    pub(crate) codes: HashMap<u64, std::sync::Arc<[u16]>>,
}

impl Coarse {
    /// Writes `coarse.bin` atomically (a new file renamed over the old).
    pub(crate) fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(COARSE_FILE);
        let tmp = dir.join(format!("{COARSE_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut w = BufWriter::new(std::fs::File::create(&tmp)?);
            w.write_all(MAGIC)?;
            for v in [self.codebook.dim, self.codebook.len(), self.trained_rows, self.codes.len()] {
                w.write_all(&(v as u64).to_le_bytes())?;
            }
            for c in &self.codebook.centroids {
                w.write_all(&c.to_le_bytes())?;
            }
            let mut ids: Vec<&u64> = self.codes.keys().collect();
            ids.sort_unstable();
            for id in ids {
                let codes = &self.codes[id];
                w.write_all(&id.to_le_bytes())?;
                w.write_all(&(codes.len() as u32).to_le_bytes())?;
                for c in codes.iter() {
                    w.write_all(&c.to_le_bytes())?;
                }
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
            let mut u64s = [0u64; 4];
            for v in &mut u64s {
                let mut b = [0u8; 8];
                r.read_exact(&mut b)?;
                *v = u64::from_le_bytes(b);
            }
            let [file_dim, k, trained_rows, pages] = u64s.map(|v| v as usize);
            if file_dim != dim || k == 0 || k > u16::MAX as usize + 1 || pages > 1 << 32 {
                return Err(bad());
            }
            let mut centroids = vec![0.0f32; k * dim];
            let mut b4 = [0u8; 4];
            for c in &mut centroids {
                r.read_exact(&mut b4)?;
                *c = f32::from_le_bytes(b4);
            }
            let mut codes = HashMap::with_capacity(pages);
            let mut b8 = [0u8; 8];
            let mut b2 = [0u8; 2];
            for _ in 0..pages {
                r.read_exact(&mut b8)?;
                r.read_exact(&mut b4)?;
                let n = u32::from_le_bytes(b4) as usize;
                if n > k {
                    return Err(bad());
                }
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    r.read_exact(&mut b2)?;
                    let c = u16::from_le_bytes(b2);
                    if c as usize >= k {
                        return Err(bad());
                    }
                    v.push(c);
                }
                codes.insert(u64::from_le_bytes(b8), v.into());
            }
            Ok(Coarse { codebook: Codebook { dim, centroids }, trained_rows, codes })
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
        let sample = rows(500, dim, 3);
        let book = Codebook::train(&sample, dim, 32);
        assert_eq!(book.len(), 32);
        let page = rows(40, dim, 4);
        let query = rows(5, dim, 5);
        let mut scratch = Vec::new();
        let codes = book.codes(&page, &mut scratch);
        assert!(codes.windows(2).all(|w| w[0] < w[1]));
        let replaced: Vec<f32> =
            codes.iter().flat_map(|&c| book.centroids[c as usize * dim..][..dim].to_vec()).collect();
        let want = colqwen_core::maxsim(&query, &replaced, dim);
        let got = book.table(&query).score(&codes);
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    }

    #[test]
    fn saves_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let dim = 8;
        let book = Codebook::train(&rows(100, dim, 6), dim, 16);
        let mut scratch = Vec::new();
        let codes = HashMap::from([(7u64, book.codes(&rows(9, dim, 7), &mut scratch).into())]);
        let coarse = Coarse { codebook: book, trained_rows: 100, codes };
        coarse.save(dir.path()).unwrap();
        assert_eq!(Coarse::load(dir.path(), dim), Some(coarse));
        assert_eq!(Coarse::load(dir.path(), dim + 1), None);
        std::fs::write(dir.path().join(COARSE_FILE), b"garbage").unwrap();
        assert_eq!(Coarse::load(dir.path(), dim), None);
    }
}
