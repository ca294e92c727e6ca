"""``hybridos db``: the packages of commits, read from their rpmdb (rpm-ostree's ``db diff`` and ``db list``)."""

from __future__ import annotations

import json

import click

from hybridos.cli._sysroot_cli import sysroot_option, sysroot_path
from hybridos.errors import NotFoundError, SysrootError


@click.group("db")
def db():
    """Query the package databases of commits."""


def _resolve(sysroot, rev: str) -> str:
    found = sysroot.repo.resolve_rev(rev, allow_missing=True)
    if found is None:
        raise NotFoundError(f"{rev!r} is neither a ref nor a commit in {sysroot.repo.path}")
    return found


def _default_pair(sysroot):
    """(from, to) when no revisions are given: the booted (else rollback) deployment and the default one."""
    default = sysroot.default
    if default is None:
        raise SysrootError("no deployments to compare")
    if sysroot.booted is not None and not sysroot.booted.same(default):
        return sysroot.booted, default
    _, rollback = sysroot.pending_and_rollback()
    if rollback is None:
        raise SysrootError("only one deployment: give two revisions to compare (db diff FROM TO)")
    return rollback, default


@db.command("diff")
@sysroot_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.argument("revs", nargs=-1)
@click.pass_context
def diff(ctx, sysroot_opt, as_json, revs):
    """Show package changes between two commits (default: rollback or booted -> default deployment)."""
    from hybridos.sysroot.pkgdiff import diff_packages, packages_of_commit
    from hybridos.sysroot.sysroot import Sysroot

    if len(revs) > 2:
        raise click.UsageError("db diff takes at most two revisions")
    sysroot = Sysroot.load(sysroot_path(ctx, sysroot_opt))
    if len(revs) == 2:
        a, b = _resolve(sysroot, revs[0]), _resolve(sysroot, revs[1])
    elif len(revs) == 1:
        if sysroot.default is None:
            raise SysrootError("no default deployment to compare with")
        a, b = _resolve(sysroot, revs[0]), sysroot.default.checksum
    else:
        da, dbb = _default_pair(sysroot)
        a, b = da.checksum, dbb.checksum
    result = diff_packages(packages_of_commit(sysroot.repo, a), packages_of_commit(sysroot.repo, b))
    if as_json:
        click.echo(json.dumps({"from": a, "to": b, **result.to_json()}, indent=2))
        return
    click.echo(f"ostree diff commit from: {a}")
    click.echo(f"ostree diff commit to:   {b}")
    lines = result.lines()
    click.echo("\n".join(lines) if lines else "No package changes.")


@db.command("list")
@sysroot_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.argument("revs", nargs=-1)
@click.pass_context
def list_(ctx, sysroot_opt, as_json, revs):
    """List the packages of commits (default: the default deployment)."""
    from hybridos.sysroot.pkgdiff import packages_of_commit
    from hybridos.sysroot.sysroot import Sysroot

    sysroot = Sysroot.load(sysroot_path(ctx, sysroot_opt))
    if revs:
        commits = [_resolve(sysroot, r) for r in revs]
    elif sysroot.default is not None:
        commits = [(sysroot.booted or sysroot.default).checksum]
    else:
        raise SysrootError("no deployments: name the commits to list")
    out = {c: sorted(str(n) for n in packages_of_commit(sysroot.repo, c)) for c in commits}
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    for c, pkgs in out.items():
        click.echo(f"ostree commit: {c}")
        for p in pkgs:
            click.echo(f" {p}")
