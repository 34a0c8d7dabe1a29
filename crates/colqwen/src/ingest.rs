//! Ingest: PDF files → rendered pages → `pixel_values` → embeddings → index, as overlapping stages joined
//! by bounded channels, so memory stays bounded whatever the size of the PDFs:
//!
//! ```text
//! plan (1 thread: read, hash, skip stored pages) ─jobs→ render+preprocess (N threads) ─pages→
//!   embed (batches, this thread) ─vectors→ store (1 thread: upsert, flush at document boundaries)
//! ```
//!
//! The embed stage does not call the model itself: it hands batches to the device's [`EmbedWorker`], which
//! serves waiting queries first, so searches stay fast while an ingest runs.
//!
//! A page's identity is (file SHA-256, page index, model, preprocessing) (the index's point id), so running
//! the same ingest twice adds nothing, and a run killed at any moment resumes where the last flush left it.
//! Bad files and pages are reported in the [`Summary`] and never stop the run. A cancelled run stops taking
//! new pages, lets the batch on the device finish, stores and flushes what is done.
//!
//! A delete is final, also while a run ingests the document ([`InFlight`]): the run drops the document's
//! remaining pages, stores none of it after the delete, and its previews go too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use colqwen_core::{PageIndex, PageInput, PageRecord, doc_id};
use colqwen_pdf::{Document, RenderLimits};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::previews::Previews;
use crate::progress::{Failure, Progress, Summary};
use crate::worker::EmbedWorker;

/// Ingest settings.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Re-embed pages that are already stored.
    pub force: bool,
    /// Password for encrypted PDFs (the empty password is always tried).
    pub password: Option<String>,
    /// Pages per forward pass; `None`: what suits the device (4 on the CPU; on a GPU from its free memory).
    pub batch_size: Option<usize>,
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
            batch_size: None,
            render_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            render_limits: RenderLimits::default(),
            preview_max_side: 768,
        }
    }
}

/// The documents that the ingest runs of one service are writing, so that deleting one of them is final.
///
/// A delete ([`InFlight::delete`]) and a store batch ([`InFlight::write`]) exclude each other: the delete marks
/// the document dropped in every run that holds it and removes its pages while the lock is held, and the store
/// stage leaves out the pages of dropped documents under the same lock, so no page of a deleted document is
/// written after its delete returned. A run that read a file before a delete of its document and registers it
/// after (the planner reads a file before it knows its id) finds the delete among the recent ones (`deleted`,
/// by epoch) and drops it too. The planner then queues no more of its pages, the other stages skip them, and
/// the run's end removes previews that its renders wrote after the delete.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    state: Mutex<InFlightState>,
}

#[derive(Debug, Default)]
pub(crate) struct InFlightState {
    /// Runs in progress.
    runs: usize,
    /// Bumped by every delete.
    epoch: u64,
    /// Documents held by runs: one "dropped" flag per run that holds the document.
    docs: HashMap<String, Vec<Arc<AtomicBool>>>,
    /// Documents deleted while runs were in progress, with the epoch of the delete (cleared when none is left).
    deleted: HashMap<String, u64>,
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, InFlightState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Held by the store stage around a batch: no delete runs meanwhile.
    fn write(&self) -> MutexGuard<'_, InFlightState> {
        self.lock()
    }

    /// Drops `doc_id` from every run that holds it and returns the lock: the caller deletes the document's pages
    /// while holding it, so no run writes a page of it afterwards.
    pub(crate) fn delete(&self, doc_id: &str) -> MutexGuard<'_, InFlightState> {
        let mut s = self.lock();
        s.epoch += 1;
        for flag in s.docs.get(doc_id).into_iter().flatten() {
            flag.store(true, Ordering::SeqCst);
        }
        if s.runs > 0 {
            let epoch = s.epoch;
            s.deleted.insert(doc_id.to_string(), epoch);
        }
        s
    }

    /// Whether a run holds `doc_id` (it is being ingested).
    pub(crate) fn holds(&self, doc_id: &str) -> bool {
        self.lock().docs.get(doc_id).is_some_and(|v| !v.is_empty())
    }

    fn begin_run(&self) {
        self.lock().runs += 1;
    }

    fn end_run(&self, held: &[(String, Arc<AtomicBool>)]) {
        let mut s = self.lock();
        for (doc_id, flag) in held {
            if let Some(v) = s.docs.get_mut(doc_id) {
                v.retain(|f| !Arc::ptr_eq(f, flag));
                if v.is_empty() {
                    s.docs.remove(doc_id);
                }
            }
        }
        s.runs = s.runs.saturating_sub(1);
        if s.runs == 0 {
            s.deleted.clear();
        }
    }

    fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Registers `doc_id` for a run that read its file at `read_epoch`; the flag is set already when the
    /// document was deleted since.
    fn register(&self, doc_id: &str, read_epoch: u64) -> Arc<AtomicBool> {
        let mut s = self.lock();
        let dropped = s.deleted.get(doc_id).is_some_and(|&e| e > read_epoch);
        let flag = Arc::new(AtomicBool::new(dropped));
        s.docs.entry(doc_id.to_string()).or_default().push(flag.clone());
        flag
    }
}

