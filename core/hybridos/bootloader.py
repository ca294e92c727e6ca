"""The bootloader interface: what a bootloader plugin (GRUB2, systemd-boot, U-Boot, third parties) implements.

The core writes Boot Loader Specification entries into ``boot/loader.N/entries`` for every new boot version,
then asks the selected bootloader to write its own configuration for version N (``write_config``), then swaps
``boot/loader`` atomically, then calls ``post_swap``. Mirrors libostree's ``ostree-bootloader.h``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from hybridos.arch import Architecture


@dataclass(frozen=True)
class BootEntry:
    """One deployment's BLS entry as the core wrote it (paths are relative to /boot, starting with '/')."""

    id: str                      #: entry file name without ".conf", e.g. "ostree-2-fedora"
    title: str
    sort_version: int            #: BLS "version" (N - index); higher boots first
    linux: str                   #: e.g. "/ostree/fedora-<bootcsum>/vmlinuz-6.1.0"
    initrd: tuple[str, ...] = ()
    options: str = ""
    devicetree: str | None = None  #: a single devicetree file
    fdtdir: str | None = None      #: a directory of device trees
    index: int = 0                 #: position in boot order, 0 = default
    stateroot: str = ""
    checksum: str = ""             #: the deployed commit
    version: str = ""              #: the commit's "version" metadata, if any
    kernel_version: str = ""


@dataclass(frozen=True)
class BootConfigContext:
    """Everything a bootloader needs to write its configuration for boot version ``bootversion``."""

    sysroot: Path
    bootversion: int
    entries: tuple[BootEntry, ...]   #: in boot order; entries[0] is the default
    arch: Architecture
    options: dict[str, str] = field(default_factory=dict)  #: [sysroot] keys from the repo config

    @property
    def boot_dir(self) -> Path:
        return self.sysroot / "boot"

    @property
    def loader_dir(self) -> Path:
        """The new ``boot/loader.N`` directory, not yet pointed to by ``boot/loader``."""
        return self.boot_dir / f"loader.{self.bootversion}"


@dataclass(frozen=True)
class Detection:
    """A bootloader's claim on a sysroot: the highest score wins; ``reason`` is shown to the user."""

    score: int
    reason: str


class Bootloader(ABC):
    """One bootloader backend."""

    #: The name used in ``[sysroot] bootloader=NAME`` and shown by ``hybridos plugins``.
    name: ClassVar[str]
    #: Architectures this bootloader can boot.
    architectures: ClassVar[frozenset[Architecture]]

    @abstractmethod
    def detect(self, sysroot: Path) -> Detection | None:
        """Return a Detection if this bootloader's files are present in ``sysroot``, else None."""

    @abstractmethod
    def write_config(self, context: BootConfigContext) -> None:
        """Write configuration for ``context.bootversion``; must not change what the current version boots."""

    def post_swap(self, context: BootConfigContext) -> None:
        """Called after ``boot/loader`` points to the new version; remove what only the old one used."""

    def supports(self, arch: Architecture) -> bool:
        return arch in self.architectures
