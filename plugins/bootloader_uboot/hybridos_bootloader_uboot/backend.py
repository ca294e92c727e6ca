"""U-Boot backend: ostree's ``loader/uEnv.txt``, extlinux.conf and boot.scr, and the bootcount environment.

Everything per boot version lives in ``boot/loader.N/`` (uEnv.txt, extlinux.conf, boot.scr); the well-known
paths U-Boot reads (``boot/extlinux/extlinux.conf``, ``boot/boot.scr``) become symlinks into ``boot/loader``,
so the core's swap makes the new files current at once. The bootcount environment is written after the swap.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from hybridos.arch import Architecture
from hybridos.bootloader import (
    BootConfigContext,
    BootCountState,
    BootCountStatus,
    BootEntry,
    Bootloader,
    Detection,
)
from hybridos.errors import BootloaderError, FormatError
from hybridos.util import inroot
from hybridos.util.atomic import atomic_symlink, atomic_write
from hybridos_bootloader_uboot.config import (
    FALLBACK_KARG,
    UBootSettings,
    render_boot_cmd,
    render_extlinux,
    render_uenv,
)
from hybridos_bootloader_uboot.envimage import DEFAULT_SIZE, format_env_image, parse_env_image
from hybridos_bootloader_uboot.script import make_script_image, read_script_image

EXTLINUX = "boot/extlinux/extlinux.conf"
BOOT_SCR = "boot/boot.scr"
DEFAULT_ENV = "boot/uboot.env"
SYSTEM_UENV = "usr/lib/ostree-boot/uEnv.txt"
SYSTEM_UENV_LIMIT = 64 << 10
ALTBOOTCMD = "setenv hybridos_fallback 1; run bootcmd"
#: a board script that imports ostree's uEnv.txt already boots what we write there: it is left alone
OSTREE_AWARE = re.compile(r"uEnv\.txt|\$\{?kernel_image")



def _bool_option(opts: dict[str, str], key: str) -> bool | None:
    if key not in opts:
        return None
    value = opts[key].strip().lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    raise BootloaderError(f"[sysroot] {key}={opts[key]!r} must be true or false")


def _in_sysroot(sysroot: Path, path: Path) -> Path:
    """Follow one symlink level of ``path``, reading absolute targets inside the sysroot, never the host."""
    if not path.is_symlink():
        return path
    target = os.readlink(path)
    return sysroot / target.lstrip("/") if target.startswith("/") else path.parent / target


def _inside(sysroot: Path, path: Path) -> bool:
    """True when ``path``'s directory, symlinks resolved, lies within the sysroot."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent.resolve().is_relative_to(sysroot.resolve())


def _exists(p: Path) -> bool:
    return p.exists() or p.is_symlink()


