//! The library's `Service` on the CPU with the committed tiny fixture model and real PDFs: ingest, search,
//! delete and previews; searches from other threads while an ingest writes; cancellation and resume; the
//! device worker serving queries ahead of page batches; the model check before any load.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use colqwen::core::{BoxError, MultiVector, PageEmbedder, PageInput, VectorStorage};
use colqwen::model::HubOptions;
use colqwen::{
    DTypeChoice, DeviceChoice, Engine, EngineOptions, Error, IngestOptions, NoProgress, Progress, Runtime,
    SearchOptions, Service, ServiceOptions,
};
use colqwen_testkit::{fixtures_dir, tiny_adapter, tiny_base};

const MANUAL: &str = "reportlab-userguide_broken-xref.pdf";

fn pdf(name: &str) -> PathBuf {
    fixtures_dir().join("pdfs").join(name)
}

fn options(index: &Path, model: &Path) -> ServiceOptions {
    ServiceOptions {
        index_dir: index.to_path_buf(),
        remote: None,
        engine: EngineOptions {
            model: Some(model.display().to_string()),
            hub: HubOptions { offline: true, ..Default::default() },
            ..Default::default()
        },
        runtimes: vec![Runtime::resolve(DeviceChoice::Cpu, DTypeChoice::Auto).unwrap()],
        reserve_query_replica: false,
        storage: VectorStorage::F16,
        pool_factor: 1,
        search_device: Default::default(),
    }
}

fn never() -> AtomicBool {
    AtomicBool::new(false)
}

#[test]
fn ingest_search_preview_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let service = Service::open(&options(&index, &tiny_adapter())).unwrap();
    let files = [pdf("siscone-refman_p60_diagram.pdf"), pdf("gutenprint-users-manual_p5-14_text.pdf")];
    let s = service.ingest(&files, &IngestOptions::default(), &NoProgress, &never()).unwrap();
    assert_eq!((s.pages_ingested, s.failures.len(), s.cancelled), (11, 0, false));
    let again = service.ingest(&files, &IngestOptions::default(), &NoProgress, &never()).unwrap();
    assert_eq!((again.pages_ingested, again.pages_skipped), (0, 11));

    let hits = service.search("printer driver", &SearchOptions { k: 4, ..Default::default() }).unwrap();
    assert_eq!(hits.len(), 4);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    let jpeg = service.preview(&hits[0].doc_id, hits[0].page_number).unwrap();
    assert_eq!(&jpeg[..2], &[0xff, 0xd8]);
    assert!(matches!(service.preview(&hits[0].doc_id, 999), Err(Error::NoSuchPage { .. })));
    assert!(matches!(service.preview("../x", 1), Err(Error::InvalidId(_))));
    assert!(matches!(service.search("  ", &SearchOptions::default()), Err(Error::EmptyQuery)));

    let one = service.resolve_document("siscone-refman_p60_diagram.pdf").unwrap();
    let filtered = service.search("x", &SearchOptions { k: 10, doc: Some(one.clone()), ..Default::default() }).unwrap();
    assert_eq!(filtered.len(), 1);
    assert_eq!(service.delete_document(&one).unwrap(), 1);
    assert_eq!(service.stats().unwrap().pages, 10);
    assert!(matches!(service.preview(&one, 1), Err(Error::NoSuchPage { .. })), "previews go with the document");
    assert!(matches!(service.delete_document("../../etc"), Err(Error::InvalidId(_))));

    // Embeddings straight from the worker: one 128-wide multi-vector per input.
    let q = service.embed_queries(&["a", "reset the firmware"]).unwrap();
    assert_eq!(q.len(), 2);
    assert!(q.iter().all(|m| m.dim == 128 && m.rows > 0));
    let img = image::RgbImage::from_pixel(100, 60, image::Rgb([255, 255, 255]));
    assert_eq!(service.embed_images(&[img]).unwrap()[0].dim, 128);
}

#[test]
fn searches_from_other_threads_while_an_ingest_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let service = Arc::new(Service::open(&options(&index, &tiny_adapter())).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let searcher = {
        let (service, done) = (service.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut searches, mut with_hits) = (0, 0);
            while !done.load(Ordering::SeqCst) {
                let hits = service.search("paragraph styles", &SearchOptions::default()).expect("search during ingest");
                searches += 1;
                with_hits += usize::from(!hits.is_empty());
            }
            (searches, with_hits)
        })
    };
    let s = service.ingest(&[pdf(MANUAL)], &IngestOptions::default(), &NoProgress, &never()).unwrap();
    done.store(true, Ordering::SeqCst);
    let (searches, with_hits) = searcher.join().unwrap();
    assert_eq!(s.pages_ingested, 134);
    assert!(searches >= 3 && with_hits >= 1, "{searches} searches, {with_hits} with hits");
    assert_eq!(service.stats().unwrap().pages, 134);
}

