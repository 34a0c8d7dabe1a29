//! Ingest: PDF files → rendered pages → `pixel_values` → embeddings → index, as overlapping stages joined
//! by bounded channels, so memory stays bounded whatever the size of the PDFs:
//!
//! ```text
//! plan (1 thread: read, hash, skip stored pages) ─jobs→ render+preprocess (N threads) ─pages→
//!   embed (batches, this thread) ─vectors→ store (1 thread: upsert, flush at document boundaries)
//! ```
//!
//! A page's identity is (file SHA-256, page index, model, preprocessing) (the store's point id), so running
//! the same ingest twice adds nothing, and a run killed at any moment resumes where the last flush left it.
//! Bad files and pages are reported in the [`Summary`] and never stop the run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use colqwen_model::PixelValues;
use colqwen_pdf::{Document, RenderLimits};
use colqwen_store::{PageRecord, Store};
use sha2::{Digest, Sha256};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Ingest settings.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Re-embed pages that are already stored.
    pub force: bool,
    /// Password for encrypted PDFs (the empty password is always tried).
    pub password: Option<String>,
    /// Pages per forward pass.
    pub batch_size: usize,
    /// Render threads (default: all cores).
    pub render_threads: usize,
    /// Page size cap and time budget per page.
    pub render_limits: RenderLimits,
    /// Longest side of the preview thumbnails, in pixels (0 = no previews).
    pub preview_max_side: u32,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            force: false,
            password: None,
            batch_size: 4,
            render_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            render_limits: RenderLimits::default(),
            preview_max_side: 768,
        }
    }
}

/// A document or page that could not be ingested.
#[derive(Debug)]
pub struct Failure {
    /// The PDF.
    pub path: PathBuf,
    /// The page (0-based), or `None` when the whole document failed.
    pub page_index: Option<usize>,
    /// What went wrong.
    pub error: Error,
}

/// What an ingest did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Documents seen (including failed ones).
    pub documents: usize,
    /// Pages embedded and stored by this run.
    pub pages_ingested: usize,
    /// Pages skipped because they were already in the index.
    pub pages_skipped: usize,
    /// Pages of older versions of changed files that were removed.
    pub pages_replaced: usize,
    /// Documents and pages that failed.
    pub failures: Vec<Failure>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// One document in flight.
struct DocState {
    path: PathBuf,
    doc_id: String,
    sha256: String,
    pdf: Arc<Document>,
    page_count: usize,
    /// Pages not yet stored or failed; the store stage finishes the document when it reaches 0.
    remaining: AtomicUsize,
}

struct PageJob {
    doc: Arc<DocState>,
    page_index: usize,
}

struct RenderedPage {
    pixel_values: PixelValues,
    size_pt: (f32, f32),
    preview: Option<String>,
}

/// A page travelling down the pipeline, successful or not.
struct Item<T> {
    doc: Arc<DocState>,
    page_index: usize,
    outcome: std::result::Result<T, Error>,
}

/// What the store needs of a rendered page once its pixels went into the model.
struct PageMeta {
    size_pt: (f32, f32),
    preview: Option<String>,
}

struct Embedded {
    page: PageMeta,
    vectors: Vec<f32>,
}

/// Shared, thread-safe run state.
struct Run<'a> {
    engine: &'a Engine,
    store: Mutex<&'a mut Store>,
    /// The index folder (previews go below it), read once so render workers never wait on the store lock.
    index_dir: PathBuf,
    opts: &'a IngestOptions,
    progress: &'a dyn Progress,
    failures: Mutex<Vec<Failure>>,
    ingested: AtomicUsize,
    skipped: AtomicUsize,
    replaced: AtomicUsize,
    /// First store error: the run stops (a write error means the disk or index is broken).
    fatal: Mutex<Option<Error>>,
}

