"""hybridos from its own RPMs, running on a (simulated) booted host: status, upgrade and rollback inside the
deployment, with ``/sysroot`` and ``/boot`` read-only, across "reboots" into the new default deployment.

The deployment is entered as the initramfs enters it (see :func:`tests.guest.conftest.run_booted`); nothing of the
host's Python is visible there. The QEMU test in tests/boot does the same across real reboots.
"""

from __future__ import annotations

import json
import os

import pytest

from hybridos.sysroot.mounts import ensure_writable, is_booted_root
from tests.guest.conftest import STATEROOT, make_sysroot, run_booted

pytestmark = pytest.mark.slow


def test_hybridos_runs_from_its_own_rpms_on_a_booted_deployment(tmp_path, guest_os):
    guest_os.compose("v1")
    sr = make_sysroot(tmp_path / "sysroot", guest_os.repo)
    out = run_booted(sr, """
        hybridos --version
        python3 -c 'import sys, hybridos, solv, zstandard, cryptography, yaml, zlib_ng; print(sys.prefix, hybridos.__file__)'
        hybridos plugins --json > /run/plugins.json; cat /run/plugins.json
        echo ===; hybridos status --json
        """).stdout
    assert out.startswith("hybridos, version ")
    assert "/usr /usr/lib/python3.11/site-packages/hybridos/__init__.py" in out
    plugins, status = out.split("===\n")
    assert "hybridos-bootloader-grub" in plugins and "hybridos-repo-fs" in plugins
    deps = json.loads(status)["deployments"]
    assert [d["booted"] for d in deps] == [True]
    assert deps[0]["osname"] == STATEROOT


def test_booted_upgrade_and_rollback_keep_etc_and_var(tmp_path, guest_os):
    v1 = guest_os.compose("v1")
    sr = make_sysroot(tmp_path / "sysroot", guest_os.repo)
    v2 = guest_os.compose("v2")

    # boot v1: /sysroot and /boot are read-only for everyone; hybridos makes them writable for itself only.
    # The upgrade is staged; /etc is edited after it; shutdown (finalize-staged) carries the edit over
    out = run_booted(sr, """
        cat /usr/lib/guest-marker
        echo data > /var/guest-data
        ! touch /sysroot/x 2>/dev/null
        hybridos upgrade
        test -s /run/ostree/staged-deployment
        echo edited > /etc/guest.conf
        hybridos finalize-staged
        ! touch /sysroot/x 2>/dev/null && ! touch /boot/x 2>/dev/null && echo still read-only
        """, repo=guest_os.repo).stdout
    assert out.startswith("v1\n")
    assert f"-> {v2[:12]}" in out and out.rstrip().endswith("still read-only")

    # reboot into the new default: v2 with the /etc edit and the /var data; then roll back
    out = run_booted(sr, """
        cat /usr/lib/guest-marker /etc/guest.conf /var/guest-data
        hybridos status --json > /run/s.json && cat /run/s.json
        hybridos rollback
        """).stdout
    assert out.startswith("v2\nedited\ndata\n")
    status = json.loads(out[out.index("{"):out.rindex("}") + 1])["deployments"]
    assert [(d["checksum"], d["booted"]) for d in status] == [(v2, True), (v1, False)]

    # reboot into v1 again: still the edits and the data
    out = run_booted(sr, "cat /usr/lib/guest-marker /etc/guest.conf /var/guest-data; hybridos status --json").stdout
    assert out.startswith("v1\nedited\ndata\n")
    status = json.loads(out[out.index("{"):])["deployments"]
    assert [(d["checksum"], d["booted"]) for d in status] == [(v1, True), (v2, False)]


def test_not_booted_roots_are_left_alone(tmp_path):
    # a temporary sysroot is never "booted", so nothing is remounted and no namespace is created
    assert not is_booted_root(tmp_path)
    assert ensure_writable(tmp_path) == []
    if not os.path.exists("/run/ostree-booted"):
        assert not is_booted_root("/")


def test_two_upgrades_in_one_boot_keep_the_running_deployment(tmp_path, guest_os):
    # after two swaps in one boot the command line's bootlink (ostree=/ostree/boot.1/<os>/<bootcsum>/0) exists
    # again but leads to the newest deployment: the booted one is still the directory that is "/", and it stays
    v1 = guest_os.compose("v1")
    sr = make_sysroot(tmp_path / "sysroot", guest_os.repo)
    v2 = guest_os.compose("v2")
    v3 = guest_os.compose("v3")
    out = run_booted(sr, f"""
        hybridos deploy {v2} > /dev/null && hybridos finalize-staged > /dev/null
        hybridos upgrade > /dev/null && hybridos finalize-staged > /dev/null
        hybridos status --json
        """, repo=guest_os.repo).stdout
    status = json.loads(out)["deployments"]
    assert [(d["checksum"], d["booted"]) for d in status] == [(v3, False), (v1, True)]


def test_booted_without_boot_mounted_is_a_clear_error(tmp_path, guest_os):
    guest_os.compose("v1")
    sr = make_sysroot(tmp_path / "sysroot", guest_os.repo)
    proc = run_booted(sr, "hybridos status", boot=False, check=False)
    assert proc.returncode == 1
    assert "error: /run/ostree-booted exists but /boot/loader does not" in proc.stderr
    assert "Traceback" not in proc.stderr
