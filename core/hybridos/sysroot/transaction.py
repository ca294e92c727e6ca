"""A transaction: one lock, named steps, progress events and cancellation.

The CLI today and a daemon later drive the same code: an operation receives a ``Transaction`` and wraps each
of its steps in ``with tx.step("name"):``. Before the commit point (the ``boot/loader`` swap) a cancellation
stops the operation at the next step; after it, the operation runs to the end.

Test hook: ``HYBRIDOS_TEST_ABORT_AT=<step>`` kills the process (SIGKILL, no cleanup) as that step starts, so
crash tests can check that every step leaves a usable sysroot.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hybridos.errors import Cancelled
from hybridos.sysroot.lock import SysrootLock

ABORT_ENV = "HYBRIDOS_TEST_ABORT_AT"


@dataclass(frozen=True)
class Event:
    """``kind`` is "start", "end", "message" or "progress"; ``elapsed`` is set on "end"."""

    kind: str
    step: str
    message: str = ""
    elapsed: float = 0.0
    done: int = 0
    total: int = 0


class Transaction:
    """``with Transaction(sysroot, "upgrade") as tx:`` holds the sysroot lock until the block ends."""

    def __init__(self, sysroot: Path, title: str, *, on_event: Callable[[Event], None] | None = None,
                 lock_timeout: float | None = None, lock: bool = True,
                 make_meter: Callable[[str], object] | None = None):
        self.sysroot = Path(sysroot)
        self.title = title
        self.on_event = on_event
        #: builds the download counter of a step (``Progress``-like: advance, total_items, done); the CLI draws
        #: it on a terminal, the daemon turns it into DownloadProgress signals
        self.make_meter = make_meter
        self.events: list[Event] = []
        self.steps: list[str] = []
        self.committed = False
        #: how new deployments are written: None stages them on the running system and deploys them at once
        #: on an offline sysroot; True/False forces it (``sysroot.staging``)
        self.stage: bool | None = None
        #: a staged deployment is not finalized at shutdown (``--lock-finalization``)
        self.lock_finalization = False
        self._cancel = threading.Event()
        self._lock = SysrootLock(self.sysroot, lock_timeout) if lock else None
        self._old_handler = None

    # -- lifecycle ----------------------------------------------------------------------------------

    def __enter__(self) -> Transaction:
        if self._lock is not None:
            self._lock.acquire()
        if threading.current_thread() is threading.main_thread():
            self._old_handler = signal.signal(signal.SIGTERM, lambda *_: self.cancel())
        return self

    def __exit__(self, *exc) -> None:
        if self._old_handler is not None:
            signal.signal(signal.SIGTERM, self._old_handler)
            self._old_handler = None
        if self._lock is not None:
            self._lock.release()

    def cancel(self) -> None:
        """Ask the transaction to stop at the next step (ignored after the commit point)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def commit_point(self) -> None:
        """From here on the operation must finish: cancellation no longer applies."""
        self.committed = True

    # -- steps and events ---------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def check_cancelled(self) -> None:
        if self.cancelled and not self.committed:
            raise Cancelled(f"{self.title} cancelled; the sysroot is unchanged")

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.check_cancelled()
        if os.environ.get(ABORT_ENV) == name:
            os.kill(os.getpid(), signal.SIGKILL)
        self.steps.append(name)
        self._emit(Event("start", name))
        t0 = time.monotonic()
        yield
        self._emit(Event("end", name, elapsed=time.monotonic() - t0))

    def message(self, text: str) -> None:
        self._emit(Event("message", self.steps[-1] if self.steps else "", message=text))

    def meter(self, label: str):
        """A download counter for the current step (a ``hybridos.util.progress.Progress`` by default)."""
        if self.make_meter is not None:
            return self.make_meter(label)
        from hybridos.util.progress import Progress

        return Progress(label)

    def progress(self, done: int, total: int) -> None:
        self._emit(Event("progress", self.steps[-1] if self.steps else "", done=done, total=total))


def null_transaction(sysroot: Path, title: str = "operation") -> Transaction:
    """A transaction without the lock, for callers that already hold it."""
    return Transaction(sysroot, title, lock=False)
