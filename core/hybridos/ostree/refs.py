"""Refs: ``refs/heads/NAME`` and ``refs/remotes/REMOTE/NAME`` files holding a commit checksum."""

from __future__ import annotations

import contextlib
import os
import re
from typing import TYPE_CHECKING

from hybridos.errors import FormatError, NotFoundError, UsageError
from hybridos.ostree.objects import ObjectType, is_checksum
from hybridos.util.atomic import atomic_write

if TYPE_CHECKING:
    from hybridos.ostree.repo import Repo

_REF_RE = re.compile(r"^[\w\d][-._\w\d]*(/[\w\d][-._\w\d]*)*$", re.ASCII)
_REMOTE_RE = re.compile(r"^[\w\d][-._\w\d]*$", re.ASCII)
_PARTIAL_RE = re.compile(r"^[0-9a-f]{1,63}$")


def validate_ref(ref: str) -> str:
    if not _REF_RE.match(ref):
        raise UsageError(f"invalid ref name {ref!r}")
    return ref


def validate_remote(name: str) -> str:
    if not _REMOTE_RE.match(name):
        raise UsageError(f"invalid remote name {name!r}")
    return name


def parse_refspec(refspec: str) -> tuple[str | None, str]:
    """``remote:ref`` -> (remote, ref); ``ref`` -> (None, ref)."""
    remote, sep, ref = refspec.partition(":")
    if not sep:
        return None, validate_ref(refspec)
    return validate_remote(remote), validate_ref(ref)


def _ref_path(repo: Repo, remote: str | None, ref: str) -> str:
    if remote is None:
        return os.path.join(repo.path, "refs", "heads", ref)
    return os.path.join(repo.path, "refs", "remotes", remote, ref)


def _read_ref_file(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read().strip()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    if not is_checksum(text):
        raise FormatError(f"ref file {path} does not hold a checksum")
    return text


def _walk(base: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if not os.path.isdir(base):
        return out
    for dirpath, _dirs, files in os.walk(base):
        for f in files:
            full = os.path.join(dirpath, f)
            rel = os.path.relpath(full, base)
            value = _read_ref_file(full)
            if value is not None:
                out[rel] = value
    return out


def list_refs(repo: Repo, prefix: str | None = None, remote: str | bool | None = None) -> dict[str, str]:
    """Local refs {ref: checksum}; with ``remote`` (True or a remote's name), remote refs {"remote:ref": ...}."""
    out: dict[str, str] = {}
    if not remote:
        out = _walk(os.path.join(repo.path, "refs", "heads"))
    else:
        base = os.path.join(repo.path, "refs", "remotes")
        names = [remote] if isinstance(remote, str) else (sorted(os.listdir(base)) if os.path.isdir(base) else [])
        for r in names:
            for ref, c in _walk(os.path.join(base, r)).items():
                out[f"{r}:{ref}"] = c
    if prefix:
        out = {k: v for k, v in out.items() if k.startswith(prefix) or k.partition(":")[2].startswith(prefix)}
    return dict(sorted(out.items()))


def set_ref(repo: Repo, ref: str, checksum: str | None) -> None:
    """Point a ref (``ref`` or ``remote:ref``) at a commit that is present, or delete it (None); atomic."""
    remote, name = parse_refspec(ref)
    path = _ref_path(repo, remote, name)
    if checksum is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        stop = os.path.join(repo.path, "refs")
        d = os.path.dirname(path)
        while d != stop and os.path.dirname(d) != stop:
            try:
                os.rmdir(d)
            except OSError:
                break
            d = os.path.dirname(d)
        return
    if not is_checksum(checksum):
        raise FormatError(f"invalid checksum {checksum!r}")
    if not repo.has_object(checksum, ObjectType.COMMIT):
        raise NotFoundError(f"cannot point {ref} at {checksum}: that commit is not in the repository")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.isdir(path):
        raise UsageError(f"cannot create ref {ref}: a ref directory of that name exists")
    atomic_write(path, checksum + "\n")


def _commits_with_prefix(repo: Repo, prefix: str) -> list[str]:
    sub = os.path.join(repo.objects_dir, prefix[:2]) if len(prefix) >= 2 else None
    dirs = [sub] if sub else [os.path.join(repo.objects_dir, d) for d in _two_hex(repo, prefix)]
    found = []
    for d in dirs:
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            continue
        head = os.path.basename(d)
        for n in names:
            if n.endswith(".commit"):
                c = head + n[:-len(".commit")]
                if c.startswith(prefix):
                    found.append(c)
    return found


def _two_hex(repo: Repo, prefix: str) -> list[str]:
    try:
        return [d for d in os.listdir(repo.objects_dir) if d.startswith(prefix)]
    except FileNotFoundError:
        return []


def resolve_rev(repo: Repo, rev: str, allow_missing: bool = False) -> str | None:
    """``ref``, ``remote:ref``, a full checksum, a unique checksum prefix, each optionally with ``^``s."""
    carets = len(rev) - len(rev.rstrip("^"))
    if carets:
        c = resolve_rev(repo, rev[:-carets], allow_missing)
        if c is None:
            return None
        for _ in range(carets):
            parent = repo.load_commit(c).parent
            if parent is None:
                raise NotFoundError(f"commit {c} has no parent (resolving {rev})")
            c = parent
        return c
    if is_checksum(rev):
        return rev
    if _PARTIAL_RE.match(rev) and len(rev) >= 4:
        found = _commits_with_prefix(repo, rev)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise UsageError(f"checksum prefix {rev} is ambiguous ({len(found)} commits)")
    try:
        remote, name = parse_refspec(rev)
    except UsageError:
        if allow_missing:
            return None
        raise NotFoundError(f"no such ref or commit: {rev!r}") from None
    value = _read_ref_file(_ref_path(repo, remote, name))
    if value is None and remote is None:
        hits = {c for k, c in list_refs(repo, remote=True).items() if k.partition(":")[2] == name}
        if len(hits) == 1:
            value = hits.pop()
    if value is None:
        if allow_missing:
            return None
        raise NotFoundError(f"no such ref or commit: {rev!r} in {repo.path}")
    return value
