"""Bootable disk images from a directory tree, with no loop devices and no mounts.

Filesystems are made from a directory with ``mkfs.ext4 -d`` (or ``mkfs.vfat -C`` plus mtools' ``mcopy`` for an
EFI system partition) into image files; :func:`assemble` lays them out with ``sfdisk`` on a sparse image file
and copies each one to its offset with ``dd``. BIOS GRUB: :func:`install_grub_bios` writes ``boot.img`` and a
``grub-mkimage`` core image into the BIOS boot partition, as ``grub-install`` would, without touching a device.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require_tool

SECTOR = 512
MIB = 1024 * 1024
#: GPT partition type GUIDs
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
XBOOTLDR = "BC13C2FF-59E6-4262-A352-B275FD6F7172"
PREP = "9E1A2D38-C612-4316-AA26-8B49521E5A8B"


def sh(*argv: str | os.PathLike, cwd: Path | None = None) -> str:
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    return p.stdout


def tree_size(path: Path) -> int:
    """Bytes a tree needs (hardlinked files counted once), rounded up per file to 4 KiB."""
    seen, total = set(), 0
    for dirpath, dirs, files in os.walk(path):
        total += 4096 * (1 + len(dirs))
        for f in files:
            st = os.lstat(os.path.join(dirpath, f))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += -(-st.st_size // 4096) * 4096
    return total


def ext4_image(image: Path, source: Path | None, label: str, *, size_mb: int | None = None,
               extra_mb: int = 64) -> Path:
    """An ext4 filesystem image holding ``source`` (default features: metadata_csum needs crc32c)."""
    require_tool("mkfs.ext4")
    if size_mb is None:
        size_mb = (tree_size(source) * 13 // 10) // MIB + extra_mb if source else extra_mb
    image.unlink(missing_ok=True)
    with open(image, "wb") as f:
        f.truncate(size_mb * MIB)
    argv = ["mkfs.ext4", "-q", "-F", "-L", label, "-E", "root_owner=0:0"]
    if source is not None:
        argv += ["-d", source]
    sh(*argv, image)
    return image


def vfat_image(image: Path, source: Path, label: str = "ESP", *, size_mb: int = 64) -> Path:
    """A FAT filesystem image (``mkfs.vfat -C``) with the contents of ``source`` copied in by ``mcopy``."""
    require_tool("mkfs.vfat", "mcopy")
    image.unlink(missing_ok=True)
    sh("mkfs.vfat", "-C", "-n", label, "-F", "32" if size_mb >= 33 else "16", image, str(size_mb * 1024))
    entries = sorted(p.name for p in source.iterdir())
    if entries:
        sh("mcopy", "-s", "-p", "-i", image, *[source / e for e in entries], "::/")
    return image


def vfat_read(image: Path, path: str) -> bytes:
    """A file of a FAT image (``mtype``-free: ``mcopy`` to stdout)."""
    p = subprocess.run(["mcopy", "-n", "-i", str(image), f"::{path}", "-"], capture_output=True)
    if p.returncode != 0:
        raise FileNotFoundError(f"{path} in {image}: {p.stderr.decode().strip()}")
    return p.stdout


def vfat_list(image: Path, path: str = "/") -> list[str]:
    out = sh("mdir", "-b", "-i", image, f"::{path}")
    return [line.strip().rstrip("/").rsplit("/", 1)[-1] for line in out.splitlines() if line.strip()]


@dataclass(frozen=True)
class Partition:
    """One partition: an image file to copy in (or None for an empty/raw one of ``size_mb``)."""

    type: str                          #: GPT type GUID, or an MBR type such as "83"
    image: Path | None = None
    size_mb: int | None = None
    name: str = ""
    bootable: bool = False

    def size_bytes(self) -> int:
        if self.image is not None:
            return -(-self.image.stat().st_size // MIB) * MIB
        assert self.size_mb is not None
        return self.size_mb * MIB


def assemble(disk: Path, partitions: list[Partition], *, label: str = "gpt") -> list[int]:
    """Write a partition table (``sfdisk`` on the image file) and copy each partition image to its place.

    Returns each partition's start offset in bytes. Partitions start at 1 MiB and are 1 MiB aligned."""
    require_tool("sfdisk")
    offsets, start = [], MIB
    script = [f"label: {label}", "unit: sectors"]
    for part in partitions:
        size = part.size_bytes()
        line = f"start={start // SECTOR}, size={size // SECTOR}, type={part.type}"
        if part.name and label == "gpt":
            line += f', name="{part.name}"'
        if part.bootable and label == "dos":
            line += ", bootable"
        script.append(line)
        offsets.append(start)
        start += size
    disk.unlink(missing_ok=True)
    with open(disk, "wb") as f:
        f.truncate(start + MIB)        # room for the backup GPT
    p = subprocess.run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(disk)],
                       input="\n".join(script) + "\n", capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(f"sfdisk failed: {p.stderr}")
    for part, offset in zip(partitions, offsets, strict=True):
        if part.image is not None:
            sh("dd", f"if={part.image}", f"of={disk}", "bs=1M", f"seek={offset // MIB}", "conv=notrunc,sparse",
               "status=none")
    return offsets


def extract(disk: Path, offset: int, size: int, out: Path) -> Path:
    """Copy ``size`` bytes at ``offset`` of ``disk`` (a partition, after a boot changed it) to ``out``."""
    sh("dd", f"if={disk}", f"of={out}", "bs=1M", f"skip={offset // MIB}", f"count={-(-size // MIB)}",
       "conv=sparse", "status=none")
    return out
