"""Delete objects that no ref (or, unless refs_only, no commit) reaches."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hybridos.ostree.objects import ObjectType
from hybridos.ostree.traverse import traverse_commit

if TYPE_CHECKING:
    from hybridos.ostree.repo import Repo


@dataclass(frozen=True)
class PruneResult:
    objects_total: int
    objects_pruned: int
    bytes_freed: int


def reachable_objects(repo: Repo, *, depth: int = -1, refs_only: bool = True) -> set:
    """Objects kept by prune: those of every ref (heads and remotes) to ``depth`` parents, of partially
    pulled commits, and unless ``refs_only`` of every commit object present."""
    partials = _partials(repo)
    roots = set(repo.list_refs().values()) | set(repo.list_refs(remote=True).values()) | partials
    if not refs_only:
        roots |= {c for c, t in repo.list_objects() if t is ObjectType.COMMIT}
    keep: set = set()
    for c in sorted(roots):
        traverse_commit(repo, c, depth=0 if c in partials else depth, ignore_missing=True, out=keep)
    return keep


def _partials(repo: Repo) -> set[str]:
    state = repo.path / "state"
    if not state.is_dir():
        return set()
    return {p.name[:-len(".commitpartial")] for p in state.iterdir() if p.name.endswith(".commitpartial")}


def prune(repo: Repo, *, depth: int = -1, refs_only: bool = True, dry_run: bool = False) -> PruneResult:
    """Remove unreachable objects (and the detached metadata of removed commits), holding the lock exclusively."""
    with repo.lock(exclusive=True):
        return _prune(repo, depth=depth, refs_only=refs_only, dry_run=dry_run)


def _prune(repo: Repo, *, depth: int, refs_only: bool, dry_run: bool) -> PruneResult:
    keep = reachable_objects(repo, depth=depth, refs_only=refs_only)
    total = pruned = freed = 0
    for c, t in list(repo.list_objects()):
        total += 1
        if t is ObjectType.COMMIT_META:
            key = (c, ObjectType.COMMIT)
        elif t is ObjectType.TOMBSTONE_COMMIT:
            continue
        else:
            key = (c, t)
        if key in keep:
            continue
        path = repo.object_path(c, t)
        with contextlib.suppress(FileNotFoundError):
            size = os.lstat(path).st_size
            if not dry_run:
                os.unlink(path)
            pruned += 1
            freed += size
    return PruneResult(total, pruned, freed)
