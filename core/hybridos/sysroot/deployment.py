"""The deployment value type (libostree's ``ostree-deployment.c``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hybridos.sysroot.origin import Origin


@dataclass(frozen=True)
class Deployment:
    """One checked-out commit of a stateroot, as listed by the current boot entries."""

    stateroot: str
    checksum: str
    serial: int
    bootcsum: str = ""
    bootserial: int = 0
    #: position in boot order (0 = the default); -1 for a deployment not yet in a list
    index: int = -1
    #: kernel arguments without ``ostree=``
    kargs: str = ""
    origin: Origin | None = None
    #: why the origin could not be read (the deployment is still listed so it can be removed)
    origin_error: str | None = None
    booted: bool = False
    #: written but not yet in the boot entries: finalized at shutdown (``/run/ostree/staged-deployment``)
    staged: bool = False
    #: a staged deployment that shutdown will not finalize (``--lock-finalization``)
    finalization_locked: bool = False

    @property
    def pinned(self) -> bool:
        return bool(self.origin and self.origin.pinned)

    @property
    def name(self) -> str:
        """``<commit>.<serial>``: the directory name under ``ostree/deploy/<stateroot>/deploy``."""
        return f"{self.checksum}.{self.serial}"

    @property
    def id(self) -> str:
        """rpm-ostree's deployment id."""
        return f"{self.stateroot}-{self.name}"

    @property
    def relpath(self) -> str:
        """The checkout relative to the sysroot."""
        return f"ostree/deploy/{self.stateroot}/deploy/{self.name}"

    @property
    def origin_relpath(self) -> str:
        return self.relpath + ".origin"

    def same(self, other: Deployment | None) -> bool:
        """The same checkout (libostree's ``ostree_deployment_equal``)."""
        return other is not None and (self.stateroot, self.checksum, self.serial) == (
            other.stateroot, other.checksum, other.serial)

    def replace(self, **changes) -> Deployment:
        return dataclasses.replace(self, **changes)
