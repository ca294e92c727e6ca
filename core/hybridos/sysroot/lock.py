"""One lock per sysroot: ``ostree/lock``, the file ``ostree admin`` locks too.

libostree takes an open-file-description lock on it; POSIX record locks (``lockf``) conflict with those, so
hybridos and ostree never change one sysroot at once. A second command waits briefly, then names the holder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import time
from pathlib import Path

from hybridos.errors import SysrootError
from hybridos.sysroot.mounts import ensure_writable
from hybridos.sysroot.sysroot import not_a_sysroot_hint

LOCK_PATH = "ostree/lock"
DEFAULT_TIMEOUT = 3.0

#: sysroots this process holds the lock of: POSIX record locks vanish when the process closes ANY descriptor
#: of the file, so ``lock_holder`` must not open the lock file of a sysroot locked here
_HELD: set[Path] = set()

# struct flock on Linux: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
_FLOCK = "hhqqi4x"


def lock_holder(sysroot: Path) -> int | None:
    """The pid holding the sysroot lock (0 when held through an open-file-description lock, as ostree does),
    or None when it is free."""
    if Path(sysroot).resolve() in _HELD:
        return os.getpid()
    try:
        fd = os.open(sysroot / LOCK_PATH, os.O_RDWR)
    except OSError:
        return None
    try:
        req = struct.pack(_FLOCK, fcntl.F_WRLCK, 0, 0, 0, 0)
        res = fcntl.fcntl(fd, fcntl.F_GETLK, req)
        l_type, _, _, _, pid = struct.unpack(_FLOCK, res)
        if l_type == fcntl.F_UNLCK:
            return None
        return pid if pid > 0 else 0
    finally:
        os.close(fd)


def describe_pid(pid: int) -> str:
    if pid <= 0:
        return "another process (ostree?)"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmd = ""
    return f"pid {pid}" + (f" ({cmd})" if cmd else "")


class SysrootLock:
    """``with SysrootLock(path):`` holds the exclusive lock; ``timeout`` seconds of waiting at most."""

    def __init__(self, sysroot: Path, timeout: float | None = None):
        self.sysroot = Path(sysroot)
        env = os.environ.get("HYBRIDOS_LOCK_TIMEOUT")
        self.timeout = timeout if timeout is not None else (float(env) if env else DEFAULT_TIMEOUT)
        self.fd: int | None = None

    def acquire(self) -> None:
        path = self.sysroot / LOCK_PATH
        if not path.parent.is_dir():
            raise SysrootError(f"{self.sysroot} is not an OSTree sysroot (no ostree/)",
                               hint=not_a_sysroot_hint(self.sysroot))
        ensure_writable(self.sysroot)   # a booted host's read-only /sysroot and /boot, as ostree_sysroot_lock
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise SysrootError(f"cannot open the sysroot lock {path}: {exc.strerror}") from None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise SysrootError(f"cannot lock {path}: {exc.strerror}") from None
            if time.monotonic() >= deadline:
                holder = lock_holder(self.sysroot)
                os.close(fd)
                who = describe_pid(holder) if holder is not None else "another process"
                raise SysrootError(f"sysroot {self.sysroot} is locked by {who}",
                                   hint="wait for it to finish, or run `hybridos cancel`")
            time.sleep(0.05)
        self.fd = fd
        _HELD.add(self.sysroot.resolve())

    def release(self) -> None:
        if self.fd is not None:
            _HELD.discard(self.sysroot.resolve())
            with contextlib.suppress(OSError):
                fcntl.lockf(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> SysrootLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
