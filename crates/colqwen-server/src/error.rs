//! Errors of the server: why it cannot start, and how a request's error becomes a JSON answer.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why the server cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding beyond loopback without an API key.
    #[error("refusing to serve on {0} without an API key: pass --api-key (or COLQWEN_API_KEY), or bind 127.0.0.1")]
    KeyRequired(String),
    /// An API key too short to be safe.
    #[error(
        "the API key has {chars} characters; it needs at least {min} (e.g. `openssl rand -hex 16` gives 32)",
        min = crate::MIN_API_KEY_CHARS
    )]
    KeyTooShort {
        /// Characters given.
        chars: usize,
    },
    /// Another server runs on this index.
    #[error(
        "the index {index} is already served by {url}: use that server (CLI commands on this index go through it), or stop it first"
    )]
    AlreadyServed {
        /// The index folder.
        index: String,
        /// The running server.
        url: String,
    },
    /// Not an IP address.
    #[error("--host {0:?} is not an IP address (or localhost)")]
    BadHost(String),
    /// The address is taken or not ours.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The async runtime or the listener failed.
    #[error("the server failed")]
    Runtime(#[source] std::io::Error),
    /// The service failed to start its jobs.
    #[error(transparent)]
    Service(#[from] colqwen::Error),
}

/// An error answer: `{"error": {"code": …, "message": …, "hint": …}}` with a 4xx/5xx status. Never a stack
/// trace or a panic message.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
    /// The library's kind of error (`colqwen::Error::kind`), when the error is one of the library's: finer than
    /// `code` (a client maps it to its own error class, as the Python package does).
    pub(crate) kind: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), hint: None, kind: None }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A limit of the server was reached (413): the message names it.
    pub(crate) fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    /// The request does not fit the state of what it names (409).
    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The same error, its message starting with `prefix` (e.g. which input of a request).
    pub(crate) fn prefixed(mut self, prefix: &str) -> Self {
        self.message = format!("{prefix}{}", self.message);
        self
    }
}

impl From<colqwen::JobConflict> for ApiError {
    fn from(e: colqwen::JobConflict) -> Self {
        Self::conflict(e.to_string())
    }
}

impl From<colqwen::Error> for ApiError {
    fn from(e: colqwen::Error) -> Self {
        use colqwen::Error as E;
        let (status, code) = match &e {
            E::NoSuchDocument(_) | E::NoSuchPage { .. } | E::NoSuchJob(_) => (StatusCode::NOT_FOUND, "not_found"),
            E::InvalidId(_) | E::EmptyQuery => (StatusCode::BAD_REQUEST, "bad_request"),
            E::Pdf(_) => (StatusCode::UNPROCESSABLE_ENTITY, "bad_pdf"),
            E::NoMap { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "no_map"),
            E::Index(colqwen::core::IndexError::QueryShape { .. } | colqwen::core::IndexError::NonFinite { .. }) => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            E::Index(colqwen::core::IndexError::NoSpace { .. }) => (StatusCode::INSUFFICIENT_STORAGE, "no_space"),
            E::WorkerStopped => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self { status, code, message: colqwen::error_chain(&e), hint: e.hint(), kind: Some(e.kind()) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, "{}", self.message);
        }
        let mut body = serde_json::json!({
            "error": { "code": self.code, "message": self.message, "hint": self.hint }
        });
        if let Some(kind) = self.kind {
            body["error"]["kind"] = kind.into();
        }
        (self.status, Json(body)).into_response()
    }
}
