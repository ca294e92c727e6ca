"""Progress reporting: a line on a terminal's stderr, silence otherwise.

Core code reports through a ``Progress`` object (or a plain callback) and never prints itself, so the CLI
today and a daemon later can show the same events.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class Progress:
    """Counts items and bytes for one named step; thread-safe; draws at most 10 times a second."""

    def __init__(self, label: str = "", *, total_items: int | None = None, total_bytes: int | None = None,
                 stream: TextIO | None = None, enabled: bool | None = None):
        self.label = label
        self.total_items = total_items
        self.total_bytes = total_bytes
        self.items = 0
        self.bytes = 0
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._last_draw = 0.0

    def advance(self, items: int = 0, nbytes: int = 0) -> None:
        with self._lock:
            self.items += items
            self.bytes += nbytes
            now = time.monotonic()
            if self.enabled and now - self._last_draw >= 0.1:
                self._last_draw = now
                self._draw(now)

    def set_label(self, label: str) -> None:
        self.label = label

    def _line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-6)
        parts = [self.label] if self.label else []
        if self.total_items:
            parts.append(f"{self.items}/{self.total_items}")
        elif self.items:
            parts.append(f"{self.items}")
        if self.bytes:
            rate = self.bytes / elapsed
            parts.append(f"{human_bytes(self.bytes)} ({human_bytes(rate)}/s)")
            if self.total_bytes and rate > 0:
                left = max(self.total_bytes - self.bytes, 0) / rate
                parts.append(f"{left:.0f}s left")
        return " ".join(parts)

    def _draw(self, now: float) -> None:
        self.stream.write("\r\x1b[K" + self._line(now))
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K" + self._line(time.monotonic()) + "\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.done()
