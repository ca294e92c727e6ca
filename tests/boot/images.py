"""Bootable disk images of a deployed sysroot, one function per bootloader and layout (used by the boot tests,
the boot benchmark and anyone who wants a guest: ``spec = grub_bios(tmp, root, separate_boot=True)``, then
``qemu.boot(spec.machine, spec.disks, workdir, timeout=..., **spec.boot_args)``).

Each function expects a sysroot deployed with the matching ``prepare``/``options`` (listed in :data:`SETUPS`)
and returns a :class:`BootSpec`. Images are made without loop devices or mounts (see :mod:`tests.boot.disk`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.boot.bootloaders import (
    SYSTEMD_BOOT_X64,
    copy_grub_modules,
    grub_bios_core,
    grub_efi_image,
    install_grub_bios,
    split_boot,
)
from tests.boot.disk import ESP, LINUX, Partition, assemble, ext4_image, sh, vfat_image
from tests.boot.qemu import Machine
from tests.boot.sysroot import bls_entries

#: a board's own boot script in the style of ostree's U-Boot boards: it boots what uEnv.txt says
UBOOT_BOARD_SCRIPT = """\
echo "board script: booting what /boot/loader/uEnv.txt says"
load ${devtype} ${devnum}:${distro_bootpart} ${scriptaddr} /boot/loader/uEnv.txt
env import -t ${scriptaddr} ${filesize}
load ${devtype} ${devnum}:${distro_bootpart} ${kernel_addr_r} ${kernel_image}
load ${devtype} ${devnum}:${distro_bootpart} ${ramdisk_addr_r} ${ramdisk_image}
booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdtcontroladdr}
"""


@dataclass
class BootSpec:
    machine: Machine
    disks: list[Path]
    boot_args: dict = field(default_factory=dict)      #: kernel/initrd/append for a direct boot
    offsets: list[int] = field(default_factory=list)   #: partition offsets in disks[0]


# -- sysroot preparation (before the first deploy, so the plugin detects its bootloader) -------------------

def prepare_posix_grub(root: Path) -> None:
    (root / "boot/grub").mkdir(parents=True)
    (root / "boot/grub/grub.cfg").write_text("# replaced by the grub2 plugin\n")


def prepare_grub_efi(root: Path) -> None:
    vendor = root / "boot/efi/EFI/testos"
    vendor.mkdir(parents=True)
    grub_efi_image(vendor / "grubx64.efi", "(hd0,gpt1)/EFI/testos")
    (vendor / "grub.cfg").write_text("# replaced by the grub2 plugin\n")
    (root / "boot/efi/EFI/BOOT").mkdir()
    (root / "boot/efi/EFI/BOOT/BOOTX64.EFI").write_bytes((vendor / "grubx64.efi").read_bytes())


def prepare_systemd_boot(root: Path) -> None:
    esp = root / "boot/efi"
    for d in ("EFI/BOOT", "EFI/systemd", "loader/entries"):
        (esp / d).mkdir(parents=True)
    (esp / "EFI/BOOT/BOOTX64.EFI").write_bytes(SYSTEMD_BOOT_X64.read_bytes())
    (esp / "EFI/systemd/systemd-bootx64.efi").write_bytes(SYSTEMD_BOOT_X64.read_bytes())


def prepare_uboot(kind: str) -> Callable[[Path], None]:
    def prepare(root: Path) -> None:
        if kind == "extlinux":
            (root / "boot/extlinux").mkdir(parents=True)
            (root / "boot/extlinux/extlinux.conf").write_text("# replaced by the uboot plugin\n")
        elif kind == "uenv":
            (root / "boot.cmd").write_text(UBOOT_BOARD_SCRIPT)
            sh("mkimage", "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-n", "board",
               "-d", root / "boot.cmd", root / "boot.scr")
    return prepare


SERIAL = {"grub-serial": "--unit=0 --speed=115200", "timeout": "1"}
#: name -> (prepare, [sysroot] options) for deploy_sysroot
SETUPS: dict[str, tuple[Callable[[Path], None] | None, dict[str, str]]] = {
    "direct": (None, {}),
    "grub-bios-separate-boot": (prepare_posix_grub, dict(SERIAL)),
    "grub-bios-boot-on-root": (prepare_posix_grub, {**SERIAL, "bootprefix": "true"}),
    "grub-efi": (prepare_grub_efi, {**SERIAL, "bootprefix": "true"}),
    "systemd-boot": (prepare_systemd_boot, {"boot-counting": "3", "timeout": "0"}),
    "uboot-extlinux": (prepare_uboot("extlinux"), {"bootprefix": "true", "timeout": "1"}),
    "uboot-bootscr": (prepare_uboot("bootscr"), {"bootprefix": "true", "bootloader": "uboot",
                                                 "uboot-script": "true"}),
    "uboot-uenv": (prepare_uboot("uenv"), {"bootprefix": "true", "bootloader": "uboot"}),
    "grub-ieee1275": (prepare_posix_grub, {"bootprefix": "true", "timeout": "1"}),
}


# -- images ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _without(path: Path, workdir: Path) -> Iterator[None]:
    """``path`` (a mount point's contents, e.g. boot/efi) moved aside, an empty directory in its place."""
    moved = workdir / f"moved-{path.name}"
    path.rename(moved)
    path.mkdir()
    try:
        yield
    finally:
        path.rmdir()
        moved.rename(path)


def direct(workdir: Path, root: Path) -> BootSpec:
    """One ext4 root filesystem; QEMU loads the default BLS entry's kernel and initramfs with its options."""
    entry = bls_entries(root)[0]
    disk = workdir / "disk.img"
    assemble(disk, [Partition(LINUX, ext4_image(workdir / "root.ext4", root, "root"), name="root")])
    return BootSpec(Machine("x86_64", "direct"), [disk],
                    {"kernel": root / "boot" / entry["linux"].lstrip("/"),
                     "initrd": root / "boot" / entry["initrd"].lstrip("/"), "append": entry["options"]})


def grub_bios(workdir: Path, root: Path, *, separate_boot: bool) -> BootSpec:
    """An MBR disk: GRUB's boot.img + core image, then /boot and / (or one filesystem holding both)."""
    disk = workdir / "disk.img"
    copy_grub_modules(root / "boot/grub", "i386-pc")
    if separate_boot:
        with split_boot(root, workdir) as (boot_tree, root_tree):
            parts = [Partition("83", ext4_image(workdir / "boot.ext4", boot_tree, "boot"), bootable=True),
                     Partition("83", ext4_image(workdir / "root.ext4", root_tree, "root"))]
        prefix = "(hd0,msdos1)/grub"
    else:
        parts = [Partition("83", ext4_image(workdir / "root.ext4", root, "root"), bootable=True)]
        prefix = "(hd0,msdos1)/boot/grub"
    offsets = assemble(disk, parts, label="dos")
    install_grub_bios(disk, grub_bios_core(workdir / "core.img", prefix))
    return BootSpec(Machine("x86_64", "bios"), [disk], offsets=offsets)


def _esp_and_root(workdir: Path, root: Path, esp_mb: int) -> tuple[Path, list[int]]:
    esp_tree = root / "boot/efi"
    esp = vfat_image(workdir / "esp.vfat", esp_tree, size_mb=esp_mb)
    with _without(esp_tree, workdir):
        rootfs = ext4_image(workdir / "root.ext4", root, "root")
    disk = workdir / "disk.img"
    offsets = assemble(disk, [Partition(ESP, esp, name="ESP"), Partition(LINUX, rootfs, name="root")])
    return disk, offsets


def uefi(workdir: Path, root: Path, *, esp_mb: int = 48) -> BootSpec:
    """GPT: the sysroot's boot/efi as a FAT ESP, the rest (with /boot) as the ext4 root; OVMF firmware."""
    disk, offsets = _esp_and_root(workdir, root, esp_mb)
    return BootSpec(Machine("x86_64", "uefi"), [disk], offsets=offsets)


def uboot_arm64(workdir: Path, root: Path) -> BootSpec:
    """One bootable ext4 partition (MBR) holding / and /boot; Debian's qemu_arm64 U-Boot as firmware."""
    disk = workdir / "disk.img"
    offsets = assemble(disk, [Partition("83", ext4_image(workdir / "root.ext4", root, "root"), bootable=True)],
                       label="dos")
    return BootSpec(Machine("aarch64", "uboot", memory_mb=1024), [disk], offsets=offsets)


def grub_ieee1275(workdir: Path, root: Path, grub_lib: Path) -> BootSpec:
    """MBR: a PReP partition with GRUB's powerpc-ieee1275 core, then one ext4 holding / and /boot;
    ``qemu-system-ppc64 -M pseries`` with its SLOF firmware."""
    from tests.boot.bootloaders import grub_ieee1275_prep

    prep = grub_ieee1275_prep(workdir / "prep.img", grub_lib, "(ieee1275/disk,msdos2)/boot/grub")
    disk = workdir / "disk.img"
    offsets = assemble(disk, [Partition("41", prep, bootable=True),
                              Partition("83", ext4_image(workdir / "root.ext4", root, "root"))], label="dos")
    return BootSpec(Machine("ppc64le", "slof", memory_mb=1024), [disk], offsets=offsets)


def image_for(setup: str, workdir: Path, root: Path) -> BootSpec:
    """The image for a :data:`SETUPS` name."""
    if setup == "direct":
        return direct(workdir, root)
    if setup.startswith("grub-bios"):
        return grub_bios(workdir, root, separate_boot=setup.endswith("separate-boot"))
    if setup in ("grub-efi", "systemd-boot"):
        return uefi(workdir, root)
    if setup.startswith("uboot"):
        return uboot_arm64(workdir, root)
    raise ValueError(setup)
