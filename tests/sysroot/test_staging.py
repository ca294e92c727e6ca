"""Staged deployments as libostree writes them: staged on the running system, finalized at shutdown with the
/etc of that moment, locked finalization, crash safety, failure reported on the next boot.

The running system is a temporary sysroot with its own /run and /proc/cmdline (tests/sysroot/staged.py);
this machine's /run/ostree is never touched.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from hybridos.sysroot.stagedstate import parse_state
from hybridos.sysroot.sysroot import Sysroot
from tests.sysroot.conftest import check_consistent, hyb, ostree
from tests.sysroot.staged import RunningSystem


@pytest.fixture
def running(host, workdir):
    sr, remote, v1 = host
    return RunningSystem(sr, workdir / "machine"), remote, v1


def _status(system: RunningSystem) -> list[dict]:
    return json.loads(hyb(system.sysroot, "status", "--json", env=system.env).stdout)["deployments"]


def _boot_order(sr) -> list[str]:
    return [d.checksum for d in Sysroot.load(sr).deployments]


def _etc(sr, dep, name="app.conf") -> str:
    return (sr / dep.relpath / "etc" / name).read_text()


def test_upgrade_stages_and_shutdown_finalizes_with_the_etc_of_that_moment(running):
    system, remote, v1 = running
    sr = system.sysroot
    v2 = remote.publish("2.0", etc={"app.conf": "a=2\n", "new.conf": "from v2\n"})
    entries_before = sorted(os.listdir(sr / "boot/loader/entries"))
    out = hyb(sr, "upgrade", env=system.env).stdout
    assert "Run \"systemctl reboot\"" in out

    # staged: the deployment directory and the state file exist; the boot configuration did not change
    assert _boot_order(sr) == [v1]
    assert sorted(os.listdir(sr / "boot/loader/entries")) == entries_before
    state = parse_state(system.staged_file.read_bytes())
    assert (state.target.osname, state.target.checksum, state.target.serial) == ("testos", v2, 0)
    assert (state.merge.checksum, state.kargs) == (v1, ("root=/dev/vda1", "rw"))
    assert not state.locked and not (system.run / "ostree/staged-deployment-locked").exists()
    deps = _status(system)
    assert [(d["checksum"], d["staged"], d["booted"]) for d in deps] == [(v2, True, False), (v1, False, True)]
    assert "Staged: yes" in hyb(sr, "status", env=system.env).stdout
    staged = system.load().staged
    assert (sr / staged.relpath / "etc/new.conf").read_text() == "from v2\n"

    # the admin edits /etc after staging; shutdown finalizes
    (sr / system.booted.relpath / "etc/app.conf").write_text("edited after staging\n")
    (sr / system.booted.relpath / "etc/local.conf").write_text("added after staging\n")
    out = hyb(sr, "finalize-staged", env=system.env).stdout
    assert "Copying /etc changes: 1 modified, 0 removed, 1 added" in out
    assert not system.staged_file.exists()
    assert _boot_order(sr) == [v2, v1]
    check_consistent(sr)

    # the next boot comes up in v2 with both edits and the image's new file
    system.boot()
    assert system.booted.checksum == v2
    assert _etc(sr, system.booted) == "edited after staging\n"
    assert _etc(sr, system.booted, "local.conf") == "added after staging\n"
    assert _etc(sr, system.booted, "new.conf") == "from v2\n"
    deps = _status(system)
    assert [(d["checksum"], d["staged"], d["booted"]) for d in deps] == [(v2, False, True), (v1, False, False)]
    # the real ostree reads the result as we do
    listing = ostree("admin", "status", f"--sysroot={sr}").stdout
    assert listing.index(v2) < listing.index(v1)

    # at shutdown the deployment leaving the list is not deleted (that is most of a finalization's time): the
    # next cleanup does it
    old = next(d for d in Sysroot.load(sr).deployments if d.checksum == v1)
    v3 = remote.publish("3.0")
    hyb(sr, "upgrade", env=system.env)
    hyb(sr, "finalize-staged", env=system.env)
    assert _boot_order(sr) == [v3, v2] and (sr / old.relpath).is_dir()
    check_consistent(sr)
    hyb(sr, "cleanup", "-b", env=system.env)
    assert not (sr / old.relpath).exists() and not (sr / old.origin_relpath).exists()


def test_offline_sysroot_deploys_at_once(running):
    system, remote, v1 = running
    v2 = remote.publish("2.0")
    hyb(system.sysroot, "upgrade")              # no running-system environment: an offline --sysroot
    assert _boot_order(system.sysroot) == [v2, v1]
    assert not system.staged_file.exists()
    assert "Staged: yes" not in hyb(system.sysroot, "status").stdout


def test_nothing_staged_and_not_booted(running, workdir):
    system, remote, v1 = running
    out = hyb(system.sysroot, "finalize-staged", env=system.env).stdout
    assert "No deployment staged for finalization" in out
    # admin deploy --stage needs a booted system
    r = hyb(system.sysroot, "admin", "deploy", "--stage", "origin:testos/stable", check=False)
    assert r.returncode == 1 and "not booted" in r.stderr and len(r.stderr.strip().splitlines()) <= 2


def test_restaging_replaces_the_staged_deployment(running):
    system, remote, v1 = running
    sr = system.sysroot
    v2 = remote.publish("2.0")
    hyb(sr, "upgrade", env=system.env)
    first = system.load().staged
    v3 = remote.publish("3.0")
    hyb(sr, "upgrade", env=system.env)
    second = system.load().staged
    assert (first.checksum, second.checksum) == (v2, v3)
    assert not (sr / first.relpath).exists() and not (sr / first.origin_relpath).exists()
    assert [d["checksum"] for d in _status(system)] == [v3, v1]


def test_locked_finalization_and_finalize_deployment(running, workdir):
    system, remote, v1 = running
    sr = system.sysroot
    v2 = remote.publish("2.0")
    marker = workdir / "rebooted"
    (sr / "etc/hybridos").mkdir(parents=True)
    (sr / "etc/hybridos/hybridosd.conf").write_text(f"[Daemon]\nRebootCommand=touch {marker}\n")
    hyb(sr, "upgrade", "--lock-finalization", env=system.env)
    assert (system.run / "ostree/staged-deployment-locked").exists()      # what ostree < 2023.8 reads
    assert parse_state(system.staged_file.read_bytes()).locked
    deps = _status(system)
    assert deps[0]["staged"] and deps[0]["finalization-locked"] is True
    assert "Staged: yes (finalization locked)" in hyb(sr, "status", env=system.env).stdout

    # shutdown leaves a locked deployment alone: the next boot is still v1, and the staged one is dropped
    out = hyb(sr, "finalize-staged", env=system.env).stdout
    assert "Not finalizing; deployment is locked for finalization" in out
    assert _boot_order(sr) == [v1] and system.staged_file.exists()

    # finalize-deployment wants the staged commit, unlocks it and reboots through the configured command
    r = hyb(sr, "finalize-deployment", v1, env=system.env, check=False)
    assert r.returncode == 1 and "Expected staged base checksum" in r.stderr and not marker.exists()
    r = hyb(sr, "finalize-deployment", env=system.env, check=False)
    assert r.returncode == 1 and "CHECKSUM must be specified" in r.stderr   # a usage error, as rpm-ostree
    out = hyb(sr, "finalize-deployment", v2, env=system.env).stdout
    assert f"rebooting into {v2}" in out and marker.exists()
    assert not parse_state(system.staged_file.read_bytes()).locked
    r = hyb(sr, "finalize-deployment", v2, env=system.env, check=False)
    assert r.returncode == 1 and "already unlocked" in r.stderr
    hyb(sr, "finalize-staged", env=system.env)
    assert _boot_order(sr) == [v2, v1]

    # admin lock-finalization toggles it as ostree's does
    v3 = remote.publish("3.0")
    system.boot()
    hyb(sr, "upgrade", env=system.env)
    hyb(sr, "admin", "lock-finalization", env=system.env)
    assert "Not finalizing" in hyb(sr, "finalize-staged", env=system.env).stdout
    hyb(sr, "admin", "lock-finalization", "--unlock", env=system.env)
    hyb(sr, "finalize-staged", env=system.env)
    assert _boot_order(sr)[0] == v3


def test_a_reboot_without_finalization_forgets_the_staged_deployment(running):
    system, remote, v1 = running
    sr = system.sysroot
    remote.publish("2.0")
    hyb(sr, "upgrade", env=system.env)
    staged = system.load().staged
    system.boot()                      # power loss: /run is gone, the boot entries never changed
    assert system.booted.checksum == v1 and _boot_order(sr) == [v1]
    assert [d["checksum"] for d in _status(system)] == [v1]
    assert (sr / staged.relpath).exists()              # left behind until the next cleanup
    hyb(sr, "cleanup", "-b", env=system.env)
    assert not (sr / staged.relpath).exists() and not (sr / staged.origin_relpath).exists()
    check_consistent(sr)


def test_failed_finalization_is_reported_on_the_next_boot(running):
    system, remote, v1 = running
    sr = system.sysroot
    remote.publish("2.0")
    hyb(sr, "upgrade", env=system.env)
    staged = system.load().staged
    kernel = next((sr / staged.relpath / "usr/lib/modules").iterdir()) / "vmlinuz"
    kernel.unlink()                    # the staged tree lost its kernel: writing its boot entry fails
    r = hyb(sr, "finalize-staged", env=system.env, check=False)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert _boot_order(sr) == [v1]
    check_consistent(sr)

    system.boot()
    out = hyb(sr, "status", env=system.env).stdout
    assert out.splitlines()[1] == "Warning: failed to finalize previous deployment"
    assert "has no kernel" in out.splitlines()[2]
    r = hyb(sr, "admin", "boot-complete", env=system.env, check=False)
    assert r.returncode == 1 and "finalize-staged failed on previous boot" in r.stderr and "no kernel" in r.stderr
    hyb(sr, "admin", "boot-complete", env=system.env)      # reported once
    assert "Warning" not in hyb(sr, "status", env=system.env).stdout


def test_an_immediate_change_drops_the_staged_deployment(running):
    system, remote, v1 = running
    sr = system.sysroot
    remote.publish("2.0")
    hyb(sr, "upgrade", env=system.env)
    staged = system.load().staged
    hyb(sr, "rollback", env=system.env, check=False)   # nothing to roll back to but the staged one is dropped
    hyb(sr, "cleanup", "-p", env=system.env)
    assert not system.staged_file.exists() and not (sr / staged.relpath).exists()
    assert _boot_order(sr) == [v1]


STAGE_STEPS = ("prepare", "checkout", "etc-merge", "origin", "stage")
FINALIZE_STEPS = ("etc-merge", "boot-files", "bls-entries", "bootlinks", "deployment-refs", "bootloader", "swap",
                  "post-swap", "cleanup")


def _killed_at(system, step, *args) -> subprocess.CompletedProcess:
    r = hyb(system.sysroot, *args, env={**system.env, "HYBRIDOS_TEST_ABORT_AT": step}, check=False)
    assert r.returncode == -9, (step, r.returncode, r.stderr)
    return r


def _after_crash(system, v1, v2) -> str:
    """Reboot after a crash: the sysroot loads, its default is v1 or v2, ostree agrees; a cleanup tidies up."""
    sr = system.sysroot
    system.boot()
    order = _boot_order(sr)
    assert order[0] in (v1, v2) and v1 in order
    check_consistent(sr)
    listing = ostree("admin", "status", f"--sysroot={sr}").stdout
    assert listing.split("\n")[0].split()[-1].split(".")[0] == order[0]
    hyb(sr, "cleanup", "-b", env=system.env)
    deploy_dir = sr / "ostree/deploy/testos/deploy"
    assert sorted(n for n in os.listdir(deploy_dir) if not n.endswith(".origin")) == sorted(
        d.name for d in Sysroot.load(sr).deployments)
    return order[0]


@pytest.mark.parametrize("step", STAGE_STEPS)
def test_sigkill_while_staging_leaves_the_old_default(running, step):
    system, remote, v1 = running
    v2 = remote.publish("2.0")
    _killed_at(system, step, "upgrade")
    assert _after_crash(system, v1, v2) == v1


@pytest.mark.parametrize("step", FINALIZE_STEPS)
def test_sigkill_while_finalizing_leaves_old_or_new(running, step):
    system, remote, v1 = running
    v2 = remote.publish("2.0")
    hyb(system.sysroot, "upgrade", env=system.env)
    _killed_at(system, step, "finalize-staged")
    default = _after_crash(system, v1, v2)
    assert default == (v2 if step in ("post-swap", "cleanup") else v1)
    # and the next upgrade works from there
    if default == v1:
        hyb(system.sysroot, "upgrade", env=system.env)
        hyb(system.sysroot, "finalize-staged", env=system.env)
        assert _boot_order(system.sysroot)[0] == v2


def test_kargs_on_the_running_system_are_staged_with_the_whole_command_line(running):
    system, remote, v1 = running
    sr = system.sysroot
    hyb(sr, "kargs", "--append", "quiet", "--delete", "rw", env=system.env)
    state = parse_state(system.staged_file.read_bytes())
    assert state.kargs == ("root=/dev/vda1", "quiet") and state.target.checksum == v1
    assert _boot_order(sr) == [v1] and "quiet" not in Sysroot.load(sr).deployments[0].kargs
    hyb(sr, "finalize-staged", env=system.env)
    s = Sysroot.load(sr)
    assert [d.kargs for d in s.deployments] == ["root=/dev/vda1 quiet", "root=/dev/vda1 rw"]
