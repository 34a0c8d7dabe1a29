//! What an ingest reports while it runs and when it ends: the library reports, the CLI draws bars and the
//! server streams events (uv's `Reporter` idea, STYLE §6.6).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A document or page that could not be ingested.
#[derive(Debug)]
pub struct Failure {
    /// The PDF.
    pub path: PathBuf,
    /// The page (0-based), or `None` when the whole document failed.
    pub page_index: Option<usize>,
    /// What went wrong.
    pub error: Error,
}

impl Failure {
    /// One line: path, page number, then the error and its causes (each once).
    pub fn describe(&self) -> String {
        let chain = error_chain(&self.error);
        // Most errors already name the file (and page): say it once.
        if chain.starts_with(&self.path.display().to_string()) {
            return chain;
        }
        match self.page_index {
            Some(p) => format!("{} page {}: {chain}", self.path.display(), p + 1),
            None => format!("{}: {chain}", self.path.display()),
        }
    }

    /// The failure as JSON for machines (`--json`, the server's job status).
    pub fn to_json(&self) -> FailureJson {
        FailureJson {
            path: self.path.display().to_string(),
            page_number: self.page_index.map(|p| p + 1),
            error: error_chain(&self.error),
            hint: self.error.hint(),
        }
    }
}

/// A [`Failure`] as it is serialised.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureJson {
    /// The PDF.
    pub path: String,
    /// 1-based page, or null when the whole document failed.
    pub page_number: Option<usize>,
    /// The error with its causes.
    pub error: String,
    /// What to do about it.
    pub hint: Option<String>,
}

/// `error: cause: cause`, skipping a cause whose text is already contained in the line (transparent wrappers
/// repeat their source's message).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

/// What an ingest did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Documents seen (including failed ones).
    pub documents: usize,
    /// Pages embedded and stored by this run.
    pub pages_ingested: usize,
    /// Pages skipped because they were already in the index.
    pub pages_skipped: usize,
    /// Pages of older versions of changed files that were removed.
    pub pages_replaced: usize,
    /// Documents and pages that failed.
    pub failures: Vec<Failure>,
    /// Files with the same content as an earlier file of the run (`(file, earlier file)`): stored once,
    /// their pages counted as skipped.
    pub duplicates: Vec<(PathBuf, PathBuf)>,
    /// Whether the run was cancelled before it finished (what was stored is kept; a re-run completes it).
    pub cancelled: bool,
    /// Wall-clock seconds.
    pub seconds: f64,
}

impl Summary {
    /// The summary as JSON for machines (`colqwen ingest --json`, the Python package): counts, rate, whether it
    /// was cancelled, duplicates and every failure with its hint.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "documents": self.documents,
            "pages_ingested": self.pages_ingested,
            "pages_skipped": self.pages_skipped,
            "pages_replaced": self.pages_replaced,
            "seconds": self.seconds,
            "pages_per_second": if self.seconds > 0.0 { self.pages_ingested as f64 / self.seconds } else { 0.0 },
            "cancelled": self.cancelled,
            "duplicates": self.duplicates.iter().map(|(f, first)| serde_json::json!({
                "path": f.display().to_string(), "same_content_as": first.display().to_string(),
            })).collect::<Vec<_>>(),
            "failures": self.failures.iter().map(Failure::to_json).collect::<Vec<_>>(),
        })
    }
}

/// Receives ingest events from the pipeline's threads.
pub trait Progress: Send + Sync {
    /// A document was opened and read: its id (from its content) and its page count.
    fn on_document_opened(&self, _path: &Path, _doc_id: &str, _page_count: usize) {}
    /// Whether the run should still ingest `path` (document `doc_id`), asked once it is opened: a job says no
    /// for a file it settled meanwhile (its document was deleted after the run had its list of files).
    fn still_wanted(&self, _path: &Path, _doc_id: &str) -> bool {
        true
    }
    /// A document was opened: `pages` to process, `skipped` already in the index.
    fn on_document_queued(&self, _path: &Path, _pages: usize, _skipped: usize) {}
    /// `path` has the same bytes as `first`, an earlier file of the run: its pages are `first`'s, stored once.
    fn on_duplicate(&self, _path: &Path, _first: &Path) {}
    /// One page was rendered and preprocessed.
    fn on_page_rendered(&self) {}
    /// `n` pages went through the model.
    fn on_pages_embedded(&self, _n: usize) {}
    /// `n` pages of `path` were written to the index.
    fn on_pages_stored(&self, _path: &Path, _n: usize) {}
    /// A document or page failed; the run goes on.
    fn on_failure(&self, _failure: &Failure) {}
    /// Every page of a document is stored and flushed.
    fn on_document_done(&self, _path: &Path) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
