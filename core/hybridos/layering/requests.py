"""The requests a host makes on top of its base image, and how a command changes them.

They live in the deployment's origin file (``hybridos.sysroot.origin``) under rpm-ostree's keys:
``[packages] requested=`` (names), ``requested-local=`` (``SHA256:NEVRA`` of RPM files kept in the local
package store; ``requested-local-fileoverride=`` for those installed with ``--force-replacefiles``),
``[overrides] remove=`` (base package names), ``replace-local=`` (``SHA256:NEVRA``),
``[rpmostree] regenerate-initramfs=`` and ``initramfs-args=``. Everything here is pure: an Origin and a
``Change`` in, a new Origin out, or a one-line error saying why the change makes no sense.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hybridos.errors import AlreadyDone, NotFoundError, UsageError
from hybridos.packages.model import Nevra
from hybridos.sysroot.origin import Origin

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, order=True)
class LocalPackage:
    """An RPM file given on the command line, known by its sha256 and NEVRA (``SHA256:NEVRA`` in the origin)."""

    sha256: str
    nevra: Nevra

    @classmethod
    def parse(cls, entry: str) -> LocalPackage:
        sha, sep, nevra = entry.partition(":")
        if not sep or not _SHA256_RE.match(sha):
            raise UsageError(f"invalid local package entry {entry!r} in the origin: expected SHA256:NEVRA")
        return cls(sha, Nevra.parse(nevra))

    @property
    def name(self) -> str:
        return self.nevra.name

    def __str__(self) -> str:
        return f"{self.sha256}:{self.nevra}"


@dataclass(frozen=True)
class Requests:
    """The parsed requests of an origin."""

    packages: tuple[str, ...] = ()
    local_packages: tuple[LocalPackage, ...] = ()
    removals: tuple[str, ...] = ()
    local_replacements: tuple[LocalPackage, ...] = ()
    regenerate_initramfs: bool = False
    initramfs_args: tuple[str, ...] = ()
    #: sha256 of the ``local_packages`` whose files may replace other packages' files (--force-replacefiles)
    local_fileoverride: tuple[str, ...] = ()
    #: /etc files carried into the initramfs (``initramfs-etc --track``)
    initramfs_etc: tuple[str, ...] = ()

    @classmethod
    def from_origin(cls, origin: Origin) -> Requests:
        forced = tuple(LocalPackage.parse(e) for e in origin.requested_local_fileoverride)
        return cls(
            packages=tuple(origin.requested_packages),
            local_packages=tuple(LocalPackage.parse(e) for e in origin.requested_local_packages) + forced,
            local_fileoverride=tuple(p.sha256 for p in forced),
            initramfs_etc=tuple(origin.initramfs_etc),
            removals=tuple(origin.removals),
            local_replacements=tuple(LocalPackage.parse(e) for e in origin.local_replacements),
            regenerate_initramfs=origin.regenerate_initramfs,
            initramfs_args=tuple(origin.initramfs_args) if origin.regenerate_initramfs else (),
        )

    def to_origin(self, origin: Origin) -> Origin:
        forced = set(self.local_fileoverride)
        return origin.replace(
            requested_packages=tuple(sorted(set(self.packages))),
            requested_local_packages=tuple(str(p) for p in sorted(set(self.local_packages)) if p.sha256 not in forced),
            requested_local_fileoverride=tuple(str(p) for p in sorted(set(self.local_packages))
                                               if p.sha256 in forced),
            removals=tuple(sorted(set(self.removals))),
            local_replacements=tuple(str(p) for p in sorted(set(self.local_replacements))),
            regenerate_initramfs=self.regenerate_initramfs,
            initramfs_args=tuple(self.initramfs_args) if self.regenerate_initramfs else (),
            initramfs_etc=tuple(sorted(set(self.initramfs_etc))),
        )

    @property
    def empty(self) -> bool:
        return not (self.packages or self.local_packages or self.removals or self.local_replacements
                    or self.regenerate_initramfs or self.initramfs_etc)


@dataclass(frozen=True)
class Change:
    """What one command asks for."""

    install: tuple[str, ...] = ()
    install_local: tuple[LocalPackage, ...] = ()
    uninstall: tuple[str, ...] = ()
    uninstall_all: bool = False
    remove: tuple[str, ...] = ()
    replace_local: tuple[LocalPackage, ...] = ()
    reset_overrides: tuple[str, ...] = ()
    reset_all_overrides: bool = False
    reset_all: bool = False
    initramfs: bool | None = None          #: True: enable, False: disable, None: leave
    initramfs_args: tuple[str, ...] = ()
    idempotent: bool = False
    #: the ``install_local`` packages may replace other packages' files (kept in the origin, as rpm-ostree's
    #: ``requested-local-fileoverride``, so every later upgrade layers them the same way)
    fileoverride: bool = False
    #: ``initramfs-etc``: untrack all (or these), then track these /etc files
    initramfs_etc_untrack_all: bool = False
    initramfs_etc_untrack: tuple[str, ...] = ()
    initramfs_etc_track: tuple[str, ...] = ()


def _matches_local(spec: str, pkg: LocalPackage) -> bool:
    return spec in (pkg.name, str(pkg.nevra), pkg.sha256)


def _drop(spec: str, names: list[str], local: list[LocalPackage]) -> tuple[list[str], list[LocalPackage], bool]:
    """Remove ``spec`` from the requested names, else the local packages it matches; whether it was found."""
    if spec in names:
        return [n for n in names if n != spec], local, True
    kept = [p for p in local if not _matches_local(spec, p)]
    return names, kept, len(kept) != len(local)


def apply(requests: Requests, change: Change) -> Requests:
    """The requests after ``change``; UsageError/NotFoundError when the change contradicts them."""
    if change.reset_all:        # then the rest of the change, on nothing (rpm-ostree's `reset --install PKG`)
        requests = Requests()
    packages = list(requests.packages)
    local = list(requests.local_packages)
    removals = list(requests.removals)
    replacements = list(requests.local_replacements)
    regen, args = requests.regenerate_initramfs, tuple(requests.initramfs_args)

    for name in change.install:
        if name in packages:
            if change.idempotent:
                continue
            raise AlreadyDone(f"package {name!r} is already requested", hint="use --idempotent to ignore this")
        if name in removals:
            raise UsageError(f"package {name!r} is a removed base package; reset the override first "
                             f"(`override reset {name}`)")
        packages.append(name)
    for pkg in change.install_local:
        if any(p.sha256 == pkg.sha256 for p in local):
            if change.idempotent:
                continue
            raise AlreadyDone(f"local package {pkg.nevra} is already requested", hint="use --idempotent")
        if any(p.name == pkg.name for p in local):
            raise UsageError(f"another version of {pkg.name} is already requested as a local package; "
                             f"uninstall it first")
        local.append(pkg)
    forced = [sha for sha in requests.local_fileoverride]
    if change.fileoverride:
        forced += [p.sha256 for p in change.install_local if p.sha256 not in forced]

    if change.uninstall_all:
        packages, local = [], []
    for spec in change.uninstall:
        packages, local, found = _drop(spec, packages, local)
        if found or change.idempotent:
            continue
        requested = ", ".join([*packages, *(str(p.nevra) for p in local)]) or "none"
        raise NotFoundError(f"package {spec!r} is not a layered package (requested: {requested})")

    for name in change.remove:
        if name in removals:
            if change.idempotent:
                continue
            raise AlreadyDone(f"base package {name!r} is already removed", hint="use --idempotent")
        if any(p.name == name for p in replacements):
            raise UsageError(f"base package {name!r} is replaced; reset that override first")
        if name in packages:
            raise UsageError(f"{name!r} is a requested layered package; use `uninstall {name}`")
        removals.append(name)
    for pkg in change.replace_local:
        if any(p.sha256 == pkg.sha256 for p in replacements):
            if change.idempotent:
                continue
            raise AlreadyDone(f"{pkg.nevra} already replaces the base package", hint="use --idempotent")
        if pkg.name in removals:
            raise UsageError(f"base package {pkg.name!r} is removed; reset that override first")
        replacements = [p for p in replacements if p.name != pkg.name] + [pkg]

    if change.reset_all_overrides:
        removals, replacements = [], []
    for spec in change.reset_overrides:
        removals, replacements, found = _drop(spec, removals, replacements)
        if found or change.idempotent:
            continue
        raise NotFoundError(f"no override for package {spec!r}")

    if change.initramfs is True:
        if regen and args == tuple(change.initramfs_args) and not change.idempotent:
            raise AlreadyDone("initramfs regeneration is already enabled with these arguments")
        regen, args = True, tuple(change.initramfs_args)
    elif change.initramfs is False:
        if not regen and not change.idempotent:
            raise AlreadyDone("initramfs regeneration is not enabled")
        regen, args = False, ()

    # initramfs-etc, as rpm-ostree's transaction: untrack-all or untrack, then track (unknown paths: no-ops)
    etc = [] if change.initramfs_etc_untrack_all else \
        [f for f in requests.initramfs_etc if f not in change.initramfs_etc_untrack]
    etc += [f for f in change.initramfs_etc_track if f not in etc]

    kept = {p.sha256 for p in local}
    return Requests(tuple(packages), tuple(local), tuple(removals), tuple(replacements), regen, args,
                    tuple(sha for sha in forced if sha in kept), tuple(sorted(etc)))
