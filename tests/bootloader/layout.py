"""Lay out a sysroot's boot side the way ``ostree admin deploy`` does, for bootloader tests.

Until the sysroot engine deploys real commits, this writes what the core hands a bootloader: boot files in
``boot/ostree/<stateroot>-<bootcsum>/``, BLS entries in ``boot/loader.N/entries``, the ``ostree/boot.N`` links
to the deployment checkouts, and builds the matching BootConfigContext. ``cycle`` runs a whole deployment
transaction (stage, write_config, swap, post_swap, cleanup) in the order the core does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from hybridos.arch import Architecture
from hybridos.bootloader import BootConfigContext, BootEntry, Bootloader
from hybridos.util.atomic import atomic_symlink
from tests.bootloader.fixtures import dtb, kernel_for

KARGS = "root=LABEL=root rw quiet"


@dataclass(frozen=True)
class Deployment:
    """One deployment of a fixture commit; ``tag`` makes its kernel (and so its bootcsum) distinct."""

    commit: str
    serial: int = 0
    stateroot: str = "fedora"
    kver: str = "6.1.0"
    version: str = "39.1"
    tag: str = ""
    single_devicetree: bool = False   #: aarch64: ship ``devicetree`` instead of ``dtb/``
    system_uenv: str | None = None    #: content of usr/lib/ostree-boot/uEnv.txt
    etc_files: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.commit}.{self.serial}"


def commit_id(n: int) -> str:
    return hashlib.sha256(f"commit-{n}".encode()).hexdigest()


class Sysroot:
    """A test sysroot: ``stage`` writes bootversion N like the core, ``cycle`` runs a full transaction."""

    def __init__(self, root: Path, arch: Architecture, options: dict[str, str] | None = None):
        self.root = root
        self.arch = arch
        self.options = dict(options or {})
        (root / "boot").mkdir(parents=True, exist_ok=True)
        if not (root / "boot/boot").is_symlink():
            os.symlink(".", root / "boot/boot")
        (root / "ostree/deploy").mkdir(parents=True, exist_ok=True)

    # -- what the core writes -------------------------------------------------------------------

    def current_bootversion(self) -> int | None:
        try:
            return int(os.readlink(self.root / "boot/loader").removeprefix("loader."))
        except OSError:
            return None

    def next_bootversion(self) -> int:
        current = self.current_bootversion()
        return 1 if current is None else 1 - current

    def _checkout(self, d: Deployment) -> Path:
        """The deployment's tree (only what boot needs): kernel, initramfs, device trees, ostree-boot, etc."""
        tree = self.root / f"ostree/deploy/{d.stateroot}/deploy/{d.name}"
        mod = tree / f"usr/lib/modules/{d.kver}"
        if not mod.is_dir():
            mod.mkdir(parents=True)
            tag = f"{d.commit}:{d.tag}".encode()
            (mod / "vmlinuz").write_bytes(kernel_for(self.arch, tag))
            (mod / "initramfs.img").write_bytes(b"070701" + tag + bytes(512))
            if self.arch == Architecture.AARCH64:
                if d.single_devicetree:
                    (mod / "devicetree").write_bytes(dtb("qemu,virt " + d.tag))
                else:
                    for rel in ("qemu/virt.dtb", "rockchip/rk3399-rockpro64.dtb", "vendor-board.dtb"):
                        (mod / "dtb" / rel).parent.mkdir(parents=True, exist_ok=True)
                        (mod / "dtb" / rel).write_bytes(dtb(rel + d.tag))
            if d.system_uenv is not None:
                (tree / "usr/lib/ostree-boot").mkdir(parents=True)
                (tree / "usr/lib/ostree-boot/uEnv.txt").write_text(d.system_uenv)
            (tree / "etc").mkdir(exist_ok=True)
            for rel, text in d.etc_files.items():
                (tree / "etc" / rel).parent.mkdir(parents=True, exist_ok=True)
                (tree / "etc" / rel).write_text(text)
        return tree

    def _boot_files(self, d: Deployment) -> tuple[str, dict[str, str | None]]:
        """Copy the kernel to boot/ostree/<stateroot>-<bootcsum>/ (ostree's bootcsum rule)."""
        mod = self._checkout(d) / f"usr/lib/modules/{d.kver}"
        h = hashlib.sha256()
        h.update((mod / "vmlinuz").read_bytes())
        h.update((mod / "initramfs.img").read_bytes())
        if (mod / "devicetree").exists():
            h.update((mod / "devicetree").read_bytes())
        if (mod / "dtb").is_dir():
            for f in sorted(p for p in (mod / "dtb").rglob("*") if p.is_file()):
                h.update(f.read_bytes())
        bootcsum = h.hexdigest()
        rel = f"/ostree/{d.stateroot}-{bootcsum}"
        dest = self.root / "boot" / rel.lstrip("/")
        if not dest.is_dir():
            dest.mkdir(parents=True)
            shutil.copy(mod / "vmlinuz", dest / f"vmlinuz-{d.kver}")
            shutil.copy(mod / "initramfs.img", dest / f"initramfs-{d.kver}.img")
            if (mod / "devicetree").exists():
                shutil.copy(mod / "devicetree", dest / f"devicetree-{d.kver}")
            if (mod / "dtb").is_dir():
                shutil.copytree(mod / "dtb", dest / "dtb")
        paths: dict[str, str | None] = {
            "linux": f"{rel}/vmlinuz-{d.kver}",
            "initrd": f"{rel}/initramfs-{d.kver}.img",
            "devicetree": f"{rel}/devicetree-{d.kver}" if (mod / "devicetree").exists() else None,
            "fdtdir": f"{rel}/dtb" if (mod / "dtb").is_dir() else None,
        }
        return bootcsum, paths

    def stage(self, deployments: list[Deployment]) -> BootConfigContext:
        """Write boot files, ``ostree/boot.N`` links and ``boot/loader.N/entries`` for the next bootversion."""
        n = self.next_bootversion()
        loader = self.root / f"boot/loader.{n}"
        if loader.exists():  # a leftover of an interrupted transaction, as the core would find it
            shutil.rmtree(loader)
        (loader / "entries").mkdir(parents=True)
        links = self.root / f"ostree/boot.{n}.0"
        if links.exists():
            shutil.rmtree(links)
        entries = []
        seen: dict[str, int] = {}
        count = len(deployments)
        for i, d in enumerate(deployments):
            bootcsum, paths = self._boot_files(d)
            bootserial = seen.get(bootcsum, 0)
            seen[bootcsum] = bootserial + 1
            link = links / d.stateroot / bootcsum / str(bootserial)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(f"../../../deploy/{d.stateroot}/deploy/{d.name}", link)
            options = f"{KARGS} ostree=/ostree/boot.{n}/{d.stateroot}/{bootcsum}/{bootserial}"
            entry = BootEntry(
                id=f"ostree-{count - i}-{d.stateroot}",
                title=f"Fedora Linux {d.version} (ostree:{i})",
                sort_version=count - i,
                linux=paths["linux"],
                initrd=(paths["initrd"],),
                options=options,
                devicetree=paths["devicetree"],
                fdtdir=paths["fdtdir"],
                index=i,
                stateroot=d.stateroot,
                checksum=d.commit,
                version=d.version,
                kernel_version=d.kver,
                deployment=f"ostree/deploy/{d.stateroot}/deploy/{d.name}",
            )
            entries.append(entry)
            (loader / "entries" / f"{entry.id}.conf").write_text(bls_text(entry))
        atomic_symlink(f"boot.{n}.0", self.root / f"ostree/boot.{n}")
        return BootConfigContext(self.root, n, tuple(entries), self.arch, dict(self.options))

    def swap(self, context: BootConfigContext) -> None:
        atomic_symlink(f"loader.{context.bootversion}", self.root / "boot/loader")

    def cleanup(self, context: BootConfigContext) -> None:
        """Remove the previous loader.M and boot files no entry refers to (after post_swap, like ostree)."""
        m = 1 - context.bootversion
        for old in (self.root / f"boot/loader.{m}", self.root / f"ostree/boot.{m}.0"):
            if old.exists():
                shutil.rmtree(old)
        if (self.root / f"ostree/boot.{m}").is_symlink():
            os.unlink(self.root / f"ostree/boot.{m}")
        used = {e.linux.split("/")[2] for e in context.entries}
        for d in (self.root / "boot/ostree").iterdir():
            if d.name not in used:
                shutil.rmtree(d)

    def cycle(self, bootloader: Bootloader | None, deployments: list[Deployment]) -> BootConfigContext:
        context = self.stage(deployments)
        if bootloader is not None:
            bootloader.write_config(context)
        self.swap(context)
        if bootloader is not None:
            bootloader.post_swap(context)
            # as the core: a new default deployment is put on trial (boot counting)
            if getattr(self, "_default", None) != deployments[0].name:
                bootloader.arm_boot_counting(context, context.counting_tries())
        self._default = deployments[0].name
        self.cleanup(context)
        return context


def bls_text(entry: BootEntry) -> str:
    lines = [f"title {entry.title}", f"version {entry.sort_version}", f"options {entry.options}",
             f"linux {entry.linux}"]
    lines += [f"initrd {p}" for p in entry.initrd]
    if entry.devicetree:
        lines.append(f"devicetree {entry.devicetree}")
    if entry.fdtdir:
        lines.append(f"fdtdir {entry.fdtdir}")
    return "\n".join(lines) + "\n"


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every file (bytes) and symlink (target) under ``root``, to prove a step changed nothing."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                out[rel] = p.read_bytes()
    return out
