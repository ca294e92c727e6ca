"""Automatic updates: each AutomaticUpdatePolicy over a real HTTP remote, with and without an update, as
``hybridos-automatic.service`` runs them (``upgrade --trigger-automatic-update-policy``) on the running system
(a stand-in sysroot: tests/sysroot/staged.py)."""

from __future__ import annotations

import json

import pytest

from hybridos.sysroot.lock import SysrootLock
from hybridos.sysroot.sysroot import Sysroot
from tests.sysroot.conftest import hyb, make_tree, ostree
from tests.sysroot.staged import RunningSystem

TRIGGER = ("upgrade", "--quiet", "--trigger-automatic-update-policy")
PKGLIST = "[('bash', '0', '5.2.15', '2.fc39', 'x86_64'), ('zlib', '0', '1.3', '1.fc39', 'x86_64')]"


@pytest.fixture
def running(host, workdir):
    sr, remote, v1 = host
    return RunningSystem(sr, workdir / "machine"), remote, v1


def publish_with_pkglist(remote, version: str) -> str:
    """A commit whose metadata lists its packages (as rpm-ostree compose writes rpmostree.rpmdb.pkglist)."""
    remote.n += 1
    tree = make_tree(remote.base / f"tree{remote.n}", version)
    csum = ostree(f"--repo={remote.path}", "commit", "--branch=testos/stable", f"--add-metadata-string=version={version}",
                  f"--add-metadata=rpmostree.rpmdb.pkglist={PKGLIST}", str(tree)).stdout.strip()
    ostree(f"--repo={remote.path}", "summary", "-u")
    return csum


def configure(sr, policy: str, *, name: str = "etc/hybridos/hybridosd.conf", extra: str = "") -> None:
    path = sr / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# written by the test\n[Daemon]\nAutomaticUpdatePolicy={policy}\n{extra}")


def _order(sr) -> list[str]:
    return [d.checksum for d in Sysroot.load(sr).deployments]


def _remote_ref(sr) -> str:
    return (sr / "ostree/repo/refs/remotes/origin/testos/stable").read_text().strip()


def test_policy_none_does_nothing(running):
    system, remote, v1 = running
    sr = system.sysroot
    publish_with_pkglist(remote, "2.0")
    for conf in (None, "none", "off"):
        if conf:
            configure(sr, conf)
        r = hyb(sr, *TRIGGER, env=system.env)
        assert r.stdout.strip() == "Automatic updates are not enabled; exiting..."
    assert _remote_ref(sr) == v1 and _order(sr) == [v1]
    assert "AutomaticUpdates" not in hyb(sr, "status", env=system.env).stdout
    assert "AutomaticUpdates: disabled" in hyb(sr, "status", "-v", env=system.env).stdout


def test_check_without_and_with_an_update(running):
    system, remote, v1 = running
    sr = system.sysroot
    configure(sr, "check")
    assert "hybridos-automatic.timer: inactive" in hyb(sr, "status", env=system.env).stdout
    r = hyb(sr, *TRIGGER, env=system.env)
    assert r.returncode == 0 and "No updates available." in r.stdout
    assert "AvailableUpdate" not in hyb(sr, "status", env=system.env).stdout

    v2 = publish_with_pkglist(remote, "2.0")
    out = hyb(sr, *TRIGGER, env=system.env).stdout
    assert "AvailableUpdate:" in out and f"Commit: {v2}" in out
    # metadata only: the ref moved, nothing is deployed or staged, the commit's content is not here
    assert _remote_ref(sr) == v2 and _order(sr) == [v1] and not system.staged_file.exists()
    assert (sr / f"ostree/repo/state/{v2}.commitpartial").exists()
    status = hyb(sr, "status", env=system.env).stdout.splitlines()
    assert status[0] == "State: idle"
    assert status[1].startswith("AutomaticUpdates: check; hybridos-automatic.timer: last run ")
    assert status[1].endswith(" ago")
    block = status[status.index("AvailableUpdate:"):]
    assert block[1].startswith("        Version: 2.0 (") and block[2] == f"         Commit: {v2}"
    assert block[3] == "           Diff: 2 added"
    cached = json.loads(hyb(sr, "status", "--json", env=system.env).stdout)["cached-update"]
    assert cached["checksum"] == v2 and cached["version"] == "2.0" and cached["update-sha256"] == v1
    assert [e[1] for e in cached["rpm-diff"]["added"]] == ["bash", "zlib"]


