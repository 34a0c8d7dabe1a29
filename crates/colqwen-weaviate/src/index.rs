//! [`Weaviate`]: a [`PageIndex`] on one collection (class) of a Weaviate server.
//!
//! The collection holds one object per page: a named multi-vector `colqwen` (HNSW with `multivector`
//! `maxSim` aggregation and `dot` distance, so a hit's distance is minus its MaxSim score) and the page's
//! properties. The object id is the page's [`point_id`] written as a UUID, so writing a page again replaces it.
//! The collection's description holds the [`IndexManifest`] (model identity) as JSON, so a run with another
//! model is refused as the embedded store refuses it. No local state and no lock: several processes may write
//! disjoint files into one collection at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use colqwen_core::{
    DocumentInfo, Hit, IndexError as Error, IndexManifest, MultiVector, PageIndex, PageRecord, Result, SearchMode,
    Stats, VectorStorage, point_id,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::client::{Body, Client};
use crate::location::Location;
use crate::wire;

/// Name of the named vector that holds a page's multi-vector.
const VECTOR: &str = "colqwen";
/// Prefix of the collection description that carries the manifest.
const MANIFEST_PREFIX: &str = "colqwen-manifest ";
/// Most objects one GraphQL `Get` or batch delete returns or touches (Weaviate's `QUERY_MAXIMUM_RESULTS` default).
const QUERY_LIMIT: usize = 10_000;
/// The candidate limit of a `TwoStage` search that names no prefetch: the embedded store's smallest default
/// rerank (`colqwen_store::AUTO_PREFETCH`, 200); a larger limit widens Weaviate's HNSW search list.
const DEFAULT_TWO_STAGE_LIMIT: usize = 200;
/// Pages per page of a cursor listing.
const LIST_PAGE: usize = 2_000;
/// Serialised bytes per batch-insert request (a 768×128 page is ~1.2 MB of JSON).
const BATCH_BYTES: usize = 16 << 20;
/// Properties of a page object, as [`PageRecord`] names them.
const PAGE_FIELDS: &str = "doc_id source_path file_sha256 page_index page_count page_width_pt page_height_pt preview";

/// How to reach a Weaviate index and how to create one.
#[derive(Debug, Clone)]
pub struct WeaviateConfig {
    /// Server and collection.
    pub location: Location,
    /// Sent as `Authorization: Bearer KEY` when set.
    pub api_key: Option<String>,
    /// Limit on each HTTP request (connect is capped at 5 s).
    pub timeout: Duration,
    /// New collections: MUVERA fixed-dimensional encodings in the HNSW graph (smaller, faster to build, lower
    /// recall) instead of the multi-vectors themselves.
    pub muvera: bool,
    /// New collections: copies of each shard (1 on a single node; 2+ on a cluster).
    pub replication_factor: usize,
    /// Consistency level of writes and deletes (`ONE`, `QUORUM`, `ALL`).
    pub write_consistency: &'static str,
    /// Consistency level of searches and reads.
    pub read_consistency: &'static str,
    /// How pages travel to the server.
    pub insert: InsertPath,
    /// Batch requests one `upsert` keeps in flight at most (each from its own thread, with a share of the
    /// pages).
    pub writers: usize,
}

/// How [`Weaviate`] sends pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertPath {
    /// gRPC `BatchObjects` (Connect protocol) on the REST port, vectors as little-endian f32 bytes; JSON on a
    /// server without that path (checked on the first write).
    Binary,
    /// REST `/v1/batch/objects`, vectors as decimal JSON.
    Json,
}

impl WeaviateConfig {
    /// Defaults: no key, 60 s per request, no MUVERA, replication 1, writes `QUORUM`, reads `ONE` (a search still
    /// answers while one replica is down), binary inserts, 2 writers.
    pub fn new(location: Location) -> Self {
        Self {
            location,
            api_key: None,
            timeout: Duration::from_secs(60),
            muvera: false,
            replication_factor: 1,
            write_consistency: "QUORUM",
            read_consistency: "ONE",
            insert: InsertPath::Binary,
            writers: 2,
        }
    }
}

/// A page index in a Weaviate collection. `Send + Sync`; every method is one or a few HTTP requests.
pub struct Weaviate {
    client: Client,
    location: Location,
    manifest: IndexManifest,
    write_consistency: &'static str,
    read_consistency: &'static str,
    /// Preview JPEGs handed over by `stage_preview`, keyed by (doc_id, page_index), waiting for their page's
    /// upsert (a batch insert replaces a whole object, so the blob travels with the page).
    staged_previews: Mutex<HashMap<(String, usize), Vec<u8>>>,
    /// Whether writes take the binary path (cleared once the server turns out not to have it).
    binary: AtomicBool,
    writers: usize,
}

