"""Executing static delta parts into a repository (libostree's ``ostree-repo-static-delta-processing.c``),
and applying a whole delta from a directory or a superblock file (``ostree static-delta apply-offline``).

Memory stays bounded whatever the delta's size: a part is checked (SHA-256) and decompressed in chunks into
a spool that moves to a file in the repository's ``tmp/`` beyond :data:`MEMORY_LIMIT`; the opcodes read the
payload by offset; a bsdiff patch is applied a window at a time (bsdiff4's C core on each window), and an
object under construction spools the same way. Every object is written through the store, which checks its
checksum before it becomes visible: a delta can make objects appear, never wrong ones.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import lzma
import os
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from hybridos.errors import CorruptionError, FormatError, HybridosError, NotFoundError, UsageError
from hybridos.ostree import delta_format as df
from hybridos.ostree.content import write_object_bytes, write_verified_regular
from hybridos.ostree.objects import DirTree, FileHeader, ObjectType, serialize_bareuser_meta
from hybridos.ostree.repo import Repo

#: Uncompressed bytes of a part (and of one object being rebuilt) held in memory before spooling to a file.
MEMORY_LIMIT = 2 << 20
#: Mode table, xattr table and opcode stream of a part are read into memory: each is refused beyond this.
TABLE_LIMIT = 16 << 20
CHUNK = 256 << 10
#: Entries of parsed dirtrees a delta keeps for the pull's completeness walk (32 bytes each; beyond that, the
#: walk reads the trees again).
PARSED_ENTRIES_KEPT = 1 << 18
#: Missing content objects per worker process below which a part is applied by one process.
PARALLEL_MIN_OBJECTS = 256


class DeltaError(CorruptionError):
    """A delta (superblock or part) that cannot be used: malformed, tampered, or naming missing sources."""


class Spool:
    """Bytes written in sequence, kept in memory up to :data:`MEMORY_LIMIT`, beyond that in an unlinked file
    in the repository's ``tmp/``; read back by offset (``pread``: safe in forked workers sharing the file)."""

    def __init__(self, repo: Repo):
        self.tmp_dir = repo.tmp_dir
        self.buf: bytearray | None = bytearray()
        self.file: BinaryIO | None = None
        self.size = 0

    def write(self, data) -> None:
        if self.file is None and self.size + len(data) > MEMORY_LIMIT:
            self.file = tempfile.TemporaryFile(dir=self.tmp_dir)  # noqa: SIM115 - closed by close()
            self.file.write(self.buf)
            self.buf = None
        if self.file is None:
            self.buf += data
        else:
            self.file.write(data)
        self.size += len(data)

    def tell(self) -> int:
        return self.size

    def finish(self) -> None:
        if self.file is not None:
            self.file.flush()

    def in_memory(self) -> bytes | None:
        return bytes(self.buf) if self.file is None else None

    def pread(self, start: int, n: int) -> bytes:
        if self.file is None:
            return bytes(self.buf[start:start + n])
        fd = self.file.fileno()
        data = os.pread(fd, n, start)
        while 0 < len(data) < n:   # short reads are legal; loop until end of file
            more = os.pread(fd, n - len(data), start + len(data))
            if not more:
                break
            data += more
        return data

    def read_abs(self, start: int, end: int) -> bytes:
        return self.pread(start, end - start)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.buf = None


# ---------------------------------------------------------------------------------------------------- parts

class PartPayload:
    """A decompressed part payload, read by offset; knows its tables and opcode stream."""

    def __init__(self, f: Spool, size: int):
        self.f = f
        self.size = size
        if size < 3:
            raise DeltaError("delta part payload is too short")
        layout = df.part_layout(size, f.pread(max(0, size - 24), 24))
        for name, (a, b) in (("mode table", layout.modes), ("xattr table", layout.xattrs),
                             ("opcode stream", layout.ops)):
            if b - a > TABLE_LIMIT:
                raise DeltaError(f"delta part {name} is implausibly large ({b - a} bytes)")
        self.modes = df.parse_modes(self.read_abs(*layout.modes))
        self.xattrs = df.parse_xattr_sets(self.read_abs(*layout.xattrs))
        self.ops = self.read_abs(*layout.ops)
        self.blob_start, self.blob_end = layout.blob

    def read_abs(self, start: int, end: int) -> bytes:
        data = self.f.pread(start, end - start)
        if len(data) != end - start:
            raise DeltaError("delta part payload is truncated")
        return data

    def check(self, off: int, length: int) -> None:
        if off < 0 or length < 0 or off + length > self.blob_end - self.blob_start:
            raise DeltaError(f"delta opcode points outside the part's data ({off}+{length})")

    def read(self, off: int, length: int) -> bytes:
        self.check(off, length)
        return self.read_abs(self.blob_start + off, self.blob_start + off + length)

    def reader(self, off: int, length: int) -> _SliceReader:
        self.check(off, length)
        return _SliceReader(self, self.blob_start + off, length)

    def close(self) -> None:
        self.f.close()


