"""OSTree's object model: value types and their GVariant forms (pure functions, no I/O).

uid, gid, mode, rdev, commit timestamps and the ``.filez`` size are stored big-endian inside little-endian
GVariant framing, as libostree does; the dataclasses hold ordinary host integers.
"""

from __future__ import annotations

import enum
import hashlib
import stat
import struct
from dataclasses import dataclass, field
from typing import Any

from hybridos import gvariant
from hybridos.errors import FormatError
from hybridos.gvariant import bswap32, bswap64

COMMIT_TYPE = "(a{sv}aya(say)sstayay)"
DIRTREE_TYPE = "(a(say)a(sayay))"
DIRMETA_TYPE = "(uuua(ayay))"
FILEHEADER_TYPE = "(uuuusa(ayay))"
ZLIB_FILEHEADER_TYPE = "(tuuuusa(ayay))"
COMMITMETA_TYPE = "a{sv}"
SUMMARY_TYPE = "(a(s(taya{sv}))a{sv})"

Xattrs = tuple[tuple[bytes, bytes], ...]


class ObjectType(enum.IntEnum):
    """Object types with libostree's numbering."""

    FILE = 1
    DIR_TREE = 2
    DIR_META = 3
    COMMIT = 4
    TOMBSTONE_COMMIT = 5
    COMMIT_META = 6
    PAYLOAD_LINK = 7
    FILE_XATTRS = 8
    FILE_XATTRS_LINK = 9

    @property
    def extension(self) -> str:
        """The file extension in ``objects/`` (content is ``file``; archive repos use ``filez``)."""
        return _EXT[self]

    @property
    def is_meta(self) -> bool:
        return self is not ObjectType.FILE

    @classmethod
    def from_extension(cls, ext: str) -> ObjectType:
        if ext == "filez":
            return cls.FILE
        for k, v in _EXT.items():
            if v == ext:
                return k
        raise FormatError(f"unknown object extension {ext!r}")


_EXT = {ObjectType.FILE: "file", ObjectType.DIR_TREE: "dirtree", ObjectType.DIR_META: "dirmeta",
        ObjectType.COMMIT: "commit", ObjectType.TOMBSTONE_COMMIT: "commit-tombstone",
        ObjectType.COMMIT_META: "commitmeta", ObjectType.PAYLOAD_LINK: "payload-link",
        ObjectType.FILE_XATTRS: "file-xattrs", ObjectType.FILE_XATTRS_LINK: "file-xattrs-link"}

_HEX = frozenset("0123456789abcdef")


def is_checksum(s: str) -> bool:
    return isinstance(s, str) and len(s) == 64 and set(s) <= _HEX


def validate_checksum(s: str) -> str:
    if not is_checksum(s):
        raise FormatError(f"invalid checksum {s!r}: expected 64 lowercase hex digits")
    return s


def csum_bytes(s: str) -> bytes:
    return bytes.fromhex(validate_checksum(s))


def csum_hex(b: bytes) -> str:
    if len(b) != 32:
        raise FormatError(f"invalid checksum: {len(b)} bytes instead of 32")
    return b.hex()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def validate_filename(name: str) -> str:
    """A dirtree entry name: not empty, not ``.``/``..``, no ``/``, no NUL."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise FormatError(f"invalid file name {name!r} in a directory tree")
    return name


def _xattrs_in(x: Any) -> Xattrs:
    return tuple(sorted((bytes(n), bytes(v)) for n, v in x))


def _check_xattrs(x: Xattrs) -> Xattrs:
    prev = None
    for name, _ in x:
        if len(name) < 2 or not name.endswith(b"\0") or b"\0" in name[:-1]:
            raise FormatError("invalid extended attribute name in object")
        if prev is not None and name <= prev:
            raise FormatError("extended attributes are not sorted or have duplicates")
        prev = name
    return x


def xattrs_from_names(pairs: dict[str, bytes] | list[tuple[str | bytes, bytes]]) -> Xattrs:
    """Build the canonical xattr tuple (names get their trailing NUL, sorted)."""
    items = pairs.items() if isinstance(pairs, dict) else pairs
    out = []
    for n, v in items:
        nb = n.encode() if isinstance(n, str) else bytes(n)
        if not nb.endswith(b"\0"):
            nb += b"\0"
        out.append((nb, bytes(v)))
    return _check_xattrs(tuple(sorted(out)))


# ---------------------------------------------------------------------------------------------------- fast forms
# Hand-specialized serializers for the hot types; tests check them against the generic codec.

def _cstring(s: str) -> bytes:
    b = s.encode("utf-8")
    if b"\0" in b:
        raise FormatError("strings in objects cannot contain NUL")
    return b + b"\0"


def _xattrs_bytes(xattrs: Xattrs) -> bytes:
    """``a(ayay)``: each element is name, value, and the framing offset of the name's end."""
    if not xattrs:
        return b""
    return gvariant.frame_array([gvariant.frame(bytes(n) + bytes(v), [len(n)]) for n, v in xattrs])


