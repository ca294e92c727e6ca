"""Staged deployments shared with the real ostree (2022.7 here), run as on a booted system
(tests/sysroot/booted_ostree.py): each reads and finalizes what the other staged."""

from __future__ import annotations

import pytest

from hybridos.sysroot.sysroot import Sysroot
from tests.conftest import require_tool
from tests.sysroot.booted_ostree import run_booted_ostree
from tests.sysroot.conftest import check_consistent, hyb, ostree
from tests.sysroot.staged import RunningSystem

pytestmark = pytest.mark.tool("ostree", "unshare", "chroot")


@pytest.fixture
def running(host, workdir):
    for tool in ("unshare", "chroot"):
        require_tool(tool)
    sr, remote, v1 = host
    return RunningSystem(sr, workdir / "machine"), remote, v1


def _order(sr) -> list[str]:
    return [d.checksum for d in Sysroot.load(sr).deployments]


def _ostree_lines(system) -> list[str]:
    out = run_booted_ostree(system, "admin", "status").stdout
    return [line for line in out.splitlines() if line.startswith(("*", "  testos"))]


def test_ostree_lists_our_staged_deployment_and_finalizes_it(running):
    system, remote, v1 = running
    sr = system.sysroot
    v2 = remote.publish("2.0", etc={"app.conf": "a=2\n"})
    hyb(sr, "upgrade", env=system.env)
    assert _ostree_lines(system) == [f"  testos {v2}.0 (staged)", f"* testos {v1}.0"]

    (sr / system.booted.relpath / "etc/app.conf").write_text("edited after staging\n")
    run_booted_ostree(system, "admin", "finalize-staged")
    assert not system.staged_file.exists()
    assert _order(sr) == [v2, v1]
    check_consistent(sr)
    system.boot()
    assert (sr / system.booted.relpath / "etc/app.conf").read_text() == "edited after staging\n"
    assert _ostree_lines(system) == [f"* testos {v2}.0", f"  testos {v1}.0 (rollback)"]


def test_ostree_keeps_our_locked_deployment(running):
    system, remote, v1 = running
    remote.publish("2.0")
    hyb(system.sysroot, "upgrade", "--lock-finalization", env=system.env)
    out = run_booted_ostree(system, "admin", "finalize-staged")
    assert out.returncode == 0
    assert _order(system.sysroot) == [v1] and system.staged_file.exists()


def test_we_finalize_what_ostree_staged(running):
    system, remote, v1 = running
    sr = system.sysroot
    v2 = remote.publish("2.0", etc={"app.conf": "a=2\n"})
    ostree(f"--repo={sr}/ostree/repo", "pull", "origin", "testos/stable")
    run_booted_ostree(system, "admin", "deploy", "--stage", "origin:testos/stable")
    deps = system.load().deployments
    assert [(d.checksum, d.staged, d.booted) for d in deps] == [(v2, True, False), (v1, False, True)]
    assert "Staged: yes" in hyb(sr, "status", env=system.env).stdout

    (sr / system.booted.relpath / "etc/app.conf").write_text("edited after staging\n")
    out = hyb(sr, "finalize-staged", env=system.env).stdout
    assert "Copying /etc changes: 1 modified" in out
    assert _order(sr) == [v2, v1]
    check_consistent(sr)
    system.boot()
    assert (sr / system.booted.relpath / "etc/app.conf").read_text() == "edited after staging\n"
    assert _ostree_lines(system) == [f"* testos {v2}.0", f"  testos {v1}.0 (rollback)"]


def test_we_keep_what_ostree_staged_locked(running):
    system, remote, v1 = running
    sr = system.sysroot
    remote.publish("2.0")
    ostree(f"--repo={sr}/ostree/repo", "pull", "origin", "testos/stable")
    run_booted_ostree(system, "admin", "deploy", "--stage", "--lock-finalization", "origin:testos/stable")
    assert "Not finalizing" in hyb(sr, "finalize-staged", env=system.env).stdout
    assert _order(sr) == [v1]
