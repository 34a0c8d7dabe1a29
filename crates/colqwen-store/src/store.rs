//! The index folder: `<dir>/manifest.json`, `<dir>/pages.log` (every page, [`crate::log`]), `<dir>/LOCK`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};
use std::time::Instant;

use colqwen_core::{
    DocumentInfo, Hit, IndexManifest, MultiVector, PageIndex, PageRecord, SearchMode, Stats, VectorStorage,
};
use half::f16;
use memmap2::Mmap;

use crate::accel::{ExactScorer, PagesView};
use crate::coarse::{Codebook, PageCodes};
use crate::error::{Error, Result};
use crate::kernel::{BLOCK, Isa, layout};
use crate::log::{self, Entry, FileHeader, PageMeta};
use crate::point_id;
use crate::search::{self, Candidate, SearchPlan};

pub use crate::search::{AUTO_EXACT_MAX_PAGES, AUTO_PREFETCH, auto_prefetch};

const LOCK_FILE: &str = "LOCK";
/// Folder of the index format 1 (qdrant-edge): its presence names the old format in the error.
const OLD_SHARD_DIR: &str = "shard";
/// Compact when dead records (replaced or deleted pages) exceed both this and the live bytes. Small, so that a
/// small index that is written to all day (a server's uploads and deletes) keeps a log of about its live size:
/// with 256 MiB the 30-minute soak's log (101 live pages) rose to 258 MB before each compaction. Compacting
/// copies the live bytes only, and only once as many dead bytes have piled up, so the cost per written byte
/// stays constant whatever this is.
const COMPACT_MIN_DEAD_BYTES: u64 = 32 << 20;

/// One stored page: where its record and vectors are, and what it is.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) meta: PageMeta,
    /// Start and padded length of the record (for compaction).
    record: (u64, u64),
    /// Byte offset and length of the vectors (stored layout) in the log.
    pub(crate) data: (u64, u64),
    /// Byte offset and length of the pooling labels after them (length 0 when the page is not pooled).
    labels: (u64, u64),
    /// The page's codes under the codebook of the snapshots that hold this slot (set once by the optimizer; a
    /// retrained codebook comes with new slots).
    pub(crate) codes: OnceLock<Arc<PageCodes>>,
}

impl Slot {
    /// `payload`: where the record's vectors start and how many bytes follow them (vectors, then labels).
    pub(crate) fn new(meta: PageMeta, record: (u64, u64), payload: (u64, u64)) -> Slot {
        let labels_len = meta.pooled_from.map_or(0, |n| 4 * n as u64).min(payload.1);
        let vectors = payload.1 - labels_len;
        Slot {
            meta,
            record,
            data: (payload.0, vectors),
            labels: (payload.0 + vectors, labels_len),
            codes: OnceLock::new(),
        }
    }

    /// Where the vectors start and how many bytes the record holds after that (vectors and labels).
    fn payload(&self) -> (u64, u64) {
        (self.data.0, self.data.1 + self.labels.1)
    }

    /// The same page without codes (for a new codebook).
    pub(crate) fn uncoded(&self) -> Slot {
        Slot::new(self.meta.clone(), self.record, self.payload())
    }

    /// Whether the record holds as many bytes as its rows need (vectors of `block_bytes` per 16 rows, then
    /// the labels): a record written by this store always does.
    fn sized_right(&self, block_bytes: u64) -> bool {
        let blocks = layout::padded_rows(self.meta.rows) as u64 / BLOCK as u64;
        self.meta.rows > 0
            && self.data.1 == blocks * block_bytes
            && self.labels.1 == self.meta.pooled_from.map_or(0, |n| 4 * n as u64)
    }
}

/// What searches read: the pages at one moment and a map of the log that holds them. Readers clone the `Arc`
/// and search without any lock; writers publish a new snapshot after each write.
pub(crate) struct Snapshot {
    pub(crate) pages: Vec<Arc<Slot>>,
    pub(crate) map: Option<Arc<Mmap>>,
    /// The codebook the pages' codes refer to.
    pub(crate) codebook: Option<Arc<Codebook>>,
    /// Kept while each snapshot is the previous one with pages appended ([`crate::PagesView::lineage`]).
    pub(crate) lineage: u64,
}

/// Lineages are unique in the process (a scorer could outlive one store and see the next).
static NEXT_LINEAGE: AtomicU64 = AtomicU64::new(1);

fn new_lineage() -> u64 {
    NEXT_LINEAGE.fetch_add(1, AtomicOrdering::Relaxed)
}

pub(crate) struct Writer {
    file: File,
    /// Length of the log (the next record's offset).
    len: u64,
    /// Length made durable by the last flush.
    committed: u64,
    /// Bytes of records that no longer describe a live page.
    dead_bytes: u64,
}

/// An open index. Holds an exclusive lock on `<dir>/LOCK` until dropped; while open, a background thread keeps
/// the coarse stage up to date ([`crate::coarse`]).
pub struct Store {
    inner: Arc<Inner>,
    optimizer: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .field("isa", &self.inner.isa.name())
            .finish_non_exhaustive()
    }
}

