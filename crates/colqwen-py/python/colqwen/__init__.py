"""colqwen for Python: PDF pages into a searchable visual index with ColQwen late-interaction embeddings.

- :class:`Index` — a persistent index (a folder or a Weaviate collection) with its model, in this process:
  ``add`` PDFs (progress bar, per-file results), ``search`` (typed hits with page images and similarity
  maps on request), ``documents``, ``delete``, ``stats``.
- :class:`Encoder` — a model loaded once: ``encode_query``, ``encode_document``, ``similarity`` (MaxSim), named
  as sentence-transformers 6's ``MultiVectorEncoder``.
- :class:`Client` — the same index API over a running ``colqwen serve``, on the standard library.
- :class:`RAGMultiModalModel` — byaldi's shape over an index.

Errors are subclasses of :class:`Error` carrying ``.hint``. ``import colqwen`` needs only numpy; Pillow is
needed for page images as PIL images, tqdm (optional) draws the progress bars.
"""

from . import _core
from .client import Client
from .encoder import Encoder, maxsim
from .errors import *  # noqa: F401,F403
from .errors import __all__ as _errors_all
from .index import Index
from .rag import RAGMultiModalModel, Result
from .types import AddResult, Document, Failure, FileResult, Hit, SimilarityMaps, Stats

__version__: str = _core.__version__
#: Whether this build runs models on CUDA GPUs (the CUDA wheel).
CUDA: bool = _core.CUDA
#: The model an index gets when none is named.
DEFAULT_MODEL: str = _core.DEFAULT_MODEL

__all__ = [
    "Index",
    "Encoder",
    "Client",
    "RAGMultiModalModel",
    "Result",
    "Hit",
    "Document",
    "Stats",
    "Failure",
    "FileResult",
    "AddResult",
    "SimilarityMaps",
    "maxsim",
    "CUDA",
    "DEFAULT_MODEL",
    *_errors_all,
]
