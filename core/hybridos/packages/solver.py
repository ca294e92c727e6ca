"""The default solve hook: a SolveRequest turned into an ordered Transaction with libsolv.

Repositories come as ``LoadedRepo`` values (``hybridos.packages.repomd``) and are read from their ``.solv``
caches; the installed set comes as RpmHeader values (``hybridos.packages.header``), from which a ``@System``
repository is built by hand (libsolv's rpmdb reader is not compiled into the PyPI build). Local RPM files named
in ``install``/``replace`` become a ``@commandline`` repository. Solver flags follow dnf's (libdnf's goal).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import solv

from hybridos.errors import NotFoundError, SolverError
from hybridos.fetch import sha256_file
from hybridos.packages.model import Action, Nevra, SolveRequest, Transaction, TransactionItem
from hybridos.packages.repomd import LoadedRepo, open_solv, read_file_index

# rpm's RPMSENSE_* comparison bits
SENSE_LESS, SENSE_GREATER, SENSE_EQUAL = 2, 4, 8

_SELECT_AVAILABLE = (solv.Selection.SELECTION_NAME | solv.Selection.SELECTION_PROVIDES
                     | solv.Selection.SELECTION_FILELIST | solv.Selection.SELECTION_CANON
                     | solv.Selection.SELECTION_DOTARCH | solv.Selection.SELECTION_REL
                     | solv.Selection.SELECTION_GLOB)
_SELECT_INSTALLED = (solv.Selection.SELECTION_NAME | solv.Selection.SELECTION_CANON
                     | solv.Selection.SELECTION_DOTARCH | solv.Selection.SELECTION_GLOB
                     | solv.Selection.SELECTION_PROVIDES | solv.Selection.SELECTION_FILELIST
                     | solv.Selection.SELECTION_INSTALLED_ONLY)
_SELECT_EXCLUDE = (solv.Selection.SELECTION_NAME | solv.Selection.SELECTION_GLOB | solv.Selection.SELECTION_CANON
                   | solv.Selection.SELECTION_DOTARCH)
_SELECT_LOCKED = (solv.Selection.SELECTION_NAME | solv.Selection.SELECTION_GLOB
                  | solv.Selection.SELECTION_INSTALLED_ONLY)
_TT = solv.Transaction
_NOT_JUST_NAME = re.compile(r"[*?\[\]<>=\s]")


@dataclass(frozen=True)
class Problem:
    """One libsolv problem in words, with its suggested solutions."""

    text: str
    solutions: tuple[str, ...]

    def __str__(self) -> str:
        return self.text


class UnsolvableError(SolverError):
    """The request cannot be satisfied; ``problems`` holds libsolv's explanation and solutions."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = tuple(problems)
        text = "; ".join(f"problem {i}: {p.text}" for i, p in enumerate(self.problems, 1))
        hints = []
        for i, p in enumerate(self.problems, 1):
            for j, s in enumerate(p.solutions, 1):
                hints.append(f"problem {i} solution {j}: {s}")
        super().__init__(f"cannot satisfy the package request: {text}", hint="; ".join(hints) or None)


# -- the pool ----------------------------------------------------------------------------------------------


def _dep_id(pool: solv.Pool, dep) -> int:
    """A libsolv dependency id for a header Dependency(name, flags, evr)."""
    name = dep.name
    if name.startswith("("):
        return pool.parserpmrichdep(name)
    nid = pool.str2id(name)
    sense = dep.flags & (SENSE_LESS | SENSE_GREATER | SENSE_EQUAL)
    if not sense or not dep.evr:
        return nid
    rel = ((solv.REL_LT if sense & SENSE_LESS else 0) | (solv.REL_GT if sense & SENSE_GREATER else 0)
           | (solv.REL_EQ if sense & SENSE_EQUAL else 0))
    return pool.rel2id(nid, pool.str2id(dep.evr), rel)


def _evr(header) -> str:
    return header.nevra.evr


