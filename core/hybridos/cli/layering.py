"""Layering commands with rpm-ostree's names and options: install, uninstall, override, reset, initramfs,
refresh-md. Each change is a new deployment; the previous one stays for rollback."""

from __future__ import annotations

import click

from hybridos.cli._pkgopts import install_option, repo_fields, repo_options, uninstall_option
from hybridos.cli._sysroot_cli import change_options, os_option, run_operation, sysroot_option, sysroot_path


def _common(f):
    """Options every changing verb shares (as rpm-ostree's)."""
    for opt in reversed([
        sysroot_option,
        os_option,
        change_options,
        click.option("-n", "--dry-run", is_flag=True, help="Show what would be done; change nothing."),
        click.option("-y", "--assumeyes", is_flag=True, help="Do not ask for confirmation (never asked)."),
        click.option("-C", "--cache-only", is_flag=True, help="Do not download metadata or packages."),
        click.option("--download-only", is_flag=True, help="Download the packages, do not deploy."),
        click.option("--unchanged-exit-77", "unchanged_exit_77", is_flag=True,
                     help="Exit 77 when there is nothing to do."),
    ]):
        f = opt(f)
    return f


def _run(ctx, sysroot_opt, osname, title: str, *, unchanged_exit_77=False, **change) -> None:
    """Run one package change (``hybridos.operations.verbs.PackageChange``) and report it."""
    from hybridos.operations.verbs import PackageChange

    run_operation(ctx, sysroot_opt, PackageChange(name=title, stateroot=osname, **change),
                  unchanged_exit_77=unchanged_exit_77)


def _split(specs: tuple[str, ...], *, files_only: bool = False):
    """Names vs RPM files and URLs (``hybridos.operations.pkgargs``); a context manager that removes the
    downloads afterwards."""
    from hybridos.operations.pkgargs import resolve_package_args

    return resolve_package_args(specs, files_only=files_only)


@click.command("install")
@_common
@click.option("--idempotent", is_flag=True, help="Do nothing if a package request is already present.")
@click.option("--allow-inactive", is_flag=True, help="Allow requesting packages the base already provides.")
@click.option("--force-replacefiles", is_flag=True,
              help="Allow local packages (files, URLs) to replace other packages' files (kept for upgrades).")
@uninstall_option
@repo_options
@click.argument("packages", nargs=-1, required=True)
@click.pass_context
def install(ctx, sysroot_opt, osname, dry_run, assumeyes, cache_only, download_only, unchanged_exit_77,
            idempotent, allow_inactive, force_replacefiles, uninstall_, enablerepo, disablerepo, releasever,
            packages):
    """Overlay additional packages (names, local RPM files, or http(s) URLs of RPMs)."""
    with _split(packages) as args:
        _run(ctx, sysroot_opt, osname, "install", install=tuple(args.names),
             install_local_files=tuple(args.files), uninstall=uninstall_, idempotent=idempotent,
             dry_run=dry_run, cache_only=cache_only,
             download_only=download_only, force_replacefiles=force_replacefiles, allow_inactive=allow_inactive,
             unchanged_exit_77=unchanged_exit_77, **repo_fields(enablerepo, disablerepo, releasever))


@click.command("uninstall")
@_common
@click.option("--idempotent", is_flag=True, help="Do nothing if a package is not requested.")
@click.option("--all", "all_", is_flag=True, help="Remove all layered packages.")
@install_option
@repo_options
@click.argument("packages", nargs=-1)
@click.pass_context
def uninstall(ctx, sysroot_opt, osname, dry_run, assumeyes, cache_only, download_only, unchanged_exit_77,
              idempotent, all_, install_, enablerepo, disablerepo, releasever, packages):
    """Remove overlayed packages."""
    if not packages and not all_:
        raise click.UsageError("name at least one package, or use --all")
    with _split(install_) as args:
        _run(ctx, sysroot_opt, osname, "uninstall", uninstall=tuple(packages), uninstall_all=all_,
             install=tuple(args.names), install_local_files=tuple(args.files), idempotent=idempotent,
             dry_run=dry_run, cache_only=cache_only, download_only=download_only,
             unchanged_exit_77=unchanged_exit_77, **repo_fields(enablerepo, disablerepo, releasever))


