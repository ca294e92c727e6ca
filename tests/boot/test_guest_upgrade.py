"""Upgrade and rollback run by the guest itself, across real reboots.

The image carries hybridos (its Python and dependencies as RPMs, :mod:`tests.helpers.guest_python`). The
machine boots GRUB i386-pc (BIOS) from an MBR disk with a separate /boot; every reboot is a real one (firmware,
then GRUB reading the configuration the guest's own hybridos wrote), all in one QEMU run. The guest boots v1,
edits ``/etc``, writes ``/var``, makes ``/sysroot`` read-only (a read-only bind mount, as ostree's
``sysroot.readonly``) and mounts ``/boot`` read-only (the filesystem itself), runs ``hybridos upgrade`` against
the repository on a second virtio disk and reboots; GRUB brings it back in v2, which runs ``hybridos rollback``
and reboots into v1. The boot test init (:mod:`tests.boot.distro`) prints each boot's marker: the version from
the deployment's own os-release and the ``/etc`` and ``/var`` contents, which must survive both reboots.
The upgrade is staged (the guest is the running system); ``/etc`` is edited after staging and the guest runs
``hybridos finalize-staged`` on its way down, as the shutdown unit would: v2 comes up with that edit.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from tests.boot.conftest import REF_GUEST as REF
from tests.boot.disk import ext4_image
from tests.boot.images import SETUPS, image_for
from tests.boot.qemu import boot
from tests.boot.sysroot import deploy_sysroot, write_var_data
from tests.conftest import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.tool("grub-mkimage", "mkfs.ext4", "sfdisk")]

BUSYBOX = Path("/bin/busybox")
KARGS = ["root=LABEL=root", "rw", "console=ttyS0", "panic=10", "hybridos.fail-delay=1"]
#: GRUB i386-pc on SeaBIOS, MBR disk with a separate /boot (tests/boot/images.py)
SETUP = "grub-bios-separate-boot"
BOOT_TIMEOUT = 600      #: all three boots (KVM: well under a minute; TCG: a few minutes)

#: /etc/boottest/run: one step per boot, the stage kept in /var
GUEST_STEPS = textwrap.dedent(r"""    #!/bin/sh
    # boot-guest: upgrade, then rollback, from inside the guest; one step per boot
    export PATH=/usr/sbin:/usr/bin
    stage_file=/var/lib/boottest/stage
    stage=$(cat $stage_file 2>/dev/null || echo 0)
    step() { echo "GUEST-STEP $*"; }
    fail() { step "failed: $*"; sync; poweroff -f; }
    # /boot: the boot partition when there is one (fstab's job; read-only, the filesystem itself), else
    # /sysroot/boot (ostree-prepare-root's bind mount)
    if ! [ -L /boot/loader ]; then
        bootdev=$(findfs LABEL=boot 2>/dev/null)
        if [ -n "$bootdev" ]; then mount -o ro "$bootdev" /boot; else mount --bind /sysroot/boot /boot; fi
    fi
    # read-only for everyone, as with ostree's sysroot.readonly: hybridos remounts them for itself only
    mount -o remount,bind,ro /sysroot && mount -o remount,bind,ro /boot || fail "read-only mounts"
    mkdir -p /run/repo && mount -o ro "$(findfs LABEL=hybrepo)" /run/repo || fail "mount the repository disk"
    step "stage=$stage"
    case $stage in
    0)
        echo written-in-guest > /var/lib/boottest/data
        hybridos upgrade || fail "upgrade"
        hybridos status --json | grep -q '"staged": true' || fail "the upgrade was not staged"
        # edited after staging: finalization at shutdown merges the /etc of that moment
        echo edited-in-guest > /etc/boottest.conf
        touch /sysroot/.rw-probe 2>/dev/null && fail "/sysroot became writable for everyone"
        touch /boot/.rw-probe 2>/dev/null && fail "/boot became writable for everyone"
        echo 1 > $stage_file
        ;;
    1)
        hybridos status
        hybridos rollback || fail "rollback"
        echo 2 > $stage_file
        ;;
    *)
        hybridos status --json > /run/status.json && step "status $(tr -d '\n' < /run/status.json)"
        step "done"
        exit 0
        ;;
    esac
    step "rebooting"
    umount /run/repo
    # what hybridos-finalize-staged.service's ExecStop does on the way down (this init has no systemd)
    hybridos finalize-staged || fail "finalize-staged"
    sync
    reboot -f
    """)


def test_guest_upgrades_and_rolls_back_across_reboots(tmp_path, guest_versions):
    root = tmp_path / "sysroot"
    prepare, options = SETUPS[SETUP]
    dep = deploy_sysroot(root, guest_versions.v1, KARGS, options=options, prepare=prepare)
    # the guest sees the repository at /run/repo (its second disk)
    run_cli("--sysroot", str(root), "repo", "remote", "add", "--force", "--no-gpg-verify", "origin",
            "file:///run/repo", REF)
    write_var_data(root, "written-before-boot")
    run = dep / "etc/boottest/run"
    run.parent.mkdir(parents=True, exist_ok=True)
    run.write_text(GUEST_STEPS)
    run.chmod(0o755)
    spec = image_for(SETUP, tmp_path, root)
    spec.machine.memory_mb = 768
    repo_disk = ext4_image(tmp_path / "repo.ext4", guest_versions.v2.repo, "hybrepo")

    # one machine, three boots: GRUB picks whatever the guest made the default before rebooting
    result = boot(spec.machine, [*spec.disks, repo_disk], tmp_path, timeout=BOOT_TIMEOUT, allow_reboot=True)
    assert "GUEST-STEP failed" not in result.console and "Traceback" not in result.console, result.tail(60)
    result.expect(r"GUEST-STEP done", "the guest's last step")
    assert not result.timed_out and result.returncode == 0, result.tail()
    assert [(m["version"], m["etc"], m["var"], m["usr"], m["ostree-booted"]) for m in result.markers()] == [
        ("1", "from-image-1", "written-before-boot", "ro", "yes"),     # v1 as deployed; the guest edits, upgrades
        ("2", "edited-in-guest", "written-in-guest", "ro", "yes"),     # v2 chosen after the reboot; rolls back
        ("1", "edited-in-guest", "written-in-guest", "ro", "yes"),     # v1 again
    ], result.tail(60)
    assert [int(m) for m in re.findall(r"GUEST-STEP stage=(\d)", result.console)] == [0, 1, 2]
    status = json.loads(result.expect(r"GUEST-STEP status (\{.*\})", "the final status").group(1))
    assert [(d["checksum"], d["booted"]) for d in status["deployments"]] == [
        (guest_versions.v1.commit, True), (guest_versions.v2.commit, False)]