/// One document in flight.
struct DocState {
    /// The file as given (what messages name).
    path: PathBuf,
    /// The path as the index stores it: absolute, reversible ([`crate::discover::stored_path`]).
    source: String,
    doc_id: String,
    sha256: String,
    pdf: Arc<Document>,
    /// Pages that can be rendered.
    page_count: usize,
    /// Pages the file holds: more than `page_count` when pages are lost or the file is truncated. Stored with
    /// each page as its document's page count, so that `list` shows such a file as incomplete.
    expected_pages: usize,
    /// Pages not yet stored or failed; the store stage finishes the document when it reaches 0.
    remaining: AtomicUsize,
    /// Set when the document is deleted during the run ([`InFlight`]): its pages are dropped.
    dropped: Arc<AtomicBool>,
}

impl DocState {
    fn dropped(&self) -> bool {
        self.dropped.load(Ordering::SeqCst)
    }
}

struct PageJob {
    doc: Arc<DocState>,
    page_index: usize,
}

struct RenderedPage {
    input: PageInput,
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
    worker: &'a EmbedWorker,
    index: &'a dyn PageIndex,
    previews: &'a Previews,
    inflight: &'a InFlight,
    /// Documents this run registered with `inflight` (with their file hash).
    held: Mutex<Vec<(String, String, Arc<AtomicBool>)>>,
    cancel: &'a AtomicBool,
    opts: &'a IngestOptions,
    progress: &'a dyn Progress,
    failures: Mutex<Vec<Failure>>,
    duplicates: Mutex<Vec<(PathBuf, PathBuf)>>,
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

    /// A store error happened (the run ends) or the run was cancelled.
    fn stopped(&self) -> bool {
        self.cancel.load(Ordering::Relaxed) || self.failed()
    }

    fn failed(&self) -> bool {
        self.fatal.lock().map(|f| f.is_some()).unwrap_or(true)
    }

    fn set_fatal(&self, e: Error) {
        if let Ok(mut f) = self.fatal.lock() {
            f.get_or_insert(e);
        }
    }
}