def test_stage_without_and_with_an_update(running):
    system, remote, v1 = running
    sr = system.sysroot
    configure(sr, "stage")
    assert "No updates available." in hyb(sr, *TRIGGER, env=system.env).stdout
    assert not system.staged_file.exists()
    v2 = publish_with_pkglist(remote, "2.0")
    out = hyb(sr, *TRIGGER, env=system.env).stdout
    assert "for finalization at shutdown" in out
    deps = json.loads(hyb(sr, "status", "--json", env=system.env).stdout)["deployments"]
    assert [(d["checksum"], d["staged"]) for d in deps] == [(v2, True), (v1, False)]
    assert _order(sr) == [v1]                                  # boot entries untouched until shutdown
    status = hyb(sr, "status", env=system.env).stdout
    assert "AutomaticUpdates: stage; hybridos-automatic.timer: last run" in status
    assert "AvailableUpdate" not in status                     # shown as the staged deployment instead
    # a manual upgrade notes the policy
    assert "note: automatic updates (stage) are enabled" in hyb(sr, "upgrade", env=system.env).stderr


def test_apply_stages_and_reboots_through_the_configured_command(running, workdir):
    system, remote, v1 = running
    sr = system.sysroot
    marker = workdir / "rebooted"
    configure(sr, "apply", extra=f"RebootCommand=touch {marker}\n")
    assert "No updates available." in hyb(sr, *TRIGGER, env=system.env).stdout
    assert not marker.exists()
    v2 = publish_with_pkglist(remote, "2.0")
    hyb(sr, *TRIGGER, env=system.env)
    assert marker.exists()
    assert system.load().staged.checksum == v2
    hyb(sr, "finalize-staged", env=system.env)                # the reboot's shutdown
    assert _order(sr) == [v2, v1]


def test_rpm_ostreed_conf_is_read_when_ours_is_absent(running):
    system, remote, v1 = running
    sr = system.sysroot
    v2 = publish_with_pkglist(remote, "2.0")
    configure(sr, "check", name="etc/rpm-ostreed.conf")
    assert f"Commit: {v2}" in hyb(sr, *TRIGGER, env=system.env).stdout
    configure(sr, "none")                                       # ours wins
    assert "not enabled" in hyb(sr, *TRIGGER, env=system.env).stdout


def test_unknown_policy_names_the_file_and_line(running):
    system, remote, v1 = running
    sr = system.sysroot
    configure(sr, "weekly")
    r = hyb(sr, *TRIGGER, env=system.env, check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[0] == (f"error: {sr}/etc/hybridos/hybridosd.conf:3: Invalid value for "
                                        "AutomaticUpdatePolicy: 'weekly' (use none, check, stage or apply)")


def test_timer_firing_during_a_transaction_skips(running):
    system, remote, v1 = running
    sr = system.sysroot
    configure(sr, "stage")
    publish_with_pkglist(remote, "2.0")
    with SysrootLock(sr):
        r = hyb(sr, *TRIGGER, env=system.env)
    assert r.returncode == 0 and "Automatic update skipped" in r.stdout and "running a transaction" in r.stdout
    assert not system.staged_file.exists() and _remote_ref(sr) == v1


def test_stage_on_an_offline_sysroot_is_refused(running):
    system, remote, v1 = running
    configure(system.sysroot, "stage")
    publish_with_pkglist(remote, "2.0")
    r = hyb(system.sysroot, *TRIGGER, check=False)
    assert r.returncode == 1 and "Cannot trigger auto-update for offline OS" in r.stderr
    assert _order(system.sysroot) == [v1]
