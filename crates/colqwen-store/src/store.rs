//! The index folder: `<dir>/manifest.json`, `<dir>/shard/` (qdrant-edge), `<dir>/LOCK`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Instant;

use colqwen_core::{DocumentInfo, Hit, IndexManifest, MultiVector, PageIndex, PageRecord, SearchMode, Stats};

use qdrant_edge::{
    Condition, CountRequest, EdgeShard, FieldCondition, FieldIndexOperations, Filter, JsonPath, Match, NamedQuery,
    PayloadFieldSchema, PayloadSchemaType, PointId, PointInsertOperations, PointOperations, PointStruct, Prefetch,
    QueryEnum, QueryRequest, ScoringQuery, ScrollRequest, SearchParams, TypedMultiDenseVector, UpdateOperation, Vector,
    VectorInternal, VectorStructInternal, Vectors, WithPayloadInterface, WithVector,
};
use serde_json::{Map, Value};

use crate::error::{Error, Result, engine};
use crate::point_id;
use crate::schema::{self, field};
use crate::wal;

const LOCK_FILE: &str = "LOCK";
const SHARD_DIR: &str = "shard";
/// Pages per qdrant-edge update (one WAL record each, ~0.5 MB per page in f32).
const UPSERT_BATCH_PAGES: usize = 16;
/// Page size of internal scrolls.
const SCROLL_PAGE: usize = 1024;

/// `SearchMode::Auto` runs an exact MaxSim scan up to this many candidate pages, two-stage above.
/// An exact scan costs ~0.14 ms/page (f32) or ~0.18 ms/page (f16) on one core (NOTES.md), so up to ~0.35 s.
/// Set high on purpose: on embeddings of real pages (`colqwen-bench recall`, tiny fixture model) the pooled
/// first stage found only 32% of the exact top-10 with prefetch 200 of 1k pages, so exact ranking is kept
/// for as long as it is affordable.
pub const AUTO_EXACT_MAX_PAGES: usize = 2_000;
/// Prefetch of `SearchMode::Auto` in two-stage mode up to [`AUTO_LARGE_INDEX_PAGES`] candidate pages:
/// recall@10 vs exact 0.98 at 10k pages, p50 29 ms (synthetic clustered pages, NOTES.md).
pub const AUTO_PREFETCH: usize = 200;
/// Above this many candidate pages `Auto` prefetches [`AUTO_PREFETCH_LARGE`].
pub const AUTO_LARGE_INDEX_PAGES: usize = 20_000;
/// Prefetch for large indexes: recall@10 0.99 at 100k pages (200 gave 0.91), rerank ~80-90 ms.
pub const AUTO_PREFETCH_LARGE: usize = 500;

/// An open index. Holds an exclusive lock on `<dir>/LOCK` until dropped.
#[derive(Debug)]
pub struct Store {
    // Field order is drop order: the shard (which flushes on drop) goes before the lock.
    /// `None` only if reopening after a WAL compaction failed. Searches and writes take the read lock (the
    /// shard synchronises inside); only the compaction's close-and-reload takes the write lock.
    shard: RwLock<Option<EdgeShard>>,
    /// Serialises writers (upsert, delete, flush), so a count-then-delete or a flush-then-compact is atomic
    /// with respect to other writes. Readers never take it.
    writes: Mutex<()>,
    manifest: IndexManifest,
    dir: PathBuf,
    _lock: fs::File,
}

