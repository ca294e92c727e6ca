"""``/run/ostree/staged-deployment``: libostree's record of a staged deployment (a serialized GVariant ``a{sv}``).

Keys as ``ostree_sysroot_stage_tree_with_options`` writes them: ``target`` and ``merge-deployment`` (each an
``a{sv}`` of ``name`` = ``<commit>.<serial>``, ``osname``, ``bootcsum``), ``kargs`` (``as``, the whole kernel
command line of the new entry), ``overlay-initrds`` (``as``), ``locked`` (``b``, since ostree 2023.8; the file
``/run/ostree/staged-deployment-locked`` says the same to older versions) and ``bootconfig-extra`` (``a{ss}``).
Parsing and serializing are pure; :func:`read_state` and :func:`write_state` do the I/O.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hybridos import gvariant
from hybridos.errors import FormatError, SysrootError
from hybridos.gvariant import Variant
from hybridos.sysroot import runstate
from hybridos.util.atomic import atomic_write

#: the state file is a few hundred bytes; anything much bigger is not one
STATE_LIMIT = 1 << 20


@dataclass(frozen=True)
class DeploymentRef:
    """A deployment as the state file names it."""

    osname: str
    checksum: str
    serial: int
    bootcsum: str

    @property
    def name(self) -> str:
        return f"{self.checksum}.{self.serial}"


@dataclass(frozen=True)
class StagedState:
    target: DeploymentRef
    merge: DeploymentRef | None = None
    kargs: tuple[str, ...] | None = None
    overlay_initrds: tuple[str, ...] | None = None
    locked: bool = False
    bootconfig_extra: tuple[tuple[str, str], ...] = ()


def _ref_variant(ref: DeploymentRef) -> Variant:
    return Variant("a{sv}", {"name": Variant("s", ref.name), "osname": Variant("s", ref.osname),
                             "bootcsum": Variant("s", ref.bootcsum)})


def serialize_state(state: StagedState) -> bytes:
    d: dict[str, Variant] = {"target": _ref_variant(state.target)}
    if state.merge is not None:
        d["merge-deployment"] = _ref_variant(state.merge)
    if state.kargs is not None:
        d["kargs"] = Variant("as", list(state.kargs))
    if state.overlay_initrds is not None:
        d["overlay-initrds"] = Variant("as", list(state.overlay_initrds))
    if state.locked:
        d["locked"] = Variant("b", True)
    if state.bootconfig_extra:
        d["bootconfig-extra"] = Variant("a{ss}", dict(state.bootconfig_extra))
    return gvariant.serialize("a{sv}", d)


def _get(d: dict, key: str, signature: str, where: str):
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, Variant) or v.signature != signature:
        raise FormatError(f"{where}: {key!r} is not of type {signature!r}")
    return v.value


def _parse_ref(value: dict, where: str) -> DeploymentRef:
    from hybridos.sysroot.sysroot import parse_deploy_name

    fields = {}
    for key in ("name", "osname", "bootcsum"):
        s = _get(value, key, "s", where)
        if s is None:
            raise FormatError(f"{where}: missing key {key!r}")
        fields[key] = s
    checksum, serial = parse_deploy_name(fields["name"])
    if not fields["osname"] or "/" in fields["osname"] or fields["osname"] in (".", ".."):
        raise FormatError(f"{where}: osname {fields['osname']!r} is not a stateroot name")
    return DeploymentRef(fields["osname"], checksum, serial, fields["bootcsum"])


def parse_state(data: bytes) -> StagedState | None:
    """The staged deployment of a state file; None when it has no ``target`` (as libostree ignores it)."""
    d = gvariant.parse("a{sv}", data, normal_form=False)
    target = _get(d, "target", "a{sv}", "staged deployment")
    if target is None:
        return None
    merge = _get(d, "merge-deployment", "a{sv}", "staged deployment")
    kargs = _get(d, "kargs", "as", "staged deployment")
    initrds = _get(d, "overlay-initrds", "as", "staged deployment")
    extra = _get(d, "bootconfig-extra", "a{ss}", "staged deployment")
    return StagedState(
        target=_parse_ref(target, "staged deployment target"),
        merge=_parse_ref(merge, "staged deployment merge-deployment") if merge is not None else None,
        kargs=tuple(kargs) if kargs is not None else None,
        overlay_initrds=tuple(initrds) if initrds is not None else None,
        locked=bool(_get(d, "locked", "b", "staged deployment")),
        bootconfig_extra=tuple(sorted(extra.items())) if extra else (),
    )


def read_state() -> StagedState | None:
    """The staged deployment recorded in the run directory, or None. A legacy lock file locks it too."""
    path = runstate.staged_path()
    try:
        with open(path, "rb") as f:
            data = f.read(STATE_LIMIT + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SysrootError(f"cannot read the staged deployment {path}: {exc.strerror}") from None
    if len(data) > STATE_LIMIT:
        raise SysrootError(f"staged deployment {path} is larger than {STATE_LIMIT} bytes")
    try:
        state = parse_state(data)
    except FormatError as exc:
        raise SysrootError(f"corrupt staged deployment {path}: {exc}",
                           hint=f"remove {path} to drop the staged deployment") from None
    if state is not None and not state.locked and runstate.staged_locked_path().exists():
        state = StagedState(state.target, state.merge, state.kargs, state.overlay_initrds, True,
                            state.bootconfig_extra)
    return state


def write_state(state: StagedState) -> None:
    """Write the state file (and the legacy lock file ostree before 2023.8 reads) atomically."""
    path = runstate.staged_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    locked = runstate.staged_locked_path()
    if state.locked:
        locked.touch(mode=0o640)
    else:
        locked.unlink(missing_ok=True)
    atomic_write(path, serialize_state(state), sync=False)


def remove_state() -> bool:
    """Forget the staged deployment (its directory is left for cleanup); returns whether there was one."""
    path = runstate.staged_path()
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    runstate.staged_locked_path().unlink(missing_ok=True)
    return True


def set_locked(locked: bool) -> StagedState:
    """Lock or unlock the staged deployment's finalization (``ostree admin lock-finalization [--unlock]``)."""
    state = read_state()
    if state is None:
        raise SysrootError("no staged deployment")
    new = StagedState(state.target, state.merge, state.kargs, state.overlay_initrds, locked,
                      state.bootconfig_extra)
    write_state(new)
    return new


def staged_dir(sysroot: Path, ref: DeploymentRef) -> Path:
    return Path(sysroot) / "ostree/deploy" / ref.osname / "deploy" / ref.name
