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


@contextlib.contextmanager
def repo_lock(repo: Repo, *, exclusive: bool = False, timeout: float = 30.0) -> Iterator[None]:
    """Hold the repository lock (shared or exclusive) for the block; LockTimeout after ``timeout`` seconds."""
    path = os.path.join(repo.path, ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        want = fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.fcntl(fd, _F_OFD_SETLK, _flock(want))
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"{repo.path} is locked by another process (waited {timeout:.0f}s)") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the description releases the lock


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
