//! Errors of the library: the leaf crates' errors, each kept as the source, plus what only the library knows.
//! Every error carries its own hint ([`Error::hint`]), so a binary prints it without matching enums.

use std::path::PathBuf;

use colqwen_core::{BoxError, Hint};

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in an ingest, a search or the service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Loading or running the model failed.
    #[error(transparent)]
    Model(#[from] colqwen_model::Error),
    /// The embedder failed (any model family).
    #[error("the model failed: {0}")]
    Embed(#[source] BoxError),
    /// A PDF could not be read or rendered.
    #[error(transparent)]
    Pdf(#[from] colqwen_pdf::Error),
    /// The index could not be opened, read or written.
    #[error(transparent)]
    Index(#[from] colqwen_core::IndexError),
    /// A file could not be read or written.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done ("read", "write").
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The PDF parser panicked while opening the file (a parser bug hit by a damaged file); the run goes on.
    #[error("{0}: the PDF parser failed on this file (internal panic); other files are not affected")]
    OpenPanicked(PathBuf),
    /// A path that is not a regular file (a FIFO, socket or device would block or make no sense).
    #[error("{0} is not a regular file")]
    NotRegularFile(PathBuf),
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
    /// A page that is not in the index.
    #[error("document {doc_id} has no stored page {page_number}")]
    NoSuchPage {
        /// Document id.
        doc_id: String,
        /// 1-based.
        page_number: usize,
    },
    /// Token pooling asked of a Weaviate collection.
    #[error("token pooling (--pool-factor) is a setting of the embedded index; a Weaviate collection stores every row")]
    PoolingUnsupported,
    /// A name that cannot be a document id (ids are hex digits).
    #[error("{0:?} is not a document id (1 to 64 lowercase hex digits)")]
    InvalidId(String),
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
    /// The operation needs the model, and this service was opened without one.
    #[error("this operation needs the model; the index was opened without loading it")]
    NoModel,
    /// No device to load the model on (an empty device list).
    #[error("no device to run the model on")]
    NoDevice,
    /// The index does not exist yet (nothing was ingested).
    #[error("no colqwen index at {0} yet")]
    NoIndex(PathBuf),
    /// The ingest was cancelled (shutdown or user request); what was stored is kept.
    #[error("cancelled")]
    Cancelled,
    /// The embedding worker is gone (the service is shutting down).
    #[error("the embedding worker stopped")]
    WorkerStopped,
    /// A job id that the service does not know.
    #[error("no job {0}")]
    NoSuchJob(String),
    /// Drawing a similarity map over a preview failed (an unreadable preview, a map of the wrong size).
    #[error("cannot draw the similarity map: {0}")]
    Overlay(String),
    /// A similarity map cannot be drawn for this page (its vectors do not fit its grid, its PDF is gone).
    #[error("no similarity map for page {page_number} of document {doc_id}: {reason}")]
    NoMap {
        /// Document id.
        doc_id: String,
        /// 1-based.
        page_number: usize,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// What to do about it: the first hint found along the error and its sources.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Model(e) => e.hint(),
            Self::Pdf(e) => e.hint(),
            Self::Index(e) => e.hint(),
            Self::DeviceUnavailable { requested, .. } if requested.starts_with("cuda") => {
                Some("rebuild with `--features cuda` (scripts/cuda-build.sh), or pass --device cpu".into())
            }
            Self::DeviceUnavailable { .. } => Some("rebuild with `--features metal`, or pass --device cpu".into()),
            Self::NoSuchDocument(_) | Self::NoSuchPage { .. } | Self::InvalidId(_) => {
                Some("`colqwen list` (or GET /v1/documents) shows the documents and their ids".into())
            }
            Self::ModelMismatch { .. } => {
                Some("omit --model to use the index's model, or pass --index for another index".into())
            }
            Self::EmbedBatch { .. } => Some("try a smaller --batch-size".into()),
            Self::NoIndex(_) => Some("run `colqwen ingest FILE.pdf` first, or pass --index DIR".into()),
            Self::NoMap { .. } => {
                Some("re-ingest the document (its source PDF must still exist where it was ingested from)".into())
            }
            Self::Io { op: "expand", .. } => Some(
                "no file matches the pattern: check it, and quote it ('docs/*.pdf') so that colqwen expands it".into(),
            ),
            Self::Io { source, .. } => Some(io_hint(source).into()),
            Self::NotRegularFile(_) => {
                Some("give a regular PDF file: a FIFO, socket or device cannot be read as a document".into())
            }
            Self::OpenPanicked(_) => Some("re-save the PDF with another tool (e.g. `qpdf in.pdf out.pdf`)".into()),
            Self::EmptyQuery => Some("give a question, e.g. `colqwen search \"how do I reset the device\"`".into()),
            Self::PoolingUnsupported => Some("leave out --pool-factor for a Weaviate collection".into()),
            Self::Cancelled => Some("run the same command again to continue: stored pages are skipped".into()),
            Self::NoModel | Self::NoDevice => Some("pass --device cpu, or a --model that loads".into()),
            _ => None,
        }
    }

    /// A stable snake_case name of the kind of error, for bindings that map each kind to a class of their own
    /// (the Python package's exceptions): finer than the variants where an index error says more (an index in
    /// use, a missing index, a full disk, a failing index server), coarser where variants mean the same to a
    /// caller (every model failure is `model`).
    pub fn kind(&self) -> &'static str {
        use colqwen_core::IndexError as I;
        match self {
            Self::Model(_) | Self::Embed(_) | Self::EmbedBatch { .. } | Self::NoModel | Self::WorkerStopped => "model",
            Self::ModelMismatch { .. } | Self::Index(I::ManifestMismatch { .. }) => "model_mismatch",
            Self::Pdf(_) | Self::OpenPanicked(_) | Self::NotRegularFile(_) => "pdf",
            Self::Index(I::InUse { .. }) => "index_in_use",
            Self::NoIndex(_) | Self::Index(I::NotFound { .. } | I::NoCollection { .. }) => "no_index",
            Self::Index(I::NoSpace { .. }) => "no_space",
            Self::Index(
                I::Unreachable { .. }
                | I::AccessRefused { .. }
                | I::Timeout { .. }
                | I::Remote { .. }
                | I::NotReady { .. }
                | I::NotTheServer { .. },
            ) => "index_server",
            Self::Index(I::InvalidLocation { .. }) | Self::PoolingUnsupported => "usage",
            Self::Index(_) => "index",
            Self::Io { .. } => "io",
            Self::DeviceUnavailable { .. } | Self::NoDevice => "device",
            Self::NoSuchDocument(_) => "no_such_document",
            Self::NoSuchPage { .. } => "no_such_page",
            Self::InvalidId(_) => "invalid_id",
            Self::EmptyQuery => "empty_query",
            Self::Cancelled => "cancelled",
            Self::NoSuchJob(_) => "no_such_job",
            Self::NoMap { .. } | Self::Overlay(_) => "no_map",
        }
    }

    /// Whether the user can fix it (exit 1) rather than a bug or environment failure (exit 2).
    pub fn user_fixable(&self) -> bool {
        match self {
            Self::Model(e) => e.user_fixable(),
            Self::Pdf(_) => true,
            Self::Index(e) => e.user_fixable(),
            Self::Io { source, .. } => colqwen_core::io_user_fixable(source),
            Self::Embed(_) | Self::WorkerStopped | Self::Overlay(_) => false,
            _ => true,
        }
    }
}

/// What to do about a file that cannot be read or written, by the kind of failure.
fn io_hint(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound => "check the path: it does not exist (or is a link to something that does not exist)",
        K::PermissionDenied => "give this user access to it (read for PDFs and folders, write for the index)",
        K::NotADirectory | K::IsADirectory => "a folder was expected where a file is, or the reverse: check the path",
        _ => "check the file and its disk, then run the same command again",
    }
}
