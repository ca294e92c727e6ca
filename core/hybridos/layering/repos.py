"""The host's package repositories: ``.repo`` files of the merge deployment's ``/etc/yum.repos.d``, plus any
directories the sysroot's configuration names (``[hybridos] repos-dir=DIR;...`` in ``ostree/repo/config``,
relative to the sysroot), loaded through the fetch hook with a per-stateroot metadata cache.
"""

from __future__ import annotations

import configparser
import dataclasses
import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

from hybridos.arch import Architecture
from hybridos.errors import ConfigError
from hybridos.packages.repofile import RepoConfig, read_repo_dir, repo_variables
from hybridos.sysroot import bls

#: per stateroot (the value of hybridos.sysroot.upgrade.REPOMD_CACHE, which ``cleanup -m`` removes)
REPOMD_CACHE = "var/cache/hybridos/repomd"
#: per stateroot: downloaded RPMs, keyed by their checksums
PACKAGE_CACHE = "var/cache/hybridos/packages"


def stateroot_dir(sysroot: Path, stateroot: str) -> Path:
    return Path(sysroot) / "ostree/deploy" / stateroot


def config_repo_dirs(sysroot: Path) -> list[Path]:
    """Directories named by ``[hybridos] repos-dir`` in the sysroot repository's config."""
    cfg = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        cfg.read(Path(sysroot) / "ostree/repo/config")
    except configparser.Error as exc:
        raise ConfigError(f"{sysroot}/ostree/repo/config: {exc}") from None
    raw = cfg.get("hybridos", "repos-dir", fallback="")
    return [Path(sysroot) / d.strip().lstrip("/") for d in raw.split(";") if d.strip()]


def releasever_of(deploy_dir: Path) -> str | None:
    for rel in ("usr/lib/os-release", "etc/os-release"):
        try:
            return bls.parse_os_release((deploy_dir / rel).read_bytes()).get("VERSION_ID") or None
        except OSError:
            continue
    return None


@dataclass(frozen=True)
class RepoSelection:
    """dnf's ``--disablerepo``/``--enablerepo``/``--releasever`` for one operation: ids or shell globs (``*``);
    the disables apply first, then the enables, so ``--disablerepo='*' --enablerepo=ID`` uses only ``ID``."""

    enable: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()
    releasever: str | None = None

    def apply(self, repos: tuple[RepoConfig, ...]) -> tuple[RepoConfig, ...]:
        """The enabled ones of ``repos`` after the selection; an id (not a glob) that names no repository is
        an error, as in dnf."""
        for pattern in (*self.disable, *self.enable):
            if not any(ch in pattern for ch in "*?[") and not any(r.id == pattern for r in repos):
                known = ", ".join(sorted(r.id for r in repos)) or "none"
                raise ConfigError(f"Unknown repo: '{pattern}' (known: {known})")
        out = []
        for r in repos:
            enabled = r.enabled
            if any(fnmatch.fnmatchcase(r.id, p) for p in self.disable):
                enabled = False
            if any(fnmatch.fnmatchcase(r.id, p) for p in self.enable):
                enabled = True
            if enabled:
                out.append(r if r.enabled else dataclasses.replace(r, enabled=True))
        return tuple(out)


def all_host_repo_configs(sysroot: Path, deploy_dir: Path, arch: Architecture,
                          releasever: str | None = None) -> tuple[RepoConfig, ...]:
    """Every repository the host knows, enabled or not (the deployment's files first; an id defined again
    later is ignored)."""
    variables = repo_variables(arch, releasever or releasever_of(deploy_dir))
    seen: dict[str, RepoConfig] = {}
    for directory in [deploy_dir / "etc/yum.repos.d", *config_repo_dirs(sysroot)]:
        if not directory.is_dir():
            continue
        for repo in read_repo_dir(directory, variables, enabled_only=False):
            seen.setdefault(repo.id, repo)
    return tuple(seen.values())


def host_repo_configs(sysroot: Path, deploy_dir: Path, arch: Architecture,
                      selection: RepoSelection = RepoSelection()) -> tuple[RepoConfig, ...]:
    """Every enabled repository the host knows, after ``selection`` (``--enablerepo``/``--disablerepo``/
    ``--releasever``)."""
    return selection.apply(all_host_repo_configs(sysroot, deploy_dir, arch, selection.releasever))


def load_host_repos(sysroot: Path, stateroot: str, deploy_dir: Path, arch: Architecture, *,
                    cache_only: bool = False, refresh: bool = False,
                    selection: RepoSelection = RepoSelection()) -> tuple:
    """The enabled repositories with their metadata loaded (LoadedRepo values for the solve hook)."""
    from hybridos.packages.repomd import load_repo

    known = all_host_repo_configs(sysroot, deploy_dir, arch, selection.releasever)
    configs = selection.apply(known)
    if not configs:
        if selection.disable:
            raise ConfigError("no enabled package repository after --disablerepo/--enablerepo")
        if known:
            raise ConfigError(f"no enabled package repository ({', '.join(r.id for r in known)}: enabled=0)",
                              hint="enable one with enabled=1 in its .repo file, or use --enablerepo")
        raise ConfigError(f"no enabled package repository: no .repo file in {deploy_dir}/etc/yum.repos.d",
                          hint="add a .repo file to /etc/yum.repos.d")
    cachedir = stateroot_dir(sysroot, stateroot) / REPOMD_CACHE
    os.makedirs(cachedir, exist_ok=True)
    return tuple(load_repo(c, cachedir, cache_only=cache_only, refresh=refresh) for c in configs)
