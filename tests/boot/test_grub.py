"""Real GRUB 2 (Debian's images) boots deployments: i386-pc BIOS with a separate /boot and with /boot on /,
x86_64 EFI on OVMF; a broken new deployment falls back to the previous one through GRUB's boot counting."""

from __future__ import annotations

import pytest

from tests.boot.bootloaders import (
    copy_grub_modules,
    grub_bios_core,
    grub_efi_image,
    install_grub_bios,
    split_boot,
)
from tests.boot.disk import ESP, LINUX, Partition, assemble, ext4_image, vfat_image
from tests.boot.qemu import Machine, boot
from tests.boot.sysroot import deploy_sysroot, write_var_data
from tests.conftest import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.tool("grub-mkimage", "mkfs.ext4", "sfdisk")]
KARGS = ["root=LABEL=root", "rw", "console=ttyS0", "panic=10", "hybridos.fail-delay=1"]
SERIAL = {"grub-serial": "--unit=0 --speed=115200", "timeout": "1"}
EXPECTED = {"version": "1", "ostree-booted": "yes", "usr": "ro", "var": "grub-data", "etc": "from-image-1"}


def _posix_grub(root):
    (root / "boot/grub").mkdir(parents=True)
    (root / "boot/grub/grub.cfg").write_text("# replaced by the grub2 plugin\n")


def bios_disk(tmp_path, root, *, separate_boot: bool):
    """An MBR disk: GRUB's boot.img + core image, then /boot and / (or one filesystem holding both)."""
    disk = tmp_path / "disk.img"
    if separate_boot:
        copy_grub_modules(root / "boot/grub", "i386-pc")
        with split_boot(root, tmp_path) as (boot_tree, root_tree):
            parts = [Partition("83", ext4_image(tmp_path / "boot.ext4", boot_tree, "boot"), bootable=True),
                     Partition("83", ext4_image(tmp_path / "root.ext4", root_tree, "root"))]
        prefix = "(hd0,msdos1)/grub"
    else:
        copy_grub_modules(root / "boot/grub", "i386-pc")
        parts = [Partition("83", ext4_image(tmp_path / "root.ext4", root, "root"), bootable=True)]
        prefix = "(hd0,msdos1)/boot/grub"
    assemble(disk, parts, label="dos")
    install_grub_bios(disk, grub_bios_core(tmp_path / "core.img", prefix))
    return disk


@pytest.mark.parametrize("separate_boot", [True, False], ids=["separate-boot", "boot-on-root"])
def test_grub_bios_boots_the_deployment(tmp_path, x86_composed, separate_boot):
    root = tmp_path / "sysroot"
    options = dict(SERIAL) if separate_boot else {**SERIAL, "bootprefix": "true"}
    deploy_sysroot(root, x86_composed, KARGS, options=options, prepare=_posix_grub)
    write_var_data(root, "grub-data")
    disk = bios_disk(tmp_path, root, separate_boot=separate_boot)
    result = boot(Machine("x86_64", "bios"), [disk], tmp_path, timeout=300)
    result.expect(r"TestOS 1", "GRUB's menu on the serial console (grub-serial)")
    result.expect(r"HYBRIDOS-BOOT-MARKER", "the deployment's marker")
    assert result.markers() == [EXPECTED], result.tail()
    assert "no such device" not in result.console


def test_grub_efi_boots_the_deployment_on_ovmf(tmp_path, x86_composed):
    root = tmp_path / "sysroot"

    def prepare(r):
        vendor = r / "boot/efi/EFI/testos"
        vendor.mkdir(parents=True)
        grub_efi_image(vendor / "grubx64.efi", "(hd0,gpt1)/EFI/testos")
        (vendor / "grub.cfg").write_text("# replaced by the grub2 plugin\n")
        (r / "boot/efi/EFI/BOOT").mkdir()
        (r / "boot/efi/EFI/BOOT/BOOTX64.EFI").write_bytes((vendor / "grubx64.efi").read_bytes())

    deploy_sysroot(root, x86_composed, KARGS, options={**SERIAL, "bootprefix": "true"}, prepare=prepare)
    write_var_data(root, "grub-data")
    cfg = (root / "boot/efi/EFI/testos/grub.cfg").read_text()
    assert "linux /boot/ostree/" in cfg and "linux16" not in cfg
    esp_tree = root / "boot/efi"
    esp = vfat_image(tmp_path / "esp.vfat", esp_tree, size_mb=40)
    # the ESP is its own filesystem: the root filesystem has an empty boot/efi mount point
    moved = tmp_path / "esp-tree"
    esp_tree.rename(moved)
    esp_tree.mkdir()
    try:
        rootfs = ext4_image(tmp_path / "root.ext4", root, "root")
    finally:
        esp_tree.rmdir()
        moved.rename(esp_tree)
    disk = tmp_path / "disk.img"
    assemble(disk, [Partition(ESP, esp, name="ESP"), Partition(LINUX, rootfs, name="root")])
    result = boot(Machine("x86_64", "uefi"), [disk], tmp_path, timeout=420)
    result.expect(r"HYBRIDOS-BOOT-MARKER", "the deployment's marker")
    assert result.markers() == [EXPECTED], result.tail()


def test_broken_new_deployment_falls_back_through_grub_boot_counting(tmp_path, x86_composed):
    """v2's initramfs cannot find its root: it reboots by itself, and GRUB's boot counting boots v1."""
    root = tmp_path / "sysroot"
    deploy_sysroot(root, x86_composed, KARGS, options={**SERIAL, "boot-counting": "1"}, prepare=_posix_grub)
    write_var_data(root, "grub-data")
    broken = [k if not k.startswith("root=") else "root=LABEL=nosuchroot" for k in KARGS] + ["rd.timeout=3"]
    run_cli("admin", "deploy", "--sysroot", str(root), "--os", "testos",
            *[a for k in broken for a in ("--karg", k)], "origin:" + x86_composed.ref)
    disk = bios_disk(tmp_path, root, separate_boot=True)
    # reboots allowed: the first boot fails and reboots, the second must reach v1's userspace
    machine = Machine("x86_64", "bios")
    result = boot(machine, [disk], tmp_path, timeout=420, allow_reboot=True,
                  stop_at=r"HYBRIDOS-BOOT-MARKER[^\n]*\n")
    result.expect(r"root device LABEL=nosuchroot did not appear", "v2 failing to find its root")
    result.expect(r"rebooting in 1 seconds", "v2's initramfs rebooting by itself")
    result.expect(r"HYBRIDOS-BOOT-MARKER", "v1's marker after the fallback")
    assert result.markers() == [EXPECTED], result.tail()
    assert result.console.index("nosuchroot did not appear") < result.console.index("HYBRIDOS-BOOT-MARKER")
