//! Errors of the store. One enum; every variant names the index directory or file it is about.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another `Store` (in this or another process) holds the index lock.
    #[error("index in use by another colqwen process: {dir}")]
    InUse { dir: PathBuf },

    /// `Store::open` on a directory that holds no index.
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

    /// `manifest.json` exists but cannot be parsed.
    #[error("cannot parse index manifest {path}")]
    ManifestParse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A manifest that cannot describe an index (e.g. `embedding_dim` = 0, empty `model_id`).
    #[error("invalid index manifest: {reason}")]
    InvalidManifest { reason: &'static str },

    /// The directory holds a shard but no manifest, or a manifest but a broken shard.
    #[error("index at {dir} is incomplete or damaged: {reason}")]
    Damaged { dir: PathBuf, reason: &'static str },

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

    /// A stored point lacks a payload field this crate always writes.
    #[error("index at {dir}: stored point {point_id} has no valid payload field `{field}`")]
    CorruptPayload { dir: PathBuf, point_id: String, field: &'static str },

    /// An operation of the qdrant-edge engine failed.
    #[error("{op} in index {dir}")]
    Engine {
        op: &'static str,
        dir: PathBuf,
        #[source]
        source: qdrant_edge::OperationError,
    },

    /// qdrant-edge 0.7 reports flush failures by panicking; the panic is caught and reported here.
    #[error("flushing index {dir} failed: {message}")]
    Flush { dir: PathBuf, message: String },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }

    /// Maps a qdrant-edge error; the WAL flock failure (`WouldBlock`) becomes [`Error::InUse`].
    pub(crate) fn engine(op: &'static str, dir: &std::path::Path) -> impl FnOnce(qdrant_edge::OperationError) -> Error {
        let dir = dir.to_path_buf();
        move |source| {
            if source.to_string().contains("WouldBlock") {
                Error::InUse { dir }
            } else {
                Error::Engine { op, dir, source }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn wal_flock_error_becomes_in_use() {
        // The text qdrant-edge 0.7 produces when the shard's wal/ directory is flocked elsewhere.
        let raw = qdrant_edge::OperationError::service_error_light(
            "failed to open WAL /x/shard/wal: Can't init WAL: Kind(WouldBlock)",
        );
        let err = Error::engine("opening shard", Path::new("/x"))(raw);
        assert!(matches!(err, Error::InUse { .. }), "{err:?}");
        assert_eq!(err.to_string(), "index in use by another colqwen process: /x");
        let other = qdrant_edge::OperationError::service_error_light("disk full");
        let err = Error::engine("upserting pages", Path::new("/x"))(other);
        assert_eq!(err.to_string(), "upserting pages in index /x");
        assert!(std::error::Error::source(&err).unwrap().to_string().contains("disk full"));
    }
}
