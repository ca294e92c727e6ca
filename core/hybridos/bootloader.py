"""The bootloader interface: what a bootloader plugin (GRUB2, systemd-boot, U-Boot, third parties) implements.

The core writes Boot Loader Specification entries into ``boot/loader.N/entries`` for every new boot version,
then asks the selected bootloader to write its own configuration for version N (``write_config``), then swaps
``boot/loader`` atomically, then calls ``post_swap``. Mirrors libostree's ``ostree-bootloader.h``.
"""

from __future__ import annotations

import os
import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from hybridos.arch import Architecture
from hybridos.errors import BootloaderError
from hybridos.util.text import first_unsafe


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
    #: the deployment's checkout relative to the sysroot, e.g. "ostree/deploy/fedora/deploy/<C>.0"
    #: ("" when unknown); plugins read per-deployment files from it (``usr/lib/ostree-boot/uEnv.txt``)
    deployment: str = ""

    def __post_init__(self) -> None:
        # every value below ends up on one line of a BLS entry, grub.cfg, extlinux.conf, uEnv.txt or boot.scr
        for name in ("id", "title", "linux", "options", "devicetree", "fdtdir", "stateroot", "checksum", "version",
                     "kernel_version", "deployment"):
            value = getattr(self, name)
            if value and first_unsafe(value) is not None:
                raise BootloaderError(f"boot entry {self.id!r}: its {name} {value!r} contains a control or "
                                      f"line-break character")
        for path in self.initrd:
            if first_unsafe(path) is not None:
                raise BootloaderError(f"boot entry {self.id!r}: initrd {path!r} contains a control character")

    @property
    def boot_paths(self) -> tuple[str, ...]:
        """Every /boot-relative path this entry refers to (kernel, initrds, device tree file or directory)."""
        extra = tuple(p for p in (self.devicetree, self.fdtdir) if p)
        return (self.linux, *self.initrd, *extra)


@dataclass(frozen=True)
class BootConfigContext:
    """Everything a bootloader needs to write its configuration for boot version ``bootversion``."""

    sysroot: Path
    bootversion: int
    entries: tuple[BootEntry, ...]   #: in boot order; entries[0] is the default
    arch: Architecture
    options: dict[str, str] = field(default_factory=dict)  #: [sysroot] keys from the repo config
    #: boot counting tries configured for this sysroot (``[sysroot] boot-counting``, else greenboot.conf's
    #: GREENBOOT_MAX_BOOT_ATTEMPTS when the default deployment has health checks); None: read the option
    boot_counting: int | None = None
    #: index (in ``entries``) of the deployment this machine is running, when known
    booted: int | None = None

    def counting_tries(self) -> int:
        """How many tries boot counting gives a new default deployment; 0 = no boot counting."""
        if self.boot_counting is not None:
            return self.boot_counting
        return self.int_option("boot-counting", 0) or 0

    @property
    def boot_dir(self) -> Path:
        return self.sysroot / "boot"

    @property
    def loader_dir(self) -> Path:
        """The new ``boot/loader.N`` directory, not yet pointed to by ``boot/loader``."""
        return self.boot_dir / f"loader.{self.bootversion}"

    def int_option(self, key: str, default: int | None = None) -> int | None:
        """A non-negative integer ``[sysroot]`` setting (decimal or 0x hex), ``default`` when absent."""
        if key not in self.options:
            return default
        text = self.options[key]
        try:
            value = int(text, 0)
        except ValueError:
            raise BootloaderError(f"[sysroot] {key}={text!r} is not a number") from None
        if value < 0:
            raise BootloaderError(f"[sysroot] {key}={text!r} must not be negative")
        return value

    def boot_file(self, path: str) -> Path:
        """The sysroot file behind a /boot-relative entry path such as ``/ostree/x-<csum>/vmlinuz-6.1``."""
        return self.boot_dir / path.lstrip("/")

    @property
    def current_bootversion(self) -> int | None:
        """The bootversion ``boot/loader`` points to now (before the swap), or None on a fresh sysroot."""
        try:
            target = os.readlink(self.boot_dir / "loader")
        except OSError:
            return None
        return {"loader.0": 0, "loader.1": 1}.get(target)


