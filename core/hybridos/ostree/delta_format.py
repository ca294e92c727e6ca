"""OSTree static deltas on the wire and on disk (pure functions, no I/O).

Names: the "modified base64" of checksums and the ``deltas/`` and ``delta-indexes/`` paths; the superblock
``(a{sv}tayay(commit)aya(uayttay)a(yaytt))``; part files (``(yay)``: compression byte + payload, ``'x'`` = xz)
whose payload is ``(a(uuu)aa(ayay)ayay)`` (modes, xattr sets, data blob, opcode stream); LEB128 varints; and
the raw bsdiff stream ostree's bspatch reads (mendsley's: no header, no bzip2; repeated 24-byte control
triple, diff bytes, extra bytes). Numbers in part headers and fallbacks are in the byte order the superblock's
``ostree.endianness`` names (ostree writes host order); the timestamp and modes are big-endian.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass, field

from hybridos import gvariant
from hybridos.errors import FormatError
from hybridos.ostree.objects import COMMIT_TYPE, ObjectType, csum_bytes, csum_hex, validate_checksum

SUPERBLOCK_TYPE = f"(a{{sv}}tayay{COMMIT_TYPE}aya(uayttay)a(yaytt))"
SIGNED_SUPERBLOCK_TYPE = "(taya{sv})"
SIGNED_MAGIC = 0x4F535453474E4454  # "OSTSGNDT"
PART_PAYLOAD_TYPE = "(a(uuu)aa(ayay)ayay)"
INDEX_KEY = "ostree.static-deltas"
SUMMARY_KEY = "ostree.static-deltas"
PART_VERSION = 0

OP_OPEN_SPLICE_AND_CLOSE = ord("S")
OP_OPEN = ord("o")
OP_WRITE = ord("w")
OP_SET_READ_SOURCE = ord("r")
OP_UNSET_READ_SOURCE = ord("R")
OP_CLOSE = ord("c")
OP_BSPATCH = ord("B")

COMPRESSION_NONE = 0
COMPRESSION_XZ = ord("x")


# ---------------------------------------------------------------------------------------------------- names

def b64_from_checksum(checksum: str) -> str:
    """ostree's "modified base64": standard alphabet, ``/`` -> ``_``, no padding (43 characters)."""
    return base64.b64encode(csum_bytes(checksum)).decode("ascii").rstrip("=").replace("/", "_")


def checksum_from_b64(text: str) -> str:
    if len(text) != 43:
        raise FormatError(f"invalid modified-base64 checksum {text!r}")
    try:
        raw = base64.b64decode(text.replace("_", "/") + "=", validate=True)
    except ValueError:
        raise FormatError(f"invalid modified-base64 checksum {text!r}") from None
    return csum_hex(raw)


def delta_id(from_commit: str | None, to_commit: str) -> str:
    """``FROM-TO``, or ``TO`` for a delta from scratch (the form summaries and indexes use)."""
    return f"{from_commit}-{to_commit}" if from_commit else to_commit


def parse_delta_id(text: str) -> tuple[str | None, str]:
    frm, sep, to = text.partition("-")
    if not sep:
        return None, validate_checksum(text)
    return validate_checksum(frm), validate_checksum(to)


def delta_dir(from_commit: str | None, to_commit: str) -> str:
    """The delta's directory relative to the repository (``deltas/AB/CDE…-TO`` or ``deltas/TO[:2]/TO[2:]``)."""
    to = b64_from_checksum(to_commit)
    if from_commit:
        frm = b64_from_checksum(from_commit)
        return f"deltas/{frm[:2]}/{frm[2:]}-{to}"
    return f"deltas/{to[:2]}/{to[2:]}"


def part_path(from_commit: str | None, to_commit: str, index: int) -> str:
    return f"{delta_dir(from_commit, to_commit)}/{index}"


def commitmeta_key(from_commit: str | None, to_commit: str) -> str:
    return f"{delta_dir(from_commit, to_commit)}/commitmeta"


def delta_id_from_dir(relative: str) -> str:
    """The delta id of a ``deltas/XX/REST`` directory (the inverse of :func:`delta_dir`)."""
    parts = relative.split("/")
    if len(parts) != 3 or parts[0] != "deltas" or len(parts[1]) != 2:
        raise FormatError(f"{relative} is not a delta directory")
    name = parts[1] + parts[2]
    if "-" in name:
        frm, _, to = name.partition("-")
        return delta_id(checksum_from_b64(frm), checksum_from_b64(to))
    return checksum_from_b64(name)


def index_path(to_commit: str) -> str:
    to = b64_from_checksum(to_commit)
    return f"delta-indexes/{to[:2]}/{to[2:]}.index"


# ---------------------------------------------------------------------------------------------------- varints

