"""Running jobs in forked child processes alongside the parent's own share of the work: CPU-bound Python work
(hashing, parsing, writing many small files) that threads could not share under the GIL.

Each child runs one job and reports, through a pipe, the number the job returns or its error (a
HybridosError keeps its class and message); the parent runs its own job meanwhile, then collects. When the
parent's job fails, or it is interrupted, the children are stopped (SIGTERM) and reaped.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Sequence

from hybridos.errors import HybridosError


def _child(job: Callable[[], int], w: int) -> int:
    # the parent's handlers (a transaction's SIGTERM = cancel) mean nothing here: the parent decides
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        n = job()
        os.write(w, f"d {int(n)}\n".encode())
        return 0
    except HybridosError as exc:
        message = exc.message.replace("\n", " ")
        os.write(w, f"e {type(exc).__name__} {message}\n".encode("utf-8", "replace"))
    except BaseException as exc:   # noqa: BLE001 - reported to the parent, which raises it
        os.write(w, f"e InternalError {type(exc).__name__}: {exc}\n".encode("utf-8", "replace"))
    return 1


def _read_all(fd: int) -> bytes:
    out = b""
    while chunk := os.read(fd, 1 << 16):
        out += chunk
    return out


def _error_class(name: str) -> type[HybridosError] | None:
    """HybridosError or the subclass of that name (defined in hybridos.errors or elsewhere)."""
    todo = [HybridosError]
    while todo:
        cls = todo.pop()
        if cls.__name__ == name:
            return cls
        todo.extend(cls.__subclasses__())
    return None


def _error(line: str) -> HybridosError:
    name, _, message = line.partition(" ")
    cls = _error_class(name)
    if cls is None:
        return HybridosError(f"internal error in a worker process: {message}")
    try:
        return cls(message)
    except TypeError:   # a subclass with other constructor arguments
        return HybridosError(message)


def run_forked(children: Sequence[Callable[[], int]], parent: Callable[[], None]) -> list[int]:
    """Run each of ``children`` in a forked process and ``parent`` here; returns the children's numbers.
    Raises the parent's error, else the first child's (as its HybridosError class)."""
    started: list[tuple[int, int]] = []   # (pid, read fd)
    try:
        for job in children:
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:   # the child: never returns into the caller's code
                code = 1
                try:
                    os.close(r)
                    code = _child(job, w)
                finally:
                    os._exit(code)
            os.close(w)
            started.append((pid, r))
        parent()
        results: list[int] = []
        failure: HybridosError | None = None
        while started:
            pid, r = started[0]
            text = _read_all(r).decode("utf-8", "replace").strip()
            status = os.waitpid(pid, 0)[1]
            os.close(r)
            started.pop(0)
            if text.startswith("d "):
                results.append(int(text[2:]))
            elif failure is None:
                failure = _error(text[2:]) if text.startswith("e ") else HybridosError(
                    f"a worker process died (status {os.waitstatus_to_exitcode(status)})")
        if failure is not None:
            raise failure
        return results
    finally:
        for pid, r in started:   # the parent failed or was interrupted: stop and reap the children
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            os.close(r)
