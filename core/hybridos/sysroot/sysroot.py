"""Loading a sysroot the way libostree does (``ostree-sysroot.c``).

``boot/loader`` -> ``loader.N`` gives the bootversion; ``ostree/boot.N`` -> ``boot.N.M`` the subbootversion;
the deployments are the ``ostree-*.conf`` entries of ``boot/loader/entries`` sorted by version (highest
first), each resolved through its ``ostree=`` bootlink to ``ostree/deploy/<stateroot>/deploy/<commit>.<serial>``.
A deployment is booted only when the sysroot is ``/``, ``/run/ostree-booted`` exists and ``/proc/cmdline``'s
``ostree=`` resolves to it (or the sysroot is a test's stand-in for the booted ``/``: ``sysroot.runstate``).
On a booted sysroot a staged deployment (``/run/ostree/staged-deployment``) comes first, with ``staged`` set,
as libostree lists it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from hybridos.errors import ConfigError, FormatError, NotFoundError, SysrootError
from hybridos.sysroot import bls, runstate
from hybridos.sysroot.deployment import Deployment
from hybridos.sysroot.mounts import is_booted_root
from hybridos.sysroot.origin import parse_origin

_DEPLOY_NAME_RE = re.compile(r"^([0-9a-f]{64})\.([0-9]+)$")


def _readlink(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SysrootError(f"cannot read {path}: {exc.strerror}") from None


def not_a_sysroot_hint(root: Path) -> str:
    if Path(root).resolve() == Path("/"):
        return "this system is not OSTree-booted; point --sysroot (or HYBRIDOS_SYSROOT) at a sysroot"
    return f"initialize it with `hybridos admin init-fs {root}`"


def read_bootversion(root: Path) -> int:
    target = _readlink(root / "boot/loader")
    if target is None:
        return 0
    if target not in ("loader.0", "loader.1"):
        raise SysrootError(f"{root}/boot/loader points to {target!r}, expected loader.0 or loader.1")
    return int(target[-1])


def read_subbootversion(root: Path, bootversion: int) -> int:
    target = _readlink(root / f"ostree/boot.{bootversion}")
    if target is None:
        return 0
    if target not in (f"boot.{bootversion}.0", f"boot.{bootversion}.1"):
        raise SysrootError(f"{root}/ostree/boot.{bootversion} points to {target!r}, "
                           f"expected boot.{bootversion}.0 or boot.{bootversion}.1")
    return int(target[-1])


def read_origin_file(path: Path):
    """(Origin or None, error message or None) for a deployment's origin file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, f"origin file {path} is missing"
    except OSError as exc:
        return None, f"cannot read origin file {path}: {exc.strerror}"
    try:
        return parse_origin(data), None
    except ConfigError as exc:
        return None, f"corrupt origin file {path}: {exc}"


def parse_deploy_name(name: str) -> tuple[str, int]:
    m = _DEPLOY_NAME_RE.match(name)
    if not m:
        raise FormatError(f"deployment directory name {name!r} is not <commit>.<serial>")
    return m.group(1), int(m.group(2))


