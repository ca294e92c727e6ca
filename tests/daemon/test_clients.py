"""Cockpit's and GNOME Software's call sequences (docs: ../shared/specs/daemon-dbus.md), replayed with gdbus and
busctl against hybridosd serving a sysroot composed from real RPMs whose origin is a real remote on 127.0.0.1."""

from __future__ import annotations

import pytest

from tests.conftest import require_tool
from tests.daemon.bus import (
    BUS_NAME,
    OS_IFACE,
    SYSROOT_OBJ,
    busctl,
    call_os,
    deployments,
    gdbus,
    os_object,
    os_txn,
    prop_json,
    serving,
)

pytestmark = pytest.mark.slow

SYSROOT_IFACE = "org.projectatomic.rpmostree1.Sysroot"


def _ok(signals: str) -> None:
    assert ".Finished (true, '')" in signals, signals


def test_cockpit_sequence(rpm_host):
    require_tool("dbus-daemon", "busctl", "gdbus")
    h = rpm_host
    with serving(h.sysroot) as (bus, daemon):
        busctl(bus, "call", BUS_NAME, SYSROOT_OBJ, SYSROOT_IFACE, "RegisterClient", "a{sv}", "1", "id", "s",
               "cockpit-ostree")
        managed = gdbus(bus, "call", "--dest", BUS_NAME, "--object-path", "/org/projectatomic/rpmostree1",
                        "--method", "org.freedesktop.DBus.ObjectManager.GetManagedObjects").stdout
        assert "'/org/projectatomic/rpmostree1/testos'" in managed and h.v1 in managed
        [dep] = deployments(bus)
        assert dep["checksum"] == h.v1 and dep["origin"] == "origin:testos/stable" and dep["osname"] == "testos"
        assert prop_json(bus, SYSROOT_OBJ, SYSROOT_IFACE, "ActiveTransaction") == ["", "", ""]
        osobj = os_object(bus)
        assert prop_json(bus, osobj, OS_IFACE, "CachedUpdate") == {}

        # a new commit on the remote: cockpit asks for the update's rpm diff
        h.publish_v2()
        _ok(os_txn(bus, "DownloadUpdateRpmDiff"))
        cached = prop_json(bus, osobj, OS_IFACE, "CachedUpdate")
        assert cached["checksum"]["data"] == h.v2 and cached["version"]["data"] == "2"
        added = cached["rpm-diff"]["data"]["added"]["data"]
        assert [a[1] for a in added] == ["unrequested"]
        diff = call_os(bus, "GetCachedUpdateRpmDiff", "''").stdout
        assert "('unrequested', uint32 0, {'NewPackage': <('unrequested'," in diff

        # deploy that commit (cockpit's "Update"), look at the diff of the two deployments, roll back
        signals = os_txn(bus, "Deploy", f"'{h.v2}'", "{'reboot': <false>}")
        _ok(signals)
        assert "TaskBegin ('Writing boot entries',)" in signals
        new, old = deployments(bus)
        assert new["checksum"] == h.v2 and old["checksum"] == h.v1
        diff = call_os(bus, "GetDeploymentsRpmDiff", f"'{old['id']}'", f"'{new['id']}'").stdout
        assert "'unrequested', uint32 0" in diff
        _ok(os_txn(bus, "Rollback", "{'reboot': <false>}"))
        assert [d["checksum"] for d in deployments(bus)] == [h.v1, h.v2]
        _ok(os_txn(bus, "Cleanup", "['rollback-deploy']"))
        assert [d["checksum"] for d in deployments(bus)] == [h.v1]

        # layer a package (cockpit's package page goes through UpdateDeployment too)
        _ok(os_txn(bus, "UpdateDeployment", "{'install-packages': <['layered-tool']>}",
                   "{'no-pull-base': <true>}"))
        top = deployments(bus)[0]
        assert top["requested-packages"] == ["layered-tool"] and top["base-checksum"] == h.v1
        assert (h.sysroot / f"ostree/deploy/testos/deploy/{top['checksum']}.{top['serial']}"
                / "usr/bin/layered-tool").exists()


def test_gnome_software_sequence(rpm_host):
    require_tool("dbus-daemon", "busctl", "gdbus")
    h = rpm_host
    with serving(h.sysroot) as (bus, daemon):
        booted = os_object(bus)
        got = gdbus(bus, "call", "--dest", BUS_NAME, "--object-path", SYSROOT_OBJ, "--method",
                    f"{SYSROOT_IFACE}.GetOS", "''").stdout
        assert booted in got
        busctl(bus, "call", BUS_NAME, SYSROOT_OBJ, SYSROOT_IFACE, "RegisterClient", "a{sv}", "1", "id", "s",
               "gnome-software")
        busctl(bus, "call", BUS_NAME, SYSROOT_OBJ, SYSROOT_IFACE, "Reload")

        # refresh: metadata, download the update, check
        h.publish_v2()
        _ok(os_txn(bus, "RefreshMd", "{'force': <true>}"))
        _ok(os_txn(bus, "Upgrade", "{'download-only': <true>}"))
        _ok(os_txn(bus, "AutomaticUpdateTrigger", "{'mode': <'check'>}"))
        busctl(bus, "call", BUS_NAME, SYSROOT_OBJ, SYSROOT_IFACE, "Reload")
        cached = prop_json(bus, booted, OS_IFACE, "CachedUpdate")
        assert cached["checksum"]["data"] == h.v2
        assert [a[1] for a in cached["rpm-diff"]["data"]["added"]["data"]] == ["unrequested"]
        assert [d["checksum"] for d in deployments(bus)] == [h.v1]

        # apply from the cache, then install and remove a package
        _ok(os_txn(bus, "Upgrade", "{'cache-only': <true>}"))
        assert [d["checksum"] for d in deployments(bus)] == [h.v2, h.v1]
        assert prop_json(bus, booted, OS_IFACE, "CachedUpdate") == {}
        _ok(os_txn(bus, "UpdateDeployment", "{'install-packages': <['layered-tool']>}",
                   "{'no-pull-base': <true>}"))
        assert deployments(bus)[0]["requested-packages"] == ["layered-tool"]
        _ok(os_txn(bus, "UpdateDeployment", "{'uninstall-packages': <['layered-tool']>}",
                   "{'no-pull-base': <true>}"))
        top = deployments(bus)[0]
        assert top["requested-packages"] == [] and top["checksum"] == h.v2


