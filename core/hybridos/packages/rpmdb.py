"""The rpmdb of a tree: an sqlite database that rpm 4.16+ reads (``rpm --root T --dbpath /usr/lib/sysimage/rpm``).

``Packages(hnum, blob)`` holds each installed header (without its magic); index tables ``(key, hnum, idx)`` map
names, provides, file basenames, directories ... to headers, filled exactly as rpm's ``addToIndex`` does
(``rpm --rebuilddb`` is the reference the tests compare against). The installed header is the package's header
with rpm's install-time tags appended outside its immutable region (signature digests, INSTALLTIME, INSTALLTID,
INSTALLCOLOR, FILESTATES), as rpm itself stores it.

Writes go to a copy next to the database which replaces it atomically; the file is left in journal_mode=DELETE
(no -wal/-shm companions) so that it also works on a read-only /usr, as rpm-ostree does.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hybridos.errors import FormatError, PackageError
from hybridos.packages.header import (
    BIN,
    CHAR,
    INT32,
    Dependency,
    RawEntry,
    RawHeader,
    RpmHeader,
    Sense,
    SigTag,
    Tag,
    header_from_raw,
    parse_raw_header,
    parse_rich,
)
from hybridos.util.atomic import fsync_dir

DBPATH = "usr/lib/sysimage/rpm"
OSTREE_DBPATH = "usr/share/rpm"
DBFILE = "rpmdb.sqlite"

#: index table -> header tag, in rpm's order (dbiTags)
INDEXES: tuple[tuple[str, int], ...] = (
    ("Name", Tag.NAME),
    ("Basenames", Tag.BASENAMES),
    ("Group", Tag.GROUP),
    ("Requirename", Tag.REQUIRENAME),
    ("Providename", Tag.PROVIDENAME),
    ("Conflictname", Tag.CONFLICTNAME),
    ("Obsoletename", Tag.OBSOLETENAME),
    ("Triggername", Tag.TRIGGERNAME),
    ("Dirnames", Tag.DIRNAMES),
    ("Installtid", Tag.INSTALLTID),
    ("Sigmd5", Tag.SIGMD5),
    ("Sha1header", Tag.SHA1HEADER),
    ("Filetriggername", Tag.FILETRIGGERNAME),
    ("Transfiletriggername", Tag.TRANSFILETRIGGERNAME),
    ("Recommendname", Tag.RECOMMENDNAME),
    ("Suggestname", Tag.SUGGESTNAME),
    ("Supplementname", Tag.SUPPLEMENTNAME),
    ("Enhancename", Tag.ENHANCENAME),
)
_BLOB_KEYS = {"Installtid", "Sigmd5"}          # binary keys, no key index (as rpm creates them)
_NO_HNUM_INDEX = {"Name", "Group", "Installtid", "Sigmd5", "Sha1header"}


def schema() -> list[str]:
    """The CREATE statements rpm 4.18's sqlite backend issues."""
    out = ["CREATE TABLE IF NOT EXISTS 'Packages' (hnum INTEGER PRIMARY KEY AUTOINCREMENT,blob BLOB NOT NULL)"]
    for table, _tag in INDEXES:
        keytype = "BLOB" if table in _BLOB_KEYS else "TEXT"
        out.append(f"CREATE TABLE IF NOT EXISTS '{table}' (key '{keytype}' NOT NULL, hnum INTEGER NOT NULL, "
                   f"idx INTEGER NOT NULL, FOREIGN KEY (hnum) REFERENCES 'Packages'(hnum))")
        if table not in _BLOB_KEYS:
            out.append(f"CREATE INDEX IF NOT EXISTS '{table}_key_idx' ON '{table}'(key ASC)")
        if table not in _NO_HNUM_INDEX:
            out.append(f"CREATE INDEX IF NOT EXISTS '{table}_hnum_idx' ON '{table}'(hnum ASC)")
    return out


# ---------------------------------------------------------------------------------------------- pure functions


