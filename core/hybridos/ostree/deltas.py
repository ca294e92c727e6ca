"""The deltas a repository holds: listing, deleting, the delta indexes and what the summary advertises.

``deltas/`` holds one directory per delta (see :mod:`hybridos.ostree.delta_format` for the names);
``delta-indexes/XX/REST.index`` lists, for one TO commit, every delta ending there with the SHA-256 of its
superblock (``ostree static-delta reindex``, rewritten by every ``summary -u`` as ostree does since 2020.8).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from typing import TYPE_CHECKING

from hybridos import gvariant
from hybridos.errors import FormatError, NotFoundError
from hybridos.ostree import delta_format as df
from hybridos.util.atomic import atomic_write

if TYPE_CHECKING:
    from hybridos.ostree.repo import Repo


def list_deltas(repo: Repo) -> list[str]:
    """Delta ids (``FROM-TO`` or ``TO``) of every complete delta (one with a superblock), sorted."""
    out = []
    top = repo.path / "deltas"
    for d1 in sorted(_listdir(top)):
        for d2 in sorted(_listdir(top / d1)):
            if not (top / d1 / d2 / "superblock").is_file():
                continue
            with contextlib.suppress(FormatError):
                out.append(df.delta_id_from_dir(f"deltas/{d1}/{d2}"))
    return sorted(out)


def _listdir(path) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def superblock_path(repo: Repo, delta: str):
    frm, to = df.parse_delta_id(delta)
    return repo.path / df.delta_dir(frm, to) / "superblock"


def read_superblock(repo: Repo, delta: str) -> df.Superblock:
    from hybridos.ostree.delta_apply import read_superblock
    path = superblock_path(repo, delta)
    if not path.exists():
        raise NotFoundError(f"no delta {delta} in {repo.path}")
    return read_superblock(path)


def delete_delta(repo: Repo, delta: str) -> None:
    path = superblock_path(repo, delta).parent
    if not path.is_dir():
        raise NotFoundError(f"no delta {delta} in {repo.path}")
    shutil.rmtree(path)


def superblock_digests(repo: Repo) -> dict[str, bytes]:
    """delta id -> SHA-256 of its superblock file, for every delta."""
    out = {}
    for delta in list_deltas(repo):
        with open(superblock_path(repo, delta), "rb") as f:
            out[delta] = hashlib.file_digest(f, "sha256").digest()
    return out


def build_index(entries: dict[str, bytes]) -> bytes:
    """An ``.index`` file: ``a{sv}`` {``ostree.static-deltas``: a{sv} {delta id: ay digest}}."""
    inner = {k: gvariant.Variant("ay", v) for k, v in sorted(entries.items())}
    return gvariant.serialize("a{sv}", {df.INDEX_KEY: gvariant.Variant("a{sv}", inner)})


def parse_index(data: bytes) -> dict[str, bytes]:
    """delta id -> superblock digest from an ``.index`` file (FormatError when malformed)."""
    top = gvariant.parse("a{sv}", data)
    v = top.get(df.INDEX_KEY)
    if v is None:
        return {}
    if v.signature != "a{sv}":
        raise FormatError(f"{df.INDEX_KEY} in a delta index is not an a{{sv}}")
    return _digest_table(v.value)


def _digest_table(table: dict) -> dict[str, bytes]:
    out = {}
    for k, item in table.items():
        if item.signature != "ay" or len(item.value) != 32:
            raise FormatError(f"delta {k}: superblock digest is not 32 bytes")
        df.parse_delta_id(k)
        out[k] = bytes(item.value)
    return out


def summary_deltas(metadata: dict) -> dict[str, bytes]:
    """delta id -> superblock digest from a summary's metadata (``ostree.static-deltas``)."""
    v = metadata.get(df.SUMMARY_KEY)
    if v is None:
        return {}
    if isinstance(v, dict):   # parsed through from_variant: values are Variants or bytes
        return _digest_table({k: x if isinstance(x, gvariant.Variant) else gvariant.Variant("ay", x)
                              for k, x in v.items()})
    raise FormatError(f"{df.SUMMARY_KEY} in the summary is not an a{{sv}}")


def reindex(repo: Repo, digests: dict[str, bytes] | None = None) -> None:
    """Rewrite ``delta-indexes/``: one index per TO commit that has deltas; stale indexes removed."""
    digests = superblock_digests(repo) if digests is None else digests
    by_to: dict[str, dict[str, bytes]] = {}
    for delta, digest in digests.items():
        _frm, to = df.parse_delta_id(delta)
        by_to.setdefault(to, {})[delta] = digest
    wanted = {df.index_path(to): entries for to, entries in by_to.items()}
    top = repo.path / "delta-indexes"
    for d1 in _listdir(top):
        for name in _listdir(top / d1):
            rel = f"delta-indexes/{d1}/{name}"
            if rel not in wanted:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(repo.path / rel)
    for rel, entries in wanted.items():
        path = repo.path / rel
        data = build_index(entries)
        if path.exists() and path.read_bytes() == data:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)


def summary_metadata(repo: Repo) -> dict:
    """What ``summary -u`` adds for deltas: ``ostree.static-deltas`` (unless core.no-deltas-in-summary) and
    fresh delta indexes."""
    digests = superblock_digests(repo)
    reindex(repo, digests)
    if not digests or repo.config.get("core", "no-deltas-in-summary", fallback="false").lower() == "true":
        return {}
    return {df.SUMMARY_KEY: gvariant.Variant("a{sv}", {k: gvariant.Variant("ay", v)
                                                       for k, v in sorted(digests.items())})}