impl Weaviate {
    /// Opens the collection, creating it with `manifest` if the server has none of that name. Refuses a
    /// collection whose manifest differs ([`Error::ManifestMismatch`]) and one colqwen did not make.
    pub fn open_or_create(config: &WeaviateConfig, manifest: &IndexManifest) -> Result<Self> {
        let location_path = PathBuf::from(config.location.to_string());
        manifest.validate(&location_path)?;
        if manifest.storage != VectorStorage::F32 {
            return Err(Error::InvalidManifest {
                reason: "a Weaviate index stores f32 vectors (f16 storage is for the embedded index)",
            });
        }
        let client = client(config);
        let existing = match read_manifest_with(&client, &config.location)? {
            Some(m) => m,
            None => match create(&client, config, manifest)? {
                // Another process created it between our read and our create: check theirs.
                false => read_manifest_with(&client, &config.location)?.ok_or_else(|| Error::Damaged {
                    dir: location_path.clone(),
                    reason: "the collection was created and removed while opening it",
                })?,
                true => manifest.clone(),
            },
        };
        existing.check_same(manifest, &location_path)?;
        let index = Self::from_parts(client, config, existing);
        index.wait_usable()?;
        Ok(index)
    }

    /// A collection that was just created (here or by another process) is in the schema before its shards
    /// exist; queries fail with "non-existing index" meanwhile. Waits (up to 60 s) until a query answers.
    fn wait_usable(&self) -> Result<()> {
        let started = std::time::Instant::now();
        loop {
            match self.get("opening the collection", "limit: 1", "_additional { id }") {
                Err(Error::Remote { message, .. })
                    if message.contains("non-existing index") && started.elapsed() < Duration::from_secs(60) =>
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                other => return other.map(drop),
            }
        }
    }

    /// Opens an existing collection ([`Error::NotFound`] if there is none).
    pub fn open(config: &WeaviateConfig) -> Result<Self> {
        let client = client(config);
        let manifest = read_manifest_with(&client, &config.location)?
            .ok_or_else(|| Error::NoCollection { location: config.location.to_string() })?;
        manifest.validate(&PathBuf::from(config.location.to_string()))?;
        Ok(Self::from_parts(client, config, manifest))
    }

    /// The manifest of the collection, `None` if the server has no collection of that name (to learn an index's
    /// model before loading it).
    pub fn read_manifest(config: &WeaviateConfig) -> Result<Option<IndexManifest>> {
        read_manifest_with(&client(config), &config.location)
    }

    /// Deletes the whole collection (every page and the manifest). For tests, benchmarks and `reset` tools.
    pub fn drop_collection(config: &WeaviateConfig) -> Result<()> {
        let c = client(config);
        let (status, body) = c.call("deleting the collection", "DELETE", &schema_path(&config.location), Body::None)?;
        match status {
            200..=299 | 404 => Ok(()),
            _ => Err(c.remote("deleting the collection", status, &body)),
        }
    }

    fn from_parts(client: Client, config: &WeaviateConfig, manifest: IndexManifest) -> Self {
        Self {
            client,
            location: config.location.clone(),
            manifest,
            write_consistency: config.write_consistency,
            read_consistency: config.read_consistency,
            staged_previews: Mutex::new(HashMap::new()),
            binary: AtomicBool::new(config.insert == InsertPath::Binary),
            writers: config.writers.max(1),
        }
    }

    /// Whether writes take the binary path: as configured, until the first write finds a server without it.
    pub fn inserts_binary(&self) -> bool {
        self.binary.load(Ordering::Relaxed)
    }

    fn class(&self) -> &str {
        &self.location.collection
    }

    fn dir(&self) -> PathBuf {
        PathBuf::from(self.location.to_string())
    }

    fn point_uuid(&self, file_sha256: &str, page_index: usize) -> String {
        uuid_of(point_id(file_sha256, page_index, &self.manifest.model_id, &self.manifest.preprocessing))
    }

