"""Pulling through a static delta (libostree's ``get_best_static_delta_start_for`` and the delta half of
``ostree-repo-pull.c``).

The remote advertises deltas in its summary (``ostree.static-deltas``) and, when the summary says
``ostree.summary.indexed-deltas``, in ``delta-indexes/XX/REST.index``. Among the deltas ending at the wanted
commit, the one from a commit present and complete here with the newest timestamp wins (the deployed commit
in practice), else a from-scratch delta. Its superblock must hash to the advertised digest; the commit it
carries is checked like any fetched commit (checksum, signature policy, ref binding); each part is downloaded
into ``tmp/`` (resumed with ``Range`` after a cut), checked against its SHA-256, then executed; parts whose
objects are all present are skipped, so an interrupted pull resumes where it stopped. Fallback objects come
as plain objects. Any problem with the delta is reported and the pull goes on with plain objects: objects
the delta already wrote were checked when they were stored and stay.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from dataclasses import dataclass

from hybridos import gvariant
from hybridos.errors import FetchError, FormatError, HybridosError, NotFoundError, SignatureError, UsageError
from hybridos.fetch import DownloadRequest
from hybridos.ostree import delta_format as df
from hybridos.ostree import deltas as _deltas
from hybridos.ostree.delta_apply import (
    ApplyStats,
    DeltaError,
    apply_parts,
    execute_part,
    open_part,
    part_complete,
)
from hybridos.ostree.objects import ObjectType
from hybridos.ostree.pull import MAX_METADATA_SIZE
from hybridos.util.atomic import atomic_write

#: A superblock (held whole in memory; with inline parts it carries them) larger than this is not used.
MAX_SUPERBLOCK_SIZE = 64 << 20


@dataclass(frozen=True)
class DeltaChoice:
    delta: str
    from_commit: str | None
    digest: bytes


def advertised(puller, to_commit: str) -> dict[str, bytes]:
    """delta id -> superblock digest of the remote's deltas ending at ``to_commit``."""
    out: dict[str, bytes] = {}
    summary = puller.summary
    if summary is not None:
        try:
            out.update(_deltas.summary_deltas(summary.metadata))
        except FormatError as exc:
            raise FetchError(f"the summary of {puller.source} lists malformed deltas: {exc}") from None
        if summary.metadata.get("ostree.summary.indexed-deltas") is True:
            try:
                data = puller.fetcher.read_capped(f"{puller.base}/{df.index_path(to_commit)}", MAX_METADATA_SIZE)
            except NotFoundError:
                data = None
            if data is not None:
                try:
                    out.update(_deltas.parse_index(data))
                except FormatError as exc:
                    raise FetchError(f"the delta index of {to_commit} on {puller.source} is malformed: "
                                     f"{exc}") from None
    return {k: v for k, v in out.items() if df.parse_delta_id(k)[1] == to_commit}


def choose(repo, entries: dict[str, bytes]) -> DeltaChoice | None:
    """The newest FROM commit present and complete here; else a from-scratch delta; else None."""
    best: tuple[int, DeltaChoice] | None = None
    scratch = None
    for delta, digest in entries.items():
        frm, _to = df.parse_delta_id(delta)
        if frm is None:
            scratch = DeltaChoice(delta, None, digest)
            continue
        if not repo.has_object(frm, ObjectType.COMMIT) or repo.commit_is_partial(frm):
            continue
        try:
            ts = repo.load_commit(frm).timestamp
        except HybridosError:
            continue
        if best is None or ts > best[0]:
            best = (ts, DeltaChoice(delta, frm, digest))
    return best[1] if best is not None else scratch


