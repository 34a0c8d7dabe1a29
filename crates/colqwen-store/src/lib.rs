#![allow(missing_docs)] // fields of the error and record types are named for what they hold
//! Embedded multi-vector page store of colqwen.
//!
//! Each page is stored as one point of a [qdrant-edge](https://crates.io/crates/qdrant-edge)
//! shard: a named multivector `colqwen` (all rows, MaxSim over Dot, no HNSW), a named dense
//! vector `pooled` (normalised mean of the rows, for two-stage search) and a payload (doc_id,
//! source_path, file_sha256, page_index, page_count, page size, model_id, preprocessing, preview).
//! One index is one folder; see [`Store`].

mod error;
mod schema;
mod space;
mod store;
mod wal;

pub use colqwen_core::{
    DocumentInfo, FORMAT_VERSION, Hit, IndexManifest, PageIndex, PageRecord, SearchMode, Stats, VectorStorage, maxsim,
    point_id, pooled,
};
pub use error::{Error, Result};
pub use store::{AUTO_EXACT_MAX_PAGES, AUTO_LARGE_INDEX_PAGES, AUTO_PREFETCH, AUTO_PREFETCH_LARGE, Store};
