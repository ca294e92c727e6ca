"""The three-way /etc merge (libostree's ``merge_configuration``).

The merge deployment's ``usr/etc`` (what its image shipped) is compared with its ``etc`` (what the admin
made of it). Paths the admin deleted are deleted in the new deployment's ``etc``; paths added or modified are
copied whole over it: local changes always win, contents are never merged line by line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from hybridos.errors import SysrootError
from hybridos.util import inroot
from hybridos.util.files import copy_fd, same_bytes


@dataclass(frozen=True)
class EtcDiff:
    """Paths relative to etc/, sorted; a directory that was added or removed is listed once, not its contents."""

    added: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.modified or self.removed)

    def summary(self) -> str:
        return f"{len(self.modified)} modified, {len(self.removed)} removed, {len(self.added)} added"


def _scan(path: Path) -> dict[str, os.stat_result]:
    try:
        with os.scandir(path) as it:
            return {e.name: e.stat(follow_symlinks=False) for e in it}
    except FileNotFoundError:
        return {}


def _xattrs(path: Path) -> dict[str, bytes]:
    try:
        return {n: os.getxattr(path, n, follow_symlinks=False) for n in os.listxattr(path, follow_symlinks=False)}
    except OSError:
        return {}


def _same_content(a: Path, b: Path, sa: os.stat_result, sb: os.stat_result) -> bool:
    if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
        return True
    if stat.S_ISLNK(sa.st_mode):
        return os.readlink(a) == os.readlink(b)
    if stat.S_ISREG(sa.st_mode):
        return same_bytes(a, b)
    return True


def _meta_equal(sa: os.stat_result, sb: os.stat_result) -> bool:
    return (sa.st_mode, sa.st_uid, sa.st_gid) == (sb.st_mode, sb.st_uid, sb.st_gid)


def _require_real_dir(path: Path, what: str) -> None:
    """Refuse a ``usr/etc`` or ``etc`` that is (or lies behind) a symlink: it would lead the merge, run as root,
    out of the deployment onto the host's files."""
    root = path.parent.parent if path.name == "etc" and path.parent.name == "usr" else path.parent
    if not inroot.is_real_dir(root, os.path.relpath(path, root)):
        raise SysrootError(f"{path} ({what}) is not a directory inside its deployment (a symbolic link?); "
                           "refusing to merge /etc through it")


def _parents_real(top: Path, rel: str) -> bool:
    """Whether every parent of ``rel`` below ``top`` is a real directory (no symlink on the way)."""
    parent = os.path.dirname(rel)
    return not parent or inroot.is_real_dir(top, parent)


def diff_etc(orig: Path, modified: Path) -> EtcDiff:
    """Compare a deployment's ``usr/etc`` (orig) with its ``etc`` (modified)."""
    for path, what in ((orig, "the image's /etc"), (modified, "the local /etc")):
        if os.path.lexists(path):
            _require_real_dir(path, what)
    added: list[str] = []
    changed: list[str] = []
    removed: list[str] = []

    def walk(rel: str) -> None:
        a, b = _scan(orig / rel), _scan(modified / rel)
        for name in sorted(a.keys() | b.keys()):
            path = f"{rel}/{name}" if rel else name
            sa, sb = a.get(name), b.get(name)
            if sb is None:
                removed.append(path)
            elif sa is None:
                added.append(path)
            elif stat.S_IFMT(sa.st_mode) != stat.S_IFMT(sb.st_mode):
                changed.append(path)
            elif stat.S_ISDIR(sa.st_mode):
                if not _meta_equal(sa, sb):
                    changed.append(path)
                walk(path)
            elif (not _meta_equal(sa, sb) or not _same_content(orig / path, modified / path, sa, sb)
                  or _xattrs(orig / path) != _xattrs(modified / path)):
                changed.append(path)

    walk("")
    return EtcDiff(tuple(added), tuple(changed), tuple(removed))


