//! Search: embed the query, rank pages by MaxSim in the store (exact for small indexes, pooled-vector
//! prefetch + exact rerank beyond a threshold: `colqwen_store::SearchMode::Auto`).

use std::path::PathBuf;

use colqwen_store::{SearchMode, Store};
use serde::Serialize;

use crate::engine::Engine;
use crate::error::{Error, Result};

/// Search settings.
#[derive(Debug, Clone)]
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
    /// Preview image, absolute path.
    pub preview: Option<PathBuf>,
}

/// Finds the document a user means: exact id, id prefix, exact path, or file name; ambiguous or unknown names
/// are errors.
pub fn resolve_document(store: &Store, name: &str) -> Result<String> {
    let docs = store.documents()?;
    let file_name = |p: &str| std::path::Path::new(p).file_name().map(|f| f.to_string_lossy().into_owned());
    let exact: Vec<_> = docs.iter().filter(|d| d.doc_id == name || d.source_path == name).collect();
    let candidates: Vec<_> = if exact.is_empty() {
        docs.iter()
            .filter(|d| d.doc_id.starts_with(name) || file_name(&d.source_path).as_deref() == Some(name))
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

/// Ranks the index's pages for `query`.
pub fn search(engine: &Engine, store: &Store, query: &str, opts: &SearchOptions) -> Result<Vec<SearchHit>> {
    if query.trim().is_empty() {
        return Err(Error::EmptyQuery);
    }
    let doc = opts.doc.as_deref().map(|d| resolve_document(store, d)).transpose()?;
    let q = engine.model().embed_queries(&[query])?.remove(0);
    let hits = store.search(&q.data, opts.k, doc.as_deref(), opts.mode)?;
    Ok(hits
        .into_iter()
        .map(|h| SearchHit {
            score: h.score,
            doc_id: h.doc_id,
            source_path: h.source_path,
            page_number: h.page_index + 1,
            page_count: h.page_count,
            preview: h.preview.map(|p| store.dir().join(p)),
        })
        .collect())
}
