"""An OSTree repository: init/open, config, object paths, reading and writing objects, and the public API.

Operations that are their own concern live in sibling modules (``refs``, ``commit``, ``checkout``,
``traverse``, ``fsck``, ``prune``, ``summary``); :class:`Repo` exposes them as methods.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from hybridos import gvariant
from hybridos.errors import ConfigError, CorruptionError, FormatError, NotFoundError
from hybridos.ostree import content as _content
from hybridos.ostree.config import RepoConfig
from hybridos.ostree.objects import (
    Commit,
    DirMeta,
    DirTree,
    FileHeader,
    ObjectType,
    validate_checksum,
)
from hybridos.util.atomic import atomic_write, syncfs


class RepoMode(enum.Enum):
    """Repository modes; the value is what ``config`` holds."""

    ARCHIVE = "archive-z2"
    BARE = "bare"
    BARE_USER = "bare-user"
    BARE_USER_ONLY = "bare-user-only"

    @classmethod
    def parse(cls, text: str) -> RepoMode:
        if text == "archive":
            return cls.ARCHIVE
        for m in cls:
            if m.value == text:
                return m
        raise ConfigError(f"unknown repository mode {text!r} (expected archive, bare, bare-user or bare-user-only)")

    @property
    def is_archive(self) -> bool:
        return self is RepoMode.ARCHIVE


_PARSERS = {ObjectType.DIR_TREE: DirTree.parse, ObjectType.DIR_META: DirMeta.parse,
            ObjectType.COMMIT: Commit.parse, ObjectType.COMMIT_META: gvariant.parse_vardict}


class Repo:
    """An opened repository. Use :meth:`init` or :meth:`open`."""

    def __init__(self, path: Path, mode: RepoMode, config: RepoConfig):
        self.path = Path(path)
        self.mode = mode
        self.config = config
        self.objects_dir = str(self.path / "objects")
        self.tmp_dir = str(self.path / "tmp")
        self._known_dirs: set[str] = set()
        self._tmpfile_ok = True  # O_TMPFILE works here (cleared on the first refusal)
        try:
            self.zlib_level = int(config.get("core", "zlib-level", fallback="6"))
        except ValueError:
            raise ConfigError(f"{self.path}/config: core.zlib-level must be a number") from None

    # ------------------------------------------------------------------------------------------ lifecycle

    @classmethod
    def init(cls, path: str | os.PathLike, mode: RepoMode | str = RepoMode.ARCHIVE) -> Repo:
        """Create a repository (or open an existing one of the same mode, like ``ostree init``)."""
        path = Path(path)
        if not isinstance(mode, RepoMode):
            mode = RepoMode.parse(mode)
        if (path / "config").exists():
            repo = cls.open(path)
            if repo.mode is not mode:
                raise ConfigError(f"{path} is already a repository in mode {repo.mode.value}")
            return repo
        for d in ("objects", "refs/heads", "refs/remotes", "refs/mirrors", "state", "tmp", "extensions"):
            (path / d).mkdir(parents=True, exist_ok=True)
        cfg = RepoConfig()
        cfg.add_section("core")
        cfg.set("core", "repo_version", "1")
        cfg.set("core", "mode", mode.value)
        atomic_write(path / "config", cfg.serialize())
        return cls(path, mode, cfg)

    @classmethod
    def open(cls, path: str | os.PathLike) -> Repo:
        """Open an existing repository; NotFoundError / ConfigError with a clear message otherwise."""
        path = Path(path)
        cfgfile = path / "config"
        try:
            text = cfgfile.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotFoundError(f"{path} is not an OSTree repository (no config file)") from None
        except (UnicodeDecodeError, IsADirectoryError):
            raise ConfigError(f"{cfgfile} is not a text key file") from None
        cfg = RepoConfig.parse(text, str(cfgfile))
        if not cfg.has_section("core"):
            raise ConfigError(f"{cfgfile} has no [core] section")
        version = cfg.get("core", "repo_version", fallback=None)
        if version != "1":
            raise ConfigError(f"{cfgfile}: unsupported repo_version {version!r} (expected 1)")
        mode = RepoMode.parse(cfg.get("core", "mode", fallback="bare"))
        if not (path / "objects").is_dir():
            raise NotFoundError(f"{path} is not an OSTree repository (no objects directory)")
        for d in ("tmp", "refs/heads", "refs/remotes", "refs/mirrors", "state"):
            with contextlib.suppress(OSError):
                (path / d).mkdir(parents=True, exist_ok=True)
        return cls(path, mode, cfg)

    def write_config(self) -> None:
        """Write ``config`` atomically."""
        atomic_write(self.path / "config", self.config.serialize())

    def __repr__(self) -> str:
        return f"Repo({str(self.path)!r}, {self.mode.value})"

    # ------------------------------------------------------------------------------------------ objects

    def object_path(self, checksum: str, otype: ObjectType) -> Path:
        return Path(self.object_path_str(checksum, otype))

    def object_path_str(self, checksum: str, otype: ObjectType) -> str:
        """object_path() as a plain string (cheaper in hot loops)."""
        validate_checksum(checksum)
        ext = otype.extension
        if otype is ObjectType.FILE and self.mode.is_archive:
            ext = "filez"
        return f"{self.objects_dir}/{checksum[:2]}/{checksum[2:]}.{ext}"

    def has_object(self, checksum: str, otype: ObjectType) -> bool:
        return os.path.lexists(self.object_path_str(checksum, otype))

    def read_metadata_bytes(self, checksum: str, otype: ObjectType) -> bytes:
        """The raw serialized bytes of a metadata object (or detached metadata) as stored."""
        if otype is ObjectType.FILE:
            raise FormatError("read_metadata_bytes() is for metadata objects, not content")
        try:
            return read_small_file(self.object_path_str(checksum, otype))
        except FileNotFoundError:
            raise NotFoundError(f"{otype.extension} object {checksum} is not in the repository") from None

    def _load(self, checksum: str, otype: ObjectType) -> Any:
        data = self.read_metadata_bytes(checksum, otype)
        if otype is not ObjectType.COMMIT_META and hashlib.sha256(data).hexdigest() != checksum:
            raise CorruptionError(f"{otype.extension} object {checksum} is corrupt (checksum mismatch)")
        try:
            return _PARSERS[otype](data)
        except FormatError as exc:
            raise CorruptionError(f"{otype.extension} object {checksum} is corrupt: {exc}") from None

    def load_commit(self, checksum: str) -> Commit:
        return self._load(checksum, ObjectType.COMMIT)

    def load_dirtree(self, checksum: str) -> DirTree:
        return self._load(checksum, ObjectType.DIR_TREE)

    def load_dirmeta(self, checksum: str) -> DirMeta:
        return self._load(checksum, ObjectType.DIR_META)

    def write_metadata_bytes(self, otype: ObjectType, data: bytes, expected: str | None = None) -> str:
        """Store a serialized metadata object (checked to parse); verifies ``expected`` before it is visible."""
        if otype in (ObjectType.FILE, ObjectType.COMMIT_META):
            raise FormatError(f"write_metadata_bytes() cannot write {otype.extension} objects")
        data = bytes(data)
        checksum = hashlib.sha256(data).hexdigest()
        if expected is not None and checksum != expected:
            raise CorruptionError(f"{otype.extension} object {expected} is corrupt: its bytes hash to {checksum}")
        if self.has_object(checksum, otype):
            return checksum
        parser = _PARSERS.get(otype)
        if parser is not None:
            try:
                parser(data)
            except FormatError as exc:
                raise CorruptionError(f"{otype.extension} object {checksum} is malformed: {exc}") from None
        self._write_object_file(checksum, otype, data)
        return checksum

    def _write_object_file(self, checksum: str, otype: ObjectType, data: bytes) -> None:
        _content.write_object_bytes(self, checksum, otype, data)

    def write_dirtree(self, tree: DirTree) -> str:
        return self.write_metadata_bytes(ObjectType.DIR_TREE, tree.serialize())

    def write_dirmeta(self, meta: DirMeta) -> str:
        return self.write_metadata_bytes(ObjectType.DIR_META, meta.serialize())

    def write_commit(self, commit: Commit) -> str:
        return self.write_metadata_bytes(ObjectType.COMMIT, commit.serialize())

    def read_commitmeta(self, commit: str) -> dict | None:
        """The detached metadata of a commit, or None when it has none."""
        try:
            return self._load(commit, ObjectType.COMMIT_META)
        except NotFoundError:
            return None

    def write_commitmeta(self, commit: str, metadata: dict | None) -> None:
        """Replace (or with None, remove) a commit's detached metadata, atomically."""
        path = self.object_path(commit, ObjectType.COMMIT_META)
        if metadata is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        data = gvariant.serialize_vardict(metadata)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, sync=False)

    def write_commitmeta_bytes(self, commit: str, data: bytes) -> None:
        """Store raw detached metadata (checked to parse as ``a{sv}``)."""
        try:
            gvariant.parse("a{sv}", data)
        except FormatError as exc:
            raise CorruptionError(f"detached metadata of {commit} is malformed: {exc}") from None
        path = self.object_path(commit, ObjectType.COMMIT_META)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, sync=False)

    def open_content(self, checksum: str) -> tuple[FileHeader, BinaryIO | None]:
        """(FileHeader, binary stream or None for a symlink) of a content object, in any mode."""
        return _content.open_content(self, checksum)

    def write_content(self, header: FileHeader, data: bytes | BinaryIO | None, expected: str | None = None) -> str:
        """Store a content object from bytes or a stream; returns its checksum (verified against ``expected``)."""
        return _content.write_content(self, header, data, expected)

    def read_archive_filez(self, checksum: str) -> bytes:
        """The raw ``.filez`` bytes of a content object (archive repositories only)."""
        if not self.mode.is_archive:
            raise FormatError(f"{self.path} is a {self.mode.value} repository: it has no .filez objects")
        try:
            return self.object_path(checksum, ObjectType.FILE).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"content object {checksum} is not in the repository") from None

    def write_archive_filez(self, checksum: str, filez: bytes) -> None:
        """Store a raw ``.filez`` (archive) or unpack it (other modes), after verifying its checksum."""
        import io

        from hybridos.ostree.content import InflateReader, read_filez_header

        f = io.BytesIO(filez)
        header = read_filez_header(f, checksum)
        stream = None if header.is_symlink else InflateReader(f, header.size, checksum)
        if header.is_symlink and f.read(1):
            raise CorruptionError(f"content object {checksum}: symlink with data")
        if not self.mode.is_archive:
            self.write_content(header, stream, expected=checksum)
            return
        if self.has_object(checksum, ObjectType.FILE):
            return
        got, _ = _content.checksum_stream(header, stream)
        if got != checksum:
            raise CorruptionError(f"content object {checksum} is corrupt: its data hashes to {got}")
        self._write_object_file(checksum, ObjectType.FILE, filez)

    def list_objects(self) -> Iterator[tuple[str, ObjectType]]:
        """Every object in ``objects/`` as (checksum, type); unknown files are skipped."""
        return _iter_objects(self)

    # ------------------------------------------------------------------------------------------ refs

    def list_refs(self, prefix: str | None = None, remote: str | bool | None = None) -> dict[str, str]:
        from hybridos.ostree import refs
        return refs.list_refs(self, prefix, remote)

    def resolve_rev(self, rev: str, allow_missing: bool = False) -> str | None:
        from hybridos.ostree import refs
        return refs.resolve_rev(self, rev, allow_missing)

    def set_ref(self, ref: str, checksum: str | None) -> None:
        from hybridos.ostree import refs
        refs.set_ref(self, ref, checksum)

    # ------------------------------------------------------------------------------------------ operations

    def commit_tree(self, src_dir: str | os.PathLike, **kw) -> str:
        from hybridos.ostree.commit import commit_tree
        return commit_tree(self, src_dir, **kw)

    def checkout(self, rev: str, dest: str | os.PathLike, **kw) -> None:
        from hybridos.ostree.checkout import checkout
        checkout(self, rev, dest, **kw)

    def traverse_commit(self, checksum: str, **kw) -> set[tuple[str, ObjectType]]:
        from hybridos.ostree.traverse import traverse_commit
        return traverse_commit(self, checksum, **kw)

    def fsck(self, **kw) -> list:
        from hybridos.ostree.fsck import fsck
        return fsck(self, **kw)

    def prune(self, **kw):
        from hybridos.ostree.prune import prune
        return prune(self, **kw)

    def generate_summary(self, **kw) -> bytes:
        from hybridos.ostree.summary import generate_summary
        return generate_summary(self, **kw)

    def lock(self, *, exclusive: bool = False, timeout: float = 30.0):
        """Context manager holding ``.lock`` like libostree: shared for writers, exclusive for prune."""
        from hybridos.ostree.lock import repo_lock
        return repo_lock(self, exclusive=exclusive, timeout=timeout)

    def commit_is_partial(self, checksum: str) -> bool:
        return (self.path / "state" / f"{checksum}.commitpartial").exists()

    def sync(self) -> None:
        """Flush everything written to this repository's filesystem (ostree's end-of-transaction syncfs)."""
        syncfs(self.objects_dir)


def read_small_file(path: str) -> bytes:
    """Read a whole (metadata-sized) file with the fewest system calls: open, read until empty, close."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        first = os.read(fd, 1 << 16)
        if len(first) < 1 << 16:
            rest = b""
        else:
            parts = [first]
            while chunk := os.read(fd, 1 << 20):
                parts.append(chunk)
            first, rest = b"".join(parts), b""
        return first + rest
    finally:
        os.close(fd)



def _iter_objects(repo: Repo):
    try:
        top = os.scandir(repo.objects_dir)
    except FileNotFoundError:
        return
    with top:
        subdirs = sorted(e.name for e in top if len(e.name) == 2 and e.is_dir(follow_symlinks=False))
    for sub in subdirs:
        with os.scandir(os.path.join(repo.objects_dir, sub)) as it:
            for e in it:
                name, _, ext = e.name.partition(".")
                checksum = sub + name
                if len(checksum) != 64 or not ext:
                    continue
                try:
                    otype = ObjectType.from_extension(ext)
                except FormatError:
                    continue
                if otype is ObjectType.FILE and (ext == "filez") != repo.mode.is_archive:
                    continue
                yield checksum, otype

