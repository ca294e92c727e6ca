"""Changing the host's ``.repo`` files (rpm-ostree's modify-yum-repo transaction, GNOME Software's repository
switch): only ``enabled``, only ``0`` or ``1``, as rpm-ostreed allows, in the file that defines the repository."""

from __future__ import annotations

import os
from pathlib import Path

from hybridos.errors import ConfigError, NotFoundError, Unchanged
from hybridos.sysroot.sysroot import Sysroot


def modify_repo(sysroot: Sysroot, stateroot: str | None, repo_id: str,
                settings: tuple[tuple[str, str], ...]) -> str:
    """Apply ``settings`` to ``[repo_id]``; returns the file changed. Raises Unchanged when it already says so."""
    from hybridos.layering.assemble import commit_arch
    from hybridos.layering.repos import all_host_repo_configs
    from hybridos.packages.repofile import set_repo_option
    from hybridos.util.atomic import atomic_write

    for key, value in settings:
        if key != "enabled":
            raise ConfigError(f"Changing '{key}' not allowed in yum .repo files")
        if value not in ("0", "1"):
            raise ConfigError(f"Only '0' and '1' are allowed for the '{key}' key")
    _, merge = sysroot.require_merge(stateroot)
    configs = all_host_repo_configs(sysroot.path, sysroot.path / merge.relpath,
                                    commit_arch(sysroot.repo, merge.checksum))
    repo = next((c for c in configs if c.id == repo_id), None)
    if repo is None:
        raise NotFoundError(f"Yum repo '{repo_id}' not found")
    path = Path(repo.source.rsplit(":", 1)[0])
    if path.is_symlink():
        raise ConfigError(f"{path} is a symbolic link; change the file it points to")
    text = path.read_text(encoding="utf-8")
    new = text
    for key, value in settings:
        new = set_repo_option(new, repo_id, key, value, str(path))
    if new == text:
        raise Unchanged(f"repository {repo_id} already has {', '.join(f'{k}={v}' for k, v in settings)}")
    mode = os.stat(path).st_mode & 0o7777
    atomic_write(path, new.encode(), mode=mode)
    return str(path)
