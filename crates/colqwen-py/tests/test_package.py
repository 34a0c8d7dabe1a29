"""The installed package: imports with numpy alone, ships its type information, exposes its API."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources

import colqwen


def test_import_needs_only_numpy() -> None:
    code = "import sys, colqwen; print(sorted(m for m in ('PIL', 'tqdm', 'openai', 'torch') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip() == "[]"


def test_typed_and_versioned() -> None:
    files = {p.name for p in resources.files("colqwen").iterdir()}
    assert {"py.typed", "_core.pyi", "__init__.py"} <= files
    assert colqwen.__version__ and isinstance(colqwen.CUDA, bool)
    assert colqwen.DEFAULT_MODEL == "vidore/colqwen2.5-v0.2"
    for name in colqwen.__all__:
        assert getattr(colqwen, name) is not None
    assert issubclass(colqwen.PdfError, colqwen.Error) and issubclass(colqwen.EmptyQueryError, ValueError)
    assert colqwen.Index.search.__doc__ and colqwen.Encoder.encode_document.__doc__
