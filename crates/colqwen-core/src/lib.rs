//! colqwen's core: the types every stage shares and the two seams of the data path.
//!
//! - [`PageEmbedder`]: page image → model input → multi-vector, and query → multi-vector (the model).
//! - [`PageIndex`]: upsert, delete, list, search pages (the store, embedded or remote).
//!
//! Knows neither candle nor any store engine, so a second model family or a second backend is one more
//! implementation of one trait.

mod embed;
mod error;
mod id;
mod index;
mod manifest;
mod multivector;
mod records;
mod similarity;

pub use embed::{PageEmbedder, PageInput};
pub use error::{BoxError, Hint, IndexError, Result, io_user_fixable};
pub use id::{canonical_json, doc_id, is_doc_id, point_id};
pub use index::PageIndex;
pub use manifest::{FORMAT_VERSION, IndexManifest, MAX_POOL_FACTOR, VectorStorage, sync_dir};
pub use multivector::{MultiVector, maxsim, pooled};
pub use records::{DocumentInfo, Hit, PageRecord, SearchMode, Stats};
pub use similarity::{MapError, SimilarityMaps, VisualGrid, normalize, similarity_maps};
