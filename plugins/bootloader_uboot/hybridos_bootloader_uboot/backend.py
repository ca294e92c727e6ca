"""U-Boot backend: detection; configuration writing comes with the bootloader issue."""

from __future__ import annotations

from pathlib import Path

from hybridos.arch import Architecture
from hybridos.bootloader import BootConfigContext, Bootloader, Detection
from hybridos.errors import BootloaderError


class UBootBootloader(Bootloader):
    name = "uboot"
    architectures = frozenset({Architecture.AARCH64})

    def detect(self, sysroot: Path) -> Detection | None:
        for rel in ("boot/loader/uEnv.txt", "boot/extlinux/extlinux.conf", "boot/boot.scr"):
            if (sysroot / rel).exists():
                return Detection(50, f"{rel} exists")
        return None

    def write_config(self, context: BootConfigContext) -> None:
        raise BootloaderError("uboot: writing configuration is not implemented yet")
