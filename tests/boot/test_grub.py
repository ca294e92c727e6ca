"""Real GRUB 2 (Debian's images) boots deployments: i386-pc BIOS with a separate /boot and with /boot on /,
x86_64 EFI on OVMF; a broken new deployment falls back to the previous one through GRUB's boot counting."""

from __future__ import annotations

import pytest

from tests.boot.images import SETUPS, grub_bios, image_for
from tests.boot.qemu import boot
from tests.boot.sysroot import deploy_sysroot, write_var_data
from tests.conftest import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.tool("grub-mkimage", "mkfs.ext4", "sfdisk")]
KARGS = ["root=LABEL=root", "rw", "console=ttyS0", "panic=10", "hybridos.fail-delay=1"]
EXPECTED = {"version": "1", "ostree-booted": "yes", "usr": "ro", "var": "grub-data", "etc": "from-image-1"}


@pytest.mark.parametrize("setup", ["grub-bios-separate-boot", "grub-bios-boot-on-root", "grub-efi"])
def test_grub_boots_the_deployment(tmp_path, x86_composed, setup):
    root = tmp_path / "sysroot"
    prepare, options = SETUPS[setup]
    deploy_sysroot(root, x86_composed, KARGS, options=options, prepare=prepare)
    write_var_data(root, "grub-data")
    if setup == "grub-efi":
        cfg = (root / "boot/efi/EFI/testos/grub.cfg").read_text()
        assert "linux /boot/ostree/" in cfg and "linux16" not in cfg
    spec = image_for(setup, tmp_path, root)
    result = boot(spec.machine, spec.disks, tmp_path, timeout=420)
    result.expect(r"TestOS 1", "GRUB's menu on the serial console (grub-serial)")
    result.expect(r"HYBRIDOS-BOOT-MARKER", "the deployment's marker")
    assert result.markers() == [EXPECTED], result.tail()
    assert "no such device" not in result.console


def test_broken_new_deployment_falls_back_through_grub_boot_counting(tmp_path, x86_composed):
    """v2's initramfs cannot find its root: it reboots by itself, and GRUB's boot counting boots v1."""
    root = tmp_path / "sysroot"
    prepare, options = SETUPS["grub-bios-separate-boot"]
    deploy_sysroot(root, x86_composed, KARGS, options={**options, "boot-counting": "1"}, prepare=prepare)
    write_var_data(root, "grub-data")
    broken = [k if not k.startswith("root=") else "root=LABEL=nosuchroot" for k in KARGS] + ["rd.timeout=3"]
    run_cli("admin", "deploy", "--sysroot", str(root), "--os", "testos",
            *[a for k in broken for a in ("--karg", k)], "origin:" + x86_composed.ref)
    spec = grub_bios(tmp_path, root, separate_boot=True)
    # reboots allowed: the first boot fails and reboots, the second must reach v1's userspace
    result = boot(spec.machine, spec.disks, tmp_path, timeout=420, allow_reboot=True,
                  stop_at=r"HYBRIDOS-BOOT-MARKER[^\n]*\n")
    result.expect(r"root device LABEL=nosuchroot did not appear", "v2 failing to find its root")
    result.expect(r"rebooting in 1 seconds", "v2's initramfs rebooting by itself")
    result.expect(r"Booting `TestOS 1 \(ostree:1\)'", "GRUB falling back to the previous entry")
    assert result.markers() == [EXPECTED], result.tail()
    assert result.console.index("nosuchroot did not appear") < result.console.index("HYBRIDOS-BOOT-MARKER")