impl Store {
    /// Creates the index if `dir` holds none, else opens it. Refuses an index built with another
    /// model, dimension, preprocessing, storage type or format, naming both values.
    pub fn open_or_create(dir: &Path, manifest: &IndexManifest) -> Result<Store> {
        manifest.validate(dir)?;
        fs::create_dir_all(dir).map_err(Error::io("creating index directory", dir))?;
        let lock = lock(dir)?;
        let shard_dir = dir.join(SHARD_DIR);
        match IndexManifest::read(dir)? {
            Some(on_disk) => {
                on_disk.validate(dir)?;
                on_disk.check_same(manifest, dir)?;
            }
            None => {
                if shard_dir.join("segments").exists() {
                    return Err(Error::Damaged {
                        dir: dir.to_path_buf(),
                        reason: "shard/ exists but manifest.json is missing",
                    });
                }
                manifest.write(dir)?;
                tracing::info!(dir = %dir.display(), model_id = %manifest.model_id, storage = %manifest.storage, "created index");
            }
        }
        Self::open_shard(dir, manifest.clone(), lock)
    }

    /// Opens an existing index; [`Error::NotFound`] if `dir` holds none.
    pub fn open(dir: &Path) -> Result<Store> {
        if !IndexManifest::path(dir).exists() {
            return Err(Error::NotFound { dir: dir.to_path_buf() });
        }
        let lock = lock(dir)?;
        let manifest = IndexManifest::read(dir)?.ok_or_else(|| Error::NotFound { dir: dir.to_path_buf() })?;
        manifest.validate(dir)?;
        if !dir.join(SHARD_DIR).join(EDGE_CONFIG_FILE).exists() {
            return Err(Error::Damaged {
                dir: dir.to_path_buf(),
                reason: "manifest.json exists but shard/ is missing",
            });
        }
        Self::open_shard(dir, manifest, lock)
    }

    fn open_shard(dir: &Path, manifest: IndexManifest, lock: fs::File) -> Result<Store> {
        let started = Instant::now();
        crate::space::ensure(dir, 0, "opening the index (its write-ahead log needs room)")?;
        let shard_dir = dir.join(SHARD_DIR);
        let config = schema::edge_config(&manifest);
        let existing = shard_dir.join(EDGE_CONFIG_FILE).exists();
        let shard = if existing {
            wal::compact(&shard_dir)?;
            EdgeShard::load(&shard_dir, Some(config)).map_err(engine("opening shard", dir))?
        } else {
            fs::create_dir_all(&shard_dir).map_err(Error::io("creating shard directory", &shard_dir))?;
            EdgeShard::new(&shard_dir, config).map_err(engine("creating shard", dir))?
        };
        let store = Store {
            shard: RwLock::new(Some(shard)),
            writes: Mutex::new(()),
            manifest,
            dir: dir.to_path_buf(),
            _lock: lock,
        };
        store.ensure_payload_indexes()?;
        tracing::debug!(dir = %dir.display(), ms = started.elapsed().as_millis() as u64, "opened index");
        Ok(store)
    }