def try_delta(puller, transfer, ref: str | None, commit: str) -> bool:
    """Make ``commit`` complete through a delta when the remote offers a usable one; True when it did.
    Failures other than a refused commit signature become a note and False (the caller pulls objects),
    unless the pull requires static deltas (``--require-static-deltas``): then they are errors."""
    repo = puller.repo
    required = getattr(puller, "require_deltas", False)
    if repo.has_object(commit, ObjectType.COMMIT) and not repo.commit_is_partial(commit):
        return False
    if repo.mode.is_archive:
        if required:
            raise UsageError(f"static deltas are required (--require-static-deltas) but {repo.path} is an "
                             "archive repository, which deltas cannot be applied to")
        return False
    choice = None
    try:
        choice = choose(repo, advertised(puller, commit))
        if choice is None:
            if required:
                raise NotFoundError(f"static deltas are required (--require-static-deltas), but {puller.source} "
                                    f"offers none to {commit} from a commit present here (nor from scratch)")
            return False
        stats = apply_remote_delta(puller, transfer, ref, commit, choice)
    except SignatureError:
        raise
    except HybridosError as exc:
        if required and choice is None:
            raise
        what = f"static delta {choice.delta}" if choice is not None else "the remote's delta list"
        if required:
            raise type(exc)(f"{what} could not be used ({exc.message}), and static deltas are required "
                            "(--require-static-deltas): no ref was changed") from None
        puller.notes.append(f"{what} could not be used ({exc.message}); fetching objects instead")
        return False
    puller.notes.append(f"used static delta {choice.delta}: {stats.parts_applied} parts applied, "
                        f"{stats.parts_skipped} already present"
                        + (", superblock signature verified" if stats.signature_verified else ""))
    puller.deltas_used.append(choice.delta)
    transfer.claimed_files.update(stats.created_files)   # present and checked: the walk need not look
    if choice.from_commit is not None and not repo.commit_is_partial(choice.from_commit):
        if complete_after_delta(repo, commit, stats):
            transfer.delta_complete.add(commit)
        else:
            transfer.delta_trees = (transfer.delta_trees or set()) | stats.trees
            transfer.delta_parsed.update(stats.parsed_trees)
    return True


#: Files to look for in one objects/XX directory above which it is listed once instead.
LIST_DIR_OVER = 48


def complete_after_delta(repo, commit: str, stats: ApplyStats) -> bool:
    """Whether ``commit`` is complete after a delta from a complete commit: every dirtree the delta carried
    is walked (from the kept parsed form), every dirmeta and every file they name is present. A dirtree
    present here that the delta did not carry belongs to the delta's source commit, which is complete.
    Files the delta wrote are known present; the others are looked up a directory of ``objects/`` at a time
    (listed once when many are wanted from it). False sends the pull's own walk over the commit."""
    from hybridos.ostree.delta_apply import CompactTree

    root = repo.load_commit(commit)
    created = stats.created_files
    wanted: dict[str, list[str]] = {}   # objects/XX -> names of files to find there
    metas: set[str] = set()
    seen: set[str] = set()
    stack = [(root.root_tree, root.root_meta)]
    while stack:
        tree, meta = stack.pop()
        metas.add(meta)
        if tree in seen:
            continue
        seen.add(tree)
        if tree not in stats.trees:
            if not repo.has_object(tree, ObjectType.DIR_TREE):
                return False
            continue
        parsed = stats.parsed_trees.get(tree)
        if parsed is None:
            try:
                parsed = CompactTree(repo.load_dirtree(tree))
            except HybridosError:
                return False
        for _name, c in parsed.files:
            if c not in created:
                wanted.setdefault(c[:2], []).append(c[2:])
        stack.extend((t, m) for _n, t, m in parsed.dirs)
    if not all(repo.has_object(m, ObjectType.DIR_META) for m in metas):
        return False
    ext = "filez" if repo.mode.is_archive else "file"
    for prefix, names in wanted.items():
        d = f"{repo.objects_dir}/{prefix}"
        if len(names) > LIST_DIR_OVER:
            try:
                present = set(os.listdir(d))
            except FileNotFoundError:
                return False
            if any(f"{n}.{ext}" not in present for n in names):
                return False
        elif not all(os.path.lexists(f"{d}/{n}.{ext}") for n in names):
            return False
    return True


def check_superblock_signature(puller, sb_bytes: bytes) -> bool:
    """With ``sign-verify`` on the remote, a signed superblock must carry a valid signature by one of the
    remote's ed25519 keys (ostree's own pull does not look); with ``sign-verify-deltas=true`` an unsigned one
    is refused too. True when a signature was verified. DeltaError otherwise (the delta is not used)."""
    from hybridos.ostree import delta_sign
    from hybridos.ostree.remotes import parse_bool

    remote = puller.remote
    require = parse_bool(remote.options.get("sign-verify-deltas"), False,
                         f'remote "{remote.name}" sign-verify-deltas')
    signed = delta_sign.is_signed_bytes(sb_bytes)
    if not (require or (signed and remote.sign_verify)):
        return False
    keys = puller.public_keys or remote.public_keys("ed25519")
    try:
        delta_sign.verify(sb_bytes, keys, "its superblock")
    except SignatureError as exc:
        raise DeltaError(exc.message) from None
    return True