impl<'a> Run<'a> {
    fn fail(&self, path: &Path, page_index: Option<usize>, error: Error) {
        let f = Failure { path: path.to_path_buf(), page_index, error };
        self.progress.on_failure(&f);
        if let Ok(mut v) = self.failures.lock() {
            v.push(f);
        }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, &'a mut Store> {
        self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn stopped(&self) -> bool {
        self.fatal.lock().map(|f| f.is_some()).unwrap_or(true)
    }

    fn set_fatal(&self, e: Error) {
        if let Ok(mut f) = self.fatal.lock() {
            f.get_or_insert(e);
        }
    }
}

/// Short, stable document id: the first 16 hex digits of the file's SHA-256.
pub fn doc_id(sha256: &str) -> String {
    sha256[..16.min(sha256.len())].to_string()
}

/// Ingests `files` into `store` (the index must have been opened with `engine`'s manifest).
pub fn ingest(
    engine: &Engine,
    store: &mut Store,
    files: &[PathBuf],
    opts: &IngestOptions,
    progress: &dyn Progress,
) -> Result<Summary> {
    let start = Instant::now();
    let batch_size = opts.batch_size.max(1);
    let threads = opts.render_threads.max(1);
    let index_dir = store.dir().to_path_buf();
    let run = Run {
        engine,
        index_dir,
        store: Mutex::new(store),
        opts,
        progress,
        failures: Mutex::new(Vec::new()),
        ingested: AtomicUsize::new(0),
        skipped: AtomicUsize::new(0),
        replaced: AtomicUsize::new(0),
        fatal: Mutex::new(None),
    };
    let (job_tx, job_rx) = sync_channel::<PageJob>(threads * 2);
    let job_rx = Mutex::new(job_rx);
    let (page_tx, page_rx) = sync_channel::<Item<RenderedPage>>(batch_size * 2);
    let (emb_tx, emb_rx) = sync_channel::<Item<Embedded>>(batch_size * 2);
    std::thread::scope(|s| {
        let run = &run;
        s.spawn(move || plan(run, files, job_tx));
        for _ in 0..threads {
            let (job_rx, page_tx) = (&job_rx, page_tx.clone());
            s.spawn(move || render_worker(run, job_rx, page_tx));
        }
        drop(page_tx);
        s.spawn(move || store_stage(run, emb_rx));
        embed_stage(run, page_rx, emb_tx, batch_size);
    });
    if let Some(e) = run.fatal.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
        return Err(e);
    }
    Ok(Summary {
        documents: files.len(),
        pages_ingested: run.ingested.into_inner(),
        pages_skipped: run.skipped.into_inner(),
        pages_replaced: run.replaced.into_inner(),
        failures: run.failures.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Reads, hashes and opens each file; queues the pages that are not stored yet.
fn plan(run: &Run<'_>, files: &[PathBuf], jobs: SyncSender<PageJob>) {
    for path in files {
        if run.stopped() {
            return;
        }
        let doc = match open_document(run, path) {
            Ok(doc) => doc,
            Err(e) => {
                run.fail(path, None, e);
                continue;
            }
        };
        let stored = if run.opts.force {
            Default::default()
        } else {
            match run.store().pages_of_file(&doc.sha256) {
                Ok(s) => s,
                Err(e) => {
                    run.set_fatal(e.into());
                    return;
                }
            }
        };
        let todo: Vec<usize> = (0..doc.page_count).filter(|p| !stored.contains(p)).collect();
        let skipped = doc.page_count - todo.len();
        run.skipped.fetch_add(skipped, Ordering::Relaxed);
        run.progress.on_document_queued(path, todo.len(), skipped);
        doc.remaining.store(todo.len(), Ordering::SeqCst);
        let doc = Arc::new(doc);
        if todo.is_empty() {
            finish_document(run, &doc);
            continue;
        }
        for page_index in todo {
            if jobs.send(PageJob { doc: doc.clone(), page_index }).is_err() {
                return;
            }
        }
    }
}

fn open_document(run: &Run<'_>, path: &Path) -> Result<DocState> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.into(), source })?;
    let sha256 = format!("{:x}", Sha256::digest(&bytes));
    let name = path.display().to_string();
    let pdf = Document::from_bytes(bytes, run.opts.password.as_deref(), &name)?;
    let page_count = pdf.page_count();
    Ok(DocState {
        path: path.to_path_buf(),
        doc_id: doc_id(&sha256),
        sha256,
        pdf: Arc::new(pdf),
        page_count,
        remaining: AtomicUsize::new(0),
    })
}

fn render_worker(run: &Run<'_>, jobs: &Mutex<Receiver<PageJob>>, pages: SyncSender<Item<RenderedPage>>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(PageJob { doc, page_index }) = job else { return };
        let outcome = render_page(run, &doc, page_index);
        if outcome.is_ok() {
            run.progress.on_page_rendered();
        }
        if pages.send(Item { doc, page_index, outcome }).is_err() {
            return;
        }
    }
}

/// Render once at a size from which the model's target is reached by downsampling, keep a preview from the
/// same rendering, preprocess (§2 of the fact sheet).
fn render_page(run: &Run<'_>, doc: &DocState, page_index: usize) -> Result<RenderedPage> {
    let limits = &run.opts.render_limits;
    let size_pt = doc.pdf.page_size_pt(page_index)?;
    let pre = run.engine.model().preprocessor();
    let (w, h) = colqwen_pdf::render_size(size_pt, pre.max_pixels as u64, limits);
    let image = colqwen_pdf::render_contained(&doc.pdf, page_index, w, h, limits)?;
    let preview = write_preview(run, doc, page_index, &image)?;
    let pixel_values =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pre.preprocess(&image))).map_err(|_| {
            Error::Pdf(colqwen_pdf::Error::RenderPanicked {
                path: doc.path.clone(),
                page_index,
                message: "preprocessing panicked".into(),
            })
        })??;
    Ok(RenderedPage { pixel_values, size_pt, preview })
}

