"""systemd-boot backend: BLS entries and kernel copies on the EFI system partition.

The ESP is FAT: no symlinks, so ``boot/loader`` cannot make its files current. Instead every file goes to a
temp name and is renamed. Before the swap, ``write_config`` only adds kernel copies (in directories named by
bootcsum) and stages the new entries in ``loader/hybridos-staged/``, where systemd-boot does not look: a crash
before the swap leaves the menu and its default exactly as they were. ``post_swap`` moves the staged entries
into ``loader/entries`` (their names carry a digest of their content, so they never replace a current one),
switches ``loader/loader.conf`` ``default``, and only then removes the old entries and kernels. The staged set's
``manifest`` (written last) names its boot version: if a transaction died after the swap but before post_swap,
the next ``write_config`` finds a manifest for the current version and completes it first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from hybridos.arch import Architecture
from hybridos.bootloader import BootConfigContext, BootCountState, BootCountStatus, Bootloader, Detection
from hybridos.errors import BootloaderError
from hybridos.util.atomic import atomic_open, atomic_write, fsync_dir
from hybridos_bootloader_systemd_boot.entries import (
    MANIFEST,
    EspEntry,
    Manifest,
    entry_files,
    format_manifest,
    parse_entry_filename,
    parse_manifest,
    render_entry,
    with_settings,
)

ESP_LOCATIONS = ("boot/efi", "efi")
#: loader.conf ``default`` while a new default is on trial: systemd-boot takes the first entry the pattern
#: matches in its sort order, where entries out of tries ("bad") come last, so the previous one boots then
#: (an exact name would keep booting the bad entry)
TRIAL_DEFAULT = "ostree-*"
LOADER_VENDOR = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
EFIVARS = Path("/sys/firmware/efi/efivars")
STAGING = "loader/hybridos-staged"


def find_esp(sysroot: Path) -> Path | None:
    """The ESP of ``sysroot`` (never one reached through a symlink that leaves the sysroot)."""
    top = sysroot.resolve()
    for rel in ESP_LOCATIONS:
        root = sysroot / rel
        if not root.resolve().is_relative_to(top):
            continue
        if (root / "loader").is_dir() or (root / "EFI/systemd").is_dir():
            return root
    return None



def read_manifest(staging: Path) -> Manifest | None:
    try:
        return parse_manifest((staging / MANIFEST).read_text())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None


def _copy(src: Path, dst: Path) -> None:
    """Copy a boot file to the ESP under a temp name, fsync, rename; skip one already complete."""
    if dst.is_file() and dst.stat().st_size == src.stat().st_size:
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, atomic_open(dst) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


class SystemdBootBootloader(Bootloader):
    name = "systemd-boot"
    architectures = frozenset({Architecture.X86_64, Architecture.AARCH64})

    def detect(self, sysroot: Path) -> Detection | None:
        esp = find_esp(sysroot)
        if esp is None:
            return None
        return Detection(60, f"ESP at /{esp.relative_to(sysroot)} has loader/ or EFI/systemd")

    def _esp(self, context: BootConfigContext) -> Path:
        esp = find_esp(context.sysroot)
        if esp is None:
            raise BootloaderError(
                f"systemd-boot: no EFI system partition with loader/ or EFI/systemd under {context.sysroot} "
                f"(looked in {', '.join(ESP_LOCATIONS)})"
            )
        return esp

    def esp_entries(self, context: BootConfigContext) -> list[EspEntry]:
        fdt_file = context.options.get("fdt-file") or None
        return [render_entry(e, context.arch, context.bootversion, fdt_file) for e in context.entries]

    def write_config(self, context: BootConfigContext) -> None:
        self.validate(context)
        esp = self._esp(context)
        timeout = context.int_option("timeout")
        new = self.esp_entries(context)
        staging = esp / STAGING
        pending = read_manifest(staging)
        if pending is not None and pending.bootversion == context.current_bootversion:
            # the last transaction swapped but died before post_swap: its entries are the current ones
            self._commit(esp, pending, timeout)
        elif staging.exists():
            shutil.rmtree(staging)  # left by an attempt that never reached the swap
        for entry in new:
            for path in entry.files:
                _copy(context.boot_file(path), esp / path.lstrip("/"))
        staging.mkdir(parents=True)
        existing = self._ours(esp / "loader/entries")
        for entry in new:
            if entry.name in existing:
                continue  # same content already there (with whatever boot-counting state it has reached)
            atomic_write(staging / entry.filename(), entry.text)  # counting starts at arm_boot_counting
        # written last: a manifest means the staged set is complete
        atomic_write(staging / MANIFEST, format_manifest(Manifest(context.bootversion, new[0].name,
                                                                  tuple(e.name for e in new))))

    @staticmethod
    def _ours(entries_dir: Path) -> dict[str, Path]:
        out = {}
        if entries_dir.is_dir():
            for f in entries_dir.iterdir():
                parsed = parse_entry_filename(f.name)
                if parsed is not None and f.read_text(errors="replace").startswith("# hybridos"):
                    out[parsed[0]] = f
        return out

    def post_swap(self, context: BootConfigContext) -> None:
        esp = self._esp(context)
        staging = esp / STAGING
        manifest = read_manifest(staging)
        if manifest is None or manifest.bootversion != context.bootversion:
            if staging.exists():
                shutil.rmtree(staging)
            new = self.esp_entries(context)
            manifest = Manifest(context.bootversion, new[0].name, tuple(e.name for e in new))
        self._commit(esp, manifest, context.int_option("timeout"))

    def _commit(self, esp: Path, manifest: Manifest, timeout: int | None) -> None:
        """Make a staged set current: move it in, switch the default, then remove what it does not use."""
        entries_dir = esp / "loader/entries"
        entries_dir.mkdir(parents=True, exist_ok=True)
        staging = esp / STAGING
        if staging.is_dir():
            for f in sorted(staging.glob("*.conf")):
                os.rename(f, entries_dir / f.name)
            fsync_dir(entries_dir)
            shutil.rmtree(staging)
        conf = esp / "loader/loader.conf"
        current = conf.read_text() if conf.exists() else ""
        atomic_write(conf, with_settings(current, f"{manifest.default}.conf", timeout))
        for name, path in self._ours(entries_dir).items():
            if name not in manifest.keep:
                path.unlink()
        fsync_dir(entries_dir)
        used = {p.lstrip("/") for f in entries_dir.glob("*.conf") for p in entry_files(f.read_text(errors="replace"))}
        ostree_dir = esp / "ostree"
        if ostree_dir.is_dir():
            for d in ostree_dir.iterdir():
                if not any(u.startswith(f"ostree/{d.name}/") for u in used):
                    shutil.rmtree(d)
            with contextlib.suppress(OSError):
                fsync_dir(ostree_dir)

    # -- boot counting: systemd's "+LEFT-DONE" entry names, counted down by systemd-boot itself -------------

    def _entry_file(self, esp: Path, name: str) -> Path | None:
        for f in (esp / "loader/entries").glob(f"{name}*.conf"):
            parsed = parse_entry_filename(f.name)
            if parsed is not None and parsed[0] == name:
                return f
        return None

    def arm_boot_counting(self, context: BootConfigContext, tries: int) -> bool:
        esp = self._esp(context)
        name = self.esp_entries(context)[0].name
        current = self._entry_file(esp, name)
        if current is None:
            return True
        target = current.with_name(f"{name}+{tries}.conf" if tries else f"{name}.conf")
        if target != current:
            os.rename(current, target)
            fsync_dir(target.parent)
        conf = esp / "loader/loader.conf"
        text = conf.read_text() if conf.exists() else ""
        atomic_write(conf, with_settings(text, TRIAL_DEFAULT if tries else f"{name}.conf"))
        return True

    def boot_count_state(self, context: BootConfigContext) -> BootCountState:
        esp = self._esp(context)
        name = self.esp_entries(context)[0].name
        current = self._entry_file(esp, name)
        if current is None:
            return BootCountState(BootCountStatus.NONE, detail=f"no entry {name} on the ESP")
        _, left, done = parse_entry_filename(current.name)
        detail = f"ESP: loader/entries/{current.name}"
        if left is None:
            return BootCountState(BootCountStatus.NONE, detail=detail)
        if left == 0 and context.booted not in (None, 0):
            return BootCountState(BootCountStatus.FALLBACK, left, done, detail)
        return BootCountState(BootCountStatus.ARMED, left, done, detail)

    def mark_boot_good(self, context: BootConfigContext) -> None:
        """systemd-bless-boot: the booted entry loses its counter (the file LoaderBootCountPath names when
        this is the running system, else the booted deployment's entry)."""
        esp = self._esp(context)
        current = _loader_boot_count_path(context.sysroot, esp)
        if current is None:
            index = context.booted if context.booted is not None else 0
            current = self._entry_file(esp, self.esp_entries(context)[index].name)
        if current is None or not current.exists():
            return
        parsed = parse_entry_filename(current.name)
        if parsed is None or parsed[1] is None:
            return
        os.rename(current, current.with_name(f"{parsed[0]}.conf"))
        fsync_dir(current.parent)


def _loader_boot_count_path(sysroot: Path, esp: Path) -> Path | None:
    """The entry file systemd-boot booted with a counter (EFI variable LoaderBootCountPath), on this machine
    only (``sysroot`` is ``/``)."""
    try:
        if not os.path.samefile(sysroot, "/"):
            return None
        raw = (EFIVARS / f"LoaderBootCountPath-{LOADER_VENDOR}").read_bytes()[4:]
    except OSError:
        return None
    path = raw.decode("utf-16-le", "replace").split("\0")[0].replace("\\", "/").lstrip("/")
    candidate = esp / path
    return candidate if path.startswith("loader/entries/") and candidate.is_file() else None
