//! Progress callbacks: the library reports, the CLI draws (uv's `Reporter` idea, STYLE §6.6).

use std::path::Path;

use crate::ingest::Failure;

/// Receives ingest events from the pipeline's threads.
pub trait Progress: Send + Sync {
    /// A document was opened: `pages` to process, `skipped` already in the index.
    fn on_document_queued(&self, _path: &Path, _pages: usize, _skipped: usize) {}
    /// One page was rendered and preprocessed.
    fn on_page_rendered(&self) {}
    /// `n` pages went through the model.
    fn on_pages_embedded(&self, _n: usize) {}
    /// `n` pages were written to the index.
    fn on_pages_stored(&self, _n: usize) {}
    /// A document or page failed; the run goes on.
    fn on_failure(&self, _failure: &Failure) {}
    /// Every page of a document is stored and flushed.
    fn on_document_done(&self, _path: &Path) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
