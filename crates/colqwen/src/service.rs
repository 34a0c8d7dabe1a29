//! The service: one embedder (behind its device worker), one index and its previews, shared by every caller
//! of a process — the CLI for one command, the server for its lifetime. Searches run while an ingest writes,
//! from the same process; a second process that wants an embedded index gets "index in use". A remote index
//! (Weaviate) has no lock: several processes may write disjoint files into it at once; the service then keeps
//! only its local state (jobs, uploads, `server.json`, a preview cache) in `index_dir`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use colqwen_core::{
    DocumentInfo, IndexManifest, MultiVector, PageEmbedder, PageIndex, PageInput, SimilarityMaps, Stats, VectorStorage,
    VisualGrid, is_doc_id, normalize, similarity_maps,
};
use colqwen_model::DEFAULT_MODEL_ID;
use colqwen_store::{ExactScorer, Store};
use colqwen_weaviate::{Weaviate, WeaviateConfig};

use crate::engine::{Engine, EngineOptions, model_identity};
use crate::error::{Error, Result};
use crate::ingest::{InFlight, IngestOptions, ingest};
use crate::previews::Previews;
use crate::progress::{Progress, Summary};
use crate::runtime::Runtime;
use crate::search::{DeviceScorer, MAX_K, SearchDevice, SearchHit, SearchOptions, resolve_document};
use crate::worker::{EmbedWorker, PoolOptions};

/// How to open a service.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// The index folder; for a remote index, the folder of this machine's state for it (jobs, uploads,
    /// `server.json`, preview cache).
    pub index_dir: PathBuf,
    /// A Weaviate collection as the index instead of the folder (decided once, from the index location).
    pub remote: Option<WeaviateConfig>,
    /// The model (`engine.model = None`: the index's model, else the default).
    pub engine: EngineOptions,
    /// Device and dtype of each model replica (one per GPU; several on one device are allowed). Must not be
    /// empty; see [`Runtime::resolve_all`].
    pub runtimes: Vec<Runtime>,
    /// With two or more replicas, keep one free of page batches so that searches never wait for one (the server).
    pub reserve_query_replica: bool,
    /// Element type of the vectors of a new index (an existing index keeps its own).
    pub storage: VectorStorage,
    /// Token pooling of a new embedded index (1 = none; an existing index keeps its own). A Weaviate
    /// collection stores every row: more than 1 is refused there.
    pub pool_factor: u32,
    /// Where exact search scores the pages of the embedded store.
    pub search_device: SearchDevice,
}

/// The folder of this machine's state for a remote index (jobs, uploads, `server.json`, preview cache):
/// `<data_dir>/colqwen/remote/<host>_<port>_<Collection>`, the host's characters other than letters, digits and
/// dots written `_`. The CLI and the Python package pass the user's data folder.
pub fn remote_state_dir(data_dir: &Path, location: &colqwen_weaviate::Location) -> PathBuf {
    let host: String =
        location.host.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' }).collect();
    data_dir.join("colqwen").join("remote").join(format!("{host}_{}_{}", location.port, location.collection))
}

/// An index's model identity split into what to load and the Hub revision: a local folder (its absolute path,
/// which may contain `@`) as it is; `org/name@rev` into `org/name` and `rev`.
fn hub_id_and_revision(model_id: &str) -> (&str, Option<&str>) {
    if Path::new(model_id).is_dir() {
        return (model_id, None);
    }
    match model_id.rsplit_once('@') {
        Some((id, rev)) => (id, Some(rev)),
        None => (model_id, None),
    }
}

/// Below this many pages [`SearchDevice::Auto`] still scans on the CPU: a few thousand pages take a few ms on
/// the cores of a GPU host (the store's SIMD scan, ~5 GB/s per 2 cores), and the CPU does not queue behind the
/// page batches of a running ingest on the GPU.
const DEVICE_SEARCH_MIN_PAGES: usize = 2_000;

/// The exact scorer for [`SearchDevice::Auto`]: on a CUDA device, the model's GPU on a stream of its own,
/// holding at most half of the memory free after the model loaded (the rest stays for page batches).
fn device_scorer(choice: SearchDevice, model_device: &colqwen_model::Device) -> Option<Arc<dyn ExactScorer>> {
    if choice == SearchDevice::Cpu {
        return None;
    }
    let colqwen_model::DeviceLocation::Cuda { gpu_id } = model_device.location() else { return None };
    let device = match colqwen_model::Device::new_cuda_with_stream(gpu_id) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "no stream for device search; exact search runs on the CPU");
            return None;
        }
    };
    let budget = colqwen_model::free_device_memory(&device)? / 2;
    Some(Arc::new(DeviceScorer::new(device, budget).with_min_pages(DEVICE_SEARCH_MIN_PAGES)))
}

