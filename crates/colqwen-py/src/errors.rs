//! Library errors as Python exceptions: `colqwen.errors._from_kind(kind, message, hint)` picks the class of
//! the error's kind (`colqwen::Error::kind`), so the pure-Python client raises the same classes for the same
//! failures of a server.

use pyo3::prelude::*;

/// The exception of a library error: its message with its causes, and its hint.
pub(crate) fn to_py(e: &colqwen::Error) -> PyErr {
    raise(e.kind(), colqwen::error_chain(e), e.hint())
}

/// An exception of `kind` with `message` and `hint`.
pub(crate) fn raise(kind: &str, message: String, hint: Option<String>) -> PyErr {
    Python::attach(|py| {
        let made = py
            .import("colqwen.errors")
            .and_then(|m| m.getattr("_from_kind"))
            .and_then(|f| f.call1((kind, message.as_str(), hint.as_deref())));
        match made {
            Ok(exc) => PyErr::from_value(exc),
            Err(e) => e,
        }
    })
}

/// A value the caller passed that cannot be used (`colqwen.UsageError`, a `ValueError`).
pub(crate) fn usage(message: impl Into<String>, hint: impl Into<String>) -> PyErr {
    raise("usage", message.into(), Some(hint.into()))
}

/// `Result<T, colqwen::Error>` → `PyResult<T>`.
pub(crate) trait IntoPy<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for colqwen::Result<T> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(|e| to_py(&e))
    }
}
