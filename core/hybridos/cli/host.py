"""Host commands with rpm-ostree's names: status, upgrade, rollback, deploy, rebase, kargs, cleanup, cancel.

Imports stay lazy so that ``status`` is fast: only the sysroot loader and the store's commit reader.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import click

from hybridos.cli._pkgopts import install_option, repo_fields, repo_options, uninstall_option
from hybridos.cli._sysroot_cli import (
    change_options,
    lock_finalization_option,
    os_option,
    reboot_option,
    run_operation,
    sysroot_option,
    sysroot_path,
)

unchanged_option = click.option("--unchanged-exit-77", "unchanged_exit_77", is_flag=True,
                                help="Exit 77 when there is nothing to do.")


@click.command("status")
@sysroot_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("-v", "--verbose", is_flag=True, help="Show more details.")
@click.option("-b", "--booted", is_flag=True, help="Only the booted deployment.")
@click.option("-J", "--jsonpath", default=None, metavar="EXPRESSION",
              help="Print what this JSONPath expression selects from the JSON status (an array).")
@click.option("--pending-exit-77", "pending_exit_77", is_flag=True,
              help="Exit 77 when the default deployment is not the booted one (a reboot is pending).")
@click.pass_context
def status(ctx, sysroot_opt, as_json, verbose, booted, jsonpath, pending_exit_77):
    """Show the deployments, in boot order (the first is the default)."""
    from hybridos.cli._client import status_through_daemon
    from hybridos.errors import HybridosError
    from hybridos.sysroot.status import status_text

    if as_json and jsonpath is not None:
        raise click.UsageError("Cannot specify both --json and --jsonpath")
    path = sysroot_path(ctx, sysroot_opt)
    data = status_through_daemon(path, booted_only=booted)
    if data is None:
        from hybridos.sysroot.status import status_json
        from hybridos.sysroot.sysroot import Sysroot

        data = status_json(Sysroot.load(path), booted_only=booted)
    from hybridos.operations.autoupdate import with_automatic_updates

    lines = with_automatic_updates(path, data, status_text(data, verbose=verbose), verbose=verbose)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    elif jsonpath is not None:
        from hybridos.util.jsonpath import query

        try:
            result = query(jsonpath, data)
        except HybridosError as exc:
            raise HybridosError(f"While compiling jsonpath: {exc.message}") from None
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo("\n".join(lines))
    deps = data["deployments"]
    if pending_exit_77 and len(deps) > 1 and not deps[0]["booted"]:
        import sys

        sys.exit(77)


@click.command("upgrade")
@sysroot_option
@os_option
@change_options
@click.option("--check", is_flag=True, help="Only check whether an upgrade is available (commit metadata only); "
              "exit 77 when there is none.")
@click.option("--preview", is_flag=True, help="Download and show the package differences without deploying; exit 77 "
              "when there is no update.")
@click.option("-C", "--cache-only", is_flag=True, help="Do not download; use what was fetched before.")
@click.option("--download-only", is_flag=True, help="Download the new commit but do not deploy it.")
@click.option("--allow-downgrade", is_flag=True, help="Permit deploying a commit older than the current one.")
@click.option("--trigger-automatic-update-policy", "trigger_auto", is_flag=True, hidden=True,
              help="Do what AutomaticUpdatePolicy says (hybridos-automatic.service).")
@click.option("-q", "--quiet", is_flag=True, help="Avoid printing most informational messages.")
@unchanged_option
@install_option
@uninstall_option
@repo_options
@click.pass_context
def upgrade(ctx, sysroot_opt, osname, check, preview, cache_only, download_only, allow_downgrade,
            trigger_auto, quiet, unchanged_exit_77, install_, uninstall_, enablerepo, disablerepo, releasever):
    """Pull the newest commit of the origin's ref and deploy it as the new default."""
    from hybridos.operations.verbs import Upgrade

    if trigger_auto:
        from hybridos.cli.staging_cmd import trigger_automatic_update

        trigger_automatic_update(ctx, sysroot_opt, osname, quiet=quiet)
        return
    if ctx.meta.get("hybridos.reboot") and (check or preview):    # rpm-ostree's refusals
        raise click.UsageError(f"Cannot specify both --reboot and {'--preview' if preview else '--check'}")
    from hybridos.cli.staging_cmd import note_automatic_updates

    note_automatic_updates(sysroot_path(ctx, sysroot_opt))
    with _packages(install_) as pkgs:
        run_operation(ctx, sysroot_opt, Upgrade(stateroot=osname, check=check, preview=preview,
                                                cache_only=cache_only, download_only=download_only,
                                                allow_downgrade=allow_downgrade, install=tuple(pkgs.names),
                                                install_local_files=tuple(pkgs.files), uninstall=uninstall_,
                                                **repo_fields(enablerepo, disablerepo, releasever)),
                      unchanged_exit_77=unchanged_exit_77 or check or preview)