@dataclass(frozen=True)
class Sysroot:
    """A loaded sysroot: its path, boot versions and deployments in boot order."""

    path: Path
    bootversion: int
    subbootversion: int
    deployments: tuple[Deployment, ...]
    booted: Deployment | None = None
    #: the parsed BLS entry of each deployment, by deployment name (a staged deployment has none)
    entries: dict[str, bls.ParsedEntry] = field(default_factory=dict, compare=False)
    #: the state file of the staged deployment (``deployments[0]``), when there is one
    staged_state: object | None = field(default=None, compare=False)
    #: loaded as the running system (booted ``/`` or its test stand-in): deployments are staged by default
    running: bool = field(default=False, compare=False)

    @classmethod
    def load(cls, path: str | os.PathLike, *, cmdline: str | None = None) -> Sysroot:
        """Load without the lock: a concurrent swap (and the cleanup after it) is detected and read again.

        ``cmdline``: a kernel command line whose ``ostree=`` names the booted deployment inside ``path`` (for
        tests and offline inspection). By default only ``/`` has a booted deployment, from ``/proc/cmdline``.
        """
        for attempt in range(3):
            before = _readlink(Path(path) / "boot/loader")
            try:
                loaded = cls._load(Path(path), cmdline)
            except SysrootError:
                if attempt == 2 or _readlink(Path(path) / "boot/loader") == before:
                    raise
                continue
            if _readlink(Path(path) / "boot/loader") == before:
                return loaded
        return loaded

    @classmethod
    def _load(cls, root: Path, cmdline: str | None = None) -> Sysroot:
        if not (root / "ostree/repo").is_dir() or not (root / "ostree/deploy").is_dir():
            if not root.is_dir():
                raise NotFoundError(f"sysroot {root} does not exist")
            raise SysrootError(f"{root} is not an OSTree sysroot (no ostree/repo or ostree/deploy)",
                               hint=not_a_sysroot_hint(root))
        bootversion = read_bootversion(root)
        subbootversion = read_subbootversion(root, bootversion)
        entries_dir = root / "boot/loader/entries"
        parsed: list[tuple[int, str, bls.ParsedEntry]] = []
        if (root / "boot/loader").is_symlink():
            try:
                names = sorted(os.listdir(entries_dir))
            except FileNotFoundError:
                names = []
            for name in names:
                if not (name.startswith("ostree-") and name.endswith(".conf")):
                    continue
                entry_path = entries_dir / name
                try:
                    entry = bls.parse_entry(entry_path.read_bytes())
                    parsed.append((entry.sort_version, name, entry))
                except (OSError, FormatError) as exc:
                    raise SysrootError(f"cannot read boot entry {entry_path}: {exc}") from None
        parsed.sort(key=lambda t: (-t[0], t[1]))
        stand_in = cmdline is None and runstate.stand_in_booted(root)
        if stand_in:
            cmdline = runstate.read_cmdline() or ""
        booted_key = booted_from_cmdline(root, cmdline) if cmdline is not None else _booted_key(root)
        deployments, entries = [], {}
        for index, (_, name, entry) in enumerate(parsed):
            dep = _deployment_from_entry(root, bootversion, index, name, entry)
            if booted_key == (dep.stateroot, dep.checksum, dep.serial):
                dep = dep.replace(booted=True)
            deployments.append(dep)
            entries[dep.name] = entry
        if cmdline is None and booted_key is None and is_booted_root(root):
            # /proc/cmdline names a bootlink of the boot version we booted with, which a later swap removes or
            # points elsewhere: then, as libostree does, the booted deployment is the one whose directory is "/"
            found = booted_by_inode(root, deployments, Path("/"))
            deployments = [d.replace(booted=True) if d.same(found) else d for d in deployments]
        booted = next((d for d in deployments if d.booted), None)
        if booted is None and cmdline is None and is_booted_root(root):
            # as libostree: an OSTree-booted / whose deployment is not among the entries is not a state to act on
            if not (root / "boot/loader").is_symlink():
                raise SysrootError("/run/ostree-booted exists but /boot/loader does not",
                                   hint="mount the boot partition (or bind-mount /sysroot/boot) on /boot")
            raise SysrootError("/run/ostree-booted exists but no boot entry leads to the running deployment",
                               hint="is the right partition mounted on /boot?")
        state = None
        running = booted is not None and (stand_in or (cmdline is None and is_booted_root(root)))
        if running:
            state, staged = _load_staged(root, deployments)
            if staged is not None:
                deployments = [staged] + [d.replace(index=d.index + 1) for d in deployments]
        return cls(root, bootversion, subbootversion, tuple(deployments), booted, entries, state, running)

    @property
    def staged(self) -> Deployment | None:
        """The staged deployment (finalized at shutdown), if any."""
        return self.deployments[0] if self.deployments and self.deployments[0].staged else None

    # -- queries --------------------------------------------------------------------------------------

    @property
    def default(self) -> Deployment | None:
        return self.deployments[0] if self.deployments else None

    def stateroots(self) -> list[str]:
        try:
            return sorted(p.name for p in (self.path / "ostree/deploy").iterdir() if (p / "var").is_dir())
        except FileNotFoundError:
            return []

    def default_stateroot(self) -> str | None:
        """The booted deployment's stateroot, else the default deployment's, else the only stateroot."""
        if self.booted is not None:
            return self.booted.stateroot
        if self.default is not None:
            return self.default.stateroot
        roots = self.stateroots()
        return roots[0] if len(roots) == 1 else None

    def merge_deployment(self, stateroot: str | None) -> Deployment | None:
        """The deployment whose /etc and origin a new one starts from (libostree's merge deployment)."""
        if self.booted is not None and self.booted.stateroot == stateroot:
            return self.booted
        return next((d for d in self.deployments if d.stateroot == stateroot), None)

    def require_merge(self, stateroot: str | None) -> tuple[str, Deployment]:
        """The stateroot (``--os``, else the default one) and its merge deployment, which must have an origin."""
        stateroot = stateroot or self.default_stateroot()
        if stateroot is None:
            raise SysrootError(f"no deployment in {self.path}", hint="deploy one first with `hybridos admin deploy`")
        merge = self.merge_deployment(stateroot)
        if merge is None:
            raise SysrootError(f"stateroot {stateroot!r} has no deployment in {self.path}")
        if merge.origin is None:
            raise SysrootError(merge.origin_error or f"deployment {merge.id} has no origin",
                               hint="repair the origin file ([origin] refspec=REMOTE:REF) or redeploy")
        return stateroot, merge

    def deployment_path(self, dep: Deployment) -> Path:
        return self.path / dep.relpath

    def by_index(self, index: int) -> Deployment:
        if not 0 <= index < len(self.deployments):
            raise NotFoundError(f"no deployment at index {index} (there are {len(self.deployments)})")
        return self.deployments[index]

    def pending_and_rollback(self, stateroot: str | None = None) -> tuple[Deployment | None, Deployment | None]:
        """Around the booted deployment (else the default): the one before it and the one after it."""
        ref = self.booted or self.default
        if ref is None:
            return None, None
        stateroot = stateroot or ref.stateroot
        pending = rollback = None
        seen = False
        for d in self.deployments:
            if d.same(ref):
                seen = True
                continue
            if d.stateroot != stateroot:
                continue
            if not seen and pending is None:
                pending = d
            elif seen and rollback is None:
                rollback = d
        return pending, rollback

    def load_commit(self, checksum: str):
        """A commit object of the sysroot's repository, read without opening the whole store (fast status)."""
        from hybridos.ostree.objects import Commit

        path = self.path / "ostree/repo/objects" / checksum[:2] / f"{checksum[2:]}.commit"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"commit {checksum} is not in {self.path}/ostree/repo") from None
        return Commit.parse(data)

    @cached_property
    def repo(self):
        from hybridos.ostree.repo import Repo

        return Repo.open(self.path / "ostree/repo")


