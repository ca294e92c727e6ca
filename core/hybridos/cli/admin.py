"""``hybridos admin``: the low-level sysroot verbs of ``ostree admin`` (init-fs, os-init, deploy, undeploy,
pin, status)."""

from __future__ import annotations

from pathlib import Path

import click

from hybridos.cli._sysroot_cli import event_printer, sysroot_option, sysroot_path
from hybridos.errors import HybridosError, NotFoundError, UsageError


@click.group("admin")
def admin():
    """Sysroot administration, like ``ostree admin``."""


@admin.command("init-fs")
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
def init_fs(path):
    """Create an empty sysroot at PATH (top directories and a bare ostree/repo)."""
    from hybridos.sysroot.initfs import init_fs as do_init

    do_init(path)


@admin.command("os-init")
@sysroot_option
@click.argument("stateroot")
@click.pass_context
def os_init(ctx, sysroot_opt, stateroot):
    """Create the stateroot STATEROOT (ostree/deploy/STATEROOT/var)."""
    from hybridos.sysroot.initfs import os_init as do_os_init

    do_os_init(sysroot_path(ctx, sysroot_opt), stateroot)
    click.echo(f"ostree/deploy/{stateroot} initialized as OSTree root")


@admin.command("deploy")
@sysroot_option
@click.option("--os", "osname", default=None, metavar="NAME", help="Stateroot to deploy into.")
@click.option("--karg", "karg", multiple=True, metavar="K[=V]",
              help="Kernel arguments of the new deployment (replace the inherited ones).")
@click.option("--karg-append", multiple=True, metavar="K[=V]", help="Append to the inherited kernel arguments.")
@click.option("--retain", is_flag=True, help="Keep every existing deployment.")
@click.option("--no-merge", is_flag=True, help="Do not carry over /etc changes of the current deployment.")
@click.option("--stage", is_flag=True, help="Complete the deployment at shutdown (finalize-staged); needs a "
              "booted system.")
@click.option("--lock-finalization", is_flag=True, help="With --stage: shutdown does not finalize it.")
@click.argument("revision")
@click.pass_context
def deploy(ctx, sysroot_opt, osname, karg, karg_append, retain, no_merge, stage, lock_finalization, revision):
    """Deploy REFSPEC or CHECKSUM (already in the sysroot's repository) as the new default."""
    from hybridos.sysroot.deploy import deploy_commit
    from hybridos.sysroot.kargs import KernelArgs, validate_arg
    from hybridos.sysroot.origin import Origin, Refspec
    from hybridos.sysroot.sysroot import Sysroot
    from hybridos.sysroot.transaction import Transaction

    for a in (*karg, *karg_append):
        validate_arg(a)
    if stage and retain:
        raise UsageError("--stage cannot currently be combined with --retain arguments")
    if lock_finalization and not stage:
        raise UsageError("--lock-finalization needs --stage")
    path = sysroot_path(ctx, sysroot_opt)
    with Transaction(path, "deploy", on_event=event_printer()) as tx:
        sysroot = Sysroot.load(path)
        stateroot = osname or sysroot.default_stateroot()
        if stateroot is None:
            raise UsageError("which stateroot? pass --os NAME (the sysroot has several or none)")
        commit = sysroot.repo.resolve_rev(revision, allow_missing=True)
        if commit is None:
            raise NotFoundError(f"{revision!r} is neither a ref nor a commit in {sysroot.repo.path}",
                                hint="pull it first, e.g. `hybridos repo pull --repo SYSROOT/ostree/repo REMOTE REF`")
        Refspec.parse(revision)
        merge = None if no_merge else sysroot.merge_deployment(stateroot)
        if karg:
            kargs = KernelArgs()
            for a in karg:
                kargs = kargs.append(a)
        else:
            kargs = KernelArgs.parse(merge.kargs if merge else "")
        for a in karg_append:
            kargs = kargs.append(a)
        origin = Origin(revision)  # like ostree admin deploy: a fresh origin naming what was deployed
        new = deploy_commit(sysroot, commit, stateroot=stateroot, origin=origin, kargs=kargs, tx=tx,
                            retain=retain, merge=merge if merge is not None else False, stage=stage,
                            lock_finalization=lock_finalization)
    d = new.default
    click.echo(f"{'Staged' if stage else 'Deployed'} {d.stateroot} {d.checksum}.{d.serial}")


