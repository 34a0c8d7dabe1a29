//! Multi-vectors and MaxSim (fact sheet §7.1).

/// One page's or query's embedding: `rows × dim` row-major f32 (dim 128 for ColQwen2.5).
#[derive(Debug, Clone, PartialEq)]
pub struct MultiVector {
    /// Number of vectors (sequence positions).
    pub rows: usize,
    /// Width of each vector.
    pub dim: usize,
    /// `rows · dim` values.
    pub data: Vec<f32>,
}

impl MultiVector {
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Iterator over rows.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim)
    }
}

/// MaxSim: `Σ_a max_c ⟨q_a, d_c⟩` over the real rows of both (colpali `score_multi_vector` without its
/// zero-row padding, which would add a 0 candidate that depends on the other documents of the block,
/// fact sheet §7.1). Plain loops: the oracle that faster scorers are tested against.
pub fn maxsim(query: &MultiVector, doc: &MultiVector) -> f32 {
    assert_eq!(query.dim, doc.dim, "query and document widths differ");
    query
        .rows()
        .map(|q| doc.rows().map(|d| q.iter().zip(d).map(|(a, b)| a * b).sum::<f32>()).fold(f32::NEG_INFINITY, f32::max))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maxsim_sums_best_matches() {
        let q = MultiVector { rows: 2, dim: 2, data: vec![1.0, 0.0, 0.0, 1.0] };
        let d = MultiVector { rows: 3, dim: 2, data: vec![0.5, 0.5, 0.9, -0.1, -0.2, -0.3] };
        assert!((maxsim(&q, &d) - (0.9 + 0.5)).abs() < 1e-6);
        // A query row whose every similarity is negative keeps its negative maximum.
        let q2 = MultiVector { rows: 1, dim: 2, data: vec![-1.0, -1.0] };
        let d2 = MultiVector { rows: 2, dim: 2, data: vec![0.5, 0.5, 0.9, -0.1] };
        assert!((maxsim(&q2, &d2) - (-0.8)).abs() < 1e-6);
    }
}