def write_varuint(out: bytearray, value: int) -> None:
    """Unsigned LEB128 (protobuf varint)."""
    if value < 0:
        raise FormatError("varints are unsigned")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def read_varuint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position); FormatError for a truncated or over-long varint."""
    result = shift = 0
    while True:
        if pos >= len(data):
            raise FormatError("truncated varint in a delta's opcode stream")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise FormatError("varint too long in a delta's opcode stream")


# ---------------------------------------------------------------------------------------------------- superblock

@dataclass(frozen=True)
class PartHeader:
    """One part: its SHA-256 (of the whole part file), sizes, and the objects it creates, in order."""

    checksum: str
    compressed_size: int
    uncompressed_size: int
    objects: tuple[tuple[ObjectType, str], ...]
    version: int = PART_VERSION


@dataclass(frozen=True)
class Fallback:
    """An object the client fetches as a plain object (``.filez``) instead of from a part."""

    otype: ObjectType
    checksum: str
    compressed_size: int
    uncompressed_size: int


@dataclass(frozen=True)
class Superblock:
    from_commit: str | None
    to_commit: str
    commit_bytes: bytes           # the TO commit object itself
    parts: tuple[PartHeader, ...]
    fallbacks: tuple[Fallback, ...] = ()
    timestamp: int = 0
    #: name -> gvariant.Variant: inline parts ``(yay)``, detached commitmeta ``a{sv}``, ``ostree.endianness``...
    metadata: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return delta_id(self.from_commit, self.to_commit)

    def inline_part(self, index: int) -> bytes | None:
        """The whole part file when it is carried inline (``--inline``)."""
        v = self.metadata.get(part_path(self.from_commit, self.to_commit, index))
        if v is None:
            return None
        if v.signature != "(yay)":
            raise FormatError(f"inline part {index} of delta {self.id} is not a (yay)")
        return bytes([v.value[0]]) + bytes(v.value[1])

    def detached_metadata(self) -> dict | None:
        """The TO commit's detached metadata carried in the superblock (raw ``a{sv}`` Variants)."""
        v = self.metadata.get(commitmeta_key(self.from_commit, self.to_commit))
        return v.value if v is not None and v.signature == "a{sv}" else None

    def serialize(self, *, big_endian: bool = False) -> bytes:
        def u32(n: int) -> int:
            return gvariant.bswap32(n) if big_endian else n

        def u64(n: int) -> int:
            return gvariant.bswap64(n) if big_endian else n

        meta_v = {"ostree.endianness": gvariant.Variant("y", ord("B") if big_endian else ord("l"))}
        meta_v.update((k, v) for k, v in self.metadata.items() if k != "ostree.endianness")
        commit = gvariant.parse(COMMIT_TYPE, self.commit_bytes)
        headers = [(u32(p.version), csum_bytes(p.checksum), u64(p.compressed_size), u64(p.uncompressed_size),
                    b"".join(bytes([int(t)]) + csum_bytes(c) for t, c in p.objects)) for p in self.parts]
        fallbacks = [(int(f.otype), csum_bytes(f.checksum), u64(f.compressed_size), u64(f.uncompressed_size))
                     for f in self.fallbacks]
        return gvariant.serialize(SUPERBLOCK_TYPE, (
            meta_v, gvariant.bswap64(self.timestamp),
            csum_bytes(self.from_commit) if self.from_commit else b"", csum_bytes(self.to_commit),
            commit, b"", headers, fallbacks))

    @classmethod
    def parse(cls, data: bytes) -> Superblock:
        """Parse a superblock (a signed one is unwrapped; its signatures are not checked here)."""
        if len(data) >= 8 and struct.unpack_from("<Q", data)[0] == gvariant.bswap64(SIGNED_MAGIC):
            _magic, inner, _sigs = gvariant.parse(SIGNED_SUPERBLOCK_TYPE, data)
            data = inner
        meta, ts, frm, to, commit, _recurse, headers, fallbacks = gvariant.parse(SUPERBLOCK_TYPE, data)
        metadata = dict(meta)
        big = _is_big_endian(metadata, headers)

        def u32(n: int) -> int:
            return gvariant.bswap32(n) if big else n

        def u64(n: int) -> int:
            return gvariant.bswap64(n) if big else n

        parts = []
        for version, csum, csize, usize, objs in headers:
            if len(objs) % 33:
                raise FormatError("a delta part header's object list is not a multiple of 33 bytes")
            objects = tuple((_objtype(objs[i]), objs[i + 1:i + 33].hex()) for i in range(0, len(objs), 33))
            parts.append(PartHeader(csum_hex(csum), u64(csize), u64(usize), objects, u32(version)))
        fbs = tuple(Fallback(_objtype(t), csum_hex(c), u64(cs), u64(us)) for t, c, cs, us in fallbacks)
        return cls(csum_hex(frm) if frm else None, csum_hex(to), gvariant.serialize(COMMIT_TYPE, commit),
                   tuple(parts), fbs, gvariant.bswap64(ts), metadata)


