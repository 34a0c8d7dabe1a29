"""The index API: :class:`Index` over the library's service (a folder, or a Weaviate collection), in-process.

    import colqwen
    index = colqwen.Index.open("~/manuals-index", model="vidore/colqwen2.5-v0.2")
    index.add(["manuals/"])                        # a progress bar; per-file results
    for hit in index.search("how do I reset the firmware", k=5):
        print(hit.name, hit.page_num, hit.score)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from . import _core
from ._progress import Progress, ProgressArg
from .errors import IndexInUseError, UsageError
from .types import AddResult, Document, Failure, FileResult, Hit, SimilarityMaps, Stats

__all__ = ["Index"]

PathLike = Union[str, "os.PathLike[str]"]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _paths(paths: Union[PathLike, Sequence[PathLike]]) -> List[str]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    return [os.fspath(p) for p in paths]


def _server_of(folder: str) -> Optional[str]:
    """The address of the ``colqwen serve`` that owns the index folder (``<index>/server.json``), if any."""
    try:
        with open(os.path.join(folder, "server.json"), encoding="utf-8") as f:
            url = json.load(f).get("url")
    except (OSError, ValueError):
        return None
    return url if isinstance(url, str) else None


def _doc_id_of(d: Any) -> Optional[str]:
    if isinstance(d, (Document, Hit)):
        return d.doc_id
    return None


class _Files:
    """Per-file results built from an ingest's events."""

    def get(self, path: str) -> FileResult:
        f = self.files.get(path)
        if f is None:
            f = self.files[path] = FileResult(path=path)
            self.order.append(path)
        return f

    def __init__(self, index: "Index") -> None:
        self.files: Dict[str, FileResult] = {}
        self.order: List[str] = []
        self.index = index

    def _doc_id(self, f: FileResult) -> None:
        """The document id of a stored file, where the run's events did not say it."""
        if f.doc_id is None and (f.pages_stored or f.pages_skipped):
            try:
                f.doc_id = self.index._c.resolve_document(f.path)
            except Exception:
                pass

    def _duplicate(self, path: str, first: str) -> FileResult:
        """A file with the same bytes as ``first``: stored once, as ``first``'s document."""
        f = self.get(path)
        f.duplicate_of, f.done = first, True
        f.doc_id = f.doc_id or self.get(first).doc_id
        return f

    def event(self, event: tuple) -> Optional[FileResult]:
        """Applies an event; returns the file it finished, if it finished one."""
        kind = event[0]
        if kind == "opened":
            f = self.get(event[1])
            f.doc_id, f.pages = event[2], event[3]
        elif kind == "duplicate":
            return self._duplicate(event[1], event[2])
        elif kind == "queued":
            f = self.get(event[1])
            f.pages_skipped = event[3]
            if f.pages is None:
                f.pages = event[2] + event[3]
        elif kind == "stored":
            self.get(event[1]).pages_stored += event[2]
        elif kind == "failed":
            failure = Failure._from(event[1])
            f = self.get(failure.path)
            f.failures.append(failure)
            if failure.page_number is not None:
                f.pages_failed += 1
        elif kind == "done":
            f = self.get(event[1])
            f.done = True
            self._doc_id(f)
            return f
        return None

    def finish(self, summary: Dict[str, Any]) -> AddResult:
        for d in summary.get("duplicates", []):
            self._duplicate(d["path"], d["same_content_as"])
        return AddResult(
            files=[self.files[p] for p in self.order],
            pages_ingested=summary.get("pages_ingested", 0),
            pages_skipped=summary.get("pages_skipped", 0),
            pages_replaced=summary.get("pages_replaced", 0),
            seconds=summary.get("seconds", 0.0),
            cancelled=bool(summary.get("cancelled", False)),
            failures=[Failure._from(f) for f in summary.get("failures", [])],
        )