    fn check_page(&self, p: &PageRecord) -> Result<()> {
        let dim = self.manifest.embedding_dim;
        if p.vectors.is_empty() || p.vectors.len() % dim != 0 {
            return Err(Error::PageVectorShape {
                doc_id: p.doc_id.clone(),
                page_index: p.page_index,
                len: p.vectors.len(),
                dim,
            });
        }
        if p.vectors.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite { what: format!("page {} of document {}", p.page_index, p.doc_id) });
        }
        if p.page_index >= p.page_count {
            return Err(Error::PageIndexOutOfRange {
                doc_id: p.doc_id.clone(),
                page_index: p.page_index,
                page_count: p.page_count,
            });
        }
        Ok(())
    }

    /// Sends one batch-insert request and checks every object's result.
    fn send_batch(&self, body: &[u8], objects: usize) -> Result<()> {
        let path = format!("/v1/batch/objects?consistency_level={}", self.write_consistency);
        let answer = self.client.ok("writing pages", "POST", &path, Body::Raw(body))?;
        let results = answer.as_array().ok_or_else(|| self.client.remote("writing pages", 200, &answer))?;
        if results.len() != objects {
            return Err(Error::Remote {
                location: self.location.to_string(),
                op: "writing pages",
                status: 200,
                message: format!("{} results for {objects} objects", results.len()),
            });
        }
        for r in results {
            if let Some(errors) = r.pointer("/result/errors").filter(|e| !e.is_null()) {
                return Err(self.client.remote("writing pages", 200, errors));
            }
        }
        Ok(())
    }

    /// Writes `pages[range]` in requests of at most [`BATCH_BYTES`], binary unless the server lacks that path.
    fn write_pages(
        &self,
        pages: &[PageRecord],
        previews: &[Option<String>],
        range: std::ops::Range<usize>,
    ) -> Result<()> {
        let mut start = range.start;
        while start < range.end {
            if self.binary.load(Ordering::Relaxed) {
                let (end, body) = self.proto_batch(pages, previews, start..range.end);
                match self.send_proto_batch(pages, start, &body)? {
                    true => {
                        start = end;
                        continue;
                    }
                    // No binary path on this server: JSON from now on (this batch included).
                    false => self.binary.store(false, Ordering::Relaxed),
                }
            }
            let (end, body) = self.json_batch(pages, previews, start..range.end);
            self.send_batch(&body, end - start)?;
            start = end;
        }
        Ok(())
    }

    /// The pages from `range.start` that fit in one batch request (at least one), as JSON; returns where
    /// it stopped and the body.
    fn json_batch(
        &self,
        pages: &[PageRecord],
        previews: &[Option<String>],
        range: std::ops::Range<usize>,
    ) -> (usize, Vec<u8>) {
        let dim = self.manifest.embedding_dim;
        let mut buf: Vec<u8> = Vec::with_capacity(BATCH_BYTES + (2 << 20));
        let mut end = range.start;
        while end < range.end && (end == range.start || buf.len() < BATCH_BYTES) {
            let p = &pages[end];
            buf.extend_from_slice(if end == range.start { b"{\"objects\":[" } else { b"," });
            let object = BatchObject {
                class: self.class(),
                id: self.point_uuid(&p.file_sha256, p.page_index),
                properties: Properties {
                    doc_id: &p.doc_id,
                    source_path: &p.source_path,
                    file_sha256: &p.file_sha256,
                    page_index: p.page_index,
                    page_count: p.page_count,
                    page_width_pt: p.page_width_pt,
                    page_height_pt: p.page_height_pt,
                    preview: p.preview.as_deref().unwrap_or(""),
                    preview_jpeg: previews[end].as_deref(),
                },
                vectors: Vectors { colqwen: Rows { data: &p.vectors, dim } },
            };
            serde_json::to_writer(&mut buf, &object).expect("writing JSON into a Vec cannot fail");
            end += 1;
        }
        buf.extend_from_slice(b"]}");
        (end, buf)
    }

    /// Like [`Weaviate::json_batch`], as a protobuf `BatchObjectsRequest`.
    fn proto_batch(
        &self,
        pages: &[PageRecord],
        previews: &[Option<String>],
        range: std::ops::Range<usize>,
    ) -> (usize, Vec<u8>) {
        let dim = self.manifest.embedding_dim;
        let mut objects = Vec::new();
        let mut bytes = 0;
        let mut end = range.start;
        while end < range.end && (end == range.start || bytes < BATCH_BYTES) {
            let p = &pages[end];
            let text = |s: &str| wire::Value { kind: Some(wire::Kind::Text(s.to_string())) };
            let int = |n: usize| wire::Value { kind: Some(wire::Kind::Number(n as f64)) };
            // Through the f32's shortest decimal form, as the JSON path sends it: both store the same f64.
            let number =
                |x: f32| wire::Value { kind: Some(wire::Kind::Number(x.to_string().parse().unwrap_or(x.into()))) };
            let mut fields = BTreeMap::from([
                ("doc_id".to_string(), text(&p.doc_id)),
                ("source_path".to_string(), text(&p.source_path)),
                ("file_sha256".to_string(), text(&p.file_sha256)),
                ("page_index".to_string(), int(p.page_index)),
                ("page_count".to_string(), int(p.page_count)),
                ("page_width_pt".to_string(), number(p.page_width_pt)),
                ("page_height_pt".to_string(), number(p.page_height_pt)),
                ("preview".to_string(), text(p.preview.as_deref().unwrap_or(""))),
            ]);
            if let Some(jpeg) = &previews[end] {
                fields.insert("preview_jpeg".to_string(), text(jpeg));
            }
            let vector_bytes = wire::multi_vector_bytes(&p.vectors, dim);
            bytes += vector_bytes.len() + previews[end].as_ref().map_or(0, String::len) + 512;
            objects.push(wire::BatchObject {
                uuid: self.point_uuid(&p.file_sha256, p.page_index),
                properties: Some(wire::Properties { non_ref_properties: Some(wire::Struct { fields }) }),
                collection: self.class().to_string(),
                vectors: vec![wire::Vectors { name: VECTOR.to_string(), vector_bytes, r#type: wire::MULTI_FP32 }],
            });
            end += 1;
        }
        let request = wire::BatchObjectsRequest {
            objects,
            consistency_level: Some(wire::consistency_level(self.write_consistency)),
        };
        (end, prost::Message::encode_to_vec(&request))
    }

    /// Sends one binary batch whose first object is `pages[first]`; `false` when the server has no binary
    /// path (an older Weaviate, or gRPC-web turned off), so the caller falls back to JSON.
    fn send_proto_batch(&self, pages: &[PageRecord], first: usize, body: &[u8]) -> Result<bool> {
        const OP: &str = "writing pages";
        let (status, answer) = self.client.call_proto(OP, wire::BATCH_OBJECTS_PATH, body)?;
        if !(200..300).contains(&status) {
            if matches!(status, 404 | 405 | 415) && !wire::is_connect_error(&answer) {
                tracing::warn!(
                    location = %self.location,
                    status,
                    "the server has no binary batch path (Weaviate with gRPC-web on the REST port); writing JSON"
                );
                return Ok(false);
            }
            return Err(self.client.remote_text(OP, status, wire::connect_error(&answer)));
        }
        let reply: wire::BatchObjectsReply = prost::Message::decode(answer.as_slice()).map_err(|e| {
            self.client.remote_text(OP, status, format!("an answer that is not a BatchObjectsReply: {e}"))
        })?;
        if let Some(e) = reply.errors.first() {
            let page = usize::try_from(e.index).ok().and_then(|i| pages.get(first + i));
            let what = page.map_or_else(String::new, |p| format!("page {} of document {}: ", p.page_index, p.doc_id));
            let more =
                if reply.errors.len() > 1 { format!(" (and {} more)", reply.errors.len() - 1) } else { String::new() };
            return Err(self.client.remote_text(OP, status, format!("{what}{}{more}", e.error)));
        }
        Ok(true)
    }

    /// Waits until every object written so far is in the collection's vector index, that is until the shards'
    /// vector queues are empty (`GET /v1/nodes?output=verbose`). Only a server with `ASYNC_INDEXING` has such
    /// a queue: it acknowledges a write once the object is stored, and a vector search finds the object only
    /// once its queue has handed it to the HNSW index (a search does not look into the queue). Without async
    /// indexing this returns after one request. [`Error::Timeout`] after `timeout`.
    pub fn wait_indexed(&self, timeout: Duration) -> Result<()> {
        const OP: &str = "waiting for the vector index";
        let started = std::time::Instant::now();
        let path = format!("/v1/nodes/{}?output=verbose", self.class());
        loop {
            let nodes = self.client.ok(OP, "GET", &path, Body::None)?;
            let mut queued = 0;
            let mut indexing = false;
            for shard in nodes
                .get("nodes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|n| n.get("shards").and_then(Value::as_array))
                .flatten()
                .filter(|s| s.get("class").and_then(Value::as_str) == Some(self.class()))
            {
                queued += shard.get("vectorQueueLength").and_then(Value::as_u64).unwrap_or(0);
                indexing |= shard.get("vectorIndexingStatus").and_then(Value::as_str) == Some("INDEXING");
            }
            if queued == 0 && !indexing {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(Error::Timeout { location: self.location.to_string(), op: OP, seconds: timeout.as_secs() });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Deletes every object matching `filter` (REST `where` syntax); returns how many.
    fn delete_where(&self, filter: Value) -> Result<usize> {
        let path = format!("/v1/batch/objects?consistency_level={}", self.write_consistency);
        let body = json!({ "match": { "class": self.class(), "where": filter }, "output": "minimal", "dryRun": false });
        let mut total = 0;
        // One request deletes at most QUERY_LIMIT objects; repeat until fewer matched.
        loop {
            let answer = self.client.ok("deleting pages", "DELETE", &path, Body::Json(&body))?;
            let field = |name: &str| answer.pointer(&format!("/results/{name}")).and_then(Value::as_u64).unwrap_or(0);
            let (matches, failed) = (field("matches") as usize, field("failed") as usize);
            if failed > 0 {
                return Err(Error::Remote {
                    location: self.location.to_string(),
                    op: "deleting pages",
                    status: 200,
                    message: format!("{failed} of {matches} objects were not deleted; run the command again"),
                });
            }
            total += matches;
            if matches < QUERY_LIMIT {
                return Ok(total);
            }
        }
    }

    /// GraphQL `Get` of this collection with `args` and `fields`; returns the objects.
    fn get(&self, op: &'static str, args: &str, fields: &str) -> Result<Vec<Value>> {
        let query = format!("{{ Get {{ {}({args}) {{ {fields} }} }} }}", self.class());
        let mut data = self.client.graphql(op, &query)?;
        match data.pointer_mut(&format!("/Get/{}", self.class())).map(Value::take) {
            Some(Value::Array(items)) => Ok(items),
            Some(Value::Null) | None => Ok(Vec::new()),
            Some(other) => Err(self.client.remote(op, 200, &other)),
        }
    }

    /// Calls `f` on every object of the collection (the fields asked for, and `_additional.id`), listed by
    /// id with a cursor, [`LIST_PAGE`] at a time.
    fn for_each_object(&self, op: &'static str, fields: &str, mut f: impl FnMut(&Value)) -> Result<()> {
        let fields = format!("{fields} _additional {{ id }}");
        let mut after: Option<String> = None;
        loop {
            let args = match &after {
                Some(id) => format!("limit: {LIST_PAGE}, after: {}", gql_string(id)),
                None => format!("limit: {LIST_PAGE}"),
            };
            let items = self.get(op, &args, &fields)?;
            items.iter().for_each(&mut f);
            if items.len() < LIST_PAGE {
                return Ok(());
            }
            after = items.last().and_then(|v| v.pointer("/_additional/id")).and_then(Value::as_str).map(str::to_string);
            if after.is_none() {
                return Ok(());
            }
        }
    }

    fn hit(&self, v: &Value, score: f32) -> Result<Hit> {
        let id = v.pointer("/_additional/id").and_then(Value::as_str).unwrap_or_default();
        let corrupt = |field| Error::CorruptPayload { dir: self.dir(), point_id: id.to_string(), field };
        let text = |field: &'static str| {
            v.get(field).and_then(Value::as_str).map(str::to_string).ok_or_else(|| corrupt(field))
        };
        let int = |field: &'static str| {
            v.get(field).and_then(Value::as_u64).map(|n| n as usize).ok_or_else(|| corrupt(field))
        };
        let num =
            |field: &'static str| v.get(field).and_then(Value::as_f64).map(|n| n as f32).ok_or_else(|| corrupt(field));
        Ok(Hit {
            score,
            point_id: point_of_uuid(id).ok_or_else(|| corrupt("id"))?,
            doc_id: text("doc_id")?,
            source_path: text("source_path")?,
            file_sha256: text("file_sha256")?,
            page_index: int("page_index")?,
            page_count: int("page_count")?,
            page_width_pt: num("page_width_pt")?,
            page_height_pt: num("page_height_pt")?,
            preview: v.get("preview").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string),
        })
    }
}

impl PageIndex for Weaviate {
    fn manifest(&self) -> &IndexManifest {
        &self.manifest
    }

    fn location(&self) -> String {
        self.location.to_string()
    }

    fn upsert(&self, pages: Vec<PageRecord>) -> Result<()> {
        for p in &pages {
            self.check_page(p)?;
        }
        let previews: Vec<Option<String>> = {
            let mut staged = self.staged_previews.lock().unwrap_or_else(|e| e.into_inner());
            pages
                .iter()
                .map(|p| staged.remove(&(p.doc_id.clone(), p.page_index)).map(|jpeg| BASE64.encode(jpeg)))
                .collect()
        };
        if pages.is_empty() {
            return Ok(());
        }
        // Up to `writers` requests in flight: each writer encodes and sends its own share of the pages, so one
        // request's encoding and transfer overlap another's insertion on the server.
        let writers = self.writers.clamp(1, pages.len());
        let share = pages.len().div_ceil(writers);
        let chunks: Vec<std::ops::Range<usize>> =
            (0..pages.len()).step_by(share).map(|s| s..(s + share).min(pages.len())).collect();
        if chunks.len() == 1 {
            return self.write_pages(&pages, &previews, 0..pages.len());
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> =
                chunks.into_iter().map(|r| scope.spawn(|| self.write_pages(&pages, &previews, r))).collect();
            // Every writer is joined; the first error (in page order) is the answer.
            handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
        })
    }

    /// Weaviate acknowledges a batch once it is in its write-ahead log, so there is nothing left to flush.
    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn pages_of_file(&self, file_sha256: &str) -> Result<BTreeSet<usize>> {
        let args = format!(
            "limit: {QUERY_LIMIT}, where: {{path: [\"file_sha256\"], operator: Equal, valueText: {}}}",
            gql_string(file_sha256)
        );
        let items = self.get("listing a file's pages", &args, "page_index")?;
        Ok(items.iter().filter_map(|v| v.get("page_index").and_then(Value::as_u64)).map(|n| n as usize).collect())
    }

    fn documents(&self) -> Result<Vec<DocumentInfo>> {
        let mut docs: BTreeMap<(String, String), DocumentInfo> = BTreeMap::new();
        self.for_each_object("listing documents", "doc_id source_path file_sha256 page_count", |v| {
            let text = |f: &str| v.get(f).and_then(Value::as_str).unwrap_or_default().to_string();
            let (doc_id, sha) = (text("doc_id"), text("file_sha256"));
            let entry = docs.entry((doc_id.clone(), sha.clone())).or_insert_with(|| DocumentInfo {
                doc_id,
                source_path: text("source_path"),
                file_sha256: sha,
                page_count: v.get("page_count").and_then(Value::as_u64).unwrap_or(0) as usize,
                stored_pages: 0,
            });
            entry.stored_pages += 1;
        })?;
        Ok(docs.into_values().collect())
    }

    fn delete_document(&self, doc_id: &str) -> Result<usize> {
        self.delete_where(json!({"path": ["doc_id"], "operator": "Equal", "valueText": doc_id}))
    }

    fn delete_file_version(&self, source_path: &str, keep_sha256: &str) -> Result<usize> {
        self.delete_where(json!({"operator": "And", "operands": [
            {"path": ["source_path"], "operator": "Equal", "valueText": source_path},
            {"path": ["file_sha256"], "operator": "NotEqual", "valueText": keep_sha256},
        ]}))
    }

    /// Weaviate's HNSW over multi-vectors is approximate whatever the mode; the mode sets how many candidates
    /// it is asked for (a larger limit widens its search list `ef`): `Exact` max(4k, 100), `TwoStage` the
    /// prefetch (default [`DEFAULT_TWO_STAGE_LIMIT`]), `Auto` k. Scores are Weaviate's MaxSim (minus the `dot` distance).
    fn search(&self, query: &MultiVector, k: usize, doc_id: Option<&str>, mode: SearchMode) -> Result<Vec<Hit>> {
        let dim = self.manifest.embedding_dim;
        if query.dim != dim || query.data.is_empty() || query.data.len() % dim != 0 {
            return Err(Error::QueryShape { len: query.data.len(), dim });
        }
        if query.data.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite { what: "query".into() });
        }
        if k == 0 {
            return Ok(Vec::new());
        }
        let limit = match mode {
            SearchMode::Exact => (4 * k).max(100),
            SearchMode::TwoStage { prefetch } => prefetch.unwrap_or(DEFAULT_TWO_STAGE_LIMIT).max(k),
            SearchMode::Auto => k,
        }
        .min(QUERY_LIMIT);
        let mut args = String::with_capacity(query.data.len() * 12 + 200);
        args.push_str("nearVector: {vector: [");
        for (i, row) in query.rows().enumerate() {
            args.push_str(if i == 0 { "[" } else { ",[" });
            for (j, v) in row.iter().enumerate() {
                if j > 0 {
                    args.push(',');
                }
                write!(args, "{v}").expect("writing to a String cannot fail");
            }
            args.push(']');
        }
        write!(args, "], targetVectors: [\"{VECTOR}\"]}}, limit: {limit}").expect("writing to a String cannot fail");
        if let Some(doc) = doc_id {
            write!(args, ", where: {{path: [\"doc_id\"], operator: Equal, valueText: {}}}", gql_string(doc))
                .expect("writing to a String cannot fail");
        }
        let items = self.get("searching", &args, &format!("{PAGE_FIELDS} _additional {{ id distance }}"))?;
        let mut hits = items
            .iter()
            .map(|v| {
                let distance = v.pointer("/_additional/distance").and_then(Value::as_f64).unwrap_or(f64::INFINITY);
                self.hit(v, -distance as f32)
            })
            .collect::<Result<Vec<_>>>()?;
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(k);
        Ok(hits)
    }

    fn page_vectors(&self, doc_id: &str, page_index: usize) -> Result<Option<MultiVector>> {
        let items = self.get("reading a page", &page_filter(doc_id, page_index), "_additional { id }")?;
        let Some(id) = items.first().and_then(|v| v.pointer("/_additional/id")).and_then(Value::as_str) else {
            return Ok(None);
        };
        let path =
            format!("/v1/objects/{}/{id}?include=vector&consistency_level={}", self.class(), self.read_consistency);
        let (status, object) = self.client.call("reading a page's vectors", "GET", &path, Body::None)?;
        if status == 404 {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(self.client.remote("reading a page's vectors", status, &object));
        }
        let rows = object
            .pointer(&format!("/vectors/{VECTOR}"))
            .and_then(Value::as_array)
            .ok_or_else(|| Error::CorruptPayload { dir: self.dir(), point_id: id.to_string(), field: "vectors" })?;
        let dim = self.manifest.embedding_dim;
        let mut data = Vec::with_capacity(rows.len() * dim);
        for row in rows {
            let row = row.as_array().filter(|r| r.len() == dim).ok_or_else(|| Error::CorruptPayload {
                dir: self.dir(),
                point_id: id.to_string(),
                field: "vectors",
            })?;
            data.extend(row.iter().map(|x| x.as_f64().unwrap_or(f64::NAN) as f32));
        }
        Ok(MultiVector::new(data, dim))
    }

    fn keeps_previews(&self) -> bool {
        true
    }

    fn stage_preview(&self, doc_id: &str, page_index: usize, jpeg: Vec<u8>) -> Result<()> {
        self.staged_previews.lock().unwrap_or_else(|e| e.into_inner()).insert((doc_id.to_string(), page_index), jpeg);
        Ok(())
    }

    fn preview(&self, doc_id: &str, page_index: usize) -> Result<Option<Vec<u8>>> {
        let items =
            self.get("reading a preview", &page_filter(doc_id, page_index), "preview_jpeg _additional { id }")?;
        let Some(item) = items.first() else { return Ok(None) };
        let Some(b64) = item.get("preview_jpeg").and_then(Value::as_str).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let id = item.pointer("/_additional/id").and_then(Value::as_str).unwrap_or_default();
        BASE64.decode(b64).map(Some).map_err(|_| Error::CorruptPayload {
            dir: self.dir(),
            point_id: id.to_string(),
            field: "preview_jpeg",
        })
    }

    /// Counts by listing object ids: Weaviate's `Aggregate` count does not fall back to another replica, so
    /// on a cluster with a node down it hangs until the server's timeout, where a listing answers.
    fn page_count(&self) -> Result<usize> {
        let mut n = 0;
        self.for_each_object("counting pages", "page_index", |_| n += 1)?;
        Ok(n)
    }

    /// Disk use is the server's business (not reported by its API per collection): `bytes_on_disk` is `None`.
    fn stats(&self) -> Result<Stats> {
        let documents = self.documents()?;
        Ok(Stats {
            location: self.location(),
            pages: documents.iter().map(|d| d.stored_pages).sum(),
            documents: documents.len(),
            bytes_on_disk: None,
            wal_bytes: 0,
            model_id: self.manifest.model_id.clone(),
            family: self.manifest.family.clone(),
            embedding_dim: self.manifest.embedding_dim,
            storage: self.manifest.storage,
            pool_factor: self.manifest.pool_factor,
        })
    }
}