@admin.command("finalize-staged")
@sysroot_option
@click.pass_context
def finalize_staged_cmd(ctx, sysroot_opt):
    """Finalize the staged deployment (what the shutdown unit runs): merge /etc, write the boot entries."""
    from hybridos.cli.staging_cmd import run_finalize_staged

    run_finalize_staged(sysroot_path(ctx, sysroot_opt))


@admin.command("lock-finalization")
@sysroot_option
@click.option("--unlock", is_flag=True, help="Let shutdown finalize the staged deployment again.")
@click.pass_context
def lock_finalization_cmd(ctx, sysroot_opt, unlock):
    """Keep (or stop keeping) the staged deployment from being finalized at shutdown."""
    from hybridos.cli.staging_cmd import run_lock_finalization

    run_lock_finalization(sysroot_path(ctx, sysroot_opt), not unlock)


@admin.command("boot-complete")
@sysroot_option
@click.pass_context
def boot_complete_cmd(ctx, sysroot_opt):
    """At boot: fail (once) when finalizing the staged deployment failed on the previous shutdown."""
    from hybridos.sysroot.staging import boot_complete

    boot_complete(sysroot_path(ctx, sysroot_opt))


@admin.command("undeploy")
@sysroot_option
@click.argument("index", type=int)
@click.pass_context
def undeploy(ctx, sysroot_opt, index):
    """Remove the deployment at INDEX (0 is the default)."""
    from hybridos.sysroot.deploy import undeploy as do_undeploy
    from hybridos.sysroot.sysroot import Sysroot
    from hybridos.sysroot.transaction import Transaction

    path = sysroot_path(ctx, sysroot_opt)
    with Transaction(path, "undeploy", on_event=event_printer()) as tx:
        sysroot = Sysroot.load(path)
        dep = sysroot.by_index(index)
        do_undeploy(sysroot, index, tx)
    click.echo(f"Deleted deployment {dep.checksum}.{dep.serial}")


@admin.command("pin")
@sysroot_option
@click.option("-u", "--unpin", is_flag=True, help="Unpin instead.")
@click.argument("index", type=int)
@click.pass_context
def pin(ctx, sysroot_opt, unpin, index):
    """Pin the deployment at INDEX so that it is never removed automatically."""
    from hybridos.sysroot.deploy import set_pinned
    from hybridos.sysroot.sysroot import Sysroot
    from hybridos.sysroot.transaction import Transaction

    path = sysroot_path(ctx, sysroot_opt)
    with Transaction(path, "pin", on_event=event_printer()):
        dep = set_pinned(Sysroot.load(path), index, not unpin)
    click.echo(f"Deployment {dep.checksum}.{dep.serial} is now {'unpinned' if unpin else 'pinned'}")


@admin.command("status")
@sysroot_option
@click.pass_context
def status(ctx, sysroot_opt):
    """List deployments the way ``ostree admin status`` does."""
    from hybridos.sysroot.sysroot import Sysroot
    from hybridos.util.text import for_terminal

    sysroot = Sysroot.load(sysroot_path(ctx, sysroot_opt))
    if not sysroot.deployments:
        click.echo("No deployments.")
        return
    for d in sysroot.deployments:
        mark = "*" if d.booted else " "
        click.echo(f"{mark} {d.stateroot} {d.checksum}.{d.serial}")
        try:
            version = sysroot.repo.load_commit(d.checksum).version
        except HybridosError:
            version = None
        if version:
            click.echo(f"    Version: {for_terminal(version)}")
        if d.pinned:
            click.echo("    Pinned: yes")
        if d.origin is not None:
            click.echo(f"    origin refspec: {for_terminal(str(d.origin.refspec))}")
        else:
            click.echo(f"    origin: {for_terminal(str(d.origin_error))}")
