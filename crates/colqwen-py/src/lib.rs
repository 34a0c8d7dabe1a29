//! colqwen for Python: the extension module `colqwen._core`, a thin layer over the library.
//!
//! - [`index::Index`] wraps the library's `Service` (open or create an index folder or a Weaviate collection,
//!   ingest with events and a cancel flag, search, documents, delete, stats, previews, similarity maps).
//! - [`ingest::IngestRun`] is one running ingest: its events (document queued, pages stored, failures, done)
//!   come out one at a time, so Python draws the progress bar and yields per-file results, and Ctrl-C stops it
//!   the way it stops `colqwen ingest` (the batch in hand is stored and flushed; the index stays intact).
//! - [`encoder::Encoder`] wraps one loaded model (`colqwen::Engine`): queries and page images to multi-vectors,
//!   and MaxSim between batches.
//!
//! Nothing here decides behaviour the library owns: the pure-Python package (`python/colqwen`) shapes the
//! results into its types and reads the environment (`HF_TOKEN`, the data folder is asked of `dirs` here, as the
//! CLI does). Every call that waits on the model or the disk releases the GIL; the long ones (ingest, encoding
//! many inputs) check for signals between steps, so Ctrl-C raises `KeyboardInterrupt` within ≈ 50 ms of the
//! step in hand. Library errors become the exception classes of `colqwen.errors`, one per error kind
//! (`colqwen::Error::kind`), each carrying the library's `hint`.

mod arrays;
mod encoder;
mod errors;
mod index;
mod ingest;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<index::Index>()?;
    m.add_class::<ingest::IngestRun>()?;
    m.add_class::<encoder::Encoder>()?;
    m.add_function(wrap_pyfunction!(encoder::maxsim, m)?)?;
    m.add_function(wrap_pyfunction!(ingest::discover, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("CUDA", cfg!(feature = "cuda"))?;
    m.add("DEFAULT_MODEL", colqwen::model::DEFAULT_MODEL_ID)?;
    Ok(())
}