def index_rows(raw: RawHeader) -> dict[str, list[tuple[object, int]]]:
    """The ``(key, idx)`` rows each index table gets for one installed header (rpm's addToIndex rules)."""
    out: dict[str, list[tuple[object, int]]] = {}
    for table, tag in INDEXES:
        e = raw.entry(tag)
        rows: list[tuple[object, int]] = []
        if e is None:
            if tag == Tag.GROUP:
                rows.append(("Unknown", 0))
            out[table] = rows
            continue
        value = raw.get(tag)
        if e.type == BIN:
            rows.append((value, 0))
        elif e.type == INT32:
            rows += [(struct.pack("=I", v), i) for i, v in enumerate(value)]
        elif isinstance(value, str):
            rows.append((value, 0))
        else:
            values = value[:1] if tag == Tag.GROUP else value   # i18n string: the untranslated one
            flags = raw.get(Tag.REQUIREFLAGS) if tag == Tag.REQUIRENAME else None
            # file trigger rows carry the trigger's script index, not the position (as rpm 4.18 writes them)
            script_index = raw.get(_FILE_TRIGGER_INDEX[tag]) if tag in _FILE_TRIGGER_INDEX else None
            seen: set[str] = set()
            for i, v in enumerate(values):
                if flags is not None and i < len(flags):
                    fl = flags[i]
                    if fl & Sense.INSTALL_ONLY and not fl & Sense.ERASE_ONLY:
                        continue
                if tag == Tag.TRIGGERNAME:
                    if v in seen:
                        continue
                    seen.add(v)
                rows.append((v, script_index[i] if script_index and i < len(script_index) else i))
                if v.startswith("(") and tag in _DEP_TAGS:
                    rows += [(leaf, i) for leaf in rich_leaves(v)]
        out[table] = rows
    return out


_FILE_TRIGGER_INDEX = {Tag.FILETRIGGERNAME: Tag.FILETRIGGERINDEX, Tag.TRANSFILETRIGGERNAME: Tag.TRANSFILETRIGGERINDEX}
_DEP_TAGS = {Tag.REQUIRENAME, Tag.CONFLICTNAME, Tag.OBSOLETENAME, Tag.RECOMMENDNAME, Tag.SUGGESTNAME,
             Tag.SUPPLEMENTNAME, Tag.ENHANCENAME}


def rich_leaves(text: str) -> list[str]:
    """The names rpm indexes for a rich dependency: every name it mentions, and ``!name`` for the names in an
    if/unless condition (observed from rpm 4.18: ``(a if b else c)`` -> a, b, c, !b; ``(a if b)`` -> a, !b)."""
    try:
        tree = parse_rich(text)
    except FormatError:
        return []
    pos: list[str] = []
    neg: list[str] = []

    def walk(node, negated: bool) -> None:
        if isinstance(node, Dependency):
            (neg if negated else pos).append(("!" if negated else "") + node.name)
            return
        op, left, right, *other = node
        walk(left, negated)
        if op in ("if", "unless"):
            if other:
                walk(right, negated)
                walk(other[0], negated)
            walk(right, not negated)
        else:
            walk(right, negated)

    walk(tree, False)
    return list(dict.fromkeys(pos + neg))


_SIG_TO_HEADER = (
    (SigTag.SIZE, Tag.SIGSIZE),
    (SigTag.MD5, Tag.SIGMD5),
    (SigTag.PGP, Tag.SIGPGP),
    (SigTag.GPG, Tag.SIGGPG),
    (Tag.DSAHEADER, Tag.DSAHEADER),
    (Tag.RSAHEADER, Tag.RSAHEADER),
    (Tag.SHA1HEADER, Tag.SHA1HEADER),
    (Tag.LONGSIGSIZE, Tag.LONGSIGSIZE),
    (Tag.SHA256HEADER, Tag.SHA256HEADER),
    (SigTag.PAYLOADSIZE, Tag.ARCHIVESIZE),
    (Tag.LONGARCHIVESIZE, Tag.LONGARCHIVESIZE),
)


def installed_blob(header: RawHeader, signature: RawHeader | None, *, install_time: int, tid: int,
                   color: int = 3) -> bytes:
    """The header as rpm stores an installed package: the signature digests and install tags appended."""
    return installed_header(header, signature, install_time=install_time, tid=tid, color=color).blob


def installed_header(header: RawHeader, signature: RawHeader | None, *, install_time: int, tid: int,
                     color: int = 3) -> RawHeader:
    """:func:`installed_blob` as a parsed header (built directly, not parsed back)."""
    present = {e.tag for e in header.entries}
    extra: list[tuple[int, int, int, bytes]] = []   # (tag, type, count, data)
    if signature is not None:
        for stag, htag in _SIG_TO_HEADER:
            e = signature.entry(stag)
            if e is None or htag in present:
                continue
            extra.append((htag, e.type, e.count, signature.value_bytes(stag)))
    if Tag.INSTALLTIME not in present:
        extra.append((Tag.INSTALLTIME, INT32, 1, struct.pack(">I", install_time)))
    n_files = len(header.get(Tag.BASENAMES) or header.get(Tag.OLDFILENAMES) or ())
    if n_files and Tag.FILESTATES not in present:
        extra.append((Tag.FILESTATES, CHAR, n_files, bytes(n_files)))
    if Tag.INSTALLCOLOR not in present:
        extra.append((Tag.INSTALLCOLOR, INT32, 1, struct.pack(">I", color)))
    if Tag.INSTALLTID not in present:
        extra.append((Tag.INSTALLTID, INT32, 1, struct.pack(">I", tid)))
    return _append(header, sorted(extra))


