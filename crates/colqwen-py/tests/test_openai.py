"""The official openai SDK (3.63) against `colqwen serve`, as it really calls: model discovery through
`GET /v1/models`, a short served name, base64 by default (one flat list per input: the row count travels in
`shape`), `usage` filled."""

from __future__ import annotations

import numpy as np
import openai
import pytest

import colqwen
from conftest import TINY, Server


def test_models_and_embeddings_through_the_sdk(server: Server) -> None:
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    models = [m.id for m in sdk.models.list()]
    assert models == [TINY.name]  # the served name: the model's short name
    encoder = colqwen.Encoder.from_pretrained(str(TINY), device="cpu")
    queries = ["reset the firmware", "table of permission specifiers"]
    expected = encoder.encode_query(queries)
    for model in (models[0], str(TINY)):  # the short name and the full path both work
        resp = sdk.embeddings.create(model=model, input=queries)  # the SDK asks for base64 and decodes it
        assert resp.model == models[0]
        for item, want in zip(resp.data, expected):
            rows, dim = item.model_extra["shape"]
            assert (rows, dim) == want.shape
            got = np.asarray(item.embedding, dtype=np.float32).reshape(rows, dim)
            assert np.array_equal(got, want)
        assert resp.usage.prompt_tokens == resp.usage.total_tokens == sum(v.shape[0] for v in expected)
    floats = sdk.embeddings.create(model=models[0], input=queries[0], encoding_format="float")
    assert np.array_equal(np.asarray(floats.data[0].embedding, dtype=np.float32), expected[0])
    with pytest.raises(openai.NotFoundError):
        sdk.embeddings.create(model="text-embedding-3-small", input="x")