/// Ingests `files` into `index` (whose manifest must be the worker's model's), with page previews.
/// Setting `cancel` stops the run early (the summary says so).
#[allow(clippy::too_many_arguments)]
pub(crate) fn ingest(
    worker: &EmbedWorker,
    index: &dyn PageIndex,
    previews: &Previews,
    inflight: &InFlight,
    files: &[PathBuf],
    opts: &IngestOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<Summary> {
    let start = Instant::now();
    let batch_size = opts.batch_size.unwrap_or_else(|| worker.embedder().default_batch_size()).max(1);
    let threads = opts.render_threads.max(1);
    let run = Run {
        worker,
        index,
        previews,
        inflight,
        held: Mutex::new(Vec::new()),
        cancel,
        opts,
        progress,
        failures: Mutex::new(Vec::new()),
        duplicates: Mutex::new(Vec::new()),
        ingested: AtomicUsize::new(0),
        skipped: AtomicUsize::new(0),
        replaced: AtomicUsize::new(0),
        fatal: Mutex::new(None),
    };
    let (job_tx, job_rx) = sync_channel::<PageJob>(threads * 2);
    let job_rx = Mutex::new(job_rx);
    // One embedding thread per model replica, so that every replica has a batch in flight (one GPU each, or
    // several replicas of one device); they share the rendered pages. Rendering and the queue scale with them.
    let replicas = worker.replicas();
    let (page_tx, page_rx) = sync_channel::<Item<RenderedPage>>(batch_size * 2 * replicas);
    let page_rx = Mutex::new(page_rx);
    let (emb_tx, emb_rx) = sync_channel::<Item<Embedded>>(batch_size * 2 * replicas);
    inflight.begin_run();
    std::thread::scope(|s| {
        let run = &run;
        s.spawn(move || plan(run, files, job_tx));
        for _ in 0..threads {
            let (job_rx, page_tx) = (&job_rx, page_tx.clone());
            s.spawn(move || render_worker(run, job_rx, page_tx));
        }
        drop(page_tx);
        s.spawn(move || store_stage(run, emb_rx));
        for _ in 1..replicas {
            let (page_rx, emb_tx) = (&page_rx, emb_tx.clone());
            s.spawn(move || embed_stage(run, page_rx, emb_tx, batch_size));
        }
        embed_stage(run, &page_rx, emb_tx, batch_size);
    });
    forget_dropped(&run);
    if let Some(e) = run.fatal.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
        return Err(e);
    }
    Ok(Summary {
        documents: files.len(),
        pages_ingested: run.ingested.into_inner(),
        pages_skipped: run.skipped.into_inner(),
        pages_replaced: run.replaced.into_inner(),
        failures: run.failures.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner),
        duplicates: run.duplicates.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner),
        cancelled: cancel.load(Ordering::Relaxed),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Reads, hashes and opens each file; queues the pages that are not stored yet.
fn plan(run: &Run<'_>, files: &[PathBuf], jobs: SyncSender<PageJob>) {
    let mut contents: std::collections::HashMap<String, PathBuf> = Default::default();
    for path in files {
        if run.stopped() {
            return;
        }
        // A delete of the document from here on drops it (the file is read before its id is known).
        let read_epoch = run.inflight.epoch();
        // A panic inside the PDF parser fails this file, not the run.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| open_document(run, path)));
        let doc = match opened {
            Ok(Ok(doc)) => doc,
            Ok(Err(e)) => {
                run.fail(path, None, e);
                continue;
            }
            Err(_) => {
                run.fail(path, None, Error::OpenPanicked(path.clone()));
                continue;
            }
        };
        // Same bytes as a file earlier in this run: its pages are the same points, stored once.
        if let Some(first) = contents.get(&doc.sha256) {
            run.skipped.fetch_add(doc.page_count, Ordering::Relaxed);
            run.progress.on_duplicate(path, first);
            if let Ok(mut d) = run.duplicates.lock() {
                d.push((path.clone(), first.clone()));
            }
            continue;
        }
        contents.insert(doc.sha256.clone(), path.clone());
        run.progress.on_document_opened(path, &doc.doc_id, doc.page_count);
        if !run.progress.still_wanted(path, &doc.doc_id) {
            continue;
        }
        let mut doc = doc;
        doc.dropped = run.inflight.register(&doc.doc_id, read_epoch);
        if let Ok(mut held) = run.held.lock() {
            held.push((doc.doc_id.clone(), doc.sha256.clone(), doc.dropped.clone()));
        }
        if doc.dropped() {
            continue;
        }
        // Fewer pages than the file holds (its page tree, or a tolerant scan), or a truncated file: a named
        // failure (exit 1), and the pages that can be read are still ingested.
        if let Err(e) = doc.pdf.page_count_check() {
            run.fail(path, None, e.into());
        }
        let stored = if run.opts.force {
            Default::default()
        } else {
            match run.index.pages_of_file(&doc.sha256) {
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
            if run.stopped() {
                return;
            }
            if doc.dropped() {
                break;
            }
            if jobs.send(PageJob { doc: doc.clone(), page_index }).is_err() {
                return;
            }
        }
    }
}

fn open_document(run: &Run<'_>, path: &Path) -> Result<DocState> {
    // A FIFO or device named *.pdf would block the read forever.
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => return Err(Error::NotRegularFile(path.to_path_buf())),
        Err(source) => return Err(Error::Io { op: "read", path: path.into(), source }),
        Ok(_) => {}
    }
    let bytes = std::fs::read(path).map_err(|source| Error::Io { op: "read", path: path.into(), source })?;
    let sha256 = format!("{:x}", Sha256::digest(&bytes));
    let name = path.display().to_string();
    let pdf = Document::from_bytes(bytes, run.opts.password.as_deref(), &name)?;
    let page_count = pdf.page_count();
    let expected_pages = pdf.expected_pages().max(page_count);
    Ok(DocState {
        path: path.to_path_buf(),
        source: crate::discover::stored_path(path),
        doc_id: doc_id(&sha256),
        sha256,
        pdf: Arc::new(pdf),
        page_count,
        expected_pages,
        remaining: AtomicUsize::new(0),
        dropped: Arc::default(),
    })
}

fn render_worker(run: &Run<'_>, jobs: &Mutex<Receiver<PageJob>>, pages: SyncSender<Item<RenderedPage>>) {
    background_priority();
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(PageJob { doc, page_index }) = job else { return };
        if run.stopped() || doc.dropped() {
            continue; // drain the queue so the planner is never blocked
        }
        let outcome = render_page(run, &doc, page_index);
        if outcome.is_ok() {
            run.progress.on_page_rendered();
        }
        if pages.send(Item { doc, page_index, outcome }).is_err() {
            // The embed stage is gone: the run failed (the store stage hit a fatal error, e.g. a remote index
            // went down). Keep draining the queue: the planner may be blocked sending to it, and the queue's
            // receiver lives as long as the whole run.
            continue;
        }
    }
}