def _packages(specs):
    """``--install`` arguments: names, local files and downloaded URLs (removed after the transaction)."""
    from hybridos.operations.pkgargs import resolve_package_args

    return resolve_package_args(specs)


@click.command("rollback")
@sysroot_option
@reboot_option
@click.pass_context
def rollback(ctx, sysroot_opt):
    """Make the rollback deployment the default again."""
    from hybridos.operations.verbs import Rollback

    run_operation(ctx, sysroot_opt, Rollback())


@click.command("deploy")
@sysroot_option
@os_option
@change_options
@unchanged_option
@click.option("--skip-branch-check", is_flag=True,
              help="Deploy a checksum even when it is not in the history of the origin's branch.")
@install_option
@uninstall_option
@repo_options
@click.argument("revision")
@click.pass_context
def deploy(ctx, sysroot_opt, osname, unchanged_exit_77, skip_branch_check, install_, uninstall_, enablerepo,
           disablerepo, releasever, revision):
    """Deploy REVISION of the origin's ref (pins the origin to it): a VERSION or CHECKSUM, or explicitly
    ``version=VERSION`` or ``revision=CHECKSUM``."""
    from hybridos.operations.verbs import Deploy

    with _packages(install_) as pkgs:
        run_operation(ctx, sysroot_opt, Deploy(revision=revision, stateroot=osname,
                                               skip_branch_check=skip_branch_check, install=tuple(pkgs.names),
                                               install_local_files=tuple(pkgs.files), uninstall=uninstall_,
                                               **repo_fields(enablerepo, disablerepo, releasever)),
                      unchanged_exit_77=unchanged_exit_77)


@click.command("rebase")
@sysroot_option
@os_option
@change_options
@click.option("-C", "--cache-only", is_flag=True, help="Do not download; use what was fetched before.")
@unchanged_option
@install_option
@uninstall_option
@repo_options
@click.argument("target")
@click.pass_context
def rebase(ctx, sysroot_opt, osname, cache_only, unchanged_exit_77, install_, uninstall_, enablerepo, disablerepo,
           releasever, target):
    """Switch to another [REMOTE:]REF (REF alone keeps the remote; REMOTE: keeps the ref)."""
    from hybridos.operations.verbs import Rebase

    with _packages(install_) as pkgs:
        run_operation(ctx, sysroot_opt, Rebase(target=target, stateroot=osname, cache_only=cache_only,
                                               install=tuple(pkgs.names), install_local_files=tuple(pkgs.files),
                                               uninstall=uninstall_,
                                               **repo_fields(enablerepo, disablerepo, releasever)),
                      unchanged_exit_77=unchanged_exit_77)


@click.command("kargs")
@sysroot_option
@os_option
@click.option("--reboot", is_flag=True, expose_value=False, callback=lambda c, p, v: c.meta.update(
    {"hybridos.reboot": True}) if v else None, help="Reboot after the change (only on the running system, /).")
