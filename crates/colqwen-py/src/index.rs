//! `colqwen._core.Index`: one open index (a folder or a Weaviate collection) and, unless opened without it,
//! its model — the library's `Service`, shared with the ingests it starts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use colqwen::core::{SearchMode, VectorStorage};
use colqwen::model::{HubOptions, LoadOptions};
use colqwen::weaviate::{Location, WeaviateConfig};
use colqwen::{
    DTypeChoice, DeviceChoice, EngineOptions, IngestOptions, Runtime, SearchDevice, SearchOptions, Service,
    ServiceOptions,
};
use numpy::{PyArray2, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::arrays;
use crate::errors::{IntoPy, usage};
use crate::ingest::IngestRun;

/// A hit as Python gets it: `(score, doc_id, source_path, page_number, page_count, preview_path)`.
type HitRow = (f32, String, String, usize, usize, Option<PathBuf>);
/// A document as Python gets it: `(doc_id, source_path, sha256, page_count, stored_pages)`.
type DocRow = (String, String, String, usize, usize);

/// An open index. Methods release the GIL while they wait on the model or the disk.
#[pyclass(module = "colqwen._core", frozen)]
pub(crate) struct Index {
    service: Arc<Service>,
    /// The folder, or `weaviate://HOST:PORT/Collection`.
    location: String,
}

/// The model and where it runs, as the Python API names them.
pub(crate) struct ModelArgs<'a> {
    pub(crate) model: Option<String>,
    pub(crate) device: &'a str,
    pub(crate) dtype: &'a str,
    pub(crate) revision: Option<String>,
    pub(crate) base_model: Option<String>,
    pub(crate) offline: bool,
    pub(crate) hf_token: Option<String>,
    pub(crate) max_visual_tokens: Option<usize>,
    pub(crate) replicas: usize,
}

impl ModelArgs<'_> {
    pub(crate) fn engine(&self) -> EngineOptions {
        EngineOptions {
            model: self.model.clone(),
            base: self.base_model.clone(),
            hub: HubOptions {
                cache_dir: None,
                offline: self.offline,
                progress: false,
                token: self.hf_token.clone(),
                revision: self.revision.clone(),
            },
            load: LoadOptions { max_visual_tokens: self.max_visual_tokens, ..Default::default() },
        }
    }

    pub(crate) fn runtimes(&self) -> PyResult<Vec<Runtime>> {
        let devices = DeviceChoice::parse_list(self.device).map_err(|m| {
            usage(format!("device {m}"), "pass device=\"auto\", \"cpu\", \"cuda\", \"cuda:0\" or \"metal\"")
        })?;
        let dtype = DTypeChoice::parse(self.dtype)
            .map_err(|m| usage(format!("dtype {m}"), "pass dtype=\"auto\", \"f32\", \"bf16\" or \"f16\""))?;
        Runtime::resolve_all(&devices, dtype, self.replicas.max(1)).py_err()
    }
}

fn storage(s: &str) -> PyResult<VectorStorage> {
    serde_json::from_value(serde_json::Value::String(s.into())).map_err(|_| {
        usage(format!("storage {s:?}: expected f16, f32 or i8"), "pass storage=\"f16\", \"f32\" or \"i8\"")
    })
}

fn search_mode(mode: &str, prefetch: Option<usize>) -> PyResult<SearchMode> {
    match (mode, prefetch) {
        (_, Some(0)) | (_, Some(100_001..)) => {
            Err(usage("prefetch must be 1 to 100000", "leave prefetch out to use the index's own rerank size"))
        }
        ("auto", None) => Ok(SearchMode::Auto),
        ("exact", None) => Ok(SearchMode::Exact),
        ("auto" | "two_stage" | "two-stage", p) => Ok(SearchMode::TwoStage { prefetch: p }),
        ("exact", Some(_)) => {
            Err(usage("prefetch is the rerank size of two-stage search", "leave prefetch out for exact search"))
        }
        _ => Err(usage(
            format!("mode {mode:?}: expected auto, exact or two_stage"),
            "pass mode=\"auto\", \"exact\" or \"two_stage\"",
        )),
    }
}

/// A serde value as the Python object `json.loads` makes of it.
pub(crate) fn to_python<'py>(py: Python<'py>, value: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.getattr("loads")?.call1((value.to_string(),))
}

