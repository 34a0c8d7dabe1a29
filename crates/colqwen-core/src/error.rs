//! Errors of a [`PageIndex`](crate::PageIndex), whatever the backend, and the [`Hint`] every error of the
//! workspace carries so that a binary never matches another crate's error enum.

use std::path::PathBuf;

/// A boxed error from a backend's engine (an HTTP client, …), kept as the source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias of index operations.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;

/// What to tell a user about an error: one line on what to do, and whether the user can fix it (exit 1) or
/// it is a bug or an environment failure (exit 2). uv's `Hint` idea: the error carries its own advice.
pub trait Hint {
    /// What to do about it, if there is something to say.
    fn hint(&self) -> Option<String> {
        None
    }
    /// Whether the user can fix it (bad input, wrong flag, missing index); `false` for bugs.
    fn user_fixable(&self) -> bool {
        true
    }
}

/// Everything that can go wrong in an index. Every variant names the index (its folder or address).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs)] // fields are named for what they hold
pub enum IndexError {
    /// Another writer (in this or another process) holds the index.
    #[error("index in use by another colqwen process: {dir}")]
    InUse { dir: PathBuf },

    /// Opening a location that holds no index.
    #[error("no colqwen index at {dir} (missing manifest.json)")]
    NotFound { dir: PathBuf },