fn client(config: &WeaviateConfig) -> Client {
    Client::new(config.location.base_url(), config.location.to_string(), config.api_key.clone(), config.timeout)
}

fn schema_path(location: &Location) -> String {
    format!("/v1/schema/{}", location.collection)
}

/// The manifest in the collection's description; `None` when the collection does not exist. Asks `/v1/meta`
/// first, so that another server at a wrong address is not taken for a Weaviate without the collection.
fn read_manifest_with(client: &Client, location: &Location) -> Result<Option<IndexManifest>> {
    let not_the_server = |reason: String| Error::NotTheServer { location: location.to_string(), reason };
    let (status, meta) = client.call("asking the server's version", "GET", "/v1/meta", Body::None)?;
    if !(200..300).contains(&status) {
        return Err(not_the_server(format!("GET /v1/meta answered HTTP {status}")));
    }
    let Some(version) = meta.get("version").and_then(Value::as_str) else {
        return Err(not_the_server("GET /v1/meta has no version".into()));
    };
    // Multi-vector collections (multivector + maxSim) exist since Weaviate 1.29.
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    if (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) < (1, 29) {
        return Err(not_the_server(format!("version {version}; multi-vector collections need 1.29 or later")));
    }
    // Header `consistency: false`: this node's copy of the schema. The default asks the raft leader, and a
    // cluster that lost its raft majority (one node of two) has none, so the request would hang.
    let (status, body) = client.call_with(
        "reading the collection",
        "GET",
        &schema_path(location),
        Body::None,
        Some(("consistency", "false")),
    )?;
    match status {
        // A node that is not ready (starting, or a raft candidate that cannot reach the other members) has no
        // schema yet and answers 404 for every collection: that says nothing about the collection, and
        // creating it would fail after a long wait. A node that is not ready but answers 200 (one node of a
        // two-node cluster that lost the other) serves its copy of the collection: that is fine.
        404 => return check_ready(client, location).map(|()| None),
        200..=299 => {}
        _ => return Err(client.remote("reading the collection", status, &body)),
    }
    let dir = PathBuf::from(location.to_string());
    let description = body.get("description").and_then(Value::as_str).unwrap_or_default();
    let json = description.strip_prefix(MANIFEST_PREFIX).ok_or(Error::Damaged {
        dir: dir.clone(),
        reason: "the collection exists but was not made by colqwen (no manifest in its description)",
    })?;
    let manifest: IndexManifest =
        serde_json::from_str(json).map_err(|source| Error::ManifestParse { path: dir.join("description"), source })?;
    Ok(Some(manifest))
}

