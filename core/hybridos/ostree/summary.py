"""The ``summary`` file: refs with their commits, as ``ostree summary -u`` writes it."""

from __future__ import annotations

import contextlib
import os
import time
from typing import TYPE_CHECKING

from hybridos.gvariant import Variant, bswap64
from hybridos.ostree.objects import ObjectType, Summary, SummaryRef
from hybridos.util.atomic import atomic_write

if TYPE_CHECKING:
    from hybridos.ostree.repo import Repo


def build_summary(repo: Repo, *, additional_metadata: dict | None = None, now: int | None = None) -> Summary:
    refs = []
    for name, commit in repo.list_refs().items():
        c = repo.load_commit(commit)
        size = len(repo.read_metadata_bytes(commit, ObjectType.COMMIT))
        meta: dict = {}
        if c.version is not None:
            meta["ostree.commit.version"] = c.version
        meta["ostree.commit.timestamp"] = Variant("t", bswap64(c.timestamp))
        refs.append(SummaryRef(name, commit, size, meta))
    from hybridos.ostree.deltas import summary_metadata

    top: dict = dict(additional_metadata or {})
    top.update(summary_metadata(repo))
    top["ostree.summary.mode"] = repo.mode.value
    top["ostree.summary.last-modified"] = Variant("t", bswap64(int(time.time()) if now is None else now))
    top["ostree.summary.tombstone-commits"] = False
    top["ostree.summary.indexed-deltas"] = True
    return Summary(tuple(refs), top)


def generate_summary(repo: Repo, *, additional_metadata: dict | None = None, write: bool = True) -> bytes:
    """Serialize the summary and (by default) write ``summary`` atomically, dropping a stale ``summary.sig``."""
    data = build_summary(repo, additional_metadata=additional_metadata).serialize()
    if write:
        atomic_write(repo.path / "summary", data)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(repo.path / "summary.sig")
    return data


def read_summary(repo: Repo) -> Summary | None:
    try:
        data = (repo.path / "summary").read_bytes()
    except FileNotFoundError:
        return None
    return Summary.parse(data)


def ref_timestamp(ref: SummaryRef) -> int | None:
    """The commit timestamp a summary records for a ref (stored big-endian)."""
    v = ref.metadata.get("ostree.commit.timestamp")
    return bswap64(v) if isinstance(v, int) else None
