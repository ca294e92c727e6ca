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
    """Print transaction messages to stdout; step names to stderr only on a terminal."""
    tty = sys.stderr.isatty()

    def on_event(event) -> None:
        if event.kind == "message" and not quiet:
            click.echo(event.message)
        elif event.kind == "start" and tty:
            click.echo(f"⠿ {event.step}", err=True)

    return on_event


def finish_unchanged(exc, unchanged_exit_77: bool) -> None:
    click.echo(exc.message)
    sys.exit(77 if unchanged_exit_77 else 0)


def pull_progress():
    """Object/byte counter for downloads: drawn on a terminal's stderr, silent otherwise."""
    from hybridos.util.progress import Progress

    return Progress("Receiving objects:")