def _add_header(pool: solv.Pool, repo: solv.Repo, header) -> solv.XSolvable:
    """A solvable for an RpmHeader: provides itself, with its real dependencies (file provides come later)."""
    s = repo.add_solvable()
    s.name, s.evr, s.arch = header.name, _evr(header), header.arch
    s.add_provides(pool.rel2id(s.nameid, s.evrid, solv.REL_EQ))
    for dep in header.provides:
        s.add_provides(_dep_id(pool, dep))
    for dep in header.requires:
        if not dep.name.startswith("rpmlib("):
            s.add_requires(_dep_id(pool, dep))
    for attr, adder in (("conflicts", s.add_conflicts), ("obsoletes", s.add_obsoletes),
                        ("recommends", s.add_recommends), ("supplements", s.add_supplements)):
        for dep in getattr(header, attr, ()):
            adder(_dep_id(pool, dep))
    return s


class _Context:
    """A libsolv pool holding the request's repositories, the installed set and local RPMs."""

    def __init__(self, request: SolveRequest):
        self.request = request
        self.pool = pool = solv.Pool()
        pool.setarch(str(request.arch))
        self.repos: list[solv.Repo] = [open_solv(pool, r) for r in request.repos]
        self.system = pool.add_repo("@System")
        headers_by_id: dict[int, object] = {}
        for h in request.installed:
            headers_by_id[_add_header(pool, self.system, h).id] = h
        self.cmdline = pool.add_repo("@commandline")
        self.local: dict[str, solv.XSolvable] = {}
        local_paths = {}
        for spec in (*request.install, *request.replace):
            if _is_local_rpm(spec):
                from hybridos.packages.header import read_rpm_header

                path = str(Path(spec).resolve())
                if path not in local_paths:
                    h = read_rpm_header(path)
                    s = _add_header(pool, self.cmdline, h)
                    local_paths[path] = (s, h)
                    headers_by_id[s.id] = h
                self.local[spec] = local_paths[path][0]
        self.local_path_of = {s.id: p for p, (s, _) in local_paths.items()}
        # Build times make an installed package "identical" to the same build in a repository (as in dnf),
        # so an unchanged package is never offered as its own update.
        for repo in (self.system, self.cmdline):
            data = None
            for s in repo.solvables:
                bt = _buildtime(headers_by_id[s.id])
                if bt:
                    data = data or repo.add_repodata(0)
                    data.set_num(s.id, solv.SOLVABLE_BUILDTIME, bt)
            if data is not None:
                data.internalize()
        self.system.internalize()
        self.cmdline.internalize()
        pool.installed = self.system
        # File dependencies: give hand-made solvables the files somebody depends on.
        pool.addfileprovides()
        needs_files = bool(headers_by_id) or len(self.repos) > 1
        wanted = {pool.id2str(i) for i in pool.addfileprovides_queue()} if needs_files else set()
        if wanted:
            for sid, h in headers_by_id.items():
                s = pool.id2solvable(sid)
                for path in h.files:
                    if path in wanted:
                        s.add_provides(pool.str2id(path))
        pool.createwhatprovides()
        self._apply_excludes()
        # Repository caches only carry the file provides the repository itself needs; the installed set and
        # local RPMs may depend on other files (also ones an installed package provides today but a
        # candidate update must provide too): look those up in the repositories' file indexes.
        self._file_indexes: dict[str, dict[bytes, list[int]]] = {}
        external = sorted({d.name for h in headers_by_id.values()
                           for attr in ("requires", "conflicts", "obsoletes", "recommends", "supplements")
                           for d in getattr(h, attr, ()) if d.name.startswith("/")})
        if len(self.repos) > 1:   # a repository's file dependency may be met by another repository's files
            external = sorted(wanted.union(external))
        if external and self.provide_files(external):
            pool.createwhatprovides()

    def provide_files(self, paths: Iterable[str]) -> bool:
        """Make the repository packages containing ``paths`` provide them; True when any did.

        Call ``pool.createwhatprovides()`` afterwards.
        """
        pool, added = self.pool, False
        paths = list(paths)
        for srepo in self.repos:
            repo: LoadedRepo = srepo.appdata
            if repo.id not in self._file_indexes:
                self._file_indexes[repo.id] = read_file_index(repo)
            index = self._file_indexes[repo.id]
            first = None
            for path in paths:
                for pos in index.get(path.encode(), ()):
                    if first is None:
                        first = next(iter(srepo.solvables)).id   # add_solv makes one contiguous block
                    pool.id2solvable(first + pos).add_provides(pool.str2id(path))
                    added = True
        return added

    def _apply_excludes(self) -> None:
        """Hide excluded available packages (request excludes and each repository's excludepkgs).

        A pattern matches like dnf's ``--exclude``: a name glob, ``name.arch`` or a (glob) NEVRA.
        """
        request, pool = self.request, self.pool
        hidden: set[int] = set()
        selections: dict[str, set[tuple[int, int]]] = {}
        for srepo in self.repos:
            for pattern in (*request.excludes, *srepo.appdata.excludepkgs):
                if pattern not in selections:
                    sel = pool.select(pattern, _SELECT_EXCLUDE)
                    selections[pattern] = {(s.repo.id, s.id) for s in sel.solvables()}
                hidden.update(sid for rid, sid in selections[pattern] if rid == srepo.id)
        if hidden:
            pool.set_disabled_list(sorted(hidden))
            pool.createwhatprovides()      # so that selections and dependencies no longer see them


