"""RPM payload reading: decompression (gzip, bzip2, xz/lzma, zstd) and a streaming cpio reader.

rpm writes "newc" cpio (magic 070701) and, for packages with files over 4 GiB, "stripped" cpio (magic 07070X)
whose members carry only an index into the header's file list. Member names start with "./".
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import zstandard

from hybridos.errors import FormatError

NEWC_MAGIC = b"070701"
CRC_MAGIC = b"070702"
STRIPPED_MAGIC = b"07070X"
TRAILER = "TRAILER!!!"
_CHUNK = 1 << 20

_MAGICS = {
    "gzip": (b"\x1f\x8b",),
    "bzip2": (b"BZh",),
    "xz": (b"\xfd7zXZ\x00",),
    "lzma": (b"\x5d\x00\x00",),
    "zstd": (b"\x28\xb5\x2f\xfd",),
}
COMPRESSORS = frozenset(_MAGICS) | {"identity"}
_DECOMPRESS_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError, zstandard.ZstdError)


def open_decompressed(raw: BinaryIO, compressor: str) -> BinaryIO:
    """Wrap ``raw`` (positioned at the payload) in a streaming decompressor for ``compressor``."""
    compressor = compressor or "gzip"
    if compressor not in COMPRESSORS:
        raise FormatError(f"unknown RPM payload compression {compressor!r} "
                          f"(supported: {', '.join(sorted(COMPRESSORS))})")
    if compressor == "identity":
        return raw
    peek = raw.read(8)
    if raw.seekable():
        raw.seek(-len(peek), os.SEEK_CUR)
        stream = raw
    else:
        stream = _Prefixed(peek, raw)
    if compressor == "gzip" and peek.startswith(b"07070"):
        return stream   # no compressor tag and plain cpio: rpm's gzip reader passes it through
    if not any(peek.startswith(m) for m in _MAGICS[compressor]):
        raise FormatError(f"RPM payload is not {compressor} data as its header claims (or it is truncated)")
    if compressor == "gzip":
        return gzip.GzipFile(fileobj=stream, mode="rb")
    if compressor == "bzip2":
        return bz2.BZ2File(stream, "rb")
    if compressor in ("xz", "lzma"):
        return lzma.LZMAFile(stream, "rb")
    # small buffers: large reads bypass the buffer anyway, and most packages are small
    reader = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
    return io.BufferedReader(reader, 1 << 16)


def read_whole(stream: BinaryIO, limit: int) -> bytes | BinaryIO:
    """All of a decompressed payload as bytes when it has at most ``limit`` bytes (cheaper to parse), else a
    stream of the same data. :func:`iter_cpio` takes either."""
    try:
        data = stream.read(limit + 1)
    except _DECOMPRESS_ERRORS as e:
        raise FormatError(f"RPM payload is corrupt or truncated: {e}") from None
    return data if len(data) <= limit else io.BufferedReader(_Prefixed(data, stream))


class _Prefixed(io.RawIOBase):
    """A raw stream that first returns already-read bytes."""

    def __init__(self, prefix: bytes, rest: BinaryIO):
        self._prefix = memoryview(prefix)   # consumed by moving an offset: the prefix may be large
        self._pos = 0
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._pos < len(self._prefix):
            n = min(len(b), len(self._prefix) - self._pos)
            b[:n] = self._prefix[self._pos:self._pos + n]
            self._pos += n
            return n
        data = self._rest.read(len(b))
        b[:len(data)] = data
        return len(data)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            data = bytes(self._prefix[self._pos:]) + self._rest.read()
            self._pos = len(self._prefix)
            return data
        return super().read(n)


@dataclass(frozen=True)
class CpioEntry:
    """One member of the payload archive; ``index`` is the header file index for stripped archives, else -1."""

    name: str          #: absolute path ("/usr/bin/foo"); empty for stripped members
    ino: int
    mode: int
    uid: int
    gid: int
    nlink: int
    mtime: int
    size: int
    rdev: int
    index: int = -1


class _Reader:
    """Read-only view of the current member's data."""

    def __init__(self, stream: _Stream, size: int):
        self._s = stream
        self.remaining = size

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self.remaining:
            n = self.remaining
        data = self._s.read(n)
        self.remaining -= len(data)
        return data

    def chunks(self, size: int = _CHUNK) -> Iterator[bytes]:
        while self.remaining:
            yield self.read(min(size, self.remaining))


