"""The examples of examples/: the RAG loop sends the retrieved pages' images to an OpenAI-compatible chat
endpoint (here a loopback HTTP server that records the request and answers, standing in for the vision model,
which cannot run on this machine), and the LangChain retriever returns the pages as Documents."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

import colqwen
from conftest import REPO, SMALL, TINY


def test_rag_loop_sends_the_pages_to_the_vision_endpoint(tmp_path: Path) -> None:
    index_dir = tmp_path / "idx"
    index = colqwen.Index.open(index_dir, model=str(TINY), device="cpu")
    index.add(SMALL, progress=False)
    expected = [h.base64() for h in index.search("printer drivers", k=2)]
    index.close()
    del index
    import gc

    gc.collect()
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            seen.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "the answer"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        out = subprocess.run(
            [sys.executable, str(REPO / "examples" / "rag_loop.py"), str(index_dir), "printer drivers",
             "--url", f"http://127.0.0.1:{httpd.server_port}/v1", "--model", "any-vlm", "-k", "2"],
            check=True, capture_output=True, text=True, timeout=120,
        ).stdout
    finally:
        httpd.shutdown()
    assert out.strip() == "the answer"
    path, body = seen[0]
    assert path == "/v1/chat/completions" and body["model"] == "any-vlm"
    images = [c["image_url"]["url"] for c in body["messages"][0]["content"] if c["type"] == "image_url"]
    assert images == ["data:image/jpeg;base64," + b for b in expected]


def test_langchain_retriever(tmp_path: Path) -> None:
    pytest.importorskip("langchain_core")
    sys.path.insert(0, str(REPO / "examples"))
    try:
        from langchain_retriever import ColqwenRetriever
    finally:
        sys.path.pop(0)
    index = colqwen.Index.open(tmp_path / "idx", model=str(TINY), device="cpu")
    index.add(SMALL, progress=False)
    docs = ColqwenRetriever(index=index, k=3).invoke("permission specifiers table")
    hits = index.search("permission specifiers table", k=3)
    assert [(d.metadata["doc_id"], d.metadata["page"]) for d in docs] == [(h.doc_id, h.page_num) for h in hits]
    assert base64.b64decode(docs[0].page_content)[:2] == b"\xff\xd8"
