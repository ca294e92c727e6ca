"""Build RPM header blobs entry by entry (for tests that need headers rpm-rs will not write: odd types,
duplicate tags, hostile counts)."""

from __future__ import annotations

import struct

from hybridos.packages.header import BIN, HEADER_MAGIC

_ALIGN = {3: 2, 4: 4, 5: 8}


def s(text: str) -> bytes:
    return text.encode() + b"\0"


def header_blob(entries: list[tuple[int, int, int, bytes]], *, region: bool = True, magic: bool = False) -> bytes:
    """``entries`` are (tag, type, count, data bytes), kept in this order; with ``region`` an immutable region
    (tag 63) covers them all, as in every header rpmbuild writes."""
    index = b""
    data = b""
    for tag, typ, cnt, val in entries:
        while len(data) % _ALIGN.get(typ, 1):
            data += b"\0"
        index += struct.pack(">IIiI", tag, typ, len(data), cnt)
        data += val
    il = len(entries)
    if region:
        il += 1
        trailer = struct.pack(">IIiI", 63, BIN, -il * 16, 16)
        index = struct.pack(">IIiI", 63, BIN, len(data), 16) + index
        data += trailer
    blob = struct.pack(">II", il, len(data)) + index + data
    return HEADER_MAGIC + blob if magic else blob


def minimal_entries(name: str = "foo") -> list[tuple[int, int, int, bytes]]:
    return [(1000, 6, 1, s(name)), (1001, 6, 1, s("1")), (1002, 6, 1, s("1")), (1022, 6, 1, s("x86_64"))]