def _buildtime(header) -> int:
    bt = getattr(header, "buildtime", None)
    raw = getattr(header, "raw", None)
    if not bt and raw is not None:
        bt = raw.get(1006)     # RPMTAG_BUILDTIME
    if isinstance(bt, (list, tuple)):
        bt = bt[0] if bt else 0
    return int(bt or 0)


def _is_local_rpm(spec: str) -> bool:
    return spec.endswith(".rpm") and (os.sep in spec or os.path.isfile(spec))


# -- jobs --------------------------------------------------------------------------------------------------


def _select(ctx: _Context, spec: str, flags: int) -> solv.Selection:
    return ctx.pool.select(spec, flags)


def _install_jobs(ctx: _Context, specs: Sequence[str], missing: list[str]) -> list:
    pool, jobs = ctx.pool, []
    for spec in specs:
        if spec in ctx.local:
            jobs.append(pool.Job(solv.Job.SOLVER_INSTALL | solv.Job.SOLVER_SOLVABLE, ctx.local[spec].id))
            continue
        sel = _select(ctx, spec, _SELECT_AVAILABLE)
        if sel.isempty() and spec.startswith("/") and ctx.provide_files([spec]):
            pool.createwhatprovides()
            sel = _select(ctx, spec, _SELECT_AVAILABLE)
        if sel.isempty():
            missing.append(spec)
            continue
        if not ctx.request.allow_downgrade:
            _refuse_implicit_downgrade(ctx, spec, sel)
        jobs += _with_obsoleters(ctx, spec, sel) or sel.jobs(solv.Job.SOLVER_INSTALL)
    return jobs


def _refuse_implicit_downgrade(ctx: _Context, spec: str, sel: solv.Selection) -> None:
    """An install that could only be satisfied by downgrading an installed package needs allow_downgrade."""
    newer = []
    for s in sel.solvables():
        if s.repo.id == ctx.system.id:
            return
        inst = [i for i in ctx.system.solvables if i.name == s.name and i.arch == s.arch]
        if not inst or s.evrcmp(inst[0]) >= 0:
            return
        newer.append((s, inst[0]))
    if newer:
        s, i = newer[0]
        raise SolverError(f"{spec}: {s} is older than the installed {i}",
                          hint="replace the package explicitly or allow downgrades")


