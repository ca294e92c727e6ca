"""systemd-boot backend: detection; configuration writing comes with the bootloader issue."""

from __future__ import annotations

from pathlib import Path

from hybridos.arch import Architecture
from hybridos.bootloader import BootConfigContext, Bootloader, Detection
from hybridos.errors import BootloaderError


class SystemdBootBootloader(Bootloader):
    name = "systemd-boot"
    architectures = frozenset({Architecture.X86_64, Architecture.AARCH64})

    def detect(self, sysroot: Path) -> Detection | None:
        for esp in ("boot/efi", "efi"):
            root = sysroot / esp
            if (root / "loader").is_dir() or (root / "EFI/systemd").is_dir():
                return Detection(60, f"ESP at /{esp} has loader/ or EFI/systemd")
        return None

    def write_config(self, context: BootConfigContext) -> None:
        raise BootloaderError("systemd-boot: writing configuration is not implemented yet")