/// Cancels the run once `after` pages are stored.
struct CancelAfter<'a> {
    stored: AtomicUsize,
    after: usize,
    cancel: &'a AtomicBool,
}

impl Progress for CancelAfter<'_> {
    fn on_pages_stored(&self, _path: &Path, n: usize) {
        if self.stored.fetch_add(n, Ordering::SeqCst) + n >= self.after {
            self.cancel.store(true, Ordering::SeqCst);
        }
    }
}

#[test]
fn a_cancelled_ingest_keeps_what_it_stored_and_a_rerun_completes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let cancel = AtomicBool::new(false);
    {
        let service = Service::open(&options(&index, &tiny_adapter())).unwrap();
        let progress = CancelAfter { stored: AtomicUsize::new(0), after: 10, cancel: &cancel };
        let s = service.ingest(&[pdf(MANUAL)], &IngestOptions::default(), &progress, &cancel).unwrap();
        assert!(s.cancelled);
        assert!(s.pages_ingested >= 10 && s.pages_ingested < 134, "{}", s.pages_ingested);
        assert_eq!(service.stats().unwrap().pages, s.pages_ingested, "what was stored is flushed");
    }
    let service = Service::open(&options(&index, &tiny_adapter())).unwrap();
    let stored = service.stats().unwrap().pages;
    let s = service.ingest(&[pdf(MANUAL)], &IngestOptions::default(), &NoProgress, &never()).unwrap();
    assert_eq!(s.pages_skipped, stored);
    assert_eq!(service.stats().unwrap().pages, 134);
    assert_eq!(service.documents().unwrap()[0].stored_pages, 134);
}

#[test]
fn the_worker_serves_a_query_after_at_most_one_page_batch() {
    let (mut reps, _) = replicas(1, &[]);
    let logged = reps.pop().unwrap();
    let worker = Arc::new(colqwen::EmbedWorker::start(logged.clone()));
    let page = || {
        let img = image::RgbImage::from_pixel(600, 800, image::Rgb([250, 250, 250]));
        logged.prepare(&img).unwrap()
    };
    // Eight page batches queued at once from eight threads, then a query.
    let pagers: Vec<_> = (0..8)
        .map(|_| {
            let (worker, input) = (worker.clone(), page());
            std::thread::spawn(move || worker.embed_pages(vec![input]).unwrap())
        })
        .collect();
    // Wait until every batch is queued or done, then ask; batches still queued then must wait for the query.
    let (queued_at_ask, done_at_ask) = loop {
        let done = logged.log.lock().unwrap().len();
        let queued = worker.queue_depths().1;
        if done + queued >= 7 {
            break (queued, done);
        }
        std::thread::yield_now();
    };
    let q = worker.embed_query("where is the reset button").unwrap();
    assert_eq!(q.dim, 128);
    for p in pagers {
        p.join().unwrap();
    }
    let log = logged.log.lock().unwrap().clone();
    let at = log.iter().position(|e| *e == "query").unwrap();
    // At most the batch that was on the device when the query arrived ran in between.
    assert!(at <= done_at_ask + 1, "the query ran after {at} page batches ({done_at_ask} done when asked): {log:?}");
    assert!(queued_at_ask >= 1 || done_at_ask >= 7, "the test queued batches ahead of the query");
    assert_eq!(log.iter().filter(|e| **e == "pages").count(), 8);
}

#[test]
fn another_model_is_refused_before_loading_and_a_missing_index_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let missing = Service::open_existing(&options(&index, &tiny_adapter()));
    assert!(matches!(missing, Err(Error::NoIndex(_))));
    drop(Service::open(&options(&index, &tiny_adapter())).unwrap());
    let mut other = options(&index, &tiny_base());
    other.engine.model = Some(tiny_base().display().to_string());
    match Service::open(&other) {
        Err(e @ Error::ModelMismatch { .. }) => assert!(e.hint().unwrap().contains("omit --model")),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("another model was accepted"),
    }
}

/// A replica of the real engine that records the order in which it runs page batches and queries and how many
/// page batches run at once across the pool, and can be made to fail its first `fail_first` page batches (a
/// lost device, out of memory).
struct Replica {
    inner: Engine,
    log: Mutex<Vec<&'static str>>,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    batches: AtomicUsize,
    fail_first: usize,
    /// Added to each page batch, so that a batch lasts longer than rendering the next (as on a GPU with the
    /// full-size model); the tiny model on the CPU is faster than the renderer.
    delay: std::time::Duration,
}

