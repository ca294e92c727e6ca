"""Package options shared by several commands, with rpm-ostree's names: ``--install``/``--uninstall`` (upgrade,
deploy, rebase, and install/uninstall themselves) and ``--enablerepo``/``--disablerepo``/``--releasever``."""

from __future__ import annotations

import click

install_option = click.option(
    "--install", "install_", multiple=True, metavar="PKG",
    help="Overlay an additional package in the same transaction (a name, an RPM file or an http(s) URL).")
uninstall_option = click.option(
    "--uninstall", "uninstall_", multiple=True, metavar="PKG",
    help="Remove an overlayed package in the same transaction.")


def repo_options(f):
    """--enablerepo/--disablerepo/--releasever: the repositories (and $releasever) of this operation only."""
    for opt in reversed([
        click.option("--enablerepo", multiple=True, metavar="ID",
                     help="Enable the repository ID (or glob) for this operation (applied after --disablerepo)."),
        click.option("--disablerepo", multiple=True, metavar="ID",
                     help="Disable the repository ID (or glob, '*' for all) for this operation."),
        click.option("--releasever", default=None, metavar="VERSION",
                     help="The $releasever of the .repo files for this operation."),
    ]):
        f = opt(f)
    return f


def repo_fields(enablerepo, disablerepo, releasever) -> dict:
    """The request fields (``hybridos.operations.verbs``) of the repository options."""
    return dict(enablerepo=tuple(enablerepo), disablerepo=tuple(disablerepo), releasever=releasever or "")