/// The store itself, shared with the optimizer thread.
pub(crate) struct Inner {
    /// Serialises writers (upsert, delete, flush, compaction, coarse retraining). Readers never take it.
    writer: Mutex<Writer>,
    /// Live pages by point id, and the snapshot searches read.
    table: RwLock<Table>,
    manifest: IndexManifest,
    isa: Isa,
    threads: AtomicUsize,
    /// Scores every page on a device instead of the CPU scan, when set ([`Store::set_exact_scorer`]).
    scorer: RwLock<Option<Arc<dyn ExactScorer>>>,
    /// Set by every write; the optimizer waits on it.
    pub(crate) dirty: (Mutex<bool>, Condvar),
    pub(crate) stop: AtomicBool,
    /// Held for a whole round of the coarse stage's upkeep ([`crate::optimize`]): the background thread and
    /// [`Store::optimize`] never train or code at the same time.
    pub(crate) updating: Mutex<()>,
    /// [`Store::optimize`] calls running or waiting: the background thread gives up its round for them.
    pub(crate) foreground: AtomicUsize,
    /// Pages covered by the last saved `coarse.bin`.
    pub(crate) saved_pages: AtomicUsize,
    dir: PathBuf,
    _lock: File,
}

pub(crate) struct Table {
    pub(crate) pages: HashMap<u64, Arc<Slot>>,
    pub(crate) snapshot: Arc<Snapshot>,
    pub(crate) codebook: Option<Arc<Codebook>>,
    /// Rows in the index when the codebook was trained.
    pub(crate) trained_rows: usize,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot { pages: Vec::new(), map: None, codebook: None, lineage: new_lineage() }
    }
}

impl Store {
    /// Creates the index if `dir` holds none, else opens it. Refuses an index built with another
    /// model, dimension, preprocessing, storage type or format, naming both values.
    pub fn open_or_create(dir: &Path, manifest: &IndexManifest) -> Result<Store> {
        manifest.validate(dir)?;
        fs::create_dir_all(dir).map_err(Error::io("creating index directory", dir))?;
        let lock = lock(dir)?;
        match IndexManifest::read(dir)? {
            Some(on_disk) => {
                on_disk.validate(dir)?;
                on_disk.check_same(manifest, dir)?;
            }
            None => {
                if dir.join(log::LOG_FILE).exists() {
                    return Err(Error::Damaged {
                        dir: dir.to_path_buf(),
                        reason: "pages.log exists but manifest.json is missing",
                    });
                }
                crate::space::ensure(dir, 0, "creating the index")?;
                log::create(&dir.join(log::LOG_FILE), manifest.embedding_dim as u32, elem_bytes(manifest.storage))?;
                manifest.write(dir)?;
                tracing::info!(dir = %dir.display(), model_id = %manifest.model_id, storage = %manifest.storage, "created index");
            }
        }
        Self::load(dir, manifest.clone(), lock)
    }

    /// Opens an existing index; [`Error::NotFound`] if `dir` holds none.
    pub fn open(dir: &Path) -> Result<Store> {
        if !IndexManifest::path(dir).exists() {
            return Err(Error::NotFound { dir: dir.to_path_buf() });
        }
        let lock = lock(dir)?;
        let manifest = IndexManifest::read(dir)?.ok_or_else(|| Error::NotFound { dir: dir.to_path_buf() })?;
        manifest.validate(dir)?;
        Self::load(dir, manifest, lock)
    }