@click.group("override")
def override():
    """Remove, replace or reset base packages."""


@override.command("remove")
@_common
@click.option("--idempotent", is_flag=True, help="Do nothing if the package is already removed.")
@click.argument("packages", nargs=-1, required=True)
@click.pass_context
def override_remove(ctx, sysroot_opt, osname, dry_run, assumeyes, cache_only, download_only, unchanged_exit_77,
                    idempotent, packages):
    """Remove packages from the base image."""
    _run(ctx, sysroot_opt, osname, "override remove", remove=tuple(packages), idempotent=idempotent,
         dry_run=dry_run, cache_only=cache_only, download_only=download_only, unchanged_exit_77=unchanged_exit_77)


@override.command("replace")
@_common
@click.option("--force-replacefiles", is_flag=True, help="Allow the new files to overwrite other base files.")
@click.argument("packages", nargs=-1, required=True)
@click.pass_context
def override_replace(ctx, sysroot_opt, osname, dry_run, assumeyes, cache_only, download_only, unchanged_exit_77,
                     force_replacefiles, packages):
    """Replace base packages with local RPM files (paths or http(s) URLs)."""
    with _split(packages, files_only=True) as args:
        _run(ctx, sysroot_opt, osname, "override replace", replace_local_files=tuple(args.files),
             dry_run=dry_run, cache_only=cache_only, download_only=download_only,
             force_replacefiles=force_replacefiles, unchanged_exit_77=unchanged_exit_77)


@override.command("reset")
@_common
@click.option("-a", "--all", "all_", is_flag=True, help="Reset all overrides.")
@click.argument("packages", nargs=-1)
@click.pass_context
def override_reset(ctx, sysroot_opt, osname, dry_run, assumeyes, cache_only, download_only, unchanged_exit_77,
                   all_, packages):
    """Undo overrides of base packages (by name or NEVRA)."""
    if not packages and not all_:
        raise click.UsageError("name at least one package, or use --all")
    _run(ctx, sysroot_opt, osname, "override reset", reset_overrides=tuple(packages), reset_all_overrides=all_,
         dry_run=dry_run, cache_only=cache_only, download_only=download_only, unchanged_exit_77=unchanged_exit_77)


@click.command("reset")
@_common
@click.option("-l", "--overlays", is_flag=True, help="Only remove the layered packages.")
@click.option("-o", "--overrides", is_flag=True, help="Only remove the overrides.")
@click.option("-i", "--initramfs", "initramfs_", is_flag=True, help="Only stop regenerating the initramfs.")
@install_option
@uninstall_option
@click.pass_context
def reset(ctx, sysroot_opt, osname, dry_run, assumeyes, cache_only, download_only, unchanged_exit_77, overlays,
          overrides, initramfs_, install_, uninstall_):
    """Remove all local changes: layered packages, overrides and initramfs regeneration (or only some);
    ``--install PKG`` layers PKG again on the result, in the same transaction."""
    if overlays or overrides or initramfs_:
        change = dict(uninstall_all=overlays, reset_all_overrides=overrides,
                      initramfs=False if initramfs_ else None, idempotent=True)
    else:
        change = dict(reset_all=True)
    with _split(install_) as args:
        _run(ctx, sysroot_opt, osname, "reset", **change, install=tuple(args.names),
             install_local_files=tuple(args.files), uninstall=uninstall_, dry_run=dry_run,
             cache_only=cache_only, download_only=download_only, unchanged_exit_77=unchanged_exit_77)


