//! Errors of the store: the backend-neutral [`colqwen_core::IndexError`], and how qdrant-edge's errors map
//! onto it.

pub use colqwen_core::{IndexError as Error, Result};

/// Maps a qdrant-edge error; the WAL flock failure (`WouldBlock`) becomes [`Error::InUse`].
pub(crate) fn engine(op: &'static str, dir: &std::path::Path) -> impl FnOnce(qdrant_edge::OperationError) -> Error {
    let dir = dir.to_path_buf();
    move |source| {
        if source.to_string().contains("WouldBlock") {
            Error::InUse { dir }
        } else if source.to_string().contains("No space left on device") {
            Error::NoSpace { op, path: dir }
        } else {
            Error::Engine { op, dir, source: Box::new(source) }
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
        let err = engine("opening shard", Path::new("/x"))(raw);
        assert!(matches!(err, Error::InUse { .. }), "{err:?}");
        assert_eq!(err.to_string(), "index in use by another colqwen process: /x");
        let other = qdrant_edge::OperationError::service_error_light("disk full");
        let err = engine("upserting pages", Path::new("/x"))(other);
        assert_eq!(err.to_string(), "upserting pages in index /x");
        assert!(std::error::Error::source(&err).unwrap().to_string().contains("disk full"));
    }
}
