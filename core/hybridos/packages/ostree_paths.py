"""Where a package may put files in an OSTree image: rpm-ostree's importer rules as pure checks.

rpm-ostree imports a package only into "ostree-compliant" paths (its ``path_is_ostree_compliant``): /usr (but
not /usr/local), /etc (stored as /usr/etc), /bin, /sbin, /lib, /lib64, plus what it translates: /boot (to
/usr/lib/ostree-boot), /opt, and /var and /run (tmpfiles.d lines). Anything else is refused with "Unsupported
path" (only ``filesystem`` and ``rootfiles`` may own such paths, which it then skips).

hybridos follows that for client-side layering (:func:`layering_problem`): a layered file under /proc, /sys, /dev,
/sysroot, /ostree, /tmp, /home, /usr/local... is refused, /boot content is moved to /usr/lib/ostree-boot after the
transaction. /usr/etc is refused outright, in compose too (:func:`compose_problem`): it is where an image keeps
the defaults of /etc, so a package writing there would change /etc behind rpm's back (a layered
``/usr/etc/passwd`` would replace the base image's default /etc/passwd without any conflict check). Paths and
symlink targets with control or line-break characters are refused everywhere: /var and /run entries become
tmpfiles.d lines, where a newline would add a line of the package's choosing run by root at boot.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable

from hybridos.errors import PackageError
from hybridos.util.text import first_unsafe

#: toplevel directories a layered package may install into (rpm-ostree's compliant and translated paths)
LAYER_ROOTS = frozenset({"usr", "etc", "bin", "sbin", "lib", "lib64", "var", "run", "boot", "opt"})
#: directories that must stay directories: a package may own them, never replace them with something else
STRUCTURE = frozenset({"/usr", "/etc", "/var", "/run", "/boot", "/tmp", "/proc", "/sys", "/dev", "/sysroot",
                       "/usr/lib", "/usr/lib/ostree-boot"})
#: mount points of a booted OSTree system: nothing of an image may live below them
MOUNTS = ("proc", "sys", "dev", "sysroot", "ostree")
#: packages rpm-ostree lets own non-compliant paths (it skips those paths instead of failing)
EXEMPT = frozenset({"filesystem", "rootfiles"})
USR_ETC_WHY = "/usr/etc holds the image's defaults of /etc; a package installs configuration to /etc"


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/")


def _common(path: str, mode: int, linkto: str) -> str | None:
    bad = first_unsafe(path) or (first_unsafe(linkto) if linkto else None)
    if bad is not None:
        return f"{'its symlink target' if first_unsafe(path) is None else 'the path'} contains the control " \
               f"character {bad!r}"
    if not path.startswith("/") or ".." in path.split("/"):
        return "the path is not absolute and normal"
    if _under(path, "/usr/etc"):
        return USR_ETC_WHY
    if path in STRUCTURE and not stat.S_ISDIR(mode):
        return f"{path} is a directory of every OSTree image and cannot be replaced by " \
               f"{'a symlink' if stat.S_ISLNK(mode) else 'a file'}"
    return None


def compose_problem(path: str, mode: int, linkto: str = "", *, package: str = "") -> str | None:
    """Why a composed image cannot have this package entry (None: it can)."""
    problem = _common(path, mode, linkto)
    if problem is not None:
        return problem
    parts = path.split("/")
    if package not in EXEMPT and len(parts) > 2 and parts[1] in MOUNTS:
        return f"/{parts[1]} is mounted over on a running system, nothing of an image can live there"
    return None


def layering_problem(path: str, mode: int, linkto: str = "", *, package: str = "") -> str | None:
    """Why a layered package cannot have this entry (None: it can); rpm-ostree's importer rules."""
    problem = compose_problem(path, mode, linkto, package=package)
    if problem is not None or package in EXEMPT or path == "/":
        return problem
    top = path.split("/")[1]
    if top not in LAYER_ROOTS or _under(path, "/usr/local"):
        where = "/usr/local" if _under(path, "/usr/local") else f"/{top}"
        return f"layered packages may not install into {where} (rpm-ostree refuses it too: \"Unsupported path\")"
    return None


def check_package_paths(nevra: object, entries: Iterable, *, layering: bool) -> None:
    """Raise a one-line PackageError for the first entry (a header ``FileEntry``) the image cannot have.
    %ghost entries are skipped (nothing of them is written)."""
    name = getattr(nevra, "name", "")
    check = layering_problem if layering else compose_problem
    for e in entries:
        if e.is_ghost:
            continue
        problem = check(e.path, e.mode, e.linkto, package=name)
        if problem is not None:
            raise PackageError(f"{nevra}: cannot install {e.path!r}: {problem}")


def check_image_paths(items: Iterable, rpms: dict, *, layering: bool) -> None:
    """:func:`check_package_paths` for every package a transaction installs (``items``: TransactionItems,
    ``rpms``: NEVRA string -> RPM file), before anything is unpacked."""
    from hybridos.packages.header import read_rpm_header

    for item in items:
        header = read_rpm_header(rpms[str(item.nevra)])
        check_package_paths(header.nevra, header.file_entries, layering=layering)
