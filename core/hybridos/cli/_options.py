"""Parsing helpers shared by the command modules."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import click

from hybridos.errors import UsageError

#: ``--repo PATH`` of the ``repo`` commands (ostree's name, and its OSTREE_REPO variable).
repo_option = click.option(
    "--repo", "repo_path", type=click.Path(file_okay=False, path_type=Path), default=None, envvar="OSTREE_REPO",
    help="Path to the repository (default: $OSTREE_REPO, else SYSROOT/ostree/repo).")


def repo_path_of(ctx: click.Context, repo_path: Path | None) -> Path:
    """``--repo``, else the global sysroot's ``ostree/repo``."""
    from hybridos.cli.main import global_options

    return repo_path if repo_path is not None else global_options(ctx).sysroot / "ostree/repo"


def open_repo(ctx: click.Context, repo_path: Path | None):
    from hybridos.ostree.repo import Repo

    return Repo.open(repo_path_of(ctx, repo_path))


def parse_key_values(values: Iterable[str], option: str) -> dict[str, str]:
    """``("a=1", "b=x=y")`` -> ``{"a": "1", "b": "x=y"}``; a value without ``=`` or key is a usage error."""
    out = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} expects KEY=VALUE, got {v!r}")
        out[key] = value
    return out
