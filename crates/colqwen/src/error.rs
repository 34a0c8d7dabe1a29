//! Errors of the library: the leaf crates' errors, each kept as the source, plus what only the library knows.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in an ingest or a search.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Loading or running the model failed.
    #[error(transparent)]
    Model(#[from] colqwen_model::Error),
    /// A PDF could not be read or rendered.
    #[error(transparent)]
    Pdf(#[from] colqwen_pdf::Error),
    /// The index could not be opened, read or written.
    #[error(transparent)]
    Store(#[from] colqwen_store::Error),
    /// A file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The device asked for is not compiled into this build or not present.
    #[error("device {requested} is not available: {reason}")]
    DeviceUnavailable {
        /// What the user asked for.
        requested: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A document filter names no document of the index.
    #[error("no document in the index matches {0:?}")]
    NoSuchDocument(String),
    /// The model named on the command line is not the one the index was built with.
    #[error("the index was built with model {index_model}, not {requested}")]
    ModelMismatch {
        /// The index's model.
        index_model: String,
        /// The model asked for.
        requested: String,
    },
    /// The model failed on a batch of pages (e.g. out of device memory); those pages are reported as failed.
    #[error("embedding a batch of {pages} pages failed: {reason}")]
    EmbedBatch {
        /// Pages in the batch.
        pages: usize,
        /// The model's error.
        reason: String,
    },
    /// The query is empty.
    #[error("the query is empty")]
    EmptyQuery,
}
