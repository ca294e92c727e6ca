"""The ``hybridos`` command group: global options, lazy subcommands, and the error boundary."""

from __future__ import annotations

import errno
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from hybridos.errors import HybridosError
from hybridos.util.text import for_terminal

#: command name -> "module:attribute". A command appears when its module exists; it is imported only when
#: invoked, so ``status`` does not pay for ``compose``'s imports.
COMMANDS: dict[str, str] = {
    "plugins": "hybridos.cli.plugins_cmd:plugins",
    "repo": "hybridos.cli.repo:repo",
    "admin": "hybridos.cli.admin:admin",
    "compose": "hybridos.cli.compose:compose",
    "status": "hybridos.cli.host:status",
    "upgrade": "hybridos.cli.host:upgrade",
    "rollback": "hybridos.cli.host:rollback",
    "deploy": "hybridos.cli.host:deploy",
    "rebase": "hybridos.cli.host:rebase",
    "kargs": "hybridos.cli.host:kargs",
    "cleanup": "hybridos.cli.host:cleanup",
    "cancel": "hybridos.cli.host:cancel",
    "db": "hybridos.cli.db:db",
    "refresh-md": "hybridos.cli.layering:refresh_md",
    "search": "hybridos.cli.layering:search",
    "usroverlay": "hybridos.cli.usroverlay:usroverlay",
    "install": "hybridos.cli.layering:install",
    "uninstall": "hybridos.cli.layering:uninstall",
    "override": "hybridos.cli.layering:override",
    "reset": "hybridos.cli.layering:reset",
    "initramfs": "hybridos.cli.layering:initramfs",
    "initramfs-etc": "hybridos.cli.layering:initramfs_etc",
    "start-daemon": "hybridos.cli.daemon_cmd:start_daemon",
    "health-check": "hybridos.cli.health:health_check",
    "finalize-staged": "hybridos.cli.staging_cmd:finalize_staged",
    "finalize-deployment": "hybridos.cli.staging_cmd:finalize_deployment",
}


#: rpm-ostree's hidden aliases: not listed, but they run the command they name
HIDDEN_ALIASES: dict[str, str] = {
    "update": "upgrade", "pkg-add": "install", "pkg-remove": "uninstall", "remove": "uninstall",
    "makecache": "refresh-md", "unlock": "usroverlay",
}


@dataclass
class GlobalOptions:
    sysroot: Path
    debug: bool


class LazyGroup(click.Group):
    """A group whose subcommands are imported on demand."""

    def _available(self) -> dict[str, str]:
        out = {}
        for name, target in COMMANDS.items():
            module = target.split(":")[0]
            if importlib.util.find_spec(module) is not None:
                out[name] = target
        return out

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self._available()))

    def get_command(self, ctx, cmd_name):
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            return cmd
        target = self._available().get(HIDDEN_ALIASES.get(cmd_name, cmd_name))
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hybridos", prog_name="hybridos")  # resolved only for --version
@click.option("--sysroot", type=click.Path(file_okay=False, path_type=Path), envvar="HYBRIDOS_SYSROOT",
              default=Path("/"), show_default=True, help="Root of the system to operate on (also HYBRIDOS_SYSROOT).")
@click.option("--debug", is_flag=True, envvar="HYBRIDOS_DEBUG", help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, sysroot: Path, debug: bool) -> None:
    """hybridos: image-based OS updates in OSTree's format, with RPM package layering."""
    ctx.obj = GlobalOptions(sysroot=sysroot, debug=debug)


def global_options(ctx: click.Context) -> GlobalOptions:
    """The options given before the subcommand (defaults when a command is run on its own, as in tests)."""
    root = ctx.find_root()
    if isinstance(root.obj, GlobalOptions):
        return root.obj
    return GlobalOptions(sysroot=Path(os.environ.get("HYBRIDOS_SYSROOT", "/")),
                         debug=bool(os.environ.get("HYBRIDOS_DEBUG")))


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI and turn errors into one line and an exit code."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:]) or bool(os.environ.get("HYBRIDOS_DEBUG"))
    try:
        cli.main(args=argv, prog_name="hybridos", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:          # one line and exit 1, as rpm-ostree prints them
        from hybridos.cli._usage import USAGE_EXIT, usage_lines

        help_text, message = usage_lines(exc)
        if help_text:
            click.echo(help_text, err=True)
        click.echo(f"error: {message}", err=True)
        sys.exit(USAGE_EXIT)
    except click.ClickException as exc:
        click.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except HybridosError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        click.echo(f"error: {for_terminal(exc.message)}", err=True)
        if exc.hint:
            click.echo(f"hint: {for_terminal(exc.hint)}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(141)
    except OSError as exc:
        if debug:
            traceback.print_exc()
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):   # a full disk is the user's to fix, not a bug
            where = f" (writing {exc.filename})" if exc.filename else ""
            click.echo(f"error: {exc.strerror}{for_terminal(where)}", err=True)
            click.echo("hint: free some space (`hybridos cleanup -r` removes the rollback deployment), then retry; "
                       "nothing was switched", err=True)
            sys.exit(1)
        click.echo(f"error: internal error: {type(exc).__name__}: {exc} (run with --debug for details)", err=True)
        sys.exit(70)
    except Exception as exc:  # never a traceback for the user unless asked
        if debug:
            import traceback

            traceback.print_exc()
        click.echo(f"error: internal error: {type(exc).__name__}: {exc} (run with --debug for details)", err=True)
        sys.exit(70)
    sys.exit(0)