class _SliceReader:
    """A stream over ``length`` bytes from ``start`` of something with ``read_abs(start, end)`` (for the
    store's writer and bspatch)."""

    def __init__(self, source, start: int, length: int):
        self.read_abs, self.pos, self.left = source.read_abs, start, length

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        if n <= 0:
            return b""
        data = self.read_abs(self.pos, self.pos + n)
        self.pos += n
        self.left -= n
        return data

    def exact(self, n: int) -> bytes:
        data = self.read(n)
        if len(data) != n:
            raise DeltaError("bsdiff patch is truncated")
        return data


def open_part(repo: Repo, f: BinaryIO, expected_checksum: str | None) -> PartPayload:
    """Check (SHA-256 of the whole part file, before anything parses it) and decompress a part read from the
    seekable file ``f``, in bounded chunks."""
    if expected_checksum is not None:
        got = hashlib.file_digest(f, "sha256").hexdigest()
        if got != expected_checksum:
            raise DeltaError(f"delta part checksum mismatch: expected {expected_checksum}, got {got}")
        f.seek(0)
    first = f.read(1)
    if not first:
        raise DeltaError("delta part is empty")
    comp = first[0]
    if comp not in (df.COMPRESSION_NONE, df.COMPRESSION_XZ):
        raise DeltaError(f"delta part has unknown compression type {comp}")
    out = Spool(repo)
    try:
        dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ) if comp == df.COMPRESSION_XZ else None
        while True:
            chunk = f.read(1 << 16)
            if not chunk:
                break
            if dec is None:
                out.write(chunk)
                continue
            if dec.eof:
                raise DeltaError("delta part has data after its compressed stream")
            try:
                data = dec.decompress(chunk, CHUNK)
                out.write(data)
                while not dec.needs_input and not dec.eof:
                    out.write(dec.decompress(b"", CHUNK))
            except lzma.LZMAError as exc:
                raise DeltaError(f"delta part: bad xz data ({exc})") from None
        if dec is not None and not dec.eof:
            raise DeltaError("delta part: xz data is truncated")
        out.finish()
        size = out.tell()
        try:
            return PartPayload(out, size)
        except FormatError as exc:
            raise DeltaError(f"delta part is malformed: {exc}") from None
    except BaseException:
        out.close()
        raise


# ---------------------------------------------------------------------------------------------------- bspatch

def _ctrl(n: int) -> bytes:
    return df.encode_offt(n) + df.encode_offt(0) + df.encode_offt(0)


def bspatch_stream(old: BinaryIO, old_size: int, patch: _SliceReader, new_size: int,
                   write: Callable[[bytes], object]) -> None:
    """Apply a raw (mendsley) bsdiff stream: ``old`` is a seekable file, output goes to ``write`` a window at a
    time. Bytes of ``old`` outside its range count as zero, as in bspatch."""
    from bsdiff4 import core

    newpos = oldpos = 0
    while newpos < new_size:
        ctrl = patch.exact(24)
        x, y, z = df.decode_offt(ctrl), df.decode_offt(ctrl, 8), df.decode_offt(ctrl, 16)
        if x < 0 or y < 0 or newpos + x > new_size or newpos + x + y > new_size:
            raise DeltaError("bsdiff patch is corrupt (control data out of range)")
        left = x
        while left:
            n = min(left, CHUNK)
            diff = patch.exact(n)
            lo, hi = max(oldpos, 0), min(oldpos + n, old_size)
            if hi > lo:
                old.seek(lo)
                window = old.read(hi - lo)
                if len(window) != hi - lo:
                    raise DeltaError("bsdiff source object is shorter than it says")
                if hi - lo != n:
                    window = bytes(lo - oldpos) + window + bytes(oldpos + n - hi)
            else:
                window = bytes(n)
            write(core.patch(window, n, _ctrl(n), diff, b""))
            oldpos += n
            newpos += n
            left -= n
        left = y
        while left:
            n = min(left, CHUNK)
            write(patch.exact(n))
            left -= n
        newpos += y
        oldpos += z