def _dirtree_bytes(files: list[tuple[bytes, bytes]], dirs: list[tuple[bytes, bytes, bytes]]) -> bytes:
    """``(a(say)a(sayay))`` from sorted (name bytes, raw checksums) lists."""
    fa = gvariant.frame_array([gvariant.frame(n + b"\0" + c, [len(n) + 1]) for n, c in files])
    da = gvariant.frame_array([gvariant.frame(n + b"\0" + t + m, [len(n) + 33, len(n) + 1]) for n, t, m in dirs])
    return gvariant.frame(fa + da, [len(fa)])


def _dirtree_fast_parse(data: bytes):
    (fend,), end = gvariant.unframe_tuple(data, 1)
    if fend > end:
        raise ValueError("bad framing")
    files = []
    for e in gvariant.unframe_array(data[:fend]):
        (send,), body = gvariant.unframe_tuple(e, 1)
        if send < 1 or e[send - 1] != 0 or body - send != 32:
            raise ValueError("bad entry")
        files.append((e[:send - 1], e[send:body]))
    dirs = []
    for e in gvariant.unframe_array(data[fend:end]):
        (send, tend), body = gvariant.unframe_tuple(e, 2)
        if send < 1 or e[send - 1] != 0 or tend - send != 32 or body - tend != 32:
            raise ValueError("bad entry")
        dirs.append((e[:send - 1], e[send:tend], e[tend:body]))
    return files, dirs


# ---------------------------------------------------------------------------------------------------- dirmeta

@dataclass(frozen=True)
class DirMeta:
    uid: int
    gid: int
    mode: int  # full st_mode including S_IFDIR
    xattrs: Xattrs = ()

    def serialize(self) -> bytes:
        return struct.pack(">III", self.uid, self.gid, self.mode) + _xattrs_bytes(self.xattrs)

    @classmethod
    def parse(cls, data: bytes) -> DirMeta:
        uid, gid, mode, xattrs = gvariant.parse(DIRMETA_TYPE, data)
        m = DirMeta(bswap32(uid), bswap32(gid), bswap32(mode), _check_xattrs(_xattrs_in(xattrs)))
        if not stat.S_ISDIR(m.mode):
            raise FormatError(f"dirmeta mode {m.mode:o} is not a directory")
        return m


# ---------------------------------------------------------------------------------------------------- dirtree

@dataclass(frozen=True)
class DirTree:
    """files: ((name, content checksum), ...); dirs: ((name, dirtree checksum, dirmeta checksum), ...)."""

    files: tuple[tuple[str, str], ...] = ()
    dirs: tuple[tuple[str, str, str], ...] = ()

    def serialize(self) -> bytes:
        files = sorted((validate_filename(n).encode("utf-8"), csum_bytes(c)) for n, c in self.files)
        dirs = sorted((validate_filename(n).encode("utf-8"), csum_bytes(t), csum_bytes(m)) for n, t, m in self.dirs)
        return _dirtree_bytes(files, dirs)

    @classmethod
    def parse(cls, data: bytes, *, normal_form: bool = True) -> DirTree:
        """Parse a dirtree; ``normal_form=False`` skips the re-serialization check (bytes already verified by
        their checksum, as for a checkout)."""
        try:
            files, dirs = _dirtree_fast_parse(data)
            if normal_form and _dirtree_bytes(files, dirs) != data:
                raise ValueError("not normal form")
            out = DirTree(tuple((validate_filename(n.decode("utf-8")), c.hex()) for n, c in files),
                          tuple((validate_filename(n.decode("utf-8")), t.hex(), m.hex()) for n, t, m in dirs))
        except (ValueError, IndexError, UnicodeDecodeError):
            # the generic parser says precisely what is wrong
            fl, dl = gvariant.parse(DIRTREE_TYPE, data)
            out = DirTree(tuple((validate_filename(n), csum_hex(c)) for n, c in fl),
                          tuple((validate_filename(n), csum_hex(t), csum_hex(m)) for n, t, m in dl))
        for seq in (out.files, out.dirs):
            names = [e[0].encode("utf-8") for e in seq]
            if any(a >= b for a, b in zip(names, names[1:], strict=False)):
                raise FormatError("dirtree entries are not sorted or have duplicates")
        return out

    def lookup_file(self, name: str) -> str | None:
        for n, c in self.files:
            if n == name:
                return c
        return None

    def lookup_dir(self, name: str) -> tuple[str, str] | None:
        for n, t, m in self.dirs:
            if n == name:
                return t, m
        return None


