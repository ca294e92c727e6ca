"""The initramfs request handed to the initramfs hook."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hybridos.arch import Architecture


@dataclass(frozen=True)
class InitramfsRequest:
    """Regenerate ``tree/usr/lib/modules/<kernel_version>/initramfs.img``."""

    tree: Path
    kernel_version: str
    arch: Architecture
    args: tuple[str, ...] = ()

    @property
    def output(self) -> Path:
        return self.tree / "usr/lib/modules" / self.kernel_version / "initramfs.img"
