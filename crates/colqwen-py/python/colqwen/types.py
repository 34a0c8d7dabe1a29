"""The values the index and the client hand back: hits, documents, stats, per-file ingest results, similarity
maps. The same types whether the index is local (:class:`colqwen.Index`) or behind a server
(:class:`colqwen.Client`)."""

from __future__ import annotations

import base64 as _b64
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional

import numpy as np

from .errors import Error, _from_kind

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image as _PILImage

__all__ = ["Hit", "Document", "Stats", "Failure", "FileResult", "AddResult", "SimilarityMaps"]


def _pil_image(data: bytes) -> "_PILImage.Image":
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("page images as PIL images need Pillow: pip install pillow (or colqwen[images])") from e
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@dataclass(frozen=True)
class SimilarityMaps:
    """Where on a page a query matches (colpali-engine's similarity maps): for every query token the dot
    product with each visual token of the page on the page's grid, min–max normalised to [0, 1] per token."""

    #: The query's tokens as text, one per map (augmentation tokens included).
    tokens: List[str]
    #: ``float32`` ``[tokens, rows, cols]``.
    maps: np.ndarray
    #: The aggregate map (per cell the max over the tokens, normalised): ``float32`` ``[rows, cols]``.
    aggregate: np.ndarray

    @property
    def shape(self) -> tuple:
        """``(rows, cols)`` of the page's grid."""
        return tuple(self.aggregate.shape)


@dataclass(frozen=True)
class Hit:
    """One ranked page. ``image()``, ``base64()`` and ``similarity()`` fetch on request."""

    #: Document id (16 hex digits of the file's SHA-256).
    doc_id: str
    #: The document's file name.
    name: str
    #: 1-based page number.
    page_num: int
    #: MaxSim score.
    score: float
    #: The page preview (JPEG) on this machine; ``None`` through a server.
    preview_path: Optional[str]
    #: ``{"path", "page_count"}`` (the PDF as ingested, its pages).
    metadata: Dict[str, Any]
    query: str = field(repr=False, default="")
    _source: Any = field(repr=False, compare=False, default=None)

    def jpeg(self) -> bytes:
        """The page preview's JPEG bytes."""
        return self._source._preview_bytes(self.doc_id, self.page_num)

    def image(self) -> "_PILImage.Image":
        """The page preview as a PIL image (needs Pillow)."""
        return _pil_image(self.jpeg())

    def base64(self) -> str:
        """The page preview as base64 JPEG (what vision-model APIs take as ``data:image/jpeg;base64,…``)."""
        return _b64.b64encode(self.jpeg()).decode("ascii")

    def similarity_maps(self, query: Optional[str] = None) -> SimilarityMaps:
        """Every token's map of ``query`` (default: the query that found this page) over this page."""
        return self._source.similarity(query or self.query, self.doc_id, self.page_num)

    def similarity(self, token: Optional[int] = None, query: Optional[str] = None) -> np.ndarray:
        """The normalised similarity map ``[rows, cols]`` of the query over this page: the aggregate, or query
        token ``token``'s (see ``similarity_maps().tokens``)."""
        maps = self.similarity_maps(query)
        return maps.aggregate if token is None else maps.maps[token]

    def similarity_image(self, token: Optional[int] = None, query: Optional[str] = None) -> "_PILImage.Image":
        """The page preview with the map drawn over it (viridis, half opacity), as a PIL image."""
        return _pil_image(self._source._similarity_png(query or self.query, self.doc_id, self.page_num, token))

    # byaldi's results are read as dicts too.
    def __getitem__(self, key: str) -> Any:
        if key == "base64":
            return self.base64()
        return getattr(self, key)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "name": self.name,
            "page_num": self.page_num,
            "score": self.score,
            "preview_path": self.preview_path,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True)
