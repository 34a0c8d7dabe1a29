"""Progress of an ingest: a tqdm bar when tqdm is installed, else one line on stderr redrawn in place; or a
callable that gets every event. Pages are counted as they are stored; the total grows as files are opened."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Optional, Union

ProgressArg = Union[bool, Callable[..., Any], None]


class _Line:
    """A minimal bar for environments without tqdm."""

    def __init__(self, desc: str) -> None:
        self.total = 0
        self.n = 0
        self.desc = desc
        self._last = 0.0
        self._out = sys.stderr

    def update(self, n: int) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= 0.2:
            self._last = now
            self.refresh()

    def refresh(self) -> None:
        self._out.write(f"\r{self.desc}: {self.n}/{self.total} pages")
        self._out.flush()

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def close(self) -> None:
        self.refresh()
        self._out.write("\n")
        self._out.flush()


class Progress:
    """Draws an ingest's progress from its events."""

    def __init__(self, progress: ProgressArg, files: int) -> None:
        self._callback: Optional[Callable[..., Any]] = progress if callable(progress) else None
        self._bar: Any = None
        self._files = files
        self._done = 0
        if progress is True:
            desc = self._desc()
            try:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=0, unit="page", desc=desc, dynamic_ncols=True)
            except ImportError:
                self._bar = _Line(desc)

    def _desc(self) -> str:
        return f"ingest {self._done}/{self._files} files"

    def event(self, event: tuple) -> None:
        if self._callback is not None:
            self._callback(*event)
        bar = self._bar
        if bar is None:
            return
        kind = event[0]
        if kind == "queued":
            bar.total += event[2]
            bar.refresh()
        elif kind == "stored":
            bar.update(event[2])
        elif kind == "failed" and event[1].get("page_number") is not None:
            bar.update(1)
        elif kind == "done":
            self._done += 1
            bar.set_description(self._desc())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
