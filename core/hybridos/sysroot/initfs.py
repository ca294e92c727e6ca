"""``admin init-fs`` and ``admin os-init``: an empty sysroot and a stateroot, as ``ostree admin`` makes them."""

from __future__ import annotations

import os
from pathlib import Path

from hybridos.errors import SysrootError, UsageError
from hybridos.sysroot.sysroot import not_a_sysroot_hint

_TOP_DIRS = {"boot": 0o755, "dev": 0o755, "home": 0o755, "proc": 0o755, "run": 0o755, "sys": 0o755,
             "root": 0o700, "tmp": 0o1777}


def init_fs(path: Path) -> Path:
    """Create the top directories and a bare ``ostree/repo``; an existing sysroot is left as it is."""
    from hybridos.ostree.repo import Repo, RepoMode

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for name, mode in _TOP_DIRS.items():
        d = path / name
        if not d.exists():
            d.mkdir()
            os.chmod(d, mode)
    (path / "ostree/deploy").mkdir(parents=True, exist_ok=True)
    if not (path / "ostree/repo/config").exists():
        Repo.init(path / "ostree/repo", RepoMode.BARE)
    return path


def validate_stateroot(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or any(c.isspace() for c in name):
        raise UsageError(f"invalid stateroot name {name!r}")


def os_init(sysroot: Path, stateroot: str) -> Path:
    """Create ``ostree/deploy/<stateroot>/var`` with the skeleton ``ostree admin os-init`` makes."""
    validate_stateroot(stateroot)
    sysroot = Path(sysroot)
    if not (sysroot / "ostree/deploy").is_dir():
        raise SysrootError(f"{sysroot} is not an OSTree sysroot (no ostree/deploy)",
                           hint=not_a_sysroot_hint(sysroot))
    base = sysroot / "ostree/deploy" / stateroot
    var = base / "var"
    (base / "deploy").mkdir(parents=True, exist_ok=True)
    var.mkdir(exist_ok=True)
    for name, mode in (("lib", 0o755), ("log", 0o755), ("tmp", 0o1777)):
        d = var / name
        if not d.exists():
            d.mkdir()
            os.chmod(d, mode)
    for name, target in (("lock", "../run/lock"), ("run", "../run")):
        if not os.path.lexists(var / name):
            os.symlink(target, var / name)
    return base