    fn load(dir: &Path, manifest: IndexManifest, lock: File) -> Result<Store> {
        let started = Instant::now();
        let path = dir.join(log::LOG_FILE);
        if !path.exists() {
            let reason = if dir.join(OLD_SHARD_DIR).exists() {
                "it holds the qdrant-edge layout of an older colqwen (shard/) without pages.log"
            } else {
                "manifest.json exists but pages.log is missing"
            };
            return Err(Error::Damaged { dir: dir.to_path_buf(), reason });
        }
        // A compaction that stopped before its rename leaves its file: the log itself is intact.
        let _ = fs::remove_file(dir.join(log::COMPACT_FILE));
        let mut file =
            File::options().read(true).write(true).open(&path).map_err(Error::io("opening page log", &path))?;
        let mut pages: HashMap<u64, Arc<Slot>> = HashMap::new();
        let mut dead_bytes = 0u64;
        let (header, valid) = log::scan(&mut file, &path, |entry| match entry {
            Entry::Put { meta, record, data } => {
                if let Some(old) = pages.insert(meta.id, Arc::new(Slot::new(meta, record, data))) {
                    dead_bytes += old.record.1;
                }
            }
            Entry::Delete { ids, record } => {
                dead_bytes += record.1;
                for id in ids {
                    if let Some(old) = pages.remove(&id) {
                        dead_bytes += old.record.1;
                    }
                }
            }
        })?;
        if header.dim as usize != manifest.embedding_dim || header.elem_bytes != elem_bytes(manifest.storage) {
            return Err(Error::Damaged {
                dir: dir.to_path_buf(),
                reason: "pages.log was written with another dimension or element type than manifest.json says",
            });
        }
        let block_bytes = layout::block_bytes(manifest.storage, manifest.embedding_dim) as u64;
        if !pages.values().all(|slot| slot.sized_right(block_bytes)) {
            return Err(Error::Damaged {
                dir: dir.to_path_buf(),
                reason: "a page record holds another number of bytes than its rows need",
            });
        }
        let len = file.metadata().map_err(Error::io("reading page log", &path))?.len();
        if valid < len {
            file.set_len(valid).map_err(Error::io("cutting the unflushed tail of", &path))?;
        }
        if valid != header.committed {
            log::commit(&file, &path, FileHeader { committed: valid, ..header })?;
        }
        let coarse = crate::coarse::Coarse::load(dir, manifest.embedding_dim);
        let (codebook, trained_rows) = match coarse {
            Some(c) => {
                let mut covered = 0;
                for slot in pages.values() {
                    if let Some(codes) = c.codes.get(&slot.meta.id) {
                        let _ = slot.codes.set(codes.clone());
                        covered += 1;
                    }
                }
                tracing::debug!(pages = pages.len(), covered, "loaded the coarse stage");
                (Some(Arc::new(c.codebook)), c.trained_rows)
            }
            None => (None, 0),
        };
        let inner = Arc::new(Inner {
            writer: Mutex::new(Writer { file, len: valid, committed: valid, dead_bytes }),
            table: RwLock::new(Table { pages, snapshot: Arc::default(), codebook, trained_rows }),
            manifest,
            isa: Isa::detect(),
            threads: AtomicUsize::new(std::thread::available_parallelism().map_or(1, |n| n.get()).min(16)),
            scorer: RwLock::new(None),
            dirty: (Mutex::new(true), Condvar::new()),
            stop: AtomicBool::new(false),
            updating: Mutex::new(()),
            foreground: AtomicUsize::new(0),
            saved_pages: AtomicUsize::new(usize::MAX),
            dir: dir.to_path_buf(),
            _lock: lock,
        });
        {
            let writer = inner.writer();
            inner.publish(&writer)?;
        }
        tracing::debug!(
            dir = %dir.display(),
            pages = inner.page_count()?,
            isa = inner.isa.name(),
            ms = started.elapsed().as_millis() as u64,
            "opened index"
        );
        let optimizer = crate::optimize::spawn(inner.clone());
        Ok(Store { inner, optimizer })
    }

    /// What the index was built with.
    pub fn manifest(&self) -> &IndexManifest {
        &self.inner.manifest
    }

