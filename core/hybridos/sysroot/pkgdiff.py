"""Package differences between two trees or commits, from their rpmdb (``db diff``, ``upgrade`` output)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

RPMDB_SUBPATHS = ("usr/share/rpm", "usr/lib/sysimage/rpm")


@dataclass(frozen=True)
class PackageDiff:
    """NEVRA strings; ``upgraded``/``downgraded`` are (old, new) pairs."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    upgraded: tuple[tuple[str, str], ...] = ()
    downgraded: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.upgraded or self.downgraded)

    def lines(self) -> list[str]:
        out = []
        if self.upgraded:
            out.append("Upgraded:")
            out += [f"  {o} -> {n}" for o, n in self.upgraded]
        if self.downgraded:
            out.append("Downgraded:")
            out += [f"  {o} -> {n}" for o, n in self.downgraded]
        if self.removed:
            out.append("Removed:")
            out += [f"  {p}" for p in self.removed]
        if self.added:
            out.append("Added:")
            out += [f"  {p}" for p in self.added]
        return out

    def to_json(self) -> dict:
        return {"added": list(self.added), "removed": list(self.removed),
                "upgraded": [list(p) for p in self.upgraded], "downgraded": [list(p) for p in self.downgraded]}


def diff_packages(old, new) -> PackageDiff:
    """Compare two lists of Nevra (by name and arch)."""
    from hybridos.packages.header import compare_evr

    a = {(n.name, n.arch): n for n in old}
    b = {(n.name, n.arch): n for n in new}
    added = tuple(sorted(str(b[k]) for k in b.keys() - a.keys()))
    removed = tuple(sorted(str(a[k]) for k in a.keys() - b.keys()))
    up, down = [], []
    for k in sorted(a.keys() & b.keys()):
        c = compare_evr(a[k].evr, b[k].evr)
        if c < 0:
            up.append((str(a[k]), str(b[k])))
        elif c > 0:
            down.append((str(a[k]), str(b[k])))
    return PackageDiff(added, removed, tuple(up), tuple(down))


def packages_of_tree(tree: Path) -> list:
    """Nevra of every package in a checked-out tree's rpmdb (empty when it has none)."""
    from hybridos.packages.rpmdb import read_rpmdb

    return [h.nevra for h in read_rpmdb(tree)]


def packages_of_commit(repo, checksum: str) -> list:
    """Nevra of a commit's packages."""
    return [h.nevra for h in headers_of_commit(repo, checksum)]


def headers_of_commit(repo, checksum: str) -> list:
    """The rpmdb headers of a commit: its rpmdb is checked out alone into a temporary directory."""
    from hybridos.errors import NotFoundError
    from hybridos.ostree.checkout import find_subpath
    from hybridos.packages.rpmdb import read_rpmdb

    commit = repo.load_commit(checksum)
    with tempfile.TemporaryDirectory(prefix="hybridos-rpmdb-", dir=repo.path / "tmp") as tmp:
        tree = Path(tmp)
        found = False
        for sub in RPMDB_SUBPATHS:
            try:
                find_subpath(repo, commit.root_tree, commit.root_meta, sub)
            except NotFoundError:  # the commit keeps its rpmdb elsewhere (or has none)
                continue
            dest = tree / sub
            dest.parent.mkdir(parents=True, exist_ok=True)
            repo.checkout(checksum, dest, mode="copy", subpath=sub)
            found = True
        return read_rpmdb(tree) if found else []
