"""GRUB2 backend: finds the GRUB layout of a sysroot and writes grub.cfg (and grubenv) for a boot version.

BIOS-style layouts (``boot/grub2/grub.cfg`` on a POSIX file system) become atomic through the symlink
``boot/grub2/grub.cfg -> ../loader/grub.cfg``: the new config is ``boot/loader.N/grub.cfg`` and the core's swap of
``boot/loader`` makes it current. A grub.cfg on the EFI system partition (FAT, no symlinks) is written complete
as ``grub.cfg.new`` before the swap and renamed over ``grub.cfg`` after it, so a crash before the swap leaves the
previous configuration untouched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hybridos.arch import Architecture
from hybridos.bootloader import BootConfigContext, BootCountState, BootCountStatus, Bootloader, Detection
from hybridos.errors import BootloaderError, FormatError
from hybridos.util import inroot
from hybridos.util.atomic import atomic_symlink, atomic_write, fsync_dir
from hybridos_bootloader_grub.config import (
    MARKER,
    Flavour,
    GrubSettings,
    calls_blscfg,
    commands,
    enables_blscfg,
    parse_serial,
    parse_terminal,
    render_blscfg,
    render_menu,
)
from hybridos_bootloader_grub.grubenv import format_grubenv, parse_grubenv

POSIX_CONFIGS = ("boot/grub2/grub.cfg", "boot/grub/grub.cfg")


@dataclass(frozen=True)
class GrubLayout:
    """Where this sysroot's GRUB reads its configuration."""

    config: Path    #: the grub.cfg GRUB reads
    on_esp: bool    #: on the FAT EFI system partition: rename in place instead of the loader symlink

    @property
    def env(self) -> Path:
        return self.config.parent / "grubenv"


def find_layout(sysroot: Path) -> GrubLayout | None:
    """Where GRUB reads its config; a directory reached through a symlink leaving the sysroot never counts."""
    top = sysroot.resolve()
    for rel in POSIX_CONFIGS:
        p = sysroot / rel
        if (p.exists() or p.is_symlink()) and p.parent.resolve().is_relative_to(top):
            return GrubLayout(p, on_esp=False)
    efi = sysroot / "boot/efi/EFI"
    if efi.is_dir() and efi.resolve().is_relative_to(top):
        for cfg in sorted(efi.glob("*/grub.cfg")):
            if cfg.parent.resolve().is_relative_to(top):
                return GrubLayout(cfg, on_esp=True)
    return None


def _has_efi_grub(sysroot: Path) -> bool:
    efi = sysroot / "boot/efi/EFI"
    return efi.is_dir() and (any(efi.glob("*/grub*.efi")) or any(efi.glob("*/shim*.efi")))


def settings_for(context: BootConfigContext, layout: GrubLayout) -> GrubSettings:
    """Flavour from ``[sysroot] grub-flavour`` or the layout; counting and timeout from the options."""
    opts = context.options
    if "grub-flavour" in opts:
        try:
            flavour = Flavour(opts["grub-flavour"].strip())
        except ValueError:
            known = ", ".join(f.value for f in Flavour)
            raise BootloaderError(f"grub2: unknown grub-flavour {opts['grub-flavour']!r} (known: {known})") from None
    elif context.arch == Architecture.PPC64LE:
        flavour = Flavour.IEEE1275
    elif context.arch == Architecture.AARCH64 or layout.on_esp or _has_efi_grub(context.sysroot):
        flavour = Flavour.EFI
    else:
        flavour = Flavour.BIOS
    commands(flavour, context.arch)  # refuses an impossible combination before anything is written
    return GrubSettings(
        flavour=flavour,
        arch=context.arch,
        timeout=context.int_option("timeout", 5),
        boot_counting=context.counting_tries(),
        fdt_file=opts.get("fdt-file") or None,
        serial=parse_serial(opts["grub-serial"]) if "grub-serial" in opts else None,
        terminal=parse_terminal(opts.get("grub-terminal", "")),
    )



def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return ""


def _in_sysroot(sysroot: Path, path: Path) -> Path:
    """Follow one symlink level of ``path``, reading absolute targets inside the sysroot, never the host."""
    if not path.is_symlink():
        return path
    target = os.readlink(path)
    return sysroot / target.lstrip("/") if target.startswith("/") else path.parent / target


