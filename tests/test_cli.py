"""The command line: version, global options, and the error boundary."""

from __future__ import annotations

import click
import pytest

from hybridos import __version__
from hybridos.cli import main as climain
from hybridos.errors import ConfigError
from tests.conftest import run_cli


def test_version():
    assert run_cli("--version").stdout.strip() == f"hybridos, version {__version__}"


def test_help_lists_plugins_command():
    assert "plugins" in run_cli("--help").stdout


def test_usage_errors_are_one_line_and_exit_1_like_rpm_ostree():
    # rpm-ostree's GOption errors become "error: ..." and exit code 1 (rust/src/main.rs), never click's exit 2
    proc = run_cli("no-such-command", check=False)
    assert (proc.returncode, proc.stderr) == (1, "error: Unknown command 'no-such-command'\n")
    proc = run_cli("upgrade", "--no-such-option", check=False)
    assert (proc.returncode, proc.stderr) == (1, "error: Unknown option --no-such-option\n")
    proc = run_cli("override", "frob", check=False)
    assert (proc.returncode, proc.stderr) == (1, 'error: Unknown "override" subcommand "frob"\n')
    proc = run_cli("deploy", "--stateroot", check=False)
    assert (proc.returncode, proc.stderr) == (1, "error: Option '--stateroot' requires an argument.\n")
    proc = run_cli("deploy", check=False)
    assert (proc.returncode, proc.stderr) == (1, "error: Missing argument 'REVISION'.\n")
    # no command: the help first (on stderr, as rpm-ostree), then its one-line error
    proc = run_cli(check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "Commands:" in proc.stderr and proc.stderr.endswith("\nerror: No command specified\n")
    proc = run_cli("override", check=False)
    assert proc.returncode == 1 and proc.stderr.endswith('\nerror: No "override" subcommand specified\n')
    # a usage error raised by a command itself (hybridos.errors.UsageError) exits 1 too
    proc = run_cli("kargs", "--sysroot", "/nonexistent", "--append", "", check=False)
    assert (proc.returncode, proc.stderr) == (1, "error: invalid kernel argument '': it is empty\n")


def _boom_command(exc):
    @click.command("boom")
    def boom():
        raise exc
    return boom


@pytest.mark.parametrize("debug", [False, True])
def test_hybridos_error_is_one_line_with_exit_code(monkeypatch, capsys, debug):
    monkeypatch.setitem(climain.COMMANDS, "boom", "tests.test_cli:BOOM_CONFIG")
    args = (["--debug"] if debug else []) + ["boom"]
    with pytest.raises(SystemExit) as exc:
        climain.main(args)
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "error: treefile.yaml: unknown key 'pakages'"
    assert ("Traceback" in err) == debug


def test_unexpected_exception_has_no_traceback(monkeypatch, capsys):
    monkeypatch.setitem(climain.COMMANDS, "boom", "tests.test_cli:BOOM_INTERNAL")
    with pytest.raises(SystemExit) as exc:
        climain.main(["boom"])
    assert exc.value.code == 70
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "internal error: ZeroDivisionError" in err and "--debug" in err


BOOM_CONFIG = _boom_command(ConfigError("treefile.yaml: unknown key 'pakages'"))
BOOM_INTERNAL = _boom_command(ZeroDivisionError("division by zero"))


def test_sysroot_from_environment(tmp_path):
    (tmp_path / "boot/extlinux").mkdir(parents=True)
    (tmp_path / "boot/extlinux/extlinux.conf").write_text("")
    out = run_cli("plugins", env={"HYBRIDOS_SYSROOT": str(tmp_path)}).stdout
    assert "uboot" in out.splitlines()[-1]