/// `<index>/previews/<doc_id>/<page_number>.jpg`; returns the path relative to the index folder.
fn write_preview(run: &Run<'_>, doc: &DocState, page_index: usize, image: &image::RgbImage) -> Result<Option<String>> {
    let side = run.opts.preview_max_side;
    if side == 0 {
        return Ok(None);
    }
    let rel = format!("previews/{}/{:04}.jpg", doc.doc_id, page_index + 1);
    let path = run.index_dir.join(&rel);
    let bytes = colqwen_pdf::encode_preview(image, side, 80)?;
    let write = || -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Write then rename, so a crash never leaves a half-written preview under the final name.
        let tmp = path.with_extension("jpg.tmp");
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|source| Error::Io { path: path.clone(), source })?;
    Ok(Some(rel))
}

/// Collects full batches (or what is left at the end), runs the model, passes failures straight through.
fn embed_stage(run: &Run<'_>, pages: Receiver<Item<RenderedPage>>, out: SyncSender<Item<Embedded>>, batch_size: usize) {
    let mut batch: Vec<(Arc<DocState>, usize, PageMeta)> = Vec::with_capacity(batch_size);
    let mut pixels: Vec<PixelValues> = Vec::with_capacity(batch_size);
    let mut open = true;
    while open || !batch.is_empty() {
        while open && batch.len() < batch_size {
            match pages.recv() {
                Ok(Item { doc, page_index, outcome: Ok(page) }) => {
                    pixels.push(page.pixel_values);
                    batch.push((doc, page_index, PageMeta { size_pt: page.size_pt, preview: page.preview }));
                }
                Ok(Item { doc, page_index, outcome: Err(e) }) => {
                    if out.send(Item { doc, page_index, outcome: Err(e) }).is_err() {
                        return;
                    }
                }
                Err(_) => open = false,
            }
        }
        if batch.is_empty() {
            break;
        }
        let result = run.engine.model().embed_pixel_values(&pixels);
        pixels.clear();
        match result {
            Ok(vectors) => {
                run.progress.on_pages_embedded(batch.len());
                for ((doc, page_index, page), mv) in batch.drain(..).zip(vectors) {
                    let item = Item { doc, page_index, outcome: Ok(Embedded { page, vectors: mv.data }) };
                    if out.send(item).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                let reason = e.to_string();
                let pages = batch.len();
                for (doc, page_index, _) in batch.drain(..) {
                    let err = Error::EmbedBatch { pages, reason: reason.clone() };
                    if out.send(Item { doc, page_index, outcome: Err(err) }).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Pages written between two flushes inside a long document. qdrant-edge 0.7 does not replay its WAL, so
/// only flushed pages survive a kill: this bounds the work a killed run has to redo.
const FLUSH_EVERY_PAGES: usize = 256;

/// Writes pages, and finishes each document (old versions removed, flush) when its last page is through.
fn store_stage(run: &Run<'_>, items: Receiver<Item<Embedded>>) {
    let mut since_flush = 0usize;
    for Item { doc, page_index, outcome } in items {
        if run.stopped() {
            return;
        }
        match outcome {
            Ok(Embedded { page, vectors }) => {
                let record = PageRecord {
                    doc_id: doc.doc_id.clone(),
                    source_path: doc.path.display().to_string(),
                    file_sha256: doc.sha256.clone(),
                    page_index,
                    page_count: doc.page_count,
                    page_width_pt: page.size_pt.0,
                    page_height_pt: page.size_pt.1,
                    preview: page.preview,
                    vectors,
                };
                if let Err(e) = run.store().upsert(vec![record]) {
                    run.set_fatal(e.into());
                    return;
                }
                run.ingested.fetch_add(1, Ordering::Relaxed);
                run.progress.on_pages_stored(1);
                since_flush += 1;
                if since_flush >= FLUSH_EVERY_PAGES {
                    if let Err(e) = run.store().flush() {
                        run.set_fatal(e.into());
                        return;
                    }
                    since_flush = 0;
                }
            }
            Err(e) => run.fail(&doc.path, Some(page_index), e),
        }
        if doc.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
            finish_document(run, &doc);
            since_flush = 0;
        }
    }
}

/// Drops pages of older versions of this path and flushes: what the summary reports as stored is durable.
fn finish_document(run: &Run<'_>, doc: &DocState) {
    let mut store = run.store();
    let source = doc.path.display().to_string();
    let result = store.delete_file_version(&source, &doc.sha256).and_then(|n| {
        store.flush()?;
        Ok(n)
    });
    drop(store);
    match result {
        Ok(n) => {
            run.replaced.fetch_add(n, Ordering::Relaxed);
            run.progress.on_document_done(&doc.path);
        }
        Err(e) => run.set_fatal(e.into()),
    }
}
