"""Staged deployments: ``finalize-staged`` (the shutdown unit's command), ``finalize-deployment``, and the
``admin`` helpers behind ``lock-finalization``."""

from __future__ import annotations

from pathlib import Path

import click

from hybridos.cli._sysroot_cli import event_printer, os_option, sysroot_option, sysroot_path

#: at shutdown the unit waits for a running transaction rather than giving up after the usual 3 s
FINALIZE_LOCK_TIMEOUT = 240.0


def run_finalize_staged(path: Path) -> None:
    from hybridos.sysroot.staging import finalize_staged
    from hybridos.sysroot.sysroot import Sysroot
    from hybridos.sysroot.transaction import Transaction

    with Transaction(path, "finalize-staged", on_event=event_printer(), lock_timeout=FINALIZE_LOCK_TIMEOUT) as tx:
        tx.stage = False
        for line in finalize_staged(Sysroot.load(path), tx):
            click.echo(line)


def run_lock_finalization(path: Path, locked: bool) -> None:
    from hybridos.sysroot.staging import lock_finalization
    from hybridos.sysroot.sysroot import Sysroot
    from hybridos.sysroot.transaction import Transaction

    with Transaction(path, "lock-finalization"):
        dep = lock_finalization(Sysroot.load(path), locked)
    click.echo(f"Deployment {dep.checksum}.{dep.serial} is now {'locked' if locked else 'unlocked'} for "
               "finalization")


@click.command("finalize-staged")
@sysroot_option
@click.pass_context
def finalize_staged(ctx, sysroot_opt):
    """Finalize the staged deployment: merge the booted /etc into it and make it the default (run at shutdown
    by hybridos-finalize-staged.service)."""
    run_finalize_staged(sysroot_path(ctx, sysroot_opt))


@click.command("finalize-deployment")
@sysroot_option
@os_option
@click.option("--allow-missing-checksum", is_flag=True, help="Do not require the expected checksum.")
@click.option("--allow-unlocked", is_flag=True, help="Reboot even when the staged deployment is not locked.")
@click.argument("checksum", required=False)
@click.pass_context
def finalize_deployment(ctx, sysroot_opt, osname, allow_missing_checksum, allow_unlocked, checksum):
    """Unlock the staged deployment (of CHECKSUM) staged with --lock-finalization and reboot into it."""
    from hybridos.cli._sysroot_cli import run_operation
    from hybridos.operations.verbs import FinalizeDeployment

    if checksum is None and not allow_missing_checksum:
        raise click.UsageError("CHECKSUM must be specified (or --allow-missing-checksum)")
    run_operation(ctx, sysroot_opt, FinalizeDeployment(checksum=checksum or "", allow_unlocked=allow_unlocked,
                                                       stateroot=osname))


def _running(path: Path) -> bool:
    from hybridos.sysroot import runstate
    from hybridos.sysroot.mounts import is_booted_root

    return is_booted_root(path) or runstate.stand_in_booted(path)


def note_automatic_updates(path: Path) -> None:
    """rpm-ostree's note on a manual upgrade while the timer stages updates by itself."""
    from hybridos.errors import HybridosError
    from hybridos.operations.daemonconf import load_settings

    if not _running(path):
        return
    try:
        policy = load_settings(path).automatic_update_policy
    except HybridosError:
        return
    if policy in ("stage", "apply"):
        click.echo(f"note: automatic updates ({policy}) are enabled", err=True)


def trigger_automatic_update(ctx, sysroot_opt, osname, *, quiet: bool = False) -> None:
    """``upgrade --trigger-automatic-update-policy``: run the configured policy, or say why not."""
    from hybridos.cli._sysroot_cli import run_operation
    from hybridos.operations import autoupdate
    from hybridos.operations.daemonconf import load_settings
    from hybridos.operations.verbs import AutomaticUpdate
    from hybridos.sysroot.lock import describe_pid, lock_holder

    path = sysroot_path(ctx, sysroot_opt)
    settings = load_settings(path)
    if settings.automatic_update_policy == "none":
        click.echo(autoupdate.NOT_ENABLED)
        return
    holder = lock_holder(path)
    if holder is not None:
        # the timer fired during a transaction: not an error, the next run catches up
        click.echo(f"Automatic update skipped: {describe_pid(holder)} is running a transaction")
        return
    run_operation(ctx, sysroot_opt, AutomaticUpdate(stateroot=osname))


__all__ = ["event_printer", "finalize_deployment", "finalize_staged", "run_finalize_staged"]
