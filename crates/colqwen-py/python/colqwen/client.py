"""A client for a running ``colqwen serve``, on the standard library alone (urllib; the job event stream is
read as Server-Sent Events by hand). The same types as the local :class:`colqwen.Index`.

    client = colqwen.Client("http://127.0.0.1:8000", api_key=None)
    client.add(["manual.pdf"])                     # upload, then follow the job's events
    hits = client.search("reset the firmware", k=5)
"""

from __future__ import annotations

import base64 as _b64
import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from ._progress import Progress, ProgressArg
from .errors import Error, ServerError, UsageError, _from_kind
from .types import AddResult, Document, Failure, FileResult, Hit, SimilarityMaps, Stats

__all__ = ["Client"]

# A server's error codes that are not the library's error kinds, as the exception kinds they mean.
_CODES = {
    "not_found": "not_found",
    "bad_request": "usage",
    "bad_pdf": "pdf",
    "unauthorized": "unauthorized",
    "forbidden": "unauthorized",
    "shutting_down": "server",
}


def _doc_id_of(d: Any) -> str:
    if isinstance(d, (Document, Hit)):
        return d.doc_id
    return str(d)


class _Response:
    def __init__(self, status: int, headers: Any, body: Any) -> None:
        self.status, self.headers, self.body = status, headers, body


