"""``usroverlay`` (rpm-ostree's, which runs ``ostree admin unlock``): a transient writable overlayfs on /usr of
the booted deployment; ``unlock`` is its hidden alias, as in rpm-ostree."""

from __future__ import annotations

import os

import click

from hybridos.cli._sysroot_cli import sysroot_option, sysroot_path


@click.command("usroverlay")
@sysroot_option
@click.option("--hotfix", is_flag=True, help="Retain changes across reboots (not supported by hybridos yet).")
@click.option("--transient", is_flag=True, help="Mount the overlayfs read-only by default.")
@click.pass_context
def usroverlay(ctx, sysroot_opt, hotfix, transient):
    """Apply a transient overlayfs to /usr: changes there are discarded on reboot."""
    from hybridos.errors import SysrootError, UsageError
    from hybridos.sysroot.sysroot import Sysroot
    from hybridos.sysroot.unlock import MESSAGES, unlock

    if hotfix and transient:
        raise UsageError("Cannot specify both --hotfix and --transient")
    if hotfix:
        raise UsageError("--hotfix is not supported: hybridos cannot yet deploy the non-default clone that "
                         "keeps a rollback target", hint="use `usroverlay` (changes last until the reboot)")
    if os.geteuid() != 0:
        raise SysrootError("This command requires root privileges")
    path = sysroot_path(ctx, sysroot_opt)
    sysroot = Sysroot.load(path)
    if sysroot.booted is None:
        raise SysrootError("Not currently booted into an OSTree system")
    mode = "transient" if transient else "development"
    unlock(path, sysroot.booted, mode)
    for line in MESSAGES[mode]:
        click.echo(line)
