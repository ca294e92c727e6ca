"""Generating static deltas in OSTree's format (libostree's ``ostree-repo-static-delta-compilation.c``).

What the TO commit needs and the FROM commit already has is skipped (whole subtrees at once when their
dirtree is unchanged). New metadata goes first; then modified files: a file at the same path (or, like
ostree, of the same base name and a size within 30%) in FROM is the source of a bsdiff patch (bsdiff4's
C core, framed as the raw stream ostree's bspatch reads) when that is smaller than the file, or of block
copies (``write`` from the source object) when bsdiff is disabled or the pair is over ``--max-bsdiff-size``;
then new files, grouped by file name extension so that xz sees similar data together, and symlinks.
Files over ``--min-fallback-size`` become fallbacks (fetched as plain objects). Parts are cut at
``--max-chunk-size`` and xz-compressed; patches and parts are computed on every CPU.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import posixpath
import stat
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from hybridos import gvariant
from hybridos.errors import NotFoundError, UsageError
from hybridos.ostree import delta_format as df
from hybridos.ostree import delta_sign
from hybridos.ostree.objects import FileHeader, ObjectType, csum_bytes
from hybridos.ostree.repo import Repo
from hybridos.ostree.sign import parse_secret_key
from hybridos.util.atomic import atomic_write

MB = 1000 * 1000
SIMILARITY_PERCENT = 30
#: xz settings of our parts: LZMA2 at ostree's level 8 with a 4 MiB dictionary (ostree's: 32 MiB), so a small
#: device decodes with a small, bounded dictionary whatever the part's size.
XZ_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 8, "dict_size": 4 << 20}]
BLOCK = 64 << 10
#: Objects per part at most: a client applies parts in parallel, and the cost of a part is mostly per object.
MAX_PART_OBJECTS = 2048


@dataclass(frozen=True)
class DeltaOptions:
    """``ostree static-delta generate``'s options (sizes in MB of 1,000,000 bytes, as there)."""

    min_fallback_size: int = 4
    max_chunk_size: int = 8   # ostree: 32; smaller parts are applied in parallel and resume with less lost
    max_bsdiff_size: int = 128
    bsdiff: bool = True
    inline: bool = False
    filename: Path | None = None
    big_endian: bool = False
    workers: int | None = None
    #: base64 ed25519 secret keys: the superblock is signed with each (``--sign``)
    sign_keys: tuple[str, ...] = ()


@dataclass
class DeltaReport:
    superblock: df.Superblock
    path: Path
    new_metadata: int = 0
    new_files: int = 0
    bsdiff: int = 0
    block_copy: int = 0
    fallbacks: int = 0
    size: int = 0   # superblock + parts, bytes
    edits: int = 0


# ---------------------------------------------------------------------------------------------------- trees

@dataclass
class _Tree:
    objects: set = field(default_factory=set)        # (checksum, otype) of everything reachable
    paths: dict = field(default_factory=dict)         # path -> content checksum
    by_name: dict = field(default_factory=dict)       # base name -> [content checksum]
    by_stem: dict = field(default_factory=dict)       # base name up to the first dot -> [content checksum]


def _walk_from(repo: Repo, commit: str) -> _Tree:
    t = _Tree()
    c = repo.load_commit(commit)
    stack = [("", c.root_tree, c.root_meta)]
    while stack:
        path, tree, meta = stack.pop()
        t.objects.add((meta, ObjectType.DIR_META))
        if (tree, ObjectType.DIR_TREE) in t.objects:
            continue
        t.objects.add((tree, ObjectType.DIR_TREE))
        dt = repo.load_dirtree(tree)
        for name, csum in dt.files:
            t.objects.add((csum, ObjectType.FILE))
            p = f"{path}/{name}"
            t.paths[p] = csum
            t.by_name.setdefault(name, []).append(csum)
            t.by_stem.setdefault(name.split(".", 1)[0], []).append(csum)
        for name, st, sm in dt.dirs:
            stack.append((f"{path}/{name}", st, sm))
    return t


