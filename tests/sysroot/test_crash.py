"""Crash safety: each path killed (SIGKILL) as each of its steps starts leaves a sysroot that loads, whose
current boot entries all point to complete deployments, and on which the next upgrade succeeds."""

from __future__ import annotations

import os

import pytest

from hybridos.sysroot.sysroot import Sysroot
from hybridos.sysroot.transaction import ABORT_ENV, Transaction
from tests.sysroot.conftest import STATEROOT, check_consistent, hyb

WRITE_STEPS = ["boot-files", "bls-entries", "bootlinks", "deployment-refs", "bootloader", "swap", "post-swap",
               "cleanup"]
DEPLOY_STEPS = ["prepare", "checkout", "etc-merge", "origin", *WRITE_STEPS]
UPGRADE_STEPS = ["pull", *DEPLOY_STEPS]


def _commits(sr) -> list[str]:
    return [d.checksum for d in Sysroot.load(sr).deployments]


def _no_garbage(sr):
    """After a successful command, nothing unreferenced is left behind by the killed one."""
    s = Sysroot.load(sr)
    names = {d.name for d in s.deployments}
    on_disk = set(os.listdir(sr / f"ostree/deploy/{STATEROOT}/deploy"))
    assert on_disk == names | {n + ".origin" for n in names}
    assert set(os.listdir(sr / "boot")) == {"boot", "loader", f"loader.{s.bootversion}", "ostree"}


def _killed(sr, *args, step):
    r = hyb(sr, *args, check=False, env={ABORT_ENV: step})
    assert r.returncode == -9, (step, r.returncode, r.stderr)


def test_step_lists_are_complete(host):
    from hybridos.operations.deploy import upgrade
    from hybridos.sysroot.upgrade import rollback

    sr, remote, _ = host
    remote.publish("2.0")
    with Transaction(sr, "upgrade") as tx:
        upgrade(Sysroot.load(sr), tx)
    assert tx.steps == UPGRADE_STEPS
    with Transaction(sr, "rollback") as tx:
        rollback(Sysroot.load(sr), tx)
    assert tx.steps == WRITE_STEPS


def test_upgrade_killed_at_each_step(host):
    sr, remote, _ = host
    for i, step in enumerate(UPGRADE_STEPS):
        before = _commits(sr)[0]
        new = remote.publish(f"2.{i}")
        _killed(sr, "upgrade", step=step)
        check_consistent(sr)
        after = _commits(sr)[0]
        assert after == (new if UPGRADE_STEPS.index(step) > UPGRADE_STEPS.index("swap") else before), step
        newer = remote.publish(f"3.{i}")
        hyb(sr, "upgrade")
        assert _commits(sr)[0] == newer
        check_consistent(sr)
        _no_garbage(sr)


@pytest.mark.parametrize("verb", [("rollback",), ("cleanup", "-r"), ("admin", "deploy", "origin:testos/stable")])
def test_other_paths_killed_at_each_step(host, verb):
    sr, remote, _ = host
    remote.publish("2.0")
    hyb(sr, "upgrade")
    steps = DEPLOY_STEPS if verb[0] == "admin" else WRITE_STEPS
    for i, step in enumerate(steps):
        before = _commits(sr)
        _killed(sr, *verb, step=step)
        check_consistent(sr)
        if steps.index(step) <= steps.index("swap"):
            assert _commits(sr) == before, step
        newer = remote.publish(f"4.{i}")
        hyb(sr, "upgrade")
        assert _commits(sr)[0] == newer
        check_consistent(sr)
        _no_garbage(sr)


def test_upgrade_killed_at_arbitrary_moments(host):
    """SIGKILL at fractions of a measured upgrade's duration: mid-step kills must be as harmless."""
    import signal
    import subprocess
    import sys
    import time

    sr, remote, _ = host
    remote.publish("2.0")
    t0 = time.monotonic()
    hyb(sr, "upgrade")
    duration = time.monotonic() - t0
    for i, fraction in enumerate((0.4, 0.7, 0.9)):
        newer = remote.publish(f"3.{i}")
        proc = subprocess.Popen([sys.executable, "-m", "hybridos", "--sysroot", str(sr), "upgrade"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(duration * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check_consistent(sr)
        r = hyb(sr, "upgrade", check=False)
        assert r.returncode == 0, r.stderr
        assert _commits(sr)[0] == newer
        check_consistent(sr)
        _no_garbage(sr)


def test_nothing_to_do_after_a_kill_past_the_swap_still_removes_leftovers(host):
    """Killed after the swap, before its cleanup: the new deployment is the default, so the next upgrade has
    nothing to do; it still removes the deployment the killed run replaced."""
    sr, remote, _ = host
    remote.publish("2.0")
    hyb(sr, "upgrade")
    new = remote.publish("3.0")
    _killed(sr, "upgrade", step="cleanup")
    assert _commits(sr)[0] == new
    r = hyb(sr, "upgrade", check=False)
    assert r.returncode == 0 and "no upgrade available" in r.stdout + r.stderr, r
    assert "leftover" in r.stdout + r.stderr, r
    check_consistent(sr)
    _no_garbage(sr)
