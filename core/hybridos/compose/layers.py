"""``ostree-layers`` and ``ostree-override-layers``: commits already in the destination repository, checked out
over the packages' tree. A file of a plain layer that a package (or an earlier layer) already provides is an
error; an override layer replaces it.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

from hybridos.errors import ConfigError, PackageError


def merge_tree(src: Path, dest: Path, *, override: bool, what: str, root: Path | None = None) -> None:
    """Move the content of ``src`` into ``dest``: directories merge; another entry at a taken path is a
    conflict (or replaces it with ``override``)."""
    root = dest if root is None else root
    for entry in sorted(os.listdir(src)):
        s, d = src / entry, dest / entry
        sst = os.lstat(s)
        try:
            dst = os.lstat(d)
        except FileNotFoundError:
            os.rename(s, d)
            continue
        if stat.S_ISDIR(sst.st_mode) and stat.S_ISDIR(dst.st_mode):
            merge_tree(s, d, override=override, what=what, root=root)
            continue
        if not override and stat.S_ISREG(sst.st_mode) and stat.S_ISREG(dst.st_mode) \
                and sst.st_mode == dst.st_mode and s.read_bytes() == d.read_bytes():
            continue                                                # identical: no conflict (union-identical)
        if not override:
            raise PackageError(f"{what}: /{os.path.relpath(d, root)} is already provided by the "
                               "packages or an earlier layer (use ostree-override-layers to replace it)")
        if stat.S_ISDIR(dst.st_mode):
            shutil.rmtree(d)
        else:
            os.unlink(d)
        os.rename(s, d)


def apply_layers(repo, tree: Path, layers: tuple[str, ...], override_layers: tuple[str, ...],
                 workdir: Path) -> list[tuple[str, str]]:
    """Check out each layer ref into ``tree``; returns (ref, commit) pairs in order."""
    done = []
    for refs, override in ((layers, False), (override_layers, True)):
        key = "ostree-override-layers" if override else "ostree-layers"
        for ref in refs:
            commit = repo.resolve_rev(ref, allow_missing=True)
            if commit is None:
                raise ConfigError(f"{key}: ref '{ref}' is not in the repository {repo.path} (commit the layer "
                                  "there first)")
            tmp = Path(tempfile.mkdtemp(prefix="layer-", dir=workdir))
            try:
                repo.checkout(commit, tmp / "co", mode="copy")
                merge_tree(tmp / "co", tree, override=override, what=f"{key} {ref}")
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            done.append((ref, commit))
    return done