_ALIGN = {3: 2, 4: 4, 5: 8}


def append_tags(header: RawHeader, extra: Iterable[tuple[int, int, int, bytes]]) -> bytes:
    """Append entries after the existing index and data (outside the immutable region), keeping alignment."""
    return _append(header, extra).blob


def _append(header: RawHeader, extra: Iterable[tuple[int, int, int, bytes]]) -> RawHeader:
    entries = list(header.entries)
    index = bytearray(header.blob[8:8 + 16 * len(entries)])   # the existing index, as it is
    data = bytearray(header.data)
    for tag, typ, count, value in extra:
        pad = (-len(data)) % _ALIGN.get(typ, 1)
        data += bytes(pad)
        index += struct.pack(">IIiI", tag, typ, len(data), count)
        entries.append(RawEntry(tag, typ, len(data), count))
        data += value
    data = bytes(data)
    return RawHeader(tuple(entries), data, struct.pack(">II", len(entries), len(data)) + bytes(index) + data)


# ---------------------------------------------------------------------------------------------- location


def find_dbdir(tree: str | os.PathLike) -> Path | None:
    """The directory holding the tree's rpmdb.sqlite, following an in-tree usr/lib/sysimage/rpm symlink."""
    tree = Path(tree)
    for rel in (DBPATH, OSTREE_DBPATH):
        p = tree / rel
        for _ in range(8):   # an in-tree symlink (rpm-ostree: usr/lib/sysimage/rpm -> ../../share/rpm)
            if not p.is_symlink():
                break
            target = os.readlink(p)
            p = Path(os.path.normpath(tree / target.lstrip("/") if target.startswith("/") else p.parent / target))
        if os.path.commonpath([p, tree]) != str(tree):
            continue
        if (p / DBFILE).is_file():
            return p
    return None


def check_backend(tree: str | os.PathLike) -> None:
    """Refuse trees whose rpmdb is Berkeley DB or ndb: reading them as empty would be wrong."""
    tree = Path(tree)
    if find_dbdir(tree) is not None:
        return
    for rel in (DBPATH, OSTREE_DBPATH, "var/lib/rpm"):
        for name, kind in (("Packages", "Berkeley DB"), ("Packages.db", "ndb")):
            if (tree / rel / name).is_file():
                raise PackageError(f"the tree's rpmdb /{rel}/{name} is {kind}; hybridos reads and writes only the "
                                   "sqlite rpmdb of rpm 4.16+", hint="convert it with rpmdb --rebuilddb inside the tree")


def ensure_dbdir(tree: str | os.PathLike, *, ostree_layout: bool = False) -> Path:
    """Create the rpmdb directory: usr/lib/sysimage/rpm, or (rpm-ostree) usr/share/rpm with the symlink."""
    tree = Path(tree)
    existing = find_dbdir(tree)
    if existing is not None:
        return existing
    sysimage = tree / DBPATH
    if ostree_layout or (tree / OSTREE_DBPATH).is_dir() or sysimage.is_symlink():
        real = tree / OSTREE_DBPATH
        real.mkdir(parents=True, exist_ok=True)
        if not sysimage.is_symlink():
            sysimage.parent.mkdir(parents=True, exist_ok=True)
            if sysimage.is_dir():
                with contextlib.suppress(OSError):
                    sysimage.rmdir()
            if not sysimage.exists():
                os.symlink("../../share/rpm", sysimage)
        return real
    sysimage.mkdir(parents=True, exist_ok=True)
    return sysimage


# ---------------------------------------------------------------------------------------------- database


@dataclass(frozen=True)
class InstalledPackage:
    hnum: int
    header: RpmHeader