class _Stream:
    """Exact reads with clear errors on truncation and decompression failure."""

    def __init__(self, f: BinaryIO):
        self._f = f
        self.pos = 0

    def read(self, n: int) -> bytes:
        try:
            data = self._f.read(n)
            while len(data) < n:
                more = self._f.read(n - len(data))
                if not more:
                    break
                data += more
        except _DECOMPRESS_ERRORS as e:
            raise FormatError(f"RPM payload is corrupt or truncated: {e}") from None
        if len(data) != n:
            raise FormatError("RPM payload is truncated")
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        while n:
            k = min(n, _CHUNK)
            self.read(k)
            n -= k

    def align(self) -> None:
        pad = (-self.pos) % 4
        if pad:
            self.read(pad)


class _Buffer:
    """The same reads over a payload already in memory."""

    def __init__(self, data: bytes):
        self._data = data
        self.pos = 0

    def read(self, n: int) -> bytes:
        start, end = self.pos, self.pos + n
        if end > len(self._data):
            raise FormatError("RPM payload is truncated")
        self.pos = end
        return self._data[start:end]

    def skip(self, n: int) -> None:
        if self.pos + n > len(self._data):
            raise FormatError("RPM payload is truncated")
        self.pos += n

    def align(self) -> None:
        pad = (-self.pos) % 4
        if pad:
            self.skip(pad)


_FIELDS = struct.Struct(">13I")


def iter_cpio(f: BinaryIO | bytes, size_of: Callable[[int], int] | None = None
              ) -> Iterator[tuple[CpioEntry, _Reader]]:
    """Yield each member and a reader for its data; unread data is skipped when the next member is requested.

    ``f`` is a stream or the whole archive as bytes. ``size_of(index)`` gives a stripped member's size from
    the header (needed only for 07070X archives).
    """
    s = _Buffer(f) if isinstance(f, bytes) else _Stream(f)
    while True:
        magic = s.read(6)
        if magic == STRIPPED_MAGIC:
            index = _hex(s.read(8), "file index")
            s.align()
            if size_of is None:
                raise FormatError("stripped cpio payload needs the header's file sizes")
            entry = CpioEntry("", 0, 0, 0, 0, 1, 0, size_of(index), 0, index)
        elif magic in (NEWC_MAGIC, CRC_MAGIC):
            ino, mode, uid, gid, nlink, mtime, size, _dmaj, _dmin, rmaj, rmin, namesize, _check = \
                _header_fields(s.read(104))
            if namesize == 0 or namesize > 65536:
                raise FormatError(f"RPM payload member has a bad name size {namesize}")
            raw_name = s.read(namesize)
            s.align()
            name = raw_name.rstrip(b"\0").decode("utf-8", "surrogateescape")
            if name == TRAILER:
                return
            if name.startswith("./"):
                name = name[1:]
            elif not name.startswith("/"):
                name = "/" + name
            entry = CpioEntry(name, ino, mode, uid, gid, nlink, mtime, size, (rmaj << 8) | rmin)
        else:
            raise FormatError(f"RPM payload is not a cpio archive (magic {magic!r})")
        reader = _Reader(s, entry.size)
        yield entry, reader
        if reader.remaining:
            s.skip(reader.remaining)
        s.align()


def _header_fields(b: bytes) -> tuple[int, ...]:
    """The 13 hex numbers of a newc member header (all 104 characters at once)."""
    try:
        if b.isalnum():   # bytes.fromhex would skip whitespace, which int(x, 16) accepts only around a field
            return _FIELDS.unpack(bytes.fromhex(b.decode("ascii")))
    except ValueError:
        pass
    return tuple(_hex(b[i:i + 8], "header") for i in range(0, 104, 8))


def _hex(b: bytes, what: str) -> int:
    """An 8-digit hex field: digits only (``int(x, 16)`` alone would take a sign, blanks, ``_`` and ``0x``, so a
    name size or file index of -1 would get through)."""
    if len(b) != 8 or not _HEX8.fullmatch(b):
        raise FormatError(f"RPM payload has a corrupt cpio {what}")
    return int(b, 16)


_HEX8 = re.compile(rb"[0-9A-Fa-f]{8}")
