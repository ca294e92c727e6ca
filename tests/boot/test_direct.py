"""Direct kernel boot (QEMU ``-kernel``) of a deployment with its BLS entry's kernel, initramfs and options."""

from __future__ import annotations

import pytest

from tests.boot.images import direct
from tests.boot.qemu import boot
from tests.boot.sysroot import deploy_sysroot, write_var_data

pytestmark = pytest.mark.slow
KARGS = ["root=LABEL=root", "rw", "console=ttyS0", "panic=10", "hybridos.fail-delay=1"]


def test_direct_kernel_boot_reaches_the_deployments_userspace(tmp_path, x86_composed):
    root = tmp_path / "sysroot"
    deploy_sysroot(root, x86_composed, KARGS)
    write_var_data(root, "written-before-boot")
    spec = direct(tmp_path, root)
    result = boot(spec.machine, spec.disks, tmp_path, timeout=180, **spec.boot_args)
    m = result.expect(r"HYBRIDOS-BOOT-MARKER .*", "the deployment's marker")
    assert result.markers() == [{"version": "1", "ostree-booted": "yes", "usr": "ro",
                                 "var": "written-before-boot", "etc": "from-image-1"}], m.group(0)
    assert not result.timed_out and result.returncode == 0, result.tail()


def test_initramfs_that_cannot_find_root_reboots_by_itself(tmp_path, x86_composed):
    root = tmp_path / "sysroot"
    deploy_sysroot(root, x86_composed, KARGS)
    spec = direct(tmp_path, root)
    spec.boot_args["append"] = spec.boot_args["append"].replace("root=LABEL=root", "root=LABEL=nosuchroot") \
        + " rd.timeout=3"
    # -no-reboot: the guest's reboot ends QEMU, long before the hard timeout
    result = boot(spec.machine, spec.disks, tmp_path, timeout=180, **spec.boot_args)
    result.expect(r"root device LABEL=nosuchroot did not appear within 3 s", "the initramfs's failure")
    result.expect(r"rebooting in 1 seconds", "the reboot announcement")
    assert not result.timed_out and result.returncode == 0, result.tail()
    assert result.markers() == []
