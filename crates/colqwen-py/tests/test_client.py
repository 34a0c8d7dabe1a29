"""The client against a real `colqwen serve`: upload with the job's event stream, search with the same hit
type as the local index, documents, delete, pages, maps, embeddings bit-equal to the in-process encoder,
errors of the same classes, and an index folder that a server owns opening as a client."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

import colqwen
from conftest import SMALL, TINY, Server


def test_upload_search_documents_delete(server: Server, small_dir: Path) -> None:
    client = colqwen.Client(server.url)
    events = []
    result = client.add([small_dir], progress=lambda *e: events.append(e))
    assert result.ok and result.pages_ingested == 11, result
    assert sorted(Path(f.path).name for f in result) == sorted(p.name for p in SMALL)
    assert all(f.done and f.doc_id and f.pages_stored == f.pages for f in result)
    assert any(e[0] == "done" for e in events)

    hits = client.search("printer driver installation", k=4)
    assert len(hits) == 4 and all(isinstance(h, colqwen.Hit) for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    top = hits[0]
    assert top.jpeg()[:2] == b"\xff\xd8" and base64.b64decode(top.base64()) == top.jpeg()
    maps = top.similarity_maps()
    assert maps.maps.shape[0] == len(maps.tokens) and maps.aggregate.shape == maps.shape
    assert top.similarity_image().size == top.image().size

    docs = {d.name: d for d in client.documents()}
    assert docs[SMALL[1].name].pages == 10 and docs[SMALL[1].name].complete
    assert client.stats().pages == 11
    only = client.search("table", k=10, doc=docs[SMALL[0].name])
    assert {h.doc_id for h in only} == {docs[SMALL[0].name].doc_id}

    assert client.delete(docs[SMALL[1].name]) == 10
    assert [d.name for d in client.documents()] == [SMALL[0].name]
    with pytest.raises(colqwen.NotFoundError):
        client.delete(docs[SMALL[1].name])


def test_the_same_hits_as_the_local_index(server: Server, tmp_path: Path, small_dir: Path) -> None:
    client = colqwen.Client(server.url)
    client.add([small_dir], progress=False)
    local = colqwen.Index.open(tmp_path / "local", model=str(TINY), device="cpu")
    local.add([small_dir], progress=False)
    q = "installation of the printer driver"
    assert [(h.doc_id, h.page_num, h.score) for h in client.search(q, k=6)] == [
        (h.doc_id, h.page_num, h.score) for h in local.search(q, k=6)
    ]


def test_embeddings_are_bit_equal_to_the_encoder(server: Server) -> None:
    from PIL import Image

    client = colqwen.Client(server.url)
    encoder = colqwen.Encoder.from_pretrained(str(TINY), device="cpu")
    queries = ["reset the firmware", "what does table 3 say"]
    for remote, local in zip(client.encode_query(queries), encoder.encode_query(queries)):
        assert remote.dtype == np.float32 and np.array_equal(remote, local)
    rng = np.random.default_rng(7)
    page = Image.fromarray(rng.integers(0, 256, (400, 300, 3), dtype=np.uint8))
    assert np.array_equal(client.encode_document(page), encoder.encode_document(page))


def test_errors_have_the_local_classes_and_hints(keyed_server: Server, tmp_path: Path) -> None:
    with pytest.raises(colqwen.AuthenticationError):
        colqwen.Client(keyed_server.url, api_key="wrong-key-of-sixteen").documents()
    client = colqwen.Client(keyed_server.url, api_key=keyed_server.key)
    assert client.documents() == []
    with pytest.raises(colqwen.EmptyQueryError) as e:
        client.search("  ")
    assert e.value.hint and e.value.status == 400
    with pytest.raises(colqwen.PageNotFoundError):
        client.preview("0123456789abcdef", 1)
    result = client.add([Path(__file__).parents[3] / "fixtures" / "bad-pdfs" / "html-saved-as.pdf"], progress=False)
    assert not result.ok and result.failures[0].kind == "pdf" and result.failures[0].hint
    with pytest.raises(colqwen.ServerUnreachableError) as e:
        colqwen.Client("http://127.0.0.1:9").stats()
    assert "colqwen serve" in e.value.hint


def test_a_folder_a_server_owns_opens_as_its_client(server: Server) -> None:
    opened = colqwen.Index.open(server.index, model=str(TINY), device="cpu")
    assert isinstance(opened, colqwen.Client) and opened.url == server.url
    assert colqwen.Index.open(server.url).stats().model_id == opened.stats().model_id