class GrubBootloader(Bootloader):
    name = "grub2"
    architectures = frozenset({Architecture.X86_64, Architecture.AARCH64, Architecture.PPC64LE})

    def detect(self, sysroot: Path) -> Detection | None:
        layout = find_layout(sysroot)
        if layout is None:
            return None
        rel = layout.config.relative_to(sysroot)
        return Detection(50 if not layout.on_esp else 40, f"{rel} exists")

    # -- writing ---------------------------------------------------------------------------------

    def _layout(self, context: BootConfigContext) -> GrubLayout:
        layout = find_layout(context.sysroot)
        if layout is None:
            raise BootloaderError(
                f"grub2: no grub.cfg in {context.sysroot} (looked for {', '.join(POSIX_CONFIGS)} and "
                "boot/efi/EFI/*/grub.cfg)"
            )
        return layout

    def _enables_bls(self, context: BootConfigContext) -> bool:
        """``GRUB_ENABLE_BLSCFG=true`` in the sysroot's or the new default deployment's etc/default/grub."""
        texts = [_read_text(context.sysroot / "etc/default/grub")]
        if context.entries and context.entries[0].deployment:
            # the image's file: read inside the deployment (never through its symlinks to the host), 64 KiB at most
            data = inroot.read_text_or_none(context.sysroot / context.entries[0].deployment, "etc/default/grub",
                                            limit=64 << 10)
            texts.append(data.decode("utf-8", "replace") if data is not None else "")
        return any(enables_blscfg(t) for t in texts)

    def render(self, context: BootConfigContext) -> str | None:
        """The grub.cfg for ``context``, or None when an existing BLS-capable config needs no change."""
        layout = self._layout(context)
        settings = settings_for(context, layout)
        current = _read_text(_in_sysroot(context.sysroot, layout.config))
        if calls_blscfg(current) and MARKER not in current:
            return None  # the distribution's own BLS config already reads /loader/entries
        if self._enables_bls(context):
            return render_blscfg(settings, context.bootversion)
        return render_menu(context.entries, settings, context.bootversion)

    def write_config(self, context: BootConfigContext) -> None:
        self.validate(context)
        layout = self._layout(context)
        text = self.render(context)
        if text is None:
            return
        if layout.on_esp:
            current = context.current_bootversion
            if current is not None:
                # a transaction that swapped but died before post_swap left the now-current config pending
                self._install_pending(layout, current)
            atomic_write(layout.config.with_name("grub.cfg.new"), text)
            return
        context.loader_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(context.loader_dir / "grub.cfg", text)
        self._link_config(context, layout)

    def _link_config(self, context: BootConfigContext, layout: GrubLayout) -> None:
        """Make ``grub.cfg`` the symlink ``../loader/grub.cfg`` without changing what boots now."""
        link = os.path.relpath(context.boot_dir / "loader/grub.cfg", layout.config.parent)
        if layout.config.is_symlink() and os.readlink(layout.config) == link:
            return
        current = context.current_bootversion
        if current is None:
            return  # nothing to point at yet; post_swap links once boot/loader exists
        current_cfg = context.boot_dir / f"loader.{current}/grub.cfg"
        if not current_cfg.exists():
            now = _in_sysroot(context.sysroot, layout.config)
            if not now.is_file():
                return
            # keep booting exactly what boots now: the current config moves behind the current loader
            atomic_write(current_cfg, now.read_bytes())
        atomic_symlink(link, layout.config)

    def post_swap(self, context: BootConfigContext) -> None:
        layout = self._layout(context)
        if layout.on_esp:
            self._install_pending(layout, context.bootversion)
        elif not layout.on_esp and (context.loader_dir / "grub.cfg").exists():
            self._link_config(context, layout)

    @staticmethod
    def _install_pending(layout: GrubLayout, bootversion: int) -> None:
        """Rename ``grub.cfg.new`` over ``grub.cfg`` if it was written for ``bootversion``; drop a stale one."""
        new = layout.config.with_name("grub.cfg.new")
        if not new.is_file():
            return
        with open(new, "rb") as f:
            first = f.readline().decode(errors="replace")
        if f"for boot version {bootversion}:" in first:
            os.rename(new, layout.config)
        else:
            new.unlink()  # from an attempt that never reached the swap
        fsync_dir(layout.config.parent)

    # -- boot counting: greenboot's grubenv variables, counted down by our grub.cfg -----------------------

    def _env(self, context: BootConfigContext) -> tuple[Path, dict[str, str]]:
        env_path = _in_sysroot(context.sysroot, self._layout(context).env)
        variables: dict[str, str] = {}
        if env_path.exists():
            try:
                variables = parse_grubenv(env_path.read_bytes())
            except FormatError:
                variables = {}
        return env_path, variables

    def _update_env(self, context: BootConfigContext, set_: dict[str, str], unset: tuple[str, ...] = ()) -> None:
        env_path, variables = self._env(context)
        for name in unset:
            variables.pop(name, None)
        variables.update(set_)
        atomic_write(env_path, format_grubenv(variables))

    def arm_boot_counting(self, context: BootConfigContext, tries: int) -> bool:
        if tries and len(context.entries) > 1:
            self._update_env(context, {"boot_counter": str(tries), "boot_success": "0"})
        else:  # nothing to fall back to, or counting switched off: no counter GRUB would act on
            _, variables = self._env(context)
            if "boot_counter" in variables:
                self._update_env(context, {}, unset=("boot_counter",))
        return True

    def boot_count_state(self, context: BootConfigContext) -> BootCountState:
        _, variables = self._env(context)
        counter, success = variables.get("boot_counter"), variables.get("boot_success")
        detail = f"grubenv: boot_counter={counter if counter is not None else '(unset)'} " \
                 f"boot_success={success if success is not None else '(unset)'}"
        if counter == "-1":
            return BootCountState(BootCountStatus.FALLBACK, 0, None, detail)
        if counter is not None and counter.isdigit() and success != "1":
            return BootCountState(BootCountStatus.ARMED, int(counter), None, detail)
        return BootCountState(BootCountStatus.NONE, None, None, detail)

    def mark_boot_good(self, context: BootConfigContext) -> None:
        """greenboot-grub2-set-success: ``boot_success=1``, ``boot_counter`` unset."""
        self._update_env(context, {"boot_success": "1"}, unset=("boot_counter",))

    def clear_fallback(self, context: BootConfigContext) -> None:
        """greenboot's check-fallback: ``boot_counter`` unset once the rollback is permanent."""
        self._update_env(context, {}, unset=("boot_counter",))
