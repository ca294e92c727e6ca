"""Removing what the current boot configuration no longer references (libostree's ``ostree-sysroot-cleanup.c``).

Only called after the swap of ``boot/loader``: the other ``loader.N`` and ``ostree/boot.N*``, deployment
refs of other boot versions, deployment checkouts and origins not listed, and ``boot/ostree`` kernel
directories no deployment uses. Every removal is of something unreferenced, so a crash half-way is harmless.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import struct
from pathlib import Path

from hybridos.errors import HybridosError
from hybridos.sysroot.sysroot import Sysroot

FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_IMMUTABLE_FL = 0x00000010


def clear_immutable(path: Path) -> None:
    """Drop the immutable attribute ``ostree admin deploy`` puts on deployment roots (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        buf = fcntl.ioctl(fd, FS_IOC_GETFLAGS, struct.pack("i", 0))
        flags = struct.unpack("i", buf)[0]
        if flags & FS_IMMUTABLE_FL:
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("i", flags & ~FS_IMMUTABLE_FL))
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """Remove a file, symlink or directory tree if it exists (clearing the immutable attribute first)."""
    if not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return
    clear_immutable(path)
    shutil.rmtree(path)


def cleanup_sysroot(sysroot: Sysroot, *, checkouts: bool = True) -> list[str]:
    """Remove everything the loaded boot configuration does not reference; returns what was removed.
    ``checkouts`` False leaves unlisted deployment directories for a later cleanup (finalization at shutdown:
    removing a 30,000-file tree is most of its time)."""
    root = sysroot.path
    bv, sub = sysroot.bootversion, sysroot.subbootversion
    removed: list[str] = []

    def rm(path: Path) -> None:
        if os.path.lexists(path):
            remove_tree(path)
            removed.append(str(path.relative_to(root)))

    if (root / "boot/loader").is_symlink():
        rm(root / f"boot/loader.{1 - bv}")
        rm(root / "boot/loader.tmp")
        # temporary names of interrupted symlink swaps (util.atomic.atomic_symlink)
        for parent, prefix in ((root / "boot", ".loader.tmp"), (root / "ostree", ".boot.")):
            with contextlib.suppress(FileNotFoundError):
                for name in os.listdir(parent):
                    if name.startswith(prefix) and ".tmp" in name:
                        rm(parent / name)
        rm(root / f"ostree/boot.{1 - bv}")
        for s in (0, 1):
            rm(root / f"ostree/boot.{1 - bv}.{s}")
        rm(root / f"ostree/boot.{bv}.{1 - sub}")
        refs = root / "ostree/repo/refs/heads/ostree"
        for d in (refs / str(1 - bv), refs / str(bv) / str(1 - sub)):
            rm(d)
        current_refs = refs / str(bv) / str(sub)
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(current_refs):
                if not name.isdigit() or int(name) >= len(sysroot.deployments):
                    rm(current_refs / name)

    listed = {(d.stateroot, d.name) for d in sysroot.deployments}
    deploy_root = root / "ostree/deploy"
    with contextlib.suppress(FileNotFoundError):
        for stateroot in sorted(os.listdir(deploy_root)) if checkouts else ():
            ddir = deploy_root / stateroot / "deploy"
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                for name in sorted(os.listdir(ddir)):
                    base = name[:-len(".origin")] if name.endswith(".origin") else name
                    if (stateroot, base) not in listed:
                        rm(ddir / name)

    used_boot = {f"{d.stateroot}-{d.bootcsum}" for d in sysroot.deployments}
    with contextlib.suppress(FileNotFoundError):
        for name in sorted(os.listdir(root / "boot/ostree")):
            if name not in used_boot:
                rm(root / "boot/ostree" / name)
    return removed


def prune_repo(sysroot: Sysroot):
    """Delete repository objects that no ref reaches (deployment refs and remote refs, no history), as
    libostree's sysroot cleanup does; returns the store's PruneResult. Container images no deployment uses
    lose their refs first (their layers would otherwise be kept forever)."""
    repo = sysroot.repo
    if repo.list_refs("ostree/container/"):
        from hybridos.container.store import prune_images

        deployed: set[str] = set()
        for d in sysroot.deployments:
            deployed.add(d.checksum)
            with contextlib.suppress(HybridosError):
                parent = repo.load_commit(d.checksum).parent
                if parent:
                    deployed.add(parent)
        prune_images(repo, deployed)
    return repo.prune(depth=0, refs_only=True)