    /// The index was built with other settings than the ones asked for.
    #[error(
        "index at {dir} was built with {field} = {index}, but this run uses {field} = {requested}; \
         use another index directory or re-index from scratch"
    )]
    ManifestMismatch { dir: PathBuf, field: &'static str, index: String, requested: String },

    /// The on-disk format (or the format asked for) is not the one this build reads and writes.
    #[error("index at {dir} has format version {found}; this build supports version {supported}")]
    UnsupportedFormat { dir: PathBuf, found: u32, supported: u32 },

    /// The manifest exists but cannot be parsed.
    #[error("cannot parse index manifest {path}")]
    ManifestParse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A manifest that cannot describe an index (e.g. `embedding_dim` = 0, empty `model_id`).
    #[error("invalid index manifest: {reason}")]
    InvalidManifest { reason: &'static str },

    /// The index is incomplete or damaged (a shard without manifest, a manifest without shard, …).
    #[error("index at {dir} is incomplete or damaged: {reason}")]
    Damaged { dir: PathBuf, reason: &'static str },

    /// The file system is full: nothing was half-written that a re-run does not repair.
    #[error("no space left on the device of {path} while {op}")]
    NoSpace { op: &'static str, path: PathBuf },

    /// A file-system operation failed.
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Page vectors whose length is not a non-zero multiple of the embedding dimension.
    #[error("page {page_index} of document {doc_id}: {len} floats is not a non-empty multiple of dim {dim}")]
    PageVectorShape { doc_id: String, page_index: usize, len: usize, dim: usize },

    /// Query vectors whose length is not a non-zero multiple of the embedding dimension.
    #[error("query: {len} floats is not a non-empty multiple of dim {dim}")]
    QueryShape { len: usize, dim: usize },

    /// NaN or infinity in page or query vectors.
    #[error("{what} contains a NaN or infinite value")]
    NonFinite { what: String },

    /// A page record that is inconsistent in itself.
    #[error("page {page_index} of document {doc_id}: page_index must be below page_count {page_count}")]
    PageIndexOutOfRange { doc_id: String, page_index: usize, page_count: usize },

    /// A stored point lacks a payload field the backend always writes.
    #[error("index at {dir}: stored point {point_id} has no valid payload field `{field}`")]
    CorruptPayload { dir: PathBuf, point_id: String, field: &'static str },

    /// An operation of the backend's engine failed.
    #[error("{op} in index {dir}")]
    Engine {
        op: &'static str,
        dir: PathBuf,
        #[source]
        source: BoxError,
    },

    /// A flush failed in a way the backend reports only as a message.
    #[error("flushing index {dir} failed: {message}")]
    Flush { dir: PathBuf, message: String },

    /// A remote index's server does not answer (refused connection, unknown host).
    #[error("cannot reach the index server at {location} while {op}")]
    Unreachable {
        location: String,
        op: &'static str,
        #[source]
        source: BoxError,
    },

    /// A remote index's server refused our credentials (HTTP 401/403).
    #[error("the index server at {location} refused access while {op} (HTTP {status})")]
    AccessRefused { location: String, op: &'static str, status: u16 },

    /// A remote index's server did not answer in time.
    #[error("the index server at {location} did not answer within {seconds} s while {op}")]
    Timeout { location: String, op: &'static str, seconds: u64 },

    /// A remote index's server answered with an error.
    #[error("the index server at {location} failed while {op} (HTTP {status}): {message}")]
    Remote { location: String, op: &'static str, status: u16, message: String },

    /// The server has no collection of that name.
    #[error("no colqwen index at {location}: the server has no such collection")]
    NoCollection { location: String },

    /// The server answers but says it is not ready (starting, or a cluster node that cannot reach the
    /// others): what it says about its collections cannot be trusted yet.
    #[error("the index server at {location} is up but not ready ({detail})")]
    NotReady { location: String, detail: String },

    /// The address answers, but not as the index server it should be.
    #[error("{location} does not answer as a Weaviate server: {reason}")]
    NotTheServer { location: String, reason: String },

    /// A remote location that does not name an index (bad scheme, host, port or collection name).
    #[error("invalid index location {location}: {reason}")]
    InvalidLocation { location: String, reason: &'static str },
}

/// Whether a failed file-system operation is the user's to fix (a missing path, a permission, a file where a
/// folder belongs, a read-only file system) rather than a failing disk or a bug.
pub fn io_user_fixable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::NotFound
            | K::PermissionDenied
            | K::NotADirectory
            | K::IsADirectory
            | K::AlreadyExists
            | K::ReadOnlyFilesystem
            | K::InvalidFilename
    )
}

impl IndexError {
    /// `map_err` helper for file-system errors; a full disk becomes [`IndexError::NoSpace`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> IndexError {
        let path = path.into();
        move |source| {
            if source.kind() == std::io::ErrorKind::StorageFull || source.raw_os_error() == Some(28) {
                IndexError::NoSpace { op, path }
            } else {
                IndexError::Io { op, path, source }
            }
        }
    }
}

impl Hint for IndexError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            Self::InUse { .. } => {
                "another colqwen process is writing to this index: wait for it, search through its server, or pass \
                 --index DIR"
                    .into()
            }
            Self::NotFound { .. } => "run `colqwen ingest FILE.pdf` first, or pass --index DIR".into(),
            Self::ManifestMismatch { .. } => {
                "use the model the index was built with (omit --model), or pass --index for a new index".into()
            }
            Self::UnsupportedFormat { .. } => {
                "this index was written by another colqwen version: re-ingest into a new --index folder".into()
            }
            Self::NoSpace { .. } => "free space on that disk and run the same command again".into(),
            Self::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                    "pass --index a folder this user can write to".into()
                }
                std::io::ErrorKind::NotADirectory | std::io::ErrorKind::AlreadyExists => {
                    "--index names a file: pass a folder (it is created if missing)".into()
                }
                std::io::ErrorKind::NotFound => "check the --index path".into(),
                _ => "check the index folder and its disk, then run the same command again".into(),
            },
            Self::NotReady { .. } => {
                "wait until the server is ready (GET /v1/.well-known/ready answers 200); a cluster node stays \
                 unready while it cannot reach the other members"
                    .into()
            }
            Self::Unreachable { .. } => {
                "start the server (scripts/weaviate.sh start) or correct host:port in --index weaviate://HOST:PORT/Collection"
                    .into()
            }
            Self::AccessRefused { .. } => {
                "pass the server's API key with --weaviate-key or COLQWEN_WEAVIATE_API_KEY".into()
            }
            Self::Timeout { .. } => {
                "the server is overloaded or unreachable: check it, then run the same command again (ingest resumes)"
                    .into()
            }
            Self::NoCollection { .. } => {
                "ingest into it first (that creates the collection), or check the name: collection names are case-sensitive"
                    .into()
            }
            Self::NotTheServer { .. } => "check host:port in --index weaviate://HOST:PORT/Collection".into(),
            Self::Remote { .. } => {
                "the server failed: see its log, then run the same command again (ingest resumes where it stopped)".into()
            }
            Self::InvalidLocation { .. } => {
                "write the index as weaviate://HOST:PORT/Collection (Collection: a letter A-Z, then letters, digits, _)"
                    .into()
            }
            Self::Damaged { .. } | Self::CorruptPayload { .. } => {
                "the index is damaged: move it aside and ingest again into a new --index folder".into()
            }
            _ => return None,
        })
    }

    fn user_fixable(&self) -> bool {
        matches!(
            self,
            Self::InUse { .. }
                | Self::NotFound { .. }
                | Self::ManifestMismatch { .. }
                | Self::UnsupportedFormat { .. }
                | Self::NoSpace { .. }
                | Self::QueryShape { .. }
                | Self::NonFinite { .. }
                | Self::Unreachable { .. }
                | Self::AccessRefused { .. }
                | Self::Timeout { .. }
                | Self::InvalidLocation { .. }
                | Self::NoCollection { .. }
                | Self::NotTheServer { .. }
                | Self::Remote { .. }
                | Self::NotReady { .. }
        ) || matches!(self, Self::Io { source, .. } if io_user_fixable(source))
    }
}