class UBootBootloader(Bootloader):
    name = "uboot"
    architectures = frozenset({Architecture.AARCH64})

    def detect(self, sysroot: Path) -> Detection | None:
        for rel in ("boot/loader/uEnv.txt", EXTLINUX, BOOT_SCR):
            if _exists(sysroot / rel):
                return Detection(50, f"{rel} exists")
        return None

    # -- what to write ---------------------------------------------------------------------------

    def settings(self, context: BootConfigContext) -> UBootSettings:
        return UBootSettings(timeout=context.int_option("timeout", 5),
                             fdt_file=context.options.get("fdt-file") or None)

    def uses_extlinux(self, context: BootConfigContext) -> bool:
        forced = _bool_option(context.options, "uboot-extlinux")
        if not _inside(context.sysroot, context.sysroot / EXTLINUX):
            return False  # boot/extlinux leads out of the sysroot: never write there
        return forced if forced is not None else _exists(context.sysroot / EXTLINUX)

    def uses_script(self, context: BootConfigContext) -> bool:
        """Write boot.scr when forced, or when the board boots one that does not already follow uEnv.txt."""
        forced = _bool_option(context.options, "uboot-script")
        if forced is not None:
            return forced
        path = context.sysroot / BOOT_SCR
        if path.is_symlink():
            return os.readlink(path) == "loader/boot.scr"  # ours; a board's own symlink is left alone
        if not path.is_file():
            return False
        try:
            script = read_script_image(path.read_bytes())
        except FormatError:
            return False  # not a legacy script image (a FIT, say): the board's own business
        return not OSTREE_AWARE.search(script)

    def env_path(self, context: BootConfigContext) -> Path:
        rel = context.options.get("uboot-env", DEFAULT_ENV).lstrip("/")
        path = context.sysroot / rel
        if not _inside(context.sysroot, path):
            raise BootloaderError(f"[sysroot] uboot-env={rel} leads out of the sysroot {context.sysroot}")
        return path

    def _system_uenv(self, context: BootConfigContext, entry: BootEntry) -> str | None:
        """The deployment's own ``usr/lib/ostree-boot/uEnv.txt``, found via the entry or its ostree= karg.

        Read inside the deployment (its symlinks resolve within it, never to a host file), a regular file of at
        most 64 KiB; anything else is ignored.
        """
        candidates = []
        if entry.deployment:
            candidates.append(context.sysroot / entry.deployment)
        for arg in entry.options.split():
            if arg.startswith("ostree="):
                # a bootlink: resolved, it must lead to a deployment of this sysroot
                tree = Path(os.path.realpath(context.sysroot / arg.removeprefix("ostree=").lstrip("/")))
                if tree.is_relative_to(Path(os.path.realpath(context.sysroot)) / "ostree/deploy"):
                    candidates.append(tree)
        for tree in candidates:
            data = inroot.read_text_or_none(tree, SYSTEM_UENV, limit=SYSTEM_UENV_LIMIT)
            if data is not None:
                return data.decode("utf-8", "replace")
        return None

    def _read_env(self, context: BootConfigContext) -> tuple[dict[str, str], int]:
        path = self.env_path(context)
        redundant = bool(_bool_option(context.options, "uboot-env-redundant"))
        size = context.int_option("uboot-env-size", DEFAULT_SIZE)
        if not path.exists():
            return {}, size
        data = path.read_bytes()
        try:
            return parse_env_image(data, redundant=redundant), len(data)
        except FormatError as exc:
            raise BootloaderError(f"uboot: {path.relative_to(context.sysroot)}: {exc}; fix or remove it") from None

    # -- writing ---------------------------------------------------------------------------------

    def write_config(self, context: BootConfigContext) -> None:
        self.validate(context)
        settings = self.settings(context)
        tries = context.counting_tries()
        if tries:
            self._read_env(context)  # refuse an unreadable environment before anything is written
        files: dict[str, bytes] = {
            "uEnv.txt": render_uenv(context.entries, self._system_uenv(context, context.entries[0])).encode()
        }
        if self.uses_extlinux(context):
            files["extlinux.conf"] = render_extlinux(context.entries, settings, context.bootversion).encode()
        if self.uses_script(context):
            stamp = int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))
            script = render_boot_cmd(context.entries, settings, context.bootversion)
            files["boot.scr"] = make_script_image(script, "hybridos boot script", context.arch, stamp)
        context.loader_dir.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            atomic_write(context.loader_dir / name, data)
        if "extlinux.conf" in files:
            self._link(context, context.sysroot / EXTLINUX, "extlinux.conf")
        if "boot.scr" in files:
            self._link(context, context.sysroot / BOOT_SCR, "boot.scr")

    def _link(self, context: BootConfigContext, path: Path, name: str) -> None:
        """Make ``path`` a symlink to ``boot/loader/NAME`` without changing what boots now."""
        link = os.path.relpath(context.boot_dir / "loader" / name, path.parent)
        if path.is_symlink() and os.readlink(path) == link:
            return
        current = context.current_bootversion
        if current is None:
            return  # nothing to point at yet (and the board's file keeps booting); post_swap links it
        current_file = context.boot_dir / f"loader.{current}" / name
        now = _in_sysroot(context.sysroot, path)
        if not current_file.exists() and now.is_file():
            atomic_write(current_file, now.read_bytes())  # what boots now moves behind the current loader
        if current_file.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_symlink(link, path)

    def post_swap(self, context: BootConfigContext) -> None:
        for name, rel in (("extlinux.conf", EXTLINUX), ("boot.scr", BOOT_SCR)):
            if (context.loader_dir / name).exists():
                self._link(context, context.sysroot / rel, name)

    # -- boot counting: U-Boot's bootcount/bootlimit/upgrade_available/altbootcmd ------------------------

    def _write_env(self, context: BootConfigContext, variables: dict[str, str], size: int) -> None:
        redundant = bool(_bool_option(context.options, "uboot-env-redundant"))
        path = self.env_path(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, format_env_image(variables, size, redundant=redundant))

    def arm_boot_counting(self, context: BootConfigContext, tries: int) -> bool:
        variables, size = self._read_env(context)
        if tries and len(context.entries) > 1:
            variables.update({"upgrade_available": "1", "bootcount": "0", "bootlimit": str(tries)})
            if self.uses_script(context):
                variables.setdefault("altbootcmd", ALTBOOTCMD)
            if not _bool_option(context.options, "uboot-bootcount-firmware"):
                variables["hybridos_count_in_script"] = "1"
        elif variables.get("upgrade_available") == "1":
            variables.update({"upgrade_available": "0", "bootcount": "0"})
        else:
            return True
        self._write_env(context, variables, size)
        return True

    def boot_count_state(self, context: BootConfigContext) -> BootCountState:
        variables, _ = self._read_env(context)
        names = ("upgrade_available", "bootcount", "bootlimit")
        detail = "env: " + " ".join(f"{n}={variables.get(n, '(unset)')}" for n in names)
        fell_back = _on_cmdline(context.sysroot, FALLBACK_KARG)
        if variables.get("upgrade_available") != "1":
            if fell_back and context.booted not in (None, 0):
                return BootCountState(BootCountStatus.FALLBACK, 0, None, detail + f"; {FALLBACK_KARG}")
            return BootCountState(BootCountStatus.NONE, detail=detail)
        try:
            count, limit = int(variables.get("bootcount", "0")), int(variables.get("bootlimit", "0"))
        except ValueError:
            return BootCountState(BootCountStatus.NONE, detail=detail + " (not numbers)")
        if fell_back or (count > limit and context.booted not in (None, 0)):
            return BootCountState(BootCountStatus.FALLBACK, 0, count, detail)
        return BootCountState(BootCountStatus.ARMED, max(limit - count, 0), count, detail)

    def mark_boot_good(self, context: BootConfigContext) -> None:
        """The update agent's part of U-Boot's bootcount: ``upgrade_available=0``, ``bootcount=0``."""
        variables, size = self._read_env(context)
        if variables.get("upgrade_available") == "0" and variables.get("bootcount") in ("0", None):
            return
        variables.update({"upgrade_available": "0", "bootcount": "0"})
        self._write_env(context, variables, size)

    def clear_fallback(self, context: BootConfigContext) -> None:
        self.mark_boot_good(context)


def _on_cmdline(sysroot: Path, word: str) -> bool:
    """Whether the running kernel's command line has ``word`` (only when ``sysroot`` is this machine's /)."""
    try:
        if not os.path.samefile(sysroot, "/"):
            return False
        return word in Path("/proc/cmdline").read_text().split()
    except OSError:
        return False
