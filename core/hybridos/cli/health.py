"""``hybridos health-check``: greenboot-compatible health checks and boot counting (docs/boot-assessment.md).

Without a subcommand it does one boot's whole assessment (fallback check, required/wanted checks, then green.d
and marking the boot good, or red.d and a reboot while the deployment is on trial). The subcommands are the
single steps the systemd units run.
"""

from __future__ import annotations

import json
import subprocess
import sys

import click

from hybridos.cli._sysroot_cli import sysroot_option, sysroot_path

#: exit status of a failed check: 3 when a reboot is wanted (the deployment is on trial), 4 when not
EXIT_REBOOT = 3
EXIT_UNHEALTHY = 4

cmdline_option = click.option("--cmdline", default=None, hidden=True,
                              help="A kernel command line naming the running deployment (offline sysroots).")


def _echo(line: str) -> None:
    click.echo(line)
    sys.stdout.flush()


@click.group("health-check", invoke_without_command=True)
@sysroot_option
@click.option("--no-reboot", is_flag=True, help="Do not reboot after a failed check; exit 3 when a reboot is "
              "wanted (the deployment is on trial), 4 when it is not.")
@cmdline_option
@click.pass_context
def health_check(ctx, sysroot_opt, no_reboot, cmdline):
    """Run the boot's health checks (greenboot's directories and config) and act on the result."""
    if ctx.invoked_subcommand is not None:
        return
    from hybridos.health.assess import run_all

    result = run_all(sysroot_path(ctx, sysroot_opt), echo=_echo, cmdline=cmdline, reboot=not no_reboot)
    if not result.report.ok:
        sys.exit(EXIT_REBOOT if result.rebooting or (no_reboot and result.note.startswith("rebooting"))
                 else EXIT_UNHEALTHY)


def _host(ctx, sysroot_opt, cmdline):
    from hybridos.health.assess import load_host

    return load_host(sysroot_path(ctx, sysroot_opt), cmdline)


@health_check.command("check")
@sysroot_option
@cmdline_option
@click.pass_context
def check(ctx, sysroot_opt, cmdline):
    """Run required.d and wanted.d (before boot-complete.target); exit 1 when a required check failed."""
    from hybridos.health.assess import run_checks
    from hybridos.health.config import read_greenboot_conf

    host = _host(ctx, sysroot_opt, cmdline)
    report = run_checks(host, read_greenboot_conf(host.root), echo=_echo)
    if not report.ok:
        _echo(f"Boot Status is RED - Health Check FAILURE! ({report.failed.describe()})")
        sys.exit(1)
    _echo("Boot Status is GREEN - Health Check SUCCESS")


def _phase_command(name: str, phase_value: str, doc: str):
    @health_check.command(name, help=doc)
    @sysroot_option
    @cmdline_option
    @click.pass_context
    def command(ctx, sysroot_opt, cmdline):
        from hybridos.health.config import read_greenboot_conf
        from hybridos.health.scripts import Phase, run_phase

        host = _host(ctx, sysroot_opt, cmdline)
        run_phase(host.root, Phase(phase_value), read_greenboot_conf(host.root), echo=_echo)

    return command


green = _phase_command("green", "green", "Run green.d (after a successful check); failures are only reported.")
red = _phase_command("red", "red", "Run red.d (after a failed check); failures are only reported.")


@health_check.command("bless")
@sysroot_option
@cmdline_option
@click.pass_context
def bless_cmd(ctx, sysroot_opt, cmdline):
    """Mark this boot good: the bootloader stops counting (after boot-complete.target)."""
    from hybridos.health.assess import bless

    state = bless(_host(ctx, sysroot_opt, cmdline))
    _echo("no boot counting" if state is None else f"boot counting: {state.status.value} ({state.detail})")


@health_check.command("fallback")
@sysroot_option
@cmdline_option
@click.pass_context
def fallback_cmd(ctx, sysroot_opt, cmdline):
    """Make a bootloader fallback permanent (before the checks): the running deployment becomes the default."""
    from hybridos.health.assess import check_fallback

    check_fallback(sysroot_path(ctx, sysroot_opt), echo=_echo, cmdline=cmdline)


@health_check.command("reboot")
@sysroot_option
@cmdline_option
@click.pass_context
def reboot_cmd(ctx, sysroot_opt, cmdline):
    """After red.d: reboot while the deployment is on trial, else say that manual intervention is needed."""
    from hybridos.health.assess import reboot_command, should_reboot
    from hybridos.health.config import read_greenboot_conf

    host = _host(ctx, sysroot_opt, cmdline)
    wanted, why = should_reboot(host, read_greenboot_conf(host.root))
    _echo(why)
    if not wanted:
        sys.exit(1)
    subprocess.run(reboot_command())


@health_check.command("status")
@sysroot_option
@cmdline_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status_cmd(ctx, sysroot_opt, cmdline, as_json):
    """Show the bootloader's boot counting state and each deployment's last health check."""
    from hybridos.health.record import read_records

    host = _host(ctx, sysroot_opt, cmdline)
    state = host.state()
    records = read_records(host.sysroot.path)
    data = {"bootloader": host.bootloader.name if host.bootloader else None,
            "boot-counting": state.to_json() if state else None,
            "deployments": [{"id": d.id, "index": d.index, "booted": d.booted, **records.get(d.id, {})}
                            for d in host.sysroot.deployments]}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    _echo(f"Bootloader: {data['bootloader'] or '(none)'}")
    _echo("Boot counting: " + (f"{state.status.value} ({state.detail})" if state else "not supported"))
    for d in data["deployments"]:
        last = d.get("health-check") or {}
        line = f"{'●' if d['booted'] else ' '} {d['index']} {d['id']}: last check {last.get('result', 'never run')}"
        if last.get("script"):
            line += f" ({last['script']})"
        if d.get("boot-failure"):
            line += f"; {d['boot-failure']['message']}"
        _echo(line)