@click.command("initramfs")
@_common
@click.option("--enable", is_flag=True, help="Regenerate the initramfs on the host.")
@click.option("--disable", is_flag=True, help="Use the base image's initramfs again.")
@click.option("--arg", "args", multiple=True, metavar="ARG", help="An argument for the generator (dracut).")
@click.pass_context
def initramfs(ctx, sysroot_opt, osname, dry_run, assumeyes, cache_only, download_only, unchanged_exit_77,
              enable, disable, args):
    """Enable or disable client-side initramfs regeneration (no option: show the state)."""
    if enable and disable:
        raise click.UsageError("--enable and --disable exclude each other")
    if args and not enable:
        raise click.UsageError("--arg needs --enable")
    if not enable and not disable:
        from hybridos.sysroot.sysroot import Sysroot

        sysroot = Sysroot.load(sysroot_path(ctx, sysroot_opt))
        merge = sysroot.merge_deployment(osname or sysroot.default_stateroot())
        if merge is None or merge.origin is None:
            raise click.ClickException("no deployment to show")
        o = merge.origin
        click.echo(f"Initramfs regeneration: {'enabled' if o.regenerate_initramfs else 'disabled'}")
        if o.initramfs_args:
            click.echo("Initramfs args: " + " ".join(o.initramfs_args))
        return
    _run(ctx, sysroot_opt, osname, "initramfs", initramfs=bool(enable), initramfs_args=tuple(args), dry_run=dry_run,
         cache_only=cache_only, download_only=download_only, unchanged_exit_77=unchanged_exit_77)


@click.command("refresh-md")
@sysroot_option
@os_option
@click.option("-f", "--force", is_flag=True, help="Download the metadata even if it is not expired.")
@click.pass_context
def refresh_md(ctx, sysroot_opt, osname, force):
    """Download the repositories' metadata into the cache."""
    from hybridos.operations.verbs import RefreshMd

    run_operation(ctx, sysroot_opt, RefreshMd(stateroot=osname, force=force))


@click.command("initramfs-etc")
@sysroot_option
@os_option
@change_options
@click.option("--force-sync", is_flag=True, help="Deploy a new tree with the latest tracked /etc files.")
@click.option("--track", multiple=True, metavar="FILE", help="Track a file (or directory) of /etc.")
@click.option("--untrack", multiple=True, metavar="FILE", help="Stop tracking a file of /etc.")
@click.option("--untrack-all", is_flag=True, help="Stop tracking every file.")
@click.option("--unchanged-exit-77", "unchanged_exit_77", is_flag=True,
              help="Exit 77 when no new deployment was made.")
@click.pass_context
def initramfs_etc(ctx, sysroot_opt, osname, force_sync, track, untrack, untrack_all, unchanged_exit_77):
    """Carry files of /etc into the initramfs (no option: list the tracked files)."""
    if not (track or untrack or untrack_all or force_sync):
        if ctx.meta.get("hybridos.reboot"):
            raise click.UsageError("Cannot use --reboot without --track, --untrack, --untrack-all, or --force-sync")
        from hybridos.sysroot.sysroot import Sysroot

        sysroot = Sysroot.load(sysroot_path(ctx, sysroot_opt))
        pending = sysroot.default        # rpm-ostree lists the first deployment's
        files = pending.origin.initramfs_etc if pending is not None and pending.origin is not None else ()
        if not files:
            click.echo("No tracked files.")
        else:
            click.echo("Tracked files:")
            for f in files:
                click.echo(f"  {f}")
        return
    _run(ctx, sysroot_opt, osname, "initramfs-etc", initramfs_etc_track=track, initramfs_etc_untrack=untrack,
         initramfs_etc_untrack_all=untrack_all, force_sync=force_sync, unchanged_exit_77=unchanged_exit_77)


@click.command("search")
@sysroot_option
@os_option
@click.option("-C", "--cache-only", is_flag=True, help="Do not download metadata; search what was fetched before.")
@repo_options
@click.argument("terms", nargs=-1, required=True)
@click.pass_context
def search(ctx, sysroot_opt, osname, cache_only, enablerepo, disablerepo, releasever, terms):
    """Search the enabled repositories' packages by name and summary (globs allowed)."""
    from hybridos.operations.verbs import Search

    run_operation(ctx, sysroot_opt, Search(terms=terms, stateroot=osname, cache_only=cache_only,
                                           **repo_fields(enablerepo, disablerepo, releasever)))
