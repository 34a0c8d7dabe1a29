//! Matrix products of the coarse stage (k-means, code assignment) and of token pooling (row distances).

/// `out (m × n, row-major) = A·B` with `A` (`m × k`) and `B` (`k × n`) given by their (row, column) strides:
/// the `gemm` crate (which candle uses too: runtime-dispatched AVX-512/AVX2/NEON kernels), one thread.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul<T: Copy + From<f32> + 'static>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    a_strides: (usize, usize),
    b: &[T],
    b_strides: (usize, usize),
    out: &mut [T],
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(k > 0 && out.len() == m * n, "matmul shapes");
    let last = |rows: usize, cols: usize, s: (usize, usize)| (rows - 1) * s.0 + (cols - 1) * s.1;
    assert!(last(m, k, a_strides) < a.len() && last(k, n, b_strides) < b.len(), "matmul strides");
    // SAFETY: every element addressed by the shapes and strides is inside its slice (checked above); `gemm`
    // takes (column, row) strides.
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
            a_strides.1 as isize,
            a_strides.0 as isize,
            b.as_ptr(),
            b_strides.1 as isize,
            b_strides.0 as isize,
            T::from(0.0),
            T::from(1.0),
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
