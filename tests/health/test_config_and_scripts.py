"""greenboot.conf and greenboot's script rules, with real shell scripts in a temporary root (never /)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hybridos.errors import ConfigError
from hybridos.health.config import GreenbootConfig, boot_counting_tries, parse_greenboot_conf
from hybridos.health.scripts import Outcome, Phase, find_scripts, run_phase


def test_greenboot_conf_as_greenboot_ships_and_admins_edit_it():
    text = """# greenboot configuration file
GREENBOOT_MAX_BOOT_ATTEMPTS=5
GREENBOOT_WATCHDOG_CHECK_ENABLED=true
export GREENBOOT_WATCHDOG_GRACE_PERIOD=24
DISABLED_HEALTHCHECKS=("01_repository_dns_check.sh"
   '02_watchdog.sh')   # two of them
HYBRIDOS_HEALTHCHECK_TIMEOUT=2.5
"""
    conf = parse_greenboot_conf(text)
    assert conf == GreenbootConfig(5, frozenset({"01_repository_dns_check.sh", "02_watchdog.sh"}), 2.5, True)
    assert parse_greenboot_conf("") == GreenbootConfig()
    assert parse_greenboot_conf("GREENBOOT_MAX_BOOT_ATTEMPTS=1\nGREENBOOT_MAX_BOOT_ATTEMPTS=2\n").max_boot_attempts == 2
    assert not parse_greenboot_conf("HYBRIDOS_REBOOT_ON_FAILURE=false").reboot_on_failure


@pytest.mark.parametrize("text, message", [
    ("GREENBOOT_MAX_BOOT_ATTEMPTS=three", "GREENBOOT_MAX_BOOT_ATTEMPTS='three' is not a number"),
    ("GREENBOOT_MAX_BOOT_ATTEMPTS=-1", "must not be negative"),
    ('DISABLED_HEALTHCHECKS=("a.sh', "No closing quotation"),
    ("HYBRIDOS_REBOOT_ON_FAILURE=maybe", "must be true or false"),
])
def test_bad_greenboot_conf_is_one_clear_error(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_greenboot_conf(text)


def test_tries_from_the_sysroot_setting_else_greenboot_conf(tmp_path):
    dep = tmp_path / "dep"
    (dep / "usr/lib").mkdir(parents=True)
    assert boot_counting_tries({}, dep) == 0                      # no health checks: no counting
    (dep / "usr/lib/greenboot/check/required.d").mkdir(parents=True)
    assert boot_counting_tries({}, dep) == 3                      # greenboot's default
    (dep / "etc/greenboot").mkdir(parents=True)
    (dep / "etc/greenboot/greenboot.conf").write_text("GREENBOOT_MAX_BOOT_ATTEMPTS=2\n")
    assert boot_counting_tries({}, dep) == 2
    assert boot_counting_tries({"boot-counting": "0"}, dep) == 0  # the sysroot's setting wins
    assert boot_counting_tries({"boot-counting": "4"}, None) == 4


def script(root: Path, rel: str, body: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("#!/bin/bash\n" + body + "\n")
    return p


@pytest.fixture
def root(tmp_path, monkeypatch):
    r = tmp_path / "root"
    r.mkdir()
    log = tmp_path / "ran.log"
    monkeypatch.setenv("RAN_LOG", str(log))
    return r


def ran(root: Path) -> list[str]:
    log = root.parent / "ran.log"
    return log.read_text().split() if log.exists() else []


def test_required_is_strict_vendor_first_sorted_and_only_sh(root):
    script(root, "usr/lib/greenboot/check/required.d/10_b.sh", 'echo 10_b >> "$RAN_LOG"')
    script(root, "usr/lib/greenboot/check/required.d/02_a.sh", 'echo 02_a >> "$RAN_LOG"')
    script(root, "usr/lib/greenboot/check/required.d/sub/05_deep.sh", 'echo 05_deep >> "$RAN_LOG"')
    script(root, "usr/lib/greenboot/check/required.d/README", 'echo readme >> "$RAN_LOG"')
    script(root, "etc/greenboot/check/required.d/00_admin.sh", 'echo 00_admin >> "$RAN_LOG"')
    assert find_scripts(root, Phase.REQUIRED) == [
        "usr/lib/greenboot/check/required.d/02_a.sh", "usr/lib/greenboot/check/required.d/10_b.sh",
        "usr/lib/greenboot/check/required.d/sub/05_deep.sh", "etc/greenboot/check/required.d/00_admin.sh"]
    results = run_phase(root, Phase.REQUIRED, GreenbootConfig())
    assert all(r.outcome is Outcome.PASSED for r in results)
    assert ran(root) == ["02_a", "10_b", "05_deep", "00_admin"]


def test_a_required_failure_skips_the_rest_and_the_admin_directory(root):
    script(root, "usr/lib/greenboot/check/required.d/01_ok.sh", 'echo 01 >> "$RAN_LOG"')
    script(root, "usr/lib/greenboot/check/required.d/02_fail.sh", 'echo 02 >> "$RAN_LOG"; echo "disk is full" >&2; exit 7')
    script(root, "usr/lib/greenboot/check/required.d/03_never.sh", 'echo 03 >> "$RAN_LOG"')
    script(root, "etc/greenboot/check/required.d/01_admin.sh", 'echo admin >> "$RAN_LOG"')
    lines = []
    results = run_phase(root, Phase.REQUIRED, GreenbootConfig(), echo=lines.append)
    assert [(r.name, r.outcome) for r in results] == [
        ("01_ok.sh", Outcome.PASSED), ("02_fail.sh", Outcome.FAILED), ("03_never.sh", Outcome.SKIPPED),
        ("01_admin.sh", Outcome.SKIPPED)]
    assert results[1].returncode == 7 and results[1].output == "disk is full"
    assert ran(root) == ["01", "02"]
    assert "'03_never.sh' was skipped due to a previous failure" in lines
    assert "02_fail.sh: disk is full" in lines


def test_wanted_green_red_are_relaxed_and_disabled_scripts_never_run(root):
    for phase_dir in ("check/wanted.d", "green.d", "red.d"):
        script(root, f"usr/lib/greenboot/{phase_dir}/01_fail.sh", f'echo {phase_dir}:1 >> "$RAN_LOG"; exit 1')
        script(root, f"etc/greenboot/{phase_dir}/02_ok.sh", f'echo {phase_dir}:2 >> "$RAN_LOG"')
    config = GreenbootConfig(disabled=frozenset({"02_ok.sh"}))
    for phase in (Phase.WANTED, Phase.GREEN, Phase.RED):
        results = run_phase(root, phase, config)
        assert [r.outcome for r in results] == [Outcome.FAILED, Outcome.DISABLED]
    assert ran(root) == ["check/wanted.d:1", "green.d:1", "red.d:1"]


def test_a_script_over_its_time_limit_is_killed_with_its_children(root, tmp_path):
    pidfile = tmp_path / "child.pid"
    script(root, "usr/lib/greenboot/check/required.d/01_hang.sh",
           f'sleep 60 & echo $! > {pidfile}; echo started; wait')
    start = time.monotonic()
    results = run_phase(root, Phase.REQUIRED, GreenbootConfig(script_timeout=1))
    assert time.monotonic() - start < 10
    assert results[0].outcome is Outcome.TIMED_OUT and results[0].output == "started"
    assert results[0].describe() == "01_hang.sh timed out after 1 s"
    child = int(pidfile.read_text())
    time.sleep(0.2)
    try:   # gone, or a zombie waiting for whoever inherited it to reap it
        state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        state = "gone"
    assert state in ("gone", "Z"), state


def test_scripts_reached_through_a_symlink_out_of_the_root_never_run(root, tmp_path):
    outside = tmp_path / "outside"
    script(outside, "evil.sh", 'echo evil >> "$RAN_LOG"')
    (root / "etc/greenboot/check").mkdir(parents=True)
    (root / "etc/greenboot/check/required.d").symlink_to(outside)
    assert find_scripts(root, Phase.REQUIRED) == []
