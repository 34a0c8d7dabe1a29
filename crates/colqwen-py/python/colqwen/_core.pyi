"""Type stubs of the extension module (the Rust binding). Use the package's classes, not these."""

from os import PathLike
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import numpy.typing as npt

__version__: str
CUDA: bool
DEFAULT_MODEL: str

Vectors = npt.NDArray[np.float32]

class IngestRun:
    @property
    def running(self) -> bool: ...
    @property
    def files(self) -> int: ...
    def next_event(self, timeout: Optional[float] = None) -> Optional[Tuple[Any, ...]]: ...
    def cancel(self) -> None: ...

class Index:
    @staticmethod
    def open(
        location: str,
        *,
        model: Optional[str] = None,
        device: str = "auto",
        dtype: str = "auto",
        create: bool = True,
        load_model: bool = True,
        storage: str = "f16",
        pool_factor: int = 1,
        revision: Optional[str] = None,
        base_model: Optional[str] = None,
        offline: bool = False,
        hf_token: Optional[str] = None,
        weaviate_key: Optional[str] = None,
        max_visual_tokens: Optional[int] = None,
        search_device: str = "auto",
        replicas: int = 1,
        data_dir: Optional[PathLike[str]] = None,
    ) -> "Index": ...
    @property
    def location(self) -> str: ...
    @property
    def index_dir(self) -> str: ...
    @property
    def has_model(self) -> bool: ...
    @property
    def device(self) -> Optional[str]: ...
    def manifest(self) -> Dict[str, Any]: ...
    def ingest(
        self,
        paths: List[str],
        *,
        force: bool = False,
        password: Optional[str] = None,
        batch_size: Optional[int] = None,
        render_threads: Optional[int] = None,
        page_timeout: float = 60.0,
    ) -> IngestRun: ...
    def search(
        self, query: str, *, k: int = 10, doc: Optional[str] = None, mode: str = "auto", prefetch: Optional[int] = None
    ) -> List[Tuple[float, str, str, int, int, Optional[str]]]: ...
    def documents(self) -> List[Tuple[str, str, str, int, int]]: ...
    def resolve_document(self, name: str) -> str: ...
    def delete(self, doc_id: str) -> int: ...
    def stats(self) -> Dict[str, Any]: ...
    def preview(self, doc_id: str, page_number: int) -> bytes: ...
    def similarity(self, doc_id: str, page_number: int, query: str) -> Dict[str, Any]: ...
    def similarity_png(self, doc_id: str, page_number: int, query: str, token: Optional[int] = None) -> bytes: ...
    def embed_queries(self, texts: List[str]) -> List[Vectors]: ...

class Encoder:
    @staticmethod
    def load(
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        revision: Optional[str] = None,
        base_model: Optional[str] = None,
        offline: bool = False,
        hf_token: Optional[str] = None,
        max_visual_tokens: Optional[int] = None,
    ) -> "Encoder": ...
    @property
    def model_id(self) -> str: ...
    @property
    def family(self) -> str: ...
    @property
    def dim(self) -> int: ...
    @property
    def device(self) -> str: ...
    @property
    def default_batch_size(self) -> int: ...
    def encode_queries(self, texts: List[str], batch_size: Optional[int] = None) -> List[Vectors]: ...
    def encode_images(self, images: List[Tuple[bytes, int, int]], batch_size: Optional[int] = None) -> List[Vectors]: ...
    def query_tokens(self, query: str) -> List[str]: ...

def maxsim(queries: List[Vectors], documents: List[Vectors]) -> Vectors: ...
def discover(paths: List[str]) -> Tuple[List[str], List[Dict[str, Any]]]: ...
