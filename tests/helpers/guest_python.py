"""hybridos itself as real RPMs for a guest: this machine's Python runtime plus hybridos and its dependencies.

A composed tree that installs these packages runs ``/usr/bin/hybridos`` with nothing from the host::

    from tests.helpers.guest_python import build_guest_rpms

    rpms = build_guest_rpms(tmp_path / "rpms")          # list of RPM paths
    names = [read_rpm_header(p).name for p in rpms]     # python3.11, python3-click, ..., hybridos

What goes in:
- ``python3.11``: the interpreter running the tests (``sys.base_prefix``) as ``/usr/bin/python3.11``, its
  standard library in ``/usr/lib/python3.11`` (without tests, IDLE, Tk, ensurepip, 2to3, distutils, unittest,
  and extension modules for terminals and databases hybridos does not use), and every shared library the
  interpreter and the shipped extension modules link to (found with ``ldd``), glibc's loader included:
  libraries in ``/usr/lib/x86_64-linux-gnu`` (a default search directory of Debian's loader, so no
  ``ld.so.cache`` is needed), the loader in ``/usr/lib64`` with a ``/lib64 -> usr/lib64`` link for the
  interpreter path compiled into every executable.
- one ``python3-<name>`` package per installed distribution hybridos needs (its ``Requires-Dist`` closure
  without extras: pluggy, stevedore, click, solv, pyyaml, zstandard, cryptography + cffi, zlib-ng), copied from
  what pip installed here, with its ``.dist-info`` (entry points for stevedore) and the shared libraries wheels
  bundle (``solv.libs``); the alternative cffi backend of zstandard is left out.
- ``hybridos`` and the plugin distributions asked for (default: the ``file://`` fetcher and the GRUB, systemd-boot
  and U-Boot plugins; not the HTTP fetcher), each with its dist-info so entry points resolve, and the
  ``/usr/bin/hybridos`` script.

Every ``.py`` file ships with an unchecked-hash ``.pyc`` compiled here: an OSTree checkout has mtime 0 and a
read-only ``/usr``, so timestamp ``.pyc`` files would never match and Python would compile every module on every
run (seconds in an emulated guest).
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import marshal
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import Requirement

from tests.helpers.rpms import File, Pkg, build_rpm

PYVER = f"{sys.version_info.major}.{sys.version_info.minor}"
PYTHON_PKG = f"python{PYVER}"
STDLIB = f"/usr/lib/python{PYVER}"
SITE = f"{STDLIB}/site-packages"
LIBDIR = "/usr/lib/x86_64-linux-gnu"
LOADER_DIR = "/usr/lib64"

#: top-level stdlib entries never shipped (tests, GUI, packaging tools, build configuration)
STDLIB_EXCLUDE = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "distutils", "unittest",
                  "pydoc_data", "site-packages", "__pycache__", "turtle.py"}
#: extension modules not shipped: self-tests, Tk, terminals, NIS and databases (and the libraries they pull in)
DYNLOAD_EXCLUDE = re.compile(r"^(_test|_ctypes_test|_tkinter|_curses|readline|nis|_dbm|_gdbm|xxlimited|"
                             r"_xxtestfuzz|_xxsubinterpreters|ossaudiodev|audioop|spwd)")
#: files of third-party distributions not shipped (type stubs, zstandard's alternative cffi backend, tests)
DIST_EXCLUDE = re.compile(r"(\.pyi$|(^|/)__pycache__/|(^|/)tests?/|^zstandard/_cffi\.|^\.\./)")

#: distributions packaged by default: the core and the plugins a file:// upgrade/rollback needs
DEFAULT_DISTS = ("hybridos", "hybridos-repo-fs", "hybridos-bootloader-grub", "hybridos-bootloader-systemd-boot",
                 "hybridos-bootloader-uboot")

HYBRIDOS_SCRIPT = (f"#!/usr/bin/python{PYVER}\n"
                   "import sys\n"
                   "from hybridos.cli.entry import main\n"
                   "sys.exit(main())\n").encode()


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def rpm_name(dist: str) -> str:
    """The package name of a Python distribution: ``hybridos*`` keep their name, others get ``python3-``."""
    n = normalize(dist)
    return n if n.startswith("hybridos") else f"python3-{n}"


# -- .pyc ---------------------------------------------------------------------------------------------------


def unchecked_pyc(source: bytes, guest_path: str) -> bytes:
    """An unchecked-hash ``.pyc`` (PEP 552) of ``source``, its code objects naming ``guest_path``."""
    code = compile(source, guest_path, "exec", dont_inherit=True)
    flags = (1).to_bytes(4, "little")          # hash-based, check_source off
    return importlib.util.MAGIC_NUMBER + flags + importlib.util.source_hash(source) + marshal.dumps(code)


def _pyc_path(guest_path: str) -> str:
    d, _, base = guest_path.rpartition("/")
    return f"{d}/__pycache__/{base[:-3]}.{sys.implementation.cache_tag}.pyc"


def _file(guest: str, data: bytes, mode: int) -> list[File]:
    """The file (regular, mode 0755/0644 from ``mode``) and, for Python source, its ``.pyc``."""
    perm = 0o755 if mode & 0o111 else 0o644
    out = [File(guest, data, mode=perm)]
    if guest.endswith(".py"):
        try:
            out.append(File(_pyc_path(guest), unchecked_pyc(data, guest), mode=0o644))
        except SyntaxError:
            pass                                  # a template or a file for another Python: ship the source only
    return out


def _tree_files(src: Path, guest: str, skip=lambda rel: False) -> Iterable[tuple[Path, str]]:
    """(host path, guest path) for every regular file below ``src``; symlinks are followed, pycache skipped."""
    for dirpath, dirnames, filenames in os.walk(src):
        rel_dir = os.path.relpath(dirpath, src)
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__"
                             and not skip(os.path.normpath(os.path.join(rel_dir, d))))
        for name in sorted(filenames):
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if not skip(rel):
                yield Path(dirpath) / name, f"{guest}/{rel}"


# -- shared libraries ---------------------------------------------------------------------------------------

_LDD_RE = re.compile(r"^\s*(\S+)\s+=>\s+(\S+)\s+\(0x[0-9a-f]+\)\s*$")
_LDD_INTERP_RE = re.compile(r"^\s*(/\S+)\s+\(0x[0-9a-f]+\)\s*$")


def shared_libraries(elves: Iterable[Path]) -> tuple[dict[str, Path], Path | None]:
    """``({soname: host path}, loader)`` of everything ``ldd`` resolves for ``elves``.

    Libraries that sit beside an extension module inside its distribution (auditwheel's ``*.libs``
    directories, found through its RUNPATH) are left to that distribution's package.
    """
    libs: dict[str, Path] = {}
    loader = None
    for elf in elves:
        proc = subprocess.run(["ldd", str(elf)], capture_output=True, text=True)
        if proc.returncode != 0:
            continue                                              # not dynamic
        for line in proc.stdout.splitlines():
            if m := _LDD_RE.match(line):
                name, path = m.groups()
                if ".libs/" in path or "site-packages" in path:
                    continue
                libs.setdefault(name, Path(path))
            elif m := _LDD_INTERP_RE.match(line):
                loader = Path(m.group(1))
    return libs, loader


def elf_bytes(path: Path) -> bytes:
    """The ELF file's bytes without debug sections (``strip --strip-debug``; as is when strip is missing)."""
    if shutil.which("strip") is None:
        return path.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "elf"
        proc = subprocess.run(["strip", "--strip-debug", "-o", str(out), str(path)], capture_output=True)
        return out.read_bytes() if proc.returncode == 0 else path.read_bytes()


