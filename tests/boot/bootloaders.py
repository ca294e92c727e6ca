"""Install real bootloaders into disk images and sysroots the way their installers would, without devices.

- GRUB i386-pc: :func:`grub_bios_core` (``grub-mkimage``) and :func:`install_grub_bios`, which writes
  ``boot.img``'s code into the MBR (keeping the partition table) and the core image right after it, where
  ``boot.img``'s default kernel sector (1) and ``diskboot.img``'s default blocklist (sector 2 on) expect it;
  the modules go to ``<prefix>/i386-pc`` (:func:`copy_grub_modules`), as ``grub-install`` puts them.
- GRUB x86_64-efi: :func:`grub_efi_image` (a standalone ``grub-mkimage`` with the modules built in).
- systemd-boot: Debian's ``systemd-bootx64.efi``.
- GRUB powerpc-ieee1275: :func:`grub_ieee1275_prep`, a PReP partition with the core ELF (SLOF boots it).
- :func:`split_boot`: the sysroot's ``boot/`` as its own tree (a separate /boot partition) and the rest.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from tests.boot.disk import MIB, SECTOR, sh
from tests.conftest import require_tool

GRUB_LIB = Path("/usr/lib/grub")
SYSTEMD_BOOT_X64 = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
#: what the generated grub.cfg uses (search --file, linux16/linux, gzio, serial/terminal, grubenv counting)
GRUB_MODULES = ("normal", "configfile", "linux", "search", "search_fs_file", "search_label", "ext2", "fat",
                "part_msdos", "part_gpt", "echo", "test", "serial", "terminal", "gzio", "loadenv", "ls", "cat",
                "sleep", "reboot", "halt")
BIOS_MODULES = ("biosdisk", "linux16")
EFI_MODULES = ("efi_gop", "efi_uga", "all_video")


def grub_bios_core(out: Path, prefix: str) -> Path:
    """An i386-pc core image that reads its config and modules from ``prefix`` (e.g. ``(hd0,msdos1)/grub``)."""
    require_tool("grub-mkimage")
    sh("grub-mkimage", "-O", "i386-pc", "-o", out, "-p", prefix, *GRUB_MODULES, *BIOS_MODULES)
    return out


def install_grub_bios(disk: Path, core: Path) -> None:
    """``boot.img`` into the MBR (bytes 0-439, the partition table stays) and ``core`` from sector 1."""
    boot_img = (GRUB_LIB / "i386-pc/boot.img").read_bytes()
    data = core.read_bytes()
    if SECTOR + len(data) > MIB:
        raise AssertionError(f"core image of {len(data)} bytes does not fit before the first partition")
    with open(disk, "r+b") as f:
        f.seek(0)
        f.write(boot_img[:440])
        f.seek(SECTOR)
        f.write(data)


def copy_grub_modules(grub_dir: Path, platform: str) -> None:
    """``/usr/lib/grub/<platform>`` modules into ``grub_dir/<platform>`` (where GRUB's insmod looks)."""
    dest = grub_dir / platform
    dest.mkdir(parents=True, exist_ok=True)
    for p in (GRUB_LIB / platform).iterdir():
        if p.suffix in (".mod", ".lst"):
            shutil.copy2(p, dest / p.name)


def grub_efi_image(out: Path, prefix: str) -> Path:
    """A GRUB x86_64 EFI application reading ``prefix``/grub.cfg, with every module it needs built in."""
    require_tool("grub-mkimage")
    if not (GRUB_LIB / "x86_64-efi").is_dir():
        require_tool("grub-efi-amd64-bin-is-not-installed")
    sh("grub-mkimage", "-O", "x86_64-efi", "-o", out, "-p", prefix, *GRUB_MODULES, *EFI_MODULES)
    return out


def grub_ieee1275_prep(out: Path, grub_lib: Path, prefix: str, size_mb: int = 8) -> Path:
    """A PReP boot partition image holding a powerpc-ieee1275 GRUB core (an ELF SLOF loads from it) that
    reads ``prefix``/grub.cfg, e.g. ``(ieee1275/disk,msdos2)/boot/grub``. ``grub_lib`` is the directory of
    the powerpc-ieee1275 modules (Debian ships them only in ``grub-ieee1275-bin:ppc64el``)."""
    require_tool("grub-mkimage")
    mods = [m for m in GRUB_MODULES if (grub_lib / f"{m}.mod").exists()]
    core = out.with_suffix(".elf")
    sh("grub-mkimage", "-d", grub_lib, "-O", "powerpc-ieee1275", "-o", core, "-p", prefix, *mods)
    with open(out, "wb") as f:
        f.truncate(size_mb * MIB)
        f.write(core.read_bytes())
    return out


@contextlib.contextmanager
def split_boot(sysroot: Path, workdir: Path) -> Iterator[tuple[Path, Path]]:
    """Yield (boot tree, root tree) for a separate /boot: the sysroot's ``boot/`` moved aside and an empty
    ``boot/`` mount point in its place; everything is put back afterwards."""
    boot_tree = workdir / "boot-partition"
    os.rename(sysroot / "boot", boot_tree)
    (sysroot / "boot").mkdir()
    try:
        yield boot_tree, sysroot
    finally:
        (sysroot / "boot").rmdir()
        os.rename(boot_tree, sysroot / "boot")