def _walk_to(repo: Repo, commit: str, have: set) -> tuple[list, list]:
    """(new metadata [(otype, checksum)], new content [(path, checksum)]) of ``commit`` not in ``have``."""
    c = repo.load_commit(commit)
    meta: list = []
    files: list = []
    seen: set = set()
    stack = [("", c.root_tree, c.root_meta)]
    while stack:
        path, tree, dmeta = stack.pop()
        if (dmeta, ObjectType.DIR_META) not in have and dmeta not in seen:
            seen.add(dmeta)
            meta.append((ObjectType.DIR_META, dmeta))
        if (tree, ObjectType.DIR_TREE) in have or tree in seen:
            continue   # an unchanged subtree: everything below is there
        seen.add(tree)
        meta.append((ObjectType.DIR_TREE, tree))
        dt = repo.load_dirtree(tree)
        for name, csum in dt.files:
            if (csum, ObjectType.FILE) not in have and csum not in seen:
                seen.add(csum)
                files.append((f"{path}/{name}", csum))
        for name, st, sm in reversed(dt.dirs):
            stack.append((f"{path}/{name}", st, sm))
    return meta, files


def _content_header(repo: Repo, checksum: str) -> FileHeader:
    header, stream = repo.open_content(checksum)
    if stream is not None:
        stream.close()
    return header


def _read_content(repo: Repo, checksum: str) -> bytes:
    _header, stream = repo.open_content(checksum)
    if stream is None:
        return b""
    with stream:
        return stream.read()


def _storage_size(repo: Repo, checksum: str, otype: ObjectType) -> int:
    try:
        return os.lstat(repo.object_path_str(checksum, otype)).st_size
    except FileNotFoundError:
        raise NotFoundError(f"object {checksum} is not in the repository") from None


# ---------------------------------------------------------------------------------------------------- workers

_REPOS: dict[str, Repo] = {}


def _common_prefix(a: bytes, b: bytes, limit: int) -> int:
    """Length of the common prefix of ``a`` and ``b`` (at most ``limit``), by memcmp of slices."""
    lo, step = 0, 1 << 16
    while lo + step <= limit and a[lo:lo + step] == b[lo:lo + step]:
        lo += step
    hi = min(lo + step, limit)
    while lo < hi:   # invariant: a[:lo] == b[:lo]; the first difference is before hi
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    la, lb = len(a), len(b)
    n, step = 0, 1 << 16
    while n + step <= limit and a[la - n - step:la - n] == b[lb - n - step:lb - n]:
        n += step
    hi = min(n + step, limit)
    while n < hi:
        mid = (n + hi + 1) // 2
        if a[la - mid:la - n] == b[lb - mid:lb - n]:
            n = mid
        else:
            hi = mid - 1
    return n


def local_edit(old: bytes, new: bytes) -> tuple[int, int] | None:
    """(common prefix, common suffix) when ``new`` is ``old`` with one local edit (the changed middle at most
    1/8 of the file, found in linear time), else None: then real bsdiff is worth its cost."""
    prefix = _common_prefix(old, new, min(len(old), len(new)))
    suffix = _common_suffix(old, new, min(len(old), len(new)) - prefix)
    middle = len(new) - prefix - suffix
    if middle * 8 > len(new) + 4096:
        return None
    return prefix, suffix


def edit_patch(old: bytes, new: bytes) -> bytes | None:
    """The raw bsdiff stream of a :func:`local_edit`: prefix and suffix are "diff" against the old bytes
    (zeros), the middle is "extra"."""
    edit = local_edit(old, new)
    if edit is None:
        return None
    prefix, suffix = edit
    middle = len(new) - prefix - suffix
    out = bytearray(df.encode_offt(prefix) + df.encode_offt(middle) +
                    df.encode_offt(len(old) - suffix - prefix))
    out += bytes(prefix)
    out += new[prefix:prefix + middle]
    if suffix:
        out += df.encode_offt(suffix) + df.encode_offt(0) + df.encode_offt(0)
        out += bytes(suffix)
    return bytes(out)


