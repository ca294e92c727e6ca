"""SYSLINUX backend: ``boot/syslinux/syslinux.cfg -> ../loader/syslinux.cfg``, as libostree does it.

write_config writes ``boot/loader.N/syslinux.cfg``: the core's atomic swap of ``boot/loader`` is what makes it
current, so a crash before the swap leaves the previous configuration booting.
"""

from __future__ import annotations

import os
from pathlib import Path

from acme_bootloader_syslinux.config import render_syslinux_cfg
from hybridos.arch import Architecture
from hybridos.bootloader import BootConfigContext, BootCountState, Bootloader, Detection
from hybridos.errors import BootloaderError
from hybridos.util.atomic import atomic_symlink, atomic_write

CONFIG = "boot/syslinux/syslinux.cfg"
LINK = "../loader/syslinux.cfg"


class SyslinuxBootloader(Bootloader):
    name = "syslinux"
    architectures = frozenset({Architecture.X86_64})

    def detect(self, sysroot: Path) -> Detection | None:
        cfg = sysroot / CONFIG
        if cfg.exists() or cfg.is_symlink():
            return Detection(55, f"{CONFIG} exists")
        return None

    def write_config(self, context: BootConfigContext) -> None:
        self.validate(context)  # architecture, files present, kernel built for context.arch
        timeout = context.options.get("timeout", "5")
        if not timeout.isdigit():
            raise BootloaderError(f"[sysroot] timeout={timeout!r} is not a number of seconds")
        context.loader_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(context.loader_dir / "syslinux.cfg", render_syslinux_cfg(context.entries, int(timeout)))
        cfg = context.sysroot / CONFIG
        current = context.current_bootversion
        if cfg.is_symlink() and os.readlink(cfg) == LINK:
            return
        if current is not None:
            # first run on a plain syslinux.cfg: keep what boots now behind the current loader, then link
            current_cfg = context.boot_dir / f"loader.{current}/syslinux.cfg"
            if not current_cfg.exists() and cfg.is_file():
                atomic_write(current_cfg, cfg.read_bytes())
            if current_cfg.exists():
                atomic_symlink(LINK, cfg)

    def post_swap(self, context: BootConfigContext) -> None:
        cfg = context.sysroot / CONFIG
        if not (cfg.is_symlink() and os.readlink(cfg) == LINK):
            atomic_symlink(LINK, cfg)

    # boot counting (optional): SYSLINUX keeps no state it could count boots in, so this plugin says so and
    # hybridos health-check still runs the health checks, only without an automatic fallback. A bootloader
    # with a writable counter implements boot_count_state, mark_boot_good and clear_fallback too (see the
    # bundled GRUB plugin: grubenv boot_counter/boot_success).
    def arm_boot_counting(self, context: BootConfigContext, tries: int) -> bool:
        return False

    def boot_count_state(self, context: BootConfigContext) -> BootCountState | None:
        return None
