"""A booted host's read-only mounts, made writable for a transaction the way libostree does.

On an OSTree-booted system (``/run/ostree-booted`` exists and the sysroot is ``/``) the physical root is
mounted at ``/sysroot`` and ``/boot`` is a partition or a bind mount of ``/sysroot/boot``; either may be mounted
read-only (ostree's ``sysroot.readonly``). Before changing such a sysroot libostree moves the process into a
private mount namespace (``ostree_sysroot_initialize_with_mount_namespace``: ``unshare(CLONE_NEWNS)`` unless it
already has one of its own) and remounts ``/sysroot`` and ``/boot`` read-write there
(``_ostree_sysroot_ensure_writable``), so the rest of the system keeps seeing them read-only.

:func:`ensure_writable` does the same, less invasively first: a read-only *mount* (a bind remount, what
``mount -o remount,bind,ro`` sets) only loses its own read-only flag inside the namespace; only when the
filesystem itself is read-only is it remounted read-write (as libostree always does). It must run on the
thread that does the work, before it starts other threads: a mount namespace belongs to the thread that
unshares it and to the threads and processes it creates afterwards (so the check reads ``/proc/thread-self``).
"""

from __future__ import annotations

import os

from hybridos.errors import SysrootError

BOOTED_FLAG = "/run/ostree-booted"
WRITABLE_MOUNTS = ("/sysroot", "/boot")

CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_RELATIME = 1 << 21
MS_SILENT = 1 << 15
#: statvfs f_flag bits that are also mount(2) per-mount flags (same values on Linux): nosuid, nodev, noexec,
#: synchronous, mandlock, noatime, nodiratime, relatime
_KEPT_FLAGS = 2 | 4 | 8 | 16 | 64 | 1024 | 2048 | 4096


def is_booted_root(sysroot: str | os.PathLike) -> bool:
    """Whether ``sysroot`` is this running system's ``/`` and the system was booted by OSTree."""
    try:
        return os.path.exists(BOOTED_FLAG) and os.path.samefile(sysroot, "/")
    except OSError:
        return False


def _libc():
    import ctypes.util  # only when remounting: ctypes costs `status` ~10 ms at start-up

    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _mount(libc, target: str, flags: int) -> None:
    import ctypes

    if libc.mount(target.encode(), target.encode(), None, flags, b"") != 0:
        err = ctypes.get_errno()
        raise SysrootError(f"cannot remount {target} read-write: {os.strerror(err)}",
                           hint="run as root; the sysroot of a booted system is changed by root only")


def in_own_mount_namespace() -> bool:
    """Whether this process already has a mount namespace other than init's (as libostree checks)."""
    try:
        return os.readlink("/proc/1/ns/mnt") != os.readlink("/proc/thread-self/ns/mnt")
    except OSError:
        return False


def _read_only(path: str) -> bool | None:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SysrootError(f"cannot inspect {path}: {exc.strerror}") from None


def ensure_writable(sysroot: str | os.PathLike, mounts: tuple[str, ...] = WRITABLE_MOUNTS) -> list[str]:
    """Make ``/sysroot`` and ``/boot`` writable for this process when ``sysroot`` is the booted ``/``.

    Returns the mount points remounted (empty when there was nothing to do or the sysroot is not booted).
    """
    if not is_booted_root(sysroot):
        return []
    todo = [m for m in mounts if _read_only(m)]
    if not todo:
        return []
    import ctypes

    libc = _libc()
    if not in_own_mount_namespace() and libc.unshare(CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise SysrootError(f"cannot create a private mount namespace: {os.strerror(err)}",
                           hint="run as root; /sysroot and /boot are read-only for everyone else")
    for target in todo:
        flags = os.statvfs(target).f_flag & _KEPT_FLAGS
        _mount(libc, target, MS_REMOUNT | MS_BIND | flags)          # the mount's own read-only flag
        if _read_only(target):                                      # the filesystem itself is read-only
            _mount(libc, target, MS_REMOUNT | MS_RELATIME | MS_SILENT)
        if _read_only(target):
            raise SysrootError(f"{target} is still read-only after remounting it read-write")
    return todo

