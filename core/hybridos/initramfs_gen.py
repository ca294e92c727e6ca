"""Initramfs generation: the tree's own dracut (sandboxed), or a minimal built-in busybox initramfs.

The built-in image is a compressed newc cpio holding the tree's busybox (plus its shared libraries when it
is not static), applet links and an ``/init`` script that does what ``ostree-prepare-root`` does: read
``root=`` and ``ostree=`` from ``/proc/cmdline``, mount the physical root at ``/sysroot``, bind-mount the
deployment as the new root with ``/sysroot`` and the stateroot's ``/var`` inside it and ``/usr`` read-only,
create ``/run/ostree-booted``, and ``switch_root``. Kernel modules: the common storage and filesystem drivers
(:data:`DEFAULT_DRIVERS`) plus dracut-style ``--add-drivers``, with their modules.dep dependencies, are
loaded by ``/init`` before it waits for the root device; a driver the kernel has built in needs nothing.

Pure parts: :func:`newc_archive` (entries -> bytes), :func:`elf_dependencies` (ELF bytes -> interpreter and
DT_NEEDED), :func:`parse_modules_dep`, :func:`parse_modules_softdep`, :func:`module_load_order`,
:func:`module_closure`, :data:`INIT_SCRIPT`. The rest reads the tree
and writes the image atomically.

On any failure ``/init`` reboots after ``hybridos.fail-delay=`` seconds (default 5) so that boot counting can
fall back to another entry; ``rd.shell`` on the kernel command line keeps a shell instead. ``rd.timeout=``
bounds the wait for the root device (default 30 s).
"""

from __future__ import annotations

import gzip
import logging
import os
import stat
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import zstandard

from hybridos.arch import Architecture
from hybridos.errors import PackageError
from hybridos.initramfs import InitramfsRequest
from hybridos.util.atomic import atomic_write
from hybridos.util.run import which

log = logging.getLogger(__name__)

DRACUT_PATHS = ("usr/bin/dracut", "usr/sbin/dracut", "sbin/dracut", "bin/dracut")
BUSYBOX_PATHS = ("usr/bin/busybox", "usr/sbin/busybox", "bin/busybox", "sbin/busybox")
LIBRARY_DIRS = ("usr/lib64", "lib64", "usr/lib", "lib", "usr/lib/x86_64-linux-gnu", "usr/lib/aarch64-linux-gnu",
                "usr/lib/powerpc64le-linux-gnu", "lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu",
                "lib/powerpc64le-linux-gnu")
#: applets /init uses; each gets a link to busybox even when the tree links none of them.
INIT_APPLETS = ("sh", "mount", "umount", "mkdir", "switch_root", "readlink", "cat", "sleep", "findfs",
                "echo", "test", "[", "ls", "modprobe", "insmod", "lsmod", "mknod", "reboot", "sync")
#: applets also linked in /sbin, where the kernel (``/sbin/modprobe``) and people look for them
SBIN_APPLETS = ("modprobe", "insmod", "lsmod", "reboot", "switch_root")

# -------------------------------------------------------------------------------------------------------
# newc cpio (pure)
# -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpioEntry:
    """One archive member. ``mode`` includes the file type bits (S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR...)."""

    name: str
    mode: int
    data: bytes = b""          #: file content, or the target of a symlink
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    rdev: tuple[int, int] = (0, 0)


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _newc_header(ino: int, e: CpioEntry, nlink: int, name: bytes, size: int) -> bytes:
    fields = (ino, e.mode, e.uid, e.gid, nlink, e.mtime, size, 0, 0, e.rdev[0], e.rdev[1], len(name) + 1, 0)
    return b"070701" + b"".join(b"%08X" % f for f in fields)


