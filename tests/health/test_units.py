"""The systemd units of boot assessment: systemd-analyze verify accepts them (and notices a broken one), and
their ordering is greenboot's: fallback check, then the health check before boot-complete.target, blessing and
green.d after it, red.d and the reboot on hybridos-redboot.target when the check fails."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_tool

DATA = ROOT / "core/hybridos/data"
#: the boot assessment's units (staging's and the automatic update units are checked in tests/sysroot)
STAGING_UNITS = {"hybridos-finalize-staged.service", "hybridos-boot-complete.service", "hybridos-automatic.service"}
UNITS = sorted(p.name for p in DATA.glob("hybridos-*") if p.suffix in (".service", ".target")
               and p.name not in STAGING_UNITS)


def installed(tmp_path: Path) -> Path:
    """The units with the paths a package would have (hybridos is the venv's)."""
    hybridos = shutil.which("hybridos") or str(Path(sys.executable).parent / "hybridos")
    out = tmp_path / "units"
    out.mkdir()
    for name in UNITS:
        (out / name).write_text((DATA / name).read_text().replace("/usr/bin/hybridos", hybridos))
    return out


def verify(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", *sorted(map(str, directory.iterdir()))],
                          capture_output=True, text=True)


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string((DATA / name).read_text())
    return parser


def test_units_verify(tmp_path):
    require_tool("systemd-analyze")
    assert len(UNITS) == 7, UNITS
    units = installed(tmp_path)
    r = verify(units)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    # the check can fail: a misspelt setting is reported
    bad = units / "hybridos-healthcheck.service"
    bad.write_text(bad.read_text().replace("OnFailureJobMode=fail", "OnFailureJobMode=sometimes"))
    assert "Failed to parse job mode" in verify(units).stderr


@pytest.mark.parametrize("name, section, key, values", [
    ("hybridos-healthcheck.service", "Unit", "Before", {"boot-complete.target"}),
    ("hybridos-healthcheck.service", "Install", "RequiredBy", {"boot-complete.target"}),
    ("hybridos-healthcheck.service", "Unit", "OnFailure", {"hybridos-redboot.target"}),
    ("hybridos-healthcheck.service", "Service", "ExecStart", {"/usr/bin/hybridos", "health-check", "check"}),
    ("hybridos-healthcheck-fallback.service", "Unit", "Before", {"hybridos-healthcheck.service"}),
    ("hybridos-healthcheck-fallback.service", "Service", "ExecStart", {"health-check", "fallback"}),
    ("hybridos-bless-boot.service", "Unit", "After", {"boot-complete.target"}),
    ("hybridos-bless-boot.service", "Unit", "Requires", {"boot-complete.target"}),
    ("hybridos-bless-boot.service", "Service", "ExecStart", {"health-check", "bless"}),
    ("hybridos-healthcheck-green.service", "Unit", "Requires", {"boot-complete.target"}),
    ("hybridos-healthcheck-green.service", "Service", "ExecStart", {"health-check", "green"}),
    ("hybridos-redboot.target", "Unit", "Conflicts", {"boot-complete.target"}),
    ("hybridos-healthcheck-red.service", "Install", "RequiredBy", {"hybridos-redboot.target"}),
    ("hybridos-healthcheck-red.service", "Service", "ExecStart", {"health-check", "red"}),
    ("hybridos-redboot-auto-reboot.service", "Unit", "After", {"hybridos-healthcheck-red.service"}),
    ("hybridos-redboot-auto-reboot.service", "Install", "WantedBy", {"hybridos-redboot.target"}),
])
def test_units_are_ordered_as_greenboot(name, section, key, values):
    assert values <= set(unit(name)[section][key].split())


def test_every_step_a_unit_runs_is_a_health_check_subcommand():
    from click.testing import CliRunner

    from hybridos.cli.health import health_check

    for name in UNITS:
        if name.endswith(".service"):
            words = unit(name)["Service"]["ExecStart"].split()
            assert words[:2] == ["/usr/bin/hybridos", "health-check"]
            r = CliRunner().invoke(health_check, [*words[2:], "--help"])
            assert r.exit_code == 0, (name, r.output)
