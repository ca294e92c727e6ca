"""``hybridos db``: the packages of commits, read from their rpmdb (rpm-ostree's ``db diff`` and ``db list``)."""

from __future__ import annotations

import json
from pathlib import Path

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


repo_option = click.option("-r", "--repo", "repo_path", type=click.Path(file_okay=False, path_type=Path),
                           default=None, help="An OSTree repository instead of the sysroot's.")


class _RepoOnly:
    """What the db commands need when ``--repo`` names a repository: no deployments."""

    def __init__(self, repo):
        self.repo = repo
        self.default = self.booted = None


def _open(ctx, sysroot_opt, repo_path):
    if repo_path is not None:
        from hybridos.ostree.repo import Repo

        return _RepoOnly(Repo.open(repo_path))
    from hybridos.sysroot.sysroot import Sysroot

    return Sysroot.load(sysroot_path(ctx, sysroot_opt))


def _heading(rev: str, checksum: str) -> str:
    return f"ostree commit: {rev}" + (f" ({checksum})" if rev != checksum else "")


@db.command("diff")
@sysroot_option
@repo_option
@click.option("-F", "--format", "fmt", type=click.Choice(["block", "diff", "json"]), default="block",
              help="Output format: block (default), diff or json (rpm-ostree's pkgdiff).")
@click.option("--json", "as_json", is_flag=True, help="hybridos's summary as JSON (added/removed/upgraded/downgraded).")
@click.option("--base", is_flag=True, help="Compare the base commits of layered deployments.")
@click.argument("revs", nargs=-1)
@click.pass_context
def diff(ctx, sysroot_opt, repo_path, fmt, as_json, base, revs):
    """Show package changes between two commits (default: rollback or booted -> default deployment)."""
    from hybridos.compose.pipeline import pkgdiff
    from hybridos.sysroot.pkgdiff import diff_packages, packages_of_commit

    if len(revs) > 2:
        raise click.UsageError("db diff takes at most two revisions")
    sysroot = _open(ctx, sysroot_opt, repo_path)
    if len(revs) == 2:
        a, b = _resolve(sysroot, revs[0]), _resolve(sysroot, revs[1])
    elif len(revs) == 1:
        if sysroot.default is None:
            raise SysrootError("no default deployment to compare with (give two revisions)")
        a, b = _resolve(sysroot, revs[0]), sysroot.default.checksum
    else:
        if repo_path is not None:
            raise click.UsageError("with --repo, give the revisions to compare")
        da, dbb = _default_pair(sysroot)
        a, b = da.checksum, dbb.checksum
        labels = ("booted deployment", "pending deployment") if sysroot.booted is not None \
            and sysroot.booted.same(da) else ("rollback deployment", "booted deployment")
    if base:
        a, b = (_base_of(sysroot.repo, c) for c in (a, b))
    if revs:
        labels = (revs[0], revs[1] if len(revs) > 1 else "booted deployment")
    old, new = packages_of_commit(sysroot.repo, a), packages_of_commit(sysroot.repo, b)
    if as_json:      # hybridos's own summary (kept for scripts written against it)
        click.echo(json.dumps({"from": a, "to": b, **diff_packages(old, new).to_json()}, indent=2))
        return
    if fmt == "json":
        out = {"ostree-commit-from": a, "ostree-commit-to": b,
               "pkgdiff": pkgdiff({(n.name, n.arch): n for n in old}, {(n.name, n.arch): n for n in new}),
               "advisories": []}
        click.echo(json.dumps(out, indent=2))
        return
    result = diff_packages(old, new)
    click.echo(f"ostree diff commit from: {labels[0]} ({a})")
    click.echo(f"ostree diff commit to:   {labels[1]} ({b})")
    if fmt == "diff":
        for line in _diff_lines(result):
            click.echo(line)
        return
    lines = result.lines()
    click.echo("\n".join(lines) if lines else "No package changes.")


def _diff_lines(result) -> list[str]:
    """rpm-ostree's ``--format=diff``: ``!old`` ``=new`` for changes, ``-`` removed, ``+`` added."""
    out = []
    for o, n in (*result.upgraded, *result.downgraded):
        out += [f"!{o}", f"={n}"]
    out += [f"-{p}" for p in result.removed]
    out += [f"+{p}" for p in result.added]
    return out