impl PageEmbedder for Replica {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn family(&self) -> &str {
        self.inner.family()
    }
    fn embedding_dim(&self) -> usize {
        self.inner.embedding_dim()
    }
    fn preprocessing(&self) -> serde_json::Value {
        self.inner.preprocessing()
    }
    fn max_pixels(&self) -> u64 {
        self.inner.max_pixels()
    }
    fn prepare(&self, image: &image::RgbImage) -> Result<PageInput, BoxError> {
        self.inner.prepare(image)
    }
    fn default_batch_size(&self) -> usize {
        4
    }
    fn embed_pages(&self, pages: Vec<PageInput>) -> Result<Vec<MultiVector>, BoxError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let n = self.batches.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        let r = if n < self.fail_first {
            Err("CUDA_ERROR_ILLEGAL_ADDRESS (injected)".into())
        } else {
            self.inner.embed_pages(pages)
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.log.lock().unwrap().push("pages");
        r
    }
    fn embed_queries(&self, queries: &[&str]) -> Result<Vec<MultiVector>, BoxError> {
        let r = self.inner.embed_queries(queries);
        self.log.lock().unwrap().push("query");
        r
    }
    fn device_name(&self) -> String {
        self.inner.device_name()
    }
}

fn replicas(n: usize, fail_first: &[usize]) -> (Vec<Arc<Replica>>, Arc<AtomicUsize>) {
    let runtime = Runtime::resolve(DeviceChoice::Cpu, DTypeChoice::Auto).unwrap();
    let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let v = (0..n)
        .map(|i| {
            let engine =
                Engine::load(&tiny_adapter().display().to_string(), &EngineOptions::default(), &runtime).unwrap();
            Arc::new(Replica {
                inner: engine,
                log: Mutex::new(Vec::new()),
                running: running.clone(),
                peak: peak.clone(),
                batches: AtomicUsize::new(0),
                fail_first: fail_first.get(i).copied().unwrap_or(0),
                delay: std::time::Duration::from_millis(400),
            })
        })
        .collect();
    (v, peak)
}

/// Two replicas (two CPU workers standing in for two GPUs): both take page batches at once, the index is the
/// same as with one worker (same pages, same scores), and a batch that fails on one replica is retried on the
/// other instead of failing its pages.
#[test]
fn a_pool_of_two_replicas_shares_the_pages_and_retries_a_failed_batch() {
    use colqwen::{EmbedWorker, PoolOptions};
    let tmp = tempfile::tempdir().unwrap();
    let files = [pdf("gutenprint-users-manual_p5-14_text.pdf"), pdf("siscone-refman_p60_diagram.pdf")];
    let one = Service::open(&options(&tmp.path().join("one"), &tiny_adapter())).unwrap();
    one.ingest(&files, &IngestOptions::default(), &NoProgress, &never()).unwrap();

    let (reps, _) = replicas(2, &[1, 0]);
    let store =
        colqwen::store::Store::open_or_create(&tmp.path().join("two"), &reps[0].manifest(VectorStorage::F16)).unwrap();
    let pool = EmbedWorker::start_pool(
        reps.iter().map(|r| r.clone() as Arc<dyn PageEmbedder>).collect(),
        PoolOptions::default(),
    );
    assert_eq!(pool.replicas(), 2);
    let two = Service::with_worker(Arc::new(store), &tmp.path().join("two"), Some(pool));
    let s = two.ingest(&files, &IngestOptions::default(), &NoProgress, &never()).unwrap();
    assert_eq!((s.pages_ingested, s.failures.len()), (11, 0), "the failed batch was retried: {:?}", s.failures);
    // Whichever replica took which batch (that depends on timing), replica 0's first batch failed and was
    // redone: the index must be the same as with one worker.
    for query in ["printer driver", "diagram of the algorithm"] {
        let opts = SearchOptions { k: 11, ..Default::default() };
        let (a, b) = (one.search(query, &opts).unwrap(), two.search(query, &opts).unwrap());
        let key = |h: &colqwen::SearchHit| (h.doc_id.clone(), h.page_number, (h.score * 1e4).round() as i64);
        assert_eq!(a.iter().map(key).collect::<Vec<_>>(), b.iter().map(key).collect::<Vec<_>>(), "{query}");
    }
}