def _bsdiff_job(args: tuple[str, str, str, bool]) -> tuple[str, tuple | None]:
    """In a worker: how to rebuild ``new`` from ``old``: ``("edit", prefix, middle bytes, suffix, old size)``
    for a local edit (copies from the old object around the new bytes), else ``("bsdiff", raw stream)``
    when bsdiff is allowed and the patch is not huge, else None."""
    from bsdiff4 import core

    repo_path, old, new, bsdiff = args
    repo = _REPOS.get(repo_path)
    if repo is None:
        repo = _REPOS[repo_path] = Repo.open(repo_path)
    a, b = _read_content(repo, old), _read_content(repo, new)
    edit = local_edit(a, b)
    if edit is not None:
        prefix, suffix = edit
        return new, ("edit", prefix, b[prefix:len(b) - suffix], suffix, len(a))
    if not bsdiff:
        return new, None
    raw = df.raw_bsdiff_stream(*core.diff(a, b))
    # the patch is mostly zeros and compresses far better than the file: keep it unless it is huge
    return new, ("bsdiff", raw) if len(raw) < 2 * len(b) + 1024 else None


def _compress_job(payload: bytes) -> bytes:
    return bytes([df.COMPRESSION_XZ]) + lzma.compress(payload, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64,
                                                      filters=XZ_FILTERS)


def _workers(options: DeltaOptions) -> int:
    if options.workers:
        return options.workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):   # pragma: no cover
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------------- parts

class _PartBuilder:
    def __init__(self):
        self.modes: list = []
        self.mode_idx: dict = {}
        self.xattrs: list = []
        self.xattr_idx: dict = {}
        self.blob = bytearray()
        self.ops = bytearray()
        self.objects: list = []
        self.uncompressed = 0

    def size(self) -> int:
        return len(self.blob) + len(self.ops) + 12 * len(self.modes)

    def mode_xattr(self, h: FileHeader) -> tuple[int, int]:
        key = (h.uid, h.gid, h.mode)
        mi = self.mode_idx.get(key)
        if mi is None:
            mi = self.mode_idx[key] = len(self.modes)
            self.modes.append(key)
        xi = self.xattr_idx.get(h.xattrs)
        if xi is None:
            xi = self.xattr_idx[h.xattrs] = len(self.xattrs)
            self.xattrs.append(h.xattrs)
        return mi, xi

    def op(self, code: int, *args: int) -> None:
        self.ops.append(code)
        for a in args:
            df.write_varuint(self.ops, a)

    def put(self, data: bytes) -> int:
        off = len(self.blob)
        self.blob += data
        return off

    def payload(self) -> bytes:
        return df.build_part_payload(self.modes, self.xattrs, bytes(self.blob), bytes(self.ops))


