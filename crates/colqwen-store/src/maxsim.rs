//! Late-interaction scoring (ColBERT MaxSim, <https://arxiv.org/abs/2004.12832>).

/// Scalar reference MaxSim: for every query row, the largest dot product with any document row,
/// summed over query rows. Both inputs are row-major `rows × dim`. Plain loops, meant as a test
/// oracle. A trailing partial row is ignored; an empty document scores 0; `dim == 0` scores 0.
pub fn maxsim(query: &[f32], doc: &[f32], dim: usize) -> f32 {
    if dim == 0 || doc.len() < dim {
        return 0.0;
    }
    let mut total = 0.0f32;
    for q in query.chunks_exact(dim) {
        let mut best = f32::NEG_INFINITY;
        for d in doc.chunks_exact(dim) {
            let mut dot = 0.0f32;
            for i in 0..dim {
                dot += q[i] * d[i];
            }
            if dot > best {
                best = dot;
            }
        }
        total += best;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::maxsim;

    #[test]
    fn hand_computed() {
        // q = [[1,0],[0,1]], d = [[1,0],[0.5,0.5]] -> max(1,0.5) + max(0,0.5) = 1.5
        let q = [1.0, 0.0, 0.0, 1.0];
        let d = [1.0, 0.0, 0.5, 0.5];
        assert_eq!(maxsim(&q, &d, 2), 1.5);
        assert_eq!(maxsim(&q, &[], 2), 0.0);
        assert_eq!(maxsim(&q, &d, 0), 0.0);
    }
}
