"""Fixtures of the Python suite: the repository's committed tiny model and PDFs, fresh index folders, and a
real `colqwen serve` (the binary the Rust tests built, or $COLQWEN_BIN) started on a free loopback port.

Run from a fresh clone (what .ci/run does): `scripts/python-wheel.sh test`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "fixtures" / "tiny" / "colqwen2.5-tiny-v0.2"
PDFS = REPO / "fixtures" / "pdfs"
BAD_PDFS = REPO / "fixtures" / "bad-pdfs"
#: Two small documents (1 page and 10 pages).
SMALL = [PDFS / "cplusplus-annotations_p125_table.pdf", PDFS / "gutenprint-users-manual_p5-14_text.pdf"]


def colqwen_bin() -> Path:
    path = Path(os.environ.get("COLQWEN_BIN") or REPO / "target" / "release" / "colqwen")
    if not path.is_file():
        pytest.fail(f"no colqwen binary at {path}: run `cargo build --release -p colqwen-cli` or set COLQWEN_BIN")
    return path


@pytest.fixture
def tiny() -> str:
    return str(TINY)


@pytest.fixture
def small_dir(tmp_path: Path) -> Path:
    """A folder with the two small PDFs (copies, so that a test may change them)."""
    d = tmp_path / "docs"
    d.mkdir()
    for p in SMALL:
        shutil.copy(p, d / p.name)
    return d


class Server:
    """A `colqwen serve` process on loopback."""

    def __init__(self, index: Path, extra: Optional[List[str]] = None, key: Optional[str] = None) -> None:
        self.index = index
        self.key = key
        index.mkdir(parents=True, exist_ok=True)
        self.log = open(index.parent / f"{index.name}-server.log", "w+b")
        args = [str(colqwen_bin()), "--index", str(index), "--model", str(TINY), "--device", "cpu", "serve", "--port", "0"]
        env = dict(os.environ, COLQWEN_NO_PROGRESS="1")
        if key:
            args += ["--api-key", key]
        self.proc = subprocess.Popen(args + (extra or []), stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.url = self._wait()

    def _wait(self) -> str:
        deadline = time.monotonic() + 120
        info = self.index / "server.json"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                pytest.fail(f"colqwen serve exited {self.proc.returncode}: {self.log.read().decode(errors='replace')}")
            try:
                url = json.loads(info.read_text())["url"]
                with urllib.request.urlopen(url + "/health", timeout=2):
                    return url
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        pytest.fail("colqwen serve did not answer within 120 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "served-index")
    yield s
    s.stop()


@pytest.fixture
def keyed_server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "keyed-index", key="a-key-of-sixteen-chars")
    yield s
    s.stop()
