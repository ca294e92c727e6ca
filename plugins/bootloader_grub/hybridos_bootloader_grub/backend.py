"""GRUB2 backend: detection; configuration writing comes with the bootloader issue."""

from __future__ import annotations

from pathlib import Path

from hybridos.arch import Architecture
from hybridos.bootloader import BootConfigContext, Bootloader, Detection
from hybridos.errors import BootloaderError


class GrubBootloader(Bootloader):
    name = "grub2"
    architectures = frozenset({Architecture.X86_64, Architecture.AARCH64, Architecture.PPC64LE})

    def detect(self, sysroot: Path) -> Detection | None:
        for rel in ("boot/grub2/grub.cfg", "boot/grub/grub.cfg"):
            if (sysroot / rel).exists() or (sysroot / rel).is_symlink():
                return Detection(50, f"{rel} exists")
        efi = sysroot / "boot/efi/EFI"
        if efi.is_dir():
            for cfg in sorted(efi.glob("*/grub.cfg")):
                return Detection(40, f"{cfg.relative_to(sysroot)} exists")
        return None

    def write_config(self, context: BootConfigContext) -> None:
        raise BootloaderError("grub2: writing configuration is not implemented yet")
