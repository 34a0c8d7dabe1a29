"""byaldi's shape over colqwen: ``RAGMultiModalModel.from_pretrained`` / ``from_index`` / ``index`` /
``add_to_index`` / ``search``, results with ``doc_id``, ``page_num``, ``score``, ``metadata``, ``base64``, so
that byaldi code moves with a changed import::

    from colqwen import RAGMultiModalModel          # was: from byaldi import RAGMultiModalModel
    RAG = RAGMultiModalModel.from_pretrained("vidore/colqwen2.5-v0.2")
    RAG.index(input_path="docs/", index_name="manuals", store_collection_with_index=True)
    results = RAG.search("reset the firmware", k=3)

An index is a colqwen index folder ``<index_root>/<index_name>``. byaldi's integer document ids and the
metadata given to ``index``/``add_to_index`` are kept beside it in ``byaldi.json`` (colqwen's own ids are
content hashes). Differences: inputs are PDF files (byaldi also takes images); the pages are not stored as
base64 in the index — ``base64`` is the page preview, read on request.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from .errors import UsageError
from .index import Index
from .types import Hit

__all__ = ["RAGMultiModalModel", "Result"]

_STATE = "byaldi.json"


@dataclass
class Result:
    """One page found, as byaldi returns it (also readable as ``result["doc_id"]``)."""

    doc_id: int
    page_num: int
    score: float
    metadata: Dict[str, Any] = field(default_factory=dict)
    base64: Optional[str] = None
    #: The colqwen hit (image(), similarity(), …).
    hit: Optional[Hit] = field(default=None, repr=False)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def to_dict(self) -> Dict[str, Any]:
        return {"doc_id": self.doc_id, "page_num": self.page_num, "score": self.score,
                "metadata": self.metadata, "base64": self.base64}


class RAGMultiModalModel:
    """byaldi's ``RAGMultiModalModel`` over a colqwen index."""

    def __init__(self, model: Optional[str], index_root: str, device: str, verbose: int, **open_args: Any) -> None:
        self.model_name = model
        self.index_root = Path(index_root)
        self.device = "auto" if device in (None, "") else device
        self.verbose = verbose
        self._open_args = open_args
        self._index: Optional[Index] = None
        self._folder: Optional[Path] = None
        self._state: Dict[str, Any] = {"docs": {}, "store_collection_with_index": False}

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, Path], index_root: str = ".byaldi",
                        device: str = "auto", verbose: int = 1, **open_args: Any) -> "RAGMultiModalModel":
        """A model to build indexes with (loaded when an index is built or opened)."""
        return cls(os.fspath(pretrained_model_name_or_path), index_root, device, verbose, **open_args)

    @classmethod
    def from_index(cls, index_path: Union[str, Path], index_root: str = ".byaldi", device: str = "auto",
                   verbose: int = 1, **open_args: Any) -> "RAGMultiModalModel":
        """An existing index (``<index_root>/<index_path>``, or ``index_path`` itself when it is a folder
        holding an index) with the model it was built with."""
        rag = cls(None, index_root, device, verbose, **open_args)
        folder = Path(index_root) / index_path
        if not (folder / "manifest.json").exists() and (Path(index_path) / "manifest.json").exists():
            folder = Path(index_path)
        rag._open(folder, create=False)
        return rag

    # -- state ------------------------------------------------------------------------------------------------

    def _open(self, folder: Path, create: bool) -> None:
        self._index = Index.open(folder, self.model_name, device=self.device, create=create, **self._open_args)
        self._folder = folder
        try:
            with open(folder / _STATE, encoding="utf-8") as f:
                self._state = json.load(f)
        except FileNotFoundError:
            self._state = {"docs": {}, "store_collection_with_index": False}

    def _save(self) -> None:
        assert self._folder is not None
        tmp = self._folder / (_STATE + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self._state, f, indent=1)
        os.replace(tmp, self._folder / _STATE)

    @property
    def _idx(self) -> Index:
        if self._index is None:
            raise UsageError("no index is open", "call index(...) or RAGMultiModalModel.from_index(...) first")
        return self._index

    def _add_file(self, path: Path, doc_id: Optional[int], metadata: Optional[Dict[str, Any]]) -> int:
        docs = self._state["docs"]
        if doc_id is None:
            doc_id = max((int(k) for k in docs), default=-1) + 1
        if str(doc_id) in docs:
            raise UsageError(f"doc_id {doc_id} is already in the index", "pass another doc_id, or leave it out")
        result = self._idx.add([path], progress=self.verbose > 0)
        if result.failures and not any(f.pages_stored or f.pages_skipped for f in result.files):
            raise result.failures[0].exception()
        colqwen_id = next((f.doc_id for f in result.files if f.doc_id), None)
        if colqwen_id is None:
            colqwen_id = self._idx._c.resolve_document(os.fspath(path))
        docs[str(doc_id)] = {"doc_id": colqwen_id, "path": os.fspath(path), "metadata": dict(metadata or {})}
        self._save()
        return doc_id

    # -- byaldi's API -----------------------------------------------------------------------------------------

    def index(self, input_path: Union[str, Path], index_name: Optional[str] = None,
              doc_ids: Optional[List[int]] = None, store_collection_with_index: bool = False,
              overwrite: bool = False, metadata: Optional[Union[Dict[Any, Dict[str, Any]], List[Dict[str, Any]]]] = None,
              max_image_width: Optional[int] = None, max_image_height: Optional[int] = None, **kwargs: Any) -> None:
        """Builds the index ``<index_root>/<index_name>`` from a PDF file or a folder of them (in name order,
        document ids 0, 1, … unless ``doc_ids`` gives them)."""
        if not index_name:
            raise UsageError("index() needs an index_name", "pass index_name=\"my_index\"")
        folder = self.index_root / index_name
        if self._index is not None and self._folder == folder:
            self._index.close()  # lets go of its lock before the folder is rebuilt
            self._index = None
        if folder.exists() and any(folder.iterdir()):
            if not overwrite:
                raise UsageError(f"an index named {index_name} already exists in {self.index_root}",
                                 "pass overwrite=True to rebuild it, or use add_to_index")
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._open(folder, create=True)
        self._state["store_collection_with_index"] = bool(store_collection_with_index)
        source = Path(input_path)
        files = sorted(p for p in source.iterdir() if p.suffix.lower() == ".pdf") if source.is_dir() else [source]
        if doc_ids is not None and len(doc_ids) != len(files):
            raise UsageError(f"{len(doc_ids)} doc_ids for {len(files)} files", "give one doc_id per file")
        for i, path in enumerate(files):
            doc_id = doc_ids[i] if doc_ids is not None else None
            meta = None
            if isinstance(metadata, list):
                meta = metadata[i] if i < len(metadata) else None
            elif isinstance(metadata, dict):
                meta = metadata.get(doc_id if doc_id is not None else i)
            self._add_file(path, doc_id, meta)

    def add_to_index(self, input_item: Union[str, Path], store_collection_with_index: bool = False,
                     doc_id: Optional[int] = None, metadata: Optional[Dict[str, Any]] = None) -> None:
        """Adds a PDF file (or a folder of them) to the open index."""
        if not isinstance(input_item, (str, os.PathLike)):
            raise UsageError("colqwen indexes PDF files, not images", "save the page as a PDF, or pass the PDF's path")
        path = Path(input_item)
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".pdf") if path.is_dir() else [path]
        for i, f in enumerate(files):
            self._add_file(f, None if doc_id is None else doc_id + i, metadata)

    def search(self, query: Union[str, List[str]], k: int = 10, filter_metadata: Optional[Dict[str, Any]] = None,
               return_base64_results: Optional[bool] = None) -> Union[List[Result], List[List[Result]]]:
        """The ``k`` best pages for a query (a list of lists for a list of queries). ``filter_metadata``: only
        documents whose metadata has every key with that value."""
        if isinstance(query, list):
            return [self._search_one(q, k, filter_metadata, return_base64_results) for q in query]
        return self._search_one(query, k, filter_metadata, return_base64_results)

    def _search_one(self, query: str, k: int, filter_metadata: Optional[Dict[str, Any]],
                    return_base64_results: Optional[bool]) -> List[Result]:
        docs = self._state["docs"]
        by_colqwen = {v["doc_id"]: (int(key), v) for key, v in docs.items()}
        if filter_metadata:
            wanted = [v["doc_id"] for v in docs.values()
                      if all(v.get("metadata", {}).get(m) == val for m, val in filter_metadata.items())]
            hits: List[Hit] = []
            for d in wanted:  # each document's best pages, then the best of all (MaxSim scores compare)
                hits.extend(self._idx.search(query, k=k, doc=d))
            hits = sorted(hits, key=lambda h: -h.score)[:k]
        else:
            hits = self._idx.search(query, k=k)
        with_images = self._state.get("store_collection_with_index") if return_base64_results is None else return_base64_results
        out = []
        for h in hits:
            doc_id, entry = by_colqwen.get(h.doc_id, (-1, {"metadata": {}}))
            out.append(Result(doc_id=doc_id, page_num=h.page_num, score=h.score,
                              metadata=dict(entry.get("metadata", {})),
                              base64=h.base64() if with_images else None, hit=h))
        return out

    def get_doc_ids_to_file_names(self) -> Dict[int, str]:
        """byaldi's document ids and the files they were built from."""
        return {int(k): v["path"] for k, v in self._state["docs"].items()}
