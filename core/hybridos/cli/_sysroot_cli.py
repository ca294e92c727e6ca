"""Shared pieces of the sysroot commands (host verbs, ``admin``): options, event output, exit rules."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hybridos.cli.main import global_options

sysroot_option = click.option(
    "--sysroot", "sysroot_opt", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Root of the system to operate on (default: the global --sysroot, HYBRIDOS_SYSROOT or /).")
os_option = click.option("--os", "osname", default=None, metavar="NAME",
                         help="Operate on this stateroot (default: the booted one, else the default deployment's).")


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
    from hybridos.sysroot.transaction import Transaction

    line = TaskLine()
    try:
        with Transaction(sysroot_path(ctx, sysroot_opt), op.title, on_event=line.on_event,
                         make_meter=lambda label: LineMeter(line, label)) as tx:
            outcome = op.run(tx)
    finally:
        line.clear()
    report_outcome(outcome.lines, outcome.unchanged, unchanged_exit_77)


def report_outcome(lines, unchanged: bool, unchanged_exit_77: bool) -> None:
    for text in lines:
        click.echo(text)
    if unchanged:
        sys.exit(77 if unchanged_exit_77 else 0)
