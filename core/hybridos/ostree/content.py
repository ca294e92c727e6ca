"""Content objects on disk in each repository mode: streaming write (hash while storing) and read back.

Everything streams in chunks: no file is ever held whole in memory.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import itertools
import os
import stat
import struct
import threading
from typing import TYPE_CHECKING, BinaryIO

from hybridos.errors import CorruptionError, FormatError, NotFoundError
from hybridos.ostree.objects import (
    BAREUSER_XATTR,
    FileHeader,
    ObjectType,
    filez_prefix,
    parse_bareuser_meta,
    serialize_bareuser_meta,
    split_sized,
)

if TYPE_CHECKING:
    from hybridos.ostree.repo import Repo

try:  # zlib-ng: the same raw deflate streams, 2-3x faster; stdlib zlib when it is missing
    from zlib_ng import zlib_ng as zlib
except ImportError:  # pragma: no cover
    import zlib  # type: ignore[no-redef]

CHUNK = 1 << 20
IN_CHUNK = 1 << 16  # compressed input fed to inflate at a time: bounds the unconsumed tail
_counter = itertools.count()
_OBJ_MODES = {"bare", "bare-user", "bare-user-only"}


def tmp_name(repo: Repo, prefix: str = "obj") -> str:
    return os.path.join(repo.tmp_dir, f"{prefix}-{os.getpid()}-{threading.get_ident()}-{next(_counter)}")


def _xattrs_to_fd(fd_or_path, xattrs, follow=True) -> None:
    for name, value in xattrs:
        os.setxattr(fd_or_path, name[:-1].decode("utf-8", "surrogateescape"), value, follow_symlinks=follow)


def bareuser_ondisk_mode(mode: int) -> int:
    """The permission bits a bare-user object file gets (libostree: ``(mode & 0775) | S_IRUSR``)."""
    return (mode & 0o775) | 0o400


def canonical_bareuseronly_mode(mode: int) -> int:
    """bare-user-only keeps only ``0755`` of the permission bits (what ``ostree commit`` does there)."""
    return stat.S_IFMT(mode) | (mode & 0o755)


def check_header_for_mode(repo: Repo, header: FileHeader) -> None:
    """Refuse content a repository mode cannot represent."""
    if repo.mode.value == "bare-user-only":
        if header.uid or header.gid or header.xattrs:
            raise FormatError("bare-user-only repositories cannot store file ownership or xattrs "
                              "(commit with --owner-uid=0 --owner-gid=0 --no-xattrs)")
        if header.is_regular and header.mode & ~(stat.S_IFMT(header.mode) | 0o775):
            raise FormatError(f"bare-user-only repositories cannot store mode {header.mode & 0o7777:04o}")


def _ensure_dir(repo: Repo, dest: str) -> None:
    d = os.path.dirname(dest)
    if d not in repo._known_dirs:
        os.makedirs(d, exist_ok=True)
        repo._known_dirs.add(d)


def place_object(repo: Repo, tmp: str, checksum: str, otype: ObjectType) -> bool:
    """Rename a verified temp file into ``objects/``; drop it when the object exists. True when newly placed."""
    dest = repo.object_path_str(checksum, otype)
    _ensure_dir(repo, dest)
    if os.path.lexists(dest):
        os.unlink(tmp)
        return False
    os.rename(tmp, dest)
    return True


_ROOT_FD: list[int] = []


def _root_fd() -> int:
    if not _ROOT_FD:
        _ROOT_FD.append(os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    return _ROOT_FD[0]


class TmpObject:
    """A temporary object file: unnamed (O_TMPFILE) where the filesystem allows, so that an interrupted writer
    leaves nothing behind; linked into ``objects/`` only once its checksum is verified."""

    def __init__(self, repo: Repo):
        self.repo = repo
        self.name: str | None = None
        self.fd = -1
        if repo._tmpfile_ok:
            try:
                self.fd = os.open(repo.tmp_dir, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600)
                return
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                    raise
                repo._tmpfile_ok = False
        self.name = tmp_name(repo)
        self.fd = os.open(self.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)

    def place(self, checksum: str, otype: ObjectType) -> bool:
        """Make the file visible as the object; False when the object was there already."""
        if self.name is not None:
            os.close(self.fd)
            self.fd = -1
            placed = place_object(self.repo, self.name, checksum, otype)
            self.name = None
            return placed
        dest = self.repo.object_path_str(checksum, otype)
        _ensure_dir(self.repo, dest)
        try:
            # linkat(AT_SYMLINK_FOLLOW) of an O_TMPFILE file; a dir fd makes Python use linkat() at all
            os.link(f"/proc/self/fd/{self.fd}", dest, src_dir_fd=_root_fd(), follow_symlinks=True)
        except FileExistsError:
            return False
        finally:
            os.close(self.fd)
            self.fd = -1
        return True

    def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.name is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.name)
            self.name = None


def write_content(repo: Repo, header: FileHeader, data: bytes | BinaryIO | None,
                  expected: str | None = None) -> str:
    """Store one content object (streaming ``data``); returns its checksum, verified against ``expected``."""
    if expected is not None and repo.has_object(expected, ObjectType.FILE):
        return expected
    check_header_for_mode(repo, header)
    if isinstance(data, (bytes, bytearray, memoryview)):
        header = header.replace(size=len(data))
        stream: BinaryIO | None = io.BytesIO(bytes(data))
    else:
        stream = data
    if header.is_symlink:
        stream = None
        header = header.replace(size=0)
    if header.is_symlink and repo.mode.value in ("bare", "bare-user-only"):
        return _write_bare_symlink(repo, header, expected)
    tmp = TmpObject(repo)
    try:
        if repo.mode.value == "archive-z2":
            checksum = _write_archive(repo, tmp.fd, header, stream)
        else:
            checksum = _write_bare(repo, tmp.fd, header, stream)
        if expected is not None and checksum != expected:
            raise CorruptionError(f"content object {expected} is corrupt: its data hashes to {checksum}")
        tmp.place(checksum, ObjectType.FILE)
    finally:
        tmp.discard()
    return checksum


def write_object_bytes(repo: Repo, checksum: str, otype: ObjectType, data: bytes) -> bool:
    """Store already verified bytes as an object file (0644); True when newly placed."""
    return _write_object_chunks(repo, checksum, otype, (data,))


def write_object_stream(repo: Repo, checksum: str, otype: ObjectType, f: BinaryIO) -> bool:
    """The same for object bytes read from ``f`` in chunks (never whole in memory)."""
    return _write_object_chunks(repo, checksum, otype, iter_stream(f))


def _write_object_chunks(repo: Repo, checksum: str, otype: ObjectType, chunks) -> bool:
    tmp = TmpObject(repo)
    try:
        for chunk in chunks:
            _write_all(tmp.fd, chunk)
        os.fchmod(tmp.fd, 0o644)
        return tmp.place(checksum, otype)
    finally:
        tmp.discard()


def _write_archive(repo: Repo, fd: int, header: FileHeader, stream: BinaryIO | None) -> str:
    h = hashlib.sha256(header.checksum_prefix())
    prefix = filez_prefix(header)
    with os.fdopen(fd, "wb", closefd=False) as f:
        f.write(prefix)
        if stream is not None:
            comp = zlib.compressobj(repo.zlib_level, zlib.DEFLATED, -15)
            total = 0
            for chunk in iter_stream(stream):
                total += len(chunk)
                h.update(chunk)
                f.write(comp.compress(chunk))
            f.write(comp.flush())
            if total != header.size:
                # the size field is a fixed-width ``t``: rewrite the prefix in place with the real size
                f.flush()
                os.pwrite(fd, filez_prefix(header.replace(size=total)), 0)
    os.fchmod(fd, 0o644)
    return h.hexdigest()


def iter_stream(stream: BinaryIO, size: int = CHUNK):
    """Chunks of a stream; raw files are read into one reused buffer (memoryviews valid until the next)."""
    readinto = getattr(stream, "readinto", None)
    if readinto is not None and not isinstance(stream, InflateReader):
        buf = bytearray(size)
        view = memoryview(buf)
        while True:
            n = readinto(view)
            if not n:
                return
            yield view[:n]
    else:
        while True:
            chunk = stream.read(size)
            if not chunk:
                return
            yield chunk


def _write_bare_symlink(repo: Repo, header: FileHeader, expected: str | None) -> str:
    """bare and bare-user-only store symlinks as symlinks (a named temp: there is no O_TMPFILE symlink)."""
    checksum = hashlib.sha256(header.checksum_prefix()).hexdigest()
    if expected is not None and checksum != expected:
        raise CorruptionError(f"content object {expected} is corrupt: its data hashes to {checksum}")
    tmp = tmp_name(repo)
    try:
        os.symlink(header.symlink_target, tmp)
        if repo.mode.value == "bare":
            os.lchown(tmp, header.uid, header.gid)
            _xattrs_to_fd(tmp, header.xattrs, follow=False)
        place_object(repo, tmp, checksum, ObjectType.FILE)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return checksum


def _write_bare(repo: Repo, fd: int, header: FileHeader, stream: BinaryIO | None) -> str:
    mode = repo.mode.value
    h = hashlib.sha256(header.checksum_prefix())
    if header.is_symlink:  # bare-user: a regular file holding the target and a NUL
        _write_all(fd, header.symlink_target.encode("utf-8") + b"\0")
    elif stream is not None:
        for chunk in iter_stream(stream):
            h.update(chunk)
            _write_all(fd, chunk)
    _finish_bare(mode, fd, header)
    return h.hexdigest()


def _finish_bare(mode: str, fd: int, header: FileHeader, bareuser_meta: bytes | None = None) -> None:
    """Ownership, mode, xattrs and the zero mtime of a bare-mode object file, as its mode stores them."""
    if mode == "bare":
        os.fchown(fd, header.uid, header.gid)
        os.fchmod(fd, header.mode & 0o7777)
        _xattrs_to_fd(fd, header.xattrs)
    elif mode == "bare-user":
        os.setxattr(fd, BAREUSER_XATTR, bareuser_meta or serialize_bareuser_meta(header))
        os.fchmod(fd, bareuser_ondisk_mode(header.mode) if header.is_regular else 0o644)
    else:
        os.fchmod(fd, header.mode & 0o7777)
    os.utime(fd, ns=(0, 0))


def write_verified_regular(repo: Repo, checksum: str, header: FileHeader, body: bytes,
                           bareuser_meta: bytes | None = None) -> bool:
    """Store a regular file whose ``checksum`` the caller has verified over ``header`` and ``body`` (held in
    memory) in a bare mode: one write, then what ``_write_bare`` sets. True when newly placed.
    ``bareuser_meta``, when given, is ``serialize_bareuser_meta(header)`` computed once by the caller."""
    check_header_for_mode(repo, header)
    tmp = TmpObject(repo)
    try:
        _write_all(tmp.fd, body)
        _finish_bare(repo.mode.value, tmp.fd, header, bareuser_meta)
        return tmp.place(checksum, ObjectType.FILE)
    finally:
        tmp.discard()


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


# ---------------------------------------------------------------------------------------------------- reading

class InflateReader(io.RawIOBase):
    """Inflates a raw-deflate ``.filez`` body in bounded steps; checks the stream ends exactly at end of file
    and has the size the header says."""

    def __init__(self, f: BinaryIO, expected_size: int, name: str):
        self._f = f
        self._d = zlib.decompressobj(-15)
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._out = 0
        self._expected = expected_size
        self._name = name

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        while self._pos >= len(self._buf) and not self._eof:
            data = self._d.unconsumed_tail or self._f.read(IN_CHUNK)
            try:
                if data:
                    out = self._d.decompress(data, CHUNK)
                else:
                    out = self._d.flush()
                    if not self._d.eof:
                        raise CorruptionError(f"content object {self._name}: compressed data is truncated")
            except zlib.error as exc:
                raise CorruptionError(f"content object {self._name}: bad compressed data ({exc})") from None
            if self._d.eof:
                if self._d.unused_data or self._f.read(1):
                    raise CorruptionError(f"content object {self._name}: data after the compressed stream")
                self._eof = True
            self._buf, self._pos = out, 0
            self._out += len(out)
            if self._out > self._expected:
                raise CorruptionError(f"content object {self._name}: longer than its header says")
        if self._eof and self._pos >= len(self._buf) and self._out != self._expected:
            raise CorruptionError(f"content object {self._name}: shorter than its header says")

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while chunk := self.read(CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        self._fill()
        buf, pos = self._buf, self._pos
        if pos == 0 and n >= len(buf):
            self._pos = len(buf)
            return buf
        out = buf[pos:pos + n]
        self._pos = pos + len(out)
        return out

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._f.close()
        super().close()


def read_filez_header(f: BinaryIO, checksum: str) -> FileHeader:
    start = f.read(8)
    if len(start) < 8:
        raise CorruptionError(f"content object {checksum}: truncated header")
    (n,) = struct.unpack(">I", start[:4])
    if n > 1 << 24:
        raise CorruptionError(f"content object {checksum}: implausible header length {n}")
    body = f.read(n)
    try:
        hdr, _ = split_sized(start + body, f"content object {checksum}")
        return FileHeader.parse_zlib(hdr)
    except FormatError as exc:
        raise CorruptionError(f"content object {checksum}: {exc}") from None


def open_content(repo: Repo, checksum: str) -> tuple[FileHeader, BinaryIO | None]:
    """(header, stream of the file's bytes or None for a symlink) for a content object in any mode."""
    path = repo.object_path_str(checksum, ObjectType.FILE)
    mode = repo.mode.value
    try:
        if mode == "archive-z2":
            f = open(path, "rb")  # noqa: SIM115 - returned to the caller
            try:
                header = read_filez_header(f, checksum)
            except BaseException:
                f.close()
                raise
            if header.is_symlink:
                rest = f.read(1)
                f.close()
                if rest:
                    raise CorruptionError(f"content object {checksum}: symlink with data")
                return header, None
            return header, InflateReader(f, header.size, checksum)
        st = os.lstat(path)
        if mode == "bare-user":
            try:
                uid, gid, fmode, xattrs = parse_bareuser_meta(os.getxattr(path, BAREUSER_XATTR))
            except OSError as exc:
                if exc.errno in (errno.ENODATA, errno.ENOTSUP):
                    raise CorruptionError(f"content object {checksum}: missing {BAREUSER_XATTR}") from None
                raise
            except FormatError as exc:
                raise CorruptionError(f"content object {checksum}: bad {BAREUSER_XATTR}: {exc}") from None
            if stat.S_ISLNK(fmode):
                with open(path, "rb") as f:
                    raw = f.read(8192)
                if not raw.endswith(b"\0"):
                    raise CorruptionError(f"content object {checksum}: symlink target without NUL")
                try:
                    target = raw[:-1].decode("utf-8")
                except UnicodeDecodeError:
                    raise CorruptionError(f"content object {checksum}: symlink target not UTF-8") from None
                return FileHeader(uid, gid, fmode, target, xattrs), None
            if not stat.S_ISREG(fmode):
                raise CorruptionError(f"content object {checksum}: bad mode {fmode:o}")
            return FileHeader(uid, gid, fmode, "", xattrs, size=st.st_size), open(path, "rb", buffering=0)
        if mode == "bare":
            xattrs = read_xattrs(path, follow=False)
            uid, gid = st.st_uid, st.st_gid
        else:
            xattrs = ()
            uid = gid = 0
        if stat.S_ISLNK(st.st_mode):
            return FileHeader(uid, gid, st.st_mode, os.readlink(path), xattrs), None
        return FileHeader(uid, gid, st.st_mode, "", xattrs, size=st.st_size), open(path, "rb", buffering=0)
    except FileNotFoundError:
        raise NotFoundError(f"content object {checksum} is not in the repository") from None


def read_xattrs(path_or_fd, follow: bool = True):
    """Extended attributes as the canonical sorted ((name+NUL, value), ...) tuple."""
    try:
        names = os.listxattr(path_or_fd, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return ()
        raise
    out = []
    for n in names:
        try:
            v = os.getxattr(path_or_fd, n, follow_symlinks=follow)
        except OSError as exc:
            if exc.errno == errno.ENODATA:
                continue
            raise
        out.append((n.encode("utf-8", "surrogateescape") + b"\0", v))
    out.sort()
    return tuple(out)


def checksum_stream(header: FileHeader, stream: BinaryIO | None) -> tuple[str, int]:
    """Recompute a content checksum from a header and a stream: (checksum, bytes read)."""
    h = hashlib.sha256(header.checksum_prefix())
    n = 0
    if stream is not None:
        for chunk in iter_stream(stream):
            n += len(chunk)
            h.update(chunk)
    return h.hexdigest(), n