def test_cockpit_rebase_and_deploy_previews(rpm_host):
    """Cockpit's rebase page: download a target's package list, show its diff, deploy nothing."""
    require_tool("dbus-daemon", "busctl", "gdbus")
    h = rpm_host
    with serving(h.sysroot) as (bus, daemon):
        # not downloaded yet: a clear error, not an empty diff
        missing = call_os(bus, "GetCachedRebaseRpmDiff", "'testos/v2'", "@as []", check=False)
        assert missing.returncode != 0 and "has not been downloaded" in missing.stderr, missing.stderr

        _ok(os_txn(bus, "DownloadRebaseRpmDiff", "'testos/v2'", "@as []"))
        diff = call_os(bus, "GetCachedRebaseRpmDiff", "'testos/v2'", "@as []").stdout
        assert "('unrequested', uint32 0, {'NewPackage': <('unrequested'," in diff, diff
        assert f"'checksum': <'{h.v2}'>" in diff and "'origin': <'origin:testos/v2'>" in diff, diff
        assert [d["checksum"] for d in deployments(bus)] == [h.v1]          # nothing deployed

        # a version of the current branch (cockpit's deploy preview)
        h.publish_v2()
        _ok(os_txn(bus, "DownloadDeployRpmDiff", "'version=2'", "@as []"))
        diff = call_os(bus, "GetCachedDeployRpmDiff", "'version=2'", "@as []").stdout
        assert "'unrequested', uint32 0" in diff and f"'checksum': <'{h.v2}'>" in diff, diff
        gone = call_os(bus, "GetCachedDeployRpmDiff", "'version=9'", "@as []", check=False)
        assert gone.returncode != 0 and "version '9'" in gone.stderr, gone.stderr
        assert [d["checksum"] for d in deployments(bus)] == [h.v1]


def test_gnome_software_switches_a_repository(rpm_host):
    """GNOME Software's repository dialog: ListRepos (disabled ones too), ModifyYumRepo to switch one off and on;
    the .repo file keeps everything else as written, and a switched-off repository is not used."""
    require_tool("dbus-daemon", "busctl", "gdbus")
    h = rpm_host
    [dep] = deployments_on_disk(h.sysroot)
    repo_file = h.sysroot / dep / "etc/yum.repos.d/extras.repo"
    original = repo_file.read_text()
    with serving(h.sysroot) as (bus, daemon):
        listed = call_os(bus, "ListRepos").stdout
        assert "'id': <'extras'>" in listed and "'is-enabled': <true>" in listed, listed
        assert "'description': <'Extras for x86_64'>" in listed, listed

        _ok(os_txn(bus, "ModifyYumRepo", "'extras'", "{'enabled': '0'}"))
        assert repo_file.read_text() == original.replace("[extras]\n", "[extras]\nenabled=0\n", 1)
        listed = call_os(bus, "ListRepos").stdout
        assert "'id': <'extras'>" in listed and "'is-enabled': <false>" in listed, listed
        failed = os_txn(bus, "UpdateDeployment", "{'install-packages': <['layered-tool']>}",
                        "{'no-pull-base': <true>}")
        assert ".Finished (false, 'no enabled package repository (extras: enabled=0)')" in failed, failed

        # only 'enabled', only 0/1, only repositories that exist: refused, file unchanged
        for args, why in ((("'extras'", "{'gpgcheck': '1'}"), "Changing 'gpgcheck' not allowed"),
                          (("'extras'", "{'enabled': 'yes'}"), "Only '0' and '1' are allowed"),
                          (("'nosuch'", "{'enabled': '1'}"), "Yum repo 'nosuch' not found")):
            out = os_txn(bus, "ModifyYumRepo", *args)
            assert ".Finished (false," in out and why in out, out
        _ok(os_txn(bus, "ModifyYumRepo", "'extras'", "{'enabled': '1'}"))
        assert "enabled=1\n" in repo_file.read_text()
        _ok(os_txn(bus, "UpdateDeployment", "{'install-packages': <['layered-tool']>}",
                   "{'no-pull-base': <true>}"))
        assert deployments(bus)[0]["requested-packages"] == ["layered-tool"]


def deployments_on_disk(sysroot):
    from hybridos.sysroot.sysroot import Sysroot

    return [d.relpath for d in Sysroot.load(sysroot).deployments]
