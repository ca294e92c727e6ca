"""Kernel module indexes at compose time: kmod's ``depmod`` for every kernel in the tree.

Kernel packages do not ship ``modules.dep`` (Debian's builds it in its postinst, Fedora's in a %posttrans), so
a composed tree would carry modules nothing can load. ``depmod -b BASE KVER`` reads and writes
``BASE/lib/modules/KVER`` and works for any architecture. BASE is a private directory whose
``lib/modules/KVER`` is a symlink to the tree's own (resolved inside the tree), so a ``/lib`` symlink a package
planted cannot send depmod to the host's modules.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hybridos.errors import PackageError
from hybridos.util.run import CommandError, run, which

MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")
#: the index files depmod writes; a package-shipped symlink by one of these names is removed first
INDEX_FILES = ("modules.dep", "modules.dep.bin", "modules.alias", "modules.alias.bin", "modules.softdep",
               "modules.symbols", "modules.symbols.bin", "modules.builtin.bin", "modules.builtin.alias.bin",
               "modules.devname", "modules.weakdep")


def kernel_module_dirs(tree: Path) -> dict[str, Path]:
    """{kernel version: its real modules directory in the tree} for every ``usr/lib/modules/<kver>``
    that holds at least one kernel module."""
    from hybridos.initramfs_gen import resolve_in_tree

    base = resolve_in_tree(tree, "usr/lib/modules")
    if base is None or not base.is_dir():
        return {}
    out = {}
    for entry in sorted(os.scandir(base), key=lambda e: e.name):
        if entry.is_symlink() or not entry.is_dir():
            continue
        if has_modules(Path(entry.path)):
            out[entry.name] = Path(entry.path)
    return out


def has_modules(moddir: Path) -> bool:
    return any(f.endswith(MODULE_SUFFIXES) for _dirpath, _dirs, files in os.walk(moddir) for f in files)


def run_depmod(tree: Path) -> list[str]:
    """Run ``depmod`` for every kernel in ``tree`` that has modules; returns those kernel versions."""
    kernels = kernel_module_dirs(tree)
    if not kernels:
        return []
    depmod = which("depmod")
    if depmod is None:
        raise PackageError(f"kernel {', '.join(kernels)} has modules, but depmod is not installed, so the "
                           "image could not load them", hint="install kmod (Debian/Fedora package 'kmod')")
    for kver, moddir in kernels.items():
        for name in INDEX_FILES:
            p = moddir / name
            if p.is_symlink():
                p.unlink()
        with tempfile.TemporaryDirectory(prefix="hybridos-depmod-") as base:
            (Path(base) / "lib/modules").mkdir(parents=True)
            os.symlink(moddir, Path(base) / "lib/modules" / kver)
            try:
                run([depmod, "-a", "-b", base, kver], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"})
            except CommandError as exc:
                raise PackageError(f"depmod failed for kernel {kver}: {exc.output.strip()[-1000:]}") from None
        if not (moddir / "modules.dep").is_file():
            raise PackageError(f"depmod did not write modules.dep for kernel {kver}")
    return list(kernels)
