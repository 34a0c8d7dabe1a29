"""The encoder API: multi-vectors handed over without a copy, images as PIL / arrays / files giving the same
vectors, MaxSim as numpy computes it, and the same vectors as the index's model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import colqwen
from conftest import SMALL


@pytest.fixture(scope="module")
def encoder() -> colqwen.Encoder:
    from conftest import TINY

    return colqwen.Encoder.from_pretrained(str(TINY), device="cpu")


def page_image(seed: int = 0, size=(300, 420)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_queries_are_float32_multivectors_owning_no_copy(encoder: colqwen.Encoder) -> None:
    q = encoder.encode_query(["reset the firmware", "a longer question about the printer driver"])
    assert len(q) == 2
    for v in q:
        assert v.dtype == np.float32 and v.ndim == 2 and v.shape[1] == encoder.dim
        assert v.flags.c_contiguous and not v.flags.owndata  # the Rust buffer, handed over
    assert q[0].shape[0] == len(encoder.query_tokens("reset the firmware"))
    single = encoder.encode_query("reset the firmware")
    assert np.array_equal(single, q[0])  # a query's vectors do not depend on its batch


def test_images_from_pil_arrays_and_files_agree(encoder: colqwen.Encoder, tmp_path: Path) -> None:
    im = page_image()
    path = tmp_path / "page.png"
    im.save(path)
    a = encoder.encode_document(im)
    b = encoder.encode_document(np.asarray(im))
    c = encoder.encode_document(str(path))
    d = encoder.encode_document([im.convert("RGBA")])[0]
    assert a.shape[1] == encoder.dim and a.shape[0] > 10
    for other in (b, c, d):
        assert np.array_equal(a, other)
    with pytest.raises(colqwen.UsageError):
        encoder.encode_document(np.zeros((10, 10, 3), dtype=np.float64))


def test_similarity_is_maxsim(encoder: colqwen.Encoder) -> None:
    qs = encoder.encode_query(["first question", "second one"])
    ds = encoder.encode_document([page_image(1), page_image(2, (500, 300)), page_image(3)])
    scores = encoder.similarity(qs, ds)
    assert scores.shape == (2, 3) and scores.dtype == np.float32
    expected = np.array([[(q @ d.T).max(axis=1).sum() for d in ds] for q in qs])
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


def test_the_encoder_and_the_index_give_the_same_query_vectors(encoder: colqwen.Encoder, tmp_path: Path) -> None:
    from conftest import TINY

    index = colqwen.Index.open(tmp_path / "idx", model=str(TINY), device="cpu")
    queries = ["reset the firmware", "annotations table"]
    for mine, theirs in zip(encoder.encode_query(queries), index.embed_queries(queries)):
        assert np.array_equal(mine, theirs)


def test_errors(encoder: colqwen.Encoder, tmp_path: Path) -> None:
    with pytest.raises(colqwen.EmptyQueryError):
        encoder.encode_query(["fine", " "])
    with pytest.raises(colqwen.ModelError) as e:
        colqwen.Encoder.from_pretrained(str(tmp_path), device="cpu", offline=True)
    assert e.value.hint
