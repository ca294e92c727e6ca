"""Opening files inside an untrusted tree (a deployment, an image) without ever leaving it.

Every path is resolved relative to the tree's root as if the tree were ``/``: an absolute symlink or ``..``
stays inside (``openat2`` with ``RESOLVE_IN_ROOT``; where the kernel lacks it, the same walk done here one
component at a time with ``O_NOFOLLOW``). ``follow=False`` refuses any symlink on the way. Reads take regular
files only (a FIFO, a device or a directory is refused without blocking) and stop at a size limit.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from collections.abc import Iterator

from hybridos.util.files import copy_fd

#: default limit for small text files read out of an image (os-release, uEnv.txt)
TEXT_LIMIT = 1 << 20

_RESOLVE_NO_XDEV = 0x01
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_IN_ROOT = 0x10
_SYS_OPENAT2 = 437  # the same number on every architecture (added after the syscall tables were unified)
_MAX_LINKS = 40


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class InRootError(OSError):
    """A path inside a tree is not what the caller may read (a symlink out, not a regular file, too big)."""


_libc = None
_have_openat2: bool | None = None


def _openat2(dirfd: int, path: str, flags: int, resolve: int) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    how = _OpenHow(flags | os.O_CLOEXEC, 0, resolve)
    fd = _libc.syscall(_SYS_OPENAT2, dirfd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


def _walk(dirfd: int, path: str, flags: int, follow: bool) -> int:
    """RESOLVE_IN_ROOT by hand: one component at a time, symlinks read and resolved against the root."""
    root = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dirfd)
    stack = [root]   # stack[0] is the root; '..' never pops it
    todo = [p for p in path.split("/") if p not in ("", ".")]
    links = 0
    try:
        while todo:
            part = todo.pop(0)
            if part == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            last = not todo
            fd = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(part, dir_fd=stack[-1])
                os.close(fd)
                if not follow:
                    raise OSError(errno.ELOOP, "symbolic link in the path", path)
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo[:0] = [p for p in target.split("/") if p not in ("", ".")]
                continue
            if not last and not stat.S_ISDIR(st.st_mode):
                os.close(fd)
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            stack.append(fd)
        final = stack.pop() if len(stack) > 1 else os.dup(stack[0])
        try:
            if flags & os.O_PATH:
                return os.dup(final)
            return os.open(f"/proc/self/fd/{final}", flags | os.O_CLOEXEC)
        finally:
            os.close(final)
    finally:
        for fd in stack:
            os.close(fd)


def open_in_root(root: int | str | os.PathLike, path: str, flags: int = os.O_RDONLY, *,
                 follow: bool = True) -> int:
    """An fd for ``path`` resolved inside ``root`` (a directory fd or path); ``follow=False``: no symlinks."""
    global _have_openat2
    own = not isinstance(root, int)
    dirfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if own else root
    try:
        rel = path.lstrip("/") or "."
        if _have_openat2 is not False:
            try:
                resolve = _RESOLVE_NO_MAGICLINKS | (_RESOLVE_IN_ROOT if follow else _RESOLVE_NO_SYMLINKS)
                fd = _openat2(dirfd, rel, flags, resolve)
                _have_openat2 = True
                return fd
            except OSError as exc:
                if exc.errno not in (errno.ENOSYS, errno.EPERM) or _have_openat2:
                    raise
                _have_openat2 = False   # no openat2 here (old kernel, or a seccomp filter)
        return _walk(dirfd, rel, flags, follow)
    finally:
        if own:
            os.close(dirfd)


def stat_in_root(root: int | str | os.PathLike, path: str, *, follow: bool = True) -> os.stat_result | None:
    """The stat of ``path`` inside ``root`` (symlinks resolved inside), None when it does not exist."""
    try:
        fd = open_in_root(root, path, os.O_PATH, follow=follow)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def open_regular(root: int | str | os.PathLike, path: str, *, follow: bool = True,
                 limit: int | None = None) -> int:
    """A read fd for a regular file inside ``root``; InRootError when it is anything else or over ``limit``."""
    fd = open_in_root(root, path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY, follow=follow)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InRootError(errno.EINVAL, "not a regular file", path)
        if limit is not None and st.st_size > limit:
            raise InRootError(errno.EFBIG, f"larger than {limit} bytes", path)
        os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_regular(root: int | str | os.PathLike, path: str, *, limit: int = TEXT_LIMIT,
                 follow: bool = True) -> bytes:
    """The bytes of a regular file inside ``root``, at most ``limit`` of them (a file that grows is cut off)."""
    fd = open_regular(root, path, follow=follow, limit=limit)
    try:
        out = bytearray()
        while len(out) <= limit and (chunk := os.read(fd, min(1 << 20, limit + 1 - len(out)))):
            out += chunk
        if len(out) > limit:
            raise InRootError(errno.EFBIG, f"larger than {limit} bytes", path)
        return bytes(out)
    finally:
        os.close(fd)


def read_text_or_none(root: int | str | os.PathLike, path: str, *, limit: int = TEXT_LIMIT) -> bytes | None:
    """``read_regular``, or None when the path is missing, not a regular file, too big or unreadable."""
    try:
        return read_regular(root, path, limit=limit)
    except OSError:
        return None


def is_real_dir(root: int | str | os.PathLike, path: str) -> bool:
    """Whether ``path`` is a directory inside ``root`` reached without any symlink."""
    try:
        st = stat_in_root(root, path, follow=False)
    except OSError:
        return False
    return st is not None and stat.S_ISDIR(st.st_mode)


def link_or_copy_fd(fd: int, dst: str | os.PathLike) -> None:
    """Hardlink the open file ``fd`` at ``dst`` (a new name), else copy its bytes and mode there."""
    try:
        os.link(f"/proc/self/fd/{fd}", dst, follow_symlinks=True)
        return
    except OSError:
        pass
    st = os.fstat(fd)
    out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, stat.S_IMODE(st.st_mode) & 0o777)
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        copy_fd(fd, out)
    finally:
        os.close(out)


@contextlib.contextmanager
def opened_dir(root: int | str | os.PathLike, path: str, *, follow: bool = True) -> Iterator[int]:
    """A directory fd for ``path`` inside ``root``, closed after the block."""
    fd = open_in_root(root, path, os.O_RDONLY | os.O_DIRECTORY, follow=follow)
    try:
        yield fd
    finally:
        os.close(fd)


def listdir_in_root(root: int | str | os.PathLike, path: str) -> list[str]:
    """Sorted entry names of a directory inside ``root``; [] when it is missing or not a directory."""
    try:
        with opened_dir(root, path) as fd:
            return sorted(os.listdir(fd))
    except (FileNotFoundError, NotADirectoryError):
        return []
