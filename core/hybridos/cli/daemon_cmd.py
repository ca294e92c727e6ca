"""``hybridos start-daemon``: run hybridosd in the foreground (what D-Bus activation and the unit run)."""

from __future__ import annotations

import click


@click.command("start-daemon", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def start_daemon(args):
    """Serve rpm-ostree's D-Bus API (org.projectatomic.rpmostree1) on the system bus; see hybridosd --help."""
    from hybridos.daemon.main import main

    main(list(args))
