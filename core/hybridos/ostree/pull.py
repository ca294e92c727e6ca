"""Pulling commits from a remote archive repository (libostree's ``ostree-repo-pull.c``), over any fetcher.

The flow for each requested ref:

1. resolve it: from the remote's ``summary`` when it has one, else from ``refs/heads/REF``;
2. fetch the commit object and its detached metadata (``.commitmeta``, a 404 is fine), verify the commit's
   checksum, its signature when the remote asks for one and its ref binding, mark it
   ``state/<commit>.commitpartial``, store it; then the same for ``--depth`` parents;
3. walk dirtree -> (dirmeta, dirtree, content) with at most ``max_parallel`` transfers at once; every object is
   checked against its checksum by the store before it becomes visible; objects already present are not fetched
   (dirtrees already present are read locally, so a pull interrupted halfway resumes where it stopped);
4. sync the file system, drop the ``commitpartial`` markers and only then move ``refs/remotes/REMOTE/REF``.
"""

from __future__ import annotations

import configparser
import contextlib
import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

try:   # the store's choice of inflater: the same library decides what is valid deflate data
    from zlib_ng import zlib_ng as zlib
except ImportError:  # pragma: no cover
    import zlib  # type: ignore[no-redef]

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
from hybridos.fetch import Fetcher, FetchOptions
from hybridos.ostree import content as _content
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
    sha256_hex,
    split_sized,
)
from hybridos.ostree.refs import validate_ref
from hybridos.ostree.repo import Repo
from hybridos.util.atomic import atomic_write

_METADATA_PARSERS = {ObjectType.DIR_TREE: DirTree.parse, ObjectType.DIR_META: DirMeta.parse}

