//! MaxSim's reduction on a candle device, for the colqwen library's exact search on the GPU (it lives here
//! because this crate builds the CUDA kernels). After the GEMM `Q · Pᵀ` of `nq` query rows against `n` pages of
//! `rows` rows each (`[nq, n·rows]`), each page's score is the sum over query rows of its best row.

#[cfg(feature = "cuda")]
use candle_core::Device;
use candle_core::{DType, Result, Tensor};

/// `scores` `[nq, n·rows]` (f16 or f32) → `[n]` f32: `Σ_q max_r scores[q, p·rows + r]`. On CUDA one fused kernel
/// (one warp per page); elsewhere candle's reductions, which on a GPU cost one thread block per (query row,
/// page) and were 8–10× slower than the GEMM itself.
pub fn maxsim_reduce(scores: &Tensor, rows: usize) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if matches!(scores.device(), Device::Cuda(_)) && matches!(scores.dtype(), DType::F16 | DType::F32) {
        return crate::kernels::maxsim_reduce(&scores.contiguous()?, rows);
    }
    generic(scores, rows)
}

/// The same with candle's reductions (any device); the CUDA kernel's reference.
pub fn generic(scores: &Tensor, rows: usize) -> Result<Tensor> {
    let (nq, cols) = scores.dims2()?;
    if rows == 0 || cols % rows != 0 {
        candle_core::bail!("maxsim_reduce: {cols} columns are not whole pages of {rows} rows")
    }
    scores.reshape((nq, cols / rows, rows))?.max(2)?.to_dtype(DType::F32)?.sum(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn sums_the_best_row_of_each_page() -> Result<()> {
        // 2 query rows, 2 pages of 3 rows.
        let s = Tensor::new(&[[1f32, 5., 2., -1., -3., -2.], [0., 0., 4., 2., 7., 1.]], &Device::Cpu)?;
        assert_eq!(maxsim_reduce(&s, 3)?.to_vec1::<f32>()?, vec![5. + 4., -1. + 7.]);
        assert!(maxsim_reduce(&s, 4).is_err());
        Ok(())
    }

    /// The kernel against candle's reductions on a GPU (skipped without one).
    #[cfg(feature = "cuda")]
    #[test]
    fn kernel_matches_generic() -> Result<()> {
        let Ok(dev) = Device::new_cuda(0) else { return Ok(()) };
        for dtype in [DType::F16, DType::F32] {
            let s = Tensor::randn(0f32, 1., (7, 5 * 48), &dev)?.to_dtype(dtype)?;
            let a = maxsim_reduce(&s, 48)?.to_vec1::<f32>()?;
            let b = generic(&s, 48)?.to_vec1::<f32>()?;
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-4, "{x} vs {y}");
            }
        }
        Ok(())
    }
}
