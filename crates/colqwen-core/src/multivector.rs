//! Multi-vectors, MaxSim and the pooled vector (fact sheet §7.1 of the parity contract).

use serde::{Deserialize, Serialize};

/// One page's or query's embedding: `rows × dim` row-major f32 (dim 128 for ColQwen2.5). This is the shape
/// that travels from the model to the store's border; each backend stores it its own way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiVector {
    /// Number of vectors (sequence positions).
    pub rows: usize,
    /// Width of each vector.
    pub dim: usize,
    /// `rows · dim` values.
    pub data: Vec<f32>,
}

impl MultiVector {
    /// From row-major values; `None` unless `data` is a non-empty multiple of `dim`.
    pub fn new(data: Vec<f32>, dim: usize) -> Option<Self> {
        (dim > 0 && !data.is_empty() && data.len().is_multiple_of(dim)).then(|| Self {
            rows: data.len() / dim,
            dim,
            data,
        })
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Iterator over rows.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim)
    }

    /// MaxSim of `self` (the query) against `doc`; see [`maxsim`].
    pub fn maxsim(&self, doc: &MultiVector) -> f32 {
        assert_eq!(self.dim, doc.dim, "query and document widths differ");
        maxsim(&self.data, &doc.data, self.dim)
    }
}

/// MaxSim (ColBERT late interaction, <https://arxiv.org/abs/2004.12832>): for every query row the largest dot
/// product with any document row, summed over query rows. Both inputs are row-major `rows × dim`.
///
/// Over the real rows only: colpali-engine's `score_multi_vector` pads documents of a block with zero rows,
/// which adds a 0 candidate that depends on the other documents of the block (fact sheet §7.1); we do not
/// reproduce that batch dependence. Plain loops: the oracle every faster scorer is tested against. A
/// trailing partial row is ignored; an empty document or `dim == 0` scores 0.
pub fn maxsim(query: &[f32], doc: &[f32], dim: usize) -> f32 {
    if dim == 0 || doc.len() < dim {
        return 0.0;
    }
    query
        .chunks_exact(dim)
        .map(|q| {
            doc.chunks_exact(dim)
                .map(|d| q.iter().zip(d).map(|(a, b)| a * b).sum::<f32>())
                .fold(f32::NEG_INFINITY, f32::max)
        })
        .sum()
}

/// The single vector standing for a page in a first-stage search: the L2-normalised mean of its rows (all
/// zeros if the mean is zero).
pub fn pooled(vectors: &[f32], dim: usize) -> Vec<f32> {
    let mut mean = vec![0.0f32; dim];
    let mut rows = 0usize;
    for row in vectors.chunks_exact(dim) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v;
        }
        rows += 1;
    }
    let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt();
    if rows > 0 && norm > 0.0 {
        for m in &mut mean {
            *m /= norm;
        }
    }
    mean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maxsim_sums_best_matches() {
        let q = MultiVector { rows: 2, dim: 2, data: vec![1.0, 0.0, 0.0, 1.0] };
        let d = MultiVector { rows: 3, dim: 2, data: vec![0.5, 0.5, 0.9, -0.1, -0.2, -0.3] };
        assert!((q.maxsim(&d) - (0.9 + 0.5)).abs() < 1e-6);
        // A query row whose every similarity is negative keeps its negative maximum.
        let q2 = MultiVector { rows: 1, dim: 2, data: vec![-1.0, -1.0] };
        let d2 = MultiVector { rows: 2, dim: 2, data: vec![0.5, 0.5, 0.9, -0.1] };
        assert!((q2.maxsim(&d2) - (-0.8)).abs() < 1e-6);
    }

    #[test]
    fn hand_computed() {
        // q = [[1,0],[0,1]], d = [[1,0],[0.5,0.5]] -> max(1,0.5) + max(0,0.5) = 1.5
        let q = [1.0, 0.0, 0.0, 1.0];
        let d = [1.0, 0.0, 0.5, 0.5];
        assert_eq!(maxsim(&q, &d, 2), 1.5);
        assert_eq!(maxsim(&q, &[], 2), 0.0);
        assert_eq!(maxsim(&q, &d, 0), 0.0);
    }

    #[test]
    fn pooled_is_unit_mean() {
        let p = pooled(&[3.0, 0.0, 1.0, 0.0], 2);
        assert_eq!(p, vec![1.0, 0.0]);
        assert_eq!(pooled(&[1.0, -1.0, -1.0, 1.0], 2), vec![0.0, 0.0]);
        assert!(MultiVector::new(vec![1.0; 3], 2).is_none());
        assert_eq!(MultiVector::new(vec![1.0; 4], 2).map(|m| m.rows), Some(2));
    }
}
