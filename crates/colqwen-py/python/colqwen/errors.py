"""The exceptions of colqwen: one class per kind of error of the library, all subclasses of :class:`Error`.

Every exception carries the library's advice in ``.hint`` (also shown on the exception's second line) and
its kind in ``.kind``. The local index and the client for a running server raise the same classes for the
same failures.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

__all__ = [
    "Error",
    "ModelError",
    "ModelMismatchError",
    "PdfError",
    "StoreError",
    "IndexInUseError",
    "NoIndexError",
    "NoSpaceError",
    "IndexServerError",
    "FileError",
    "DeviceError",
    "NotFoundError",
    "DocumentNotFoundError",
    "PageNotFoundError",
    "JobNotFoundError",
    "InvalidIdError",
    "EmptyQueryError",
    "UsageError",
    "CancelledError",
    "NoMapError",
    "ServerError",
    "ServerUnreachableError",
    "AuthenticationError",
    "InternalError",
]


class Error(Exception):
    """Any error of colqwen. ``message`` says what went wrong, ``hint`` what to do about it."""

    kind = "error"

    def __init__(self, message: str, hint: Optional[str] = None, *, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        #: The HTTP status, for an error a server answered.
        self.status = status

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"


class ModelError(Error):
    """Loading or running the model failed."""

    kind = "model"


class ModelMismatchError(Error):
    """The index was built with another model than the one asked for."""

    kind = "model_mismatch"


class PdfError(Error):
    """A PDF could not be read or rendered."""

    kind = "pdf"


class StoreError(Error):
    """The index could not be opened, read or written."""

    kind = "index"


class IndexInUseError(StoreError):
    """Another process owns the index."""

    kind = "index_in_use"


class NoIndexError(StoreError):
    """There is no index there yet."""

    kind = "no_index"


class NoSpaceError(StoreError):
    """The disk is full (the index is intact: free space and run the same call again)."""

    kind = "no_space"


class IndexServerError(StoreError):
    """The index's server (Weaviate) failed, refused access, or cannot be reached."""

    kind = "index_server"


class FileError(Error):
    """A file could not be read or written."""

    kind = "io"


class DeviceError(Error):
    """The device asked for is not built in or not present."""

    kind = "device"


class NotFoundError(Error, LookupError):
    """Something that is not there (a document, a page, a job)."""

    kind = "not_found"


class DocumentNotFoundError(NotFoundError):
    """No document of the index matches."""

    kind = "no_such_document"


class PageNotFoundError(NotFoundError):
    """The document has no such stored page."""

    kind = "no_such_page"


class JobNotFoundError(NotFoundError):
    """The server knows no such job."""

    kind = "no_such_job"


class InvalidIdError(Error, ValueError):
    """A name that cannot be a document id."""

    kind = "invalid_id"


class EmptyQueryError(Error, ValueError):
    """The query is empty."""

    kind = "empty_query"


class UsageError(Error, ValueError):
    """An argument that cannot be used."""

    kind = "usage"


class CancelledError(Error):
    """The ingest was cancelled; what was stored is kept."""

    kind = "cancelled"


class NoMapError(Error):
    """No similarity map can be drawn for this page."""

    kind = "no_map"


class ServerError(Error):
    """A colqwen server answered with an error of its own."""

    kind = "server"


class ServerUnreachableError(ServerError):
    """No colqwen server answers at that address."""

    kind = "unreachable"


class AuthenticationError(ServerError):
    """The server refused the API key (or needs one)."""

    kind = "unauthorized"


class InternalError(Error):
    """A bug: please report it."""

    kind = "internal"


_BY_KIND: Dict[str, Type[Error]] = {
    cls.kind: cls for cls in list(globals().values()) if isinstance(cls, type) and issubclass(cls, Error)
}


def _from_kind(kind: str, message: str, hint: Optional[str] = None, status: Optional[int] = None) -> Error:
    """The exception of ``kind`` (the library's ``Error::kind``, or a server's error code)."""
    return _BY_KIND.get(kind, Error)(message, hint, status=status)
