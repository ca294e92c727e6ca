"""The default layer hook: apply an ordered transaction to a tree.

Order, as rpm runs it: %pretrans of every package to install, %transfiletriggerun; then each erase (%preun,
%triggerun, file removal, %postun, %triggerpostun); then each install in transaction order (%triggerprein, %pre,
unpack, rpmdb entry, %post, %triggerin, %filetriggerin; for an upgrade the old package's %preun/%postun with $1=1
and the removal of its files the new one no longer has); finally %posttrans, %transfiletriggerin and
%transfiletriggerpostun. The rpmdb is written to a copy that replaces the tree's database only when everything
succeeded. Scriptlets run in the sandbox of ``hybridos.packages.scriptlets`` (a guarded /usr in hardlink
checkouts).

What the unpacker learns about the tree (its owners from passwd/group, which directories are real) is kept
from one package to the next and forgotten as soon as something else may have changed it: a scriptlet or trigger,
an erase, or a package writing passwd or group. A transaction without any scriptlet or trigger (in its packages
or the installed ones) sets up no sandbox.

Triggers run: %triggerprein/in/un/postun, %filetriggerin/un/postun and %transfiletriggerin/un/postun (file
triggers get the matching paths on stdin, except %transfiletriggerpostun, as in rpm). Not run: %verify.
``LayerResult.script_output`` holds each scriptlet's output under a ``[NEVRA %scriptlet]`` line, then
``warning:`` lines (unknown owners, .rpmnew/.rpmsave).
"""

from __future__ import annotations

import contextlib
import os
import platform
import stat
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from hybridos.errors import PackageError
from hybridos.packages.header import (
    FileFlag,
    RawHeader,
    RpmFileInfo,
    RpmHeader,
    Trigger,
    dependency_matches,
    read_rpm,
)
from hybridos.packages.model import Action, LayerRequest, LayerResult, Nevra, TransactionItem
from hybridos.packages.rpmdb import RpmDb, read_installed
from hybridos.packages.unpack import Owners, TreeResolver, load_owners, split_path, unpack_rpm
from hybridos.util.files import file_digest

if TYPE_CHECKING:   # the scriptlet sandbox is imported only for a transaction that has scriptlets or triggers
    from hybridos.packages.scriptlets import ScriptResult


@dataclass(eq=False)   # identity: a reinstall has two equal headers
class _Pkg:
    header: RpmHeader
    signature: RawHeader | None = None
    rpm: Path | None = None
    hnum: int | None = None      #: rpmdb record while installed
    info: RpmFileInfo | None = None


