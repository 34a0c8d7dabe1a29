"""The index API over a Weaviate collection (`weaviate://HOST:PORT/Collection`): a node of the pinned server
started by this test on free loopback ports (scripts/weaviate.sh; .ci/run installs the server first).
`COLQWEN_TEST_WEAVIATE=skip` skips it, as it skips the Rust suite's Weaviate tests."""

from __future__ import annotations

import os
import random
import socket
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

import colqwen
from conftest import REPO, SMALL, TINY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def weaviate(tmp_path: Path) -> Iterator[str]:
    if os.environ.get("COLQWEN_TEST_WEAVIATE") == "skip":
        pytest.skip("COLQWEN_TEST_WEAVIATE=skip")
    port = free_port()
    env = dict(os.environ, WEAVIATE_PORT=str(port), WEAVIATE_SLOT=str(random.randrange(300, 900)),
               WEAVIATE_RUN=str(tmp_path / "weaviate"))
    script = str(REPO / "scripts" / "weaviate.sh")
    started = subprocess.run([script, "start"], env=env, capture_output=True, text=True, timeout=1800)
    if started.returncode != 0:
        pytest.fail(f"scripts/weaviate.sh start failed: {started.stderr[-2000:]}")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([script, "stop"], env=env, capture_output=True, timeout=120)


def test_a_weaviate_collection_as_the_index(weaviate: str, tmp_path: Path) -> None:
    location = f"weaviate://{weaviate}/PythonSuite"
    index = colqwen.Index.open(location, model=str(TINY), device="cpu", data_dir=tmp_path / "state")
    assert index.location == location
    result = index.add(SMALL, progress=False)
    assert result.ok and result.pages_ingested == 11
    stats = index.stats()
    assert (stats.pages, stats.documents, stats.bytes_on_disk) == (11, 2, None)
    hits = index.search("printer driver installation", k=3)
    assert len(hits) == 3 and hits[0].jpeg()[:2] == b"\xff\xd8"  # previews kept by the collection
    assert index.delete(SMALL[0].name) == 1
    assert [d.name for d in index.documents()] == [SMALL[1].name]
    with pytest.raises(colqwen.IndexServerError) as e:
        colqwen.Index.open(f"weaviate://127.0.0.1:{free_port()}/Nothing", model=str(TINY), device="cpu",
                           data_dir=tmp_path / "state")
    assert "weaviate" in e.value.hint.lower() or "server" in e.value.hint.lower()
