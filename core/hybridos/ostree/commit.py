"""Commit a directory tree: content objects in parallel (hashing and zlib release the GIL), then dirtrees
bottom-up, the commit object, a filesystem sync, and only then the ref.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hybridos.errors import FormatError, NotFoundError
from hybridos.ostree import content as _content
from hybridos.ostree.devino import DevinoCache
from hybridos.ostree.objects import Commit, DirMeta, DirTree, FileHeader
from hybridos.ostree.refs import validate_ref

if TYPE_CHECKING:
    from hybridos.ostree.repo import Repo
    from hybridos.util.progress import Progress

_KINDS = {stat.S_IFCHR: "character device", stat.S_IFBLK: "block device", stat.S_IFIFO: "fifo",
          stat.S_IFSOCK: "socket"}


@dataclass(frozen=True)
class CommitOptions:
    owner_uid: int | None = None
    owner_gid: int | None = None
    xattrs: bool = True
    canonical: bool = False  # bare-user-only: uid/gid 0, no xattrs, permissions & 0755
    #: (absolute path in the commit, st_mode) -> extra xattrs ((name, value) pairs) replacing those on disk,
    #: e.g. ``security.selinux`` labels from a policy (ostree's commit modifier with a sepolicy)
    xattr_hook: Callable[[str, int], tuple[tuple[str, bytes], ...]] | None = None


@dataclass
class _Dir:
    path: str
    meta: str
    files: list[list] = field(default_factory=list)  # [name, checksum]; a worker fills in the checksum
    dirs: list[tuple[str, _Dir]] = field(default_factory=list)


def default_workers() -> int:
    return min(8, (os.cpu_count() or 1) + 1)


def _check_name(name: str, parent: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(name).decode("utf-8", "backslashreplace")
        raise FormatError(f"cannot commit {os.path.join(parent, shown)!r}: the file name is not valid UTF-8") from None


class _TreeWriter:
    def __init__(self, repo: Repo, opts: CommitOptions, pool: ThreadPoolExecutor, devino: DevinoCache | None,
                 progress: Progress | None, max_in_flight: int):
        self.repo = repo
        self.opts = opts
        self.pool = pool
        self.devino = devino
        self.progress = progress
        self._meta_cache: dict[bytes, str] = {}
        # at most this many files queued or in flight: memory stays flat however large the tree is
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self.error: BaseException | None = None
        self.root = ""

    # ---------------------------------------------------------------------------------------- metadata
    def _owner(self, st: os.stat_result) -> tuple[int, int]:
        o = self.opts
        if o.canonical:
            return 0, 0
        return (st.st_uid if o.owner_uid is None else o.owner_uid,
                st.st_gid if o.owner_gid is None else o.owner_gid)

    def _mode(self, mode: int) -> int:
        return _content.canonical_bareuseronly_mode(mode) if self.opts.canonical else mode

    def _xattrs(self, path: str, follow: bool, mode: int = 0) -> tuple:
        if not self.opts.xattrs or self.opts.canonical:
            return ()
        found = _content.read_xattrs(path, follow=follow)
        hook = self.opts.xattr_hook
        if hook is None:
            return found
        rel = "/" + os.path.relpath(path, self.root) if path != self.root else "/"
        extra = {n.encode() + b"\0": v for n, v in hook(rel, mode)}
        if not extra:
            return found
        merged = {n: v for n, v in found if n not in extra}
        merged.update(extra)
        return tuple(sorted(merged.items()))

    def dirmeta(self, path: str, st: os.stat_result) -> str:
        uid, gid = self._owner(st)
        data = DirMeta(uid, gid, self._mode(st.st_mode), self._xattrs(path, True, st.st_mode)).serialize()
        c = self._meta_cache.get(data)
        if c is None:
            from hybridos.ostree.objects import ObjectType
            c = self.repo.write_metadata_bytes(ObjectType.DIR_META, data)
            self._meta_cache[data] = c
        return c

    # ---------------------------------------------------------------------------------------- files
    def _store_file(self, entry: list, path: str, header: FileHeader) -> None:
        try:
            if self.error is not None:
                return
            with open(path, "rb", buffering=0) as f:
                entry[1] = _content.write_content(self.repo, header, f)
            if self.progress is not None:
                self.progress.advance(1, header.size)
        except FileNotFoundError:
            self.error = self.error or NotFoundError(f"{path} disappeared while committing")
        except BaseException as exc:  # handed to the committing thread
            self.error = self.error or exc
        finally:
            self._slots.release()

    def _submit(self, entry: list, path: str, header: FileHeader) -> None:
        self._slots.acquire()
        if self.error is not None:
            self._slots.release()
            raise self.error
        self.pool.submit(self._store_file, entry, path, header)

    def walk(self, path: str, st: os.stat_result) -> _Dir:
        node = _Dir(path, self.dirmeta(path, st))
        devino = self.devino
        need_stat_for_devino = self.opts.owner_uid is not None or self.opts.owner_gid is not None
        with os.scandir(path) as it:
            entries = list(it)
        for e in entries:
            name = e.name
            _check_name(name, path)
            if devino is not None and (e.is_file(follow_symlinks=False) or e.is_symlink()):
                if need_stat_for_devino:
                    est = e.stat(follow_symlinks=False)
                    hit = devino.lookup(est.st_dev, est.st_ino)
                    if hit and self._owner(est) != (est.st_uid, est.st_gid):
                        hit = None
                else:
                    hit = devino.lookup(st.st_dev, e.inode())
                if hit is not None:
                    node.files.append([name, hit])
                    if self.progress is not None:
                        self.progress.advance(1)
                    continue
            est = e.stat(follow_symlinks=False)
            fmt = stat.S_IFMT(est.st_mode)
            child = e.path
            if fmt == stat.S_IFDIR:
                node.dirs.append((name, self.walk(child, est)))
            elif fmt == stat.S_IFREG:
                uid, gid = self._owner(est)
                header = FileHeader(uid, gid, self._mode(est.st_mode), "", self._xattrs(child, False, est.st_mode),
                                    size=est.st_size)
                entry = [name, None]
                node.files.append(entry)
                self._submit(entry, child, header)
            elif fmt == stat.S_IFLNK:
                uid, gid = self._owner(est)
                target = os.readlink(child)
                try:
                    target.encode("utf-8")
                except UnicodeEncodeError:
                    raise FormatError(f"cannot commit {child!r}: the symlink target is not valid UTF-8") from None
                header = FileHeader(uid, gid, est.st_mode, target, self._xattrs(child, False, est.st_mode))
                node.files.append([name, _content.write_content(self.repo, header, None)])
                if self.progress is not None:
                    self.progress.advance(1)
            else:
                kind = _KINDS.get(fmt, f"file of type {fmt:o}")
                raise FormatError(f"cannot commit {child!r}: it is a {kind}; only regular files, symlinks and "
                                  "directories can be stored")
        return node

    def finish(self, node: _Dir) -> tuple[str, str]:
        """Write the dirtrees bottom-up (every content checksum is known by now)."""
        dirs = [(n, *self.finish(d)) for n, d in node.dirs]
        return self.repo.write_dirtree(DirTree(tuple((n, c) for n, c in node.files), tuple(dirs))), node.meta


def write_tree(repo: Repo, src_dir: str | os.PathLike, *, owner_uid: int | None = None, owner_gid: int | None = None,
               xattrs: bool = True, devino_cache: DevinoCache | bool | None = None, workers: int | None = None,
               progress: Progress | None = None, xattr_hook=None) -> tuple[str, str]:
    """Store the content and directory objects of ``src_dir``; returns (root dirtree, root dirmeta).

    ``xattr_hook(path, st_mode)`` (see :class:`CommitOptions`) adds or replaces extended attributes."""
    src = os.fspath(src_dir)
    try:
        st = os.lstat(src)
    except FileNotFoundError:
        raise NotFoundError(f"cannot commit {src}: no such directory") from None
    if not stat.S_ISDIR(st.st_mode):
        raise FormatError(f"cannot commit {src}: not a directory")
    opts = CommitOptions(owner_uid, owner_gid, xattrs, canonical=repo.mode.value == "bare-user-only",
                         xattr_hook=xattr_hook)
    if xattr_hook is not None:
        devino_cache = None          # a cached object carries the xattrs of another path
    if devino_cache is True:
        devino_cache = DevinoCache.scan(repo)
    elif devino_cache is False:
        devino_cache = None
    workers = workers or default_workers()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="commit") as pool:
        tw = _TreeWriter(repo, opts, pool, devino_cache, progress, max_in_flight=workers * 4)
        tw.root = src
        try:
            root = tw.walk(src, st)
        except BaseException as exc:
            tw.error = tw.error or exc  # queued files are skipped
            raise
    if tw.error is not None:
        raise tw.error
    return tw.finish(root)


def commit_tree(repo: Repo, src_dir: str | os.PathLike, *, branch: str | None = None, subject: str = "",
                body: str = "", metadata: dict | None = None, parent: str | None = None,
                timestamp: int | None = None, owner_uid: int | None = None, owner_gid: int | None = None,
                xattrs: bool = True, devino_cache: DevinoCache | bool | None = None, bind_ref: bool = True,
                workers: int | None = None, progress: Progress | None = None, xattr_hook=None) -> str:
    """Commit ``src_dir``; returns the commit checksum. With ``branch``, the ref moves last.

    parent: None = the branch's current commit (if any); "none" = no parent; else a rev.
    """
    if branch is not None:
        validate_ref(branch)
    if parent is None:
        parent_csum = repo.resolve_rev(branch, allow_missing=True) if branch else None
    elif parent == "none":
        parent_csum = None
    else:
        parent_csum = repo.resolve_rev(parent)
    from hybridos.ostree.lock import cleanup_tmp

    with repo.lock():
        cleanup_tmp(repo)
        root_tree, root_meta = write_tree(repo, src_dir, owner_uid=owner_uid, owner_gid=owner_gid, xattrs=xattrs,
                                          devino_cache=devino_cache, workers=workers, progress=progress,
                                          xattr_hook=xattr_hook)
        meta = dict(metadata or {})
        if branch and bind_ref:
            meta.setdefault("ostree.ref-binding", [branch])
        commit = Commit(metadata=meta, parent=parent_csum, subject=subject, body=body,
                        timestamp=int(time.time()) if timestamp is None else int(timestamp),
                        root_tree=root_tree, root_meta=root_meta)
        checksum = repo.write_commit(commit)
        repo.sync()
        if branch:
            repo.set_ref(branch, checksum)
    return checksum
