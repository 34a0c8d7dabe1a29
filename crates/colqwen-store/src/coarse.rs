//! The coarse stage of two-stage search: every page pooled into [`POOLED_ROWS`] vectors ("several pooled vectors
//! per page"), so that its coarse score is MaxSim against 16 rows instead of ~750, computed by the same exact
//! kernel (16 rows are one block of its layout): about 1/40 of an exact scan. The best `prefetch` pages, and every
//! page not pooled yet, are then ranked exactly.
//!
//! Pooling is spherical k-means inside the page (colpali-engine pools tokens hierarchically for storage; here the
//! pooled vectors only choose candidates, the full vectors rank them). It needs nothing global (no codebook to
//! train or retrain), so a page can be pooled the moment it is written. A page's vectors depend only on its point
//! id (file content, page, model, preprocessing), so pooled vectors are kept by id. Everything here is derived
//! data: `coarse.bin` is rebuilt if missing or unreadable.
//!
//! An earlier version used PLAID's centroid interaction (a global k-means codebook, pages as sets of centroid ids):
//! on model embeddings of real pages its recall@10 was 0.54 (text) and 0.29 (known-item) at 256 candidates of 10k
//! pages (`bench/results.md`), because the tiny model's page rows share few, broad centroids.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};

pub(crate) const COARSE_FILE: &str = "coarse.bin";
const MAGIC: &[u8; 8] = b"CQPOOL01";
/// Pooled vectors per page: one block of the kernel's layout.
pub(crate) const POOLED_ROWS: usize = crate::kernel::BLOCK;
const KMEANS_ITERATIONS: usize = 6;

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

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
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

/// A page's rows (`rows × dim`, row-major) pooled into [`POOLED_ROWS`] unit vectors by spherical k-means
/// (initial centroids: evenly strided rows; [`KMEANS_ITERATIONS`] rounds; an empty cluster keeps its previous
/// centroid), returned in the kernel's block layout (one block of 16 rows). A page with fewer rows keeps them
/// all (padded by repetition, which cannot change a maximum).
pub(crate) fn pool(page: &[f32], dim: usize) -> Vec<f32> {
    let rows = page.len() / dim;
    let k = POOLED_ROWS.min(rows);
    let mut centroids: Vec<f32> = (0..k).flat_map(|i| page[(i * rows / k) * dim..][..dim].to_vec()).collect();
    if rows > k {
        let mut scores = vec![0.0f32; rows * k];
        for _ in 0..KMEANS_ITERATIONS {
            matmul_nt(page, &centroids, dim, &mut scores);
            let mut sums = vec![0.0f32; k * dim];
            let mut counts = vec![0usize; k];
            for r in 0..rows {
                let c = argmax(&scores[r * k..(r + 1) * k]);
                counts[c] += 1;
                for (s, v) in sums[c * dim..(c + 1) * dim].iter_mut().zip(&page[r * dim..(r + 1) * dim]) {
                    *s += v;
                }
            }
            for c in 0..k {
                if counts[c] > 0 {
                    let dst = &mut centroids[c * dim..(c + 1) * dim];
                    dst.copy_from_slice(&sums[c * dim..(c + 1) * dim]);
                    normalize(dst);
                }
            }
        }
    }
    let mut out = Vec::with_capacity(POOLED_ROWS * dim);
    crate::kernel::layout::encode::<f32>(&centroids, dim, &mut out);
    out
}

/// The pooled vectors of the pages, by point id, as saved in `coarse.bin`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Coarse {
    pub(crate) dim: usize,
    pub(crate) pooled: HashMap<u64, Arc<[f32]>>,
}

impl Coarse {
    /// Writes `coarse.bin` atomically (a new file renamed over the old).
    pub(crate) fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(COARSE_FILE);
        let tmp = dir.join(format!("{COARSE_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut w = BufWriter::new(std::fs::File::create(&tmp)?);
            w.write_all(MAGIC)?;
            for v in [self.dim, POOLED_ROWS, self.pooled.len()] {
                w.write_all(&(v as u64).to_le_bytes())?;
            }
            let mut ids: Vec<&u64> = self.pooled.keys().collect();
            ids.sort_unstable();
            for id in ids {
                w.write_all(&id.to_le_bytes())?;
                for v in self.pooled[id].iter() {
                    w.write_all(&v.to_le_bytes())?;
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
        let mut read = || -> std::io::Result<Coarse> {
            let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not a coarse index of this build");
            let mut magic = [0u8; 8];
            r.read_exact(&mut magic)?;
            if &magic != MAGIC {
                return Err(bad());
            }
            let mut u64s = [0u64; 3];
            for v in &mut u64s {
                let mut b = [0u8; 8];
                r.read_exact(&mut b)?;
                *v = u64::from_le_bytes(b);
            }
            let [file_dim, rows, pages] = u64s.map(|v| v as usize);
            if file_dim != dim || rows != POOLED_ROWS || pages > 1 << 32 {
                return Err(bad());
            }
            let mut pooled = HashMap::with_capacity(pages);
            let (mut b8, mut b4) = ([0u8; 8], [0u8; 4]);
            for _ in 0..pages {
                r.read_exact(&mut b8)?;
                let mut v = Vec::with_capacity(rows * dim);
                for _ in 0..rows * dim {
                    r.read_exact(&mut b4)?;
                    v.push(f32::from_le_bytes(b4));
                }
                pooled.insert(u64::from_le_bytes(b8), v.into());
            }
            Ok(Coarse { dim, pooled })
        };
        match read() {
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
        let mut z = seed;
        let mut v: Vec<f32> = (0..n * dim)
            .map(|_| {
                z = z.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (z >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
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
    fn pooled_vectors_are_unit_centroids_of_the_page() {
        let dim = 16;
        let page = rows(200, dim, 3);
        let pooled = pool(&page, dim);
        assert_eq!(pooled.len(), POOLED_ROWS * dim);
        let rows_major = crate::kernel::layout::decode(&pooled, POOLED_ROWS, dim);
        for c in rows_major.chunks_exact(dim) {
            let n: f32 = c.iter().map(|x| x * x).sum();
            assert!((n - 1.0).abs() < 1e-4, "{n}");
        }
        // Every row is closer to some centroid than a random unit vector is on average.
        let mut best = vec![0.0; 200];
        let q = page.clone();
        let pooled_score = <f32 as crate::kernel::Stored>::maxsim(crate::kernel::Isa::Portable, &q, &pooled, dim, &mut best);
        assert!(pooled_score > 0.3 * 200.0, "{pooled_score}");
        // A short page keeps its rows.
        let short = rows(3, dim, 4);
        let p = pool(&short, dim);
        assert_eq!(crate::kernel::layout::decode(&p, 3, dim), short);
    }

    #[test]
    fn saves_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let dim = 8;
        let pooled = HashMap::from([(7u64, Arc::<[f32]>::from(pool(&rows(40, dim, 6), dim)))]);
        let coarse = Coarse { dim, pooled };
        coarse.save(dir.path()).unwrap();
        assert_eq!(Coarse::load(dir.path(), dim), Some(coarse));
        assert_eq!(Coarse::load(dir.path(), dim + 1), None);
        std::fs::write(dir.path().join(COARSE_FILE), b"garbage").unwrap();
        assert_eq!(Coarse::load(dir.path(), dim), None);
    }
}
