"""The systemd units of staging and automatic updates verify with ``systemd-analyze verify`` and say what
libostree's and rpm-ostree's units say."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool

DATA = Path(__file__).resolve().parents[2] / "core/hybridos/data"
UNITS = ("hybridos-finalize-staged.service", "hybridos-finalize-staged.path", "hybridos-boot-complete.service",
         "hybridos-automatic.service", "hybridos-automatic.timer")


def _installed(tmp_path: Path, name: str, text: str | None = None) -> Path:
    hybridos = shutil.which("hybridos") or str(Path(sys.executable).parent / "hybridos")
    out = tmp_path / name
    out.write_text((text if text is not None else (DATA / name).read_text()).replace("/usr/bin/hybridos", hybridos))
    return out


@pytest.mark.tool("systemd-analyze")
def test_units_verify(tmp_path):
    require_tool("systemd-analyze")
    paths = [_installed(tmp_path, u) for u in UNITS]
    r = subprocess.run(["systemd-analyze", "verify", *map(str, paths)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # the check can fail: a timer without any trigger, a service whose command does not exist
    bad = _installed(tmp_path, "bad.service", (DATA / UNITS[3]).read_text().replace("/usr/bin/hybridos",
                                                                                     "/nonexistent/hybridos"))
    assert subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True).returncode != 0


def _keys(name: str) -> dict[str, str]:
    out = {}
    for line in (DATA / name).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k] = v if k not in out else out[k] + " " + v
    return out


def test_units_say_what_ostree_and_rpm_ostree_say():
    fin = _keys("hybridos-finalize-staged.service")
    assert fin["ExecStop"] == "/usr/bin/hybridos finalize-staged" and fin["RemainAfterExit"] == "yes"
    assert fin["ConditionPathExists"] == "/run/ostree-booted" and fin["Conflicts"] == "final.target"
    assert _keys("hybridos-finalize-staged.path")["PathExists"] == "/run/ostree/staged-deployment"
    assert _keys("hybridos-boot-complete.service")["ExecStart"] == "/usr/bin/hybridos admin boot-complete"
    svc = _keys("hybridos-automatic.service")
    assert svc["ExecStart"] == "/usr/bin/hybridos upgrade --quiet --trigger-automatic-update-policy"
    timer = _keys("hybridos-automatic.timer")
    assert (timer["OnBootSec"], timer["OnUnitInactiveSec"], timer["Persistent"]) == ("1h", "1d", "true")
    assert timer["WantedBy"] == "timers.target" and timer["ConditionPathExists"] == "/run/ostree-booted"
