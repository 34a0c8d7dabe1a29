"""The index API over the library's service: add, search, documents, delete, stats, pages, maps; and the
same answers as the `colqwen` binary on the same index."""

from __future__ import annotations

import base64
import gc
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

import colqwen
from conftest import BAD_PDFS, SMALL, colqwen_bin


def open_index(path: Path, tiny: str, **kw) -> colqwen.Index:
    return colqwen.Index.open(path, model=tiny, device="cpu", **kw)


def test_add_search_documents_delete_stats(tmp_path: Path, tiny: str, small_dir: Path) -> None:
    index = open_index(tmp_path / "idx", tiny)
    events = []
    result = index.add([small_dir], progress=lambda *e: events.append(e))
    assert isinstance(result, colqwen.AddResult) and result.ok, result.failures
    by_name = {Path(f.path).name: f for f in result}
    assert sorted(by_name) == sorted(p.name for p in SMALL)
    assert by_name[SMALL[0].name].pages == 1 and by_name[SMALL[1].name].pages == 10
    for f in result:
        assert f.done and f.status == "stored" and f.pages_stored == f.pages and f.doc_id
    assert result.pages_ingested == 11
    kinds = {e[0] for e in events}
    assert {"queued", "stored", "done"} <= kinds

    stats = index.stats()
    assert (stats.pages, stats.documents, stats.embedding_dim) == (11, 2, index.manifest["embedding_dim"])
    assert stats.family == "ColQwen2.5" and stats.bytes_on_disk and stats.bytes_on_disk > 0

    docs = {d.name: d for d in index.documents()}
    assert docs[SMALL[1].name].pages == 10 and docs[SMALL[1].name].complete
    assert {d.doc_id for d in docs.values()} == {f.doc_id for f in result}

    hits = index.search("permission specifiers table", k=5)
    assert len(hits) == 5
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for h in hits:
        assert 1 <= h.page_num <= h.metadata["page_count"] and h.name in docs
        assert h.preview_path and Path(h.preview_path).is_file()

    only = index.search("permission specifiers table", k=20, doc=SMALL[0].name)
    assert [h.page_num for h in only] == [1] and only[0].doc_id == docs[SMALL[0].name].doc_id

    # Adding again stores nothing: every page is already there.
    again = index.add([small_dir], progress=False)
    assert again.pages_ingested == 0 and again.pages_skipped == 11

    assert index.delete(docs[SMALL[1].name]) == 10
    assert [d.name for d in index.documents()] == [SMALL[0].name]
    assert {h.doc_id for h in index.search("table", k=10)} == {docs[SMALL[0].name].doc_id}
    assert index.stats().pages == 1
    with pytest.raises(colqwen.DocumentNotFoundError) as e:
        index.delete(SMALL[1].name)
    assert e.value.hint and "list" in e.value.hint


def test_hits_bring_images_base64_and_similarity_maps(tmp_path: Path, tiny: str) -> None:
    index = open_index(tmp_path / "idx", tiny)
    index.add([SMALL[0]], progress=False)
    hit = index.search("annotations table", k=1)[0]
    jpeg = hit.jpeg()
    assert jpeg[:2] == b"\xff\xd8"
    assert base64.b64decode(hit.base64()) == jpeg
    image = hit.image()
    assert image.format == "JPEG" and image.size[0] > 100
    maps = hit.similarity_maps()
    rows, cols = maps.shape
    assert maps.maps.shape == (len(maps.tokens), rows, cols) and maps.maps.dtype == np.float32
    agg = hit.similarity()
    assert agg.shape == (rows, cols) and 0.0 <= agg.min() and agg.max() <= 1.0 and agg.max() > 0.99
    assert np.array_equal(hit.similarity(token=1), maps.maps[1])
    overlay = hit.similarity_image()
    assert overlay.size == image.size
    assert hit["page_num"] == hit.page_num  # byaldi-style access


def test_search_answers_as_the_cli_does(tmp_path: Path, tiny: str, small_dir: Path) -> None:
    path = tmp_path / "idx"
    index = open_index(path, tiny)
    index.add([small_dir], progress=False)
    mine = [(h.doc_id, h.page_num, h.score) for h in index.search("installation of the printer driver", k=8)]
    index.close()
    gc.collect()  # the index's lock goes with the last reference
    out = subprocess.run(
        [str(colqwen_bin()), "--index", str(path), "--device", "cpu", "--json", "search", "-k", "8",
         "installation of the printer driver"],
        check=True, capture_output=True, text=True,
    ).stdout
    # Scores travel as f32 (JSON prints the shortest text that reads back as the same f32).
    theirs = [(r["doc_id"], r["page_number"], np.float32(r["score"])) for r in json.loads(out)]
    assert [(d, p, np.float32(s)) for d, p, s in mine] == theirs