# ---------------------------------------------------------------------------------------------------- execution

@dataclass
class ApplyStats:
    parts_applied: int = 0
    parts_skipped: int = 0
    objects_written: int = 0
    trees: set = field(default_factory=set)   # dirtrees the delta carries
    parsed_trees: dict = field(default_factory=dict)   # checksum -> CompactTree written by the delta
    parsed_entries: int = 0
    signature_verified: bool = False   # the superblock's signature was checked
    created_files: set = field(default_factory=set)   # content objects the delta's parts hold (checked present)


class CompactTree:
    """What the pull's completeness walk needs of a dirtree the delta wrote and checked: the checksums of its
    files (32 bytes each, in one bytes object) and its subdirectories; names are not kept."""

    __slots__ = ("_files", "dirs")

    def __init__(self, tree: DirTree):
        self._files = b"".join(bytes.fromhex(c) for _n, c in tree.files)
        self.dirs = tuple(("", t, m) for _n, t, m in tree.dirs)

    @property
    def files(self) -> list[tuple[str, str]]:
        f = self._files
        return [("", f[i:i + 32].hex()) for i in range(0, len(f), 32)]

    def __len__(self) -> int:
        return len(self._files) // 32 + len(self.dirs)


class _Executor:
    """Runs one part's opcode stream (the state machine of ostree's ``_ostree_static_delta_part_execute``).

    ``missing``: the part's objects absent when it started (the others are skipped). With ``share=(k, n,
    p)`` this process writes only its share of the content objects (see :func:`_owner`), and the metadata
    objects only when ``metadata``: n processes run the same stream (it is cheap to read) and share the
    writing.
    """

    def __init__(self, repo: Repo, objects: tuple[tuple[ObjectType, str], ...], part: PartPayload,
                 stats: ApplyStats, missing: set[str], share: tuple[int, int, int] = (0, 1, 0),
                 metadata: bool = True):
        self.repo, self.objects, self.part, self.stats = repo, objects, part, stats
        self.missing = missing
        self.share = share   # (this process, processes, content objects the first one writes)
        self.metadata = metadata
        self.file_no = -1
        self.index = 0
        self.source: BinaryIO | None = None   # opened on first use
        self.source_set = False
        self.source_size = 0
        self.source_checksum = ""
        self._last: tuple | None = None   # the source just unset, kept open in case it is set again
        self.out: Spool | None = None
        self.header: FileHeader | None = None
        self.size = 0
        self.have = False
        self.fast = repo.mode.value in ("bare", "bare-user", "bare-user-only")
        self._headers: dict[tuple, tuple[FileHeader, bytes, bytes | None]] = {}

    def _current(self) -> tuple[ObjectType, str]:
        if self.index >= len(self.objects):
            raise DeltaError("delta part has more operations than objects")
        return self.objects[self.index]

    def _mine(self, otype: ObjectType, checksum: str) -> bool:
        """Whether this process writes the current object (it is missing and in this process's share)."""
        if otype is not ObjectType.FILE:
            return self.metadata and checksum in self.missing
        self.file_no += 1
        return checksum in self.missing and _owner(self.file_no, *self.share[1:]) == self.share[0]

    def _header(self, mode_idx: int, xattr_idx: int, size: int) -> FileHeader:
        key = (mode_idx, xattr_idx)
        hit = self._headers.get(key)
        if hit is None:
            try:
                uid, gid, mode = self.part.modes[mode_idx]
                xattrs = self.part.xattrs[xattr_idx]
            except IndexError:
                raise DeltaError("delta opcode names a mode or xattr set the part does not have") from None
            if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                raise DeltaError(f"delta object with unsupported mode {mode:o}")
            header = FileHeader(uid, gid, mode, "", tuple(sorted(xattrs)))
            meta = serialize_bareuser_meta(header) if self.repo.mode.value == "bare-user" else None
            hit = (header, header.checksum_prefix(), meta)
            self._headers[key] = hit
        return hit[0].replace(size=size)

    def run(self) -> None:
        ops = self.part.ops
        pos = 0
        read = df.read_varuint
        try:
            while pos < len(ops):
                op = ops[pos]
                pos += 1
                if op == df.OP_OPEN_SPLICE_AND_CLOSE:
                    otype, checksum = self._current()
                    if otype is not ObjectType.FILE:
                        length, pos = read(ops, pos)
                        off, pos = read(ops, pos)
                        if self._mine(otype, checksum):
                            data = self.part.read(off, length)
                            if otype is ObjectType.DIR_TREE:
                                self._write_dirtree(checksum, data)
                            else:
                                self.repo.write_metadata_bytes(otype, data, expected=checksum)
                            self.stats.objects_written += 1
                    else:
                        mode_idx, pos = read(ops, pos)
                        xattr_idx, pos = read(ops, pos)
                        size, pos = read(ops, pos)
                        off, pos = read(ops, pos)
                        header = self._header(mode_idx, xattr_idx, size)
                        self.part.check(off, size)
                        if self._mine(otype, checksum):
                            if header.is_symlink:
                                try:
                                    target = self.part.read(off, size).decode("utf-8")
                                except UnicodeDecodeError:
                                    raise DeltaError("delta symlink target is not UTF-8") from None
                                self.repo.write_content(header.replace(symlink_target=target, size=0), None,
                                                        expected=checksum)
                            elif size <= MEMORY_LIMIT:
                                self._store(checksum, mode_idx, xattr_idx, header, self.part.read(off, size))
                            else:
                                self.repo.write_content(header, self.part.reader(off, size), expected=checksum)
                            self.stats.objects_written += 1
                    self._close()
                elif op == df.OP_OPEN:
                    otype, checksum = self._current()
                    if otype is not ObjectType.FILE or self.header is not None:
                        raise DeltaError("delta 'open' of a non-content object or inside another")
                    mode_idx, pos = read(ops, pos)
                    xattr_idx, pos = read(ops, pos)
                    size, pos = read(ops, pos)
                    self.header = self._header(mode_idx, xattr_idx, size)
                    self.modes = (mode_idx, xattr_idx)
                    if not stat.S_ISREG(self.header.mode):
                        raise DeltaError("delta 'open' of a symbolic link")
                    self.size = size
                    self.have = not self._mine(otype, checksum)
                    self.out = None if self.have else Spool(self.repo)
                elif op == df.OP_WRITE:
                    length, pos = read(ops, pos)
                    off, pos = read(ops, pos)
                    if self.header is None:
                        raise DeltaError("delta 'write' outside an open object")
                    if not self.source_set:
                        self.part.check(off, length)
                    if not self.have:
                        self._write_from(off, length)
                elif op == df.OP_SET_READ_SOURCE:
                    off, pos = read(ops, pos)
                    self._unset_source()
                    self.source_checksum = self.part.read(off, 32).hex()
                    self.source_set = True
                elif op == df.OP_UNSET_READ_SOURCE:
                    self._unset_source()
                elif op == df.OP_CLOSE:
                    self._close()
                elif op == df.OP_BSPATCH:
                    off, pos = read(ops, pos)
                    length, pos = read(ops, pos)
                    self.part.check(off, length)
                    if self.header is None or not self.source_set:
                        raise DeltaError("delta 'bspatch' without an open object and a source")
                    if not self.have:
                        self._open_source()
                        bspatch_stream(self.source, self.source_size, self.part.reader(off, length),
                                       self.size, self._emit)
                else:
                    raise DeltaError(f"unknown delta opcode {op} at offset {pos - 1}")
        except FormatError as exc:
            raise DeltaError(f"delta part is malformed: {exc}") from None
        finally:
            self._unset_source()
            self._drop_last()
            if self.out is not None:
                self.out.close()

    def _store(self, checksum: str, mode_idx: int, xattr_idx: int, header: FileHeader, body: bytes) -> None:
        """A regular file held in memory: hashed here (the header's part of the hash computed once per mode
        and xattr set), then written in one piece."""
        if not self.fast:
            self.repo.write_content(header, body, expected=checksum)
            return
        _h, prefix, meta = self._headers[(mode_idx, xattr_idx)]
        h = hashlib.sha256(prefix)
        h.update(body)
        got = h.hexdigest()
        if got != checksum:
            raise DeltaError(f"content object {checksum} is corrupt: its data hashes to {got}")
        write_verified_regular(self.repo, checksum, header, body, meta)

    def _write_dirtree(self, checksum: str, data: bytes) -> None:
        """Check a dirtree against its checksum and parse it once (kept for the pull's completeness walk)."""
        got = hashlib.sha256(data).hexdigest()
        if got != checksum:
            raise DeltaError(f"dirtree object {checksum} in the delta is corrupt: its bytes hash to {got}")
        try:   # the bytes are the ones the checksum names: the canonical-form check would only cost time
            tree = DirTree.parse(data, normal_form=False)
        except FormatError as exc:
            raise DeltaError(f"dirtree object {checksum} in the delta is malformed: {exc}") from None
        write_object_bytes(self.repo, checksum, ObjectType.DIR_TREE, data)
        entries = len(tree.files) + len(tree.dirs)
        if self.stats.parsed_entries + entries <= PARSED_ENTRIES_KEPT:
            self.stats.parsed_entries += entries
            self.stats.parsed_trees[checksum] = CompactTree(tree)

    def _emit(self, data: bytes) -> None:
        if self.out.tell() + len(data) > self.size:
            raise DeltaError("delta rebuilds an object longer than it says")
        self.out.write(data)

    def _write_from(self, off: int, length: int) -> None:
        if not self.source_set:
            reader = self.part.reader(off, length)
            while chunk := reader.read(CHUNK):
                self._emit(chunk)
            return
        self._open_source()
        if off + length > self.source_size:
            raise DeltaError("delta 'write' reads past the end of its source object")
        self.source.seek(off)
        left = length
        while left:
            chunk = self.source.read(min(left, CHUNK))
            if not chunk:
                raise DeltaError("delta source object is shorter than it says")
            self._emit(chunk)
            left -= len(chunk)

    def _open_source(self) -> None:
        """Open the read source the last 'r' named (only a process that writes from it does)."""
        if self.source is not None:
            return
        checksum = self.source_checksum
        if self._last is not None and self._last[0] == checksum:   # set, unset, set again: one open
            self.source, self.source_size = self._last[1], self._last[2]
            self._last = None
            return
        self._drop_last()
        try:
            header, stream = self.repo.open_content(checksum)
        except NotFoundError:
            raise DeltaError(f"delta source object {checksum} is not in the repository") from None
        if stream is None:
            raise DeltaError(f"delta source object {checksum} is a symbolic link")
        if not stream.seekable():
            # archive: inflate once, read by offset
            spool = tempfile.TemporaryFile(dir=self.repo.tmp_dir)  # noqa: SIM115 - kept as the read source
            try:
                while chunk := stream.read(CHUNK):
                    spool.write(chunk)
            finally:
                stream.close()
            stream = spool
        stream.seek(0, os.SEEK_END)
        self.source_size = stream.tell()
        self.source = stream

    def _unset_source(self) -> None:
        if self.source is not None:
            self._drop_last()
            self._last = (self.source_checksum, self.source, self.source_size)
            self.source = None
        self.source_set = False

    def _drop_last(self) -> None:
        if self._last is not None:
            self._last[1].close()
            self._last = None

    def _close(self) -> None:
        otype, checksum = self._current()
        if self.header is not None:
            if not self.have:
                out = self.out
                if out.tell() != self.size:
                    raise DeltaError(f"delta rebuilt content object {checksum} with {out.tell()} bytes "
                                     f"instead of {self.size}")
                body = out.in_memory()
                if body is not None:
                    self._store(checksum, *self.modes, self.header, body)
                else:
                    out.finish()
                    self.repo.write_content(self.header, _SliceReader(out, 0, self.size), expected=checksum)
                self.stats.objects_written += 1
                out.close()
            self.out = None
            self.header = None
        self._unset_source()
        self.index += 1


