"""Verify a repository: every object re-hashed and re-parsed, refs and commits complete."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hybridos import gvariant
from hybridos.errors import HybridosError
from hybridos.ostree import content as _content
from hybridos.ostree.objects import Commit, DirMeta, DirTree, ObjectType
from hybridos.ostree.traverse import traverse_commit

if TYPE_CHECKING:
    from hybridos.ostree.repo import Repo
    from hybridos.util.progress import Progress


@dataclass(frozen=True)
class Problem:
    """One finding: the object (or ref) concerned and what is wrong with it."""

    checksum: str
    otype: ObjectType | None
    message: str
    ref: str | None = None

    def __str__(self) -> str:
        if self.ref is not None:
            return f"ref {self.ref}: {self.message}"
        kind = self.otype.extension if self.otype is not None else "object"
        return f"{kind} object {self.checksum}: {self.message}"


_META_PARSERS = {ObjectType.COMMIT: Commit.parse, ObjectType.DIR_TREE: DirTree.parse,
                 ObjectType.DIR_META: DirMeta.parse, ObjectType.COMMIT_META: gvariant.parse_vardict,
                 ObjectType.TOMBSTONE_COMMIT: gvariant.parse_vardict}


def check_metadata(repo: Repo, checksum: str, otype: ObjectType) -> str | None:
    """None when the metadata object is sound, else what is wrong."""
    try:
        with open(repo.object_path_str(checksum, otype), "rb") as f:
            data = f.read()
    except OSError as exc:
        return f"cannot read: {exc.strerror}"
    if otype not in (ObjectType.COMMIT_META, ObjectType.TOMBSTONE_COMMIT):
        got = hashlib.sha256(data).hexdigest()
        if got != checksum:
            return f"corrupted: checksum mismatch (the bytes hash to {got})"
    parser = _META_PARSERS.get(otype)
    if parser is not None:
        try:
            parser(data)
        except HybridosError as exc:
            return f"corrupted: {exc}"
    return None


def check_content(repo: Repo, checksum: str) -> tuple[str | None, int]:
    """(None when the content object re-hashes to its name else the problem, bytes read)."""
    try:
        header, stream = _content.open_content(repo, checksum)
        if stream is None:
            got, n = _content.checksum_stream(header, None)
        else:
            with stream:
                got, n = _content.checksum_stream(header, stream)
    except HybridosError as exc:
        return f"corrupted: {exc}", 0
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}", 0
    if got != checksum:
        return f"corrupted: checksum mismatch (the content hashes to {got})", n
    if repo.mode.value == "bare-user" and header.is_regular:
        st = os.stat(repo.object_path_str(checksum, ObjectType.FILE))
        if st.st_mode & 0o7777 & ~_content.bareuser_ondisk_mode(header.mode):
            return f"corrupted: on-disk mode {st.st_mode & 0o7777:o} exceeds the recorded {header.mode & 0o7777:o}", n
    return None, n


def fsck(repo: Repo, *, verify_content: bool = True, workers: int | None = None,
         progress: Progress | None = None) -> list[Problem]:
    """Check every object and ref; returns the problems found (empty: the repository is sound)."""
    problems: list[Problem] = []
    objects = list(repo.list_objects())
    content = [c for c, t in objects if t is ObjectType.FILE]
    for c, t in objects:
        if t is ObjectType.FILE:
            continue
        msg = check_metadata(repo, c, t)
        if msg:
            problems.append(Problem(c, t, msg))
        if progress is not None:
            progress.advance(1)
    if verify_content and content:
        def one(c: str) -> tuple[str, str | None]:
            msg, n = check_content(repo, c)
            if progress is not None:
                progress.advance(1, n)
            return c, msg

        with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) + 1)) as pool:
            for i in range(0, len(content), 256):  # bounded batches: memory stays flat
                for c, msg in pool.map(one, content[i:i + 256]):
                    if msg:
                        problems.append(Problem(c, ObjectType.FILE, msg))
    bad = {(p.checksum, p.otype) for p in problems}
    # refs point at commits that are present and complete
    refs = dict(repo.list_refs())
    refs.update(repo.list_refs(remote=True))
    seen: set = set()
    for ref, commit in sorted(refs.items()):
        if not repo.has_object(commit, ObjectType.COMMIT):
            problems.append(Problem(commit, ObjectType.COMMIT, "missing commit object", ref=ref))
            continue
        if (commit, ObjectType.COMMIT) in bad or repo.commit_is_partial(commit):
            continue
        reachable: set = set()
        try:
            traverse_commit(repo, commit, ignore_missing=True, out=reachable)
        except HybridosError:
            continue  # a corrupt object on the way is reported above
        for c, t in sorted(reachable - seen):
            if (c, t) not in bad and not repo.has_object(c, t):
                problems.append(Problem(c, t, f"missing (needed by commit {commit})"))
        seen |= reachable
    return problems