#: Local content objects handed to one task, and the number of workers for local sources.
ADOPT_BATCH = 32
LOCAL_PARALLEL = 2

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
    """Fetches and stores objects with bounded parallelism; remembers what it already claimed."""

    def __init__(self, repo: Repo, fetcher: Fetcher, base: str, source: str, max_parallel: int,
                 progress=None):
        self.repo = repo
        self.fetcher = fetcher
        self.base = base
        self.source = source
        self.progress = progress
        self.pool = ThreadPoolExecutor(max_workers=max(1, max_parallel), thread_name_prefix="pull")
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.pending = 0
        self.error: BaseException | None = None
        self.claimed: set[tuple[str, ObjectType]] = set()
        self.claimed_files: set[str] = set()
        self.content_ext = "filez" if repo.mode.is_archive else "file"
        self.scheduled = 0
        self.metadata_objects = 0
        self.content_objects = 0
        self.bytes = 0
        #: Local source and archive target: content files are checked and hardlinked, not rewritten (the one
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
        url = object_url(self.base, checksum, otype)
        try:
            data = self.fetcher.read(url)
        except NotFoundError:
            raise NotFoundError(f"{_EXT[otype]} object {checksum} is missing on {self.source} ({url})") from None
        with self.lock:
            if otype in (ObjectType.COMMIT, ObjectType.COMMIT_META):   # fetched directly, not as tasks
                self._expect(1)
            self.bytes += len(data)
            if otype is ObjectType.FILE:
                self.content_objects += 1
            else:
                self.metadata_objects += 1
        if self.progress is not None:
            self.progress.advance(1, len(data))
        return data

    def fetch_optional(self, checksum: str, otype: ObjectType) -> bytes | None:
        try:
            return self.fetch(checksum, otype)
        except NotFoundError:
            return None

    def _corrupt(self, exc: HybridosError, checksum: str, otype: ObjectType) -> CorruptionError:
        url = object_url(self.base, checksum, otype)
        msg = exc.message if checksum in exc.message else f"{_EXT[otype]} object {checksum}: {exc.message}"
        return CorruptionError(f"{msg} (fetched from {url}); the pull was stopped, no ref was changed")

    # -- scheduling ------------------------------------------------------------------------------

    def _claim(self, checksum: str, otype: ObjectType) -> bool:
        key = (checksum, otype)
        with self.lock:
            if key in self.claimed:
                return False
            self.claimed.add(key)
            return True

    def _submit(self, fn: Callable, *args, objects: int = 1) -> None:
        """Run ``fn(*args)`` on the pool; ``objects`` is how many objects it will deliver (for progress)."""
        with self.lock:
            if self.error is not None:
                return
            self.pending += 1
            self._expect(objects)
        self.pool.submit(self._run, fn, args)

    def _expect(self, objects: int) -> None:
        """Count objects to come into the progress total (lock held)."""
        self.scheduled += objects
        if self.progress is not None:
            self.progress.total_items = self.scheduled

    def _run(self, fn: Callable, args) -> None:
        try:
            with self.lock:
                if self.error is not None:
                    return
            fn(*args)
        except BaseException as exc:
            with self.lock:
                if self.error is None:
                    self.error = exc
        finally:
            with self.lock:
                self.pending -= 1
                if self.pending == 0:
                    self.idle.notify_all()

    def wait(self) -> None:
        with self.lock:
            while self.pending:
                self.idle.wait()
            if self.error is not None:
                raise self.error

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.proc_fds is not None:
            os.close(self.proc_fds)
            self.proc_fds = None

    # -- objects ---------------------------------------------------------------------------------

    def want_tree(self, tree: str, meta: str) -> None:
        """Make sure a directory (its dirmeta, dirtree and everything below) is present."""
        if self._claim(meta, ObjectType.DIR_META) and not self.repo.has_object(meta, ObjectType.DIR_META):
            self._submit(self._get_metadata, meta, ObjectType.DIR_META)
        if self._claim(tree, ObjectType.DIR_TREE):
            self._submit(self._get_dirtree, tree)

    def _get_metadata(self, checksum: str, otype: ObjectType):
        """Fetch a dirtree or dirmeta, check its checksum and form, store it; returns the parsed object."""
        data = self.fetch(checksum, otype)
        try:
            got = hashlib.sha256(data).hexdigest()
            if got != checksum:
                raise CorruptionError(f"{_EXT[otype]} object {checksum} is corrupt: its bytes hash to {got}")
            parsed = _METADATA_PARSERS[otype](data)
        except FormatError as exc:
            raise self._corrupt(CorruptionError(f"{_EXT[otype]} object {checksum} is malformed: {exc}"),
                                checksum, otype) from None
        except CorruptionError as exc:
            raise self._corrupt(exc, checksum, otype) from None
        store_checked_object(self.repo, checksum, otype, data)
        return parsed

    def _get_dirtree(self, checksum: str) -> None:
        if self.repo.has_object(checksum, ObjectType.DIR_TREE):
            tree = self.repo.load_dirtree(checksum)   # from an earlier, interrupted pull
            if self.progress is not None:
                self.progress.advance(1, 0)
        else:
            tree = self._get_metadata(checksum, ObjectType.DIR_TREE)
        # The per-object hot path: plain strings and one lock round per directory.
        prefix, ext = self.repo.objects_dir, self.content_ext
        with self.lock:
            claimed = self.claimed_files
            new = [c for _name, c in tree.files if c not in claimed]
            claimed.update(new)
        missing = [c for c in new if not os.path.lexists(f"{prefix}/{c[:2]}/{c[2:]}.{ext}")]
        if self.adopt_files:
            # Local files are cheap to get: hand them out in batches to save a task per object.
            for i in range(0, len(missing), ADOPT_BATCH):
                batch = missing[i:i + ADOPT_BATCH]
                self._submit(self._adopt_batch, batch, objects=len(batch))
        else:
            for file_csum in missing:
                self._submit(self._get_content, file_csum)
        for _name, sub_tree, sub_meta in tree.dirs:
            self.want_tree(sub_tree, sub_meta)

    def _get_content(self, checksum: str) -> None:
        data = self.fetch(checksum, ObjectType.FILE)
        try:
            if self.repo.mode.is_archive:
                verify_filez_bytes(data, checksum)
                store_verified_filez(self.repo, checksum, data)
            else:   # unpacked into the bare layout by the store, which checks while it writes
                self.repo.write_archive_filez(checksum, data)
        except (CorruptionError, FormatError) as exc:
            raise self._corrupt(exc, checksum, ObjectType.FILE) from None

    def _adopt_batch(self, checksums: list[str]) -> None:
        for checksum in checksums:
            if self.error is not None:
                return
            self._adopt_content(checksum)

    def _adopt_content(self, checksum: str) -> None:
        """Local archive -> archive, like ``ostree pull-local``: read the source ``.filez`` once, check it, and
        hardlink that very inode (through its open descriptor) into ``objects/`` when only we or root can
        change it; else write the checked bytes. Nothing unchecked is ever visible."""
        src = f"{self.local_base}/objects/{checksum[:2]}/{checksum[2:]}.filez"
        url = object_url(self.base, checksum, ObjectType.FILE)
        try:
            fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise NotFoundError(f"filez object {checksum} is missing on {self.source} ({url})") from None
        except OSError as exc:
            raise FetchError(f"{url}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise FetchError(f"{url}: not a regular file")
            data = _read_fd(fd, st.st_size)
            with self.lock:
                self.bytes += len(data)
                self.content_objects += 1
            if self.progress is not None:
                self.progress.advance(1, len(data))
            try:
                verify_filez_bytes(data, checksum)
            except CorruptionError as exc:
                raise self._corrupt(exc, checksum, ObjectType.FILE) from None
            if st.st_uid in self.trusted_owners and not st.st_mode & 0o022 and self._link_fd(fd, checksum):
                return
        finally:
            os.close(fd)
        store_verified_filez(self.repo, checksum, data)

    def _link_fd(self, fd: int, checksum: str) -> bool:
        if self.proc_fds is None:
            return False
        dest = f"{self.repo.objects_dir}/{checksum[:2]}/{checksum[2:]}.filez"
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


def _read_fd(fd: int, size: int) -> bytes:
    """The whole file: usually one read of size + 1 (short, so the end is known without another call)."""
    data = os.read(fd, size + 1)
    if len(data) == size or not data:
        return data
    chunks = [data]   # a short read (files over 2 GiB) or a file that changed size: read to the end
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _local_path(url: str) -> str:
    if url.startswith("file:"):
        parts = urlsplit(url)
        return unquote(parts.path)
    return os.path.abspath(url)


class _HeaderCache:
    """Parsed ``.filez`` headers keyed by their bytes after the size field.

    Most files of a tree share ownership, mode and xattrs, so their zlib headers differ only in the leading
    big-endian size (a fixed 8 bytes, any value valid). The rest is parsed and checked once; what is cached is
    (is_symlink, the content-checksum prefix).
    """

    def __init__(self, limit: int = 4096):
        self.limit = limit
        self.entries: dict[bytes, tuple[bool, bytes]] = {}

    def lookup(self, hdr: bytes, checksum: str) -> tuple[int, bool, bytes]:
        """(file size, is_symlink, checksum prefix) for a zlib header."""
        if len(hdr) < 8:
            raise CorruptionError(f"content object {checksum}: truncated header")
        key = hdr[8:]
        hit = self.entries.get(key)
        if hit is None:
            try:
                header = FileHeader.parse_zlib(hdr)
            except FormatError as exc:
                raise CorruptionError(f"content object {checksum}: {exc}") from None
            hit = (header.is_symlink, header.checksum_prefix())
            if len(self.entries) < self.limit:
                self.entries[key] = hit
        return int.from_bytes(hdr[:8], "big"), hit[0], hit[1]


_headers = _HeaderCache()


def verify_filez_bytes(data: bytes, checksum: str) -> None:
    """Check a whole ``.filez`` held in memory (the one-shot form of the store's streaming check)."""
    try:
        hdr, offset = split_sized(data, f"content object {checksum}")
    except FormatError as exc:
        raise CorruptionError(f"content object {checksum}: {exc}") from None
    size, is_symlink, prefix = _headers.lookup(hdr, checksum)
    body = b""
    if is_symlink:
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
    h = hashlib.sha256(prefix)
    h.update(body)
    if h.hexdigest() != checksum:
        raise CorruptionError(f"content object {checksum} is corrupt: its data hashes to {h.hexdigest()}")


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

    def __init__(self, repo: Repo, remote: _remotes.Remote, fetcher: Fetcher, *, max_parallel: int = 8,
                 progress=None, url: str | None = None):
        self.repo = repo
        self.remote = remote
        self.fetcher = fetcher
        self.base = (url or remote.url).rstrip("/")
        self.source = f'remote "{remote.name}"'
        self.max_parallel = max_parallel
        self.progress = progress
        self.summary: Summary | None = None
        self.summary_bytes: bytes | None = None
        self.public_keys: list[bytes] = []
        if remote.requires_gpg:
            raise SignatureError(
                f'remote "{remote.name}" requires GPG signatures (gpg-verify=true, the default), which hybridos '
                "does not check",
                hint=f"verify with ed25519 instead (hybridos repo remote add --sign-verify=ed25519=inline:KEY), "
                     f"or disable it: --no-gpg-verify / gpg-verify=false in [remote \"{remote.name}\"]")
        if remote.sign_verify:
            self.public_keys = remote.public_keys("ed25519")
            if not self.public_keys:
                raise SignatureError(
                    f'remote "{remote.name}" has sign-verify=true but no ed25519 public keys '
                    "(verification-ed25519-key or verification-ed25519-file)")

    # -- the remote ------------------------------------------------------------------------------

    def _read_optional(self, name: str) -> bytes | None:
        try:
            return self.fetcher.read(f"{self.base}/{name}")
        except NotFoundError:
            return None

    def load_remote(self) -> None:
        """Read the remote's ``summary`` (optional) and ``config`` (refuse non-archive repositories)."""
        data = self._read_optional("summary")
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
            if self.remote.sign_verify:
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
        transfer = _Transfer(self.repo, self.fetcher, self.base, self.source, self.max_parallel, self.progress)
        completed: list[str] = []
        try:
            chains: list[tuple[str, Commit]] = []
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
            for _commit, parsed in todo:
                transfer.want_tree(parsed.root_tree, parsed.root_meta)
            transfer.wait()
            if todo:
                self.repo.sync()
            for commit, _ in todo:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(state_marker(self.repo, commit))
                completed.append(commit)
        finally:
            transfer.close()
        return completed, transfer


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
         fetch_options: FetchOptions | None = None, registry=None, url: str | None = None) -> PullResult:
    """Pull ``refs`` (ref names or commit checksums) of ``remote_name`` into ``repo``.

    Refs go to ``refs/remotes/REMOTE/REF`` (``refs/heads/REF`` with ``mirror``) and move only once their
    commit and everything it needs is present. Raises FetchError, NotFoundError, CorruptionError or
    SignatureError with a one-line message; on failure no ref moves and ``state/<commit>.commitpartial``
    remains so that the next pull resumes.
    """
    if depth < -1:
        raise UsageError("--depth must be -1 (all history) or a number of parents >= 0")
    started = time.monotonic()
    remote = _remotes.get_remote(repo.config, remote_name)
    options = fetch_options or FetchOptions()
    if registry is None:
        from hybridos.plugins import get_registry
        registry = get_registry()
    fetcher = registry.fetcher_for(url or remote.url, options)
    with fetcher:
        parallel = options.max_parallel
        if urlsplit(url or remote.url).scheme in ("", "file"):
            # Local reads hardly wait: more threads would mostly fight over the GIL.
            parallel = min(parallel, LOCAL_PARALLEL)
        puller = Puller(repo, remote, fetcher, max_parallel=parallel, progress=progress, url=url)
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
                      transfer.content_objects, transfer.bytes, time.monotonic() - started, written)