def _with_obsoleters(ctx: _Context, spec: str, sel: solv.Selection) -> list:
    """dnf's rule: a request by plain name may be satisfied by an available package obsoleting it."""
    pool = ctx.pool
    if not sel.flags & solv.Selection.SELECTION_NAME or spec != spec.strip() or _NOT_JUST_NAME.search(spec):
        return []
    matched = [s for s in sel.solvables()]
    ids = {s.id for s in matched}
    obsoleters = {o.id for s in matched for o in pool.whatmatchessolvable(solv.SOLVABLE_OBSOLETES, s)
                  if o.repo.id != ctx.system.id and o.id not in ids}
    if not obsoleters:
        return []
    return [pool.Job(solv.Job.SOLVER_INSTALL | solv.Job.SOLVER_SOLVABLE_ONE_OF,
                     pool.towhatprovides(sorted(ids | obsoleters)))]


def _exact(ctx: _Context, spec: str) -> solv.XSolvable | None:
    """The one available package a replace names: a local RPM or a full NEVRA."""
    if spec in ctx.local:
        return ctx.local[spec]
    sel = _select(ctx, spec, solv.Selection.SELECTION_CANON | solv.Selection.SELECTION_DOTARCH)
    cands = [s for s in sel.solvables() if s.repo.id != ctx.system.id]
    if not cands:
        return None
    return max(cands, key=lambda s: (s.arch == str(ctx.request.arch), s.repo.priority, -s.id))


def _jobs(ctx: _Context) -> list:
    request, pool = ctx.request, ctx.pool
    jobs: list = []
    missing: list[str] = []
    locked = {s.id for name in request.locked for s in _select(ctx, name, _SELECT_LOCKED).solvables()}
    jobs += _install_jobs(ctx, request.install, missing)
    for spec in request.replace:
        s = _exact(ctx, spec)
        if s is None:
            missing.append(spec)
            continue
        if held := [i for i in ctx.system.solvables if i.id in locked and i.name == s.name]:
            raise SolverError(f"cannot replace {held[0]} with {s}: the package is locked")
        jobs.append(pool.Job(solv.Job.SOLVER_INSTALL | solv.Job.SOLVER_SOLVABLE, s.id))
    not_installed = []
    for spec in request.erase:
        sel = _select(ctx, spec, _SELECT_INSTALLED)
        if sel.isempty():
            not_installed.append(spec)
            continue
        if held := [s for s in sel.solvables() if s.id in locked]:
            raise SolverError(f"cannot remove {held[0]}: the package is locked")
        jobs += sel.jobs(solv.Job.SOLVER_ERASE | (solv.Job.SOLVER_CLEANDEPS if request.user_installed else 0))
    if missing:
        raise NotFoundError("no package matches " + ", ".join(repr(m) for m in missing)
                            + " in the enabled repositories",
                            hint="check the name, or that the repository providing it is enabled")
    if not_installed:
        raise NotFoundError("no installed package matches " + ", ".join(repr(m) for m in not_installed))
    if request.upgrade_all:
        jobs.append(pool.Job(solv.Job.SOLVER_UPDATE | solv.Job.SOLVER_SOLVABLE_ALL, 0))
    if request.distupgrade:
        jobs.append(pool.Job(solv.Job.SOLVER_DISTUPGRADE | solv.Job.SOLVER_SOLVABLE_ALL, 0))
    for name in request.user_installed:
        jobs += _select(ctx, name, _SELECT_LOCKED).jobs(solv.Job.SOLVER_USERINSTALLED)
    for name in request.locked:
        jobs += _select(ctx, name, _SELECT_LOCKED).jobs(solv.Job.SOLVER_LOCK)
    return jobs


# -- solving -----------------------------------------------------------------------------------------------


def _problems(solver: solv.Solver, problems) -> list[Problem]:
    out = []
    for p in problems:
        sols = []
        for sol in p.solutions():
            sols.append(_one_line(", ".join(str(e) for e in sol.elements(True))))
        out.append(Problem(_one_line(str(p)), tuple(sols)))
    return out


def _one_line(text: str) -> str:
    """libsolv's text on one line (names from repository metadata may hold newlines)."""
    return " ".join(text.split())