class _Compiler:
    def __init__(self, repo: Repo, options: DeltaOptions):
        self.repo = repo
        self.options = options
        self.parts: list[_PartBuilder] = [_PartBuilder()]
        self.max_chunk = max(1, options.max_chunk_size) * MB

    def part_for(self, size: int) -> _PartBuilder:
        cur = self.parts[-1]
        if cur.objects and (cur.size() + size > self.max_chunk or len(cur.objects) >= MAX_PART_OBJECTS):
            cur = _PartBuilder()
            self.parts.append(cur)
        return cur

    def add_metadata(self, otype: ObjectType, checksum: str) -> None:
        data = self.repo.read_metadata_bytes(checksum, otype)
        p = self.part_for(len(data))
        p.objects.append((otype, checksum))
        p.uncompressed += len(data)
        p.op(df.OP_OPEN_SPLICE_AND_CLOSE, len(data), p.put(data))

    def add_content(self, checksum: str, header: FileHeader) -> None:
        if header.is_symlink:
            data = header.symlink_target.encode("utf-8")
        else:
            data = _read_content(self.repo, checksum)
        p = self.part_for(len(data))
        p.objects.append((ObjectType.FILE, checksum))
        p.uncompressed += len(data)
        mi, xi = p.mode_xattr(header)
        p.op(df.OP_OPEN_SPLICE_AND_CLOSE, mi, xi, len(data), p.put(data))

    def add_bsdiff(self, checksum: str, header: FileHeader, source: str, patch: bytes) -> None:
        p = self.part_for(len(patch))
        p.objects.append((ObjectType.FILE, checksum))
        p.uncompressed += header.size
        mi, xi = p.mode_xattr(header)
        p.op(df.OP_SET_READ_SOURCE, p.put(csum_bytes(source)))
        p.op(df.OP_OPEN, mi, xi, header.size)
        off = p.put(patch)
        p.op(df.OP_BSPATCH, off, len(patch))
        p.op(df.OP_CLOSE)
        p.op(df.OP_UNSET_READ_SOURCE)

    def add_edit(self, checksum: str, header: FileHeader, source: str, prefix: int, middle: bytes, suffix: int,
                 old_size: int) -> None:
        """A local edit: the prefix and suffix copied from the source object (``r``/``w``, ostree's rollsum
        opcodes), the new middle from the part."""
        p = self.part_for(len(middle) + 32)
        p.objects.append((ObjectType.FILE, checksum))
        p.uncompressed += header.size
        mi, xi = p.mode_xattr(header)
        src_off = p.put(csum_bytes(source))
        p.op(df.OP_OPEN, mi, xi, header.size)
        if prefix:
            p.op(df.OP_SET_READ_SOURCE, src_off)
            p.op(df.OP_WRITE, prefix, 0)
            p.op(df.OP_UNSET_READ_SOURCE)
        if middle:
            p.op(df.OP_WRITE, len(middle), p.put(middle))
        if suffix:
            p.op(df.OP_SET_READ_SOURCE, src_off)
            p.op(df.OP_WRITE, suffix, old_size - suffix)
            p.op(df.OP_UNSET_READ_SOURCE)
        p.op(df.OP_CLOSE)

    def add_block_copy(self, checksum: str, header: FileHeader, source: str) -> bool:
        """Blocks of the new file found in the source (by content, at any block-aligned source offset) are
        copied from it; the rest comes from the part. False (nothing added) when under half matches."""
        old = _read_content(self.repo, source)
        new = _read_content(self.repo, checksum)
        index: dict = {}
        for i in range(0, len(old) - BLOCK + 1, BLOCK):
            index.setdefault(hashlib.sha1(old[i:i + BLOCK]).digest(), i)
        runs: list = []   # (new offset, length, source offset or None)
        matched = 0
        pos = 0
        while pos < len(new):
            block = new[pos:pos + BLOCK]
            src = index.get(hashlib.sha1(block).digest()) if len(block) == BLOCK else None
            if src is not None and old[src:src + BLOCK] == block:
                matched += BLOCK
                if runs and runs[-1][2] is not None and runs[-1][2] + runs[-1][1] == src:
                    runs[-1] = (runs[-1][0], runs[-1][1] + BLOCK, runs[-1][2])
                else:
                    runs.append((pos, BLOCK, src))
            elif runs and runs[-1][2] is None:
                runs[-1] = (runs[-1][0], runs[-1][1] + len(block), None)
            else:
                runs.append((pos, len(block), None))
            pos += len(block)
        if matched * 2 < len(new):
            return False
        p = self.part_for(len(new) - matched)
        p.objects.append((ObjectType.FILE, checksum))
        p.uncompressed += header.size
        mi, xi = p.mode_xattr(header)
        src_off = p.put(csum_bytes(source))
        p.op(df.OP_OPEN, mi, xi, header.size)
        reading = False
        for start, length, src in runs:
            if src is None:
                if reading:
                    p.op(df.OP_UNSET_READ_SOURCE)
                    reading = False
                p.op(df.OP_WRITE, length, p.put(new[start:start + length]))
            else:
                if not reading:
                    p.op(df.OP_SET_READ_SOURCE, src_off)
                    reading = True
                p.op(df.OP_WRITE, length, src)
        if reading:
            p.op(df.OP_UNSET_READ_SOURCE)
        p.op(df.OP_CLOSE)
        return True