    /// The vector instructions searches use ("avx512", "avx2" or "portable").
    pub fn instruction_set(&self) -> &'static str {
        self.inner.isa.name()
    }

    /// Threads one exact search uses (the machine's cores, up to 16).
    pub fn search_threads(&self) -> usize {
        self.inner.threads.load(AtomicOrdering::Relaxed)
    }

    /// Sets the threads one search uses (at least 1).
    pub fn set_search_threads(&self, threads: usize) {
        self.inner.threads.store(threads.max(1), AtomicOrdering::Relaxed);
    }

    /// Scores every page with `scorer` (a device) for exact and automatic searches from now on, and lets it copy
    /// the pages now; `None` goes back to the CPU scan. A scorer that declines a search leaves it to the CPU.
    pub fn set_exact_scorer(&self, scorer: Option<Arc<dyn ExactScorer>>) {
        if let Some(s) = &scorer {
            let snap = self.inner.snapshot();
            let started = Instant::now();
            s.prepare(&PagesView {
                snap: &snap,
                dim: self.inner.manifest.embedding_dim,
                storage: self.inner.manifest.storage,
            });
            tracing::info!(scorer = %s.name(), pages = snap.pages.len(), ms = started.elapsed().as_millis() as u64, "exact search on the device");
        }
        *self.inner.scorer.write().unwrap_or_else(PoisonError::into_inner) = scorer;
    }

    /// Inserts or replaces pages (same file hash + page index = same point). Survives a killed
    /// process once [`Store::flush`] has returned; not before.
    pub fn upsert(&self, pages: Vec<PageRecord>) -> Result<()> {
        self.inner.upsert(pages)
    }

    /// Makes every upsert and delete so far durable, and compacts the log when dead records outweigh live ones.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    /// Page indexes stored for a file (by content hash).
    pub fn pages_of_file(&self, file_sha256: &str) -> Result<BTreeSet<usize>> {
        self.inner.pages_of_file(file_sha256)
    }

    /// Stored documents, one entry per (doc_id, file version), sorted by doc_id.
    pub fn documents(&self) -> Result<Vec<DocumentInfo>> {
        self.inner.documents()
    }

    /// Deletes every page of a document; returns how many were deleted.
    pub fn delete_document(&self, doc_id: &str) -> Result<usize> {
        self.inner.delete_where(|m| m.doc_id == doc_id)
    }

    /// Deletes the pages stored for `source_path` whose file hash is not `keep_sha256` (older
    /// versions of a changed file); returns how many were deleted.
    pub fn delete_file_version(&self, source_path: &str, keep_sha256: &str) -> Result<usize> {
        self.inner.delete_where(|m| m.source_path == source_path && m.file_sha256 != keep_sha256)
    }

    /// Number of stored pages.
    pub fn page_count(&self) -> Result<usize> {
        self.inner.page_count()
    }

    /// Pages, documents, disk use, model and storage type.
    pub fn stats(&self) -> Result<Stats> {
        self.inner.stats()
    }

    /// The stored vectors of one page; `None` if it is not stored.
    pub fn page_vectors(&self, doc_id: &str, page_index: usize) -> Result<Option<MultiVector>> {
        self.inner.page_vectors(doc_id, page_index)
    }

    /// Top `k` pages by MaxSim against `query` (`rows × dim`, row-major), optionally only pages
    /// of one document.
    pub fn search(&self, query: &[f32], k: usize, filter: Option<&str>, mode: SearchMode) -> Result<Vec<Hit>> {
        self.inner.search(query, k, filter, mode)
    }

    /// Every point id stored (for consistency checks).
    pub fn point_ids(&self) -> Result<Vec<u64>> {
        let mut ids: Vec<u64> = self.inner.table().pages.keys().copied().collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Brings the coarse stage up to date now, on all search threads, and saves it (the background thread does
    /// the same slowly on one core); returns the pages it covers. For benchmarks and bulk loads. Retrains the
    /// codebook unless it was trained on exactly the rows the index holds, so that afterwards it depends on the
    /// pages alone (the background thread trains on what the index held when it ran).
    pub fn optimize(&self) -> Result<usize> {
        crate::optimize::run_once(&self.inner, self.search_threads())
    }

    /// Pages covered by the coarse stage (two-stage search scores the others exactly).
    pub fn coarse_coverage(&self) -> usize {
        self.inner.snapshot().pages.iter().filter(|s| s.codes.get().is_some()).count()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.inner.stop.store(true, AtomicOrdering::Relaxed);
        self.inner.wake();
        if let Some(handle) = self.optimizer.take() {
            let _ = handle.join();
        }
    }
}

impl Inner {
    /// Inserts or replaces pages (same file hash + page index = same point). Survives a killed
    /// process once [`Store::flush`] has returned; not before.
    pub(crate) fn upsert(&self, pages: Vec<PageRecord>) -> Result<()> {
        let dim = self.manifest.embedding_dim;
        for page in &pages {
            check_page(page, dim)?;
        }
        if pages.is_empty() {
            return Ok(());
        }
        // Pooling and encoding need no lock (pooling is the costly part: ~4 ms a 750-row page), so they run on
        // this store's threads before the writer lock is taken.
        let encoded = self.encode_pages(&pages);
        let mut writer = self.writer();
        let need: usize = encoded.iter().map(|e| e.bytes.len() + 4096).sum();
        crate::space::ensure(&self.dir, need as u64, "writing pages")?;
        let mut buf = Vec::with_capacity(need);
        let mut written = Vec::with_capacity(pages.len());
        for (page, enc) in pages.into_iter().zip(encoded) {
            let id =
                point_id(&page.file_sha256, page.page_index, &self.manifest.model_id, &self.manifest.preprocessing);
            let meta = PageMeta {
                id,
                doc_id: page.doc_id,
                source_path: page.source_path,
                file_sha256: page.file_sha256,
                page_index: page.page_index,
                page_count: page.page_count,
                page_width_pt: page.page_width_pt,
                page_height_pt: page.page_height_pt,
                preview: page.preview,
                rows: enc.rows,
                pooled_from: enc.pooled_from,
            };
            let at = writer.len + buf.len() as u64;
            let start = buf.len();
            log::put_record(&meta, &enc.bytes, at, &mut buf);
            let data_len = enc.bytes.len() as u64;
            let record_len = (buf.len() - start) as u64;
            // The vectors (and labels) end the record's body; the record is padded after them.
            let data_end = at + record_len - padding_after(data_len);
            written.push(Slot::new(meta, (at, record_len), (data_end - data_len, data_len)));
        }
        let path = self.dir.join(log::LOG_FILE);
        writer.file.write_all_at(&buf, writer.len).map_err(|e| {
            // Whatever part was written is beyond `committed`: cut on the next open (or overwritten now).
            Error::io("writing pages to", &path)(e)
        })?;
        writer.len += buf.len() as u64;
        let mut appended = Vec::with_capacity(written.len());
        let mut replaced = false;
        {
            let mut table = self.table_mut();
            for slot in written {
                let slot = Arc::new(slot);
                if let Some(old) = table.pages.insert(slot.meta.id, slot.clone()) {
                    writer.dead_bytes += old.record.1;
                    replaced = true;
                }
                appended.push(slot);
            }
        }
        if replaced { self.publish(&writer) } else { self.publish_appended(&writer, appended) }
    }

    /// The record payloads of `pages` (pooled if the index pools, in the stored layout), on up to
    /// [`Inner::threads`] threads.
    fn encode_pages(&self, pages: &[PageRecord]) -> Vec<EncodedPage> {
        let (dim, storage, factor) =
            (self.manifest.embedding_dim, self.manifest.storage, self.manifest.pool_factor as usize);
        let one = |page: &PageRecord| {
            let mut bytes = Vec::new();
            if factor <= 1 {
                encode(&page.vectors, dim, storage, &mut bytes);
                return EncodedPage { rows: page.vectors.len() / dim, pooled_from: None, bytes };
            }
            let pooled = crate::pool::pool(&page.vectors, dim, factor);
            encode(&pooled.rows, dim, storage, &mut bytes);
            bytes.extend(pooled.labels.iter().flat_map(|l| l.to_le_bytes()));
            EncodedPage { rows: pooled.rows.len() / dim, pooled_from: Some(pooled.labels.len()), bytes }
        };
        let threads = if factor > 1 { self.threads.load(AtomicOrdering::Relaxed).min(pages.len()) } else { 1 };
        if threads <= 1 {
            return pages.iter().map(one).collect();
        }
        let per = pages.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> =
                pages.chunks(per).map(|chunk| scope.spawn(move || chunk.iter().map(one).collect::<Vec<_>>())).collect();
            handles.into_iter().flat_map(|h| h.join().expect("encoding a page does not panic")).collect()
        })
    }

    /// Makes every upsert and delete so far durable, and compacts the log when dead records outweigh live ones.
    pub(crate) fn flush(&self) -> Result<()> {
        let started = Instant::now();
        let mut writer = self.writer();
        if writer.committed != writer.len {
            crate::space::ensure(&self.dir, 0, "flushing the index")?;
            let header = self.header(writer.len);
            log::commit(&writer.file, &self.dir.join(log::LOG_FILE), header)?;
            writer.committed = writer.len;
        }
        let live = writer.len - log::FILE_HEADER - writer.dead_bytes;
        if writer.dead_bytes > COMPACT_MIN_DEAD_BYTES && writer.dead_bytes > live {
            self.compact(&mut writer)?;
        }
        tracing::debug!(dir = %self.dir.display(), ms = started.elapsed().as_millis() as u64, "flushed index");
        Ok(())
    }

    fn header(&self, committed: u64) -> FileHeader {
        FileHeader { dim: self.manifest.embedding_dim as u32, elem_bytes: elem_bytes(self.manifest.storage), committed }
    }

    /// Copies the live records into a new log and renames it over the old one (the only step that replaces
    /// the file, and an atomic one). Searches keep reading the old file through their snapshot until done.
    fn compact(&self, writer: &mut MutexGuard<'_, Writer>) -> Result<()> {
        let started = Instant::now();
        let path = self.dir.join(log::LOG_FILE);
        let tmp = self.dir.join(log::COMPACT_FILE);
        let live: Vec<Arc<Slot>> = {
            let table = self.table();
            let mut v: Vec<_> = table.pages.values().cloned().collect();
            v.sort_by_key(|s| s.record.0);
            v
        };
        let need: u64 = live.iter().map(|s| s.record.1).sum();
        crate::space::ensure(&self.dir, need, "compacting the index")?;
        let _ = fs::remove_file(&tmp);
        let file = log::create(&tmp, self.manifest.embedding_dim as u32, elem_bytes(self.manifest.storage))?;
        let mut at = log::FILE_HEADER;
        let mut moved = Vec::with_capacity(live.len());
        let mut buf = Vec::new();
        for slot in &live {
            // Records are position-dependent (the vectors start 64-aligned), so re-encode rather than copy.
            let (from, len) = slot.payload();
            let mut data = vec![0u8; len as usize];
            writer.file.read_exact_at(&mut data, from).map_err(Error::io("reading page log", &path))?;
            buf.clear();
            log::put_record(&slot.meta, &data, at, &mut buf);
            file.write_all_at(&buf, at).map_err(Error::io("writing compacted log", &tmp))?;
            let record_len = buf.len() as u64;
            let data_end = at + record_len - padding_after(len);
            let moved_slot = Slot::new(slot.meta.clone(), (at, record_len), (data_end - len, len));
            if let Some(codes) = slot.codes.get() {
                let _ = moved_slot.codes.set(codes.clone());
            }
            moved.push(moved_slot);
            at += record_len;
        }
        log::commit(&file, &tmp, self.header(at))?;
        fs::rename(&tmp, &path).map_err(Error::io("replacing the page log with", &tmp))?;
        colqwen_core::sync_dir(&self.dir)?;
        let before = writer.len;
        writer.file = file;
        writer.len = at;
        writer.committed = at;
        writer.dead_bytes = 0;
        {
            let mut table = self.table_mut();
            table.pages = moved.into_iter().map(|s| (s.meta.id, Arc::new(s))).collect();
        }
        self.publish(writer)?;
        tracing::info!(
            dir = %self.dir.display(),
            before_mb = before >> 20,
            after_mb = at >> 20,
            ms = started.elapsed().as_millis() as u64,
            "compacted the page log"
        );
        Ok(())
    }

    /// Maps the log as it is now and publishes the live pages for searches. Called with the writer lock held,
    /// so the table cannot change between the collection and the swap; readers are blocked only for the swap.
    pub(crate) fn publish(&self, writer: &Writer) -> Result<()> {
        let path = self.dir.join(log::LOG_FILE);
        // SAFETY: the log is only appended to while mapped (never truncated or rewritten in place: compaction
        // writes a new file and renames it), and the lock file keeps other colqwen processes out.
        let map = unsafe { Mmap::map(&writer.file) }.map_err(Error::io("mapping page log", &path))?;
        let (mut pages, codebook) = {
            let table = self.table();
            (table.pages.values().cloned().collect::<Vec<_>>(), table.codebook.clone())
        };
        // File order: a scan reads the map front to back.
        pages.sort_unstable_by_key(|s| s.record.0);
        // Same pages in the same order, more at the end (a flush, a retrained codebook): the same lineage, so a
        // device copy of the pages is extended, not uploaded again.
        let previous = self.snapshot();
        let appended = previous.pages.len() <= pages.len()
            && previous.pages.iter().zip(&pages).all(|(a, b)| a.record == b.record && a.meta.id == b.meta.id);
        let lineage = if appended { previous.lineage } else { new_lineage() };
        self.table_mut().snapshot = Arc::new(Snapshot { pages, map: Some(Arc::new(map)), codebook, lineage });
        self.wake();
        Ok(())
    }

    /// [`Inner::publish`] after an upsert of new pages only (none replaced): the new records lie after every
    /// other, so the snapshot is the previous one with them appended, still in file order — no rebuild from the
    /// table and no sort on the write path of an ingest.
    fn publish_appended(&self, writer: &Writer, appended: Vec<Arc<Slot>>) -> Result<()> {
        let path = self.dir.join(log::LOG_FILE);
        // SAFETY: as in `publish`.
        let map = unsafe { Mmap::map(&writer.file) }.map_err(Error::io("mapping page log", &path))?;
        let previous = self.snapshot();
        let mut pages = Vec::with_capacity(previous.pages.len() + appended.len());
        pages.extend(previous.pages.iter().cloned());
        pages.extend(appended);
        let (codebook, lineage) = (previous.codebook.clone(), previous.lineage);
        self.table_mut().snapshot = Arc::new(Snapshot { pages, map: Some(Arc::new(map)), codebook, lineage });
        self.wake();
        Ok(())
    }

    /// Tells the optimizer that pages changed (or that it should stop).
    pub(crate) fn wake(&self) {
        let (lock, cvar) = &self.dirty;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        cvar.notify_all();
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn manifest(&self) -> &IndexManifest {
        &self.manifest
    }

    pub(crate) fn plan(&self) -> SearchPlan {
        SearchPlan {
            isa: self.isa,
            threads: self.threads.load(AtomicOrdering::Relaxed),
            dim: self.manifest.embedding_dim,
            storage: self.manifest.storage,
        }
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.table().snapshot.clone()
    }

    /// Page indexes stored for a file (by content hash).
    pub(crate) fn pages_of_file(&self, file_sha256: &str) -> Result<BTreeSet<usize>> {
        let snap = self.snapshot();
        Ok(snap.pages.iter().filter(|s| s.meta.file_sha256 == file_sha256).map(|s| s.meta.page_index).collect())
    }

    /// Stored documents, one entry per (doc_id, file version), sorted by doc_id.
    pub(crate) fn documents(&self) -> Result<Vec<DocumentInfo>> {
        let snap = self.snapshot();
        let mut docs: BTreeMap<(&str, &str), DocumentInfo> = BTreeMap::new();
        for s in &snap.pages {
            let m = &s.meta;
            docs.entry((&m.doc_id, &m.file_sha256))
                .or_insert_with(|| DocumentInfo {
                    doc_id: m.doc_id.clone(),
                    source_path: m.source_path.clone(),
                    file_sha256: m.file_sha256.clone(),
                    page_count: m.page_count,
                    stored_pages: 0,
                })
                .stored_pages += 1;
        }
        Ok(docs.into_values().collect())
    }

    pub(crate) fn delete_where(&self, pick: impl Fn(&PageMeta) -> bool) -> Result<usize> {
        let mut writer = self.writer();
        let ids: Vec<u64> = self.table().pages.values().filter(|s| pick(&s.meta)).map(|s| s.meta.id).collect();
        if ids.is_empty() {
            return Ok(0);
        }
        crate::space::ensure(&self.dir, ids.len() as u64 * 24 + 4096, "deleting pages")?;
        let mut buf = Vec::new();
        log::delete_record(&ids, writer.len, &mut buf);
        let path = self.dir.join(log::LOG_FILE);
        writer.file.write_all_at(&buf, writer.len).map_err(Error::io("writing to", &path))?;
        writer.len += buf.len() as u64;
        writer.dead_bytes += buf.len() as u64;
        {
            let mut table = self.table_mut();
            for id in &ids {
                if let Some(old) = table.pages.remove(id) {
                    writer.dead_bytes += old.record.1;
                }
            }
        }
        self.publish(&writer)?;
        Ok(ids.len())
    }

    /// Number of stored pages.
    pub(crate) fn page_count(&self) -> Result<usize> {
        Ok(self.table().pages.len())
    }

    /// Pages, documents, disk use, model and storage type.
    pub(crate) fn stats(&self) -> Result<Stats> {
        let snap = self.snapshot();
        let documents: BTreeSet<&str> = snap.pages.iter().map(|s| s.meta.doc_id.as_str()).collect();
        Ok(Stats {
            location: self.dir.display().to_string(),
            pages: snap.pages.len(),
            documents: documents.len(),
            bytes_on_disk: Some(dir_bytes(&self.dir)?),
            wal_bytes: 0,
            model_id: self.manifest.model_id.clone(),
            family: self.manifest.family.clone(),
            embedding_dim: self.manifest.embedding_dim,
            storage: self.manifest.storage,
            pool_factor: self.manifest.pool_factor,
        })
    }

    /// The stored vectors of one page; `None` if it is not stored.
    pub(crate) fn page_vectors(&self, doc_id: &str, page_index: usize) -> Result<Option<MultiVector>> {
        let snap = self.snapshot();
        let Some(slot) = snap.pages.iter().find(|s| s.meta.doc_id == doc_id && s.meta.page_index == page_index) else {
            return Ok(None);
        };
        let map = snap.map.as_ref().expect("a published snapshot has a map");
        let dim = self.manifest.embedding_dim;
        let rows = stored_rows(self.manifest.storage, map, slot, dim);
        let data = match slot.meta.pooled_from {
            // A pooled page comes back in its original shape, each row replaced by the pooled row that stands
            // for it (so a similarity map still has a value per cell).
            // (Their count was checked against `pooled_from` when the index was opened.)
            Some(_) => {
                let labels = labels(map, slot);
                if labels.iter().any(|&l| l as usize >= slot.meta.rows) {
                    return Err(Error::Damaged {
                        dir: self.dir.clone(),
                        reason: "a pooled page's labels are out of range",
                    });
                }
                crate::pool::expand(&rows, &labels, dim)
            }
            None => rows,
        };
        Ok(MultiVector::new(data, dim))
    }

    /// Top `k` pages by MaxSim against `query` (`rows × dim`, row-major), optionally only pages
    /// of one document.
    pub(crate) fn search(&self, query: &[f32], k: usize, filter: Option<&str>, mode: SearchMode) -> Result<Vec<Hit>> {
        let dim = self.manifest.embedding_dim;
        if query.is_empty() || query.len() % dim != 0 {
            return Err(Error::QueryShape { len: query.len(), dim });
        }
        if !query.iter().all(|v| v.is_finite()) {
            return Err(Error::NonFinite { what: "query".into() });
        }
        if k == 0 {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let snap = self.snapshot();
        let plan = self.plan();
        let scorer = self.scorer.read().unwrap_or_else(PoisonError::into_inner).clone();
        let found: Vec<Candidate> = search::run(&plan, &snap, query, k, filter, mode, scorer.as_deref());
        tracing::debug!(?mode, k, pages = snap.pages.len(), ms = started.elapsed().as_millis() as u64, "searched");
        Ok(found
            .into_iter()
            .map(|c| {
                let m = &snap.pages[c.index].meta;
                Hit {
                    score: c.score,
                    point_id: m.id,
                    doc_id: m.doc_id.clone(),
                    source_path: m.source_path.clone(),
                    file_sha256: m.file_sha256.clone(),
                    page_index: m.page_index,
                    page_count: m.page_count,
                    page_width_pt: m.page_width_pt,
                    page_height_pt: m.page_height_pt,
                    preview: m.preview.clone(),
                }
            })
            .collect())
    }

    pub(crate) fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn table(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn table_mut(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One page as its record will hold it.
struct EncodedPage {
    /// Stored rows (after pooling).
    rows: usize,
    /// Rows before pooling, when pooled.
    pooled_from: Option<usize>,
    /// Vectors in the stored layout, then the labels of a pooled page.
    bytes: Vec<u8>,
}

/// Zero padding after `data_len` bytes of vectors: they start 64-aligned and the record ends 64-aligned.
fn padding_after(data_len: u64) -> u64 {
    data_len.div_ceil(log::ALIGN) * log::ALIGN - data_len
}

pub(crate) fn elem_bytes(storage: VectorStorage) -> u32 {
    match storage {
        VectorStorage::F32 => 4,
        VectorStorage::F16 => 2,
        VectorStorage::I8 => 1,
    }
}

/// A page's stored rows (after pooling, if the index pools), row-major f32.
pub(crate) fn stored_rows(storage: VectorStorage, map: &Mmap, slot: &Slot, dim: usize) -> Vec<f32> {
    let rows = slot.meta.rows;
    match storage {
        VectorStorage::F32 => layout::decode(search::elements::<f32>(map, slot), rows, dim),
        VectorStorage::F16 => layout::decode(search::elements::<f16>(map, slot), rows, dim),
        VectorStorage::I8 => layout::decode_i8(search::elements::<i8>(map, slot), rows, dim),
    }
}

/// A pooled page's labels (empty for a page stored whole).
fn labels(map: &Mmap, slot: &Slot) -> Vec<u32> {
    let (at, len) = (slot.labels.0 as usize, slot.labels.1 as usize);
    map[at..at + len].chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes"))).collect()
}

/// Row-major f32 → the stored layout, little-endian bytes.
fn encode(rows: &[f32], dim: usize, storage: VectorStorage, out: &mut Vec<u8>) {
    match storage {
        VectorStorage::F32 => {
            let mut v = Vec::<f32>::new();
            layout::encode(rows, dim, &mut v);
            out.extend(v.iter().flat_map(|x| x.to_le_bytes()));
        }
        VectorStorage::F16 => {
            let mut v = Vec::<f16>::new();
            layout::encode(rows, dim, &mut v);
            out.extend(v.iter().flat_map(|x| x.to_le_bytes()));
        }
        VectorStorage::I8 => layout::encode_i8(rows, dim, out),
    }
}

fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::io("opening lock file", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::InUse { dir: dir.to_path_buf() }),
        Err(fs::TryLockError::Error(e)) => Err(Error::io("locking", path)(e)),
    }
}

fn check_page(page: &PageRecord, dim: usize) -> Result<()> {
    if page.vectors.is_empty() || page.vectors.len() % dim != 0 {
        return Err(Error::PageVectorShape {
            doc_id: page.doc_id.clone(),
            page_index: page.page_index,
            len: page.vectors.len(),
            dim,
        });
    }
    if page.page_index >= page.page_count {
        return Err(Error::PageIndexOutOfRange {
            doc_id: page.doc_id.clone(),
            page_index: page.page_index,
            page_count: page.page_count,
        });
    }
    if !page.vectors.iter().all(|v| v.is_finite()) {
        return Err(Error::NonFinite { what: format!("page {} of document {}", page.page_index, page.doc_id) });
    }
    Ok(())
}

/// Allocated bytes (st_blocks × 512 on Unix) of all files under `dir`.
pub(crate) fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("listing", &d)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(Error::io("listing", &d))?;
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // removed meanwhile
                Err(e) => return Err(Error::io("reading metadata of", entry.path())(e)),
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                use std::os::unix::fs::MetadataExt as _;
                total += meta.blocks() * 512;
            }
        }
    }
    Ok(total)
}

