#![allow(missing_docs)] // fields of the error and record types are named for what they hold
//! Embedded multi-vector page store of colqwen: one index is one folder.
//!
//! - `pages.log` holds every page: its metadata and its vectors (f32, f16 or i8 with a scale per row) in the
//!   layout the search kernels read straight from a memory map ([`log`] has the format and the crash rules);
//!   optionally pooled at ingest ([`pool`]: hierarchical token pooling, factor 2 halves the rows).
//! - Exact search is MaxSim over every page with register-blocked AVX-512 / AVX2 kernels ([`kernel`]) on all
//!   cores; two-stage search scores pages first by their nearest centroids ([`coarse`]) and then the best ones
//!   exactly. Searches read a snapshot, so they run while a writer writes.
//!
//! Why our own engine and not a vector database: MaxSim over ~768 vectors per page is the whole workload, the
//! data is append-mostly, and the crash contract is simple (flushed pages survive); the engine used before
//! (qdrant-edge 0.7) searched on one thread, never truncated its write-ahead log, and took 20 minutes to
//! compile. See `NOTES.md` for the measurements behind the choice.

mod accel;
mod coarse;
mod error;
mod kernel;
mod linalg;
mod log;
mod optimize;
pub mod pool;
mod search;
mod space;
mod store;

pub use accel::{ExactScorer, PagesView};
pub use colqwen_core::{
    DocumentInfo, FORMAT_VERSION, Hit, IndexManifest, PageIndex, PageRecord, SearchMode, Stats, VectorStorage, maxsim,
    point_id, pooled,
};
pub use error::{Error, Result};
pub use store::{AUTO_EXACT_MAX_PAGES, AUTO_PREFETCH, Store, auto_prefetch};