/// Render once at a size from which the model's target is reached by downsampling, keep a preview from the
/// same rendering, preprocess (§2 of the fact sheet).
fn render_page(run: &Run<'_>, doc: &DocState, page_index: usize) -> Result<RenderedPage> {
    let limits = &run.opts.render_limits;
    let size_pt = doc.pdf.page_size_pt(page_index)?;
    let embedder = run.worker.embedder();
    let (w, h) = colqwen_pdf::render_size(size_pt, embedder.max_pixels(), limits);
    let image = colqwen_pdf::render_contained(&doc.pdf, page_index, w, h, limits)?;
    let preview = match run.opts.preview_max_side {
        0 => None,
        side => Some(run.previews.write(&doc.doc_id, page_index, &colqwen_pdf::encode_preview(&image, side, 80)?)?),
    };
    let input = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| embedder.prepare(&image)))
        .map_err(|_| "preprocessing panicked".into())
        .and_then(|r| r)
        .map_err(|e| {
            Error::Pdf(colqwen_pdf::Error::RenderPanicked {
                path: doc.path.clone(),
                page_index,
                message: format!("preprocessing failed: {e}"),
            })
        })?;
    Ok(RenderedPage { input, size_pt, preview })
}

/// Collects full batches (or what is left at the end), runs the model, passes failures straight through.
fn embed_stage(
    run: &Run<'_>,
    pages: &Mutex<Receiver<Item<RenderedPage>>>,
    out: SyncSender<Item<Embedded>>,
    batch_size: usize,
) {
    let mut batch: Vec<(Arc<DocState>, usize, PageMeta)> = Vec::with_capacity(batch_size);
    let mut inputs: Vec<PageInput> = Vec::with_capacity(batch_size);
    let mut open = true;
    while open || !batch.is_empty() {
        while open && batch.len() < batch_size {
            let next = pages.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
            match next {
                Ok(Item { doc, page_index, outcome: Ok(page) }) => {
                    inputs.push(page.input);
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
        // Pages of a document deleted meanwhile are not worth the device's time.
        let mut i = 0;
        while i < batch.len() {
            if batch[i].0.dropped() {
                batch.remove(i);
                inputs.remove(i);
            } else {
                i += 1;
            }
        }
        if batch.is_empty() {
            continue;
        }
        if run.stopped() {
            // Rendered but not embedded: redone by the next run.
            batch.clear();
            inputs.clear();
            continue;
        }
        let result = run.worker.embed_pages(std::mem::take(&mut inputs));
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
                let reason = crate::progress::error_chain(&e);
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

/// Pages written between two flushes inside a long document. A store promises only flushed pages to survive a
/// kill (the embedded store's log usually keeps more, cut at the first torn record): this bounds the work a
/// killed run has to redo.
const FLUSH_EVERY_PAGES: usize = 256;

/// Writes pages, and finishes each document (old versions removed, flush) when its last page is through.
fn store_stage(run: &Run<'_>, items: Receiver<Item<Embedded>>) {
    let mut since_flush = 0usize;
    // Whatever has arrived is written in one upsert (at most STORE_BATCH_PAGES): one lock round-trip with the
    // searches of a server per batch, not per page.
    while let Ok(first) = items.recv() {
        let mut batch = vec![first];
        while batch.len() < STORE_BATCH_PAGES {
            match items.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        // Cancelled runs still store what reaches this stage (the batch that was on the device).
        if run.failed() {
            return;
        }
        let mut records = Vec::with_capacity(batch.len());
        let mut done = Vec::with_capacity(batch.len());
        // Under the lock that a delete takes: a document deleted before this point has none of its pages
        // written, one deleted after loses them with the rest of it.
        let gate = run.inflight.write();
        for Item { doc, page_index, outcome } in batch {
            if doc.dropped() {
                continue;
            }
            match outcome {
                Ok(Embedded { page, vectors }) => {
                    records.push(PageRecord {
                        doc_id: doc.doc_id.clone(),
                        source_path: doc.source.clone(),
                        file_sha256: doc.sha256.clone(),
                        page_index,
                        page_count: doc.expected_pages,
                        page_width_pt: page.size_pt.0,
                        page_height_pt: page.size_pt.1,
                        preview: page.preview,
                        vectors,
                    });
                    done.push((doc, Ok(())));
                }
                Err(e) => done.push((doc, Err((page_index, e)))),
            }
        }
        let stored = records.len();
        if stored > 0
            && let Err(e) = run.index.upsert(records)
        {
            run.set_fatal(e.into());
            return;
        }
        drop(gate);
        run.ingested.fetch_add(stored, Ordering::Relaxed);
        since_flush += stored;
        for (doc, outcome) in done {
            match outcome {
                Ok(()) => run.progress.on_pages_stored(&doc.path, 1),
                Err((page_index, e)) => run.fail(&doc.path, Some(page_index), e),
            }
            if doc.remaining.fetch_sub(1, Ordering::SeqCst) == 1 && !doc.dropped() {
                finish_document(run, &doc);
                since_flush = 0;
            }
        }
        if since_flush >= FLUSH_EVERY_PAGES {
            if let Err(e) = run.index.flush() {
                run.set_fatal(e.into());
                return;
            }
            since_flush = 0;
        }
    }
    // A cancelled run leaves documents unfinished: make what was stored durable.
    if since_flush > 0
        && let Err(e) = run.index.flush()
    {
        run.set_fatal(e.into());
    }
}

/// Pages written by one upsert at most.
const STORE_BATCH_PAGES: usize = 32;

/// Drops pages of older versions of this path and flushes: what the summary reports as stored is durable.
fn finish_document(run: &Run<'_>, doc: &DocState) {
    let result = run.index.delete_file_version(&doc.source, &doc.sha256).and_then(|n| {
        run.index.flush()?;
        Ok(n)
    });
    match result {
        Ok(n) => {
            run.replaced.fetch_add(n, Ordering::Relaxed);
            run.progress.on_document_done(&doc.path);
        }
        Err(e) => run.set_fatal(e.into()),
    }
}

/// The end of a run: its documents are no longer held; previews that its renders wrote for a document deleted
/// during the run (after the delete removed the document's previews) are removed when none of its pages is
/// stored.
fn forget_dropped(run: &Run<'_>) {
    let held = std::mem::take(&mut *run.held.lock().unwrap_or_else(PoisonError::into_inner));
    {
        let _gate = run.inflight.write();
        for (doc_id, sha256, dropped) in &held {
            if dropped.load(Ordering::SeqCst) && run.index.pages_of_file(sha256).is_ok_and(|p| p.is_empty()) {
                tracing::info!(doc = %doc_id, "deleted while it was being ingested: its remaining pages were dropped");
                if let Err(e) = run.previews.delete(doc_id) {
                    tracing::warn!("cannot remove the previews of deleted document {doc_id}: {e}");
                }
            }
        }
    }
    let held: Vec<(String, Arc<AtomicBool>)> = held.into_iter().map(|(d, _, f)| (d, f)).collect();
    run.inflight.end_run(&held);
}

/// Rendering is the CPU-heavy background work of an ingest: on Linux its threads run at nice 10, so that in a
/// server the threads answering searches (and the device worker) get the cores first. Alone, an ingest runs
/// as fast as before (nice only matters when threads compete).
fn background_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread; failure leaves the priority as it was.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}
