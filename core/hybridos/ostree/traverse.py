"""Reachability: every object a commit needs (for pull, prune and fsck)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hybridos.errors import NotFoundError
from hybridos.ostree.objects import ObjectType

if TYPE_CHECKING:
    from hybridos.ostree.repo import Repo

Reachable = set[tuple[str, ObjectType]]


def traverse_dirtree(repo: Repo, tree: str, meta: str, out: Reachable, *, ignore_missing: bool = False) -> None:
    """Add a dirtree, its dirmeta and everything below to ``out`` (skips subtrees already in ``out``)."""
    stack = [(tree, meta)]
    while stack:
        t, m = stack.pop()
        out.add((m, ObjectType.DIR_META))
        key = (t, ObjectType.DIR_TREE)
        if key in out:
            continue
        out.add(key)
        try:
            dt = repo.load_dirtree(t)
        except NotFoundError:
            if ignore_missing:
                continue
            raise
        for _, c in dt.files:
            out.add((c, ObjectType.FILE))
        for _, st, sm in dt.dirs:
            stack.append((st, sm))


def traverse_commit(repo: Repo, checksum: str, *, depth: int = 0, ignore_missing: bool = False,
                    out: Reachable | None = None) -> Reachable:
    """Objects reachable from ``checksum`` and ``depth`` parents (-1: all); a missing parent ends the chain."""
    out = set() if out is None else out
    current: str | None = checksum
    level = 0
    while current is not None:
        try:
            commit = repo.load_commit(current)
        except NotFoundError:
            if level == 0 and not ignore_missing:
                raise
            break
        out.add((current, ObjectType.COMMIT))
        traverse_dirtree(repo, commit.root_tree, commit.root_meta, out, ignore_missing=ignore_missing)
        if depth >= 0 and level >= depth:
            break
        level += 1
        current = commit.parent
    return out
