"""RPM lead, signature and header parsing: pure functions from bytes to frozen values.

An RPM file is a 96-byte lead, a signature header (padded to 8 bytes), the main header and the compressed
payload. A header is ``magic(8) il(4) dl(4)``, ``il`` index entries of ``tag type offset count`` (big endian)
and ``dl`` bytes of data. The rpmdb stores the main header without its 8-byte magic.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import BinaryIO, NamedTuple

from hybridos.errors import FormatError
from hybridos.packages.model import Nevra
from hybridos.packages.rpmtags import TAG_TYPES

LEAD_MAGIC = b"\xed\xab\xee\xdb"
LEAD_SIZE = 96
HEADER_MAGIC = b"\x8e\xad\xe8\x01\x00\x00\x00\x00"
_MAX_HEADER = 256 * 1024 * 1024

# Header data types.
NULL, CHAR, INT8, INT16, INT32, INT64, STRING, BIN, STRING_ARRAY, I18NSTRING = range(10)
_TYPE_SIZE = {CHAR: 1, INT8: 1, INT16: 2, INT32: 4, INT64: 8}
_STRING_TYPES = frozenset((STRING, STRING_ARRAY, I18NSTRING))
#: region tags (HEADERIMAGE, HEADERSIGNATURES, HEADERIMMUTABLE): the first entry of a header made by rpm
_REGION_TAGS = (61, 62, 63)


class Tag:
    """Header tag numbers (rpmtag.h) used by hybridos."""

    HEADERSIGNATURES = 62
    HEADERIMMUTABLE = 63
    HEADERI18NTABLE = 100
    SIGSIZE = 257
    SIGPGP = 259
    SIGMD5 = 261
    SIGGPG = 262
    DSAHEADER = 267
    RSAHEADER = 268
    SHA1HEADER = 269
    LONGSIGSIZE = 270
    LONGARCHIVESIZE = 271
    SHA256HEADER = 273
    NAME = 1000
    VERSION = 1001
    RELEASE = 1002
    EPOCH = 1003
    SUMMARY = 1004
    DESCRIPTION = 1005
    BUILDTIME = 1006
    INSTALLTIME = 1008
    SIZE = 1009
    LICENSE = 1014
    GROUP = 1016
    OS = 1021
    ARCH = 1022
    PREIN = 1023
    POSTIN = 1024
    PREUN = 1025
    POSTUN = 1026
    OLDFILENAMES = 1027
    FILESIZES = 1028
    FILESTATES = 1029
    FILEMODES = 1030
    FILERDEVS = 1033
    FILEMTIMES = 1034
    FILEDIGESTS = 1035
    FILELINKTOS = 1036
    FILEFLAGS = 1037
    FILEUSERNAME = 1039
    FILEGROUPNAME = 1040
    SOURCERPM = 1044
    FILEVERIFYFLAGS = 1045
    ARCHIVESIZE = 1046
    PROVIDENAME = 1047
    REQUIREFLAGS = 1048
    REQUIRENAME = 1049
    REQUIREVERSION = 1050
    CONFLICTFLAGS = 1053
    CONFLICTNAME = 1054
    CONFLICTVERSION = 1055
    TRIGGERSCRIPTS = 1065
    TRIGGERNAME = 1066
    TRIGGERVERSION = 1067
    TRIGGERFLAGS = 1068
    TRIGGERINDEX = 1069
    VERIFYSCRIPT = 1079
    PREINPROG = 1085
    POSTINPROG = 1086
    PREUNPROG = 1087
    POSTUNPROG = 1088
    OBSOLETENAME = 1090
    VERIFYSCRIPTPROG = 1091
    TRIGGERSCRIPTPROG = 1092
    FILEDEVICES = 1095
    FILEINODES = 1096
    FILELANGS = 1097
    PREFIXES = 1098
    PROVIDEFLAGS = 1112
    PROVIDEVERSION = 1113
    OBSOLETEFLAGS = 1114
    OBSOLETEVERSION = 1115
    DIRINDEXES = 1116
    BASENAMES = 1117
    DIRNAMES = 1118
    PAYLOADFORMAT = 1124
    PAYLOADCOMPRESSOR = 1125
    PAYLOADFLAGS = 1126
    INSTALLCOLOR = 1127
    INSTALLTID = 1128
    FILECOLORS = 1140
    PRETRANS = 1151
    POSTTRANS = 1152
    PRETRANSPROG = 1153
    POSTTRANSPROG = 1154
    OLDSUGGESTSNAME = 1156
    OLDSUGGESTSVERSION = 1157
    OLDSUGGESTSFLAGS = 1158
    OLDENHANCESNAME = 1159
    OLDENHANCESVERSION = 1160
    OLDENHANCESFLAGS = 1161
    LONGFILESIZES = 5008
    LONGSIZE = 5009
    FILECAPS = 5010
    FILEDIGESTALGO = 5011
    PREINFLAGS = 5020
    POSTINFLAGS = 5021
    PREUNFLAGS = 5022
    POSTUNFLAGS = 5023
    PRETRANSFLAGS = 5024
    POSTTRANSFLAGS = 5025
    TRIGGERSCRIPTFLAGS = 5027
    RECOMMENDNAME = 5046
    RECOMMENDVERSION = 5047
    RECOMMENDFLAGS = 5048
    SUGGESTNAME = 5049
    SUGGESTVERSION = 5050
    SUGGESTFLAGS = 5051
    SUPPLEMENTNAME = 5052
    SUPPLEMENTVERSION = 5053
    SUPPLEMENTFLAGS = 5054
    ENHANCENAME = 5055
    ENHANCEVERSION = 5056
    ENHANCEFLAGS = 5057
    FILETRIGGERSCRIPTS = 5066
    FILETRIGGERSCRIPTPROG = 5067
    FILETRIGGERSCRIPTFLAGS = 5068
    FILETRIGGERNAME = 5069
    FILETRIGGERINDEX = 5070
    FILETRIGGERVERSION = 5071
    FILETRIGGERFLAGS = 5072
    TRANSFILETRIGGERSCRIPTS = 5076
    TRANSFILETRIGGERSCRIPTPROG = 5077
    TRANSFILETRIGGERSCRIPTFLAGS = 5078
    TRANSFILETRIGGERNAME = 5079
    TRANSFILETRIGGERINDEX = 5080
    TRANSFILETRIGGERVERSION = 5081
    TRANSFILETRIGGERFLAGS = 5082
    FILETRIGGERPRIORITIES = 5084
    TRANSFILETRIGGERPRIORITIES = 5085
    PAYLOADDIGEST = 5092
    PAYLOADDIGESTALGO = 5093


class SigTag:
    """Signature header tags that differ from their main-header twins."""

    SIZE = 1000
    PGP = 1002
    MD5 = 1004
    GPG = 1005
    PAYLOADSIZE = 1007
    RESERVEDSPACE = 1008


class Sense:
    """RPMSENSE_* dependency flag bits."""

    LESS = 1 << 1
    GREATER = 1 << 2
    EQUAL = 1 << 3
    POSTTRANS = 1 << 5
    PREREQ = 1 << 6
    PRETRANS = 1 << 7
    INTERP = 1 << 8
    SCRIPT_PRE = 1 << 9
    SCRIPT_POST = 1 << 10
    SCRIPT_PREUN = 1 << 11
    SCRIPT_POSTUN = 1 << 12
    SCRIPT_VERIFY = 1 << 13
    TRIGGERIN = 1 << 16
    TRIGGERUN = 1 << 17
    TRIGGERPOSTUN = 1 << 18
    MISSINGOK = 1 << 19
    RPMLIB = 1 << 24
    TRIGGERPREIN = 1 << 25
    KEYRING = 1 << 26
    CONFIG = 1 << 28
    SENSEMASK = LESS | GREATER | EQUAL
    INSTALL_ONLY = SCRIPT_PRE | SCRIPT_POST | RPMLIB | KEYRING | PRETRANS | POSTTRANS
    ERASE_ONLY = SCRIPT_PREUN | SCRIPT_POSTUN


class FileFlag:
    """RPMFILE_* file attribute bits."""

    CONFIG = 1 << 0
    DOC = 1 << 1
    MISSINGOK = 1 << 3
    NOREPLACE = 1 << 4
    GHOST = 1 << 6
    LICENSE = 1 << 7
    README = 1 << 8
    ARTIFACT = 1 << 12


# ---------------------------------------------------------------------------------------------- raw header


class RawEntry(NamedTuple):
    """One index entry of a header (a NamedTuple: headers have many, and parsing them is on the install path)."""

    tag: int
    type: int
    offset: int
    count: int


@dataclass(frozen=True)
class RawHeader:
    """One header: its index entries and data store, values decoded on request."""

    entries: tuple[RawEntry, ...]
    data: bytes = field(repr=False)
    blob: bytes = field(repr=False)   #: the header without the 8-byte magic (as the rpmdb stores it)

    _by_tag: dict[int, RawEntry] = field(init=False, repr=False, compare=False)
    _bounds: dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_tag", _lookup_table(self.entries, self.data))
        # where each entry's data can end at the latest: the next entry's offset (string arrays split at once)
        offsets = sorted({e.offset for e in self.entries if e.offset >= 0} | {len(self.data)})
        object.__setattr__(self, "_bounds", dict(zip(offsets, offsets[1:], strict=False)))

    def __contains__(self, tag: int) -> bool:
        return tag in self._by_tag

    def entry(self, tag: int) -> RawEntry | None:
        return self._by_tag.get(tag)

    def get(self, tag: int, default=None):
        e = self.entry(tag)
        if e is None:
            return default
        if e.type == STRING_ARRAY and e.count > 1:
            bound = self._bounds.get(e.offset, len(self.data))
            parts = self.data[e.offset:bound].decode("utf-8", "surrogateescape").split("\0", e.count)
            if len(parts) > e.count:
                return tuple(parts[:e.count])
        return _decode(e, self.data)

    def value_bytes(self, tag: int) -> bytes:
        """The raw data bytes of a tag (for copying it into another header)."""
        e = self.entry(tag)
        return b"" if e is None else self.data[e.offset:e.offset + _data_length(e, self.data)]

    def as_dict(self) -> dict[int, object]:
        return {e.tag: _decode(e, self.data) for e in self.entries}


def _lookup_table(entries: tuple[RawEntry, ...], data: bytes) -> dict[int, RawEntry]:
    """tag -> the entry rpm's ``headerGet`` answers (``hdrblobImport``, ``findEntry``).

    Entries appended after a region ("dribbles", as the rpmdb adds) replace the region's entries of the same tag;
    a header without a region gets one (HEADERIMAGE) in front; rpm then sorts the index by tag (a stable sort) and
    finds a tag with ``bsearch``, so of several entries with one tag it answers whichever the search meets first."""
    table = {e.tag: e for e in reversed(entries)}
    if len(table) == len(entries):
        return table
    index = list(entries)
    if index[0].tag in _REGION_TAGS:
        ril = -struct.unpack_from(">i", data, index[0].offset + 8)[0] // 16
        dribbles = index[max(ril, 1):]
        if dribbles:
            gone = {e.tag for e in dribbles}
            if Tag.BASENAMES in gone:
                gone.add(Tag.OLDFILENAMES)
            index = [e for e in index[:max(ril, 1)] if e.tag not in gone] + dribbles
    else:
        index.insert(0, RawEntry(61, BIN, 0, 16))
    table = {e.tag: e for e in reversed(index)}
    ordered = sorted(index, key=lambda e: e.tag)
    tags = [e.tag for e in ordered]
    for tag in table:
        lo, hi = 0, len(tags)
        while lo < hi:   # glibc's bsearch
            mid = (lo + hi) // 2
            if tag < tags[mid]:
                hi = mid
            elif tag > tags[mid]:
                lo = mid + 1
            else:
                table[tag] = ordered[mid]
                break
    return table


def _cstrings(data: bytes, offset: int, count: int) -> tuple[list[str], int]:
    out = []
    for _ in range(count):
        end = data.find(b"\0", offset)
        if end < 0:
            raise FormatError("RPM header string runs past the end of the header data")
        out.append(data[offset:end].decode("utf-8", "surrogateescape"))
        offset = end + 1
    return out, offset


def _decode(e: RawEntry, data: bytes):
    t, off, n = e.type, e.offset, e.count
    if t in (CHAR, INT8):
        return tuple(data[off:off + n])
    if t == INT16:
        return struct.unpack_from(f">{n}H", data, off)
    if t == INT32:
        return struct.unpack_from(f">{n}I", data, off)
    if t == INT64:
        return struct.unpack_from(f">{n}Q", data, off)
    if t == STRING:
        return _cstrings(data, off, 1)[0][0]
    if t == BIN:
        return bytes(data[off:off + n])
    if t == STRING_ARRAY:
        return tuple(_cstrings(data, off, n)[0])
    if t == I18NSTRING:   # one string per language: rpm answers the first (the C locale's)
        return _cstrings(data, off, 1)[0][0]
    return None


def _data_length(e: RawEntry, data: bytes) -> int:
    if e.type in _TYPE_SIZE:
        return _TYPE_SIZE[e.type] * e.count
    if e.type == BIN:
        return e.count
    if e.type in (STRING, STRING_ARRAY, I18NSTRING):
        return _cstrings(data, e.offset, 1 if e.type == STRING else e.count)[1] - e.offset
    return 0


_INDEX_ENTRY = struct.Struct(">IIiI")
_new_raw_entry = partial(tuple.__new__, RawEntry)   # RawEntry from a 4-tuple without a Python-level call


def parse_raw_header(buf: bytes, offset: int = 0, *, magic: bool = True) -> tuple[RawHeader, int]:
    """Parse one header at ``offset``; return it and the offset just past its data."""
    start = offset
    if magic:
        if buf[offset:offset + 8] != HEADER_MAGIC:
            if len(buf) < offset + 8:
                raise FormatError("RPM header is truncated")
            raise FormatError("bad RPM header magic: not an RPM header")
        offset += 8
    if len(buf) < offset + 8:
        raise FormatError("RPM header is truncated")
    il, dl = struct.unpack_from(">II", buf, offset)
    index_at = offset + 8
    data_at = index_at + 16 * il
    end = data_at + dl
    if il > 0x10000 or dl > _MAX_HEADER:
        raise FormatError(f"RPM header claims {il} tags and {dl} bytes: corrupt")
    if len(buf) < end:
        raise FormatError(f"RPM header is truncated ({len(buf) - start} of {end - start} bytes)")
    data = bytes(buf[data_at:end])
    entries = list(_INDEX_ENTRY.iter_unpack(buf[index_at:data_at]))
    _verify_entries(entries, data)
    blob = bytes(buf[offset:end])
    return RawHeader(tuple(map(_new_raw_entry, entries)), data, blob), end


def _verify_entries(entries: list[tuple[int, int, int, int]], data: bytes) -> None:
    """rpm 4.18's checks of a header's index (``hdrblobVerifyRegion``, ``hdrblobVerifyInfo``): what rpm refuses
    is refused here, so that hybridos and rpm never read one header two ways."""
    dl = len(data)
    if not entries:
        raise FormatError("RPM header has no tags")
    region = 0
    rdl = 0
    tag, typ, off, cnt = entries[0]
    if tag in _REGION_TAGS:
        if typ != BIN or cnt != 16 or off < 0 or off + 16 > dl:
            raise FormatError(f"RPM header region tag {tag} is corrupt")
        ttag, ttyp, toff, tcnt = _INDEX_ENTRY.unpack_from(data, off)
        if tag == 62 and ttag == 61:   # old packages name HEADERIMAGE in the signature's trailer
            ttag = 62
        if ttag != tag or ttyp != BIN or tcnt != 16 or toff > 0 or -toff % 16 or -toff // 16 > len(entries):
            raise FormatError(f"RPM header region tag {tag} has a corrupt trailer")
        region, rdl = tag, off + 16
    typecheck = region in (61, 63)   # rpm cannot type-check signature headers
    prev_end = 0
    tiled = 0   # the entries' data laid end to end with alignment, which must fill a region exactly
    checked = entries[1:] if region else entries
    for i, (tag, typ, off, cnt) in enumerate(checked):
        if off < prev_end:
            raise FormatError(f"RPM header tag {tag} overlaps the data of the tag before it")
        if tag < 100 or tag >= 1 << 31:   # rpm's tags are signed: the top half is negative
            raise FormatError(f"RPM header has a misplaced region tag or a bad tag {tag}")
        if typ > I18NSTRING:
            raise FormatError(f"RPM header tag {tag} has unknown type {typ}")
        size = _TYPE_SIZE.get(typ, 1)
        if off % size or off > dl:   # numbers are aligned to their size
            raise FormatError(f"RPM header tag {tag} has a bad offset {off}")
        if typecheck:
            want = TAG_TYPES.get(tag)
            if want is not None and want != typ and not (want in _STRING_TYPES and typ in _STRING_TYPES):
                raise FormatError(f"RPM header tag {tag} has type {typ} where rpm expects {want}")
        if typ in _STRING_TYPES:
            if (typ == STRING and cnt != 1) or cnt > dl - off:
                raise FormatError(f"RPM header tag {tag} has a bad count {cnt}")
            # data cannot reach past the next entry's start (or the trailer): look for the strings only up to there
            limit = checked[i + 1][2] if i + 1 < len(checked) else dl
            if region and off < rdl:
                limit = min(limit, rdl - 16)
            length = _strings_length(data, off, cnt, max(limit, off))
        else:
            length = size * cnt if typ != NULL else 0
        end = off + length
        if length <= 0 or end > dl:
            raise FormatError(f"RPM header tag {tag} runs past the end of the header data")
        if region and end > rdl - 16 and off < rdl:
            raise FormatError(f"RPM header tag {tag} overlaps the region trailer")
        prev_end = end
        tiled += (-tiled) % size + length
    if region and tiled + 16 != dl:
        raise FormatError("RPM header data has gaps between its tags: corrupt")


def _strings_length(data: bytes, off: int, count: int, limit: int) -> int:
    """Bytes taken by ``count`` NUL-terminated strings at ``off`` (0 when they do not end before ``limit``)."""
    parts = data[off:limit].split(b"\0", count)
    if len(parts) <= count:
        return 0
    return limit - off - len(parts[count])


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    b = f.read(n)
    if len(b) != n:
        raise FormatError(f"RPM file is truncated in its {what} ({len(b)} of {n} bytes)")
    return b


def read_headers(f: BinaryIO) -> tuple[RawHeader, RawHeader]:
    """Read lead, signature and main header from ``f``, leaving it positioned at the payload."""
    lead = f.read(LEAD_SIZE)
    if lead[:4] != LEAD_MAGIC:
        raise FormatError("not an RPM file (bad lead magic)")
    if len(lead) != LEAD_SIZE:
        raise FormatError("RPM file is truncated in its lead")
    sig = _read_header(f, "signature header")
    pad = (8 - len(sig.blob) - 8) % 8
    _read_exact(f, pad, "signature padding")
    main = _read_header(f, "header")
    return sig, main


def _read_header(f: BinaryIO, what: str) -> RawHeader:
    head = _read_exact(f, 16, what)
    if head[:8] != HEADER_MAGIC:
        raise FormatError(f"bad RPM {what} magic: corrupt RPM file")
    il, dl = struct.unpack_from(">II", head, 8)
    if il > 0x10000 or dl > _MAX_HEADER:
        raise FormatError(f"RPM {what} claims {il} tags and {dl} bytes: corrupt")
    rest = _read_exact(f, 16 * il + dl, what)
    return parse_raw_header(head + rest)[0]


# ---------------------------------------------------------------------------------------------- domain values


#: PGPHASHALGO numbers (FILEDIGESTALGO, PAYLOADDIGESTALGO) -> hashlib names
DIGEST_ALGOS: Mapping[int, str] = {1: "md5", 2: "sha1", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}


@dataclass(frozen=True)
class Dependency:
    """One Requires/Provides/...: ``flags`` are RPMSENSE bits, ``evr`` may be empty."""

    name: str
    flags: int = 0
    evr: str = ""

    @property
    def is_rich(self) -> bool:
        return self.name.startswith("(")

    def __str__(self) -> str:
        if not self.evr or not self.flags & Sense.SENSEMASK:
            return self.name
        op = {Sense.LESS: "<", Sense.GREATER: ">", Sense.EQUAL: "=", Sense.LESS | Sense.EQUAL: "<=",
              Sense.GREATER | Sense.EQUAL: ">="}.get(self.flags & Sense.SENSEMASK, "?")
        return f"{self.name} {op} {self.evr}"


class FileEntry(NamedTuple):
    """One file of a package as the header describes it (an immutable NamedTuple: packages have many)."""

    path: str
    mode: int
    size: int
    user: str
    group: str
    mtime: int
    flags: int
    digest: str
    linkto: str
    caps: str
    inode: int
    rdev: int
    lang: str = ""

    @property
    def is_ghost(self) -> bool:
        return bool(self.flags & FileFlag.GHOST)

    @property
    def is_config(self) -> bool:
        return bool(self.flags & FileFlag.CONFIG)


_new_file_entry = partial(tuple.__new__, FileEntry)   # FileEntry from a 13-tuple without a Python-level call


#: scriptlet kind -> (body tag, interpreter tag, flags tag)
SCRIPTLET_TAGS: Mapping[str, tuple[int, int, int]] = {
    "pretrans": (Tag.PRETRANS, Tag.PRETRANSPROG, Tag.PRETRANSFLAGS),
    "pre": (Tag.PREIN, Tag.PREINPROG, Tag.PREINFLAGS),
    "post": (Tag.POSTIN, Tag.POSTINPROG, Tag.POSTINFLAGS),
    "preun": (Tag.PREUN, Tag.PREUNPROG, Tag.PREUNFLAGS),
    "postun": (Tag.POSTUN, Tag.POSTUNPROG, Tag.POSTUNFLAGS),
    "posttrans": (Tag.POSTTRANS, Tag.POSTTRANSPROG, Tag.POSTTRANSFLAGS),
    "verify": (Tag.VERIFYSCRIPT, Tag.VERIFYSCRIPTPROG, 5026),
}


@dataclass(frozen=True)
class Scriptlet:
    """A scriptlet: ``interpreter`` is argv (``("<lua>",)`` for Lua), ``body`` may be empty (``-p prog``)."""

    kind: str
    interpreter: tuple[str, ...]
    body: str
    flags: int = 0


@dataclass(frozen=True)
class Trigger:
    """A package trigger (%triggerin/-un/-postun/-prein) on ``condition``, or a file trigger on a path prefix."""

    kind: str                    #: "triggerin", "triggerun", "triggerpostun", "triggerprein", "filetriggerin", ...
    condition: Dependency        #: package name (+ version) or, for file triggers, the path prefix
    interpreter: tuple[str, ...]
    body: str
    index: int                   #: which script of the package this is
    priority: int = 1000000


@dataclass(frozen=True)
class RpmHeader:
    """The parsed main header of one package (the AGREED shape other modules rely on)."""

    name: str
    epoch: int
    version: str
    release: str
    arch: str
    summary: str = ""
    license: str = ""
    size: int = 0
    sourcerpm: str = ""
    provides: tuple[Dependency, ...] = ()
    requires: tuple[Dependency, ...] = ()
    conflicts: tuple[Dependency, ...] = ()
    obsoletes: tuple[Dependency, ...] = ()
    recommends: tuple[Dependency, ...] = ()
    suggests: tuple[Dependency, ...] = ()
    supplements: tuple[Dependency, ...] = ()
    enhances: tuple[Dependency, ...] = ()
    files: tuple[str, ...] = ()
    file_entries: tuple[FileEntry, ...] = field(default=(), repr=False)
    scriptlets: tuple[Scriptlet, ...] = field(default=(), repr=False)
    triggers: tuple[Trigger, ...] = field(default=(), repr=False)
    prefixes: tuple[str, ...] = ()
    payload_format: str = "cpio"
    payload_compressor: str = "gzip"
    is_source: bool = False
    raw: RawHeader | None = field(default=None, repr=False, compare=False)

    @cached_property
    def nevra(self) -> Nevra:
        return Nevra(self.name, self.epoch, self.version, self.release, self.arch)

    @property
    def evr(self) -> str:
        return self.nevra.evr

    @property
    def blob(self) -> bytes:
        """The header as the rpmdb stores it (no magic)."""
        return self.raw.blob if self.raw else b""

    @property
    def file_digest_algo(self) -> str:
        """hashlib name of the file digests (md5 when the header does not say, as in rpm < 4.6)."""
        algo = self.raw.get(Tag.FILEDIGESTALGO) if self.raw else None
        return DIGEST_ALGOS.get(algo[0] if algo else 1, "md5")

    def scriptlet(self, kind: str) -> Scriptlet | None:
        for s in self.scriptlets:
            if s.kind == kind:
                return s
        return None

    def __str__(self) -> str:
        return str(self.nevra)


# ---------------------------------------------------------------------------------------------- decoding


def _str(h: RawHeader, tag: int, default: str = "") -> str:
    v = h.get(tag)
    if v is None:
        return default
    if isinstance(v, tuple):   # a string array (or, in a header without a region, numbers: not a string)
        return v[0] if v and isinstance(v[0], str) else default
    return v if isinstance(v, str) else default


def _ints(h: RawHeader, tag: int) -> tuple[int, ...]:
    v = h.get(tag)
    return v if isinstance(v, tuple) and not (v and isinstance(v[0], str)) else ()


def _strs(h: RawHeader, tag: int) -> tuple[str, ...]:
    v = h.get(tag)
    if v is None:
        return ()
    if isinstance(v, str):
        return (v,)
    return tuple(v) if v and isinstance(v[0], str) else ()


def _deps(h: RawHeader, name_tag: int, flags_tag: int, version_tag: int) -> tuple[Dependency, ...]:
    names = _strs(h, name_tag)
    if not names:
        return ()
    for tag in (flags_tag, version_tag):
        e = h.entry(tag)
        if e is not None and (1 if e.type in (STRING, I18NSTRING) else e.count) != len(names):
            return ()   # rpm's rpmdsNew gives up on the whole set: the package has none of these dependencies
    flags = _ints(h, flags_tag)
    versions = _strs(h, version_tag)
    return tuple(Dependency(n, flags[i] if flags else 0, versions[i] if versions else "")
                 for i, n in enumerate(names))


def _file_entries(h: RawHeader) -> tuple[FileEntry, ...]:
    basenames = _strs(h, Tag.BASENAMES)
    if basenames:
        dirnames = _strs(h, Tag.DIRNAMES)
        dirindexes = _ints(h, Tag.DIRINDEXES)
        if len(dirindexes) != len(basenames) or any(i >= len(dirnames) for i in dirindexes):
            raise FormatError("RPM header file list is inconsistent (dirindexes)")
        paths = [dirnames[d] + b for d, b in zip(dirindexes, basenames, strict=True)]
    else:
        paths = list(_strs(h, Tag.OLDFILENAMES))
    n = len(paths)
    if not n:
        return ()

    def col(tag, default, kind=_ints):
        v = kind(h, tag)
        if not v:
            return [default] * n
        if len(v) != n:
            raise FormatError(f"RPM header file tag {tag} has {len(v)} values for {n} files")
        return v

    sizes = col(Tag.LONGFILESIZES, None)
    if sizes[0] is None:
        sizes = col(Tag.FILESIZES, 0)
    modes = [m & 0xFFFF for m in col(Tag.FILEMODES, 0o100644)]   # rpm_mode_t is 16 bits, whatever the type
    users = col(Tag.FILEUSERNAME, "root", _strs)
    groups = col(Tag.FILEGROUPNAME, "root", _strs)
    mtimes = col(Tag.FILEMTIMES, 0)
    flags = col(Tag.FILEFLAGS, 0)
    digests = col(Tag.FILEDIGESTS, "", _strs)
    links = col(Tag.FILELINKTOS, "", _strs)
    caps = col(Tag.FILECAPS, "", _strs)
    inodes = col(Tag.FILEINODES, 0)
    rdevs = [r & 0xFFFF for r in col(Tag.FILERDEVS, 0)]
    langs = col(Tag.FILELANGS, "", _strs)
    return tuple(map(_new_file_entry, zip(paths, modes, sizes, users, groups, mtimes, flags, digests, links, caps,
                                          inodes, rdevs, langs, strict=True)))


def _scriptlets(h: RawHeader) -> tuple[Scriptlet, ...]:
    out = []
    for kind, (body_tag, prog_tag, flags_tag) in SCRIPTLET_TAGS.items():
        body = h.get(body_tag)
        prog = _strs(h, prog_tag)
        if body is None and not prog:
            continue
        fl = _ints(h, flags_tag)
        out.append(Scriptlet(kind, prog or ("/bin/sh",), body if isinstance(body, str) else "", fl[0] if fl else 0))
    return tuple(out)


_TRIGGER_KINDS = (
    (Sense.TRIGGERPREIN, "triggerprein"),
    (Sense.TRIGGERIN, "triggerin"),
    (Sense.TRIGGERUN, "triggerun"),
    (Sense.TRIGGERPOSTUN, "triggerpostun"),
)


def _trigger_set(h: RawHeader, prefix: str, tags: tuple[int, ...]) -> list[Trigger]:
    scripts_t, prog_t, name_t, version_t, flags_t, index_t, prio_t = tags
    names = _strs(h, name_t)
    if not names:
        return []
    scripts = _strs(h, scripts_t)
    progs = _strs(h, prog_t)
    versions = _strs(h, version_t) or ("",) * len(names)
    flags = _ints(h, flags_t) or (0,) * len(names)
    index = _ints(h, index_t) or tuple(range(len(names)))
    prios = _ints(h, prio_t) if prio_t else ()
    if not (len(versions) == len(flags) == len(index) == len(names)):
        raise FormatError("RPM header trigger tags have mismatched counts")
    out = []
    for i, name in enumerate(names):
        ix = index[i]
        if ix >= len(scripts):
            raise FormatError(f"RPM header trigger {name!r} points at a missing script")
        kind = next((k for bit, k in _TRIGGER_KINDS if flags[i] & bit), "triggerin")
        prog = (progs[ix],) if ix < len(progs) and progs[ix] else ("/bin/sh",)
        prio = prios[ix] if ix < len(prios) else 1000000
        out.append(Trigger(prefix + kind[len("trigger"):] if prefix else kind,
                           Dependency(name, flags[i] & Sense.SENSEMASK, versions[i]),
                           prog, scripts[ix], ix, prio))
    return out


def _triggers(h: RawHeader) -> tuple[Trigger, ...]:
    out = _trigger_set(h, "", (Tag.TRIGGERSCRIPTS, Tag.TRIGGERSCRIPTPROG, Tag.TRIGGERNAME, Tag.TRIGGERVERSION,
                               Tag.TRIGGERFLAGS, Tag.TRIGGERINDEX, 0))
    out += _trigger_set(h, "filetrigger", (
        Tag.FILETRIGGERSCRIPTS, Tag.FILETRIGGERSCRIPTPROG, Tag.FILETRIGGERNAME, Tag.FILETRIGGERVERSION,
        Tag.FILETRIGGERFLAGS, Tag.FILETRIGGERINDEX, Tag.FILETRIGGERPRIORITIES))
    out += _trigger_set(h, "transfiletrigger", (
        Tag.TRANSFILETRIGGERSCRIPTS, Tag.TRANSFILETRIGGERSCRIPTPROG, Tag.TRANSFILETRIGGERNAME,
        Tag.TRANSFILETRIGGERVERSION, Tag.TRANSFILETRIGGERFLAGS, Tag.TRANSFILETRIGGERINDEX,
        Tag.TRANSFILETRIGGERPRIORITIES))
    return tuple(out)


def header_from_raw(raw: RawHeader) -> RpmHeader:
    """Turn a parsed main header into an RpmHeader."""
    name = _str(raw, Tag.NAME)
    if not name:
        raise FormatError("RPM header has no package name")
    epoch = _ints(raw, Tag.EPOCH)
    is_source = Tag.SOURCERPM not in raw
    arch = _str(raw, Tag.ARCH, "noarch")
    size = _ints(raw, Tag.LONGSIZE) or _ints(raw, Tag.SIZE)
    suggests = _deps(raw, Tag.SUGGESTNAME, Tag.SUGGESTFLAGS, Tag.SUGGESTVERSION)
    enhances = _deps(raw, Tag.ENHANCENAME, Tag.ENHANCEFLAGS, Tag.ENHANCEVERSION)
    entries = _file_entries(raw)
    return RpmHeader(
        name=name,
        epoch=epoch[0] if epoch else 0,
        version=_str(raw, Tag.VERSION),
        release=_str(raw, Tag.RELEASE),
        arch=arch,
        summary=_str(raw, Tag.SUMMARY),
        license=_str(raw, Tag.LICENSE),
        size=size[0] if size else 0,
        sourcerpm=_str(raw, Tag.SOURCERPM),
        provides=_deps(raw, Tag.PROVIDENAME, Tag.PROVIDEFLAGS, Tag.PROVIDEVERSION),
        requires=_deps(raw, Tag.REQUIRENAME, Tag.REQUIREFLAGS, Tag.REQUIREVERSION),
        conflicts=_deps(raw, Tag.CONFLICTNAME, Tag.CONFLICTFLAGS, Tag.CONFLICTVERSION),
        obsoletes=_deps(raw, Tag.OBSOLETENAME, Tag.OBSOLETEFLAGS, Tag.OBSOLETEVERSION),
        recommends=_deps(raw, Tag.RECOMMENDNAME, Tag.RECOMMENDFLAGS, Tag.RECOMMENDVERSION),
        suggests=suggests or _deps(raw, Tag.OLDSUGGESTSNAME, Tag.OLDSUGGESTSFLAGS, Tag.OLDSUGGESTSVERSION),
        supplements=_deps(raw, Tag.SUPPLEMENTNAME, Tag.SUPPLEMENTFLAGS, Tag.SUPPLEMENTVERSION),
        enhances=enhances or _deps(raw, Tag.OLDENHANCESNAME, Tag.OLDENHANCESFLAGS, Tag.OLDENHANCESVERSION),
        files=tuple(e.path for e in entries),
        file_entries=entries,
        scriptlets=_scriptlets(raw),
        triggers=_triggers(raw),
        prefixes=_strs(raw, Tag.PREFIXES),
        payload_format=_str(raw, Tag.PAYLOADFORMAT, "cpio"),
        payload_compressor=_str(raw, Tag.PAYLOADCOMPRESSOR, "gzip"),
        is_source=is_source,
        raw=raw,
    )


def parse_header(blob: bytes) -> RpmHeader:
    """Parse a main header, with or without its 8-byte magic (rpmdb blobs have none)."""
    raw, _ = parse_raw_header(blob, magic=blob[:8] == HEADER_MAGIC)
    return header_from_raw(raw)


@dataclass(frozen=True)
class RpmFileInfo:
    """What reading an RPM file yields: its headers and where the payload starts."""

    header: RpmHeader
    signature: RawHeader
    payload_offset: int


def read_rpm(path: str | Path) -> RpmFileInfo:
    """Read the lead, signature and main header of an RPM file."""
    try:
        with open(path, "rb") as f:
            sig, main = read_headers(f)
            offset = f.tell()
            total = os.fstat(f.fileno()).st_size
        # the signature's size covers header + payload: a short file is caught before anything is unpacked
        size = _ints(sig, Tag.LONGSIGSIZE) or _ints(sig, SigTag.SIZE)   # a size of another type is ignored
        if size:
            expected = offset - len(main.blob) - 8 + size[0]
            if total < expected:
                raise FormatError(f"RPM file is truncated ({total} of {expected} bytes)")
    except FormatError as e:
        raise FormatError(f"{Path(path).name}: {e}") from None
    except OSError as e:
        raise FormatError(f"cannot read RPM {path}: {e.strerror}") from None
    return RpmFileInfo(header_from_raw(main), sig, offset)


def read_rpm_header(path: str | Path) -> RpmHeader:
    """The main header of the RPM file at ``path``."""
    return read_rpm(path).header


# ---------------------------------------------------------------------------------------------- rich deps


def parse_rich(text: str):
    """Parse a rich (boolean) dependency into nested tuples ``(op, left, right[, else])`` or a Dependency.

    ``(a and (b or c))`` -> ``("and", Dependency(a), ("or", Dependency(b), Dependency(c)))``.
    """
    tokens = list(_rich_tokens(text))
    pos, node = _rich_expr(tokens, 0, text)
    if pos != len(tokens):
        raise FormatError(f"trailing text in rich dependency {text!r}")
    return node


_RICH_OPS = ("and", "or", "if", "unless", "with", "without", "else")
_CMP = {"<": Sense.LESS, ">": Sense.GREATER, "=": Sense.EQUAL, "<=": Sense.LESS | Sense.EQUAL,
        ">=": Sense.GREATER | Sense.EQUAL}


def _rich_tokens(text: str) -> Iterator[str]:
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()":
            yield c
            i += 1
        else:
            j, depth = i, 0
            while j < len(text):      # a name may contain balanced parentheses: "pkgconfig(foo)"
                ch = text[j]
                if ch.isspace() and not depth:
                    break
                if ch == "(":
                    depth += 1
                elif ch == ")":
                    if not depth:
                        break
                    depth -= 1
                j += 1
            yield text[i:j]
            i = j


def _rich_expr(tokens: list[str], pos: int, text: str):
    if pos >= len(tokens) or tokens[pos] != "(":
        raise FormatError(f"rich dependency must start with '(': {text!r}")
    pos += 1
    pos, left = _rich_operand(tokens, pos, text)
    node = left
    while pos < len(tokens) and tokens[pos] != ")":
        op = tokens[pos]
        if op not in _RICH_OPS or op == "else":
            raise FormatError(f"unknown operator {op!r} in rich dependency {text!r}")
        pos, right = _rich_operand(tokens, pos + 1, text)
        if op in ("if", "unless") and pos < len(tokens) and tokens[pos] == "else":
            pos, other = _rich_operand(tokens, pos + 1, text)
            node = (op, node, right, other)
        else:
            node = (op, node, right)
    if pos >= len(tokens):
        raise FormatError(f"unbalanced parentheses in rich dependency {text!r}")
    return pos + 1, node


def _rich_operand(tokens: list[str], pos: int, text: str):
    if pos >= len(tokens):
        raise FormatError(f"rich dependency ends early: {text!r}")
    if tokens[pos] == "(":
        return _rich_expr(tokens, pos, text)
    name = tokens[pos]
    pos += 1
    if pos + 1 < len(tokens) and tokens[pos] in _CMP:
        return pos + 2, Dependency(name, _CMP[tokens[pos]], tokens[pos + 1])
    return pos, Dependency(name)


# ---------------------------------------------------------------------------------------------- version compare


def rpmvercmp(a: str, b: str) -> int:
    """rpm's version segment comparison (with ``~`` sorting before and ``^`` after the end)."""
    if a == b:
        return 0
    i = j = 0
    while i < len(a) or j < len(b):
        while i < len(a) and not a[i].isalnum() and a[i] not in "~^":
            i += 1
        while j < len(b) and not b[j].isalnum() and b[j] not in "~^":
            j += 1
        ca = a[i] if i < len(a) else ""
        cb = b[j] if j < len(b) else ""
        if ca == "~" or cb == "~":
            if ca != "~":
                return 1
            if cb != "~":
                return -1
            i, j = i + 1, j + 1
            continue
        if ca == "^" or cb == "^":
            if not ca:
                return -1
            if not cb:
                return 1
            if ca != "^":
                return 1
            if cb != "^":
                return -1
            i, j = i + 1, j + 1
            continue
        if not (ca and cb):
            break
        isnum = ca.isdigit()
        test = str.isdigit if isnum else str.isalpha
        si, sj = i, j
        while i < len(a) and a[i].isascii() and test(a[i]):
            i += 1
        while j < len(b) and b[j].isascii() and test(b[j]):
            j += 1
        sa, sb = a[si:i], b[sj:j]
        if not sb:
            return 1 if isnum else -1
        if isnum:
            sa, sb = sa.lstrip("0"), sb.lstrip("0")
            if len(sa) != len(sb):
                return 1 if len(sa) > len(sb) else -1
        if sa != sb:
            return 1 if sa > sb else -1
    if i >= len(a) and j >= len(b):
        return 0
    return -1 if i >= len(a) else 1


def split_evr(evr: str) -> tuple[int, str, str | None]:
    epoch, _, rest = evr.rpartition(":")
    version, sep, release = rest.partition("-")
    return (int(epoch) if epoch.isdigit() else 0), version, (release if sep else None)


def compare_evr(a: str, b: str) -> int:
    """Compare two EVR strings; a missing release on either side is not compared (as rpm does for deps)."""
    ea, va, ra = split_evr(a)
    eb, vb, rb = split_evr(b)
    if ea != eb:
        return 1 if ea > eb else -1
    c = rpmvercmp(va, vb)
    if c or ra is None or rb is None:
        return c
    return rpmvercmp(ra, rb)


def dependency_matches(dep: Dependency, name: str, evr: str) -> bool:
    """Whether a package ``name`` at ``evr`` satisfies the simple dependency ``dep``."""
    if dep.name != name:
        return False
    sense = dep.flags & Sense.SENSEMASK
    if not dep.evr or not sense:
        return True
    c = compare_evr(evr, dep.evr)
    return bool((c < 0 and sense & Sense.LESS) or (c > 0 and sense & Sense.GREATER) or (c == 0 and sense & Sense.EQUAL))