def _owner(file_no: int, n: int, first: int) -> int:
    """Which of ``n`` processes writes the ``file_no``-th content object of a part: the first process the
    first ``first`` of them, the others the rest in turn (all of them when ``n`` is 1). Content objects are
    counted over the whole part, missing or not, so every process agrees."""
    if n == 1:
        return 0
    if file_no < first:
        return 0
    return 1 + (file_no - first) % (n - 1)


def execute_part(repo: Repo, header: df.PartHeader, part: PartPayload, stats: ApplyStats, *,
                 workers: int = 1) -> None:
    """Run a checked, decompressed part: every object it names ends up present (or an error is raised).
    With ``workers`` > 1 and enough content objects, forked processes share the writing (one reads the
    whole opcode stream each and writes its share; this process also writes all metadata objects)."""
    missing = {c for t, c in header.objects if not repo.has_object(c, t)}
    files = sum(1 for t, c in header.objects if t is ObjectType.FILE and c in missing)
    n = max(1, min(workers, files // PARALLEL_MIN_OBJECTS))
    # this process also writes the metadata objects (each costs about what a small file does): it takes
    # fewer content objects, so that all finish together
    meta = sum(1 for t, c in header.objects if t is not ObjectType.FILE and c in missing)
    first = max(0, (files + meta) // n - meta) if n > 1 else 0

    def run(k: int, st: ApplyStats) -> int:
        ex = _Executor(repo, header.objects, part, st, missing, share=(k, n, first), metadata=k == 0)
        ex.run()
        if ex.index != len(header.objects):
            raise DeltaError(f"delta part created {ex.index} of its {len(header.objects)} objects")
        return st.objects_written

    if n == 1:
        run(0, stats)
    else:
        from hybridos.util.forked import run_forked
        counts = run_forked([functools.partial(run, k, ApplyStats()) for k in range(1, n)],
                            functools.partial(run, 0, stats))
        stats.objects_written += sum(counts)
    stats.created_files.update(c for t, c in header.objects if t is ObjectType.FILE)
    stats.parts_applied += 1


def _cost(header: df.PartHeader) -> int:
    """The work of applying a part, in small-object units: per object (a dirtree, also parsed, counts
    twice), and per 64 KiB rebuilt."""
    trees = sum(1 for t, _c in header.objects if t is ObjectType.DIR_TREE)
    return len(header.objects) + trees + header.uncompressed_size // (64 << 10)


def _shares(todo: list[tuple[int, df.PartHeader]], n: int) -> list[list[tuple[int, df.PartHeader]]]:
    """Parts for n processes of about equal work (largest first, each to the least loaded). The parts
    holding dirtrees go to the first process (this one), which keeps them parsed for the pull's walk."""
    shares: list[list] = [[] for _ in range(n)]
    loads = [0] * n
    rest = []
    for i, h in todo:
        if any(t is ObjectType.DIR_TREE for t, _c in h.objects):
            shares[0].append((i, h))
            loads[0] += _cost(h)
        else:
            rest.append((i, h))
    for i, h in sorted(rest, key=lambda ih: -_cost(ih[1])):
        k = loads.index(min(loads))
        shares[k].append((i, h))
        loads[k] += _cost(h)
    return [sorted(share, key=lambda ih: ih[0]) for share in shares]


def apply_parts(repo: Repo, todo: list[tuple[int, df.PartHeader]], apply_one, stats: ApplyStats, *,
                workers: int = 1, progress=None, child_context=None) -> None:
    """Apply the parts ``todo`` ((index, header) pairs): ``apply_one(index, header, stats, context)`` fetches
    or opens, checks, decompresses and executes one part. With ``workers`` > 1 and several parts, forked
    processes take the parts in turn (each part is independent: its objects are its own, its sources
    present before the delta), this process too, and each process holds one part at a time; with one part,
    its objects are shared out instead (:func:`execute_part`). ``child_context()`` gives a child what it needs
    of its own (a fetcher: connections cannot be shared), as a context manager; None when it needs nothing.
    Progress advances per part (a child's parts when it reports)."""
    n = min(workers, len(todo)) if hasattr(os, "fork") else 1

    def one(i: int, header: df.PartHeader, st: ApplyStats, ctx, inner: int) -> None:
        if header.version > df.PART_VERSION:
            raise DeltaError(f"part {i} has too new a version {header.version}")
        try:
            apply_one(i, header, st, ctx, inner)
        except HybridosError as exc:
            raise type(exc)(f"part {i}: {exc.message}") from None

    if n <= 1:
        for i, header in todo:
            one(i, header, stats, None, workers)
            if progress is not None:
                progress.advance(1, header.compressed_size)
        return
    shares = _shares(todo, n)

    def child(share) -> int:
        st = ApplyStats()
        with child_context() if child_context is not None else contextlib.nullcontext() as ctx:
            for i, header in share:
                one(i, header, st, ctx, 1)
        return st.objects_written

    def parent() -> None:
        for i, header in shares[0]:
            one(i, header, stats, None, 1)
            if progress is not None:
                progress.advance(1, header.compressed_size)

    from hybridos.util.forked import run_forked

    children = [share for share in shares[1:] if share]
    counts = run_forked([functools.partial(child, share) for share in children], parent)
    stats.objects_written += sum(counts)
    for share in children:
        for _i, header in share:
            stats.created_files.update(c for t, c in header.objects if t is ObjectType.FILE)
            stats.parts_applied += 1
            if progress is not None:
                progress.advance(1, header.compressed_size)


def part_complete(repo: Repo, header: df.PartHeader) -> bool:
    return all(repo.has_object(c, t) for t, c in header.objects)


# ---------------------------------------------------------------------------------------------------- offline

def read_superblock(path: Path) -> df.Superblock:
    return _read_superblock(path)[0]


def _read_superblock(path: Path) -> tuple[df.Superblock, bytes]:
    """The parsed superblock and the file's bytes (signed or not)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such delta superblock") from None
    except IsADirectoryError:
        raise DeltaError(f"{path} is a directory, not a static delta superblock") from None
    try:
        return df.Superblock.parse(data), data
    except FormatError as exc:
        raise DeltaError(f"{path} is not a static delta superblock: {exc}") from None


@dataclass(frozen=True)
class SignaturePolicy:
    """How ``apply-offline`` treats superblock signatures (``ostree static-delta apply-offline``'s rules, plus
    one: keys named explicitly, or ``core.sign-verify-deltas=true``, also refuse an unsigned delta).

    ``keys``: trusted ed25519 public keys; a signed delta is verified against them when there are any.
    ``required``: the delta must be signed and verified (``core.sign-verify-deltas``, or keys named).
    """

    keys: tuple[bytes, ...] = ()
    required: bool = False

    def check(self, data: bytes, what: str) -> bool:
        """Raise SignatureError when the superblock file ``data`` may not be used; True when a signature was
        verified."""
        from hybridos.errors import SignatureError
        from hybridos.ostree import delta_sign

        signed = delta_sign.is_signed_bytes(data)
        if not signed:
            if self.required:
                raise SignatureError(f"{what} is not signed, and a signed delta is required")
            return False
        if not self.keys:
            if self.required:
                raise SignatureError(f"{what} is signed but no trusted ed25519 key was given to check it "
                                     "(core.sign-verify-deltas=true)")
            return False
        delta_sign.verify(data, self.keys, what)
        return True


def write_commit_from_superblock(repo: Repo, sb: df.Superblock) -> None:
    """Store the TO commit (and its detached metadata) the superblock carries, marking it partial."""
    from hybridos import gvariant
    from hybridos.ostree.pull import state_marker
    from hybridos.util.atomic import atomic_write

    if repo.has_object(sb.to_commit, ObjectType.COMMIT) and not repo.commit_is_partial(sb.to_commit):
        return
    atomic_write(state_marker(repo, sb.to_commit), b"", sync=False)
    detached = sb.detached_metadata()
    if detached is not None:
        repo.write_commitmeta_bytes(sb.to_commit, gvariant.serialize("a{sv}", detached))
    try:
        repo.write_metadata_bytes(ObjectType.COMMIT, sb.commit_bytes, expected=sb.to_commit)
    except CorruptionError as exc:
        raise DeltaError(f"delta {sb.id}: {exc.message}") from None


def apply_offline(repo: Repo, path: str | os.PathLike, *, progress=None,
                  signatures: SignaturePolicy = SignaturePolicy()) -> tuple[df.Superblock, ApplyStats]:
    """Apply a delta from a directory (``superblock`` + parts) or a superblock file with its parts beside it
    (parts may be inline), its signature checked by ``signatures``. Writes objects, not refs; the TO commit
    is complete when this returns."""
    from hybridos.ostree.pull import state_marker

    path = Path(path)
    if path.is_dir():
        directory, sb_path = path, path / "superblock"
    else:
        directory, sb_path = path.parent, path
    sb, sb_data = _read_superblock(sb_path)
    signatures.check(sb_data, f"delta {sb.id} ({sb_path})")
    if sb.fallbacks:
        raise UsageError(f"delta {sb.id} has {len(sb.fallbacks)} fallback objects and cannot be applied offline "
                         "(generate it with --min-fallback-size=0)")
    if sb.from_commit and (not repo.has_object(sb.from_commit, ObjectType.COMMIT)
                           or repo.commit_is_partial(sb.from_commit)):
        raise NotFoundError(f"commit {sb.from_commit}, which is the delta source, is not in the repository")
    from hybridos.ostree.pull import pull_workers

    stats = ApplyStats()
    with repo.lock():
        write_commit_from_superblock(repo, sb)
        todo = [(i, h) for i, h in enumerate(sb.parts) if not part_complete(repo, h)]
        stats.parts_skipped = len(sb.parts) - len(todo)
        if progress is not None:
            progress.total_items = len(todo)

        def apply_one(i: int, header: df.PartHeader, st: ApplyStats, _ctx, inner: int) -> None:
            inline = sb.inline_part(i)
            if inline is not None:
                payload = open_part(repo, io.BytesIO(inline), header.checksum)
            else:
                try:
                    f = open(directory / str(i), "rb")  # noqa: SIM115 - closed below
                except FileNotFoundError:
                    raise NotFoundError(f"{directory / str(i)} is missing") from None
                with f:
                    payload = open_part(repo, f, header.checksum)
            try:
                execute_part(repo, header, payload, st, workers=inner)
            finally:
                payload.close()

        apply_parts(repo, todo, apply_one, stats, workers=pull_workers(), progress=progress)
        repo.sync()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(state_marker(repo, sb.to_commit))
    return sb, stats


def find_deltas(path: Path, max_depth: int = 5) -> list[tuple[Path, df.Superblock]]:
    """Every delta under ``path`` (a USB stick, say): files named ``superblock`` at any depth, and other
    non-numeric files directly inside ``path`` that parse as superblocks (``--filename=`` deltas)."""
    found = []
    base = len(path.parts)
    for dirpath, dirnames, filenames in os.walk(path):
        depth = len(Path(dirpath).parts) - base
        if depth >= max_depth:
            dirnames.clear()
        for name in sorted(filenames):
            if name != "superblock" and (depth or name.isdigit() or name.startswith(".")):
                continue
            p = Path(dirpath) / name
            try:
                found.append((p, read_superblock(p)))
            except (DeltaError, OSError):
                continue
    return found


def apply_directory(repo: Repo, path: str | os.PathLike, *, progress=None,
                    signatures: SignaturePolicy = SignaturePolicy()) -> list[tuple[df.Superblock, ApplyStats]]:
    """Apply every delta under ``path`` that fits this repository: its source commit is here and complete
    (or it is from scratch) and its target is not; repeated, so a chain A->B, B->C is applied in order."""
    path = Path(path)
    candidates = find_deltas(path)
    if not candidates:
        raise NotFoundError(f"no static delta found in {path}")
    done: list[tuple[df.Superblock, ApplyStats]] = []
    progress_made = True
    while progress_made:
        progress_made = False
        for sb_path, sb in candidates:
            if repo.has_object(sb.to_commit, ObjectType.COMMIT) and not repo.commit_is_partial(sb.to_commit):
                continue
            if sb.from_commit and (not repo.has_object(sb.from_commit, ObjectType.COMMIT)
                                   or repo.commit_is_partial(sb.from_commit)):
                continue
            if sb.fallbacks:
                continue
            done.append(apply_offline(repo, sb_path, progress=progress, signatures=signatures))
            progress_made = True
    if not done:
        raise NotFoundError(f"none of the {len(candidates)} deltas in {path} applies to {repo.path} (their source "
                            "commits are not here, or their targets are here already)")
    return done