class Index:
    """A page index (a folder, or a Weaviate collection) and its model, in this process.

    Open one with :meth:`Index.open`. An index is owned by one process at a time: while a ``colqwen serve``
    owns the folder, :meth:`Index.open` returns a :class:`colqwen.Client` for that server instead.
    """

    def __init__(self, core: "_core.Index") -> None:
        self._core: Optional[_core.Index] = core

    @classmethod
    def open(
        cls,
        path_or_url: PathLike,
        model: Optional[str] = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        create: bool = True,
        load_model: bool = True,
        storage: str = "f16",
        pool_factor: int = 1,
        revision: Optional[str] = None,
        base_model: Optional[str] = None,
        offline: Optional[bool] = None,
        max_visual_tokens: Optional[int] = None,
        search_device: str = "auto",
        replicas: int = 1,
        weaviate_key: Optional[str] = None,
        api_key: Optional[str] = None,
        data_dir: Optional[PathLike] = None,
    ) -> Any:
        """Opens (or creates) the index at ``path_or_url`` and loads its model.

        ``path_or_url``: a folder; ``weaviate://HOST:PORT/Collection``; or ``http(s)://…`` of a running
        ``colqwen serve`` (a :class:`colqwen.Client` is returned). ``model``: a Hugging Face id or a local
        folder; default the model the index was built with, else ``vidore/colqwen2.5-v0.2``. ``device``:
        ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``metal``; ``dtype``: ``auto`` (bf16 on GPUs, f32 on the CPU),
        ``f32``, ``bf16``, ``f16``. ``storage`` (``f16``, ``f32``, ``i8``) and ``pool_factor`` apply to a new
        index. ``load_model=False`` opens an existing index for listing, deleting and stats only. For a
        Weaviate index, this machine's state (preview cache, jobs) lives under ``data_dir`` (default the
        user's data folder, as for the CLI). The
        environment's ``HF_TOKEN``, ``HF_HUB_OFFLINE`` and ``COLQWEN_WEAVIATE_API_KEY`` are used.
        """
        location = os.fspath(path_or_url)
        if location.startswith(("http://", "https://")):
            from .client import Client

            return Client(location, api_key=api_key)
        if not location.startswith("weaviate://"):
            location = os.path.expanduser(location)
            served = cls._served_by(location, api_key)
            if served is not None:  # a running server owns the folder: no model load just to find that out
                return served
        try:
            core = _core.Index.open(
                location,
                model=model,
                device=device,
                dtype=dtype,
                create=create,
                load_model=load_model,
                storage=storage,
                pool_factor=pool_factor,
                revision=revision,
                base_model=base_model,
                offline=_env_flag("HF_HUB_OFFLINE") if offline is None else offline,
                hf_token=os.environ.get("HF_TOKEN") or None,
                weaviate_key=weaviate_key or os.environ.get("COLQWEN_WEAVIATE_API_KEY") or None,
                max_visual_tokens=max_visual_tokens,
                search_device=search_device,
                replicas=replicas,
                data_dir=None if data_dir is None else os.fspath(data_dir),
            )
        except IndexInUseError:
            served = cls._served_by(location, api_key)
            if served is None:
                raise
            return served
        return cls(core)

    @staticmethod
    def _served_by(folder: str, api_key: Optional[str]) -> Any:
        """A client for the ``colqwen serve`` that owns ``folder`` (``<folder>/server.json``), if one answers."""
        url = _server_of(folder)
        if url is None:
            return None
        from .client import Client

        client = Client(url, api_key=api_key)
        try:
            client.health()
        except Exception:
            return None
        return client

    # -- plumbing ---------------------------------------------------------------------------------------------

    @property
    def _c(self) -> "_core.Index":
        if self._core is None:
            raise UsageError("this index is closed", "open it again with colqwen.Index.open(...)")
        return self._core

    def close(self) -> None:
        """Lets go of the index (its lock, once no ingest of it runs) and the model."""
        self._core = None

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._core is None:
            return "Index(closed)"
        return f"Index({self._core.location!r}, device={self._core.device!r})"

    @property
    def location(self) -> str:
        """The folder, or ``weaviate://HOST:PORT/Collection``."""
        return self._c.location

    @property
    def manifest(self) -> Dict[str, Any]:
        """The index's model, family, vector width, storage and pooling."""
        return self._c.manifest()

    # -- ingest -----------------------------------------------------------------------------------------------

    def _run(self, paths: Union[PathLike, Sequence[PathLike]], **opts: Any) -> "_core.IngestRun":
        return self._c.ingest(_paths(paths), **opts)

    def add(
        self,
        paths: Union[PathLike, Sequence[PathLike]],
        *,
        progress: ProgressArg = True,
        force: bool = False,
        password: Optional[str] = None,
        batch_size: Optional[int] = None,
        render_threads: Optional[int] = None,
        page_timeout: float = 60.0,
    ) -> AddResult:
        """Ingests PDF files, folders (searched for ``*.pdf``) or glob patterns: render, embed, store every
        page. Pages already stored are skipped, changed files replace their old pages. A bad file or page is
        a failure in the result (``result.failures``, each with its hint), never an exception; the run goes
        on. ``progress``: a bar (tqdm when installed), ``False`` for none, or a callable given every event.
        Ctrl-C stops the run after the batch in hand, stored and flushed, and raises ``KeyboardInterrupt``: the
        index is intact, and the same call again continues."""
        files = _Files(self)
        run = self._run(paths, force=force, password=password, batch_size=batch_size,
                        render_threads=render_threads, page_timeout=page_timeout)
        bar = Progress(progress, run.files)
        try:
            while True:
                event = run.next_event()
                if event is None:
                    continue
                if event[0] == "end":
                    return files.finish(event[1])
                bar.event(event)
                files.event(event)
        finally:
            bar.close()

    def add_iter(
        self,
        paths: Union[PathLike, Sequence[PathLike]],
        *,
        progress: ProgressArg = False,
        force: bool = False,
        password: Optional[str] = None,
        batch_size: Optional[int] = None,
        render_threads: Optional[int] = None,
        page_timeout: float = 60.0,
    ) -> Iterator[FileResult]:
        """Like :meth:`add`, yielding each file's :class:`FileResult` as soon as its pages are stored and
        flushed (files that failed as a whole, and duplicates, when the run ends). Leaving the loop early
        stops the run after the batch in hand."""
        files = _Files(self)
        run = self._run(paths, force=force, password=password, batch_size=batch_size,
                        render_threads=render_threads, page_timeout=page_timeout)
        bar = Progress(progress, run.files)
        yielded = set()
        try:
            while True:
                event = run.next_event()
                if event is None:
                    continue
                if event[0] == "end":
                    result = files.finish(event[1])
                    for f in result.files:
                        if f.path not in yielded:
                            yield f
                    return
                bar.event(event)
                finished = files.event(event)
                if finished is not None:
                    yielded.add(finished.path)
                    yield finished
        finally:
            bar.close()
            run.cancel()

    # -- search -----------------------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        doc: Any = None,
        mode: str = "auto",
        prefetch: Optional[int] = None,
    ) -> List[Hit]:
        """The ``k`` best pages for ``query``, best first. ``doc``: only pages of this document (id, id
        prefix, path, file name, or a :class:`Document`); ``mode``: ``auto``, ``exact`` or ``two_stage``
        (``prefetch``: pages two-stage reranks exactly)."""
        doc_name = _doc_id_of(doc) or (os.fspath(doc) if doc is not None else None)
        hits = self._c.search(query, k=k, doc=doc_name, mode=mode, prefetch=prefetch)
        return [
            Hit(
                doc_id=doc_id,
                name=Path(source).name,
                page_num=page,
                score=score,
                preview_path=None if preview is None else os.fspath(preview),
                metadata={"path": source, "page_count": count},
                query=query,
                _source=self,
            )
            for (score, doc_id, source, page, count, preview) in hits
        ]

    # -- documents --------------------------------------------------------------------------------------------

    def documents(self) -> List[Document]:
        """Stored documents."""
        return [
            Document(doc_id=d, name=Path(path).name, path=path, pages=pages, stored_pages=stored, sha256=sha)
            for (d, path, sha, pages, stored) in self._c.documents()
        ]

    def delete(self, doc: Any) -> int:
        """Deletes a document (id, id prefix of ≥ 4 characters, path, file name, or a :class:`Document` /
        :class:`Hit`) with its previews; returns the pages deleted. A delete is final."""
        doc_id = _doc_id_of(doc) or self._c.resolve_document(os.fspath(doc))
        return self._c.delete(doc_id)

    def stats(self) -> Stats:
        """Pages, documents, disk use, model."""
        return Stats._from(self._c.stats())

    # -- pages ------------------------------------------------------------------------------------------------

    def _preview_bytes(self, doc_id: str, page_num: int) -> bytes:
        return self._c.preview(doc_id, page_num)

    def preview(self, doc: Any, page_num: int) -> bytes:
        """The JPEG preview of a stored page (1-based ``page_num``)."""
        doc_id = _doc_id_of(doc) or self._c.resolve_document(os.fspath(doc))
        return self._preview_bytes(doc_id, page_num)

    def similarity(self, query: str, doc: Any, page_num: int) -> SimilarityMaps:
        """The similarity maps of ``query`` over a stored page (its stored vectors; nothing re-embedded)."""
        doc_id = _doc_id_of(doc) or self._c.resolve_document(os.fspath(doc))
        d = self._c.similarity(doc_id, page_num, query)
        return SimilarityMaps(tokens=list(d["tokens"]), maps=d["maps"], aggregate=d["aggregate"])

    def _similarity_png(self, query: str, doc_id: str, page_num: int, token: Optional[int]) -> bytes:
        return self._c.similarity_png(doc_id, page_num, query, token)

    def embed_queries(self, queries: Sequence[str]) -> list:
        """The multi-vectors (``float32 [tokens, dim]``) a search uses for these queries."""
        return self._c.embed_queries(list(queries))