impl PageIndex for Store {
    fn manifest(&self) -> &IndexManifest {
        &self.inner.manifest
    }

    fn location(&self) -> String {
        self.inner.dir.display().to_string()
    }

    fn upsert(&self, pages: Vec<PageRecord>) -> Result<()> {
        Store::upsert(self, pages)
    }

    fn flush(&self) -> Result<()> {
        Store::flush(self)
    }

    fn pages_of_file(&self, file_sha256: &str) -> Result<BTreeSet<usize>> {
        Store::pages_of_file(self, file_sha256)
    }

    fn documents(&self) -> Result<Vec<DocumentInfo>> {
        Store::documents(self)
    }

    fn delete_document(&self, doc_id: &str) -> Result<usize> {
        Store::delete_document(self, doc_id)
    }

    fn delete_file_version(&self, source_path: &str, keep_sha256: &str) -> Result<usize> {
        Store::delete_file_version(self, source_path, keep_sha256)
    }

    fn search(&self, query: &MultiVector, k: usize, doc_id: Option<&str>, mode: SearchMode) -> Result<Vec<Hit>> {
        if query.dim != self.inner.manifest.embedding_dim {
            return Err(Error::QueryShape { len: query.data.len(), dim: self.inner.manifest.embedding_dim });
        }
        Store::search(self, &query.data, k, doc_id, mode)
    }

    fn page_vectors(&self, doc_id: &str, page_index: usize) -> Result<Option<MultiVector>> {
        Store::page_vectors(self, doc_id, page_index)
    }

    fn page_count(&self) -> Result<usize> {
        Store::page_count(self)
    }

    fn stats(&self) -> Result<Stats> {
        Store::stats(self)
    }
}