def newc_archive(entries: Iterable[CpioEntry]) -> bytes:
    """A "new ASCII" (SVR4, ``070701``) cpio archive of ``entries``, in order, ending with the trailer.

    Names are stored without a leading slash; inode numbers count up from 1; device files carry ``rdev``.
    """
    out = bytearray()
    for ino, e in enumerate(entries, start=1):
        name = e.name.lstrip("/").encode() or b"."
        if b"\0" in name:
            raise ValueError(f"NUL in cpio member name {e.name!r}")
        kind = stat.S_IFMT(e.mode)
        data = e.data if kind in (stat.S_IFREG, stat.S_IFLNK) else b""
        nlink = 2 if kind == stat.S_IFDIR else 1
        header = _newc_header(ino, e, nlink, name, len(data))
        out += header + name + b"\0"
        out += _pad4(len(header) + len(name) + 1)
        out += data + _pad4(len(data))
    trailer = b"TRAILER!!!"
    header = _newc_header(0, CpioEntry("", 0), 1, trailer, 0)
    out += header + trailer + b"\0" + _pad4(len(header) + len(trailer) + 1)
    return bytes(out)


def compress(data: bytes, method: str) -> bytes:
    """gzip or zstd, deterministically (no timestamps)."""
    if method == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if method == "zstd":
        return zstandard.ZstdCompressor(level=10, write_checksum=True).compress(data)
    raise PackageError(f"unknown initramfs compression {method!r} (use gzip or zstd)")


# -------------------------------------------------------------------------------------------------------
# ELF dependencies (pure)
# -------------------------------------------------------------------------------------------------------


def elf_dependencies(data: bytes) -> tuple[str | None, tuple[str, ...]]:
    """``(PT_INTERP path or None, DT_NEEDED names)`` of an ELF executable or library; (None, ()) if static."""
    if data[:4] != b"\x7fELF" or len(data) < 64:
        raise PackageError("not an ELF file")
    is64 = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    try:
        if is64:
            phoff, = struct.unpack_from(end + "Q", data, 32)
            phentsize, phnum = struct.unpack_from(end + "HH", data, 54)
        else:
            phoff, = struct.unpack_from(end + "I", data, 28)
            phentsize, phnum = struct.unpack_from(end + "HH", data, 42)
        segments = []
        for i in range(phnum):
            off = phoff + i * phentsize
            if is64:
                p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(end + "IIQQQQ", data, off)
            else:
                p_type, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(end + "IIIII", data, off)
            segments.append((p_type, p_offset, p_vaddr, p_filesz))
        interp = None
        for p_type, p_offset, _v, p_filesz in segments:
            if p_type == 3:  # PT_INTERP
                interp = data[p_offset:p_offset + p_filesz].split(b"\0")[0].decode()
        dynamic = next((s for s in segments if s[0] == 2), None)  # PT_DYNAMIC
        if dynamic is None:
            return interp, ()
        entsize = 16 if is64 else 8
        fmt = end + ("qQ" if is64 else "iI")
        needed_offsets, strtab = [], None
        for off in range(dynamic[1], dynamic[1] + dynamic[3], entsize):
            tag, val = struct.unpack_from(fmt, data, off)
            if tag == 0:
                break
            if tag == 1:
                needed_offsets.append(val)
            elif tag == 5:
                strtab = val
        if strtab is None:
            return interp, ()
        # DT_STRTAB is a virtual address: map it to a file offset through the PT_LOAD segments.
        base = None
        for p_type, p_offset, p_vaddr, p_filesz in segments:
            if p_type == 1 and p_vaddr <= strtab < p_vaddr + p_filesz:
                base = strtab - p_vaddr + p_offset
        if base is None:
            return interp, ()
        names = tuple(data[base + o:data.index(b"\0", base + o)].decode() for o in needed_offsets)
        return interp, names
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise PackageError(f"malformed ELF file: {exc}") from None


# -------------------------------------------------------------------------------------------------------
# /init
# -------------------------------------------------------------------------------------------------------

