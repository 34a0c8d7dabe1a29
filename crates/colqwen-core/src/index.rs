//! The store seam: what the service needs of an index, whatever its backend (embedded folder, a server).

use std::collections::BTreeSet;

use crate::error::Result;
use crate::manifest::IndexManifest;
use crate::multivector::MultiVector;
use crate::records::{DocumentInfo, Hit, PageRecord, SearchMode, Stats};

/// A page index. Every method takes `&self`: one value is shared by the threads of a server (searches run
/// while an ingest writes), so implementations synchronise inside.
///
/// Durability: what [`PageIndex::upsert`] wrote survives a killed process once [`PageIndex::flush`] returned.
/// Page ids are deterministic ([`crate::point_id`]), so writing a page again replaces it.
pub trait PageIndex: Send + Sync {
    /// What the index was built with.
    fn manifest(&self) -> &IndexManifest;
    /// Where it lives, for messages (a folder or an address).
    fn location(&self) -> String;
    /// Inserts or replaces pages.
    fn upsert(&self, pages: Vec<PageRecord>) -> Result<()>;
    /// Makes every write so far durable.
    fn flush(&self) -> Result<()>;
    /// Page indexes stored for a file (by content hash).
    fn pages_of_file(&self, file_sha256: &str) -> Result<BTreeSet<usize>>;
    /// Stored documents, one entry per (doc_id, file version), sorted by doc_id.
    fn documents(&self) -> Result<Vec<DocumentInfo>>;
    /// Deletes every page of a document; returns how many were deleted.
    fn delete_document(&self, doc_id: &str) -> Result<usize>;
    /// Deletes the pages stored for `source_path` whose file hash is not `keep_sha256` (older versions of a
    /// changed file); returns how many were deleted.
    fn delete_file_version(&self, source_path: &str, keep_sha256: &str) -> Result<usize>;
    /// Top `k` pages by MaxSim against `query`, optionally only pages of one document (`doc_id`).
    fn search(&self, query: &MultiVector, k: usize, doc_id: Option<&str>, mode: SearchMode) -> Result<Vec<Hit>>;
    /// The stored vectors of page `page_index` (0-based) of document `doc_id`, as the index holds them (f16
    /// storage comes back widened to f32); `None` if that page is not stored. Similarity maps need them: a map
    /// is the query's vectors against the page's, with no re-embedding.
    fn page_vectors(&self, doc_id: &str, page_index: usize) -> Result<Option<MultiVector>>;
    /// Number of stored pages.
    fn page_count(&self) -> Result<usize>;
    /// Pages, documents, disk use, model and storage type.
    fn stats(&self) -> Result<Stats>;

    /// Whether page previews live in the index itself (a server every client reads) rather than in files
    /// beside it. `false` unless a backend says otherwise.
    fn keeps_previews(&self) -> bool {
        false
    }
    /// Hands over a page's preview JPEG (only where [`PageIndex::keeps_previews`]): it is stored with the page
    /// by the next [`PageIndex::upsert`] of that page, so a preview never exists without its page.
    fn stage_preview(&self, doc_id: &str, page_index: usize, jpeg: Vec<u8>) -> Result<()> {
        let _ = (doc_id, page_index, jpeg);
        Ok(())
    }
    /// A stored page's preview JPEG, `None` when the page or its preview is not stored (or the index keeps none).
    fn preview(&self, doc_id: &str, page_index: usize) -> Result<Option<Vec<u8>>> {
        let _ = (doc_id, page_index);
        Ok(None)
    }
}
