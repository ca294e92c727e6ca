"""Domain values of the package system, shared by the solve and layer hooks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from hybridos.arch import Architecture
from hybridos.errors import PackageError, UsageError

_NEVRA_RE = re.compile(r"^(?P<name>.+)-(?:(?P<epoch>\d+):)?(?P<version>[^-:]+)-(?P<release>[^-:]+)\.(?P<arch>[^.]+)$")


@dataclass(frozen=True, order=True)
class Nevra:
    """name-[epoch:]version-release.arch"""

    name: str
    epoch: int
    version: str
    release: str
    arch: str

    @property
    def evr(self) -> str:
        return f"{self.epoch}:{self.version}-{self.release}" if self.epoch else f"{self.version}-{self.release}"

    def __str__(self) -> str:
        return f"{self.name}-{self.evr}.{self.arch}"

    @classmethod
    def parse(cls, text: str) -> Nevra:
        m = _NEVRA_RE.match(text)
        if not m:
            raise UsageError(f"not a package NEVRA: {text!r}")
        return cls(m["name"], int(m["epoch"] or 0), m["version"], m["release"], m["arch"])


#: what each NEVRA field may hold before it becomes part of a file name (rpm's own rules are looser in headers
#: than in spec files; a header is outside data): no '/', no control characters, no leading dot
_NAME_RE = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9._+~^%{}@-]*$")
_VR_RE = re.compile(r"^[A-Za-z0-9_+~^][A-Za-z0-9._+~^%{}@]*$")
_ARCH_RE = re.compile(r"^[A-Za-z0-9_]+$")


def check_path_safe(nevra: Nevra) -> None:
    """Refuse a NEVRA whose fields cannot go into a file name as they are (``../`` in a NAME, say)."""
    for field_name, value, pattern in (("name", nevra.name, _NAME_RE), ("version", nevra.version, _VR_RE),
                                       ("release", nevra.release, _VR_RE), ("arch", nevra.arch, _ARCH_RE)):
        if len(value) > 255 or not pattern.match(value):
            raise PackageError(f"package {field_name} {value!r} contains characters a package file name cannot "
                               f"have (a '/', a control character or a leading '.')")


def safe_file_name(nevra: Nevra) -> str:
    """``name-[epoch:]version-release.arch`` after :func:`check_path_safe`."""
    check_path_safe(nevra)
    return str(nevra)


class Action(StrEnum):
    INSTALL = "install"
    ERASE = "erase"
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"
    REINSTALL = "reinstall"


@dataclass(frozen=True)
class SolveRequest:
    """What the solve hook turns into a transaction.

    ``repos`` are loaded repository objects from ``hybridos.packages`` (their type belongs to the solver
    implementation); ``installed`` is the set already in the tree, read from its rpmdb.
    """

    arch: Architecture
    repos: tuple = ()
    installed: tuple = ()
    install: tuple[str, ...] = ()          #: names, provides, NEVRAs or local RPM paths
    erase: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()          #: exact packages to install in place of the same names
    upgrade_all: bool = False
    distupgrade: bool = False
    excludes: tuple[str, ...] = ()
    weak_deps: bool = True
    locked: tuple[str, ...] = ()           #: names that may not be removed, upgraded or downgraded
    allow_downgrade: bool = False
    #: installed names the user asked for; when given, erasing also removes dependencies nothing else needs
    user_installed: tuple[str, ...] = ()


@dataclass(frozen=True)
class TransactionItem:
    action: Action
    nevra: Nevra
    location: str = ""          #: URL or path of the RPM for installs
    checksum: str = ""          #: "sha256:<hex>" from the metadata
    replaces: Nevra | None = None
    size: int | None = None      #: the RPM file's size as the metadata declares it (a download stops beyond it)


@dataclass(frozen=True)
class Transaction:
    """An ordered list of package operations."""

    items: tuple[TransactionItem, ...] = ()

    @property
    def installs(self) -> tuple[TransactionItem, ...]:
        return tuple(i for i in self.items if i.action is not Action.ERASE)

    @property
    def erases(self) -> tuple[TransactionItem, ...]:
        return tuple(i for i in self.items if i.action is Action.ERASE)

    def __bool__(self) -> bool:
        return bool(self.items)


@dataclass(frozen=True)
class LayerRequest:
    """What the layer hook applies: ``transaction`` onto ``tree`` using downloaded ``rpms``."""

    tree: Path
    transaction: Transaction
    rpms: dict[str, Path] = field(default_factory=dict)   #: str(nevra) -> local RPM file
    arch: Architecture = Architecture.X86_64
    run_scripts: bool = True
    force_replacefiles: bool = False
    protected_paths: frozenset[str] = frozenset()        #: base files layering may not overwrite
    #: whether the tree's /usr is a hardlink checkout of an object store (scriptlets then see it read-only
    #: for in-place edits); None lets the layer implementation find out from the tree
    hardlinked_usr: bool | None = None
    #: seconds each scriptlet may run before it is killed; None: $HYBRIDOS_SCRIPTLET_TIMEOUT, else 300
    scriptlet_timeout: float | None = None


@dataclass(frozen=True)
class LayerResult:
    installed: tuple[Nevra, ...] = ()
    erased: tuple[Nevra, ...] = ()
    script_output: str = ""