def apply_remote_delta(puller, transfer, ref: str | None, commit: str, choice: DeltaChoice) -> ApplyStats:
    from hybridos.ostree.pull import state_marker

    repo = puller.repo
    ddir = df.delta_dir(choice.from_commit, commit)
    try:
        sb_bytes = puller.fetcher.read_capped(f"{puller.base}/{ddir}/superblock", MAX_SUPERBLOCK_SIZE)
    except NotFoundError:
        raise NotFoundError(f"its superblock is missing on {puller.source}") from None
    transfer.bytes += len(sb_bytes)
    if hashlib.sha256(sb_bytes).digest() != choice.digest:
        raise DeltaError("its superblock does not match the digest the remote advertises")
    signature_verified = check_superblock_signature(puller, sb_bytes)
    try:
        sb = df.Superblock.parse(sb_bytes)
    except FormatError as exc:
        raise DeltaError(f"its superblock is malformed: {exc}") from None
    if sb.to_commit != commit or sb.from_commit != choice.from_commit:
        raise DeltaError("its superblock is for other commits")
    detached = sb.detached_metadata()
    meta_bytes = gvariant.serialize("a{sv}", detached) if detached is not None else None
    if meta_bytes is None and (puller.remote.sign_verify or puller.remote.requires_gpg):
        meta_bytes = transfer.fetch_optional(commit, ObjectType.COMMIT_META)
    puller._verify_commit(commit, sb.commit_bytes, meta_bytes, ref)
    if not repo.has_object(commit, ObjectType.COMMIT):
        atomic_write(state_marker(repo, commit), b"", sync=False)
        if meta_bytes is not None:
            repo.write_commitmeta_bytes(commit, meta_bytes)
        repo.write_metadata_bytes(ObjectType.COMMIT, sb.commit_bytes, expected=commit)

    if any(f.otype is not ObjectType.FILE for f in sb.fallbacks):
        raise DeltaError("its fallbacks include metadata objects")
    stats = ApplyStats()
    stats.signature_verified = signature_verified
    stats.trees = {c for h in sb.parts for t, c in h.objects if t is ObjectType.DIR_TREE}
    todo = [(i, h) for i, h in enumerate(sb.parts) if not part_complete(repo, h)]
    stats.parts_skipped = len(sb.parts) - len(todo)
    progress = puller.progress
    if progress is not None:
        progress.set_label("Receiving delta parts:")
        progress.total_items = len(todo)

    def apply_one(i: int, header: df.PartHeader, st: ApplyStats, fetcher, inner: int) -> None:
        inline = sb.inline_part(i)
        dest = None
        if inline is not None:
            f = io.BytesIO(inline)
        else:
            dest = repo.path / "tmp" / f"delta-part-{header.checksum}"
            url = f"{puller.base}/{ddir}/{i}"
            try:
                (fetcher or puller.fetcher).download(DownloadRequest(url, dest, sha256=header.checksum,
                                                                     size=header.compressed_size))
            except NotFoundError:
                raise NotFoundError(f"it is missing on {puller.source}") from None
            f = open(dest, "rb")  # noqa: SIM115 - closed below
        try:
            with f:
                payload = open_part(repo, f, header.checksum)
            try:
                execute_part(repo, header, payload, st, workers=inner)
            finally:
                payload.close()
        finally:
            if dest is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(dest)

    workers = puller.workers if puller.new_fetcher is not None else 1
    apply_parts(repo, todo, apply_one, stats, workers=workers, progress=progress,
                child_context=puller.new_fetcher)
    transfer.bytes += sum(h.compressed_size for _i, h in todo)
    fallbacks = [f.checksum for f in sb.fallbacks
                 if f.otype is ObjectType.FILE and not repo.has_object(f.checksum, ObjectType.FILE)]
    if fallbacks:
        if progress is not None:
            progress.set_label("Receiving objects:")
        transfer.pull_content(fallbacks)
    return stats