class BootCountStatus(StrEnum):
    """Where boot counting stands, as a bootloader reads its own state."""

    NONE = "none"            #: nothing being counted (never armed, disarmed, or the boot was marked good)
    ARMED = "armed"          #: the default deployment is on trial: tries left, not marked good yet
    FALLBACK = "fallback"    #: tries ran out: the bootloader booted the previous deployment instead


@dataclass(frozen=True)
class BootCountState:
    status: BootCountStatus
    tries_left: int | None = None
    tries_done: int | None = None
    detail: str = ""         #: what was read, for humans ("grubenv: boot_counter=2 boot_success=0")

    def to_json(self) -> dict:
        return {"status": self.status.value, "tries-left": self.tries_left, "tries-done": self.tries_done,
                "detail": self.detail}


@dataclass(frozen=True)
class Detection:
    """A bootloader's claim on a sysroot: the highest score wins; ``reason`` is shown to the user."""

    score: int
    reason: str


def kernel_architecture(head: bytes) -> Architecture | None:
    """The architecture a kernel image was built for, from its first 4 KiB; None when not recognised.

    x86 bzImage: "HdrS" at 0x202; arm64 Image: "ARM\\x64" at 0x38; ELF (ppc64le vmlinux and others): e_machine.
    """
    if head[:4] == b"\x7fELF" and len(head) >= 20:
        little = head[5] == 1
        machine = struct.unpack_from("<H" if little else ">H", head, 18)[0]
        if machine == 62:
            return Architecture.X86_64
        if machine == 183:
            return Architecture.AARCH64
        if machine == 21 and little and head[4] == 2:
            return Architecture.PPC64LE
        return None
    if head[0x38:0x3C] == b"ARM\x64":
        return Architecture.AARCH64
    if head[0x202:0x206] == b"HdrS":
        return Architecture.X86_64
    return None


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

    # -- boot counting (optional: a bootloader that does not override these has no boot counting) ------------

    def arm_boot_counting(self, context: BootConfigContext, tries: int) -> bool:
        """Put ``context.entries[0]`` on trial: after ``tries`` boots not marked good, boot ``entries[1]``.

        Called after ``post_swap`` when a deployment other than the running one became the default; ``tries``
        0 stops any counting in progress. Return False when this bootloader does not count boots.
        """
        return False

    def boot_count_state(self, context: BootConfigContext) -> BootCountState | None:
        """The counting state of the current configuration (``context`` is the current boot version, with
        ``booted`` set when known), or None when this bootloader does not count boots."""
        return None

    def mark_boot_good(self, context: BootConfigContext) -> None:
        """The running boot passed its health checks: stop counting (systemd's "bless")."""

    def clear_fallback(self, context: BootConfigContext) -> None:
        """The fallback was made permanent (the previous deployment is the default again): reset the state
        that said so, so the next boot is an ordinary one."""

    def validate(self, context: BootConfigContext) -> None:
        """Refuse, before anything is written, a context this bootloader cannot boot.

        Checks the architecture, that every entry's files exist, and that each kernel is built for
        ``context.arch`` (when its format is recognised). Plugins call this first in ``write_config``.
        """
        if not self.supports(context.arch):
            known = ", ".join(sorted(a.value for a in self.architectures))
            raise BootloaderError(
                f"{self.name} cannot boot {context.arch.value} deployments (it supports {known}); "
                "set [sysroot] bootloader= in ostree/repo/config to a bootloader for this architecture"
            )
        if not context.entries:
            raise BootloaderError(f"{self.name}: no boot entries to write for boot version {context.bootversion}")
        for entry in context.entries:
            for path in entry.boot_paths:
                if not context.boot_file(path).exists():
                    raise BootloaderError(f"{self.name}: entry {entry.id} refers to /boot{path}, which does not exist")
            with open(context.boot_file(entry.linux), "rb") as f:
                found = kernel_architecture(f.read(4096))
            if found is not None and found != context.arch:
                raise BootloaderError(
                    f"{self.name}: entry {entry.id} has a {found.value} kernel ({entry.linux}) but the deployment "
                    f"is {context.arch.value}"
                )
