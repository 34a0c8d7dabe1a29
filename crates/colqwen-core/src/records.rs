//! What goes into an index and what comes out of it, whatever the backend.

use serde::{Deserialize, Serialize};

use crate::manifest::VectorStorage;

/// One embedded page, as handed to [`PageIndex::upsert`](crate::PageIndex::upsert).
#[derive(Debug, Clone, PartialEq)]
pub struct PageRecord {
    /// Document id: the first 16 hex digits of the file's SHA-256 ([`crate::doc_id`]).
    pub doc_id: String,
    /// The PDF as it was ingested.
    pub source_path: String,
    /// SHA-256 of the file, hex.
    pub file_sha256: String,
    /// 0-based.
    pub page_index: usize,
    /// Pages of the document.
    pub page_count: usize,
    /// Page size in PDF points.
    pub page_width_pt: f32,
    /// Page size in PDF points.
    pub page_height_pt: f32,
    /// Key of the preview image, if one was written (relative path below the index folder).
    pub preview: Option<String>,
    /// `rows × embedding_dim`, row-major.
    pub vectors: Vec<f32>,
}

/// How a search ranks pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SearchMode {
    /// MaxSim against every (filtered) page.
    Exact,
    /// Top `prefetch` pages by a cheap first stage, then exact MaxSim on those.
    TwoStage {
        /// Candidates the first stage hands to the exact rerank; `None` (or absent in JSON): the backend's
        /// default for the index's size and storage — the rerank size `Auto` uses above its exact threshold.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefetch: Option<usize>,
    },
    /// The backend's choice by index size (exact while affordable).
    #[default]
    Auto,
}

/// One ranked page.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[allow(missing_docs)] // fields as in PageRecord
pub struct Hit {
    /// MaxSim score (sum over query rows of the best dot product).
    pub score: f32,
    /// The backend's id of the page ([`crate::point_id`]).
    pub point_id: u64,
    pub doc_id: String,
    pub source_path: String,
    pub file_sha256: String,
    pub page_index: usize,
    pub page_count: usize,
    pub page_width_pt: f32,
    pub page_height_pt: f32,
    pub preview: Option<String>,
}

/// One document version in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentInfo {
    /// Document id.
    pub doc_id: String,
    /// The PDF as it was ingested.
    pub source_path: String,
    /// SHA-256 of the file.
    pub file_sha256: String,
    /// Pages the file has.
    pub page_count: usize,
    /// Pages of it that are stored (less than `page_count` after an interrupted ingest).
    pub stored_pages: usize,
}

/// Size and identity of an index.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Where the index lives (folder or address).
    pub location: String,
    /// Stored pages.
    pub pages: usize,
    /// Stored documents.
    pub documents: usize,
    /// Allocated bytes of everything the index holds on disk; `None` where the backend does not report it
    /// (a Weaviate server keeps its disk use to itself).
    pub bytes_on_disk: Option<u64>,
    /// Of which the write-ahead log.
    pub wal_bytes: u64,
    /// The model the index was built with.
    pub model_id: String,
    /// Its family ("ColQwen2.5", "ColQwen3").
    pub family: String,
    /// Width of one vector.
    pub embedding_dim: usize,
    /// Element type of the stored vectors.
    pub storage: VectorStorage,
    /// Token pooling factor of the stored pages (1: every row stored).
    pub pool_factor: u32,
}

#[cfg(test)]
mod tests {
    use super::SearchMode;

    #[test]
    fn two_stage_without_prefetch_leaves_the_rerank_to_the_index() {
        let parse = |s: &str| serde_json::from_str::<SearchMode>(s).unwrap();
        assert_eq!(parse(r#"{"kind": "two_stage"}"#), SearchMode::TwoStage { prefetch: None });
        assert_eq!(parse(r#"{"kind": "two_stage", "prefetch": 300}"#), SearchMode::TwoStage { prefetch: Some(300) });
        assert_eq!(serde_json::to_string(&SearchMode::TwoStage { prefetch: None }).unwrap(), r#"{"kind":"two_stage"}"#);
        assert!(serde_json::from_str::<SearchMode>(r#"{"kind": "two_stage", "prefetch": -1}"#).is_err());
    }
}