#[pymethods]
impl Index {
    /// Opens the index at `location` (a folder, or `weaviate://HOST:PORT/Collection`), creating it unless
    /// `create` is false, and loads its model unless `load_model` is false.
    #[staticmethod]
    #[pyo3(signature = (location, *, model=None, device="auto", dtype="auto", create=true, load_model=true,
        storage="f16", pool_factor=1, revision=None, base_model=None, offline=false, hf_token=None,
        weaviate_key=None, max_visual_tokens=None, search_device="auto", replicas=1, data_dir=None))]
    #[allow(clippy::too_many_arguments)]
    fn open(
        py: Python<'_>,
        location: String,
        model: Option<String>,
        device: &str,
        dtype: &str,
        create: bool,
        load_model: bool,
        storage: &str,
        pool_factor: u32,
        revision: Option<String>,
        base_model: Option<String>,
        offline: bool,
        hf_token: Option<String>,
        weaviate_key: Option<String>,
        max_visual_tokens: Option<usize>,
        search_device: &str,
        replicas: usize,
        data_dir: Option<PathBuf>,
    ) -> PyResult<Self> {
        let remote = if Location::is_weaviate(&location) {
            let mut config = WeaviateConfig::new(Location::parse(&location).map_err(colqwen::Error::Index).py_err()?);
            config.api_key = weaviate_key.filter(|k| !k.is_empty());
            Some(config)
        } else {
            None
        };
        let index_dir = match &remote {
            Some(config) => {
                let data = data_dir.or_else(dirs::data_dir).ok_or_else(|| {
                    usage("cannot find the user's data folder for the index's local state", "pass data_dir=")
                })?;
                colqwen::remote_state_dir(&data, &config.location)
            }
            None => PathBuf::from(&location),
        };
        let args =
            ModelArgs { model, device, dtype, revision, base_model, offline, hf_token, max_visual_tokens, replicas };
        let search_device = match search_device {
            "auto" => SearchDevice::Auto,
            "cpu" => SearchDevice::Cpu,
            other => {
                return Err(usage(
                    format!("search_device {other:?}: expected auto or cpu"),
                    "pass search_device=\"auto\" or \"cpu\"",
                ));
            }
        };
        let opts = ServiceOptions {
            index_dir: index_dir.clone(),
            remote: remote.clone(),
            engine: args.engine(),
            runtimes: if load_model { args.runtimes()? } else { Vec::new() },
            reserve_query_replica: false,
            storage: self::storage(storage)?,
            pool_factor,
            search_device,
        };
        let service = py.detach(|| -> colqwen::Result<Service> {
            match (load_model, &remote) {
                (true, _) if create => Service::open(&opts),
                (true, _) => Service::open_existing(&opts),
                (false, Some(config)) => Service::open_remote_index(&index_dir, config),
                (false, None) => Service::open_index(&index_dir),
            }
        });
        Ok(Self { service: Arc::new(service.py_err()?), location })
    }

    /// Where the index is: the folder as given, or the Weaviate address.
    #[getter]
    fn location(&self) -> &str {
        &self.location
    }

    /// The folder of the index (for Weaviate: this machine's state for it).
    #[getter]
    fn index_dir(&self) -> PathBuf {
        self.service.index_dir().to_path_buf()
    }

    /// The index's manifest: model, family, width, storage, pooling.
    fn manifest<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let m = self.service.manifest();
        let value = serde_json::to_value(m).map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
        to_python(py, &value)
    }

    /// Whether the model is loaded (searches, ingests and maps need it).
    #[getter]
    fn has_model(&self) -> bool {
        self.service.embedder().is_some()
    }

    /// The device the model runs on ("cpu", "cuda:0"), if loaded.
    #[getter]
    fn device(&self) -> Option<String> {
        self.service.embedder().map(|e| e.device_name())
    }

    /// Starts ingesting `paths` (files, folders searched for `*.pdf`, globs) on a thread of its own.
    #[pyo3(signature = (paths, *, force=false, password=None, batch_size=None, render_threads=None, page_timeout=60.0))]
    #[allow(clippy::too_many_arguments)]
    fn ingest(
        &self,
        py: Python<'_>,
        paths: Vec<String>,
        force: bool,
        password: Option<String>,
        batch_size: Option<usize>,
        render_threads: Option<usize>,
        page_timeout: f64,
    ) -> PyResult<IngestRun> {
        if !(page_timeout.is_finite() && page_timeout > 0.0) {
            return Err(usage("page_timeout must be a positive number of seconds", "pass page_timeout=60"));
        }
        let defaults = IngestOptions::default();
        let opts = IngestOptions {
            force,
            password,
            batch_size: batch_size.filter(|&b| b > 0),
            render_threads: render_threads.filter(|&n| n > 0).unwrap_or(defaults.render_threads),
            render_limits: colqwen::pdf::RenderLimits {
                time_budget: Duration::from_secs_f64(page_timeout),
                ..Default::default()
            },
            ..defaults
        };
        IngestRun::start(py, self.service.clone(), paths, opts)
    }

    /// Top pages for `query`: `(score, doc_id, source_path, page_number, page_count, preview_path)` each.
    #[pyo3(signature = (query, *, k=10, doc=None, mode="auto", prefetch=None))]
    fn search(
        &self,
        py: Python<'_>,
        query: String,
        k: usize,
        doc: Option<String>,
        mode: &str,
        prefetch: Option<usize>,
    ) -> PyResult<Vec<HitRow>> {
        if k == 0 || k > colqwen::MAX_K {
            return Err(usage(format!("k must be 1 to {}", colqwen::MAX_K), "pass k=10"));
        }
        let opts = SearchOptions { k, doc, mode: search_mode(mode, prefetch)? };
        let hits = py.detach(|| self.service.search(&query, &opts)).py_err()?;
        Ok(hits
            .into_iter()
            .map(|h| (h.score, h.doc_id, h.source_path, h.page_number, h.page_count, h.preview))
            .collect())
    }

    /// Stored documents: `(doc_id, source_path, sha256, page_count, stored_pages)` each.
    fn documents(&self, py: Python<'_>) -> PyResult<Vec<DocRow>> {
        let docs = py.detach(|| self.service.documents()).py_err()?;
        Ok(docs.into_iter().map(|d| (d.doc_id, d.source_path, d.file_sha256, d.page_count, d.stored_pages)).collect())
    }

    /// The id of the document `name` means (id, id prefix of ≥ 4 characters, path or file name).
    fn resolve_document(&self, py: Python<'_>, name: String) -> PyResult<String> {
        py.detach(|| self.service.resolve_document(&name)).py_err()
    }

    /// Deletes a document (exact id) and its previews; returns the pages deleted.
    fn delete(&self, py: Python<'_>, doc_id: String) -> PyResult<usize> {
        py.detach(|| self.service.delete_document(&doc_id)).py_err()
    }

    /// Pages, documents, disk, model.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stats = py.detach(|| self.service.stats()).py_err()?;
        let value =
            serde_json::to_value(&stats).map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
        to_python(py, &value)
    }

    /// The preview JPEG of a stored page (1-based `page_number`).
    fn preview<'py>(&self, py: Python<'py>, doc_id: String, page_number: usize) -> PyResult<Bound<'py, PyBytes>> {
        let jpeg = py.detach(|| self.service.preview(&doc_id, page_number)).py_err()?;
        Ok(PyBytes::new(py, &jpeg))
    }

    /// The similarity maps of `query` over a stored page: `{"tokens", "maps" [tokens, rows, cols],
    /// "aggregate" [rows, cols]}`, every map min–max normalised (colpali-engine's `normalize_similarity_map`).
    fn similarity<'py>(
        &self,
        py: Python<'py>,
        doc_id: String,
        page_number: usize,
        query: String,
    ) -> PyResult<Bound<'py, PyDict>> {
        let maps = py.detach(|| self.service.similarity(&doc_id, page_number, &query)).py_err()?;
        let (rows, cols) = (maps.grid.rows, maps.grid.cols);
        let n = maps.tokens.len();
        let mut all = Vec::with_capacity(n * rows * cols);
        for t in 0..n {
            all.extend(maps.normalized(Some(t)).unwrap_or_default());
        }
        let aggregate = maps.normalized(None).unwrap_or_default();
        let out = PyDict::new(py);
        out.set_item("tokens", maps.tokens.clone())?;
        let stacked: Bound<'py, PyArray2<f32>> = arrays::grid(py, n, rows * cols, all)?;
        out.set_item("maps", stacked.reshape([n, rows, cols])?)?;
        out.set_item("aggregate", arrays::grid(py, rows, cols, aggregate)?)?;
        Ok(out)
    }

    /// A PNG of the page's preview with a similarity map over it: query token `token`, or the aggregate.
    #[pyo3(signature = (doc_id, page_number, query, token=None))]
    fn similarity_png<'py>(
        &self,
        py: Python<'py>,
        doc_id: String,
        page_number: usize,
        query: String,
        token: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let png = py
            .detach(|| {
                let maps = self.service.similarity(&doc_id, page_number, &query)?;
                self.service.similarity_png(&doc_id, page_number, &maps, token)
            })
            .py_err()?;
        Ok(PyBytes::new(py, &png))
    }

    /// Query embeddings through the index's model (the same vectors a search uses).
    fn embed_queries<'py>(&self, py: Python<'py>, texts: Vec<String>) -> PyResult<Vec<Bound<'py, PyArray2<f32>>>> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let vectors = py.detach(|| self.service.embed_queries(&refs)).py_err()?;
        vectors.into_iter().map(|v| arrays::multivector(py, v)).collect()
    }
}
