"""``hybridos start-daemon``: run hybridosd in the foreground (what D-Bus activation and the unit run)."""

from __future__ import annotations

import click


@click.command("start-daemon", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def start_daemon(ctx, args):
    """Serve rpm-ostree's D-Bus API (org.projectatomic.rpmostree1) on the system bus; see hybridosd --help."""
    from hybridos.cli.main import global_options
    from hybridos.daemon.main import main

    args = list(args)
    if not any(a == "--sysroot" or a.startswith("--sysroot=") for a in args):
        args = ["--sysroot", str(global_options(ctx).sysroot), *args]
    main(args)
