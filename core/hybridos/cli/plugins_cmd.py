"""``hybridos plugins``: what was discovered and which implementation each hook uses, and why."""

from __future__ import annotations

import json
from pathlib import Path

import click

from hybridos.cli.main import global_options
from hybridos.plugins import get_registry, report


@click.command("plugins")
@click.option("--sysroot", "sysroot_opt", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Explain the bootloader choice for this sysroot (default: the global --sysroot if given).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def plugins(ctx: click.Context, sysroot_opt: Path | None, as_json: bool) -> None:
    """List discovered plugins, the hooks they implement, and the implementation selected for each hook."""
    sysroot = sysroot_opt
    if sysroot is None:
        g = global_options(ctx)
        if g.sysroot != Path("/"):
            sysroot = g.sysroot
    data = report(get_registry(), sysroot)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo("Plugins:")
    for p in data["plugins"]:
        dist = f"{p['distribution']} {p['version']}" if p["distribution"] else "(no distribution)"
        if p["loaded"]:
            click.echo(f"  {p['name']:<28} {dist:<40} {', '.join(p['hooks']) or '(no hooks)'}")
        else:
            click.echo(f"  {p['name']:<28} {dist:<40} BROKEN: {p['error']}")
    sel = data["selection"]
    click.echo("Fetch (by URL scheme):")
    for f in sel["fetch"]:
        mark = "*" if f["selected"] else " "
        click.echo(f"  {mark} {f['scheme']:<14} {f['plugin']} ({f['implementation']}): {f['reason']}")
    for family in ("solve", "layer", "initramfs"):
        s = sel[family]
        click.echo(f"{family.capitalize()}: {s['selected'] or 'none'} ({s['reason']})")
    boot = sel["bootloader"]
    click.echo("Bootloaders:")
    for b in boot["available"]:
        click.echo(f"    {b['name']:<14} {b['plugin']} [{', '.join(b['architectures'])}]")
    if "sysroot" in boot:
        click.echo(f"  for {boot['sysroot']}: {boot['selected'] or 'none'} ({boot['reason']})")