def _objtype(n: int) -> ObjectType:
    try:
        t = ObjectType(n)
    except ValueError:
        raise FormatError(f"unknown object type {n} in a delta") from None
    if t not in (ObjectType.FILE, ObjectType.DIR_TREE, ObjectType.DIR_META, ObjectType.COMMIT):
        raise FormatError(f"object type {n} cannot be carried by a delta")
    return t


def _is_big_endian(metadata: dict, headers) -> bool:
    e = metadata.get("ostree.endianness")
    if e is not None and e.signature == "y" and e.value in (ord("B"), ord("l")):
        return e.value == ord("B")
    # no marker (deltas before 2016): ostree's heuristic, sizes that only make sense in one order
    for _v, _c, csize, usize, _o in headers:
        if csize > usize and gvariant.bswap64(csize) <= gvariant.bswap64(usize):
            return True
    return False


# ---------------------------------------------------------------------------------------------------- parts

def build_part_payload(modes: list[tuple[int, int, int]], xattrs: list, blob: bytes, ops: bytes) -> bytes:
    """The uncompressed part payload ``(a(uuu)aa(ayay)ayay)``; modes are (uid, gid, mode) host integers."""
    return gvariant.serialize(PART_PAYLOAD_TYPE, (
        [(gvariant.bswap32(u), gvariant.bswap32(g), gvariant.bswap32(m)) for u, g, m in modes],
        [list(x) for x in xattrs], blob, ops))


@dataclass(frozen=True)
class PartLayout:
    """Where the four members of a part payload lie (byte ranges) in a payload of ``size`` bytes."""

    modes: tuple[int, int]
    xattrs: tuple[int, int]
    blob: tuple[int, int]
    ops: tuple[int, int]


def part_layout(size: int, tail: bytes) -> PartLayout:
    """Locate the members of a ``(a(uuu)aa(ayay)ayay)`` payload from its size and its last bytes (the framing
    offsets: three of them, each 1, 2, 4 or 8 bytes wide depending on ``size``)."""
    k = 1 if size < 0x100 else 2 if size < 0x10000 else 4 if size < 0x100000000 else 8
    if size < 3 * k or len(tail) < 3 * k:
        raise FormatError("delta part payload too short")
    offs = tail[len(tail) - 3 * k:]
    end0 = int.from_bytes(offs[2 * k:3 * k], "little")
    end1 = int.from_bytes(offs[k:2 * k], "little")
    end2 = int.from_bytes(offs[0:k], "little")
    body = size - 3 * k
    if not 0 <= end0 <= end1 <= end2 <= body or end0 % 12:
        raise FormatError("delta part payload has bad framing offsets")
    return PartLayout((0, end0), (end0, end1), (end1, end2), (end2, body))


def parse_modes(data: bytes) -> list[tuple[int, int, int]]:
    if len(data) % 12:
        raise FormatError("delta part mode table has a bad size")
    return [struct.unpack_from(">III", data, i) for i in range(0, len(data), 12)]


def parse_xattr_sets(data: bytes) -> list[tuple[tuple[bytes, bytes], ...]]:
    sets = gvariant.parse("aa(ayay)", data)
    return [tuple((bytes(n), bytes(v)) for n, v in s) for s in sets]


def split_part_file(data: bytes) -> tuple[int, bytes]:
    """(compression byte, compressed payload) of a part file."""
    if not data:
        raise FormatError("empty delta part")
    if data[0] not in (COMPRESSION_NONE, COMPRESSION_XZ):
        raise FormatError(f"delta part has unknown compression {data[0]}")
    return data[0], data[1:]


# ---------------------------------------------------------------------------------------------------- bsdiff

def encode_offt(n: int) -> bytes:
    """bsdiff's 8-byte integer: sign-magnitude, little-endian."""
    return struct.pack("<Q", (-n | 1 << 63) if n < 0 else n)


def decode_offt(b: bytes, pos: int = 0) -> int:
    (v,) = struct.unpack_from("<Q", b, pos)
    return -(v & ~(1 << 63)) if v & 1 << 63 else v


def raw_bsdiff_stream(control: bytes, diff: bytes, extra: bytes) -> bytes:
    """The mendsley raw stream ostree embeds: for each 24-byte control triple (already encoded), the triple,
    then ``x`` diff bytes, then ``y`` extra bytes (bsdiff4's ``core.diff`` gives the three blocks apart)."""
    out = bytearray()
    dpos = epos = 0
    for i in range(0, len(control), 24):
        x, y = decode_offt(control, i), decode_offt(control, i + 8)
        out += control[i:i + 24]
        out += diff[dpos:dpos + x]
        out += extra[epos:epos + y]
        dpos += x
        epos += y
    if dpos != len(diff) or epos != len(extra):
        raise FormatError("bsdiff blocks do not match their control data")
    return bytes(out)
