"""Ctrl-C during `Index.add`: the ingest stops after the batch in hand, what was stored is flushed,
`KeyboardInterrupt` is raised, the index is intact, and the same call again completes it."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import colqwen
from conftest import PDFS, TINY

CHILD = textwrap.dedent(
    """
    import sys, colqwen
    index = colqwen.Index.open(sys.argv[1], model=sys.argv[2], device="cpu")
    def seen(kind, *rest):
        if kind == "stored":
            print("stored", flush=True)
    try:
        index.add([sys.argv[3]], progress=seen, batch_size=1, render_threads=1)
    except KeyboardInterrupt:
        print("interrupted", index.stats().pages, flush=True)
        sys.exit(130)
    print("finished", index.stats().pages, flush=True)
    """
)


def test_ctrl_c_stops_the_ingest_with_the_index_intact(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(TINY), str(PDFS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    for line in child.stdout:
        if line.strip() == "stored":
            child.send_signal(signal.SIGINT)
            break
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130, (out, err)
    last = out.strip().splitlines()[-1].split()
    assert last[0] == "interrupted", out
    stored = int(last[1])

    index = colqwen.Index.open(path, model=str(TINY), device="cpu")
    docs = index.documents()
    total = sum(d.pages for d in docs) if docs else 0
    assert 0 < stored == index.stats().pages
    result = index.add([PDFS], progress=False)
    assert not result.cancelled and result.pages_skipped >= stored
    docs = index.documents()
    assert len(docs) == 6 and all(d.complete for d in docs), docs
    assert stored < sum(d.pages for d in docs) and total <= sum(d.pages for d in docs)
