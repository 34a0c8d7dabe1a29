"""The encoder API, named as sentence-transformers 6's ``MultiVectorEncoder``: ``encode_query``,
``encode_document``, ``similarity``.

    enc = colqwen.Encoder.from_pretrained("vidore/colqwen2.5-v0.2", device="auto")
    q = enc.encode_query(["how do I reset the firmware"])          # [array (tokens, 128)]
    d = enc.encode_document([PIL.Image.open("page.png")])          # [array (tokens, 128)]
    scores = enc.similarity(q, d)                                  # array (1, 1) of MaxSim
"""

from __future__ import annotations

import os
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from .errors import UsageError

__all__ = ["Encoder", "maxsim"]


def _rgb(image: Any, i: int) -> Tuple[bytes, int, int]:
    """A page image as ``(RGB bytes, width, height)``: a PIL image, an ``uint8`` array ``[H, W, 3]`` (or
    ``[H, W]`` grey, ``[H, W, 4]`` with alpha dropped), or a path to an image file (needs Pillow)."""
    if isinstance(image, np.ndarray):
        a = image
        if a.dtype != np.uint8:
            raise UsageError(f"image {i}: an array of {a.dtype}, not uint8", "pass uint8 pixels [H, W, 3]")
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        if a.ndim != 3 or a.shape[2] not in (3, 4):
            raise UsageError(f"image {i}: an array of shape {a.shape}", "pass pixels as [H, W, 3] (RGB)")
        a = np.ascontiguousarray(a[:, :, :3])
        return a.tobytes(), int(a.shape[1]), int(a.shape[0])
    if isinstance(image, (str, os.PathLike)):
        try:
            from PIL import Image
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("reading image files needs Pillow: pip install pillow") from e
        with Image.open(os.fspath(image)) as im:
            return _rgb(im, i)
    if hasattr(image, "convert") and hasattr(image, "tobytes") and hasattr(image, "size"):  # PIL
        rgb = image if getattr(image, "mode", None) == "RGB" else image.convert("RGB")
        w, h = rgb.size
        return rgb.tobytes(), int(w), int(h)
    raise UsageError(
        f"image {i}: {type(image).__name__} is not an image",
        "pass PIL images, uint8 arrays [H, W, 3] or image file paths",
    )


def _vectors(xs: Any) -> List[np.ndarray]:
    if isinstance(xs, np.ndarray):
        xs = [xs] if xs.ndim == 2 else list(xs)
    return [np.ascontiguousarray(x, dtype=np.float32) for x in xs]


def maxsim(queries: Any, documents: Any) -> np.ndarray:
    """MaxSim of every query multi-vector against every document multi-vector: ``float32 [queries,
    documents]`` (for each query row the best dot product with any document row, summed)."""
    return _core.maxsim(_vectors(queries), _vectors(documents))


class Encoder:
    """A ColQwen model loaded once: queries and page images into multi-vectors (``float32 [tokens, dim]``,
    handed over without a copy), and MaxSim scores."""

    def __init__(self, core: "_core.Encoder") -> None:
        self._core = core

    @classmethod
    def from_pretrained(
        cls,
        model: str = _core.DEFAULT_MODEL,
        *,
        device: str = "auto",
        dtype: str = "auto",
        revision: Optional[str] = None,
        base_model: Optional[str] = None,
        offline: Optional[bool] = None,
        max_visual_tokens: Optional[int] = None,
    ) -> "Encoder":
        """Loads ``model`` (a Hugging Face id or a local folder; ColQwen2.5, ColQwen3 or ColQwen3.5) on
        ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``metal``) in ``dtype`` (``auto``: bf16 on GPUs,
        f32 on the CPU)."""
        if offline is None:
            offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
        core = _core.Encoder.load(
            os.fspath(model),
            device=device,
            dtype=dtype,
            revision=revision,
            base_model=base_model,
            offline=offline,
            hf_token=os.environ.get("HF_TOKEN") or None,
            max_visual_tokens=max_visual_tokens,
        )
        return cls(core)

    def __repr__(self) -> str:
        return f"Encoder({self.model_id!r}, family={self.family!r}, device={self.device!r})"

    @property
    def model_id(self) -> str:
        return self._core.model_id

    @property
    def family(self) -> str:
        return self._core.family

    @property
    def dim(self) -> int:
        """Width of one vector (128 for ColQwen2.5, 320 for ColQwen3)."""
        return self._core.dim

    @property
    def device(self) -> str:
        return self._core.device

    def encode_query(
        self, queries: Union[str, Sequence[str]], batch_size: Optional[int] = None, **_: Any
    ) -> Union[np.ndarray, List[np.ndarray]]:
        """One multi-vector per query (a single array for a single string)."""
        single = isinstance(queries, str)
        out = self._core.encode_queries([queries] if single else list(queries), batch_size)
        return out[0] if single else out

    def encode_document(
        self, images: Any, batch_size: Optional[int] = None, **_: Any
    ) -> Union[np.ndarray, List[np.ndarray]]:
        """One multi-vector per page image: PIL images, ``uint8`` arrays ``[H, W, 3]``, or image file paths (a
        single array for a single image)."""
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        out = self._core.encode_images([_rgb(im, i) for i, im in enumerate(items)], batch_size)
        return out[0] if single else out

    def similarity(self, query_embeddings: Any, document_embeddings: Any) -> np.ndarray:
        """MaxSim scores ``[queries, documents]``."""
        return maxsim(query_embeddings, document_embeddings)

    def query_tokens(self, query: str) -> List[str]:
        """The query's tokens as text, one per row of its multi-vector."""
        return self._core.query_tokens(query)