INIT_SCRIPT = r"""#!/bin/sh
# /init of the hybridos built-in initramfs: mount the root filesystem named by root=, set up the OSTree
# deployment named by ostree= as ostree-prepare-root does, and switch_root into it.
# Sourcing this file with HYBRIDOS_INIT_LIB=1 only defines the functions.

say() { echo "hybridos-init: $*"; }

# die MESSAGE: report, then reboot after hybridos.fail-delay= seconds (default 5) so that the bootloader's
# boot counting can fall back to another entry; rd.shell (or rd.shell=1) keeps a shell instead, for debugging.
die() {
    say "$*"
    _cmdline=$(cat "${CMDLINE_FILE:-/proc/cmdline}" 2>/dev/null)
    case " $_cmdline " in
        *" rd.shell "*|*" rd.shell=1 "*)
            say "cannot continue; starting a shell (rd.shell)"
            exec sh ;;
    esac
    _delay=$(cmdline_value hybridos.fail-delay "$_cmdline")
    case "$_delay" in ''|*[!0-9]*) _delay=5 ;; esac
    say "cannot continue; rebooting in $_delay seconds (add rd.shell to the kernel command line for a shell)"
    sleep "$_delay"
    do_reboot
}

do_reboot() {
    sync
    reboot -f
    echo b > /proc/sysrq-trigger
    sleep 5
    exit 1
}

# cmdline_value NAME CMDLINE: the value of the last NAME=... word (as the kernel reads its arguments).
cmdline_value() {
    _name=$1
    _val=
    for _arg in $2; do
        case "$_arg" in
            "$_name="*) _val=${_arg#"$_name="} ;;
        esac
    done
    echo "$_val"
}

# resolve_device SPEC: a device path for root=/dev/..., UUID=, LABEL=, PARTUUID=, PARTLABEL=.
resolve_device() {
    case "$1" in
        UUID=*|LABEL=*|PARTUUID=*|PARTLABEL=*) findfs "$1" 2>/dev/null ;;
        *) echo "$1" ;;
    esac
}

wait_for_device() {
    _tries=0
    while :; do
        _dev=$(resolve_device "$1")
        if [ -n "$_dev" ] && [ -b "$_dev" ]; then
            echo "$_dev"
            return 0
        fi
        _tries=$((_tries + 1))
        [ "$_tries" -ge "${2:-30}" ] && return 1
        [ $((_tries % 5)) = 0 ] && say "waiting for the root device $1 ($_tries s)" >&2
        sleep 1
    done
}

# ostree_prepare_root SYSROOT NEWROOT OSTREE: bind-mount the deployment OSTREE (a path below SYSROOT such
# as /ostree/boot.1/os/<bootcsum>/0) at NEWROOT, with SYSROOT at NEWROOT/sysroot, the stateroot's var at
# NEWROOT/var and NEWROOT/usr read-only.
ostree_prepare_root() {
    _sysroot=$1
    _newroot=$2
    _deploy=$(readlink -f "$_sysroot$3") || { say "cannot resolve ostree=$3"; return 1; }
    case "$_deploy" in
        "$_sysroot"/ostree/deploy/*/deploy/*) ;;
        *) say "ostree=$3 does not lead to a deployment (got $_deploy)"; return 1 ;;
    esac
    [ -d "$_deploy/usr" ] || { say "deployment $_deploy has no /usr"; return 1; }
    _var=$(readlink -f "$_deploy/../../var")
    [ -d "$_var" ] || { say "stateroot var $_var is missing"; return 1; }
    mkdir -p "$_newroot"
    mount --bind "$_deploy" "$_newroot" || return 1
    mount --bind "$_sysroot" "$_newroot/sysroot" || return 1
    mount --bind "$_var" "$_newroot/var" || return 1
    mount --bind "$_newroot/usr" "$_newroot/usr" || return 1
    mount -o remount,bind,ro "$_newroot/usr" || return 1
}

main() {
    export PATH=/usr/sbin:/usr/bin:/sbin:/bin
    mkdir -p /proc /sys /dev /run /sysroot /newroot
    mount -t proc proc /proc
    mount -t sysfs sysfs /sys
    mount -t devtmpfs devtmpfs /dev 2>/dev/null
    mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
    # The kernel runs /sbin/modprobe itself for what it requests later (crypto-crc32c when ext4 mounts).
    if [ -f /etc/hybridos-modules ]; then
        while read -r module; do
            [ -n "$module" ] && modprobe "$module" 2>/dev/null
        done < /etc/hybridos-modules
    fi
    cmdline=$(cat /proc/cmdline)
    # rd.timeout=SECONDS (as dracut): how long to wait for the root device; 0 or absent means 30
    timeout=$(cmdline_value rd.timeout "$cmdline")
    case "$timeout" in ''|0|*[!0-9]*) timeout=30 ;; esac
    root=$(cmdline_value root "$cmdline")
    ostree=$(cmdline_value ostree "$cmdline")
    fstype=$(cmdline_value rootfstype "$cmdline")
    flags=$(cmdline_value rootflags "$cmdline")
    init=$(cmdline_value init "$cmdline")
    [ -n "$ostree" ] || die "no ostree= on the kernel command line"
    [ -n "$root" ] || die "no root= on the kernel command line"
    dev=$(wait_for_device "$root" "$timeout") || die "root device $root did not appear within $timeout s"
    # The physical root is mounted read-write: /var and /etc of the deployment live on it.
    mount ${fstype:+-t "$fstype"} -o "rw${flags:+,$flags}" "$dev" /sysroot || die "cannot mount $dev"
    ostree_prepare_root /sysroot /newroot "$ostree" || die "cannot set up the deployment $ostree"
    : > /run/ostree-booted
    for fs in run dev proc sys; do
        mount --move "/$fs" "/newroot/$fs" 2>/dev/null || umount "/$fs" 2>/dev/null
    done
    exec switch_root /newroot "${init:-/sbin/init}"
}

[ "${HYBRIDOS_INIT_LIB:-}" = 1 ] || main "$@"
"""

