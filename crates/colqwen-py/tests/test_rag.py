"""byaldi's shape: from_pretrained, index with metadata, search with filters and base64, from_index."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

import colqwen
from conftest import TINY


def test_byaldi_code_runs_with_a_changed_import(tmp_path: Path, small_dir: Path) -> None:
    from colqwen import RAGMultiModalModel

    root = tmp_path / ".byaldi"
    rag = RAGMultiModalModel.from_pretrained(str(TINY), index_root=str(root), device="cpu", verbose=0)
    files = sorted(small_dir.iterdir())
    rag.index(input_path=small_dir, index_name="manuals", store_collection_with_index=True, overwrite=False,
              metadata=[{"kind": "table"}, {"kind": "manual"}])
    assert rag.get_doc_ids_to_file_names() == {0: str(files[0]), 1: str(files[1])}
    results = rag.search("printer driver installation", k=3)
    assert len(results) == 3
    for r in results:
        assert r.doc_id in (0, 1) and r.page_num >= 1 and r["score"] == r.score
        assert r.metadata == ({"kind": "table"} if r.doc_id == 0 else {"kind": "manual"})
        assert base64.b64decode(r.base64)[:2] == b"\xff\xd8"
    only = rag.search("anything", k=5, filter_metadata={"kind": "table"})
    assert [r.doc_id for r in only] == [0]
    many = rag.search(["one", "two"], k=2, return_base64_results=False)
    assert len(many) == 2 and all(r.base64 is None for r in many[0])
    with pytest.raises(colqwen.UsageError):
        rag.index(input_path=small_dir, index_name="manuals")
    del rag
    import gc

    gc.collect()
    again = RAGMultiModalModel.from_index("manuals", index_root=str(root), device="cpu", verbose=0)
    assert [r.doc_id for r in again.search("printer driver installation", k=3)] == [r.doc_id for r in results]