/// Latency buckets of the search histogram, in seconds (Prometheus `le` bounds).
pub const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// Counters of a service's lifetime, for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Pages stored by ingests of this process.
    pub pages_ingested: AtomicU64,
    /// Pages that failed.
    pub pages_failed: AtomicU64,
    /// Searches answered.
    pub searches: AtomicU64,
    /// Searches that failed.
    pub search_errors: AtomicU64,
    /// Search latency histogram (counts per [`LATENCY_BUCKETS`] bound, cumulative at read time).
    pub search_latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    /// Sum of search latencies in microseconds.
    pub search_latency_micros: AtomicU64,
}

impl Metrics {
    fn observe_search(&self, seconds: f64) {
        self.searches.fetch_add(1, Ordering::Relaxed);
        self.search_latency_micros.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&b| seconds <= b) {
            self.search_latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The embedder, the index and the previews of one index folder.
pub struct Service {
    index: Arc<dyn PageIndex>,
    index_dir: PathBuf,
    previews: Previews,
    /// `None` when opened without the model (listing, deleting, stats).
    worker: Option<EmbedWorker>,
    metrics: Metrics,
    /// Documents being ingested, so that a delete during an ingest is final.
    inflight: InFlight,
}

impl Service {
    /// Loads the model and opens the index, creating it if the folder holds none. Refuses an index built with
    /// another model before loading anything.
    pub fn open(opts: &ServiceOptions) -> Result<Self> {
        Self::open_with(opts, true)
    }

    /// Like [`Service::open`], but the index must exist ([`Error::NoIndex`] otherwise, before loading the model).
    pub fn open_existing(opts: &ServiceOptions) -> Result<Self> {
        Self::open_with(opts, false)
    }

    fn open_with(opts: &ServiceOptions, create: bool) -> Result<Self> {
        let dir = &opts.index_dir;
        let existing = match &opts.remote {
            Some(config) => Weaviate::read_manifest(config)?,
            None => IndexManifest::read(dir)?,
        };
        if existing.is_none() && !create {
            let location = opts.remote.as_ref().map_or_else(|| dir.clone(), |c| c.location.to_string().into());
            return Err(Error::NoIndex(location));
        }
        let model = match (&opts.engine.model, &existing) {
            (Some(m), Some(index)) => {
                let requested = model_identity(m, &opts.engine.hub);
                if requested != index.model_id {
                    return Err(Error::ModelMismatch { index_model: index.model_id.clone(), requested });
                }
                m.clone()
            }
            (Some(m), None) => m.clone(),
            (None, Some(index)) => hub_id_and_revision(&index.model_id).0.to_string(),
            (None, None) => DEFAULT_MODEL_ID.to_string(),
        };
        let mut engine_opts = opts.engine.clone();
        if engine_opts.hub.revision.is_none()
            && let Some(index) = &existing
            && let (_, Some(rev)) = hub_id_and_revision(&index.model_id)
        {
            engine_opts.hub.revision = Some(rev.to_string());
        }
        let started = Instant::now();
        let Some((first, rest)) = opts.runtimes.split_first() else { return Err(Error::NoDevice) };
        let engine = Engine::load(&model, &engine_opts, first)?;
        tracing::info!(model = engine.model_id(), device = %engine.device_name(), seconds = started.elapsed().as_secs_f64(), "model ready");
        let index: Arc<dyn PageIndex> = match &opts.remote {
            // A Weaviate collection stores f32 vectors whatever `storage` asks, and every row.
            Some(_) if opts.pool_factor > 1 => return Err(Error::PoolingUnsupported),
            Some(config) => Arc::new(Weaviate::open_or_create(config, &engine.manifest(VectorStorage::F32))?),
            None => {
                let manifest = match &existing {
                    Some(m) => engine.manifest(m.storage).with_pool_factor(m.pool_factor),
                    None => engine.manifest(opts.storage).with_pool_factor(opts.pool_factor),
                };
                let store = Store::open_or_create(dir, &manifest)?;
                if let Some(scorer) = device_scorer(opts.search_device, &first.device) {
                    store.set_exact_scorer(Some(scorer));
                }
                Arc::new(store)
            }
        };
        let mut replicas: Vec<Arc<dyn PageEmbedder>> = vec![Arc::new(engine)];
        for runtime in rest {
            // The weight files are memory-mapped: after the first load they come from the page cache.
            let started = Instant::now();
            let engine = Engine::load(&model, &engine_opts, runtime)?;
            tracing::info!(device = %engine.device_name(), seconds = started.elapsed().as_secs_f64(), "model replica ready");
            replicas.push(Arc::new(engine));
        }
        let pool = PoolOptions { reserve_for_queries: opts.reserve_query_replica };
        Ok(Self::with_worker(index, dir, Some(EmbedWorker::start_pool(replicas, pool))))
    }

    /// Opens an existing index without loading the model: listing, deleting, stats, previews.
    pub fn open_index(dir: &Path) -> Result<Self> {
        let store = Store::open(dir)?;
        Ok(Self::from_parts(Arc::new(store), dir, None))
    }

    /// Opens an existing Weaviate collection without loading the model; `state_dir` keeps this machine's state.
    pub fn open_remote_index(state_dir: &Path, config: &WeaviateConfig) -> Result<Self> {
        let index = Weaviate::open(config)?;
        Ok(Self::from_parts(Arc::new(index), state_dir, None))
    }

    /// A service over any index and embedder (another backend, another model family, tests).
    pub fn from_parts(index: Arc<dyn PageIndex>, dir: &Path, embedder: Option<Arc<dyn PageEmbedder>>) -> Self {
        Self::with_worker(index, dir, embedder.map(EmbedWorker::start))
    }

    /// A service over any index and a pool of model replicas ([`EmbedWorker::start_pool`]).
    pub fn with_worker(index: Arc<dyn PageIndex>, dir: &Path, worker: Option<EmbedWorker>) -> Self {
        Self {
            previews: Previews::for_index(dir, &index),
            index,
            index_dir: dir.to_path_buf(),
            worker,
            metrics: Metrics::default(),
            inflight: InFlight::default(),
        }
    }

    fn worker(&self) -> Result<&EmbedWorker> {
        self.worker.as_ref().ok_or(Error::NoModel)
    }

    /// The index's manifest (model, width, preprocessing, storage).
    pub fn manifest(&self) -> &IndexManifest {
        self.index.manifest()
    }

    /// The index folder.
    pub fn index_dir(&self) -> &Path {
        &self.index_dir
    }

    /// The embedder, if loaded.
    pub fn embedder(&self) -> Option<&Arc<dyn PageEmbedder>> {
        self.worker.as_ref().map(EmbedWorker::embedder)
    }

    /// Waiting (queries, page batches) on the device worker.
    pub fn queue_depths(&self) -> (usize, usize) {
        self.worker.as_ref().map_or((0, 0), EmbedWorker::queue_depths)
    }

    /// Lifetime counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Ingests `files` (blocking; see [`IngestOptions`]). Setting `cancel` stops it after the batch in hand.
    pub fn ingest(
        &self,
        files: &[PathBuf],
        opts: &IngestOptions,
        progress: &dyn Progress,
        cancel: &AtomicBool,
    ) -> Result<Summary> {
        let counting = Counting { inner: progress, metrics: &self.metrics };
        ingest(self.worker()?, self.index.as_ref(), &self.previews, &self.inflight, files, opts, &counting, cancel)
    }

    /// Ranks the index's pages for `query`.
    pub fn search(&self, query: &str, opts: &SearchOptions) -> Result<Vec<SearchHit>> {
        let started = Instant::now();
        let result = self.search_inner(query, opts);
        match &result {
            Ok(_) => self.metrics.observe_search(started.elapsed().as_secs_f64()),
            Err(_) => {
                self.metrics.search_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    fn search_inner(&self, query: &str, opts: &SearchOptions) -> Result<Vec<SearchHit>> {
        if query.trim().is_empty() {
            return Err(Error::EmptyQuery);
        }
        let doc = opts.doc.as_deref().map(|d| self.resolve_document(d)).transpose()?;
        let q = self.worker()?.embed_query(query)?;
        let hits = self.index.search(&q, opts.k.min(MAX_K), doc.as_deref(), opts.mode)?;
        hits.into_iter()
            .map(|h| {
                Ok(SearchHit {
                    preview: self.previews.path(&h.doc_id, h.page_index)?,
                    score: h.score,
                    page_number: h.page_index + 1,
                    page_count: h.page_count,
                    doc_id: h.doc_id,
                    source_path: h.source_path,
                })
            })
            .collect()
    }

    /// Query embeddings (one multi-vector per text), on the device worker.
    pub fn embed_queries(&self, texts: &[&str]) -> Result<Vec<MultiVector>> {
        self.worker()?.embed_queries(texts)
    }

    /// Page embeddings of images (one multi-vector per image), on the device worker.
    pub fn embed_images(&self, images: &[image::RgbImage]) -> Result<Vec<MultiVector>> {
        let inputs = images.iter().map(|img| self.prepare_image(img)).collect::<Result<Vec<_>>>()?;
        self.embed_prepared(inputs)
    }

    /// A page image as the model's input (resized to the model's pixel budget): much smaller than a large
    /// image, so a caller with many images can prepare each and drop it before decoding the next.
    pub fn prepare_image(&self, image: &image::RgbImage) -> Result<PageInput> {
        self.worker()?.embedder().prepare(image).map_err(Error::Embed)
    }

    /// Page embeddings of prepared inputs ([`Service::prepare_image`]), on the device worker.
    pub fn embed_prepared(&self, inputs: Vec<PageInput>) -> Result<Vec<MultiVector>> {
        self.worker()?.embed_pages(inputs)
    }

    /// Stored documents.
    pub fn documents(&self) -> Result<Vec<DocumentInfo>> {
        Ok(self.index.documents()?)
    }

    /// The id of the document a user means (id, id prefix, path or file name).
    pub fn resolve_document(&self, name: &str) -> Result<String> {
        resolve_document(&self.index.documents()?, name)
    }

    /// Deletes a document (by exact id) and its previews; returns the pages deleted. Final also while an ingest
    /// of this service is writing the document: that ingest stores none of its pages after this returns, drops
    /// the rest, and reports it no further. (A run that opens the document's file after this returned ingests it
    /// anew: a caller that means to stop that too removes the file or answers no to
    /// [`Progress::still_wanted`] first, as the server's jobs do.)
    pub fn delete_document(&self, doc_id: &str) -> Result<usize> {
        if !is_doc_id(doc_id) {
            return Err(Error::InvalidId(doc_id.into()));
        }
        let _gate = self.inflight.delete(doc_id);
        let pages = self.index.delete_document(doc_id)?;
        self.index.flush()?;
        self.previews.delete(doc_id)?;
        Ok(pages)
    }

    /// Whether an ingest of this service is writing document `doc_id` now.
    pub fn is_ingesting(&self, doc_id: &str) -> bool {
        self.inflight.holds(doc_id)
    }

    /// The preview JPEG of a stored page (1-based page number).
    pub fn preview(&self, doc_id: &str, page_number: usize) -> Result<Vec<u8>> {
        let missing = || Error::NoSuchPage { doc_id: doc_id.into(), page_number };
        let page_index = page_number.checked_sub(1).ok_or_else(missing)?;
        self.previews.read(doc_id, page_index)?.ok_or_else(missing)
    }

    /// The similarity maps of `query` over a stored page (1-based `page_number`): the page's stored vectors
    /// (no re-embedding) against the query's, laid on the page's visual grid. The grid is computed the way the
    /// ingest sized the page (page size in points → render size → the model's resize), from the document's
    /// source PDF, and checked against the stored row count.
    pub fn similarity(&self, doc_id: &str, page_number: usize, query: &str) -> Result<PageMaps> {
        let (tokens, q) = self.map_query(query)?;
        self.page_maps(doc_id, page_number, &tokens, &q)
    }

    /// A query's tokens and vectors for [`Service::page_maps`] (one embedding for many pages).
    pub fn map_query(&self, query: &str) -> Result<(Vec<String>, MultiVector)> {
        if query.trim().is_empty() {
            return Err(Error::EmptyQuery);
        }
        let tokens = self.worker()?.embedder().query_tokens(query).map_err(Error::Embed)?;
        let q = self.worker()?.embed_query(query)?;
        if tokens.len() != q.rows {
            return Err(Error::Embed(format!("the query has {} tokens but {} vectors", tokens.len(), q.rows).into()));
        }
        Ok((tokens, q))
    }

    /// The maps of an embedded query (from [`Service::map_query`]) over a stored page.
    pub fn page_maps(&self, doc_id: &str, page_number: usize, tokens: &[String], q: &MultiVector) -> Result<PageMaps> {
        if !is_doc_id(doc_id) {
            return Err(Error::InvalidId(doc_id.into()));
        }
        let missing = || Error::NoSuchPage { doc_id: doc_id.into(), page_number };
        let page_index = page_number.checked_sub(1).ok_or_else(missing)?;
        let page = self.index.page_vectors(doc_id, page_index)?.ok_or_else(missing)?;
        let no_map = |reason: String| Error::NoMap { doc_id: doc_id.into(), page_number, reason };
        let embedder = self.worker()?.embedder().clone();
        let grid = self.page_grid(doc_id, page_index, embedder.as_ref()).map_err(|e| no_map(crate::error_chain(&e)))?;
        let maps = similarity_maps(q, &page, &grid).map_err(|e| no_map(e.to_string()))?;
        Ok(PageMaps { tokens: tokens.to_vec(), grid, maps })
    }

    /// The grid of a stored page, from its source PDF's page size.
    fn page_grid(&self, doc_id: &str, page_index: usize, embedder: &dyn PageEmbedder) -> Result<VisualGrid> {
        let doc = self
            .documents()?
            .into_iter()
            .find(|d| d.doc_id == doc_id)
            .ok_or_else(|| Error::NoSuchDocument(doc_id.into()))?;
        let pdf = colqwen_pdf::Document::open(&crate::discover::source_file(&doc.source_path), None)?;
        let size_pt = pdf.page_size_pt(page_index)?;
        let limits = colqwen_pdf::RenderLimits::default();
        let (w, h) = colqwen_pdf::render_size(size_pt, embedder.max_pixels(), &limits);
        embedder.visual_grid(w, h).map_err(Error::Embed)
    }

    /// A PNG of the page's preview with one map over it: query token `token`, or the aggregate (`None`).
    pub fn similarity_png(
        &self,
        doc_id: &str,
        page_number: usize,
        maps: &PageMaps,
        token: Option<usize>,
    ) -> Result<Vec<u8>> {
        let values = maps.normalized(token).ok_or_else(|| Error::NoMap {
            doc_id: doc_id.into(),
            page_number,
            reason: format!("token {} is beyond the query's {} tokens", token.unwrap_or(0), maps.tokens.len()),
        })?;
        let jpeg = self.preview(doc_id, page_number)?;
        crate::overlay::overlay_png(&jpeg, &values, maps.grid.cols, maps.grid.rows)
    }

    /// Pages, documents, disk, model.
    pub fn stats(&self) -> Result<Stats> {
        Ok(self.index.stats()?)
    }
}

/// A query's similarity maps over one page.
#[derive(Debug, Clone)]
pub struct PageMaps {
    /// The query's tokens as text, one per map (augmentation tokens included).
    pub tokens: Vec<String>,
    /// Where the page's visual tokens lie.
    pub grid: VisualGrid,
    /// Raw dot products, one map per query token.
    pub maps: SimilarityMaps,
}

impl PageMaps {
    /// Min–max normalised map of query token `token`, or of the aggregate (max over tokens) for `None`;
    /// `None` for a token beyond the query.
    pub fn normalized(&self, token: Option<usize>) -> Option<Vec<f32>> {
        match token {
            None => Some(normalize(&self.maps.aggregate_max())),
            Some(i) => self.maps.maps.get(i).map(|m| normalize(m)),
        }
    }
}

/// Counts stored and failed pages into the service's metrics as they happen, then reports on.
struct Counting<'a> {
    inner: &'a dyn Progress,
    metrics: &'a Metrics,
}

impl Progress for Counting<'_> {
    fn on_document_opened(&self, path: &Path, doc_id: &str, page_count: usize) {
        self.inner.on_document_opened(path, doc_id, page_count);
    }
    fn still_wanted(&self, path: &Path, doc_id: &str) -> bool {
        self.inner.still_wanted(path, doc_id)
    }
    fn on_document_queued(&self, path: &Path, pages: usize, skipped: usize) {
        self.inner.on_document_queued(path, pages, skipped);
    }
    fn on_duplicate(&self, path: &Path, first: &Path) {
        self.inner.on_duplicate(path, first);
    }
    fn on_page_rendered(&self) {
        self.inner.on_page_rendered();
    }
    fn on_pages_embedded(&self, n: usize) {
        self.inner.on_pages_embedded(n);
    }
    fn on_pages_stored(&self, path: &Path, n: usize) {
        self.metrics.pages_ingested.fetch_add(n as u64, Ordering::Relaxed);
        self.inner.on_pages_stored(path, n);
    }
    fn on_failure(&self, failure: &crate::progress::Failure) {
        if failure.page_index.is_some() {
            self.metrics.pages_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.on_failure(failure);
    }
    fn on_document_done(&self, path: &Path) {
        self.inner.on_document_done(path);
    }
}