@dataclass
class _State:
    tree: Path
    request: LayerRequest
    db: RpmDb
    installed: list[_Pkg]
    run_scripts: bool
    outputs: list[ScriptResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    new_files: list[str] = field(default_factory=list)
    usr: Path | None = None       #: the rofiles-fuse view of /usr for scriptlets in a hardlink checkout
    usr_problem: PackageError | None = None
    #: what earlier steps learned about the tree (its owners, its real directories), kept until something
    #: other than unpacking (a scriptlet, an erase) or a package's own passwd/group may have changed it
    owners: Owners | None = None
    known_dirs: set[tuple[str, ...]] = field(default_factory=set)

    def count(self, name: str) -> int:
        """How many packages of this name are installed (the scriptlets' $1 and $2; 0 when none can run)."""
        return sum(1 for p in self.installed if p.header.name == name) if self.run_scripts else 0

    def script(self, result: ScriptResult | None) -> None:
        self.tree_changed()   # a scriptlet ran: it may have added users or moved directories
        if result is not None:
            self.outputs.append(result)

    def tree_changed(self) -> None:
        self.owners = None
        self.known_dirs.clear()


#: a written path with one of these names may change what load_owners reads ({etc,usr/etc,usr/lib}/{passwd,group})
_OWNER_NAMES = frozenset({"passwd", "group", "etc", "usr", "lib"})


class _PreviousDigests(Mapping):
    """path -> digest in the installed packages, for ``paths``; computed on the first lookup (the unpacker asks
    only for a %config file that exists and differs, so usually never)."""

    def __init__(self, installed: list[_Pkg], paths: set[str]):
        self._installed = list(installed)
        self._paths = paths

    @cached_property
    def _digests(self) -> dict[str, str]:
        return {e.path: e.digest for p in self._installed for e in p.header.file_entries if e.path in self._paths}

    def __getitem__(self, path: str) -> str:
        return self._digests[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._digests)

    def __len__(self) -> int:
        return len(self._digests)


def apply_transaction(request: LayerRequest) -> LayerResult:
    """Apply ``request.transaction`` to ``request.tree`` (see the module docstring for the order)."""
    tree = Path(request.tree)
    if not tree.is_dir():
        raise PackageError(f"layer target {tree} is not a directory")
    installed = [_Pkg(p.header, hnum=p.hnum) for p in read_installed(tree)]
    erases = [i for i in request.transaction.items if i.action is Action.ERASE]
    installs = [(i, _load(request, i)) for i in request.transaction.items if i.action is not Action.ERASE]
    by_nevra = {p.header.nevra: p for p in installed}
    for nevra in [i.nevra for i in erases] + [i.replaces for i, _ in installs if i.replaces]:
        if nevra not in by_nevra:   # checked before anything changes
            raise PackageError(f"cannot erase or replace {nevra}: it is not installed in the tree")
    _check_file_conflicts(installed, erases, installs, request.force_replacefiles)

    db = RpmDb(tree)
    # with no scriptlet or trigger anywhere (transaction and installed set) nothing can run: no sandbox needed
    run_scripts = request.run_scripts and any(
        p.header.scriptlets or p.header.triggers for p in [*installed, *(pkg for _, pkg in installs)])
    state = _State(tree, request, db, installed, run_scripts)
    tid = int(time.time())
    try:
        with contextlib.ExitStack() as stack:
            if run_scripts:
                from hybridos.packages.scriptlets import guarded_usr

                try:
                    state.usr = stack.enter_context(guarded_usr(tree, hardlinked=request.hardlinked_usr))
                except PackageError as e:   # only fatal once a scriptlet actually has to run
                    state.usr_problem = e
            _run(state, erases, installs, tid)
    except BaseException:
        db.abort()
        raise
    db.commit()
    output = "".join(f"[{r.package} %{r.scriptlet}]\n{r.output}" for r in state.outputs if r.output)
    output += "".join(f"warning: {w}\n" for w in state.warnings)
    return LayerResult(installed=tuple(pkg.header.nevra for _, pkg in installs),
                       erased=tuple(i.nevra for i in erases), script_output=output)


def _run(state: _State, erases: list[TransactionItem], installs: list[tuple[TransactionItem, _Pkg]],
         tid: int) -> None:
    for _item, pkg in installs:
        _scriptlet(state, pkg.header, "pretrans", 0)
    removed = _removed_files(state, erases, installs)
    _file_triggers(state, "transfiletriggerun", removed)
    for item in erases:
        old = _find_installed(state, item.nevra)
        if old is None:
            raise PackageError(f"cannot erase {item.nevra}: it was erased twice in one transaction")
        _erase(state, old, upgrade=False)
    for item, pkg in installs:
        _install(state, item, pkg, tid)
    for _item, pkg in installs:
        _scriptlet(state, pkg.header, "posttrans", 0)
    _file_triggers(state, "transfiletriggerin", state.new_files)
    _file_triggers(state, "transfiletriggerpostun", removed, stdin=False)


def _removed_files(state: _State, erases: list[TransactionItem],
                   installs: list[tuple[TransactionItem, _Pkg]]) -> list[str]:
    """Paths this transaction removes: the erased packages' files, and what upgraded packages no longer ship."""
    out = []
    for item in erases:
        old = _find_installed(state, item.nevra)
        out += old.header.files if old else []
    for item, pkg in installs:
        old = _replaced(state, item, pkg.header)
        if old is not None:
            keep = set(pkg.header.files)
            out += [f for f in old.header.files if f not in keep]
    return out


# ---------------------------------------------------------------------------------------------- steps


def _load(request: LayerRequest, item: TransactionItem) -> _Pkg:
    path = request.rpms.get(str(item.nevra))
    if path is None:
        raise PackageError(f"no downloaded RPM for {item.nevra}")
    info = read_rpm(path)
    h = info.header
    if h.nevra != item.nevra:
        raise PackageError(f"{Path(path).name} holds {h.nevra}, not {item.nevra} as the transaction says")
    if h.is_source:
        raise PackageError(f"{Path(path).name} is a source package")
    return _Pkg(h, info.signature, Path(path), info=info)


def _find_installed(state: _State, nevra: Nevra) -> _Pkg | None:
    for p in state.installed:
        if p.header.nevra == nevra:
            return p
    return None


def _replaced(state: _State, item: TransactionItem, new: RpmHeader) -> _Pkg | None:
    if item.replaces is not None:
        old = _find_installed(state, item.replaces)
        if old is None:
            raise PackageError(f"{item.nevra} replaces {item.replaces}, which is not installed")
        return old
    if item.action in (Action.UPGRADE, Action.DOWNGRADE, Action.REINSTALL):
        same = [p for p in state.installed if p.header.name == new.name]
        return same[0] if same else None
    return None


def _install(state: _State, item: TransactionItem, pkg: _Pkg, tid: int) -> None:
    h = pkg.header
    old = _replaced(state, item, h)
    count = state.count(h.name) + 1
    _package_triggers(state, h, "triggerprein", count, include_own=True)
    _scriptlet(state, h, "pre", count)
    if state.owners is None:   # again after %pre (or anything else) that may have added users
        state.owners = load_owners(state.tree)
    config = {e.path for e in h.file_entries if e.is_config}
    previous = _PreviousDigests(state.installed, config) if config else {}
    result = unpack_rpm(pkg.rpm, state.tree, owners=state.owners, protected=state.request.protected_paths,
                        force=state.request.force_replacefiles, info=pkg.info, previous_digests=previous,
                        known_dirs=state.known_dirs)
    if any(p.rsplit("/", 1)[-1] in _OWNER_NAMES for p in result.written):
        state.owners = None
    files = [e.path for e in h.file_entries if not e.is_ghost] if state.run_scripts else []   # for file triggers
    state.new_files += files
    pkg.hnum = state.db.add(h, pkg.signature, tid=tid, install_time=tid)
    state.installed.append(pkg)
    _scriptlet(state, h, "post", count)
    _package_triggers(state, h, "triggerin", count, include_own=True)
    _file_triggers(state, "filetriggerin", files)
    if old is not None:
        _erase(state, old, upgrade=True, keep=set(h.files))
    state.warnings += result.warnings


def _erase(state: _State, pkg: _Pkg, *, upgrade: bool, keep: set[str] | None = None) -> None:
    h = pkg.header
    remaining = state.count(h.name) - 1
    _scriptlet(state, h, "preun", remaining)
    _package_triggers(state, h, "triggerun", remaining, include_own=not upgrade)
    files = [e.path for e in h.file_entries]
    _file_triggers(state, "filetriggerun", files)
    state.installed.remove(pkg)
    owned = {f for p in state.installed for f in p.header.files} | (keep or set())
    _remove_files(state, h, owned)
    state.tree_changed()
    if pkg.hnum is not None:
        state.db.erase(pkg.hnum)
    _scriptlet(state, h, "postun", remaining)
    _package_triggers(state, h, "triggerpostun", remaining, include_own=False)
    _file_triggers(state, "filetriggerpostun", files)


def _remove_files(state: _State, h: RpmHeader, owned: set[str]) -> None:
    resolver = TreeResolver(state.tree)
    hash_name = h.file_digest_algo
    for e in sorted(h.file_entries, key=lambda e: e.path, reverse=True):
        if e.path in owned:
            continue
        try:
            parts = split_path(e.path, str(h.nevra))
            if not parts:
                continue
            parent = resolver.resolve_dir(parts[:-1], str(h.nevra), create=False)
        except PackageError:
            continue   # never follow a path out of the tree, not even to delete
        hostp = os.path.join(state.tree, *parent, parts[-1])
        try:
            st = os.lstat(hostp)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            with contextlib.suppress(OSError):
                os.rmdir(hostp)     # only when empty, as rpm does
            continue
        if e.is_config and stat.S_ISREG(st.st_mode) and e.digest and file_digest(hostp, hash_name) != e.digest:
            os.rename(hostp, hostp + ".rpmsave")
            continue
        os.unlink(hostp)


def _check_file_conflicts(installed: list[_Pkg], erases: list[TransactionItem],
                          installs: list[tuple[TransactionItem, _Pkg]], force: bool) -> None:
    """rpm's file conflict check: a path two packages ship with different content or link targets, or as
    different file types (a directory in one and a file in the other); two directories never conflict."""
    if force:
        return
    leaving = {i.nevra for i in erases} | {i.replaces for i, _ in installs if i.replaces}
    leaving_names = {p.header.name for i, p in installs if i.action in (Action.UPGRADE, Action.DOWNGRADE,
                                                                        Action.REINSTALL)}
    owner: dict[str, tuple[str, str, int, str]] = {}
    for p in installed:
        if p.header.nevra in leaving or p.header.name in leaving_names:
            continue
        for e in p.header.file_entries:
            if not e.is_ghost and not (stat.S_ISDIR(e.mode) and e.path in owner):
                owner[e.path] = (str(p.header.nevra), e.digest, e.mode, e.linkto)
    for _item, p in installs:
        for e in p.header.file_entries:
            if e.is_ghost:
                continue
            other = owner.get(e.path)
            if other is not None and other[0] != str(p.header.nevra):
                if stat.S_ISDIR(e.mode) and stat.S_ISDIR(other[2]):
                    continue
                if stat.S_IFMT(e.mode) != stat.S_IFMT(other[2]) or (
                        (other[1], other[2], other[3]) != (e.digest, e.mode, e.linkto)
                        and not (e.flags & FileFlag.CONFIG and other[1] == e.digest)):
                    raise PackageError(f"file {e.path} from install of {p.header.nevra} conflicts with file from "
                                       f"package {other[0]}")
            owner[e.path] = (str(p.header.nevra), e.digest, e.mode, e.linkto)


# ---------------------------------------------------------------------------------------------- scripts


def _scriptlet(state: _State, h: RpmHeader, kind: str, count: int) -> None:
    if not state.run_scripts:
        return
    s = h.scriptlet(kind)
    if s is None or (not s.body and len(s.interpreter) == 1 and s.interpreter[0] == "/bin/sh"):
        return
    _check_arch(state, h, kind)
    from hybridos.packages.scriptlets import run_scriptlet

    state.script(run_scriptlet(state.tree, h, s, count, usr=state.usr, timeout=state.request.scriptlet_timeout))


def _check_arch(state: _State, h: RpmHeader, what: str) -> None:
    """Before any scriptlet runs: the architecture can run here, and /usr is guarded where it must be."""
    if state.usr_problem is not None:
        raise PackageError(f"{h.nevra}: cannot run its %{what} scriptlet: {state.usr_problem}",
                           hint=state.usr_problem.hint)
    from hybridos.packages.scriptlets import arch_runnable

    arch = str(state.request.arch)
    if not arch_runnable(arch):
        raise PackageError(f"{h.nevra}: cannot run its %{what} scriptlet: the tree is {arch} and this "
                           f"{platform.machine()} machine has no qemu-{arch} registered in binfmt_misc",
                           hint="register qemu-user-static with binfmt_misc, or layer without scripts")


def _package_triggers(state: _State, h: RpmHeader, kind: str, count: int, *, include_own: bool) -> None:
    """Triggers of installed packages on ``h``, and ``h``'s own triggers on installed packages."""
    if not state.run_scripts:
        return
    from hybridos.packages.scriptlets import run_trigger

    done: set[tuple[str, int]] = set()
    for p in list(state.installed):
        for t in p.header.triggers:
            if t.kind != kind or not dependency_matches(t.condition, h.name, h.evr):
                continue
            key = (str(p.header.nevra), t.index)
            if key in done:
                continue
            done.add(key)
            _check_arch(state, p.header, t.kind)
            state.script(run_trigger(state.tree, p.header, t, state.count(p.header.name), count, usr=state.usr, timeout=state.request.scriptlet_timeout))
    if not include_own:
        return
    for t in h.triggers:
        if t.kind != kind or (str(h.nevra), t.index) in done:
            continue
        targets = [p for p in state.installed if p.header is not h
                   and dependency_matches(t.condition, p.header.name, p.header.evr)]
        if targets:
            done.add((str(h.nevra), t.index))
            _check_arch(state, h, t.kind)
            state.script(run_trigger(state.tree, h, t, count, state.count(targets[0].header.name), usr=state.usr, timeout=state.request.scriptlet_timeout))


def _matching(t: Trigger, files: list[str]) -> list[str]:
    prefix = t.condition.name
    return [f for f in files if f == prefix or f.startswith(prefix.rstrip("/") + "/")]


def _file_triggers(state: _State, kind: str, files: list[str], *, stdin: bool = True) -> None:
    """File triggers of installed packages whose prefix matches ``files`` (the matches on stdin, except for
    %transfiletriggerpostun, which rpm runs without them)."""
    if not state.run_scripts or not files:
        return
    from hybridos.packages.scriptlets import run_trigger

    for p in _by_priority(state, kind):
        for t in p.header.triggers:
            if t.kind != kind:
                continue
            matched = _matching(t, files)
            if matched:
                _check_arch(state, p.header, t.kind)
                listing = "".join(f + "\n" for f in matched).encode() if stdin else b""
                state.script(run_trigger(state.tree, p.header, t, state.count(p.header.name), 0,
                                         stdin=listing, usr=state.usr, timeout=state.request.scriptlet_timeout))


def _by_priority(state: _State, kind: str) -> list[_Pkg]:
    prio: Counter = Counter()
    for p in state.installed:
        for t in p.header.triggers:
            if t.kind == kind:
                prio[id(p)] = max(prio[id(p)], t.priority)
    return sorted((p for p in state.installed if id(p) in prio), key=lambda p: -prio[id(p)])
