"""Host commands with rpm-ostree's names: status, upgrade, rollback, deploy, rebase, kargs, cleanup, cancel.

Imports stay lazy so that ``status`` is fast: only the sysroot loader and the store's commit reader.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import click

from hybridos.cli._sysroot_cli import (
    event_printer,
    finish_unchanged,
    os_option,
    pull_progress,
    sysroot_option,
    sysroot_path,
)
from hybridos.errors import HybridosError, Unchanged

unchanged_option = click.option("--unchanged-exit-77", "unchanged_exit_77", is_flag=True,
                                help="Exit 77 when there is nothing to do.")


def _reboot_hint() -> None:
    click.echo("Run \"systemctl reboot\" to start a reboot")


def _print_change(result) -> None:
    from hybridos.sysroot.pkgdiff import diff_packages, packages_of_tree

    new = result.sysroot.default
    old = result.old
    head = f"{old.stateroot}:{new.origin.refspec if new and new.origin else '?'}"
    ov = result.old_version or old.checksum[:12]
    nv = result.new_version or result.new_commit[:12]
    click.echo(f"Deployed {head}: {ov} -> {nv} (commit {old.checksum[:12]} -> {result.new_commit[:12]})")
    try:
        diff = diff_packages(packages_of_tree(result.sysroot.path / old.relpath),
                             packages_of_tree(result.sysroot.path / new.relpath))
    except (HybridosError, OSError) as exc:  # a tree without a readable rpmdb still deploys
        click.echo(f"(no package diff: {exc})")
        return
    for line in diff.lines():
        click.echo(line)


@click.command("status")
@sysroot_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("-v", "--verbose", is_flag=True, help="Show more details.")
@click.option("-b", "--booted", is_flag=True, help="Only the booted deployment.")
@click.pass_context
def status(ctx, sysroot_opt, as_json, verbose, booted):
    """Show the deployments, in boot order (the first is the default)."""
    from hybridos.sysroot.status import status_json, status_text
    from hybridos.sysroot.sysroot import Sysroot

    data = status_json(Sysroot.load(sysroot_path(ctx, sysroot_opt)), booted_only=booted)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo("\n".join(status_text(data, verbose=verbose)))


@click.command("upgrade")
@sysroot_option
@os_option
@click.option("--check", is_flag=True, help="Only check whether an upgrade is available (commit metadata only).")
@click.option("--preview", is_flag=True, help="Download and show the package differences without deploying.")
@click.option("-C", "--cache-only", is_flag=True, help="Do not download; use what was fetched before.")
@click.option("--download-only", is_flag=True, help="Download the new commit but do not deploy it.")
@click.option("--allow-downgrade", is_flag=True, help="Permit deploying a commit older than the current one.")
@unchanged_option
@click.pass_context
def upgrade(ctx, sysroot_opt, osname, check, preview, cache_only, download_only, allow_downgrade,
            unchanged_exit_77):
    """Pull the newest commit of the origin's ref and deploy it as the new default."""
    from hybridos.sysroot.sysroot import Sysroot
    from hybridos.sysroot.transaction import Transaction
    from hybridos.sysroot.upgrade import upgrade as do_upgrade

    path = sysroot_path(ctx, sysroot_opt)
    try:
        with Transaction(path, "upgrade", on_event=event_printer()) as tx:
            sysroot = Sysroot.load(path)
            with pull_progress() as progress:
                result = do_upgrade(sysroot, tx, stateroot=osname, check=check, cache_only=cache_only,
                                    download_only=download_only or preview, allow_downgrade=allow_downgrade,
                                    progress=progress)
    except Unchanged as exc:
        finish_unchanged(exc, unchanged_exit_77)
        return
    if check:
        click.echo(f"AvailableUpdate:\n  Version: {result.new_version or '(none)'}\n  Commit: {result.new_commit}")
        return
    if preview:
        from hybridos.sysroot.pkgdiff import diff_packages, packages_of_commit, packages_of_tree

        click.echo(f"Upgrade available: {result.old_version or '?'} -> {result.new_version or '?'} "
                   f"(commit {result.new_commit})")
        diff = diff_packages(packages_of_tree(path / result.old.relpath),
                             packages_of_commit(result.sysroot.repo, result.new_commit))
        for line in diff.lines():
            click.echo(line)
        return
    if download_only:
        click.echo(f"Downloaded {result.new_commit} (version {result.new_version or '?'}); not deployed")
        return
    _print_change(result)
    _reboot_hint()


@click.command("rollback")
@sysroot_option
@click.pass_context
def rollback(ctx, sysroot_opt):
    """Make the rollback deployment the default again."""
    from hybridos.sysroot.sysroot import Sysroot
    from hybridos.sysroot.transaction import Transaction
    from hybridos.sysroot.upgrade import rollback as do_rollback

    path = sysroot_path(ctx, sysroot_opt)
    with Transaction(path, "rollback", on_event=event_printer()) as tx:
        new = do_rollback(Sysroot.load(path), tx)
    d = new.default
    click.echo(f"Moving '{d.checksum}.{d.serial}' to be first deployment")
    _reboot_hint()


@click.command("deploy")
@sysroot_option
@os_option
@unchanged_option
@click.argument("revision")
@click.pass_context
def deploy(ctx, sysroot_opt, osname, unchanged_exit_77, revision):
    """Deploy a specific VERSION or CHECKSUM of the origin's ref (pins the origin to it)."""
    from hybridos.sysroot.sysroot import Sysroot
    from hybridos.sysroot.transaction import Transaction
    from hybridos.sysroot.upgrade import deploy_revision

    path = sysroot_path(ctx, sysroot_opt)
    try:
        with Transaction(path, "deploy", on_event=event_printer()) as tx, pull_progress() as progress:
            result = deploy_revision(Sysroot.load(path), tx, revision, stateroot=osname, progress=progress)
    except Unchanged as exc:
        finish_unchanged(exc, unchanged_exit_77)
        return
    _print_change(result)
    _reboot_hint()


