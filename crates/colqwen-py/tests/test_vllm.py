"""vLLM's multi-vector API on `colqwen serve`: `POST /pooling` with `task: token_embed`, text `input` or chat
`messages` with an `image_url`, answered as `data[i].data = [n_tokens][dim]`. The requests are the ones of
vLLM's own example (examples/pooling/token_embed/colqwen3_token_embed_online.py), sent the way it sends them."""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

import colqwen
from conftest import TINY, Server


def post(url: str, payload: dict) -> tuple:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"User-Agent": "Test Client", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def encode_image_base64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_vllm_pooling_requests(server: Server) -> None:
    encoder = colqwen.Encoder.from_pretrained(str(TINY), device="cpu")
    with urllib.request.urlopen(server.url + "/v1/models") as resp:
        model = json.loads(resp.read())["data"][0]["id"]
    api_url = server.url + "/pooling"

    texts = ["Retrieve the city of Singapore", "Retrieve the city of Beijing"]
    status, body = post(api_url, {"model": model, "input": texts})
    assert status == 200, body
    got = [np.array(item["data"], dtype=np.float32) for item in body["data"]]
    for g, want in zip(got, encoder.encode_query(texts)):
        assert np.array_equal(g, want)
    assert body["object"] == "list" and body["data"][0]["object"] == "pooling" and body["model"] == model
    assert body["usage"]["prompt_tokens"] == sum(g.shape[0] for g in got)

    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (320, 240, 3), dtype=np.uint8))
    status, body = post(api_url, {
        "model": model,
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": encode_image_base64(image)}},
            {"type": "text", "text": "Describe the image."},
        ]}],
    })
    assert status == 200, body
    assert np.array_equal(np.array(body["data"][0]["data"], dtype=np.float32), encoder.encode_document(image))

    status, body = post(api_url, {"model": model, "input": "one query", "task": "token_embed"})
    assert status == 200 and len(body["data"]) == 1
    status, body = post(api_url, {"model": model, "input": "x", "task": "embed"})
    assert status == 400 and "token_embed" in body["error"]["message"]