# ---------------------------------------------------------------------------------------------------- commit

@dataclass(frozen=True)
class Commit:
    metadata: dict = field(default_factory=dict)
    parent: str | None = None
    subject: str = ""
    body: str = ""
    timestamp: int = 0  # seconds since the epoch, UTC
    root_tree: str = ""
    root_meta: str = ""
    related: tuple[tuple[str, str], ...] = ()

    @property
    def version(self) -> str | None:
        v = self.metadata.get("version")
        return v if isinstance(v, str) else None

    @property
    def ref_binding(self) -> list[str]:
        v = self.metadata.get("ostree.ref-binding")
        return list(v) if isinstance(v, list) else []

    @property
    def content_checksum(self) -> str:
        """What ``ostree log`` shows as ContentChecksum."""
        return sha256_hex(csum_bytes(self.root_tree) + csum_bytes(self.root_meta))

    def serialize(self) -> bytes:
        return gvariant.serialize(COMMIT_TYPE, (
            {str(k): gvariant.to_variant(v) for k, v in self.metadata.items()},
            csum_bytes(self.parent) if self.parent else b"",
            [(n, csum_bytes(c)) for n, c in self.related],
            self.subject, self.body, bswap64(self.timestamp),
            csum_bytes(self.root_tree), csum_bytes(self.root_meta)))

    @classmethod
    def parse(cls, data: bytes) -> Commit:
        meta, parent, related, subject, body, ts, tree, dmeta = gvariant.parse(COMMIT_TYPE, data)
        return Commit(metadata={k: gvariant.from_variant(v) for k, v in meta.items()},
                      parent=csum_hex(parent) if parent else None,
                      subject=subject, body=body, timestamp=bswap64(ts),
                      root_tree=csum_hex(tree), root_meta=csum_hex(dmeta),
                      related=tuple((n, csum_hex(c)) for n, c in related))


# ---------------------------------------------------------------------------------------------------- content

@dataclass(frozen=True)
class FileHeader:
    """A content object's header: ownership, mode (with S_IFREG or S_IFLNK), symlink target, xattrs.

    ``size`` is the file's length (known for archive objects and whenever the data is at hand).
    """

    uid: int
    gid: int
    mode: int
    symlink_target: str = ""
    xattrs: Xattrs = ()
    rdev: int = 0
    size: int = 0

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def is_regular(self) -> bool:
        return stat.S_ISREG(self.mode)

    def serialize(self) -> bytes:
        """The ``(uuuusa(ayay))`` header that content checksums cover."""
        head = struct.pack(">IIII", self.uid, self.gid, self.mode, self.rdev) + _cstring(self.symlink_target)
        return gvariant.frame(head + _xattrs_bytes(self.xattrs), [len(head)])

    def serialize_zlib(self) -> bytes:
        """The ``(tuuuusa(ayay))`` header at the start of an archive ``.filez``."""
        head = struct.pack(">QIIII", self.size, self.uid, self.gid, self.mode, self.rdev) + \
            _cstring(self.symlink_target)
        return gvariant.frame(head + _xattrs_bytes(self.xattrs), [len(head)])

    def checksum_prefix(self) -> bytes:
        """The bytes hashed before the file data: size-prefixed header."""
        return _sized(self.serialize())

    @classmethod
    def parse(cls, data: bytes, size: int = 0) -> FileHeader:
        fast = _fast_header(data, 16, ">IIII")
        if fast is not None:
            (uid, gid, mode, rdev), target = fast
            h = FileHeader(uid, gid, mode, target, (), rdev, size)
            if h.serialize() == data:
                return _checked_header(h)
        uid, gid, mode, rdev, target, xattrs = gvariant.parse(FILEHEADER_TYPE, data)
        return _checked_header(FileHeader(bswap32(uid), bswap32(gid), bswap32(mode), target,
                                          _check_xattrs(_xattrs_in(xattrs)), bswap32(rdev), size))

    @classmethod
    def parse_zlib(cls, data: bytes) -> FileHeader:
        fast = _fast_header(data, 24, ">QIIII")
        if fast is not None:
            (size, uid, gid, mode, rdev), target = fast
            h = FileHeader(uid, gid, mode, target, (), rdev, size)
            if h.serialize_zlib() == data:
                return _checked_header(h)
        size, uid, gid, mode, rdev, target, xattrs = gvariant.parse(ZLIB_FILEHEADER_TYPE, data)
        return _checked_header(FileHeader(bswap32(uid), bswap32(gid), bswap32(mode), target,
                                          _check_xattrs(_xattrs_in(xattrs)), bswap32(rdev), bswap64(size)))

    def replace(self, **kw) -> FileHeader:
        from dataclasses import replace
        return replace(self, **kw)