# -------------------------------------------------------------------------------------------------------
# Reading the tree
# -------------------------------------------------------------------------------------------------------


def resolve_in_tree(tree: Path, relpath: str) -> Path | None:
    """Resolve ``relpath`` inside ``tree`` as if ``tree`` were ``/`` (absolute symlinks stay inside)."""
    parts = [p for p in relpath.strip("/").split("/") if p not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = tree.joinpath(*resolved, part)
        try:
            st = candidate.lstat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 40:
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return tree.joinpath(*resolved)


def _find(tree: Path, candidates: Iterable[str]) -> tuple[str, Path] | None:
    for rel in candidates:
        p = resolve_in_tree(tree, rel)
        if p is not None and p.is_file() and os.access(p, os.X_OK):
            return rel, p
    return None


def dracut_available(tree: str | os.PathLike) -> bool:
    """Whether the tree ships dracut."""
    return _find(Path(tree), DRACUT_PATHS) is not None


def busybox_available(tree: str | os.PathLike) -> bool:
    """Whether the tree ships busybox (what the built-in generator needs)."""
    return _find(Path(tree), BUSYBOX_PATHS) is not None


def _tree_busybox_applets(tree: Path, busybox: Path) -> set[str]:
    """Names the tree itself links to its busybox (symlinks in the bin directories)."""
    names: set[str] = set()
    real = busybox.resolve()
    for d in ("usr/bin", "usr/sbin", "bin", "sbin"):
        base = tree / d
        if base.is_symlink() or not base.is_dir():
            continue
        for entry in os.scandir(base):
            if entry.is_symlink():
                target = resolve_in_tree(tree, f"{d}/{entry.name}")
                if target is not None and target.resolve() == real:
                    names.add(entry.name)
    return names


def _library_closure(tree: Path, binary: bytes) -> list[tuple[str, bytes]]:
    """(path in the image, content) for the interpreter and shared libraries ``binary`` needs."""
    interp, needed = elf_dependencies(binary)
    out: dict[str, bytes] = {}
    if interp:
        p = resolve_in_tree(tree, interp)
        if p is None or not p.is_file():
            raise PackageError(f"the tree's busybox needs {interp}, which the tree lacks")
        out[interp.lstrip("/")] = p.read_bytes()
    queue = list(needed)
    seen: set[str] = set()
    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        for d in LIBRARY_DIRS:
            p = resolve_in_tree(tree, f"{d}/{name}")
            if p is not None and p.is_file():
                data = p.read_bytes()
                out[f"{d}/{name}"] = data
                queue.extend(elf_dependencies(data)[1])
                break
        else:
            raise PackageError(f"the tree's busybox needs the library {name}, which the tree lacks")
    return sorted(out.items())


#: storage and filesystem drivers the built-in image carries by default, when the kernel has them as modules
#: (their modules.dep and modules.softdep closure comes along: ext4 and xfs pull crc32c, for instance)
DEFAULT_DRIVERS = ("virtio_pci", "virtio_blk", "virtio_scsi", "virtio_mmio", "nvme", "ahci", "ata_piix",
                   "sd_mod", "sr_mod", "mmc_block", "sdhci_pci", "sdhci_of_arasan", "usb_storage", "uas",
                   "ext4", "xfs", "btrfs", "vfat", "crc32c", "crc32c_generic", "crc32c_intel", "crct10dif_generic")
MODULE_INDEXES = ("modules.dep", "modules.alias", "modules.builtin", "modules.order", "modules.softdep",
                  "modules.builtin.modinfo")


def module_name(path: str) -> str:
    """``kernel/fs/ext4/ext4.ko.xz`` -> ``ext4`` (dashes normalized to underscores, as modprobe does)."""
    base = path.rsplit("/", 1)[-1]
    return base.split(".ko", 1)[0].replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """modules.dep -> {module name: (its path, the paths it depends on)}."""
    out = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        path, _, deps = line.partition(":")
        path = path.strip()
        out[module_name(path)] = (path, tuple(deps.split()))
    return out


@dataclass(frozen=True)
class SoftDep:
    """One ``softdep NAME pre: ... post: ...`` line of modules.softdep (or a modprobe.d file)."""

    pre: tuple[str, ...] = ()
    post: tuple[str, ...] = ()


def parse_modules_softdep(text: str) -> dict[str, SoftDep]:
    """modules.softdep -> {module name: SoftDep}; comments and other commands are ignored."""
    out: dict[str, SoftDep] = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 2 or words[0] != "softdep":
            continue
        lists: dict[str, list[str]] = {"pre:": [], "post:": []}
        current = None
        for w in words[2:]:
            if w in lists:
                current = lists[w]
            elif current is not None:
                current.append(w)
        name = words[1].replace("-", "_")
        old = out.get(name, SoftDep())
        out[name] = SoftDep(old.pre + tuple(lists["pre:"]), old.post + tuple(lists["post:"]))
    return out


def parse_modules_alias(text: str) -> list[tuple[str, str]]:
    """modules.alias -> [(pattern, module name)] in file order."""
    out = []
    for line in text.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "alias":
            out.append((words[1], words[2].replace("-", "_")))
    return out


def resolve_module(dep: dict[str, tuple[str, tuple[str, ...]]], aliases: list[tuple[str, str]],
                   name: str) -> list[str]:
    """Module names ``name`` stands for: itself if it is a module, else every module with a matching alias
    (``crc32c`` -> ``crc32c_generic``, ``crc32c_intel``), as modprobe resolves it."""
    norm = name.replace("-", "_")
    if norm in dep:
        return [norm]
    from fnmatch import fnmatchcase

    return list(dict.fromkeys(mod for pattern, mod in aliases if mod in dep and fnmatchcase(name, pattern)))


def module_load_order(dep: dict[str, tuple[str, tuple[str, ...]]], names: Iterable[str],
                      softdep: dict[str, SoftDep] | None = None,
                      aliases: list[tuple[str, str]] | None = None) -> list[str]:
    """Module names to ``modprobe`` in order: each named module (or alias) preceded by its soft ``pre:``
    dependencies and followed by its ``post:`` ones, recursively; unknown names are skipped."""
    softdep = softdep or {}
    aliases = aliases or []
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        for mod in resolve_module(dep, aliases, name):
            if mod in order or mod in visiting:
                continue
            visiting.add(mod)
            sd = softdep.get(mod, SoftDep())
            for pre in sd.pre:
                visit(pre)
            order.append(mod)
            for post in sd.post:
                visit(post)

    for n in names:
        visit(n)
    return order


def module_closure(dep: dict[str, tuple[str, tuple[str, ...]]], names: Iterable[str],
                   softdep: dict[str, SoftDep] | None = None,
                   aliases: list[tuple[str, str]] | None = None) -> list[str]:
    """Paths of the named modules, their soft dependencies and everything they depend on (modules.dep),
    sorted; unknown names are skipped."""
    by_path = {path: deps for path, deps in dep.values()}
    by_name = {module_name(path): path for path in by_path}
    out: set[str] = set()
    queue = [dep[n][0] for n in module_load_order(dep, names, softdep, aliases)]
    while queue:
        path = queue.pop()
        if path in out:
            continue
        out.add(path)
        for d in by_path.get(path, ()):
            queue.append(d)
            # a hard dependency's own soft dependencies come too (libcrc32c -> crc32c)
            for extra in module_load_order(dep, [module_name(d)], softdep, aliases):
                if by_name.get(extra) not in out:
                    queue.append(by_name[extra])
    return sorted(out)


def drivers_from_args(args: Iterable[str]) -> tuple[str, ...] | None:
    """Driver names from dracut-style ``--add-drivers``/``--drivers`` (space or comma separated); None if absent."""
    args = list(args)
    names: list[str] = []
    given = False
    for i, a in enumerate(args):
        value = None
        for opt in ("--add-drivers", "--drivers", "--force-drivers"):
            if a == opt and i + 1 < len(args):
                value = args[i + 1]
            elif a.startswith(opt + "="):
                value = a.split("=", 1)[1]
        if value is not None:
            given = True
            names.extend(x for x in value.replace(",", " ").split() if x)
    return tuple(names) if given else None


def _compression_from_args(args: Iterable[str]) -> str:
    method = "gzip"
    args = list(args)
    for i, a in enumerate(args):
        if a in ("--zstd", "--gzip"):
            method = a[2:]
        elif a.startswith("--compress="):
            method = a.split("=", 1)[1]
        elif a == "--compress" and i + 1 < len(args):
            method = args[i + 1]
    return {"gz": "gzip", "zst": "zstd"}.get(method, method)


def _module_entries(tree: Path, kver: str, drivers: Iterable[str], mtime: int) -> list[CpioEntry]:
    """lib/modules/<kver>/... for ``drivers`` and their dependencies, the module indexes, etc/hybridos-modules."""
    moddir = resolve_in_tree(tree, f"usr/lib/modules/{kver}")
    depfile = moddir / "modules.dep" if moddir is not None else None
    if depfile is None or not depfile.is_file():
        return []
    dep = parse_modules_dep(depfile.read_text(errors="replace"))
    softdep_file = moddir / "modules.softdep"
    softdep = parse_modules_softdep(softdep_file.read_text(errors="replace")) if softdep_file.is_file() else {}
    alias_file = moddir / "modules.alias"
    aliases = parse_modules_alias(alias_file.read_text(errors="replace")) if alias_file.is_file() else []
    wanted = module_load_order(dep, drivers, softdep, aliases)
    paths = module_closure(dep, wanted, softdep, aliases)
    if not paths:
        return []
    files: dict[str, bytes] = {}
    for rel in [*paths, *MODULE_INDEXES]:
        src = resolve_in_tree(tree, f"usr/lib/modules/{kver}/{rel}")
        if src is not None and src.is_file():
            files[f"lib/modules/{kver}/{rel}"] = src.read_bytes()
        elif rel in paths:
            raise PackageError(f"module {rel} is listed in modules.dep but missing from the tree")
    dirs = set()
    for path in files:
        parent = os.path.dirname(path)
        while parent and parent != "lib":
            dirs.add(parent)
            parent = os.path.dirname(parent)
    entries = [CpioEntry(d, stat.S_IFDIR | 0o755, mtime=mtime) for d in sorted(dirs)]
    entries += [CpioEntry(p, stat.S_IFREG | 0o644, data, mtime=mtime) for p, data in sorted(files.items())]
    names = "".join(f"{d.replace('-', '_')}\n" for d in wanted)
    entries.append(CpioEntry("etc/hybridos-modules", stat.S_IFREG | 0o644, names.encode(), mtime=mtime))
    return entries


def builtin_entries(tree: Path, *, mtime: int = 0, kver: str | None = None,
                    drivers: Iterable[str] = DEFAULT_DRIVERS) -> list[CpioEntry]:
    """The members of the built-in initramfs for ``tree`` (reads busybox and its libraries from the tree, and
    with ``kver`` the kernel modules for ``drivers`` that the kernel has as modules)."""
    found = _find(tree, BUSYBOX_PATHS)
    if found is None:
        raise PackageError("the tree has neither dracut nor busybox, so no initramfs can be built",
                           hint="add dracut or busybox to the treefile's packages")
    _rel, busybox = found
    data = busybox.read_bytes()
    libs = _library_closure(tree, data)
    dirs = {"bin", "dev", "etc", "lib", "newroot", "proc", "root", "run", "sbin", "sys", "sysroot", "tmp",
            "usr", "usr/bin", "usr/sbin", "var"}
    for path, _ in libs:
        parent = os.path.dirname(path)
        while parent:
            dirs.add(parent)
            parent = os.path.dirname(parent)
    entries = [CpioEntry(d, stat.S_IFDIR | 0o755, mtime=mtime) for d in sorted(dirs)]
    entries.append(CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1), mtime=mtime))
    entries.append(CpioEntry("dev/null", stat.S_IFCHR | 0o666, rdev=(1, 3), mtime=mtime))
    entries.append(CpioEntry("bin/busybox", stat.S_IFREG | 0o755, data, mtime=mtime))
    for path, content in libs:
        entries.append(CpioEntry(path, stat.S_IFREG | 0o755, content, mtime=mtime))
    applets = (set(INIT_APPLETS) | _tree_busybox_applets(tree, busybox)) - {"busybox"}
    for name in sorted(applets):
        if "/" in name:
            continue
        entries.append(CpioEntry(f"bin/{name}", stat.S_IFLNK | 0o777, b"busybox", mtime=mtime))
    for name in SBIN_APPLETS:
        entries.append(CpioEntry(f"sbin/{name}", stat.S_IFLNK | 0o777, b"../bin/busybox", mtime=mtime))
    if kver is not None:
        entries.extend(_module_entries(tree, kver, drivers, mtime))
    entries.append(CpioEntry("init", stat.S_IFREG | 0o755, INIT_SCRIPT.encode(), mtime=mtime))
    return entries