class RpmDb:
    """A transaction on a tree's rpmdb: ``add``/``erase`` on a copy, ``commit`` renames it into place."""

    def __init__(self, tree: str | os.PathLike, *, ostree_layout: bool = False):
        check_backend(tree)
        self.dir = ensure_dbdir(tree, ostree_layout=ostree_layout)
        self.path = self.dir / DBFILE
        self.tmp = self.dir / f".{DBFILE}.hyb{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()
        self.db = sqlite3.connect(self.tmp, isolation_level=None)
        if self.path.exists():
            src = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                src.backup(self.db)
            except sqlite3.DatabaseError as e:
                raise PackageError(f"cannot read the rpmdb {self.path}: {e}") from None
            finally:
                src.close()
        self.db.execute("PRAGMA journal_mode = DELETE")   # out of WAL for good (this one is stored in the file)
        # the copy is private until commit() fsyncs and renames it: no rollback journal, no syncs of its own
        self.db.execute("PRAGMA journal_mode = MEMORY")
        self.db.execute("PRAGMA synchronous = OFF")
        self.db.execute("BEGIN")
        for stmt in schema():
            self.db.execute(stmt)
        self._rows: dict[str, list[tuple[object, int, int]]] = {table: [] for table, _tag in INDEXES}

    def add_blob(self, blob: bytes) -> int:
        """Store one installed header blob and its index rows; return its hnum."""
        return self._insert(parse_raw_header(blob, magic=False)[0])

    def _insert(self, raw: RawHeader) -> int:
        cur = self.db.execute("INSERT INTO Packages (blob) VALUES (?)", (raw.blob,))
        hnum = cur.lastrowid
        for table, rows in index_rows(raw).items():   # index rows go in together (see _flush)
            self._rows[table] += [(k, hnum, i) for k, i in rows]
        return hnum

    def _flush(self) -> None:
        """Insert the pending index rows: one statement per table for a whole transaction."""
        for table, rows in self._rows.items():
            if rows:
                self.db.executemany(f"INSERT INTO '{table}' (key, hnum, idx) VALUES (?, ?, ?)", rows)
                rows.clear()

    def add(self, header: RpmHeader, signature: RawHeader | None = None, *, tid: int | None = None,
            install_time: int | None = None) -> int:
        now = int(time.time())
        return self._insert(installed_header(header.raw, signature, install_time=install_time or now,
                                             tid=tid or now))

    def erase(self, hnum: int) -> None:
        self._flush()
        for table, _tag in INDEXES:
            self.db.execute(f"DELETE FROM '{table}' WHERE hnum = ?", (hnum,))
        self.db.execute("DELETE FROM Packages WHERE hnum = ?", (hnum,))

    def packages(self) -> Iterator[InstalledPackage]:
        self._flush()
        for hnum, blob in self.db.execute("SELECT hnum, blob FROM Packages ORDER BY hnum"):
            yield InstalledPackage(hnum, _parse_blob(blob, hnum))

    def find(self, name: str) -> list[InstalledPackage]:
        self._flush()
        rows = self.db.execute("SELECT p.hnum, p.blob FROM Name n JOIN Packages p ON p.hnum = n.hnum "
                               "WHERE n.key = ?", (name,)).fetchall()
        return [InstalledPackage(h, _parse_blob(b, h)) for h, b in rows]

    def commit(self) -> None:
        self._flush()
        self.db.execute("COMMIT")
        self.db.close()
        fd = os.open(self.tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if self.path.exists():
            st = os.stat(self.path)
            os.chmod(self.tmp, st.st_mode & 0o7777)
        else:
            os.chmod(self.tmp, 0o644)
        os.rename(self.tmp, self.path)
        for companion in ("-wal", "-shm"):   # stale companions of the replaced file must not be replayed
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(self.path) + companion)
        fsync_dir(self.dir)

    def abort(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()

    def __enter__(self) -> RpmDb:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _parse_blob(blob: bytes, hnum: int) -> RpmHeader:
    try:
        raw, _ = parse_raw_header(bytes(blob), magic=False)
        return header_from_raw(raw)
    except FormatError as e:
        raise FormatError(f"rpmdb header #{hnum} is corrupt: {e}") from None


def read_rpmdb(tree: str | os.PathLike) -> list[RpmHeader]:
    """The headers of every package installed in ``tree`` (empty when it has no rpmdb)."""
    return [p.header for p in read_installed(tree)]


def read_installed(tree: str | os.PathLike) -> list[InstalledPackage]:
    d = find_dbdir(tree)
    if d is None:
        check_backend(tree)
        return []
    try:
        db = sqlite3.connect(f"file:{d / DBFILE}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT hnum, blob FROM Packages ORDER BY hnum").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        raise PackageError(f"cannot read the rpmdb {d / DBFILE}: {e}") from None
    return [InstalledPackage(h, _parse_blob(b, h)) for h, b in rows]


def write_rpmdb(tree: str | os.PathLike, headers: Iterable[tuple[RpmHeader, RawHeader | None]], *,
                ostree_layout: bool = False) -> None:
    """Add packages (header, signature header) to the tree's rpmdb in one transaction."""
    tid = int(time.time())
    with RpmDb(tree, ostree_layout=ostree_layout) as db:
        for header, sig in headers:
            db.add(header, sig, tid=tid, install_time=tid)

