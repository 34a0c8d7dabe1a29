//! Search: embed the query on the device worker (ahead of page batches), rank pages by MaxSim in the index.

mod device;

pub use device::DeviceScorer;

use std::path::PathBuf;

use colqwen_core::{DocumentInfo, SearchMode};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Search settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchOptions {
    /// Pages to return.
    pub k: usize,
    /// Only pages of this document (id, id prefix, path or file name).
    pub doc: Option<String>,
    /// Exact, two-stage or automatic.
    pub mode: SearchMode,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self { k: 10, doc: None, mode: SearchMode::Auto }
    }
}

/// Where exact search scores the pages of the embedded store (decided once, when the service opens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchDevice {
    /// The model's GPU when it is a CUDA device: every page's vectors copied to it (up to half of its free memory;
    /// a larger index stays on the CPU), each search one pass over them. Otherwise the CPU.
    #[default]
    Auto,
    /// Always the CPU scan (SIMD on all cores).
    Cpu,
}

/// Most pages one search may return.
pub const MAX_K: usize = 1000;

/// One result.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    /// MaxSim score.
    pub score: f32,
    /// Document id (16 hex digits of the file's SHA-256).
    pub doc_id: String,
    /// The PDF as it was ingested.
    pub source_path: String,
    /// 1-based page number.
    pub page_number: usize,
    /// Pages of the document.
    pub page_count: usize,
    /// Preview image file, if there is one.
    pub preview: Option<PathBuf>,
}

/// Finds the document a user means: exact id, id prefix, exact path, or file name; ambiguous or unknown names
/// are errors.
pub(crate) fn resolve_document(docs: &[DocumentInfo], name: &str) -> Result<String> {
    let file_name = |p: &str| std::path::Path::new(p).file_name().map(|f| f.to_string_lossy().into_owned());
    // A path is stored absolute: a relative one names the same document from the current folder.
    let as_stored = crate::discover::stored_path(std::path::Path::new(name));
    let exact: Vec<_> =
        docs.iter().filter(|d| d.doc_id == name || d.source_path == name || d.source_path == as_stored).collect();
    let candidates: Vec<_> = if exact.is_empty() {
        docs.iter()
            .filter(|d| {
                (!name.is_empty() && d.doc_id.starts_with(name)) || file_name(&d.source_path).as_deref() == Some(name)
            })
            .collect()
    } else {
        exact
    };
    let mut ids: Vec<&str> = candidates.iter().map(|d| d.doc_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    match ids[..] {
        [id] => Ok(id.to_string()),
        [] => Err(Error::NoSuchDocument(name.into())),
        _ => Err(Error::NoSuchDocument(format!("{name} (ambiguous: matches {})", ids.join(", ")))),
    }
}
