"""The installed set built from real rpmdb headers (CentOS, read by our header parser) is consistent in libsolv."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
import solv

from hybridos.arch import Architecture
from hybridos.packages.header import header_from_raw, parse_raw_header
from hybridos.packages.model import SolveRequest
from hybridos.packages.solver import _Context, solve
from tests.conftest import REQUIRE_TOOLS, require_tool

TESTDATA = Path("/usr/share/gocode/src/github.com/knqyf263/go-rpmdb/pkg/testdata")


def _headers(db: str):
    require_tool("rpmdb")
    if not (TESTDATA / db).is_dir():
        msg = "golang-github-knqyf263-go-rpmdb-dev is not installed"
        pytest.fail(msg) if REQUIRE_TOOLS else pytest.skip(msg)
    with tempfile.TemporaryDirectory() as dbpath:   # rpm takes a lock file in the dbpath: a private one
        (Path(dbpath) / "Packages").symlink_to(TESTDATA / db / "Packages")
        blob = subprocess.run(["rpmdb", "--define", "_db_backend bdb_ro", "--dbpath", dbpath, "--exportdb"],
                              capture_output=True, check=True).stdout
    headers, off = [], 0
    while off < len(blob):
        raw, off = parse_raw_header(blob, off)
        headers.append(header_from_raw(raw))
    return tuple(headers)


def _direct_dependents(headers, name: str) -> set[str]:
    """Packages requiring something only ``name`` provides (computed from the headers, without libsolv)."""
    pkg = next(h for h in headers if h.name == name)
    mine = {d.name for d in pkg.provides} | set(pkg.files)
    elsewhere = {d.name for h in headers if h is not pkg for d in h.provides} | {
        f for h in headers if h is not pkg for f in h.files}
    only_mine = mine - elsewhere
    return {h.name for h in headers if h is not pkg and any(d.name in only_mine for d in h.requires)}


@pytest.mark.parametrize("db", ["centos8-modularitylabel", "centos7-many"])
def test_real_system_verifies_and_erase_takes_dependents(db):
    headers = _headers(db)
    ctx = _Context(SolveRequest(arch=Architecture.X86_64, installed=headers))
    solver = ctx.pool.Solver()
    problems = solver.solve([ctx.pool.Job(solv.Job.SOLVER_VERIFY | solv.Job.SOLVER_SOLVABLE_ALL, 0)])
    assert not problems, [str(p) for p in problems]
    # Erasing a library takes every package that requires one of its provides along.
    trans = solve(SolveRequest(arch=Architecture.X86_64, installed=headers, erase=("libacl",)))
    erased = {i.nevra.name for i in trans.erases}
    assert "libacl" in erased and not trans.installs
    dependents = _direct_dependents(headers, "libacl")
    assert len(dependents) >= 3 and dependents <= erased
