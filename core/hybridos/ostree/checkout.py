"""Check out a commit (or a subpath of it) into a directory: hardlinks where the mode allows, else copies."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from hybridos.errors import CorruptionError, FormatError, NotFoundError, UsageError
from hybridos.ostree.objects import BAREUSER_XATTR, DirMeta, DirTree, ObjectType, is_checksum

if TYPE_CHECKING:
    from hybridos.ostree.repo import Repo
    from hybridos.util.progress import Progress

MODES = ("auto", "hardlink", "copy")


def resolve_root(repo: Repo, rev: str | tuple[str, str]) -> tuple[str, str]:
    """(dirtree, dirmeta) of a commit rev, or a (dirtree, dirmeta) pair passed through."""
    if isinstance(rev, tuple):
        tree, meta = rev
        return tree, meta
    checksum = repo.resolve_rev(rev)
    commit = repo.load_commit(checksum)
    return commit.root_tree, commit.root_meta


def find_subpath(repo: Repo, tree: str, meta: str, subpath: str) -> tuple[str, str | None, str | None]:
    """Walk ``subpath`` from a root: ("dir", tree, meta) or ("file", content checksum, None)."""
    parts = [p for p in subpath.split("/") if p and p != "."]
    for i, name in enumerate(parts):
        dt = repo.load_dirtree(tree)
        sub = dt.lookup_dir(name)
        if sub is not None:
            tree, meta = sub
            continue
        f = dt.lookup_file(name)
        if f is not None and i == len(parts) - 1:
            return "file", f, None
        raise NotFoundError(f"no such path in the commit: /{'/'.join(parts[:i + 1])}")
    return "dir", tree, meta


class _Checkout:
    def __init__(self, repo: Repo, mode: str, user_mode: bool, union: bool, progress: Progress | None):
        self.repo = repo
        self.user_mode = user_mode
        self.union = union
        self.progress = progress
        self.set_owner = not user_mode and os.geteuid() == 0
        can_link = self._can_hardlink()
        if mode == "hardlink" and not can_link:
            raise UsageError(f"cannot hardlink-check-out from a {repo.mode.value} repository"
                             f"{' without user mode (-U)' if repo.mode.value == 'bare-user' else ''}"
                             f"{' in user mode' if repo.mode.value == 'bare' and user_mode else ''}; use a copy")
        self.link = can_link and mode != "copy"
        self.strict_link = mode == "hardlink"
        self.bare_user = repo.mode.value == "bare-user"
        self._objdir_fds: dict[str, int] = {}
        self._metas: dict[str, DirMeta] = {}

    def _can_hardlink(self) -> bool:
        m = self.repo.mode.value
        if m == "archive-z2":
            return False
        if m == "bare":
            return not self.user_mode
        if m == "bare-user":
            return self.user_mode
        return True  # bare-user-only

    def close(self) -> None:
        for fd in self._objdir_fds.values():
            os.close(fd)
        self._objdir_fds.clear()

    def _objdir_fd(self, prefix: str) -> int:
        fd = self._objdir_fds.get(prefix)
        if fd is None:
            fd = os.open(f"{self.repo.objects_dir}/{prefix}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            kept = self._objdir_fds.setdefault(prefix, fd)  # another thread may have been first
            if kept != fd:
                os.close(fd)
                fd = kept
        return fd

    # ------------------------------------------------------------------------------------------ files
    def _remove_existing(self, name: str, dfd: int) -> None:
        try:
            st = os.lstat(name, dir_fd=dfd)
        except FileNotFoundError:
            return
        if not self.union:
            raise UsageError(f"cannot check out: {name!r} already exists (use --union to overwrite)")
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"cannot check out: {name!r} is a directory in the destination but a file in the commit")
        os.unlink(name, dir_fd=dfd)

    def _bareuser_is_symlink(self, checksum: str) -> bool:
        """bare-user stores symlinks as regular files: those must be recreated, not linked."""
        path = f"{self.repo.objects_dir}/{checksum[:2]}/{checksum[2:]}.file"
        try:
            meta = os.getxattr(path, BAREUSER_XATTR)
        except OSError:
            return False  # reported properly by the copy path
        return len(meta) >= 12 and stat.S_ISLNK(int.from_bytes(meta[8:12], "big"))

    def file(self, checksum: str, name: str, dfd: int) -> None:
        if self.link and not (self.bare_user and self._bareuser_is_symlink(checksum)):
            ext = "file"
            try:
                os.link(f"{checksum[2:]}.{ext}", name, src_dir_fd=self._objdir_fd(checksum[:2]), dst_dir_fd=dfd,
                        follow_symlinks=False)
                if self.progress is not None:
                    self.progress.advance(1)
                return
            except FileExistsError:
                self._remove_existing(name, dfd)
                return self.file(checksum, name, dfd)
            except FileNotFoundError:
                if not self.repo.has_object(checksum, ObjectType.FILE):
                    raise NotFoundError(f"content object {checksum} is missing from the repository") from None
                raise
            except OSError as exc:
                if exc.errno == errno.EMLINK:
                    # the object's link count is full (ext4: 65,000; many identical files in several
                    # deployments): this one file becomes a copy, as ostree does, even in hardlink mode
                    self._copy(checksum, name, dfd)
                    return
                if exc.errno not in (errno.EXDEV, errno.EPERM) or self.strict_link:
                    raise
                self.link = False
        self._copy(checksum, name, dfd)

    def _copy(self, checksum: str, name: str, dfd: int) -> None:
        header, stream = self.repo.open_content(checksum)
        if self.union:
            self._remove_existing(name, dfd)
        if header.is_symlink:
            os.symlink(header.symlink_target, name, dir_fd=dfd)
            if self.set_owner:
                os.chown(name, header.uid, header.gid, dir_fd=dfd, follow_symlinks=False)
            if not self.user_mode and header.xattrs:
                _set_xattrs(f"/proc/self/fd/{dfd}/{name}", header.xattrs, follow=False)
        else:
            assert stream is not None
            with stream:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=dfd)
                try:
                    with os.fdopen(fd, "wb", closefd=False) as out:
                        shutil.copyfileobj(stream, out, 1 << 20)
                    self._apply(fd, header.uid, header.gid, header.mode, header.xattrs)
                finally:
                    os.close(fd)
        if self.progress is not None:
            self.progress.advance(1, header.size)

    def _apply(self, fd: int, uid: int, gid: int, mode: int, xattrs) -> None:
        """Ownership, xattrs and mode; user mode (like ostree -U) drops setuid/setgid from files only."""
        if self.set_owner:
            os.fchown(fd, uid, gid)
        if not self.user_mode:
            _set_xattrs(fd, xattrs)
        perm = mode & 0o7777
        if self.user_mode and not stat.S_ISDIR(mode):
            perm &= ~(stat.S_ISUID | stat.S_ISGID)
        os.fchmod(fd, perm)

    # ------------------------------------------------------------------------------------------ dirs
    def _make_dir(self, name: str, parent_fd: int | None) -> tuple[int, bool]:
        """mkdir (0700 until its metadata is applied) and open it: (fd, whether it existed already)."""
        existed = False
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            if not self.union:
                raise UsageError(f"cannot check out: {name!r} already exists (use --union to merge)") from None
            st = os.lstat(name, dir_fd=parent_fd)
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=parent_fd)
                os.mkdir(name, 0o700, dir_fd=parent_fd)
            else:
                existed = True
        dfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
        return dfd, existed

    def _dirtree(self, tree: str) -> DirTree:
        """A dirtree, checksum-verified; the normal-form check is fsck's job."""
        data = self.repo.read_metadata_bytes(tree, ObjectType.DIR_TREE)
        if hashlib.sha256(data).hexdigest() != tree:
            raise CorruptionError(f"dirtree object {tree} is corrupt (checksum mismatch)")
        try:
            return DirTree.parse(data, normal_form=False)
        except FormatError as exc:
            raise CorruptionError(f"dirtree object {tree} is corrupt: {exc}") from None

    def files(self, dirtree: DirTree, dfd: int) -> None:
        """Link (fast path) or copy every file of a directory into ``dfd``."""
        if not self.link:
            for fname, checksum in dirtree.files:
                self.file(checksum, fname, dfd)
            return
        link = os.link
        fds = self._objdir_fds
        bare_user = self.bare_user
        for fname, c in dirtree.files:
            if bare_user and self._bareuser_is_symlink(c):
                self._copy(c, fname, dfd)
                continue
            fd = fds.get(c[:2])
            try:
                if fd is None:
                    fd = self._objdir_fd(c[:2])
                link(c[2:] + ".file", fname, src_dir_fd=fd, dst_dir_fd=dfd, follow_symlinks=False)
            except OSError:
                self.file(c, fname, dfd)  # the slow path handles --union, EXDEV fallback and missing objects
        if self.progress is not None:
            self.progress.advance(len(dirtree.files))

    def _dirmeta(self, meta: str) -> DirMeta:
        dirmeta = self._metas.get(meta)
        if dirmeta is None:
            dirmeta = self._metas[meta] = self.repo.load_dirmeta(meta)
        return dirmeta

    def directory(self, tree: str, meta: str, name: str, parent_fd: int, depth: int = 0) -> None:
        """Sequential, post-order: a directory gets its final mode only once it is filled."""
        _check_depth(depth, tree)
        dirmeta = self._dirmeta(meta)
        dirtree = self._dirtree(tree)
        dfd, existed = self._make_dir(name, parent_fd)
        try:
            self.files(dirtree, dfd)
            for dname, t, m in dirtree.dirs:
                self.directory(t, m, dname, dfd, depth + 1)
            if not existed:
                self._apply(dfd, dirmeta.uid, dirmeta.gid, dirmeta.mode, dirmeta.xattrs)
        finally:
            os.close(dfd)

    # Parallel checkout (root only: root may fill a directory after its final mode is set, so every directory is
    # finished at once and directories are independent tasks; the I/O of several overlaps).
    def run_parallel(self, tree: str, meta: str, parent: str, name: str, workers: int = 3) -> None:
        self._pending = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._error: BaseException | None = None
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="checkout") as pool:
            self._pool = pool
            self._spawn(tree, meta, parent, name)
            self._done.wait()
        if self._error is not None:
            raise self._error

    def _spawn(self, tree: str, meta: str, parent: str, name: str, depth: int = 0) -> None:
        with self._lock:
            self._pending += 1
        self._pool.submit(self._dir_task, tree, meta, parent, name, depth)

    def _dir_task(self, tree: str, meta: str, parent: str, name: str, depth: int = 0) -> None:
        try:
            if self._error is None:
                _check_depth(depth, tree)
                dirmeta = self._dirmeta(meta)
                dirtree = self._dirtree(tree)
                path = os.path.join(parent, name)
                dfd, existed = self._make_dir(path, None)
                try:
                    if not existed:
                        self._apply(dfd, dirmeta.uid, dirmeta.gid, dirmeta.mode, dirmeta.xattrs)
                    self.files(dirtree, dfd)
                finally:
                    os.close(dfd)
                for dname, t, m in dirtree.dirs:
                    self._spawn(t, m, path, dname, depth + 1)
        except BaseException as exc:  # handed to the caller of run_parallel
            self._error = self._error or exc
        finally:
            with self._lock:
                self._pending -= 1
                if self._pending == 0:
                    self._done.set()


#: directories nested deeper than this are refused: real trees stay far below it, paths beyond it no longer fit
#: PATH_MAX with short names, and a walk that deep would exhaust the stack
MAX_DEPTH = 256


def _check_depth(depth: int, tree: str) -> None:
    if depth > MAX_DEPTH:
        raise FormatError(f"the tree nests directories deeper than {MAX_DEPTH} levels (at dirtree {tree[:12]}); "
                          "refusing to check it out")


def _set_xattrs(target, xattrs, follow: bool = True) -> None:
    for n, v in xattrs:
        os.setxattr(target, n[:-1].decode("utf-8", "surrogateescape"), v, follow_symlinks=follow)


def checkout(repo: Repo, rev: str | tuple[str, str], dest: str | os.PathLike, *, mode: str = "auto",
             user_mode: bool = False, union: bool = False, subpath: str | None = None,
             progress: Progress | None = None, parallel: bool = False) -> None:
    """Check out ``rev`` (a commit rev or a (dirtree, dirmeta) pair) at ``dest``.

    mode: "auto" hardlinks where the repository mode allows and falls back to copies; "hardlink" insists;
    "copy" always copies. ``user_mode`` (-U) ignores ownership and xattrs and drops setuid/setgid bits.
    ``parallel`` (root only) fills directories from several threads: it helps when the repository is not in the
    page cache; with a warm cache one thread is faster (no GIL hand-offs), so it is off by default.
    """
    if mode not in MODES:
        raise UsageError(f"unknown checkout mode {mode!r} (expected one of {', '.join(MODES)})")
    if isinstance(rev, str) and not rev:
        raise UsageError("no commit given to check out")
    tree, meta = resolve_root(repo, rev)
    for c in (tree, meta):
        if not is_checksum(c):
            raise FormatError(f"invalid checksum {c!r}")
    kind, tree, meta = find_subpath(repo, tree, meta, subpath) if subpath else ("dir", tree, meta)
    dest = os.path.abspath(os.fspath(dest))
    parent, name = os.path.split(dest.rstrip("/") or "/")
    if not os.path.isdir(parent):
        raise NotFoundError(f"cannot check out to {dest}: {parent} is not a directory")
    co = _Checkout(repo, mode, user_mode, union, progress)
    pfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if kind == "file":
            assert tree is not None
            co.file(tree, name, pfd)
        elif parallel and os.geteuid() == 0:
            assert tree is not None and meta is not None
            co.run_parallel(tree, meta, parent, name)
        else:
            assert tree is not None and meta is not None
            co.directory(tree, meta, name, pfd)
    finally:
        os.close(pfd)
        co.close()