def build_builtin_initramfs(request: InitramfsRequest) -> Path:
    """Write the built-in busybox initramfs to ``request.output``; gzip unless args ask for zstd."""
    tree = Path(request.tree)
    moddir = resolve_in_tree(tree, f"usr/lib/modules/{request.kernel_version}")
    if moddir is None or not moddir.is_dir():
        raise PackageError(f"the tree has no usr/lib/modules/{request.kernel_version} (no kernel of that version)")
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)
    drivers = drivers_from_args(request.args)
    entries = builtin_entries(tree, mtime=mtime, kver=request.kernel_version,
                              drivers=DEFAULT_DRIVERS + (drivers or ()))
    image = compress(newc_archive(entries), _compression_from_args(request.args))
    atomic_write(moddir / "initramfs.img", image, 0o644)   # rename replaces a symlink, never follows it
    return request.output


# -------------------------------------------------------------------------------------------------------
# dracut, sandboxed in the tree
# -------------------------------------------------------------------------------------------------------


def sandbox_argv(tree: Path, argv: list[str]) -> list[str]:
    """Run ``argv`` with ``tree`` as ``/``, its own /dev, /proc and /tmp, no network: bwrap, else unshare+chroot."""
    bwrap = which("bwrap")
    if bwrap:
        return [bwrap, "--bind", str(tree), "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
                "--unshare-all", "--die-with-parent", "--chdir", "/", *argv]
    unshare = which("unshare")
    if unshare is None:
        raise PackageError("neither bwrap nor unshare is installed; cannot run programs inside the tree",
                           hint="install bubblewrap")
    return [unshare, "--mount", "--pid", "--net", "--ipc", "--uts", "--fork", f"--mount-proc={tree}/proc",
            "chroot", str(tree), *argv]