    fn ensure_payload_indexes(&self) -> Result<()> {
        let present = self.with_shard(|s| Ok(s.info().payload_schema))?;
        for name in schema::KEYWORD_INDEXED {
            if present.keys().any(|k| k.to_string() == name) {
                continue;
            }
            let op =
                UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(qdrant_edge::CreateIndex {
                    field_name: key(name),
                    field_schema: Some(PayloadFieldSchema::FieldType(PayloadSchemaType::Keyword)),
                }));
            self.with_shard(|s| s.update(op).map_err(engine("creating payload index", &self.dir)))?;
        }
        Ok(())
    }

    /// What the index was built with.
    pub fn manifest(&self) -> &IndexManifest {
        &self.manifest
    }

    /// Inserts or replaces pages (same file hash + page index = same point). Survives a killed
    /// process once [`Store::flush`] has returned; not before.
    pub fn upsert(&self, pages: Vec<PageRecord>) -> Result<()> {
        let dim = self.manifest.embedding_dim;
        for page in &pages {
            check_page(page, dim)?;
        }
        let _writer = self.writer();
        // The page's vectors land in the WAL, then in the segment (f32 or f16), plus the pooled vector.
        let bytes: usize = pages.iter().map(|p| p.vectors.len() * 4 * 2 + dim * 8 + 4096).sum();
        crate::space::ensure(&self.dir, bytes as u64, "writing pages")?;
        let mut pages = pages.into_iter().peekable();
        while pages.peek().is_some() {
            let mut batch = Vec::with_capacity(UPSERT_BATCH_PAGES);
            for page in pages.by_ref().take(UPSERT_BATCH_PAGES) {
                batch.push(self.point(page).into());
            }
            let op = UpdateOperation::PointOperation(PointOperations::UpsertPoints(PointInsertOperations::PointsList(
                batch,
            )));
            self.with_shard(|s| s.update(op).map_err(engine("upserting pages", &self.dir)))?;
        }
        Ok(())
    }

    fn point(&self, page: PageRecord) -> PointStruct {
        let dim = self.manifest.embedding_dim;
        let id = point_id(&page.file_sha256, page.page_index, &self.manifest.model_id, &self.manifest.preprocessing);
        let payload = schema::payload(&page, &self.manifest);
        let pooled = schema::pooled(&page.vectors, dim);
        let multi = TypedMultiDenseVector::new(page.vectors, dim);
        let vectors = Vectors::new_named([
            (schema::COLQWEN, Vector::from(VectorInternal::MultiDense(multi))),
            (schema::POOLED, Vector::new_dense(pooled)),
        ]);
        // `payload` is always a JSON object (PointStruct::new panics otherwise).
        PointStruct::new(id, vectors, payload)
    }

    /// Makes every upsert and delete so far durable, and keeps the write-ahead log bounded.
    pub fn flush(&self) -> Result<()> {
        let started = Instant::now();
        let _writer = self.writer();
        crate::space::ensure(&self.dir, 0, "flushing the index")?;
        // qdrant-edge 0.7 flush() panics on I/O errors instead of returning them.
        self.with_shard(|shard| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shard.flush()))
                .map_err(|panic| Error::Flush { dir: self.dir.clone(), message: panic_message(panic) })
        })?;
        tracing::debug!(dir = %self.dir.display(), ms = started.elapsed().as_millis() as u64, "flushed index");
        let shard_dir = self.dir.join(SHARD_DIR);
        if wal::closed_bytes(&shard_dir) > wal::COMPACT_AT_BYTES {
            self.reopen_compacted()?;
        }
        Ok(())
    }

    /// qdrant-edge 0.7 never truncates its WAL; the only safe moment to drop old WAL segments is
    /// while the shard is closed. Close, compact, load again.
    /// Called with the writer lock held; waits for running searches (the shard's write lock).
    fn reopen_compacted(&self) -> Result<()> {
        let started = Instant::now();
        let shard_dir = self.dir.join(SHARD_DIR);
        let mut slot = self.shard.write().unwrap_or_else(PoisonError::into_inner);
        drop(slot.take()); // flushes again (cheap: nothing changed) and releases the WAL
        wal::compact(&shard_dir)?;
        let shard = EdgeShard::load(&shard_dir, Some(schema::edge_config(&self.manifest)))
            .map_err(engine("reopening shard after WAL compaction", &self.dir))?;
        *slot = Some(shard);
        tracing::debug!(dir = %self.dir.display(), ms = started.elapsed().as_millis() as u64, "compacted WAL");
        Ok(())
    }

    /// Builds the HNSW graph of the pooled vectors and merges segments. Blocking; optional.
    pub fn optimize(&self) -> Result<bool> {
        let _writer = self.writer();
        self.with_shard(|s| s.optimize().map_err(engine("optimizing", &self.dir)))
    }

    /// Page indexes stored for a file (by content hash).
    pub fn pages_of_file(&self, file_sha256: &str) -> Result<BTreeSet<usize>> {
        let mut pages = BTreeSet::new();
        self.scroll(Some(must(field::FILE_SHA256, file_sha256)), &[field::PAGE_INDEX], |id, p| {
            pages.insert(self.usize_field(id, p, field::PAGE_INDEX)?);
            Ok(())
        })?;
        Ok(pages)
    }

    /// Stored documents, one entry per (doc_id, file version), sorted by doc_id.
    pub fn documents(&self) -> Result<Vec<DocumentInfo>> {
        let mut docs: BTreeMap<(String, String), DocumentInfo> = BTreeMap::new();
        let fields = [field::DOC_ID, field::SOURCE_PATH, field::FILE_SHA256, field::PAGE_COUNT];
        self.scroll(None, &fields, |id, p| {
            let doc_id = self.str_field(id, p, field::DOC_ID)?;
            let sha = self.str_field(id, p, field::FILE_SHA256)?;
            let entry = match docs.entry((doc_id.clone(), sha.clone())) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(DocumentInfo {
                    doc_id,
                    source_path: self.str_field(id, p, field::SOURCE_PATH)?,
                    file_sha256: sha,
                    page_count: self.usize_field(id, p, field::PAGE_COUNT)?,
                    stored_pages: 0,
                }),
            };
            entry.stored_pages += 1;
            Ok(())
        })?;
        Ok(docs.into_values().collect())
    }

    /// Deletes every page of a document; returns how many were deleted.
    pub fn delete_document(&self, doc_id: &str) -> Result<usize> {
        self.delete_where(must(field::DOC_ID, doc_id), "deleting document")
    }

    /// Deletes the pages stored for `source_path` whose file hash is not `keep_sha256` (older
    /// versions of a changed file); returns how many were deleted.
    pub fn delete_file_version(&self, source_path: &str, keep_sha256: &str) -> Result<usize> {
        let mut filter = must(field::SOURCE_PATH, source_path);
        filter.must_not = Some(vec![match_condition(field::FILE_SHA256, keep_sha256)]);
        self.delete_where(filter, "deleting old file version")
    }

    fn delete_where(&self, filter: Filter, op: &'static str) -> Result<usize> {
        let _writer = self.writer();
        let n = self.count(Some(filter.clone()))?;
        if n > 0 {
            let update = UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(filter));
            self.with_shard(|s| s.update(update).map_err(engine(op, &self.dir)))?;
        }
        Ok(n)
    }

    /// Number of stored pages.
    pub fn page_count(&self) -> Result<usize> {
        self.count(None)
    }

    fn count(&self, filter: Option<Filter>) -> Result<usize> {
        self.with_shard(|s| s.count(CountRequest { filter, exact: true }).map_err(engine("counting pages", &self.dir)))
    }

    /// Pages, documents, disk use, model and storage type.
    pub fn stats(&self) -> Result<Stats> {
        let pages = self.count(None)?;
        let mut doc_ids = BTreeSet::new();
        self.scroll(None, &[field::DOC_ID], |id, p| {
            doc_ids.insert(self.str_field(id, p, field::DOC_ID)?);
            Ok(())
        })?;
        Ok(Stats {
            location: self.dir.display().to_string(),
            pages,
            documents: doc_ids.len(),
            bytes_on_disk: dir_bytes(&self.dir)?,
            wal_bytes: dir_bytes(&self.dir.join(SHARD_DIR).join("wal"))?,
            model_id: self.manifest.model_id.clone(),
            embedding_dim: self.manifest.embedding_dim,
            storage: self.manifest.storage,
        })
    }

    /// Top `k` pages by MaxSim against `query` (`rows × dim`, row-major), optionally only pages
    /// of one document.
    pub fn search(&self, query: &[f32], k: usize, filter: Option<&str>, mode: SearchMode) -> Result<Vec<Hit>> {
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
        let filter = filter.map(|doc_id| must(field::DOC_ID, doc_id));
        let mode = match mode {
            SearchMode::Auto => {
                let candidates = self.count(filter.clone())?;
                if candidates <= AUTO_EXACT_MAX_PAGES {
                    SearchMode::Exact
                } else if candidates <= AUTO_LARGE_INDEX_PAGES {
                    SearchMode::TwoStage { prefetch: AUTO_PREFETCH }
                } else {
                    SearchMode::TwoStage { prefetch: AUTO_PREFETCH_LARGE }
                }
            }
            m => m,
        };
        let multi = ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery::new(
            VectorInternal::MultiDense(TypedMultiDenseVector::new(query.to_vec(), dim)),
            schema::COLQWEN,
        )));
        let prefetches = match mode {
            SearchMode::TwoStage { prefetch } => vec![Prefetch {
                prefetches: Vec::new(),
                query: Some(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery::new(
                    VectorInternal::Dense(schema::pooled(query, dim)),
                    schema::POOLED,
                )))),
                limit: prefetch.max(k),
                params: None,
                filter: filter.clone(),
                score_threshold: None,
            }],
            _ => Vec::new(),
        };
        let request = QueryRequest {
            prefetches,
            query: Some(multi),
            filter,
            score_threshold: None,
            limit: k,
            offset: 0,
            params: Some(SearchParams { exact: true, ..Default::default() }),
            with_vector: WithVector::Bool(false),
            with_payload: WithPayloadInterface::Fields(schema::HIT_FIELDS.iter().map(|f| key(f)).collect()),
        };
        let started = Instant::now();
        let points = self.with_shard(|s| s.query(request).map_err(engine("searching", &self.dir)))?;
        tracing::debug!(?mode, k, ms = started.elapsed().as_millis() as u64, "searched");
        points
            .into_iter()
            .map(|p| {
                let id = num_id(p.id, &self.dir)?;
                let empty = Map::new();
                let payload = p.payload.as_ref().map(|p| &p.0).unwrap_or(&empty);
                Ok(Hit {
                    score: p.score,
                    point_id: id,
                    doc_id: self.str_field(id, payload, field::DOC_ID)?,
                    source_path: self.str_field(id, payload, field::SOURCE_PATH)?,
                    file_sha256: self.str_field(id, payload, field::FILE_SHA256)?,
                    page_index: self.usize_field(id, payload, field::PAGE_INDEX)?,
                    page_count: self.usize_field(id, payload, field::PAGE_COUNT)?,
                    page_width_pt: f32_field(payload, field::PAGE_WIDTH_PT),
                    page_height_pt: f32_field(payload, field::PAGE_HEIGHT_PT),
                    preview: payload.get(field::PREVIEW).and_then(Value::as_str).map(str::to_owned),
                })
            })
            .collect()
    }

    /// The stored vectors of one page; `None` if it is not stored.
    pub fn page_vectors(&self, doc_id: &str, page_index: usize) -> Result<Option<MultiVector>> {
        let mut filter = must(field::DOC_ID, doc_id);
        filter.must = Some(vec![
            match_condition(field::DOC_ID, doc_id),
            Condition::Field(FieldCondition::new_match(key(field::PAGE_INDEX), Match::from(page_index as i64))),
        ]);
        let request = ScrollRequest {
            offset: None,
            limit: Some(1),
            filter: Some(filter),
            with_payload: Some(WithPayloadInterface::Bool(false)),
            with_vector: WithVector::Selector(vec![schema::COLQWEN.into()]),
            order_by: None,
        };
        let (records, _) = self.with_shard(|s| s.scroll(request).map_err(engine("reading page vectors", &self.dir)))?;
        let Some(record) = records.into_iter().next() else { return Ok(None) };
        let dim = self.manifest.embedding_dim;
        let vectors = match &record.vector {
            Some(VectorStructInternal::Named(named)) => match named.get(schema::COLQWEN) {
                Some(VectorInternal::MultiDense(multi)) => Some(multi.flattened_vectors.clone()),
                _ => None,
            },
            _ => None,
        };
        match vectors {
            Some(data) => Ok(MultiVector::new(data, dim)),
            None => Err(self.corrupt(num_id(record.id, &self.dir)?, "colqwen vector")),
        }
    }

    /// Every point id stored (for consistency checks).
    pub fn point_ids(&self) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        self.scroll(None, &[], |id, _| {
            ids.push(id);
            Ok(())
        })?;
        Ok(ids)
    }

    fn scroll(
        &self,
        filter: Option<Filter>,
        fields: &[&str],
        mut each: impl FnMut(u64, &Map<String, Value>) -> Result<()>,
    ) -> Result<()> {
        let with_payload = if fields.is_empty() {
            WithPayloadInterface::Bool(false)
        } else {
            WithPayloadInterface::Fields(fields.iter().map(|f| key(f)).collect())
        };
        let empty = Map::new();
        let mut offset = None;
        loop {
            let request = ScrollRequest {
                offset,
                limit: Some(SCROLL_PAGE),
                filter: filter.clone(),
                with_payload: Some(with_payload.clone()),
                with_vector: WithVector::Bool(false),
                order_by: None,
            };
            let (records, next) = self.with_shard(|s| s.scroll(request).map_err(engine("listing pages", &self.dir)))?;
            for record in &records {
                let id = num_id(record.id, &self.dir)?;
                each(id, record.payload.as_ref().map(|p| &p.0).unwrap_or(&empty))?;
            }
            match next {
                Some(next) => offset = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Runs `f` on the open shard under the read lock.
    fn with_shard<T>(&self, f: impl FnOnce(&EdgeShard) -> Result<T>) -> Result<T> {
        let slot = self.shard.read().unwrap_or_else(PoisonError::into_inner);
        let shard = slot.as_ref().ok_or_else(|| Error::Damaged {
            dir: self.dir.clone(),
            reason: "the shard failed to reopen after WAL compaction; open the index again",
        })?;
        f(shard)
    }

    fn writer(&self) -> MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn str_field(&self, id: u64, p: &Map<String, Value>, name: &'static str) -> Result<String> {
        p.get(name).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| self.corrupt(id, name))
    }

    fn usize_field(&self, id: u64, p: &Map<String, Value>, name: &'static str) -> Result<usize> {
        p.get(name).and_then(Value::as_u64).and_then(|v| usize::try_from(v).ok()).ok_or_else(|| self.corrupt(id, name))
    }

    fn corrupt(&self, id: u64, field: &'static str) -> Error {
        Error::CorruptPayload { dir: self.dir.clone(), point_id: id.to_string(), field }
    }
}

const EDGE_CONFIG_FILE: &str = "edge_config.json";

fn lock(dir: &Path) -> Result<fs::File> {
    let path = dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
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

/// `name` is one of our payload field names (or a caller's doc_id value never used as a key).
fn key(name: &str) -> JsonPath {
    JsonPath::try_from(name).expect("payload field names are plain identifiers")
}

fn match_condition(name: &str, value: &str) -> Condition {
    Condition::Field(FieldCondition::new_match(key(name), Match::from(value.to_owned())))
}

fn must(name: &str, value: &str) -> Filter {
    Filter::new_must(match_condition(name, value))
}

fn num_id(id: PointId, dir: &Path) -> Result<u64> {
    match id {
        PointId::NumId(n) => Ok(n),
        other => Err(Error::CorruptPayload { dir: dir.to_path_buf(), point_id: other.to_string(), field: "id" }),
    }
}

fn f32_field(p: &Map<String, Value>, name: &str) -> f32 {
    p.get(name).and_then(Value::as_f64).map_or(f32::NAN, |v| v as f32)
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
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
                total += allocated(&meta);
            }
        }
    }
    Ok(total)
}

#[cfg(unix)]
fn allocated(meta: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    meta.blocks() * 512
}

#[cfg(not(unix))]
fn allocated(meta: &fs::Metadata) -> u64 {
    meta.len()
}

impl PageIndex for Store {
    fn manifest(&self) -> &IndexManifest {
        &self.manifest
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
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
        if query.dim != self.manifest.embedding_dim {
            return Err(Error::QueryShape { len: query.data.len(), dim: self.manifest.embedding_dim });
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