class Client:
    """A ``colqwen serve`` at ``url`` (``api_key``: the server's key, sent as a bearer token; default the
    environment's ``COLQWEN_API_KEY``)."""

    def __init__(self, url: str, api_key: Optional[str] = None, *, timeout: float = 60.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"{url!r} is not an http(s) URL", "pass the server's address, e.g. http://127.0.0.1:8000")
        self.url = url.rstrip("/")
        self.api_key = api_key if api_key is not None else (os.environ.get("COLQWEN_API_KEY") or None)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to let go of (every request has its own connection); for symmetry with :class:`Index`."""

    # -- HTTP -------------------------------------------------------------------------------------------------

    def _headers(self, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        h = {"Accept": "application/json", "User-Agent": f"colqwen-python/{_core.__version__}"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        h.update(extra or {})
        return h

    def _open(self, method: str, path: str, data: Any = None, headers: Optional[Dict[str, str]] = None,
              timeout: Optional[float] = None) -> Any:
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=self._headers(headers))
        try:
            return urllib.request.urlopen(req, timeout=self.timeout if timeout is None else timeout)
        except urllib.error.HTTPError as e:
            raise self._error(e) from None
        except (urllib.error.URLError, ConnectionError, socket.timeout) as e:
            reason = getattr(e, "reason", e)
            raise _from_kind(
                "unreachable",
                f"no colqwen server answers at {self.url}: {reason}",
                "start it (colqwen serve) or check the address",
            ) from None

    def _error(self, e: urllib.error.HTTPError) -> Error:
        try:
            body = json.loads(e.read() or b"{}")
        except ValueError:
            body = {}
        err = body.get("error") if isinstance(body, dict) else None
        if not isinstance(err, dict):
            return ServerError(f"the server at {self.url} answered HTTP {e.code}", None, status=e.code)
        code = str(err.get("code", "server"))
        kind = err.get("kind") or _CODES.get(code, code)
        if e.code == 401:
            kind = "unauthorized"
        return _from_kind(kind, str(err.get("message", f"HTTP {e.code}")), err.get("hint"), status=e.code)

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"} if body is not None else None
        with self._open(method, path, data, headers) as resp:
            return json.loads(resp.read() or b"null")

    def _bytes(self, path: str) -> bytes:
        with self._open("GET", path) as resp:
            return resp.read()

    # -- server -----------------------------------------------------------------------------------------------

    def health(self) -> Dict[str, Any]:
        """The server's liveness answer (never needs the key)."""
        return self._json("GET", "/health")

    def stats(self) -> Stats:
        """Pages, documents, disk use, model of the server's index."""
        d = self._json("GET", "/v1/stats")
        return Stats._from(d.get("index", d) if isinstance(d, dict) else {})

    # -- ingest -----------------------------------------------------------------------------------------------

    def _upload(self, files: List[str], password: Optional[str]) -> Dict[str, Any]:
        """``POST /v1/documents``: the files as multipart fields, streamed from disk."""
        boundary = f"colqwen-{uuid.uuid4().hex}"
        parts: List[Tuple[bytes, Optional[str]]] = []
        if password is not None:
            head = f'--{boundary}\r\nContent-Disposition: form-data; name="password"\r\n\r\n'.encode()
            parts.append((head + password.encode("utf-8") + b"\r\n", None))
        for f in files:
            name = Path(f).name.replace('"', "%22").replace("\r", " ").replace("\n", " ")
            head = (
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                "Content-Type: application/pdf\r\n\r\n"
            ).encode("utf-8")
            parts.append((head, f))
            parts.append((b"\r\n", None))
        tail = f"--{boundary}--\r\n".encode()
        length = sum(len(b) + (os.path.getsize(f) if f else 0) for b, f in parts) + len(tail)

        def body() -> Iterator[bytes]:
            for b, f in parts:
                yield b
                if f:
                    with open(f, "rb") as fh:
                        while chunk := fh.read(1 << 20):
                            yield chunk
            yield tail

        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(length)}
        with self._open("POST", "/v1/documents", body(), headers, timeout=max(self.timeout, 600.0)) as resp:
            return json.loads(resp.read())

    def _events(self, path: str) -> Iterator[Tuple[str, Any]]:
        """A Server-Sent Events stream: ``(event, data)`` per event, ``data`` parsed as JSON."""
        resp = self._open("GET", path, headers={"Accept": "text/event-stream"}, timeout=None)
        with resp:
            event, data = "message", []
            for raw in resp:
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:
                    if data:
                        yield event, json.loads("\n".join(data))
                    event, data = "message", []
                elif line.startswith(":"):
                    continue
                else:
                    field, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if field == "event":
                        event = value
                    elif field == "data":
                        data.append(value)

    @staticmethod
    def _file_result(f: Dict[str, Any]) -> FileResult:
        failures = [Failure._from(e) for e in f.get("errors", [])]
        return FileResult(
            path=f.get("name", ""),
            doc_id=f.get("doc_id"),
            pages=f.get("page_count"),
            pages_stored=int(f.get("pages_stored", 0)),
            pages_skipped=int(f.get("pages_skipped", 0)),
            pages_failed=int(f.get("pages_failed", 0)),
            failures=failures,
            duplicate_of=f.get("duplicate_of"),
            done=bool(f.get("done", False)),
        )

    def _follow(self, paths: Union[str, Sequence[str]], password: Optional[str], progress: ProgressArg,
                ) -> Iterator[Tuple[str, Any]]:
        """Uploads the files, then yields ``("file", FileResult)`` as each is done and ``("end", AddResult)``."""
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        files, problems = _core.discover([os.fspath(p) for p in paths])
        if not files and not problems:
            raise UsageError(
                f"no PDF files found in {', '.join(map(os.fspath, paths))}",
                "give PDF files, folders holding *.pdf files, or a glob pattern such as 'docs/*.pdf'",
            )
        failures = [Failure._from(p) for p in problems]
        rejected: List[Failure] = []
        job: Optional[str] = None
        events_url = None
        if files:
            try:
                answer = self._upload(files, password)
            except Error as e:
                if e.kind != "pdf":
                    raise
                answer = {}
                rejected.append(Failure(path=", ".join(files), page_number=None, error=e.message, hint=e.hint, kind="pdf"))
            for r in answer.get("rejected", []):
                rejected.append(Failure(path=r.get("name", ""), page_number=None, error=r.get("error", ""),
                                        hint=r.get("hint"), kind="pdf"))
            job, events_url = answer.get("job"), answer.get("events_url")
        bar = Progress(progress, len(files))
        seen: Dict[str, int] = {}
        yielded = set()
        status: Dict[str, Any] = {}
        try:
            if job is not None:
                for event, status in self._events(events_url or f"/v1/jobs/{job}/events"):
                    for i, f in enumerate(status.get("files", [])):
                        key = f"{i}"
                        before = seen.get(key, -1)
                        if before < 0 and f.get("pages_todo") is not None:
                            bar.event(("queued", f.get("name"), f.get("pages_todo", 0), f.get("pages_skipped", 0)))
                        stored = int(f.get("pages_stored", 0)) + int(f.get("pages_failed", 0))
                        if stored > max(before, 0):
                            bar.event(("stored", f.get("name"), stored - max(before, 0)))
                        seen[key] = stored
                        if f.get("done") and key not in yielded:
                            yielded.add(key)
                            bar.event(("done", f.get("name")))
                            yield "file", self._file_result(f)
                    if event == "end":
                        break
        except KeyboardInterrupt:
            if job is not None:
                try:
                    self._json("POST", f"/v1/jobs/{job}/cancel")
                except Error:
                    pass
            raise
        finally:
            bar.close()
        results = [self._file_result(f) for f in status.get("files", [])]
        all_failures = failures + rejected + [x for r in results for x in r.failures]
        for f in failures + rejected:
            yield "file", FileResult(path=f.path, failures=[f], done=False)
        state = status.get("state")
        yield "end", AddResult(
            files=[FileResult(path=f.path, failures=[f]) for f in failures + rejected] + results,
            pages_ingested=int(status.get("pages_stored", 0)),
            pages_skipped=sum(r.pages_skipped for r in results),
            cancelled=state in ("cancelled", "interrupted"),
            failures=all_failures,
        )

    def add(self, paths: Union[str, Sequence[str]], *, progress: ProgressArg = True,
            password: Optional[str] = None) -> AddResult:
        """Uploads PDF files (folders and globs are expanded here) and follows the server's ingest job until
        it ends. Files the server refuses at once, and paths that cannot be read, are failures of the result.
        Ctrl-C cancels the job (the server keeps what it stored) and raises ``KeyboardInterrupt``."""
        for kind, value in self._follow(paths, password, progress):
            if kind == "end":
                return value
        raise ServerError("the job's event stream ended without a result")  # pragma: no cover

    def add_iter(self, paths: Union[str, Sequence[str]], *, progress: ProgressArg = False,
                 password: Optional[str] = None) -> Iterator[FileResult]:
        """Like :meth:`add`, yielding each file's result as the server finishes it."""
        for kind, value in self._follow(paths, password, progress):
            if kind == "file":
                yield value

    # -- search -----------------------------------------------------------------------------------------------

    def search(self, query: str, k: int = 10, *, doc: Any = None, mode: str = "auto",
               prefetch: Optional[int] = None) -> List[Hit]:
        """The ``k`` best pages for ``query`` (see :meth:`colqwen.Index.search`)."""
        body: Dict[str, Any] = {"query": query, "k": k, "mode": mode.replace("-", "_")}
        if doc is not None:
            body["doc"] = _doc_id_of(doc)
        if prefetch is not None:
            body["prefetch"] = prefetch
        answer = self._json("POST", "/v1/search", body)
        return [
            Hit(
                doc_id=r["doc_id"],
                name=r.get("name") or Path(r.get("source_path") or "").name,
                page_num=int(r["page_number"]),
                score=float(r["score"]),
                preview_path=None,
                metadata={"path": r.get("source_path"), "page_count": r.get("page_count")},
                query=query,
                _source=self,
            )
            for r in answer.get("results", [])
        ]

    # -- documents --------------------------------------------------------------------------------------------

    def documents(self) -> List[Document]:
        """Stored documents (every page of the server's list)."""
        out: List[Document] = []
        cursor: Optional[str] = None
        while True:
            q = "" if cursor is None else "?" + urllib.parse.urlencode({"cursor": cursor})
            answer = self._json("GET", "/v1/documents" + q)
            for d in answer.get("documents", []):
                path = d.get("source_path") or ""
                out.append(Document(
                    doc_id=d["doc_id"],
                    name=d.get("name") or Path(path).name,
                    path=path,
                    pages=int(d.get("page_count", 0)),
                    stored_pages=int(d.get("stored_pages", 0)),
                    sha256=d.get("file_sha256"),
                ))
            cursor = answer.get("next_cursor")
            if not cursor:
                return out

    def delete(self, doc: Any) -> int:
        """Deletes a document (its id, a :class:`Document` or a :class:`Hit`); returns the pages deleted."""
        answer = self._json("DELETE", f"/v1/documents/{urllib.parse.quote(_doc_id_of(doc), safe='')}")
        return int(answer.get("pages_deleted", answer.get("pages", 0)) or 0)

    # -- pages ------------------------------------------------------------------------------------------------

    def _preview_bytes(self, doc_id: str, page_num: int) -> bytes:
        return self._bytes(f"/v1/pages/{urllib.parse.quote(doc_id, safe='')}/{int(page_num)}/preview")

    def preview(self, doc: Any, page_num: int) -> bytes:
        """The JPEG preview of a stored page."""
        return self._preview_bytes(_doc_id_of(doc), page_num)

    def similarity(self, query: str, doc: Any, page_num: int) -> SimilarityMaps:
        """The similarity maps of ``query`` over a stored page."""
        q = urllib.parse.urlencode({"q": query, "format": "json"})
        d = self._json("GET", f"/v1/pages/{urllib.parse.quote(_doc_id_of(doc), safe='')}/{int(page_num)}/similarity?{q}")
        rows, cols = int(d["rows"]), int(d["cols"])
        maps = np.asarray(d["maps"], dtype=np.float32).reshape(len(d["tokens"]), rows, cols)
        aggregate = np.asarray(d["aggregate"], dtype=np.float32).reshape(rows, cols)
        return SimilarityMaps(tokens=list(d["tokens"]), maps=maps, aggregate=aggregate)

    def _similarity_png(self, query: str, doc_id: str, page_num: int, token: Optional[int]) -> bytes:
        params = {"q": query}
        if token is not None:
            params["token"] = str(token)
        return self._bytes(
            f"/v1/pages/{urllib.parse.quote(doc_id, safe='')}/{int(page_num)}/similarity?{urllib.parse.urlencode(params)}"
        )

    # -- embeddings -------------------------------------------------------------------------------------------

    def _embed(self, inputs: List[str]) -> List[np.ndarray]:
        answer = self._json("POST", "/v1/embeddings", {"input": inputs, "encoding_format": "base64"})
        out = []
        for item in sorted(answer["data"], key=lambda d: d["index"]):
            rows, dim = item["shape"]
            out.append(np.frombuffer(_b64.b64decode(item["embedding"]), dtype="<f4").reshape(rows, dim))
        return out

    def encode_query(self, queries: Union[str, Sequence[str]]) -> Union[np.ndarray, List[np.ndarray]]:
        """The server model's multi-vectors of queries (one array for a single string)."""
        single = isinstance(queries, str)
        out = self._embed([queries] if single else list(queries))
        return out[0] if single else out

    def encode_document(self, images: Any) -> Union[np.ndarray, List[np.ndarray]]:
        """The server model's multi-vectors of page images (PIL images, ``uint8`` arrays, image files)."""
        from .encoder import _rgb

        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        uris = []
        for i, im in enumerate(items):
            rgb, w, h = _rgb(im, i)
            uris.append("data:image/png;base64," + _b64.b64encode(_png(rgb, w, h)).decode("ascii"))
        out = self._embed(uris)
        return out[0] if single else out

    def similarity_scores(self, query_embeddings: Any, document_embeddings: Any) -> np.ndarray:
        """MaxSim scores ``[queries, documents]`` (computed here)."""
        from .encoder import maxsim

        return maxsim(query_embeddings, document_embeddings)


def _png(rgb: bytes, width: int, height: int) -> bytes:
    """RGB pixels as a PNG (zlib from the standard library), so that uploads need no Pillow."""
    import struct
    import zlib

    stride = width * 3
    raw = b"".join(b"\x00" + rgb[y * stride:(y + 1) * stride] for y in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