/// Two page batches submitted at once run at once on two replicas (each lasts 400 ms, far longer than the
/// submissions take).
#[test]
fn two_replicas_run_two_page_batches_at_once() {
    use colqwen::{EmbedWorker, PoolOptions};
    let (reps, peak) = replicas(2, &[]);
    let pool = Arc::new(EmbedWorker::start_pool(
        reps.iter().map(|r| r.clone() as Arc<dyn PageEmbedder>).collect(),
        PoolOptions::default(),
    ));
    let img = image::RgbImage::from_pixel(600, 800, image::Rgb([250, 250, 250]));
    let inputs: Vec<_> = (0..2).map(|_| reps[0].prepare(&img).unwrap()).collect();
    let threads: Vec<_> = inputs
        .into_iter()
        .map(|input| {
            let pool = pool.clone();
            std::thread::spawn(move || pool.embed_pages(vec![input]).unwrap())
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2, "two page batches ran at once");
    assert!(reps.iter().all(|r| r.batches.load(Ordering::SeqCst) == 1), "one batch each");
}

/// With `reserve_for_queries` (the server), page batches never occupy both replicas: one is free for queries.
/// A batch that fails on every replica fails its pages (named), it is not retried forever.
#[test]
fn a_reserved_replica_keeps_queries_off_the_page_lane() {
    use colqwen::{EmbedWorker, PoolOptions};
    let (reps, peak) = replicas(2, &[usize::MAX, 0]);
    let pool = Arc::new(EmbedWorker::start_pool(
        reps.iter().map(|r| r.clone() as Arc<dyn PageEmbedder>).collect(),
        PoolOptions { reserve_for_queries: true },
    ));
    let img = image::RgbImage::from_pixel(600, 800, image::Rgb([250, 250, 250]));
    let pagers: Vec<_> = (0..6)
        .map(|_| {
            let (pool, input) = (pool.clone(), reps[0].prepare(&img).unwrap());
            std::thread::spawn(move || pool.embed_pages(vec![input]))
        })
        .collect();
    let q = pool.embed_query("where is the index").unwrap();
    assert!(q.rows > 0);
    let results: Vec<_> = pagers.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(peak.load(Ordering::SeqCst), 1, "one replica stays free of page batches");
    // Replica 0 always fails: its batches went to replica 1 and succeeded there.
    assert!(
        results.iter().all(Result::is_ok),
        "{:?}",
        results.iter().filter_map(|r| r.as_ref().err()).collect::<Vec<_>>()
    );

    let (bad, _) = replicas(2, &[usize::MAX, usize::MAX]);
    let pool = EmbedWorker::start_pool(
        bad.iter().map(|r| r.clone() as Arc<dyn PageEmbedder>).collect(),
        PoolOptions::default(),
    );
    let err = pool.embed_pages(vec![bad[0].prepare(&img).unwrap()]).unwrap_err();
    assert!(err.to_string().contains("another replica"), "{err}");
}

/// Deletes the document from another thread once `after` pages of it are stored (issue 22, item 3).
struct DeleteAfter<'a> {
    service: &'a Service,
    stored: AtomicUsize,
    after: usize,
    doc: Mutex<Option<String>>,
    deleted: Mutex<Option<usize>>,
}

impl Progress for DeleteAfter<'_> {
    fn on_document_opened(&self, _path: &Path, doc_id: &str, _page_count: usize) {
        // The first file's: the one deleted.
        self.doc.lock().expect("the lock").get_or_insert_with(|| doc_id.to_string());
    }
    fn on_pages_stored(&self, _path: &Path, n: usize) {
        if self.stored.fetch_add(n, Ordering::SeqCst) + n == self.after {
            let doc = self.doc.lock().expect("the lock").clone().expect("a document was opened");
            // Another thread, as a server's request would: the store stage goes on meanwhile.
            let pages = std::thread::scope(|s| {
                s.spawn(|| self.service.delete_document(&doc).expect("the delete")).join().expect("the deleting thread")
            });
            *self.deleted.lock().expect("the lock") = Some(pages);
        }
    }
}

#[test]
fn a_delete_during_an_ingest_is_final() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let service = Service::open(&options(&index, &tiny_adapter())).unwrap();
    let progress = DeleteAfter {
        service: &service,
        stored: AtomicUsize::new(0),
        after: 12,
        doc: Mutex::new(None),
        deleted: Mutex::new(None),
    };
    let files = [pdf(MANUAL), pdf("siscone-refman_p60_diagram.pdf")];
    let s = service.ingest(&files, &IngestOptions::default(), &progress, &never()).unwrap();
    let deleted = progress.deleted.lock().unwrap().unwrap();
    assert!(deleted >= 12, "the pages stored by then were deleted: {deleted}");
    assert!(s.pages_ingested < 134 + 1, "the rest of the manual was dropped: {}", s.pages_ingested);
    let docs = service.documents().unwrap();
    assert_eq!(docs.len(), 1, "only the other file is stored: {docs:?}");
    assert_eq!(docs[0].page_count, 1);
    assert_eq!(service.stats().unwrap().pages, 1, "no page of the deleted document came back");
    let doc = progress.doc.lock().unwrap().clone().unwrap();
    assert!(!index.join("previews").join(&doc).exists(), "its previews are gone, those rendered after the delete too");
    // A later ingest of the same file is a new one, and complete.
    let again = service.ingest(&[pdf(MANUAL)], &IngestOptions::default(), &NoProgress, &never()).unwrap();
    assert_eq!(again.pages_ingested, 134);
}
