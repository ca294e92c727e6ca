"""The repository lock: ``<repo>/.lock`` with open-file-description locks, as libostree takes it.

Writers (commit, pull) hold it shared, prune holds it exclusive, so the real ``ostree`` and we never prune objects
from under each other's transactions.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from hybridos.errors import HybridosError

if TYPE_CHECKING:
    from hybridos.ostree.repo import Repo

_F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)


class LockTimeout(HybridosError):
    """Another process holds the repository lock."""


def _flock(l_type: int) -> bytes:
    # struct flock on Linux/64-bit: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
    return struct.pack("hh4xqqi4x", l_type, os.SEEK_SET, 0, 0, 0)


class _Held:
    """This process's hold on one repository's lock: one descriptor, nested shared/exclusive counts."""

    def __init__(self, fd: int):
        self.fd = fd
        self.shared = 0
        self.exclusive = 0


_held: dict[str, _Held] = {}
_guard = threading.RLock()


def _set(fd: int, l_type: int, timeout: float, repo: Repo) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.fcntl(fd, _F_OFD_SETLK, _flock(l_type))
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            if time.monotonic() >= deadline:
                raise LockTimeout(f"{repo.path} is locked by another process (waited {timeout:.0f}s)") from None
            time.sleep(0.05)


@contextlib.contextmanager
def repo_lock(repo: Repo, *, exclusive: bool = False, timeout: float = 30.0) -> Iterator[None]:
    """Hold the repository lock (shared or exclusive) for the block; LockTimeout after ``timeout`` seconds.

    Re-entrant within a process, like libostree's lock stack: a nested shared lock under an exclusive one is
    free, a nested exclusive lock under a shared one upgrades and downgrades again on exit.
    """
    key = os.path.realpath(repo.path)
    with _guard:
        held = _held.get(key)
        if held is None:
            fd = os.open(os.path.join(key, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                _set(fd, fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK, timeout, repo)
            except BaseException:
                os.close(fd)
                raise
            held = _held[key] = _Held(fd)
        elif exclusive and not held.exclusive:
            _set(held.fd, fcntl.F_WRLCK, timeout, repo)
        if exclusive:
            held.exclusive += 1
        else:
            held.shared += 1
    try:
        yield
    finally:
        with _guard:
            if exclusive:
                held.exclusive -= 1
            else:
                held.shared -= 1
            if not held.exclusive and not held.shared:
                os.close(held.fd)  # closing the description releases the lock
                del _held[key]
            elif exclusive and not held.exclusive:
                _set(held.fd, fcntl.F_RDLCK, timeout, repo)  # back to shared


def cleanup_tmp(repo: Repo, max_age: float = 86400.0) -> int:
    """Remove temporary files an interrupted writer left in ``tmp/`` more than ``max_age`` seconds ago
    (by ctime: bare objects get mtime 0 before they are renamed into place)."""
    removed = 0
    now = time.time()
    try:
        entries = list(os.scandir(repo.tmp_dir))
    except FileNotFoundError:
        return 0
    for e in entries:
        try:
            if e.name.startswith(("obj-", "meta-")) and not e.is_dir(follow_symlinks=False) and \
                    now - e.stat(follow_symlinks=False).st_ctime > max_age:
                os.unlink(e.path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed
