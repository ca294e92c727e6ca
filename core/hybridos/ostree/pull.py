"""Pulling commits from a remote archive repository (libostree's ``ostree-repo-pull.c``), over any fetcher.

The flow for each requested ref:

1. resolve it: from the remote's ``summary`` when it has one, else from ``refs/heads/REF``;
2. fetch the commit object and its detached metadata (``.commitmeta``, a 404 is fine), verify the commit's
   checksum, its signature when the remote asks for one and its ref binding, mark it
   ``state/<commit>.commitpartial``, store it; then the same for ``--depth`` parents;
3. fetch the dirtrees and dirmetas a tree level at a time, each level as one batch (``Fetcher.read_batch``:
   pipelined over HTTP); then every content object they name that the repository lacks, as one batch, split
   over forked worker processes when there are many (checking and storing is CPU work that threads could
   not share under the GIL). Every object is checked against its checksum before it becomes visible;
   objects already present are not fetched (dirtrees already present are read locally, so a pull
   interrupted halfway resumes where it stopped). From a local archive repository into an archive one, each
   object file is read once, checked and hardlinked (``ostree pull-local`` without its trust shortcut);
4. sync the file system, drop the ``commitpartial`` markers and only then move ``refs/remotes/REMOTE/REF``.
"""

from __future__ import annotations

import configparser
import contextlib
import hashlib
import io
import os
import signal
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

try:   # the store's choice of inflater: the same library decides what is valid deflate data
    from zlib_ng import zlib_ng as zlib
except ImportError:  # pragma: no cover
    import zlib  # type: ignore[no-redef]

from hybridos import fetch as _fetch
from hybridos import gvariant
from hybridos.errors import (
    CorruptionError,
    FetchError,
    FormatError,
    HybridosError,
    NotFoundError,
    SignatureError,
    UsageError,
)
from hybridos.fetch import BodyFile, Fetcher, FetchOptions
from hybridos.ostree import content as _content
from hybridos.ostree import gpg as _gpg
from hybridos.ostree import remotes as _remotes
from hybridos.ostree import sign as _sign
from hybridos.ostree.objects import (
    Commit,
    DirMeta,
    DirTree,
    FileHeader,
    ObjectType,
    Summary,
    is_checksum,
    serialize_bareuser_meta,
    sha256_hex,
    split_sized,
)
from hybridos.ostree.refs import validate_ref
from hybridos.ostree.repo import Repo
from hybridos.util.atomic import atomic_write
from hybridos.util.files import read_fd

_METADATA_PARSERS = {ObjectType.DIR_TREE: DirTree.parse, ObjectType.DIR_META: DirMeta.parse}

#: Content objects per worker process below which a pull stores everything in its own process.
PARALLEL_MIN_OBJECTS = 2000
#: ostree's OSTREE_MAX_METADATA_SIZE: a commit, dirtree, dirmeta or detached metadata larger than this is refused
MAX_METADATA_SIZE = 10 << 20
#: a remote's summary larger than this is refused before it is read whole (remote option max-summary-size)
MAX_SUMMARY_SIZE = 64 << 20
#: a .filez whose header declares more than this is inflated in bounded steps, never whole in memory
INFLATE_IN_MEMORY = 16 << 20

_EXT = {ObjectType.FILE: "filez", ObjectType.DIR_TREE: "dirtree", ObjectType.DIR_META: "dirmeta",
        ObjectType.COMMIT: "commit", ObjectType.COMMIT_META: "commitmeta"}


@dataclass(frozen=True)
class PullResult:
    """What a pull did: refs written (ref -> commit), commits fetched, objects and bytes transferred."""

    remote: str
    refs: dict[str, str]
    commits: tuple[str, ...]
    metadata_objects: int
    content_objects: int
    bytes_transferred: int
    seconds: float
    written_refs: dict[str, str] = field(default_factory=dict)   # full ref names as written
    deltas: tuple[str, ...] = ()    # static deltas used
    notes: tuple[str, ...] = ()     # what a user should know (a delta that could not be used...)

    def describe(self) -> str:
        from hybridos.util.progress import human_bytes
        return (f"{self.metadata_objects} metadata, {self.content_objects} content objects fetched; "
                f"{human_bytes(self.bytes_transferred)} transferred in {self.seconds:.1f} seconds")


def object_url(base: str, checksum: str, otype: ObjectType) -> str:
    return f"{base}/objects/{checksum[:2]}/{checksum[2:]}.{_EXT[otype]}"


def state_marker(repo: Repo, commit: str) -> str:
    return os.path.join(repo.path, "state", f"{commit}.commitpartial")


def parse_remote_mode(config_text: str) -> str | None:
    """The ``[core] mode`` of a remote's ``config`` file (None when it does not say)."""
    cfg = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        cfg.read_string(config_text)
    except configparser.Error:
        raise FetchError("the remote's config file is not a valid key file") from None
    return cfg.get("core", "mode", fallback=None)


class _Transfer:
    """Fetches and stores the objects of one pull; remembers what it already has.

    Metadata (dirtree, dirmeta) is fetched a tree level at a time, each level as one batch; then the content
    objects the trees name and the repository lacks, as one batch (split over forked worker processes when
    there are many: checking and storing them is CPU work that threads could not share under the GIL).
    """

    def __init__(self, repo: Repo, fetcher: Fetcher, base: str, source: str, progress=None,
                 new_fetcher: Callable[[], Fetcher] | None = None, workers: int = 1):
        self.repo = repo
        self.fetcher = fetcher
        self.new_fetcher = new_fetcher
        self.workers = workers
        self.base = base
        self.source = source
        self.progress = progress
        self.claimed: set[tuple[str, ObjectType]] = set()
        self.claimed_files: set[str] = set()
        #: After a static delta from a complete commit: the dirtrees it wrote. A dirtree present here and not
        #: among them belongs to the delta's source commit, whose objects are all present: no need to walk it.
        self.delta_trees: set[str] | None = None
        self.delta_parsed: dict[str, DirTree] = {}
        #: Commits a delta made complete, checked by the delta's own walk (delta_pull.complete_after_delta)
        self.delta_complete: set[str] = set()
        self.content_ext = "filez" if repo.mode.is_archive else "file"
        self.scheduled = 0
        self.metadata_objects = 0
        self.content_objects = 0
        self.bytes = 0
        #: Local source and archive target: object files are checked and hardlinked, not rewritten (the one
        #: place where pull reads the file system itself rather than through the fetch plugin).
        self.adopt_files = repo.mode.is_archive and urlsplit(base).scheme in ("", "file")
        self.local_base = _local_path(base) if self.adopt_files else ""
        self.trusted_owners = {os.geteuid(), 0}
        self.proc_fds: int | None = None
        if self.adopt_files:
            with contextlib.suppress(OSError):
                self.proc_fds = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    # -- fetching --------------------------------------------------------------------------------

    def fetch(self, checksum: str, otype: ObjectType) -> bytes:
        """One object by itself (commits and their detached metadata)."""
        url = object_url(self.base, checksum, otype)
        try:
            data = self.fetcher.read_capped(url, MAX_METADATA_SIZE)
        except NotFoundError:
            raise NotFoundError(f"{_EXT[otype]} object {checksum} is missing on {self.source} ({url})") from None
        self._expect(1)
        self._count(otype, len(data))
        return data

    def fetch_optional(self, checksum: str, otype: ObjectType) -> bytes | None:
        try:
            return self.fetch(checksum, otype)
        except NotFoundError:
            return None

    def _fetch_batch(self, wanted: list[tuple[str, ObjectType]], spool: bool = False):
        """Yield ``((checksum, otype), body)`` for every wanted object, in the order they arrive; the body is
        bytes, or with ``spool`` for a large one, a BodyFile."""
        items = (((c, t), object_url(self.base, c, t)) for c, t in wanted)
        try:
            for key, data in self.fetcher.read_batch(items, self.repo.tmp_dir if spool else None):
                self._count(key[1], data.size if isinstance(data, BodyFile) else len(data))
                yield key, data
        except NotFoundError as exc:
            key = getattr(exc, "key", None)
            if key is None:
                raise
            url = object_url(self.base, *key)
            raise NotFoundError(f"{_EXT[key[1]]} object {key[0]} is missing on {self.source} ({url})") from None

    def _count(self, otype: ObjectType, nbytes: int) -> None:
        self.bytes += nbytes
        if otype is ObjectType.FILE:
            self.content_objects += 1
        else:
            self.metadata_objects += 1
        if self.progress is not None:
            self.progress.advance(1, nbytes)

    def _expect(self, objects: int) -> None:
        """Count objects to come into the progress total."""
        self.scheduled += objects
        if self.progress is not None:
            self.progress.total_items = self.scheduled

    def _corrupt(self, exc: HybridosError, checksum: str, otype: ObjectType) -> CorruptionError:
        url = object_url(self.base, checksum, otype)
        msg = exc.message if checksum in exc.message else f"{_EXT[otype]} object {checksum}: {exc.message}"
        return CorruptionError(f"{msg} (fetched from {url}); the pull was stopped, no ref was changed")

    def close(self) -> None:
        if self.proc_fds is not None:
            os.close(self.proc_fds)
            self.proc_fds = None

    # -- metadata --------------------------------------------------------------------------------

    def pull_trees(self, roots: Sequence[tuple[str, str]]) -> list[str]:
        """Make every dirtree and dirmeta below ``roots`` ((dirtree, dirmeta) pairs) present, a level at a
        time; returns the content objects they name that the repository lacks (each once)."""
        repo = self.repo
        prefix, ext = repo.objects_dir, self.content_ext
        # objects/XX directories that do not exist yet hold no content object (a new repository has none):
        # no need to look for each file there
        empty = {f"{i:02x}" for i in range(256)} - set(_listdir(prefix))
        missing_files: list[str] = []
        level = list(roots)
        while level:
            wanted: list[tuple[str, ObjectType]] = []
            trees: list[DirTree] = []
            for tree, meta in level:
                if (meta, ObjectType.DIR_META) not in self.claimed:
                    self.claimed.add((meta, ObjectType.DIR_META))
                    if not repo.has_object(meta, ObjectType.DIR_META):
                        wanted.append((meta, ObjectType.DIR_META))
                if (tree, ObjectType.DIR_TREE) not in self.claimed:
                    self.claimed.add((tree, ObjectType.DIR_TREE))
                    if repo.has_object(tree, ObjectType.DIR_TREE):
                        if self.delta_trees is not None and tree not in self.delta_trees:
                            continue   # a subtree of the delta's complete source commit
                        parsed = self.delta_parsed.pop(tree, None)   # written and checked by the delta
                        trees.append(parsed if parsed is not None else repo.load_dirtree(tree))
                    else:
                        wanted.append((tree, ObjectType.DIR_TREE))
            self._expect(len(wanted))
            for (_checksum, otype), parsed in self._fetch_metadata(wanted):
                if otype is ObjectType.DIR_TREE:
                    trees.append(parsed)
            level = []
            claimed = self.claimed_files
            for tree in trees:
                for _name, c in tree.files:
                    if c not in claimed:
                        claimed.add(c)
                        if c[:2] in empty or not os.path.lexists(f"{prefix}/{c[:2]}/{c[2:]}.{ext}"):
                            missing_files.append(c)
                level.extend((sub_tree, sub_meta) for _name, sub_tree, sub_meta in tree.dirs)
        return missing_files

    def _check_metadata(self, checksum: str, otype: ObjectType, data: bytes):
        """Check a fetched dirtree or dirmeta against its checksum and form; return it parsed."""
        if len(data) > MAX_METADATA_SIZE:
            raise CorruptionError(f"{_EXT[otype]} object {checksum} is larger than {MAX_METADATA_SIZE} bytes")
        got = hashlib.sha256(data).hexdigest()
        if got != checksum:
            raise CorruptionError(f"{_EXT[otype]} object {checksum} is corrupt: its bytes hash to {got}")
        try:
            return _METADATA_PARSERS[otype](data)
        except FormatError as exc:
            raise CorruptionError(f"{_EXT[otype]} object {checksum} is malformed: {exc}") from None

    def _fetch_metadata(self, wanted: list[tuple[str, ObjectType]]):
        """Yield ``((checksum, otype), parsed)`` for each wanted dirtree or dirmeta, checked and stored."""
        if self.adopt_files:
            for checksum, otype in wanted:
                yield (checksum, otype), self._adopt(
                    checksum, otype, lambda data, c=checksum, t=otype: self._check_metadata(c, t, data))
            return
        for (checksum, otype), data in self._fetch_batch(wanted):
            try:
                parsed = self._check_metadata(checksum, otype, data)
            except CorruptionError as exc:
                raise self._corrupt(exc, checksum, otype) from None
            store_checked_object(self.repo, checksum, otype, data)
            yield (checksum, otype), parsed

    # -- content ---------------------------------------------------------------------------------

    def pull_content(self, checksums: list[str]) -> None:
        """Make the content objects ``checksums`` present (checked before they become visible)."""
        self._expect(len(checksums))
        workers = min(self.workers, max(1, len(checksums) // PARALLEL_MIN_OBJECTS))
        if workers > 1 and self.new_fetcher is not None and hasattr(os, "fork"):
            _run_forked(self, [checksums[i::workers] for i in range(workers)])
        else:
            self.store_content(checksums)

    def store_content(self, checksums: Sequence[str]) -> None:
        if self.adopt_files:
            for checksum in checksums:
                self._adopt_content(checksum)
            return
        store = self._store_filez if self.repo.mode.is_archive else self._store_unpacked
        for (checksum, _otype), body in self._fetch_batch([(c, ObjectType.FILE) for c in checksums], spool=True):
            try:
                if isinstance(body, BodyFile):
                    self._store_large(checksum, body)
                else:
                    store(checksum, body)
            except (CorruptionError, FormatError) as exc:
                raise self._corrupt(exc, checksum, ObjectType.FILE) from None

    def _store_large(self, checksum: str, body: BodyFile) -> None:
        """A content object too large for memory, from a file: checked and stored in bounded chunks."""
        try:
            with open(body.path, "rb") as f:
                if self.repo.mode.is_archive:
                    verify_filez_file(f, checksum)
                    if body.temporary:   # our own file in the repository's tmp/: it becomes the object
                        os.chmod(body.path, 0o644)
                        _content.place_object(self.repo, str(body.path), checksum, ObjectType.FILE)
                    else:
                        f.seek(0)
                        _content.write_object_stream(self.repo, checksum, ObjectType.FILE, f)
                else:
                    self._write_unpacked_stream(checksum, f)
        finally:
            if body.temporary:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(body.path)

    def _write_unpacked_stream(self, checksum: str, f) -> None:
        header = _content.read_filez_header(f, checksum)
        if header.is_symlink:
            if f.read(1):
                raise CorruptionError(f"content object {checksum}: symlink with data")
            self.repo.write_content(header, None, expected=checksum)
        else:   # the store hashes while it writes and places nothing that does not match
            stream = _content.InflateReader(f, header.size, checksum)
            self.repo.write_content(header, stream, expected=checksum)

    def _store_filez(self, checksum: str, data: bytes) -> None:
        verify_filez_bytes(data, checksum)
        store_verified_filez(self.repo, checksum, data)

    def _store_unpacked(self, checksum: str, data: bytes) -> None:
        """bare, bare-user, bare-user-only: regular files in one piece; symlinks by the store's general path; a
        file that declares more than INFLATE_IN_MEMORY bytes streamed from its compressed bytes."""
        if _declared_size(data, checksum) > INFLATE_IN_MEMORY:
            self._write_unpacked_stream(checksum, io.BytesIO(data))
            return
        hit, body = _check_filez(data, checksum)
        if hit.header.is_symlink:
            self.repo.write_archive_filez(checksum, data)
            return
        meta = hit.bareuser_meta if self.repo.mode.value == "bare-user" else None
        _content.write_verified_regular(self.repo, checksum, hit.header, body, meta)

    def _adopt_content(self, checksum: str) -> None:
        self._adopt(checksum, ObjectType.FILE, lambda data: verify_filez_bytes(data, checksum))

    def _adopt(self, checksum: str, otype: ObjectType, check: Callable[[bytes], object]):
        """Local archive -> archive, like ``ostree pull-local``: read the source object once, ``check`` it
        (returns what ``check`` returns), and hardlink that very inode (through its open descriptor) into
        ``objects/`` when only we or root can change it; else write the checked bytes. Nothing unchecked
        is ever visible."""
        ext = _EXT[otype]
        src = f"{self.local_base}/objects/{checksum[:2]}/{checksum[2:]}.{ext}"
        url = object_url(self.base, checksum, otype)
        try:
            fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise NotFoundError(f"{ext} object {checksum} is missing on {self.source} ({url})") from None
        except OSError as exc:
            raise FetchError(f"{url}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise FetchError(f"{url}: not a regular file")
            large = otype is ObjectType.FILE and st.st_size > _fetch.SPOOL_OVER
            data = b"" if large else read_fd(fd, st.st_size)
            self._count(otype, st.st_size if large else len(data))
            try:
                if large:   # checked in bounded chunks; copied the same way if it cannot be linked
                    with os.fdopen(os.dup(fd), "rb") as f:
                        parsed = verify_filez_file(f, checksum)
                        if not (st.st_uid in self.trusted_owners and not st.st_mode & 0o022
                                and self._link_fd(fd, checksum, ext)):
                            f.seek(0)
                            _content.write_object_stream(self.repo, checksum, otype, f)
                    return parsed
                parsed = check(data)
            except (CorruptionError, FormatError) as exc:
                raise self._corrupt(exc, checksum, otype) from None
            if st.st_uid in self.trusted_owners and not st.st_mode & 0o022 and self._link_fd(fd, checksum, ext):
                return parsed
        finally:
            os.close(fd)
        store_checked_object(self.repo, checksum, otype, data)
        return parsed

    def _link_fd(self, fd: int, checksum: str, ext: str) -> bool:
        if self.proc_fds is None:
            return False
        dest = f"{self.repo.objects_dir}/{checksum[:2]}/{checksum[2:]}.{ext}"
        for _ in range(2):
            try:
                # linkat(/proc/self/fd/N, AT_SYMLINK_FOLLOW): the inode we read, whatever the path holds now
                os.link(str(fd), dest, src_dir_fd=self.proc_fds, follow_symlinks=True)
                return True
            except FileExistsError:
                return True   # stored meanwhile, checked by whoever stored it
            except FileNotFoundError:   # the first object of its objects/XX directory
                os.makedirs(os.path.dirname(dest), exist_ok=True)
            except OSError:
                return False  # another file system, no /proc, or links not allowed: write the bytes
        return False


# -- worker processes ------------------------------------------------------------------------------------

class _PipeProgress:
    """A worker's progress, sent to the parent as ``items bytes`` lines, at most ~20 times a second."""

    def __init__(self, fd: int):
        self.fd = fd
        self.items = self.bytes = 0
        self.sent = time.monotonic()
        self.total_items = None

    def advance(self, items: int = 0, nbytes: int = 0) -> None:
        self.items += items
        self.bytes += nbytes
        now = time.monotonic()
        if now - self.sent >= 0.05:
            self.flush()
            self.sent = now

    def flush(self) -> None:
        if self.items or self.bytes:
            os.write(self.fd, f"p {self.items} {self.bytes}\n".encode())
            self.items = self.bytes = 0


def _worker_main(transfer: _Transfer, shard: list[str], fd: int) -> int:
    """In a forked child: store ``shard`` with a fetcher of its own; report progress, counts or the error."""
    # The parent's handlers (a transaction's SIGTERM = cancel) mean nothing here: the parent decides, and stops
    # a worker with SIGTERM; Ctrl-C reaches the parent too.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    progress = _PipeProgress(fd)
    transfer.progress = progress
    transfer.fetcher = transfer.new_fetcher()
    if transfer.proc_fds is not None:
        # it names the parent's /proc/PID/fd: linking "N" through it would take the parent's file N
        os.close(transfer.proc_fds)
        transfer.proc_fds = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    transfer.content_objects = transfer.bytes = 0
    try:
        with transfer.fetcher:
            transfer.store_content(shard)
        progress.flush()
        os.write(fd, f"d {transfer.content_objects} {transfer.bytes}\n".encode())
        return 0
    except HybridosError as exc:
        progress.flush()
        message = exc.message.replace("\n", " ")
        os.write(fd, f"e {type(exc).__name__} {message}\n".encode("utf-8", "replace"))
        return 1
    except BaseException as exc:   # noqa: BLE001 - reported to the parent, which raises it
        os.write(fd, f"e InternalError {type(exc).__name__}: {exc}\n".encode("utf-8", "replace"))
        return 1


def _run_forked(transfer: _Transfer, shards: list[list[str]]) -> None:
    """Store each shard in a forked child process; forward progress; raise the first child's error."""
    children: dict[int, int] = {}   # read fd -> pid, until reaped
    try:
        for shard in shards:
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:   # the child: never returns into the caller's code
                code = 1
                try:
                    os.close(r)
                    code = _worker_main(transfer, shard, w)
                finally:
                    os._exit(code)
            os.close(w)
            children[r] = pid
        failure = _follow_workers(transfer, children)
        statuses = [os.waitpid(pid, 0)[1] for pid in children.values()]
        for r in children:
            os.close(r)
        children.clear()
        if failure is not None:
            raise failure
        if any(os.waitstatus_to_exitcode(s) for s in statuses):
            raise HybridosError("a pull worker process died; the pull was stopped, no ref was changed")
    finally:
        for r, pid in children.items():   # interrupted (Ctrl-C...): stop and reap the workers
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            os.close(r)


def _follow_workers(transfer: _Transfer, children: dict[int, int]) -> HybridosError | None:
    """Read the workers' reports until all pipes close: progress is forwarded, counts added up; the first
    error is returned (and the other workers are told to stop)."""
    import selectors

    from hybridos import errors as _errors

    failure: HybridosError | None = None
    buffers = dict.fromkeys(children, b"")
    with selectors.DefaultSelector() as sel:
        for r in children:
            sel.register(r, selectors.EVENT_READ)
        while buffers:
            for key, _ in sel.select():
                r = key.fd
                data = os.read(r, 1 << 16)
                if not data:
                    sel.unregister(r)
                    del buffers[r]
                    continue
                *lines, buffers[r] = (buffers[r] + data).split(b"\n")
                for line in lines:
                    kind, _, rest = line.decode("utf-8", "replace").partition(" ")
                    if kind == "p":
                        items, nbytes = map(int, rest.split())
                        if transfer.progress is not None:
                            transfer.progress.advance(items, nbytes)
                    elif kind == "d":
                        items, nbytes = map(int, rest.split())
                        transfer.content_objects += items
                        transfer.bytes += nbytes
                    elif kind == "e" and failure is None:
                        name, _, message = rest.partition(" ")
                        cls = getattr(_errors, name, None)
                        if not (isinstance(cls, type) and issubclass(cls, HybridosError)):
                            cls = HybridosError
                            message = f"internal error in a pull worker: {message}"
                        failure = cls(message)
                        for other, pid in children.items():   # the pull failed: the others stop now
                            if other != r:
                                with contextlib.suppress(ProcessLookupError):
                                    os.kill(pid, signal.SIGTERM)
    return failure


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _local_path(url: str) -> str:
    if url.startswith("file:"):
        parts = urlsplit(url)
        return unquote(parts.path)
    return os.path.abspath(url)


class _HeaderInfo:
    """What a ``.filez`` header says, parsed and checked once: the header (with the size of the first file
    seen), whether it is a symlink, the content-checksum prefix and, lazily, its bare-user metadata."""

    __slots__ = ("header", "is_symlink", "prefix", "_bareuser_meta")

    def __init__(self, header: FileHeader):
        self.header = header
        self.is_symlink = header.is_symlink
        self.prefix = header.checksum_prefix()
        self._bareuser_meta: bytes | None = None

    @property
    def bareuser_meta(self) -> bytes:
        if self._bareuser_meta is None:
            self._bareuser_meta = serialize_bareuser_meta(self.header)
        return self._bareuser_meta


class _HeaderCache:
    """Parsed ``.filez`` headers keyed by their bytes after the size field.

    Most files of a tree share ownership, mode and xattrs, so their zlib headers differ only in the leading
    big-endian size (a fixed 8 bytes, any value valid). The rest is parsed and checked once.
    """

    def __init__(self, limit: int = 4096):
        self.limit = limit
        self.entries: dict[bytes, _HeaderInfo] = {}

    def lookup(self, hdr: bytes, checksum: str) -> tuple[int, _HeaderInfo]:
        """(file size, header info) for a zlib header."""
        if len(hdr) < 8:
            raise CorruptionError(f"content object {checksum}: truncated header")
        key = hdr[8:]
        hit = self.entries.get(key)
        if hit is None:
            try:
                header = FileHeader.parse_zlib(hdr)
            except FormatError as exc:
                raise CorruptionError(f"content object {checksum}: {exc}") from None
            hit = _HeaderInfo(header)
            if len(self.entries) < self.limit:
                self.entries[key] = hit
        return int.from_bytes(hdr[:8], "big"), hit


_headers = _HeaderCache()


def verify_filez_bytes(data: bytes, checksum: str) -> None:
    """Check a whole ``.filez`` held in memory (the one-shot form of the store's streaming check); one that
    declares more than INFLATE_IN_MEMORY bytes is inflated in bounded steps, its size checked as it grows."""
    if _declared_size(data, checksum) > INFLATE_IN_MEMORY:
        verify_filez_file(io.BytesIO(data), checksum)
        return
    _check_filez(data, checksum)


def _declared_size(data: bytes, checksum: str) -> int:
    """The size a ``.filez`` header declares (0 for a symlink)."""
    try:
        hdr, _ = split_sized(data, f"content object {checksum}")
    except FormatError as exc:
        raise CorruptionError(f"content object {checksum}: {exc}") from None
    size, hit = _headers.lookup(hdr, checksum)
    return 0 if hit.is_symlink else size


def _check_filez(data: bytes, checksum: str) -> tuple[_HeaderInfo, bytes]:
    """Check a whole ``.filez``; returns its header and inflated data (empty for symlinks)."""
    try:
        hdr, offset = split_sized(data, f"content object {checksum}")
    except FormatError as exc:
        raise CorruptionError(f"content object {checksum}: {exc}") from None
    size, hit = _headers.lookup(hdr, checksum)
    body = b""
    if hit.is_symlink:
        if len(data) != offset:
            raise CorruptionError(f"content object {checksum}: symlink with data")
    else:
        d = zlib.decompressobj(-15)
        try:
            body = d.decompress(memoryview(data)[offset:], size + 1)
        except zlib.error as exc:
            raise CorruptionError(f"content object {checksum}: bad compressed data ({exc})") from None
        if not d.eof or d.unused_data or d.unconsumed_tail or len(body) != size:
            raise CorruptionError(f"content object {checksum}: compressed data does not match its header")
    h = hashlib.sha256(hit.prefix)
    h.update(body)
    if h.hexdigest() != checksum:
        raise CorruptionError(f"content object {checksum} is corrupt: its data hashes to {h.hexdigest()}")
    return hit, body


def verify_filez_file(f, checksum: str) -> None:
    """Check a ``.filez`` read from a file object in bounded chunks (the streaming twin of
    :func:`verify_filez_bytes`)."""
    header = _content.read_filez_header(f, checksum)
    if header.is_symlink:
        if f.read(1):
            raise CorruptionError(f"content object {checksum}: symlink with data")
        stream = None
    else:
        stream = _content.InflateReader(f, header.size, checksum)
    got, _ = _content.checksum_stream(header, stream)
    if got != checksum:
        raise CorruptionError(f"content object {checksum} is corrupt: its data hashes to {got}")


def store_verified_filez(repo: Repo, checksum: str, data: bytes) -> None:
    """Put a ``.filez`` that :func:`verify_filez_bytes` accepted into an archive repository (what
    ``write_archive_filez`` does after checking the same bytes once more)."""
    store_checked_object(repo, checksum, ObjectType.FILE, data)


def store_checked_object(repo: Repo, checksum: str, otype: ObjectType, data: bytes) -> None:
    """Hand already checked object bytes to the store's writer (temp file, then linked or renamed into
    ``objects/``; nothing visible before that)."""
    _content.write_object_bytes(repo, checksum, otype, data)


class Puller:
    """One pull from one remote into one repository."""

    def __init__(self, repo: Repo, remote: _remotes.Remote, fetcher: Fetcher, *, progress=None,
                 url: str | None = None, new_fetcher: Callable[[], Fetcher] | None = None, workers: int = 1):
        self.repo = repo
        self.remote = remote
        self.fetcher = fetcher
        self.new_fetcher = new_fetcher
        self.workers = workers
        self.base = (url or remote.url).rstrip("/")
        self.source = f'remote "{remote.name}"'
        self.progress = progress
        self.summary: Summary | None = None
        self.summary_bytes: bytes | None = None
        self.public_keys: list[bytes] = []
        self.use_deltas = True
        self.require_deltas = False   #: --require-static-deltas: no fallback to objects
        self.notes: list[str] = []
        self.deltas_used: list[str] = []
        self.keyring = None       #: the remote's trusted GPG keys when it has gpg-verify (or gpg-verify-summary)
        self.gpg_summary = _remotes.parse_bool(remote.options.get("gpg-verify-summary"), False,
                                               f'remote "{remote.name}" gpg-verify-summary')
        self.verified: dict[str, list] = {}   #: commit -> its good GPG signatures (hybridos.openpgp.Verified)
        if remote.requires_gpg or self.gpg_summary:
            self.keyring = _gpg.remote_keyring(repo, remote)
            if not self.keyring:
                raise _gpg.no_keys_error(remote)
        if remote.sign_verify:
            self.public_keys = remote.public_keys("ed25519")
            if not self.public_keys:
                raise SignatureError(
                    f'remote "{remote.name}" has sign-verify=true but no ed25519 public keys '
                    "(verification-ed25519-key or verification-ed25519-file)")

    # -- the remote ------------------------------------------------------------------------------

    def _read_optional(self, name: str, limit: int = MAX_METADATA_SIZE) -> bytes | None:
        try:
            return self.fetcher.read_capped(f"{self.base}/{name}", limit)
        except NotFoundError:
            return None

    def load_remote(self) -> None:
        """Read the remote's ``summary`` (optional) and ``config`` (refuse non-archive repositories)."""
        data = self._read_optional("summary", self.remote.number("max-summary-size", MAX_SUMMARY_SIZE))
        if self.gpg_summary:   # before anything in the summary is trusted
            assert self.keyring is not None
            if data is None:
                raise SignatureError(f"{self.source} has no summary but gpg-verify-summary=true",
                                     hint=f'set gpg-verify-summary=false in [remote "{self.remote.name}"]')
            _gpg.verify_summary(data, self._read_optional("summary.sig"), self.keyring, self.remote.name)
        if data is not None:
            try:
                self.summary = Summary.parse(data)
            except FormatError as exc:
                raise FetchError(f"the summary file of {self.source} ({self.base}) is malformed: {exc}") from None
            self.summary_bytes = data
        config = self._read_optional("config")
        if config is not None:
            mode = parse_remote_mode(config.decode("utf-8", "replace"))
            if mode is not None and mode not in ("archive-z2", "archive"):
                raise FetchError(f"{self.source} ({self.base}) is a {mode} repository; only archive "
                                 "repositories can be pulled from")

    def resolve(self, ref: str) -> str:
        """The commit a remote ref points to."""
        if self.summary is not None:
            entry = self.summary.lookup(ref)
            if entry is None:
                raise NotFoundError(f"{self.source} has no ref {ref!r} (not in its summary)")
            return entry.commit
        try:
            text = self.fetcher.read(f"{self.base}/refs/heads/{ref}")
        except NotFoundError:
            raise NotFoundError(f"{self.source} has no ref {ref!r} ({self.base}/refs/heads/{ref})") from None
        value = text.decode("ascii", "replace").strip()
        if not is_checksum(value):
            raise FetchError(f"{self.source}: refs/heads/{ref} does not hold a commit checksum")
        return value

    # -- commits ---------------------------------------------------------------------------------

    def _verify_commit(self, commit: str, data: bytes, meta_bytes: bytes | None, ref: str | None) -> Commit:
        if sha256_hex(data) != commit:
            raise CorruptionError(f"commit object {commit} from {self.source} is corrupt: its bytes hash to "
                                  f"{sha256_hex(data)}; no ref was changed")
        try:
            parsed = Commit.parse(data)
        except FormatError as exc:
            raise CorruptionError(f"commit object {commit} from {self.source} is malformed: {exc}") from None
        if self.remote.sign_verify:
            meta = None
            if meta_bytes is not None:
                try:
                    meta = gvariant.parse_vardict(meta_bytes)
                except FormatError as exc:
                    raise SignatureError(f"detached metadata of commit {commit} from {self.source} is malformed: "
                                         f"{exc}") from None
            _sign.verify_commit(commit, data, meta, self.public_keys, self.source)
        if self.remote.requires_gpg:
            assert self.keyring is not None
            meta = _gpg.parse_detached(meta_bytes, f"detached metadata of commit {commit} from {self.source}")
            self.verified[commit] = _gpg.verify_commit(commit, data, meta, self.keyring, self.source,
                                                       self.remote.name)
        if ref is not None and parsed.ref_binding and ref not in parsed.ref_binding:
            raise SignatureError(f"commit {commit} from {self.source} is bound to "
                                 f"{', '.join(parsed.ref_binding)}, not to the requested ref {ref!r}")
        return parsed

    def fetch_commit(self, transfer: _Transfer, commit: str, ref: str | None, *, optional: bool = False
                     ) -> Commit | None:
        """Make the commit object present and verified; returns it (None when optional and absent remotely).

        A commit present and complete locally is still checked against the remote's signature policy.
        """
        repo = self.repo
        if repo.has_object(commit, ObjectType.COMMIT):
            data = repo.read_metadata_bytes(commit, ObjectType.COMMIT)
            meta_bytes = None
            if self.remote.sign_verify or self.remote.requires_gpg:
                meta_bytes = transfer.fetch_optional(commit, ObjectType.COMMIT_META)
                if meta_bytes is None:
                    with contextlib.suppress(NotFoundError):
                        meta_bytes = repo.read_metadata_bytes(commit, ObjectType.COMMIT_META)
            parsed = self._verify_commit(commit, data, meta_bytes, ref)
            if meta_bytes is not None:
                repo.write_commitmeta_bytes(commit, meta_bytes)
            return parsed
        meta_bytes = transfer.fetch_optional(commit, ObjectType.COMMIT_META)
        try:
            data = transfer.fetch(commit, ObjectType.COMMIT)
        except NotFoundError:
            if optional:
                return None
            raise
        parsed = self._verify_commit(commit, data, meta_bytes, ref)
        atomic_write(state_marker(repo, commit), b"", sync=False)
        if meta_bytes is not None:
            repo.write_commitmeta_bytes(commit, meta_bytes)
        repo.write_metadata_bytes(ObjectType.COMMIT, data, expected=commit)
        return parsed

    def pull_commits(self, wanted: Sequence[tuple[str | None, str]], *, depth: int = 0,
                     commit_metadata_only: bool = False) -> tuple[list[str], _Transfer]:
        """Fetch ``(ref, commit)`` pairs with ``depth`` parents; returns the commits made complete."""
        transfer = _Transfer(self.repo, self.fetcher, self.base, self.source, self.progress,
                             new_fetcher=self.new_fetcher, workers=self.workers)
        completed: list[str] = []
        try:
            chains: list[tuple[str, Commit]] = []
            if self.use_deltas and not commit_metadata_only:
                from hybridos.ostree.delta_pull import try_delta
                for ref, commit in wanted:
                    try_delta(self, transfer, ref, commit)
                if len(wanted) != 1:
                    transfer.delta_trees = None   # the shortcut is only sound for the delta's own commit
            for ref, commit in wanted:
                current: str | None = commit
                level = 0
                while current is not None and (depth < 0 or level <= depth):
                    parsed = self.fetch_commit(transfer, current, ref if level == 0 else None, optional=level > 0)
                    if parsed is None:
                        break   # the remote does not have this much history
                    chains.append((current, parsed))
                    current = parsed.parent
                    level += 1
            if commit_metadata_only:
                return [], transfer
            todo = [(c, p) for c, p in dict(chains).items() if self.repo.commit_is_partial(c)]
            missing = transfer.pull_trees([(p.root_tree, p.root_meta) for c, p in todo
                                           if c not in transfer.delta_complete])
            transfer.pull_content(missing)
            if todo:
                self.repo.sync()
            for commit, _ in todo:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(state_marker(self.repo, commit))
                completed.append(commit)
        finally:
            transfer.close()
        return completed, transfer


def pull_workers() -> int:
    """Worker processes for the content of a large pull: one per CPU the process may use, at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):   # pragma: no cover
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4))


def _wanted_refs(puller: Puller, refs: Sequence[str], mirror: bool) -> list[str]:
    if refs:
        return list(refs)
    if mirror:
        if puller.summary is None:
            raise UsageError(f"{puller.source} has no summary file: name the refs to mirror")
        return [r.name for r in puller.summary.refs]
    if puller.remote.branches:
        return list(puller.remote.branches)
    raise UsageError(f"no refs given and {puller.source} has no branches= configured")


def pull(repo: Repo, remote_name: str, refs: Sequence[str] = (), *, depth: int = 0,
         commit_metadata_only: bool = False, mirror: bool = False, progress=None,
         fetch_options: FetchOptions | None = None, registry=None, url: str | None = None,
         static_deltas: bool = True, require_static_deltas: bool = False) -> PullResult:
    """Pull ``refs`` (ref names or commit checksums) of ``remote_name`` into ``repo``.

    Refs go to ``refs/remotes/REMOTE/REF`` (``refs/heads/REF`` with ``mirror``) and move only once their
    commit and everything it needs is present. Raises FetchError, NotFoundError, CorruptionError or
    SignatureError with a one-line message; on failure no ref moves and ``state/<commit>.commitpartial``
    remains so that the next pull resumes. A static delta the remote offers from a commit present here is
    used first (``static_deltas=False``: never); a delta that fails leaves a note and objects are fetched
    (``require_static_deltas``: the pull fails instead, also when no delta is offered).
    """
    if depth < -1:
        raise UsageError("--depth must be -1 (all history) or a number of parents >= 0")
    if require_static_deltas and not static_deltas:
        raise UsageError("--require-static-deltas and --disable-static-deltas contradict each other")
    if require_static_deltas and commit_metadata_only:
        raise UsageError("--require-static-deltas and --commit-metadata-only contradict each other")
    started = time.monotonic()
    remote = _remotes.get_remote(repo.config, remote_name)
    options = remote.fetch_options(fetch_options or FetchOptions())
    if registry is None:
        from hybridos.plugins import get_registry
        registry = get_registry()
    fetcher = registry.fetcher_for(url or remote.url, options)
    with fetcher:
        puller = Puller(repo, remote, fetcher, progress=progress, url=url, workers=pull_workers(),
                        new_fetcher=lambda: registry.fetcher_for(url or remote.url, options))
        puller.use_deltas = static_deltas
        puller.require_deltas = require_static_deltas
        puller.load_remote()
        names = _wanted_refs(puller, refs, mirror)
        wanted: list[tuple[str | None, str]] = []
        for name in names:
            if is_checksum(name):
                wanted.append((None, name))
            else:
                validate_ref(name)
                wanted.append((name, puller.resolve(name)))
        _completed, transfer = puller.pull_commits(wanted, depth=depth, commit_metadata_only=commit_metadata_only)
        written: dict[str, str] = {}
        result_refs: dict[str, str] = {}
        for name, commit in wanted:
            if name is None:
                continue
            full = name if mirror else f"{remote_name}:{name}"
            repo.set_ref(full, commit)
            written[f"refs/heads/{name}" if mirror else f"refs/remotes/{remote_name}/{name}"] = commit
            result_refs[name] = commit
        if mirror and not refs and puller.summary_bytes is not None:
            atomic_write(repo.path / "summary", puller.summary_bytes)
    return PullResult(remote_name, result_refs, tuple(c for _, c in wanted), transfer.metadata_objects,
                      transfer.content_objects, transfer.bytes, time.monotonic() - started, written,
                      tuple(puller.deltas_used), tuple(puller.notes))

