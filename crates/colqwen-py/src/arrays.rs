//! Multi-vectors as numpy arrays: the `Vec<f32>` the model made is handed to numpy as the array's buffer
//! (no copy), shaped `[rows, dim]`.

use colqwen::core::MultiVector;
use numpy::PyArray2;
use numpy::ndarray::Array2;
use pyo3::prelude::*;

/// A multi-vector as a `float32` array `[rows, dim]` owning the vector's buffer.
pub(crate) fn multivector<'py>(py: Python<'py>, mv: MultiVector) -> PyResult<Bound<'py, PyArray2<f32>>> {
    grid(py, mv.rows, mv.dim, mv.data)
}

/// `data` (row-major) as a `float32` array `[rows, cols]` owning it.
pub(crate) fn grid<'py>(
    py: Python<'py>,
    rows: usize,
    cols: usize,
    data: Vec<f32>,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let array = Array2::from_shape_vec((rows, cols), data)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("array of {rows}×{cols}: {e}")))?;
    Ok(PyArray2::from_owned_array(py, array))
}