@lock_finalization_option
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
    from hybridos.operations.verbs import KernelArgs

    op = KernelArgs(stateroot=osname, append=append, append_if_missing=append_if_missing, delete=delete,
                    delete_if_present=delete_if_present, replace=replace)
    if not any((append, append_if_missing, delete, delete_if_present, replace)):
        from hybridos.sysroot.sysroot import Sysroot

        sysroot = Sysroot.load(sysroot_path(ctx, sysroot_opt))
        merge = sysroot.merge_deployment(osname or sysroot.default_stateroot())
        if merge is None:
            raise click.ClickException("no deployment to show kernel arguments of")
        click.echo(merge.kargs)
        return
    op.validate()  # bad input fails before the lock is taken, so it changes nothing
    run_operation(ctx, sysroot_opt, op, unchanged_exit_77=unchanged_exit_77)


@click.command("cleanup")
@sysroot_option
@click.option("-p", "--pending", is_flag=True, help="Remove the pending deployment.")
@click.option("-r", "--rollback", "rollback_", is_flag=True, help="Remove the rollback deployment.")
@click.option("-b", "--base", is_flag=True, help="Remove unreferenced files and prune the repository.")
@click.option("-m", "--repomd", is_flag=True, help="Delete cached rpm-md repository metadata.")
@click.pass_context
def cleanup(ctx, sysroot_opt, pending, rollback_, base, repomd):
    """Clear deployments and caches."""
    from hybridos.operations.verbs import Cleanup

    if not any((pending, rollback_, base, repomd)):
        raise click.UsageError("choose at least one of -p, -r, -b, -m")
    run_operation(ctx, sysroot_opt, Cleanup(pending=pending, rollback=rollback_, base=base, repomd=repomd))


async def _cancel_daemon_transaction(client):
    """Cancel hybridosd's active transaction; its title, or None when it has none."""
    from dbus_fast import Message

    from hybridos.daemon.peer import connect_peer

    address = await client.get("/org/projectatomic/rpmostree1/Sysroot", "org.projectatomic.rpmostree1.Sysroot",
                               "ActiveTransactionPath")
    if not address:
        return None
    peer = await connect_peer(address)
    try:
        reply = await peer.call(Message(path="/", interface="org.freedesktop.DBus.Properties", member="Get",
                                        signature="ss", body=["org.projectatomic.rpmostree1.Transaction", "Title"]))
        await peer.call(Message(path="/", interface="org.projectatomic.rpmostree1.Transaction", member="Cancel"))
    finally:
        peer.disconnect()
    return reply.body[0].value


@click.command("cancel")
@sysroot_option
@click.pass_context
def cancel(ctx, sysroot_opt):
    """Cancel the transaction that holds the sysroot lock (it stops at its next step, before the swap)."""
    from hybridos.cli._sysroot_cli import through_daemon
    from hybridos.sysroot.lock import describe_pid, lock_holder

    path = Path(sysroot_path(ctx, sysroot_opt))
    handled, title = through_daemon(path, _cancel_daemon_transaction)
    if handled and title is not None:  # hybridosd's transaction: Cancel() it (the daemon itself keeps running)
        click.echo(f"Cancel requested for the daemon's transaction: {title}")
        return
    pid = lock_holder(path)
    if pid is None:
        click.echo("No active transaction.")
        return
    if pid <= 0:
        raise click.ClickException(f"the sysroot is locked by {describe_pid(pid)}, which cannot be cancelled")
    if not is_hybridos_process(pid):
        raise click.ClickException(f"the sysroot is locked by {describe_pid(pid)}, which is not a hybridos "
                                   "transaction; not signalling it")
    os.kill(pid, signal.SIGTERM)
    click.echo(f"Cancel requested for {describe_pid(pid)}")


def is_hybridos_process(pid: int) -> bool:
    """Whether ``pid`` runs hybridos (``hybridos ...``, ``python -m hybridos ...`` or its daemon): ``cancel``
    signals nothing else, whatever holds the lock (ostree admin, another tool)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    words = [os.path.basename(a.decode(errors="replace")) for a in argv[:4] if a]
    return any(w.startswith("hybridos") for w in words)