def _fast_header(data: bytes, head: int, fmt: str):
    """The common case of a content header without xattrs: (fixed fields, symlink target) or None."""
    size = len(data)
    if size <= head or size > 255:
        return None
    s_end = data[-1]
    if s_end != size - 1 or data[s_end - 1] != 0:
        return None
    raw = data[head:s_end - 1]
    if b"\0" in raw:
        return None
    try:
        target = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return struct.unpack_from(fmt, data), target


def _checked_header(h: FileHeader) -> FileHeader:
    if h.is_symlink:
        if not h.symlink_target:
            raise FormatError("symlink content object without a target")
    elif h.is_regular:
        if h.symlink_target:
            raise FormatError("regular file content object with a symlink target")
    else:
        raise FormatError(f"content object with unsupported mode {h.mode:o} (only regular files and symlinks)")
    if h.rdev:
        raise FormatError("content object with a device number")
    return h


def _sized(hdr: bytes) -> bytes:
    return struct.pack(">I", len(hdr)) + b"\0\0\0\0" + hdr


def split_sized(data: bytes, what: str) -> tuple[bytes, int]:
    """Split ``BE32 len + 4 pad + header`` off the front: (header bytes, offset of what follows)."""
    if len(data) < 8:
        raise FormatError(f"truncated {what}: no header")
    (n,) = struct.unpack_from(">I", data, 0)
    if data[4:8] != b"\0\0\0\0":
        raise FormatError(f"malformed {what}: header padding is not zero")
    if 8 + n > len(data):
        raise FormatError(f"truncated {what}: header of {n} bytes does not fit")
    return data[8:8 + n], 8 + n


def content_checksum(header: FileHeader, data: bytes = b"") -> str:
    """The content checksum of a file with ``header`` and ``data`` (empty for symlinks)."""
    h = hashlib.sha256(header.checksum_prefix())
    h.update(data)
    return h.hexdigest()


def filez_prefix(header: FileHeader) -> bytes:
    """The start of an archive ``.filez``: size-prefixed zlib header (then raw deflate of the data)."""
    return _sized(header.serialize_zlib())


# ---------------------------------------------------------------------------------------------------- bare-user

BAREUSER_META_TYPE = "(uuua(ayay))"
BAREUSER_XATTR = "user.ostreemeta"


def serialize_bareuser_meta(h: FileHeader) -> bytes:
    return gvariant.serialize(BAREUSER_META_TYPE, (bswap32(h.uid), bswap32(h.gid), bswap32(h.mode), list(h.xattrs)))


def parse_bareuser_meta(data: bytes) -> tuple[int, int, int, Xattrs]:
    if len(data) == 12:  # no xattrs: three big-endian fields, nothing else to check
        return struct.unpack(">III", data) + ((),)
    uid, gid, mode, xattrs = gvariant.parse(BAREUSER_META_TYPE, data)
    return bswap32(uid), bswap32(gid), bswap32(mode), _check_xattrs(_xattrs_in(xattrs))


# ---------------------------------------------------------------------------------------------------- summary

@dataclass(frozen=True)
class SummaryRef:
    name: str
    commit: str
    size: int
    metadata: dict


@dataclass(frozen=True)
class Summary:
    refs: tuple[SummaryRef, ...]
    metadata: dict

    def serialize(self) -> bytes:
        refs = sorted(self.refs, key=lambda r: r.name.encode())
        return gvariant.serialize(SUMMARY_TYPE, (
            [(r.name, (r.size, csum_bytes(r.commit), {k: gvariant.to_variant(v) for k, v in r.metadata.items()}))
             for r in refs],
            {k: gvariant.to_variant(v) for k, v in self.metadata.items()}))

    @classmethod
    def parse(cls, data: bytes) -> Summary:
        refs, meta = gvariant.parse(SUMMARY_TYPE, data)
        return Summary(
            tuple(SummaryRef(n, csum_hex(c), size, {k: gvariant.from_variant(v) for k, v in m.items()})
                  for n, (size, c, m) in refs),
            {k: gvariant.from_variant(v) for k, v in meta.items()})

    def lookup(self, ref: str) -> SummaryRef | None:
        for r in self.refs:
            if r.name == ref:
                return r
        return None