def _copy_meta(src: Path, dst: Path, st: os.stat_result) -> None:
    try:
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    except PermissionError:
        if os.geteuid() == 0:
            raise  # only an unprivileged run (tests, user sysroots) may keep its own ownership
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    for name, value in _xattrs(src).items():
        with contextlib.suppress(OSError):
            os.setxattr(dst, name, value, follow_symlinks=False)


def copy_entry(src: Path, dst: Path) -> None:
    """Copy a file, symlink or whole directory with its ownership, mode and xattrs (never hardlinked).

    Files are created 0600 and directories 0700, and get their final owner and mode only once complete: no
    other user can open a new /etc/shadow while it is being written.
    """
    st = os.lstat(src)
    if stat.S_ISDIR(st.st_mode):
        try:
            os.mkdir(dst, 0o700)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(dst).st_mode):
                raise
        for child in sorted(os.listdir(src)):
            copy_entry(src / child, dst / child)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(st.st_mode):
        fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                copy_fd(fin, fout)
            finally:
                os.close(fout)
        finally:
            os.close(fin)
    else:
        os.mknod(dst, (st.st_mode & ~0o7777) | 0o600, st.st_rdev)
    _copy_meta(src, dst, st)


def remove_entry(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def apply_etc_diff(diff: EtcDiff, source_etc: Path, dest_etc: Path) -> None:
    """Replay ``diff`` (taken against ``source_etc``) onto ``dest_etc``.

    Nothing is reached through a symlink: a removal whose parent in ``dest_etc`` is a symlink (the new image
    made that directory a link) has nothing to remove, and parents are made real directories before copies.
    """
    _require_real_dir(source_etc, "the local /etc")
    _require_real_dir(dest_etc, "the new /etc")
    for rel in diff.removed:
        if _parents_real(dest_etc, rel):
            remove_entry(dest_etc / rel)
    for rel in (*diff.modified, *diff.added):
        src, dst = source_etc / rel, dest_etc / rel
        st = os.lstat(src)
        _ensure_parents(source_etc, dest_etc, rel)
        if stat.S_ISDIR(st.st_mode) and rel in diff.modified:
            try:
                dst_st = os.lstat(dst)
            except FileNotFoundError:
                dst_st = None
            if dst_st is not None and stat.S_ISDIR(dst_st.st_mode):
                _copy_meta(src, dst, st)  # a directory whose metadata changed: its entries are diffed apart
                continue
        remove_entry(dst)
        copy_entry(src, dst)


def _ensure_parents(source_etc: Path, dest_etc: Path, rel: str) -> None:
    parts = rel.split("/")[:-1]
    cur = ""
    for part in parts:
        cur = f"{cur}/{part}" if cur else part
        dst = dest_etc / cur
        if dst.is_symlink() or (dst.exists() and not dst.is_dir()):
            remove_entry(dst)
        if not dst.exists():
            dst.mkdir()
            _copy_meta(source_etc / cur, dst, os.lstat(source_etc / cur))


def populate_etc(deployment_dir: Path) -> None:
    """Give a fresh checkout its ``etc``: a copy of ``usr/etc`` (a tree with only ``etc`` has it moved first)."""
    usr_etc, etc = deployment_dir / "usr/etc", deployment_dir / "etc"
    if os.path.lexists(deployment_dir / "usr") and not inroot.is_real_dir(deployment_dir, "usr"):
        raise SysrootError(f"{deployment_dir}: the image's /usr is not a directory (a symbolic link?)")
    if not os.path.lexists(usr_etc):
        if not os.path.lexists(etc):
            return
        if not inroot.is_real_dir(deployment_dir, "etc"):
            raise SysrootError(f"{deployment_dir}: the image's /etc is not a directory (a symbolic link?)")
        os.rename(etc, usr_etc)
    _require_real_dir(usr_etc, "the image's /usr/etc")
    remove_entry(etc)
    copy_entry(usr_etc, etc)