def _nevra(s: solv.XSolvable) -> Nevra:
    evr = s.evr
    epoch, _, vr = evr.partition(":") if ":" in evr else ("0", "", evr)
    version, _, release = vr.rpartition("-")
    return Nevra(s.name, int(epoch or 0), version, release, s.arch)


def _location(ctx: _Context, s: solv.XSolvable) -> tuple[str, str]:
    if s.repo.id == ctx.cmdline.id:
        path = ctx.local_path_of[s.id]
        return path, "sha256:" + sha256_file(path)
    repo: LoadedRepo = s.repo.appdata
    href = s.lookup_location()[0]
    chk = s.lookup_checksum(solv.SOLVABLE_CHECKSUM)
    base = s.lookup_str(solv.SOLVABLE_MEDIABASE) or repo.baseurl     # <location xml:base=...> wins
    url = href if "://" in href else base.rstrip("/") + "/" + href
    return url, (str(chk) if chk else "")


def _items(ctx: _Context, trans: solv.Transaction) -> list[TransactionItem]:
    """Every step in libsolv's order; an upgraded or obsoleted package shows as the ``replaces`` of its
    successor, an installed package leaving without a successor as an ERASE item."""
    mode = _TT.SOLVER_TRANSACTION_SHOW_ACTIVE | _TT.SOLVER_TRANSACTION_SHOW_ALL | _TT.SOLVER_TRANSACTION_SHOW_OBSOLETES
    steps = list(trans.steps())

    def predecessors(s: solv.XSolvable) -> list[solv.XSolvable]:
        """Installed packages ``s`` replaces, the one of the same name first."""
        others = [o for o in trans.allothersolvables(s) if o.repo.id == ctx.system.id]
        return sorted(others, key=lambda o: (o.name != s.name, o.id))

    replaced = set()
    for s in steps:
        if s.repo.id != ctx.system.id and (others := predecessors(s)):
            replaced.add(others[0].id)
    items = []
    for s in steps:
        if s.repo.id == ctx.system.id:
            if s.id not in replaced:
                items.append(TransactionItem(Action.ERASE, _nevra(s)))
            continue
        kind = trans.steptype(s, mode)
        others = predecessors(s)
        if kind == _TT.SOLVER_TRANSACTION_DOWNGRADE:
            action = Action.DOWNGRADE
        elif kind == _TT.SOLVER_TRANSACTION_REINSTALL:
            action = Action.REINSTALL
        elif kind == _TT.SOLVER_TRANSACTION_UPGRADE or others:
            action = Action.UPGRADE
        else:
            action = Action.INSTALL
        url, checksum = _location(ctx, s)
        size = s.lookup_num(solv.SOLVABLE_DOWNLOADSIZE) if s.repo.id != ctx.cmdline.id else 0
        items.append(TransactionItem(action, _nevra(s), url, checksum, _nevra(others[0]) if others else None,
                                     size or None))
    return items


def solve(request: SolveRequest) -> Transaction:
    """Resolve ``request`` into an ordered transaction; raise SolverError or NotFoundError when impossible."""
    ctx = _Context(request)
    jobs = _jobs(ctx)
    solver = ctx.pool.Solver()
    solver.set_flag(solv.Solver.SOLVER_FLAG_ALLOW_VENDORCHANGE, 1)
    solver.set_flag(solv.Solver.SOLVER_FLAG_BEST_OBEY_POLICY, 1)
    if request.erase:
        solver.set_flag(solv.Solver.SOLVER_FLAG_ALLOW_UNINSTALL, 1)   # dnf remove also removes dependents
    if request.allow_downgrade or request.replace:
        solver.set_flag(solv.Solver.SOLVER_FLAG_ALLOW_DOWNGRADE, 1)
    if not request.weak_deps:
        solver.set_flag(solv.Solver.SOLVER_FLAG_IGNORE_RECOMMENDED, 1)
    problems = solver.solve(jobs)
    if problems:
        raise UnsolvableError(_problems(solver, problems))
    trans = solver.transaction()
    if trans.isempty():
        return Transaction()
    trans.order()
    return Transaction(tuple(_items(ctx, trans)))