def _load_staged(root: Path, deployments: list[Deployment]):
    """(state, Deployment) of the staged deployment of a booted sysroot, or (None, None).

    A state file whose deployment directory is gone (removed by a cleanup of another tool) is ignored, as a
    stale file cannot be acted on."""
    from hybridos.sysroot import stagedstate

    state = stagedstate.read_state()
    if state is None:
        return None, None
    t = state.target
    dep = Deployment(stateroot=t.osname, checksum=t.checksum, serial=t.serial, bootcsum=t.bootcsum, index=0,
                     staged=True, finalization_locked=state.locked)
    if not (root / dep.relpath).is_dir() or any(d.same(dep) for d in deployments):
        return None, None
    if state.kargs is not None:
        _, kargs = bls.split_ostree_karg(" ".join(state.kargs))
    else:
        merge = next((d for d in deployments if state.merge is not None
                      and (d.stateroot, d.checksum, d.serial) == (state.merge.osname, state.merge.checksum,
                                                                  state.merge.serial)), None)
        kargs = merge.kargs if merge is not None else ""
    origin, error = read_origin_file(root / dep.origin_relpath)
    return state, dep.replace(kargs=kargs, origin=origin, origin_error=error)


def booted_by_inode(root: Path, deployments, running_root: Path) -> Deployment | None:
    """The deployment whose checkout is the same directory (device and inode) as ``running_root``."""
    try:
        want = os.stat(running_root)
    except OSError:
        return None
    for d in deployments:
        try:
            st = os.stat(root / d.relpath)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino):
            return d
    return None