/// `Ok` if `GET /v1/.well-known/ready` answers 2xx, else [`Error::NotReady`].
fn check_ready(client: &Client, location: &Location) -> Result<()> {
    let (status, _) = client.call("asking whether the server is ready", "GET", "/v1/.well-known/ready", Body::None)?;
    if (200..300).contains(&status) {
        return Ok(());
    }
    Err(Error::NotReady {
        location: location.to_string(),
        detail: format!("GET /v1/.well-known/ready answers HTTP {status}"),
    })
}

/// Creates the collection; `false` if it already existed (another process was first).
fn create(client: &Client, config: &WeaviateConfig, manifest: &IndexManifest) -> Result<bool> {
    let text = |name: &str| json!({"name": name, "dataType": ["text"], "tokenization": "field", "indexFilterable": true, "indexSearchable": false});
    let int = |name: &str| json!({"name": name, "dataType": ["int"], "indexFilterable": true});
    let number = |name: &str| json!({"name": name, "dataType": ["number"], "indexFilterable": false});
    let manifest_json = serde_json::to_string(manifest).expect("a manifest always serialises to JSON");
    let class = json!({
        "class": config.location.collection,
        "description": format!("{MANIFEST_PREFIX}{manifest_json}"),
        "properties": [
            text("doc_id"), text("source_path"), text("file_sha256"), int("page_index"), int("page_count"),
            number("page_width_pt"), number("page_height_pt"),
            {"name": "preview", "dataType": ["text"], "indexFilterable": false, "indexSearchable": false},
            {"name": "preview_jpeg", "dataType": ["blob"]},
        ],
        "vectorConfig": { VECTOR: {
            "vectorizer": {"none": {}},
            "vectorIndexType": "hnsw",
            "vectorIndexConfig": {
                "distance": "dot",
                "multivector": {"enabled": true, "aggregation": "maxSim", "muvera": {"enabled": config.muvera}},
            },
        }},
        // Async replication lets a replica that was down catch up on the writes it missed.
        "replicationConfig": {"factor": config.replication_factor.max(1), "asyncEnabled": config.replication_factor > 1},
    });
    let (status, body) = client.call("creating the collection", "POST", "/v1/schema", Body::Json(&class))?;
    match status {
        200..=299 => Ok(true),
        422 if body.to_string().contains("already exists") => Ok(false),
        _ => Err(client.remote("creating the collection", status, &body)),
    }
}