# -- the runtime --------------------------------------------------------------------------------------------


def python_runtime_pkg(extra_elves: Iterable[Path] = ()) -> Pkg:
    """``python3.11``: interpreter, standard library and the shared libraries of both and of ``extra_elves``."""
    base = Path(sys.base_prefix)
    exe = Path(os.path.realpath(base / "bin" / f"python{PYVER}"))
    stdlib = Path(sysconfig.get_paths(vars={"installed_base": str(base), "base": str(base)})["stdlib"])
    files: list[File] = []
    dynload: list[Path] = []

    def skip(rel: str) -> bool:
        top = rel.split("/", 1)[0]
        if top in STDLIB_EXCLUDE or top.startswith("config-"):
            return True
        return rel.startswith("lib-dynload/") and bool(DYNLOAD_EXCLUDE.match(rel.split("/", 1)[1]))

    for host, guest in _tree_files(stdlib, STDLIB, skip):
        if host.suffix == ".so":
            dynload.append(host)
        files += _file(guest, host.read_bytes(), host.stat().st_mode)
    libs, loader = shared_libraries([exe, *dynload, *extra_elves])
    if loader is None:
        raise RuntimeError(f"ldd found no program interpreter for {exe}")
    for name, host in sorted(libs.items()):
        files.append(File(f"{LIBDIR}/{name}", elf_bytes(host), mode=0o755))
    files += [
        File(f"/usr/bin/python{PYVER}", elf_bytes(exe), mode=0o755),
        File("/usr/bin/python3", symlink=f"python{PYVER}"),
        File(f"{LOADER_DIR}/{loader.name}", Path(os.path.realpath(loader)).read_bytes(), mode=0o755),
        File(str(loader.parent), symlink=LOADER_DIR.lstrip("/")) if str(loader.parent) != LOADER_DIR else None,
        File(f"{SITE}", dir=True, mode=0o755),
    ]
    return Pkg(PYTHON_PKG, f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}",
               provides=("python3", f"python(abi) = {PYVER}"), files=tuple(f for f in files if f is not None),
               summary=f"Python {PYVER} runtime of the test host")


