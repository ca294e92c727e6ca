"""The whole cycle on a real sysroot, offline: a GRUB sysroot made by hybridos, greenboot scripts shipped in
the images, ``hybridos health-check`` run as each boot would run it (the running deployment named by its
kernel command line), GRUB's part of each boot played with ``grub-editenv`` (what our grub.cfg snippet does,
checked with grub-script-check). The QEMU tests (tests/boot/test_boot_assessment.py) run the real GRUB."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from hybridos.sysroot.sysroot import Sysroot
from tests.conftest import require_tool
from tests.sysroot.conftest import STATEROOT, hyb, ostree, remote, workdir  # noqa: F401 - fixtures

OK = "#!/bin/bash\necho \"$(basename $0) $GREENBOOT_PHASE\" >> \"$RAN_LOG\"\n"
FAIL = OK + "echo 'service foo is not running' >&2\nexit 1\n"


def greenboot(required: str) -> dict[str, str]:
    return {"usr/lib/greenboot/check/required.d/01_fs.sh": OK,
            "usr/lib/greenboot/check/required.d/02_service.sh": required,
            "usr/lib/greenboot/check/wanted.d/01_wanted.sh": FAIL,       # wanted: never fails the check
            "usr/lib/greenboot/green.d/01_green.sh": OK,
            "usr/lib/greenboot/red.d/01_red.sh": OK}


def grubenv(sr: Path) -> dict[str, str]:
    out = subprocess.run(["grub-editenv", str(sr / "boot/grub/grubenv"), "list"], capture_output=True,
                         text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def grub_boots(sr: Path) -> None:
    """What the counting snippet of our grub.cfg does at one boot (GRUB's own logic, replayed)."""
    env = grubenv(sr)
    if env.get("boot_counter") and env.get("boot_success") == "0":
        n = int(env["boot_counter"])
        env["boot_counter"] = "-1" if n <= 0 else str(n - 1)
    env["boot_success"] = "0"
    subprocess.run(["grub-editenv", str(sr / "boot/grub/grubenv"), "set",
                    *(f"{k}={v}" for k, v in env.items())], check=True)


def cmdline_of(sr: Path, version: str) -> str:
    s = Sysroot.load(sr)
    dep = next(d for d in s.deployments if s.load_commit(d.checksum).version == version)
    return s.entries[dep.name].options


def health_check(sr: Path, booted: str, *args: str, check: bool = False):
    return hyb(sr, "health-check", "--no-reboot", "--cmdline", cmdline_of(sr, booted), *args, check=check)


def deployments(sr: Path) -> list[dict]:
    return json.loads(hyb(sr, "status", "--json").stdout)["deployments"]


@pytest.fixture
def grub_sysroot(workdir, remote, monkeypatch):  # noqa: F811
    require_tool("grub-editenv", "grub-script-check")
    monkeypatch.setenv("RAN_LOG", str(workdir / "ran.log"))
    sr = workdir / "sysroot"
    remote.publish("1", files=greenboot(OK))
    hyb(sr, "admin", "init-fs", str(sr))
    hyb(sr, "admin", "os-init", STATEROOT)
    (sr / "boot/grub").mkdir(parents=True)
    (sr / "boot/grub/grub.cfg").write_text("# replaced by the grub2 plugin\n")
    ostree(f"--repo={sr}/ostree/repo", "remote", "add", "--no-gpg-verify", "origin", remote.url)
    ostree(f"--repo={sr}/ostree/repo", "pull", "origin", "testos/stable")
    hyb(sr, "admin", "deploy", "--os", STATEROOT, "--karg", "root=/dev/vda1", "origin:testos/stable")
    return sr


def test_failing_update_falls_back_is_made_permanent_and_a_fixed_one_works(grub_sysroot, remote, workdir):  # noqa: F811
    sr, log = grub_sysroot, workdir / "ran.log"
    assert health_check(sr, "1").returncode == 0
    assert "boot_counter" not in grubenv(sr)              # one deployment: nothing to fall back to, no counting

    # v2's required check fails; upgrading arms it with greenboot's default 3 tries
    remote.publish("2", files=greenboot(FAIL))
    hyb(sr, "upgrade")
    assert grubenv(sr) == {"boot_counter": "3", "boot_success": "0"}
    cfg = sr / "boot/grub/grub.cfg"
    subprocess.run(["grub-script-check", str(cfg)], check=True)
    assert '"${boot_counter}" = "3" ]; then\n    set boot_counter=2' in cfg.read_text()

    for left in (2, 1, 0):                                  # three tries, each rebooted by health-check
        grub_boots(sr)
        log.unlink(missing_ok=True)
        proc = health_check(sr, "2")
        assert proc.returncode == 3, proc.stdout + proc.stderr      # 3: unhealthy, reboot wanted
        assert log.read_text().split("\n")[:-1] == ["01_fs.sh required", "02_service.sh required",
                                                    "01_wanted.sh wanted", "01_red.sh red"]
        assert "02_service.sh: service foo is not running" in proc.stdout
        assert f"boot_counter={left}" in proc.stdout
        assert grubenv(sr)["boot_counter"] == str(left)
    last = deployments(sr)[0]["health-check"]
    assert (last["result"], last["script"]) == ("failed", "02_service.sh")

    grub_boots(sr)                                          # tries ran out: GRUB boots entry 1 (v1)
    assert grubenv(sr)["boot_counter"] == "-1"
    proc = health_check(sr, "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FALLBACK BOOT DETECTED!" in proc.stdout and "Health Check SUCCESS" in proc.stdout
    assert "boot_counter" not in grubenv(sr)
    deps = deployments(sr)
    assert [d["version"] for d in deps] == ["1", "2"]       # permanent: v1 is the default again
    failure = deps[1]["boot-failure"]
    assert (failure["reason"], failure["script"], failure["message"]) == (
        "health-check", "02_service.sh", "boot failed health check: 02_service.sh")
    assert failure["bootloader"] == "grub2" and "boot_counter=-1" in failure["detail"]
    assert "boot-failure" not in deps[0]
    text = hyb(sr, "status").stdout
    assert "BootFailure: boot failed health check: 02_service.sh" in text
    # a second run in the same boot changes nothing
    assert health_check(sr, "1").returncode == 0
    assert [d["version"] for d in deployments(sr)] == ["1", "2"]

    # the next upgrade, to a fixed v3, is armed, passes and is marked good
    remote.publish("3", files=greenboot(OK))
    hyb(sr, "upgrade")
    assert grubenv(sr) == {"boot_counter": "3", "boot_success": "0"}
    grub_boots(sr)
    log.unlink()
    proc = health_check(sr, "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert log.read_text().split("\n")[:-1] == ["01_fs.sh required", "02_service.sh required",
                                                "01_wanted.sh wanted", "01_green.sh green"]
    assert grubenv(sr) == {"boot_success": "1"}
    assert [d["version"] for d in deployments(sr)] == ["3", "1"]


def test_a_deployment_that_never_ran_its_checks_is_recorded_as_such(grub_sysroot, remote):  # noqa: F811
    sr = grub_sysroot
    remote.publish("2", files=greenboot(OK))
    hyb(sr, "upgrade")
    for _ in range(4):                                       # e.g. its initramfs cannot find the root
        grub_boots(sr)
    assert grubenv(sr)["boot_counter"] == "-1"
    assert health_check(sr, "1").returncode == 0
    failure = deployments(sr)[1]["boot-failure"]
    assert failure["reason"] == "no-health-check" and failure["script"] is None
    assert "BootFailure: boot failed: it never reached a health check" in hyb(sr, "status").stdout


def test_no_reboot_without_counting_and_the_status_subcommand(grub_sysroot, remote, workdir):  # noqa: F811
    sr = grub_sysroot
    remote.publish("2", files={**greenboot(FAIL), "usr/etc/greenboot/greenboot.conf": "GREENBOOT_MAX_BOOT_ATTEMPTS=2\n"})
    hyb(sr, "upgrade")
    assert grubenv(sr)["boot_counter"] == "2"               # from the image's greenboot.conf
    state = json.loads(health_check(sr, "2", "status", "--json").stdout)
    assert state["bootloader"] == "grub2" and state["boot-counting"]["status"] == "armed"
    # boot_counter unset (e.g. counting off): a failed check asks for manual intervention, no reboot
    subprocess.run(["grub-editenv", str(sr / "boot/grub/grubenv"), "unset", "boot_counter"], check=True)
    proc = health_check(sr, "2")
    assert proc.returncode == 4 and "manual intervention necessary" in proc.stdout