def test_add_iter_yields_each_file_when_it_is_stored(tmp_path: Path, tiny: str, small_dir: Path) -> None:
    index = open_index(tmp_path / "idx", tiny)
    seen = []
    for f in index.add_iter([small_dir]):
        seen.append(Path(f.path).name)
        # When a file is yielded its pages are stored and flushed: searchable at once.
        assert f.done and index.search("x", k=20, doc=f.doc_id)
    assert sorted(seen) == sorted(p.name for p in SMALL)


def test_bad_files_are_failures_with_hints_and_the_rest_is_stored(tmp_path: Path, tiny: str) -> None:
    index = open_index(tmp_path / "idx", tiny)
    bad = BAD_PDFS / "html-saved-as.pdf"
    result = index.add([SMALL[0], bad, tmp_path / "missing.pdf"], progress=False)
    assert not result.ok and result.pages_ingested == 1
    failed = {Path(f.path).name: f for f in result.failures}
    assert set(failed) == {"html-saved-as.pdf", "missing.pdf"}
    pdf = failed["html-saved-as.pdf"]
    assert pdf.kind == "pdf" and pdf.hint
    exc = pdf.exception()
    assert isinstance(exc, colqwen.PdfError) and exc.hint == pdf.hint and "html-saved-as.pdf" in str(exc)
    assert failed["missing.pdf"].kind == "io" and isinstance(failed["missing.pdf"].exception(), colqwen.FileError)
    with pytest.raises(colqwen.FileError):  # the first failure: the missing path
        result.raise_for_failures()
    with pytest.raises(colqwen.UsageError) as e:
        index.add([tmp_path], progress=False)  # a folder without PDFs
    assert "no PDF" in e.value.message and e.value.hint


def test_errors_are_exceptions_of_their_kind_with_hints(tmp_path: Path, tiny: str) -> None:
    with pytest.raises(colqwen.NoIndexError) as e:
        colqwen.Index.open(tmp_path / "nothing", model=tiny, device="cpu", create=False)
    assert e.value.hint and isinstance(e.value, colqwen.StoreError)
    with pytest.raises(colqwen.UsageError) as e:
        colqwen.Index.open(tmp_path / "x", model=tiny, device="gpu7")
    assert "cuda" in e.value.hint
    index = open_index(tmp_path / "idx", tiny)
    index.add([SMALL[0]], progress=False)
    with pytest.raises(colqwen.EmptyQueryError) as e:
        index.search("   ")
    assert isinstance(e.value, ValueError) and e.value.hint
    with pytest.raises(colqwen.IndexInUseError) as e:
        open_index(tmp_path / "idx", tiny)
    assert "another colqwen process" in e.value.hint
    with pytest.raises(colqwen.PageNotFoundError):
        index.preview(SMALL[0].name, 2)
    index.close()
    gc.collect()
    other = Path(tiny).parent / "colqwen3-tiny"
    with pytest.raises(colqwen.ModelMismatchError) as e:
        colqwen.Index.open(tmp_path / "idx", model=str(other), device="cpu")
    assert "--model" in e.value.hint or "model" in e.value.hint
    # Without the model: list and stats work, search says what is missing.
    bare = colqwen.Index.open(tmp_path / "idx", load_model=False)
    assert bare.stats().pages == 1
    with pytest.raises(colqwen.ModelError):
        bare.search("anything")


def test_a_copy_is_stored_once_and_named_a_duplicate(tmp_path: Path, tiny: str) -> None:
    import shutil

    copy = tmp_path / "copy.pdf"
    shutil.copy(SMALL[0], copy)
    index = open_index(tmp_path / "idx", tiny)
    result = index.add([SMALL[0], copy], progress=False)
    first, dup = result.files
    assert first.status == "stored" and dup.status == "duplicate" and dup.duplicate_of == str(SMALL[0])
    assert dup.doc_id == first.doc_id and len(index.documents()) == 1
