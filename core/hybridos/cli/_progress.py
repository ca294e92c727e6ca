"""How host transactions look on the command line, in-process or through the daemon.

On a terminal: one line on stderr that shows the running task as a phrase ("Receiving the new commit...") and
the download counter, redrawn in place and cleared at the end. Through a pipe: no escape codes and no task
lines, only the transaction's messages and results as plain lines on stdout (scripts read those).
"""

from __future__ import annotations

import sys
from typing import TextIO

import click


class TaskLine:
    """Receives task begin/end, messages and progress text; draws them on one terminal line."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.quiet = quiet
        self._shown = False

    def _draw(self, text: str) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K" + text)
            self.stream.flush()
            self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    def task(self, phrase: str) -> None:
        self._draw(f"{phrase}...")

    def progress(self, text: str) -> None:
        self._draw(text)

    def message(self, text: str) -> None:
        if self.quiet:
            return
        self.clear()
        click.echo(text)

    # in-process: a Transaction's events
    def on_event(self, event) -> None:
        from hybridos.operations.phrases import phrase

        if event.kind == "message":
            self.message(event.message)
        elif event.kind == "start":
            self.task(phrase(event.step))


class LineMeter:
    """A download counter (``Progress``'s interface) that draws through a ``TaskLine``."""

    def __init__(self, line: TaskLine, label: str):
        from hybridos.util.progress import Progress

        self._line = line
        self._progress = Progress(label, enabled=False)

    def __getattr__(self, name):
        return getattr(self._progress, name)

    def __setattr__(self, name, value):
        if name in ("total_items", "total_bytes", "label"):
            setattr(self._progress, name, value)
        else:
            object.__setattr__(self, name, value)

    def advance(self, items: int = 0, nbytes: int = 0) -> None:
        import time

        p = self._progress
        p.advance(items, nbytes)
        now = time.monotonic()
        if self._line.enabled and now - p._last_draw >= 0.1:
            p._last_draw = now
            self._line.progress(p._line(now))

    def done(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.done()