# -- distributions ------------------------------------------------------------------------------------------


def _requirements(dist: md.Distribution) -> list[str]:
    out = []
    for text in dist.requires or ():
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.append(req.name)
    return out


def dist_closure(names: Iterable[str]) -> list[md.Distribution]:
    """The installed distributions ``names`` and everything they require (no extras), in a stable order."""
    seen: dict[str, md.Distribution] = {}
    queue = list(names)
    while queue:
        name = normalize(queue.pop(0))
        if name in seen:
            continue
        dist = md.distribution(name)
        seen[name] = dist
        queue.extend(_requirements(dist))
    return [seen[k] for k in sorted(seen)]


def _is_editable(dist: md.Distribution) -> bool:
    text = dist.read_text("direct_url.json")
    return bool(text) and json.loads(text).get("dir_info", {}).get("editable", False)


def _dist_info_files(dist: md.Distribution) -> list[File]:
    """The dist-info directory (metadata and entry points) as the guest sees it."""
    info = Path(dist._path)  # noqa: SLF001 - the only way to reach an editable install's dist-info
    out = []
    for p in sorted(info.rglob("*")):
        if p.is_file() and p.name not in ("RECORD", "direct_url.json", "REQUESTED"):
            out.append(File(f"{SITE}/{info.name}/{p.relative_to(info)}", p.read_bytes(), mode=0o644))
    return out


def _dist_payload(dist: md.Distribution) -> tuple[list[File], list[Path]]:
    """(files, ELF files) of a distribution's importable content."""
    files: list[File] = []
    elves: list[Path] = []
    if _is_editable(dist):
        tops = (dist.read_text("top_level.txt") or "").split()
        for top in tops:
            spec = importlib.util.find_spec(top)
            if spec is None or not spec.submodule_search_locations:
                raise RuntimeError(f"cannot locate package {top!r} of editable {dist.metadata['Name']}")
            pkg_dir = Path(next(iter(spec.submodule_search_locations)))
            for host, guest in _tree_files(pkg_dir, f"{SITE}/{top}"):
                files += _file(guest, host.read_bytes(), host.stat().st_mode)
        return files, elves
    info_name = Path(dist._path).name  # noqa: SLF001
    for rel in dist.files or ():
        rel_s = str(rel)
        if rel_s.startswith(info_name + "/") or DIST_EXCLUDE.search(rel_s):
            continue
        host = Path(dist.locate_file(rel))
        if not host.is_file():
            continue
        if ".so" in host.name:
            elves.append(host)
        files += _file(f"{SITE}/{rel_s}", host.read_bytes(), host.stat().st_mode)
    return files, elves


def dist_pkg(dist: md.Distribution) -> tuple[Pkg, list[Path]]:
    """One RPM spec for an installed distribution, and the ELF files it ships (for the runtime's libraries)."""
    name = dist.metadata["Name"]
    files, elves = _dist_payload(dist)
    files += _dist_info_files(dist)
    if normalize(name) == "hybridos":
        files.append(File("/usr/bin/hybridos", HYBRIDOS_SCRIPT, mode=0o755))
    requires = (PYTHON_PKG, *(rpm_name(r) for r in _requirements(dist)))
    version = re.sub(r"[^A-Za-z0-9._+~]", "_", dist.version)
    return Pkg(rpm_name(name), version, arch="x86_64" if elves else "noarch", requires=requires,
               files=tuple(files), summary=f"{name} {dist.version} for the guest"), elves


def guest_specs(dists: Iterable[str] = DEFAULT_DISTS) -> list[Pkg]:
    """RPM specs: the runtime (with every library the packaged extension modules need) and the distributions."""
    specs, elves = [], []
    for dist in dist_closure(dists):
        spec, dist_elves = dist_pkg(dist)
        specs.append(spec)
        elves += dist_elves
    return [python_runtime_pkg(elves), *specs]


def build_guest_rpms(outdir: str | os.PathLike, dists: Iterable[str] = DEFAULT_DISTS) -> list[Path]:
    """Build the runtime and distribution RPMs into ``outdir``; returns their paths."""
    return [build_rpm(spec, outdir) for spec in guest_specs(dists)]