def _similar(name: str, size: int, from_tree: _Tree, sizes: dict) -> str | None:
    """ostree's rule: a FROM file with the same base name (or the same part before the first dot) whose size
    is within 30%; the closest in size wins."""
    lo, hi = size * (100 - SIMILARITY_PERCENT) / 100, size * (100 + SIMILARITY_PERCENT) / 100
    cands = list(from_tree.by_name.get(name, ()))
    if not cands and "." in name.lstrip("."):
        stem = name.split(".", 1)[0]
        if stem:
            cands = list(from_tree.by_stem.get(stem, ()))
    best = None
    for c in cands:
        s = sizes.get(c)
        if s is not None and lo <= s <= hi and (best is None or abs(s - size) < abs(sizes[best] - size)):
            best = c
    return best


def generate(repo: Repo, from_commit: str | None, to_commit: str, options: DeltaOptions = DeltaOptions(),
             *, log=None) -> DeltaReport:
    """Write the delta FROM -> TO (from scratch when ``from_commit`` is None) into ``repo/deltas/`` (or next
    to ``options.filename``); returns what it wrote."""
    log = log or (lambda _msg: None)
    if from_commit == to_commit:
        raise UsageError("a delta needs two different commits")
    for key in options.sign_keys:   # a bad key is reported before the work, not after
        parse_secret_key(key)
    commit_bytes = repo.read_metadata_bytes(to_commit, ObjectType.COMMIT)
    have: set = set()
    from_tree = _Tree()
    if from_commit is not None:
        from_tree = _walk_from(repo, from_commit)
        have = from_tree.objects
    new_meta, new_files = _walk_to(repo, to_commit, have)
    new_meta = [(t, c) for t, c in new_meta if not (t is ObjectType.COMMIT and c == to_commit)]

    headers: dict[str, FileHeader] = {c: _content_header(repo, c) for _p, c in new_files}
    # the sources of modified files, by path first, then by ostree's name-and-size rule
    sources: dict[str, str] = {}
    if from_commit is not None:
        from_sizes: dict = {}

        def size_of(c: str) -> int | None:
            if c not in from_sizes:
                h = _content_header(repo, c)
                from_sizes[c] = h.size if h.is_regular and h.mode & stat.S_IROTH else None
            return from_sizes[c]

        for path, c in new_files:
            h = headers[c]
            if not h.is_regular or h.size == 0 or c in sources:
                continue
            name = posixpath.basename(path)
            if name.endswith((".xz", ".bz2")):
                continue
            old = from_tree.paths.get(path)
            if old is not None and size_of(old):
                sources[c] = old
                continue
            stem = name.split(".", 1)[0]
            for cand in from_tree.by_name.get(name) or (from_tree.by_stem.get(stem, ()) if stem else ()):
                size_of(cand)
            src = _similar(name, h.size, from_tree, from_sizes)
            if src is not None:
                sources[c] = src

    comp = _Compiler(repo, options)
    report_counts = {"bsdiff": 0, "edit": 0, "block": 0, "fallback": 0}
    workers = _workers(options)
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        patches: dict[str, tuple | None] = {}
        bsdiff_jobs = [(str(repo.path), src, c, options.bsdiff) for c, src in sources.items()
                       if headers[c].size + _content_header(repo, src).size <= options.max_bsdiff_size * MB]
        if bsdiff_jobs:
            mapper = pool.map(_bsdiff_job, bsdiff_jobs, chunksize=16) if pool else map(_bsdiff_job, bsdiff_jobs)
            patches = dict(mapper)
        for otype, c in new_meta:
            comp.add_metadata(otype, c)
        handled: set = set()
        for c, src in sources.items():
            patch = patches.get(c)
            if patch is not None and patch[0] == "edit":
                comp.add_edit(c, headers[c], src, *patch[1:])
                report_counts["edit"] += 1
                handled.add(c)
            elif patch is not None:
                comp.add_bsdiff(c, headers[c], src, patch[1])
                report_counts["bsdiff"] += 1
                handled.add(c)
            elif comp.add_block_copy(c, headers[c], src):
                report_counts["block"] += 1
                handled.add(c)
        fallbacks: list[df.Fallback] = []
        regular, symlinks = [], []
        for path, c in new_files:
            if c in handled:
                continue
            h = headers[c]
            if h.is_symlink:
                symlinks.append((path, c))
            elif options.min_fallback_size > 0 and h.size > options.min_fallback_size * MB:
                fallbacks.append(df.Fallback(ObjectType.FILE, c, _storage_size(repo, c, ObjectType.FILE), h.size))
            else:
                regular.append((path, c))
        regular.sort(key=lambda pc: (_ext(pc[0]), posixpath.basename(pc[0]), pc[0]))
        for _path, c in regular + symlinks:
            comp.add_content(c, headers[c])
        report_counts["fallback"] = len(fallbacks)
        payloads = [p.payload() for p in comp.parts]
        compressed = list(pool.map(_compress_job, payloads)) if pool and len(payloads) > 1 else \
            [_compress_job(p) for p in payloads]
    finally:
        if pool is not None:
            pool.shutdown()

    part_headers = []
    for p, data in zip(comp.parts, compressed, strict=True):
        part_headers.append(df.PartHeader(hashlib.sha256(data).hexdigest(), len(data), p.uncompressed,
                                          tuple(p.objects)))
    metadata: dict = {}
    if options.inline:
        for i, data in enumerate(compressed):
            metadata[df.part_path(from_commit, to_commit, i)] = gvariant.Variant("(yay)", (data[0], data[1:]))
    try:
        detached = repo.read_metadata_bytes(to_commit, ObjectType.COMMIT_META)
    except NotFoundError:
        detached = None
    if detached is not None:
        metadata[df.commitmeta_key(from_commit, to_commit)] = gvariant.Variant("a{sv}",
                                                                               gvariant.parse("a{sv}", detached))
    sb = df.Superblock(from_commit, to_commit, commit_bytes, tuple(part_headers), tuple(fallbacks),
                       int(time.time()), metadata)
    sb_bytes = sb.serialize(big_endian=options.big_endian)
    if options.sign_keys:
        sb_bytes = delta_sign.sign(sb_bytes, options.sign_keys)
    if options.filename is not None:
        sb_path = Path(options.filename)
        directory = sb_path.parent
    else:
        directory = repo.path / df.delta_dir(from_commit, to_commit)
        sb_path = directory / "superblock"
    directory.mkdir(parents=True, exist_ok=True)
    total = len(sb_bytes)
    if not options.inline:
        for i, data in enumerate(compressed):
            atomic_write(directory / str(i), data)
            total += len(data)
    atomic_write(sb_path, sb_bytes)   # last: a delta is listed only once it is whole
    log(f"{len(new_meta)} metadata, {len(new_files)} new content objects; {report_counts['edit']} local edits, "
        f"{report_counts['bsdiff']} bsdiff, "
        f"{report_counts['block']} block-copied, {len(fallbacks)} fallbacks; {len(compressed)} parts")
    return DeltaReport(sb, sb_path, len(new_meta), len(new_files), report_counts["bsdiff"],
                       report_counts["block"], len(fallbacks), total, report_counts["edit"])


def _ext(path: str) -> str:
    name = posixpath.basename(path)
    return name.rsplit(".", 1)[1] if "." in name.lstrip(".") else ""