/// A point id as a UUID string: 16 zero hex digits, then the id's 16 hex digits.
pub(crate) fn uuid_of(point_id: u64) -> String {
    let h = format!("{point_id:016x}");
    format!("00000000-0000-0000-{}-{}", &h[..4], &h[4..])
}

/// The point id back from a UUID written by [`uuid_of`].
pub(crate) fn point_of_uuid(uuid: &str) -> Option<u64> {
    let hex: String = uuid.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    u64::from_str_radix(&hex[16..], 16).ok()
}

/// GraphQL arguments selecting page `page_index` of document `doc_id`.
fn page_filter(doc_id: &str, page_index: usize) -> String {
    format!(
        "limit: 1, where: {{operator: And, operands: [\
         {{path: [\"doc_id\"], operator: Equal, valueText: {}}}, \
         {{path: [\"page_index\"], operator: Equal, valueInt: {page_index}}}]}}",
        gql_string(doc_id)
    )
}

/// A GraphQL string literal (its escapes are JSON's).
fn gql_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

#[derive(Serialize)]
struct BatchObject<'a> {
    class: &'a str,
    id: String,
    properties: Properties<'a>,
    vectors: Vectors<'a>,
}

#[derive(Serialize)]
struct Properties<'a> {
    doc_id: &'a str,
    source_path: &'a str,
    file_sha256: &'a str,
    page_index: usize,
    page_count: usize,
    page_width_pt: f32,
    page_height_pt: f32,
    preview: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    preview_jpeg: Option<&'a str>,
}

#[derive(Serialize)]
struct Vectors<'a> {
    colqwen: Rows<'a>,
}

/// Row-major values serialised as a list of rows (`[[…dim…], …]`), without copying.
struct Rows<'a> {
    data: &'a [f32],
    dim: usize,
}

impl Serialize for Rows<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.data.chunks_exact(self.dim))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_round_trip() {
        for id in [0u64, 1, 0xdead_beef_0123_4567, u64::MAX] {
            let u = uuid_of(id);
            assert_eq!(u.len(), 36);
            assert_eq!(point_of_uuid(&u), Some(id));
        }
        assert_eq!(point_of_uuid("nope"), None);
    }

    #[test]
    fn rows_serialise_as_nested_lists() {
        let r = Rows { data: &[1.0, 2.0, 3.0, 4.5], dim: 2 };
        assert_eq!(serde_json::to_string(&r).expect("json"), "[[1.0,2.0],[3.0,4.5]]");
    }
}
