"""Shared pieces of the sysroot commands (host verbs, ``admin``): options, event output, exit rules."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hybridos.cli.main import global_options

sysroot_option = click.option(
    "--sysroot", "sysroot_opt", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Root of the system to operate on (default: the global --sysroot, HYBRIDOS_SYSROOT or /).")
os_option = click.option("--os", "--stateroot", "osname", default=None, metavar="NAME",
                         help="Operate on this stateroot (default: the booted one, else the default deployment's).")


def _remember(key: str):
    def callback(ctx: click.Context, _param, value):
        if value:
            ctx.meta[key] = value
        return value
    return callback


#: -r/--reboot: after a change, reboot the running system (``systemctl reboot``), as rpm-ostree does
reboot_option = click.option("-r", "--reboot", is_flag=True, expose_value=False, callback=_remember("hybridos.reboot"),
                             help="Reboot after the change (only when operating on the running system, /).")
#: a deployment staged on the running system is then not finalized at shutdown (docs/staging.md)
lock_finalization_option = click.option(
    "--lock-finalization", is_flag=True, expose_value=False, callback=_remember("hybridos.lock-finalization"),
    help="Do not finalize the staged deployment at shutdown; apply it later with finalize-deployment.")
bypass_driver_option = click.option(
    "--bypass-driver", is_flag=True, expose_value=False,
    help="Accepted for compatibility: hybridos has no update drivers to bypass.")


def change_options(f):
    """-r/--reboot, --lock-finalization and --bypass-driver, for every verb that makes a new deployment."""
    for opt in (bypass_driver_option, lock_finalization_option, reboot_option):
        f = opt(f)
    return f


def finish(ctx: click.Context, sysroot: Path) -> None:
    """After a change: the --lock-finalization note (an offline sysroot stages nothing), and the --reboot."""
    if ctx.meta.get("hybridos.lock-finalization") and not _is_running_system(sysroot):
        click.echo("note: --lock-finalization has no effect: on an offline sysroot the new deployment is written "
                   "as the default at once (only the running system stages deployments)", err=True)
    if ctx.meta.get("hybridos.reboot"):
        request_reboot(sysroot)


def _is_running_system(sysroot: Path) -> bool:
    from hybridos.sysroot import runstate
    from hybridos.sysroot.mounts import is_booted_root

    return is_booted_root(sysroot) or runstate.stand_in_booted(sysroot)


def request_reboot(sysroot: Path) -> None:
    import os
    import shutil
    import subprocess

    from hybridos.errors import HybridosError

    if os.path.realpath(sysroot) != "/":
        click.echo(f"Not rebooting: {sysroot} is not the running system (--sysroot)")
        return
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        raise HybridosError("--reboot: systemctl is not available; reboot by hand")
    click.echo("Rebooting")
    proc = subprocess.run([systemctl, "reboot"])
    if proc.returncode != 0:
        raise HybridosError(f"--reboot: systemctl reboot failed with exit code {proc.returncode}")


def sysroot_path(ctx: click.Context, sysroot_opt: Path | None) -> Path:
    return sysroot_opt if sysroot_opt is not None else global_options(ctx).sysroot


def event_printer(quiet: bool = False):
    """A transaction's event callback: messages on stdout, the running task's phrase on a terminal's line."""
    from hybridos.cli._progress import TaskLine

    return TaskLine(quiet=quiet).on_event


def run_operation(ctx: click.Context, sysroot_opt: Path | None, op, *, unchanged_exit_77: bool = False) -> None:
    """Run one host transaction (``hybridos.operations.verbs``), show its progress and its outcome, and exit
    77 (with ``--unchanged-exit-77``) when there was nothing to do."""
    from hybridos.cli._progress import LineMeter, TaskLine

    line = TaskLine()
    path = sysroot_path(ctx, sysroot_opt)
    if ctx.meta.get("hybridos.lock-finalization") and hasattr(op, "lock_finalization"):
        import dataclasses

        op = dataclasses.replace(op, lock_finalization=True)
    handled, unchanged = through_daemon(
        path, lambda client: _client().run_operation(client, op, line, osname=getattr(op, "stateroot", None)))
    if handled:  # the daemon's messages (the outcome's lines too) are printed already
        lines = ()
    else:
        from hybridos.sysroot.transaction import Transaction

        try:
            with Transaction(path, op.title, on_event=line.on_event,
                             make_meter=lambda label: LineMeter(line, label)) as tx:
                outcome = op.run(tx)
        finally:
            line.clear()
        lines, unchanged = outcome.lines, outcome.unchanged
    report_outcome(lines, unchanged, unchanged_exit_77)
    deployed = not any(getattr(op, a, False) for a in ("check", "preview", "download_only", "dry_run"))
    if deployed:
        finish(ctx, sysroot_path(ctx, sysroot_opt))


def _client():
    from hybridos.cli import _client

    return _client


def through_daemon(path: Path, work) -> tuple[bool, object]:
    """``(True, await work(client))`` when hybridosd serves ``path``; ``(False, None)``: run in-process."""
    from hybridos.cli._client import system_bus_address

    if system_bus_address() is None:
        return False, None
    import asyncio

    async def go():
        client = await _client().connect(path)
        if client is None:
            return False, None
        try:
            return True, await work(client)
        finally:
            client.bus.disconnect()

    return asyncio.run(go())


def report_outcome(lines, unchanged: bool, unchanged_exit_77: bool) -> None:
    for text in lines:
        click.echo(text)
    if unchanged:
        sys.exit(77 if unchanged_exit_77 else 0)