def _base_of(repo, checksum: str) -> str:
    commit = repo.load_commit(checksum)
    return commit.parent if commit.metadata.get("rpmostree.clientlayer") and commit.parent else checksum


def _matches(nevra, patterns) -> bool:
    """rpm-ostree's db list patterns: case-insensitive globs on the name, NEVRA, name.arch or name-version-release."""
    import fnmatch

    forms = [nevra.name, str(nevra), f"{nevra.name}.{nevra.arch}", f"{nevra.name}-{nevra.version}-{nevra.release}"]
    return any(fnmatch.fnmatch(f.lower(), p.lower()) for p in patterns for f in forms)


@db.command("list")
@sysroot_option
@repo_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.argument("args", nargs=-1, metavar="[REV...] [PKG-PATTERN...]")
@click.pass_context
def list_(ctx, sysroot_opt, repo_path, as_json, args):
    """List the packages of commits (default: the default deployment); arguments after the first one that is
    not a revision are package patterns (globs on name, NEVRA, name.arch or name-version-release)."""
    from hybridos.sysroot.pkgdiff import packages_of_commit

    sysroot = _open(ctx, sysroot_opt, repo_path)
    revs: list[tuple[str, str]] = []
    patterns: list[str] = []
    for arg in args:
        found = None if patterns else sysroot.repo.resolve_rev(arg, allow_missing=True)
        if found is None:
            if not revs:
                raise NotFoundError(f"{arg!r} is neither a ref nor a commit in {sysroot.repo.path}")
            patterns.append(arg)
        else:
            revs.append((arg, found))
    if not revs:
        if sysroot.default is None:
            raise SysrootError("no deployments: name the commits to list")
        c = (sysroot.booted or sysroot.default).checksum
        revs = [(c, c)]
    out = {}
    for rev, c in revs:
        pkgs = sorted(packages_of_commit(sysroot.repo, c), key=lambda n: (n.name, n.arch))
        out[(rev, c)] = [str(n) for n in pkgs if not patterns or _matches(n, patterns)]
    if as_json:
        click.echo(json.dumps({c: pkgs for (_, c), pkgs in out.items()}, indent=2))
        return
    for (rev, c), pkgs in out.items():
        click.echo(_heading(rev, c))
        for p in pkgs:
            click.echo(f" {p}")


def rpmdb_version(nevras) -> str:
    """rpm-ostree's rpmdbv: ``COUNT:SHA256`` of the packages' ``[EPOCH:]NAME-VERSION-RELEASE.ARCH`` strings,
    concatenated in name order (then version order), gpg-pubkey left out."""
    import functools
    import hashlib

    from hybridos.packages.header import compare_evr

    def cmp(a, b):
        return (a.name > b.name) - (a.name < b.name) or compare_evr(a.evr, b.evr)

    pkgs = sorted((n for n in nevras if n.name != "gpg-pubkey"), key=functools.cmp_to_key(cmp))
    h = hashlib.sha256()
    for n in pkgs:
        envra = f"{n.name}-{n.version}-{n.release}.{n.arch}"
        h.update((f"{n.epoch}:{envra}" if n.epoch else envra).encode())
    return f"{len(pkgs)}:{h.hexdigest()}"


@db.command("version")
@sysroot_option
@repo_option
@click.argument("revs", nargs=-1, metavar="[COMMIT...]")
@click.pass_context
def version(ctx, sysroot_opt, repo_path, revs):
    """Show the rpmdb version of commits (rpm-ostree's rpmdbv: package count and a hash of their NEVRAs)."""
    from hybridos.sysroot.pkgdiff import packages_of_commit

    sysroot = _open(ctx, sysroot_opt, repo_path)
    if not revs:
        if sysroot.default is None:
            raise SysrootError("no deployments: name the commits")
        revs = ((sysroot.booted or sysroot.default).checksum,)
    for rev in revs:
        c = _resolve(sysroot, rev)
        click.echo(_heading(rev, c))
        click.echo(f"  rpmdbv is: {rpmdb_version(packages_of_commit(sysroot.repo, c)):>66}")
