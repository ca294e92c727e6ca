"""``initramfs-etc``: files of the host's /etc carried into the initramfs (rpm-ostree's ``rust/src/initramfs.rs``).

The tracked paths (``[rpmostree] initramfs-etc=`` in the origin) are packed, with their parent directories and,
for a directory, everything under it, into a gzip'd newc cpio read from the merge deployment's /etc at every
deployment (so ``--force-sync`` picks up edits). rpm-ostree hands that archive to ostree as an overlay initrd
(a second ``initrd`` line); hybridos appends it to the layered commit's initramfs instead, which the kernel
reads the same way (concatenated cpio archives, 4-byte aligned) and every bootloader plugin boots unchanged.
The appended initramfs is made mode 0600, since tracked files are often keys.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path, PurePosixPath

from hybridos.errors import PackageError, UsageError

_TYPES = (stat.S_IFREG, stat.S_IFLNK, stat.S_IFDIR)


def check_tracked(files) -> None:
    """rpm-ostree's checks of the tracked paths: absolute, under /etc, canonical."""
    for f in files:
        if not f.startswith("/etc/"):
            raise UsageError(f"Path outside /etc forbidden: {f}")
        parts = PurePosixPath(f[len("/etc/"):]).parts
        if not parts or any(p in (".", "..") for p in f[len("/etc/"):].split("/")) or "//" in f or \
                f.endswith("/") or "\0" in f:
            raise UsageError(f"invalid path {f}: must be canonical")


def gather(etc_root: Path, files) -> list[str]:
    """The archive's member paths (relative to /etc, sorted): each tracked path, its parents, and everything
    under a tracked directory. A missing file or one of another type (device, fifo) is an error."""
    check_tracked(files)
    out: set[str] = set()

    def walk(rel: str) -> None:
        path = etc_root / rel
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise PackageError(f"Adding /etc/{rel}: no such file in the deployment's /etc") from None
        if stat.S_IFMT(st.st_mode) not in _TYPES:
            raise PackageError(f"Adding /etc/{rel}: Invalid non-regfile/symlink/directory")
        out.add(rel)
        if stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(path)):
                walk(f"{rel}/{name}")

    for f in files:
        rel = f[len("/etc/"):]
        parts = rel.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if os.path.islink(etc_root / parent):
                raise PackageError(f"Adding {f}: /etc/{parent} is a symbolic link")
            out.add(parent)
        walk(rel)
    return sorted(out)


def overlay_archive(etc_root: Path, files) -> bytes:
    """The gzip'd newc cpio of the tracked files (members ``etc/...``, mtime 0: the same files give the same
    bytes)."""
    from hybridos.initramfs_gen import CpioEntry, compress, newc_archive

    entries = [CpioEntry("etc", stat.S_IFDIR | 0o755)]
    for rel in gather(etc_root, files):
        path = etc_root / rel
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            data = os.readlink(path).encode()
        elif stat.S_ISREG(st.st_mode):
            data = path.read_bytes()
        else:
            data = b""
        entries.append(CpioEntry(f"etc/{rel}", st.st_mode, data, st.st_uid, st.st_gid))
    return compress(newc_archive(entries), "gzip")


def append_overlay(initramfs: Path, overlay: bytes) -> None:
    """Append ``overlay`` to ``initramfs`` (4-byte aligned, as the kernel wants concatenated archives); the file
    is replaced, never written through (it may be a hardlink into the repository)."""
    if not initramfs.is_file():
        raise PackageError(f"initramfs-etc: the tree has no initramfs at {initramfs}")
    tmp = initramfs.with_name(f".{initramfs.name}.etc-overlay")
    with open(initramfs, "rb") as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst)
        size = dst.tell()
        dst.write(b"\0" * (-size % 4))
        dst.write(overlay)
    os.chmod(tmp, 0o600)
    os.replace(tmp, initramfs)