def run_dracut(request: InitramfsRequest) -> Path:
    """Run the tree's dracut for the tree's kernel inside the tree; built-in image for foreign trees."""
    tree = Path(request.tree)
    found = _find(tree, DRACUT_PATHS)
    if found is None:
        return build_builtin_initramfs(request)
    if request.arch is not Architecture.host():
        # dracut is a shell script that execs many of the tree's programs: qemu-user without binfmt_misc
        # cannot follow those, so a foreign tree gets the built-in image.
        log.warning("warning: dracut of a %s tree cannot run on this %s machine; writing the built-in initramfs",
                    request.arch.value, Architecture.host().value)
        return build_builtin_initramfs(request)
    rel, _ = found
    out_rel = f"/usr/lib/modules/{request.kernel_version}/initramfs.img"
    args = list(request.args) or ["--no-hostonly"]
    if any((tree / "usr/lib/dracut/modules.d").glob("*ostree*")):
        args = ["--add", "ostree", *args]
    argv = [f"/{rel}", "--force", "--reproducible", "--tmpdir", "/tmp", "--kver", request.kernel_version, *args,
            out_rel]
    (tree / "tmp").mkdir(exist_ok=True)
    (tree / "proc").mkdir(exist_ok=True)
    (tree / "dev").mkdir(exist_ok=True)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
    # the scriptlet sandbox: dracut comes from the packages, as hostile as their scriptlets
    from hybridos.packages.sandbox import Limits, run_sandboxed
    from hybridos.packages.scriptlets import guarded_usr

    with guarded_usr(tree, hardlinked=request.hardlinked_usr) as usr:   # a hardlink checkout (client-side layering): /usr through rofiles-fuse
        proc = run_sandboxed(tree, argv, env=env, stdin=b"", what=f"dracut for kernel {request.kernel_version}",
                             limits=Limits.default(request.timeout), usr=usr, tmpfs_tmp=True)
    if proc.returncode != 0:
        output = proc.stdout.decode("utf-8", "replace").strip()[-2000:]
        raise PackageError(f"dracut failed for kernel {request.kernel_version} (exit status {proc.returncode}): "
                           + (" | ".join(output.splitlines()[-5:]) or "no output"))
    if not request.output.is_file() or request.output.stat().st_size == 0:
        raise PackageError(f"dracut did not write {out_rel}")
    return request.output