def _booted_key(root: Path) -> tuple[str, str, int] | None:
    """(stateroot, commit, serial) of the booted deployment when ``root`` is the running system's ``/`` and
    that system was booted by OSTree (``/run/ostree-booted``, as libostree requires).

    The ``ostree=`` bootlink of ``/proc/cmdline`` counts only while it still leads to the directory that is
    ``/`` (same device and inode, as ostree 2022 checks): after two swaps in one boot the same bootlink name
    can lead to a newer deployment, which is not the one running.
    """
    if not is_booted_root(root):
        return None
    cmdline = runstate.read_cmdline()
    if cmdline is None:
        return None
    value, _ = bls.split_ostree_karg(cmdline)
    key = booted_from_cmdline(Path("/"), cmdline)
    if key is None or not value:
        return None
    try:
        here, there = os.stat("/"), os.stat(Path("/") / value.lstrip("/"))
    except OSError:
        return None
    return key if (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino) else None


def booted_from_cmdline(root: Path, cmdline: str) -> tuple[str, str, int] | None:
    """Resolve a command line's ``ostree=/ostree/boot.N/...`` bootlink inside ``root`` to its deployment."""
    value, _ = bls.split_ostree_karg(cmdline)
    if not value:
        return None
    try:
        target = Path(os.path.realpath(root / value.lstrip("/")))
        checksum, serial = parse_deploy_name(target.name)
    except (OSError, FormatError):
        return None
    return target.parent.parent.name, checksum, serial


def _deployment_from_entry(root: Path, bootversion: int, index: int, name: str,
                           entry: bls.ParsedEntry) -> Deployment:
    where = f"boot entry {root}/boot/loader/entries/{name}"
    value, kargs = bls.split_ostree_karg(entry.options)
    if value is None:
        raise SysrootError(f"{where} has no ostree= kernel argument")
    try:
        entry_bootversion, stateroot, bootcsum, bootserial = bls.parse_ostree_karg(value)
    except FormatError as exc:
        raise SysrootError(f"{where}: {exc}") from None
    if entry_bootversion != bootversion:
        raise SysrootError(f"{where} refers to boot.{entry_bootversion} but boot/loader is loader.{bootversion}")
    link = root / value.lstrip("/")
    target = _readlink(link)
    if target is None:
        raise SysrootError(f"{where}: bootlink {link} is missing")
    try:
        checksum, serial = parse_deploy_name(os.path.basename(target))
    except FormatError as exc:
        raise SysrootError(f"{where}: bootlink {link}: {exc}") from None
    dep = Deployment(stateroot=stateroot, checksum=checksum, serial=serial, bootcsum=bootcsum,
                     bootserial=bootserial, index=index, kargs=kargs)
    dep_dir = root / dep.relpath
    if not dep_dir.is_dir():
        raise SysrootError(f"{where}: deployment {dep_dir} is missing")
    origin, error = read_origin_file(root / dep.origin_relpath)
    return dep.replace(origin=origin, origin_error=error)
