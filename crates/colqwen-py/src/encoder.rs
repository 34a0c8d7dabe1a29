//! `colqwen._core.Encoder`: one loaded model (`colqwen::Engine`, the same the index uses) for queries and page
//! images, and MaxSim between batches of multi-vectors.

use std::sync::Arc;

use colqwen::core::{MultiVector, PageEmbedder, maxsim as maxsim_pair};
use colqwen::{Engine, Error};
use numpy::{PyArray2, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rayon::prelude::*;

use crate::arrays;
use crate::errors::{IntoPy, usage};
use crate::index::ModelArgs;

/// Queries embedded per forward pass (between two checks for Ctrl-C).
const QUERY_BATCH: usize = 32;

/// A loaded model.
#[pyclass(module = "colqwen._core", frozen)]
pub(crate) struct Encoder {
    engine: Arc<Engine>,
}

/// Runs `embed` over `items` in batches of `batch` with the GIL released, checking for signals between batches.
fn batched<T: Sync>(
    py: Python<'_>,
    items: &[T],
    batch: usize,
    embed: impl Fn(&[T]) -> colqwen::Result<Vec<MultiVector>> + Sync,
) -> PyResult<Vec<MultiVector>> {
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(batch.max(1)) {
        out.extend(py.detach(|| embed(chunk)).py_err()?);
        py.check_signals()?;
    }
    Ok(out)
}

#[pymethods]
impl Encoder {
    /// Loads `model` (a Hugging Face id or a local folder) on `device` in `dtype`.
    #[staticmethod]
    #[pyo3(signature = (model, *, device="auto", dtype="auto", revision=None, base_model=None, offline=false,
        hf_token=None, max_visual_tokens=None))]
    #[allow(clippy::too_many_arguments)]
    fn load(
        py: Python<'_>,
        model: String,
        device: &str,
        dtype: &str,
        revision: Option<String>,
        base_model: Option<String>,
        offline: bool,
        hf_token: Option<String>,
        max_visual_tokens: Option<usize>,
    ) -> PyResult<Self> {
        let args = ModelArgs {
            model: Some(model.clone()),
            device,
            dtype,
            revision,
            base_model,
            offline,
            hf_token,
            max_visual_tokens,
            replicas: 1,
        };
        let runtimes = args.runtimes()?;
        let Some(runtime) = runtimes.first() else { return Err(crate::errors::to_py(&Error::NoDevice)) };
        let engine = py.detach(|| Engine::load(&model, &args.engine(), runtime)).py_err()?;
        Ok(Self { engine: Arc::new(engine) })
    }

    /// The identity an index records: a Hub id (with revision) or the folder's absolute path.
    #[getter]
    fn model_id(&self) -> String {
        self.engine.model_id().to_string()
    }

    /// "ColQwen2.5", "ColQwen3", "ColQwen3.5".
    #[getter]
    fn family(&self) -> String {
        self.engine.family().to_string()
    }

    /// Width of one vector.
    #[getter]
    fn dim(&self) -> usize {
        self.engine.embedding_dim()
    }

    /// "cpu", "cuda:0", "metal".
    #[getter]
    fn device(&self) -> String {
        self.engine.device_name()
    }

    /// Pages per forward pass that suit the device.
    #[getter]
    fn default_batch_size(&self) -> usize {
        self.engine.default_batch_size()
    }

    /// One multi-vector `[tokens, dim]` per query.
    #[pyo3(signature = (texts, batch_size=None))]
    fn encode_queries<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        batch_size: Option<usize>,
    ) -> PyResult<Vec<Bound<'py, PyArray2<f32>>>> {
        if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(crate::errors::raise(
                "empty_query",
                format!("query {i} is empty"),
                Some("give each query some text".into()),
            ));
        }
        let vectors = batched(py, &texts, batch_size.unwrap_or(QUERY_BATCH), |chunk| {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            self.engine.embed_queries(&refs).map_err(Error::Embed)
        })?;
        vectors.into_iter().map(|v| arrays::multivector(py, v)).collect()
    }

    /// One multi-vector `[tokens, dim]` per page image, each given as `(rgb_bytes, width, height)`.
    #[pyo3(signature = (images, batch_size=None))]
    fn encode_images<'py>(
        &self,
        py: Python<'py>,
        images: Vec<(Bound<'py, PyBytes>, u32, u32)>,
        batch_size: Option<usize>,
    ) -> PyResult<Vec<Bound<'py, PyArray2<f32>>>> {
        let mut decoded = Vec::with_capacity(images.len());
        for (i, (bytes, w, h)) in images.iter().enumerate() {
            let data = bytes.as_bytes().to_vec();
            let image = image::RgbImage::from_raw(*w, *h, data).ok_or_else(|| {
                usage(
                    format!("image {i}: {} bytes are not {w}×{h} RGB pixels", bytes.as_bytes().len()),
                    "pass RGB images",
                )
            })?;
            decoded.push(image);
        }
        let batch = batch_size.unwrap_or_else(|| self.engine.default_batch_size());
        let vectors = batched(py, &decoded, batch, |chunk| {
            let inputs = chunk
                .par_iter()
                .map(|img| self.engine.prepare(img).map_err(Error::Embed))
                .collect::<colqwen::Result<Vec<_>>>()?;
            self.engine.embed_pages(inputs).map_err(Error::Embed)
        })?;
        vectors.into_iter().map(|v| arrays::multivector(py, v)).collect()
    }

    /// The query's tokens as text, one per row of its multi-vector.
    fn query_tokens(&self, py: Python<'_>, query: String) -> PyResult<Vec<String>> {
        py.detach(|| self.engine.query_tokens(&query).map_err(Error::Embed)).py_err()
    }
}

/// MaxSim of every query against every document (`float32` arrays `[rows, dim]`, C-contiguous): a
/// `[queries, documents]` array; the sum over query rows of the best dot product with any document row.
#[pyfunction]
pub(crate) fn maxsim<'py>(
    py: Python<'py>,
    queries: Vec<PyReadonlyArray2<'py, f32>>,
    documents: Vec<PyReadonlyArray2<'py, f32>>,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    fn slices<'a>(arrays: &'a [PyReadonlyArray2<'_, f32>], what: &str) -> PyResult<Vec<(&'a [f32], usize)>> {
        arrays
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let dim = a.shape()[1];
                a.as_slice().map(|s| (s, dim)).map_err(|_| {
                    usage(format!("{what} {i} is not a contiguous array"), "pass numpy.ascontiguousarray(x)")
                })
            })
            .collect()
    }
    let q = slices(&queries, "query")?;
    let d = slices(&documents, "document")?;
    let dims: Vec<usize> = q.iter().chain(&d).map(|&(_, dim)| dim).collect();
    if dims.windows(2).any(|w| w[0] != w[1]) {
        return Err(usage("queries and documents have vectors of different widths", "embed both with the same model"));
    }
    let (nq, nd) = (q.len(), d.len());
    let scores: Vec<f32> = py
        .detach(|| (0..nq * nd).into_par_iter().map(|i| maxsim_pair(q[i / nd].0, d[i % nd].0, q[i / nd].1)).collect());
    arrays::grid(py, nq, nd, scores)
}