@click.command("rebase")
@sysroot_option
@os_option
@click.option("-C", "--cache-only", is_flag=True, help="Do not download; use what was fetched before.")
@unchanged_option
@click.argument("target")
@click.pass_context
def rebase(ctx, sysroot_opt, osname, cache_only, unchanged_exit_77, target):
    """Switch to another [REMOTE:]REF (REF alone keeps the remote; REMOTE: keeps the ref)."""
    from hybridos.sysroot.sysroot import Sysroot
    from hybridos.sysroot.transaction import Transaction
    from hybridos.sysroot.upgrade import rebase as do_rebase

    path = sysroot_path(ctx, sysroot_opt)
    try:
        with Transaction(path, "rebase", on_event=event_printer()) as tx, pull_progress() as progress:
            result = do_rebase(Sysroot.load(path), tx, target, stateroot=osname, cache_only=cache_only,
                               progress=progress)
    except Unchanged as exc:
        finish_unchanged(exc, unchanged_exit_77)
        return
    _print_change(result)
    _reboot_hint()


@click.command("kargs")
@sysroot_option
@os_option
@click.option("--append", multiple=True, metavar="KEY=VALUE", help="Append a kernel argument.")
@click.option("--append-if-missing", multiple=True, metavar="KEY=VALUE",
              help="Like --append, but nothing happens if the key is already present.")
@click.option("--delete", multiple=True, metavar="KEY[=VALUE]", help="Delete a kernel argument (or one value).")
@click.option("--delete-if-present", multiple=True, metavar="KEY[=VALUE]",
              help="Like --delete, but nothing happens if the key is missing.")
@click.option("--replace", multiple=True, metavar="KEY=VALUE[=NEWVALUE]", help="Replace a kernel argument.")
@unchanged_option
@click.pass_context
def kargs(ctx, sysroot_opt, osname, append, append_if_missing, delete, delete_if_present, replace,
          unchanged_exit_77):
    """Show or change the kernel arguments (a new deployment carries the change)."""
    from hybridos.sysroot import kargs as kargs_mod
    from hybridos.sysroot.sysroot import Sysroot
    from hybridos.sysroot.transaction import Transaction
    from hybridos.sysroot.upgrade import change_kargs

    path = sysroot_path(ctx, sysroot_opt)
    editing = any((append, append_if_missing, delete, delete_if_present, replace))
    if not editing:
        sysroot = Sysroot.load(path)
        stateroot = osname or sysroot.default_stateroot()
        merge = sysroot.merge_deployment(stateroot)
        if merge is None:
            raise click.ClickException("no deployment to show kernel arguments of")
        click.echo(merge.kargs)
        return
    # validate every argument before taking the lock, so bad input changes nothing
    for group in (append, append_if_missing, delete, delete_if_present, replace):
        for a in group:
            kargs_mod.validate_arg(a)
    try:
        with Transaction(path, "kargs", on_event=event_printer()) as tx:
            sysroot = Sysroot.load(path)
            stateroot = osname or sysroot.default_stateroot()
            merge = sysroot.merge_deployment(stateroot)
            if merge is None:
                raise click.ClickException(f"no deployment of stateroot {stateroot!r}")
            new = kargs_mod.edit(kargs_mod.KernelArgs.parse(merge.kargs), append=append,
                                 append_if_missing=append_if_missing, delete=delete,
                                 delete_if_present=delete_if_present, replace=replace)
            change_kargs(sysroot, tx, str(new), stateroot=stateroot)
    except Unchanged as exc:
        finish_unchanged(exc, unchanged_exit_77)
        return
    click.echo("Kernel arguments updated.")
    _reboot_hint()


@click.command("cleanup")
@sysroot_option
@click.option("-p", "--pending", is_flag=True, help="Remove the pending deployment.")
@click.option("-r", "--rollback", "rollback_", is_flag=True, help="Remove the rollback deployment.")
@click.option("-b", "--base", is_flag=True, help="Remove unreferenced files and prune the repository.")
@click.option("-m", "--repomd", is_flag=True, help="Delete cached rpm-md repository metadata.")
@click.pass_context
def cleanup(ctx, sysroot_opt, pending, rollback_, base, repomd):
    """Clear deployments and caches."""
    from hybridos.sysroot.sysroot import Sysroot
    from hybridos.sysroot.transaction import Transaction
    from hybridos.sysroot.upgrade import cleanup as do_cleanup

    if not any((pending, rollback_, base, repomd)):
        raise click.UsageError("choose at least one of -p, -r, -b, -m")
    path = sysroot_path(ctx, sysroot_opt)
    with Transaction(path, "cleanup", on_event=event_printer()) as tx:
        _, notes = do_cleanup(Sysroot.load(path), tx, pending=pending, rollback_=rollback_, base=base,
                              repomd=repomd)
    for note in notes:
        click.echo(note)


@click.command("cancel")
@sysroot_option
@click.pass_context
def cancel(ctx, sysroot_opt):
    """Cancel the transaction that holds the sysroot lock (it stops at its next step, before the swap)."""
    from hybridos.sysroot.lock import describe_pid, lock_holder

    path = Path(sysroot_path(ctx, sysroot_opt))
    pid = lock_holder(path)
    if pid is None:
        click.echo("No active transaction.")
        return
    if pid <= 0:
        raise click.ClickException(f"the sysroot is locked by {describe_pid(pid)}, which cannot be cancelled")
    os.kill(pid, signal.SIGTERM)
    click.echo(f"Cancel requested for {describe_pid(pid)}")