class Document:
    """A stored document."""

    doc_id: str
    #: File name.
    name: str
    #: The PDF as it was ingested (absolute path on the machine that ingested it).
    path: str
    #: Pages the file has.
    pages: int
    #: Pages of it that are stored (fewer after an interrupted ingest, or when pages failed).
    stored_pages: int
    sha256: Optional[str] = None

    @property
    def complete(self) -> bool:
        return self.stored_pages >= self.pages


@dataclass(frozen=True)
class Stats:
    """Size and identity of an index."""

    location: str
    pages: int
    documents: int
    #: ``None`` where the backend does not report it (Weaviate).
    bytes_on_disk: Optional[int]
    model_id: str
    family: str
    embedding_dim: int
    storage: str
    pool_factor: int
    raw: Dict[str, Any] = field(repr=False, default_factory=dict)

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "Stats":
        return cls(
            location=d.get("location", ""),
            pages=int(d.get("pages", 0)),
            documents=int(d.get("documents", 0)),
            bytes_on_disk=d.get("bytes_on_disk"),
            model_id=d.get("model_id", ""),
            family=d.get("family", ""),
            embedding_dim=int(d.get("embedding_dim", 0)),
            storage=str(d.get("storage", "")),
            pool_factor=int(d.get("pool_factor", 1)),
            raw=dict(d),
        )


@dataclass(frozen=True)
class Failure:
    """A document or page that could not be ingested."""

    path: str
    #: 1-based page, or ``None`` when the whole document failed.
    page_number: Optional[int]
    error: str
    hint: Optional[str]
    kind: str = "error"

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "Failure":
        return cls(d.get("path", ""), d.get("page_number"), d.get("error", ""), d.get("hint"), d.get("kind", "error"))

    def exception(self) -> Error:
        """The failure as the exception of its kind (e.g. :class:`colqwen.PdfError`)."""
        where = self.path if self.page_number is None else f"{self.path} page {self.page_number}"
        message = self.error if self.path and self.path in self.error else f"{where}: {self.error}"
        return _from_kind(self.kind, message, self.hint)


@dataclass
class FileResult:
    """What an ingest did with one file."""

    path: str
    doc_id: Optional[str] = None
    #: Pages the file has (known once it was opened).
    pages: Optional[int] = None
    #: Pages stored by this ingest.
    pages_stored: int = 0
    #: Pages already in the index (skipped).
    pages_skipped: int = 0
    pages_failed: int = 0
    failures: List[Failure] = field(default_factory=list)
    #: The file whose content this one has (stored once).
    duplicate_of: Optional[str] = None
    #: Every page stored and flushed (or the file settled).
    done: bool = False

    @property
    def ok(self) -> bool:
        """Done, and nothing failed."""
        return self.done and not self.failures

    @property
    def status(self) -> str:
        """``"stored"``, ``"partial"`` (some pages failed or the file has fewer readable pages), ``"failed"``,
        ``"duplicate"``, or ``"stopped"`` (the run ended first)."""
        if self.duplicate_of:
            return "duplicate"
        if self.failures:
            return "partial" if (self.pages_stored or self.pages_skipped) else "failed"
        return "stored" if self.done else "stopped"


@dataclass
class AddResult:
    """What an ingest did: per file, and in total. Iterating gives the files."""

    files: List[FileResult]
    pages_ingested: int = 0
    pages_skipped: int = 0
    pages_replaced: int = 0
    seconds: float = 0.0
    #: The run was stopped (Ctrl-C, ``cancel()``) before it finished: run the same call again to continue.
    cancelled: bool = False
    failures: List[Failure] = field(default_factory=list)

    def __iter__(self) -> Iterator[FileResult]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def ok(self) -> bool:
        return not self.failures and not self.cancelled

    def raise_for_failures(self) -> "AddResult":
        """Raises the first failure as its exception (e.g. :class:`colqwen.PdfError`); returns self if none."""
        if self.failures:
            raise self.failures[0].exception()
        return self
