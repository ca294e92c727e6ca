"""Solver behaviour dnf cannot be compared on: locks, arch policy per target, order, the hook path."""

from __future__ import annotations

import pytest

from hybridos.arch import Architecture
from hybridos.errors import NotFoundError, SolverError
from hybridos.packages.header import read_rpm_header
from hybridos.packages.model import Action, SolveRequest
from hybridos.packages.repomd import load_repo
from hybridos.packages.solver import solve
from hybridos.plugins import get_registry
from tests.helpers.rpms import File, Pkg, build_rpm, make_repo


def _installed(tmp_path, *specs: Pkg):
    return tuple(read_rpm_header(build_rpm(s, tmp_path / "installed")) for s in specs)


@pytest.fixture
def lock_repo(tmp_path):
    repo = make_repo(tmp_path / "repo", [Pkg("a", "2.0"), Pkg("b", "1.0", requires=("a >= 2",)),
                                         Pkg("c", "2.0"), Pkg("user", "1.0", requires=("a",))])
    loaded = load_repo(repo.url, tmp_path / "cache")
    installed = _installed(tmp_path, Pkg("a", "1.0"), Pkg("c", "1.0"), Pkg("user", "1.0", requires=("a",)))
    return loaded, installed


def _solve(loaded, installed, **kw):
    return solve(SolveRequest(arch=Architecture.X86_64, repos=(loaded,), installed=installed, **kw))


def test_locked_package_is_not_upgraded(lock_repo):
    loaded, installed = lock_repo
    unlocked = {(i.action, str(i.nevra)) for i in _solve(loaded, installed, upgrade_all=True).items}
    assert (Action.UPGRADE, "a-2.0-1.x86_64") in unlocked
    locked = _solve(loaded, installed, upgrade_all=True, locked=("a",))
    assert [(i.action, str(i.nevra), str(i.replaces)) for i in locked.items] == [
        (Action.UPGRADE, "c-2.0-1.x86_64", "c-1.0-1.x86_64")]


def test_locked_package_is_not_removed_or_replaced(lock_repo):
    loaded, installed = lock_repo
    erased = _solve(loaded, installed, erase=("a",))
    assert {str(i.nevra) for i in erased.erases} == {"a-1.0-1.x86_64", "user-1.0-1.x86_64"}
    with pytest.raises(SolverError, match="cannot remove a-1.0-1.x86_64: the package is locked"):
        _solve(loaded, installed, erase=("a",), locked=("a",))
    with pytest.raises(SolverError, match="problem 1: package b-1.0-1.x86_64 requires a >= 2") as exc:
        _solve(loaded, installed, install=("b",), locked=("a",))       # b needs a >= 2
    assert "do not ask to lock a-1.0-1.x86_64" in exc.value.hint
    with pytest.raises(SolverError, match="cannot replace a-1.0-1.x86_64 with a-2.0-1.x86_64: the package is locked"):
        _solve(loaded, installed, replace=("a-2.0-1.x86_64",), locked=("a",))
    assert [str(i.nevra) for i in _solve(loaded, installed, install=("b",)).items] == ["a-2.0-1.x86_64",
                                                                                       "b-1.0-1.x86_64"]


def test_downgrade_needs_permission(tmp_path):
    repo = make_repo(tmp_path / "repo", [Pkg("a", "1.0")])
    loaded = load_repo(repo.url, tmp_path / "cache")
    installed = _installed(tmp_path, Pkg("a", "2.0"))
    # Installing an older version of an installed package is nothing to do without allow_downgrade.
    with pytest.raises(SolverError, match="a-1.0-1.x86_64 is older than the installed a-2.0-1.x86_64"):
        _solve(loaded, installed, install=("a-1.0-1.x86_64",))
    trans = _solve(loaded, installed, install=("a-1.0-1.x86_64",), allow_downgrade=True)
    assert [(i.action, str(i.nevra), str(i.replaces)) for i in trans.items] == [
        (Action.DOWNGRADE, "a-1.0-1.x86_64", "a-2.0-1.x86_64")]


@pytest.mark.parametrize("arch, picks, refused", [
    ("x86_64", {"multi-1.0-1.x86_64", "only32-1.0-1.i686", "data-1.0-1.noarch"}, ("armonly", "poweronly")),
    ("aarch64", {"multi-1.0-1.aarch64", "armonly-1.0-1.aarch64", "data-1.0-1.noarch"}, ("only32", "poweronly")),
    ("ppc64le", {"multi-1.0-1.ppc64le", "poweronly-1.0-1.ppc64le", "data-1.0-1.noarch"}, ("only32", "armonly")),
])
def test_arch_policy(tmp_path, arch, picks, refused):
    pkgs = [Pkg("multi", arch=a) for a in ("x86_64", "i686", "aarch64", "ppc64le")] + [
        Pkg("only32", arch="i686"), Pkg("armonly", arch="aarch64"), Pkg("poweronly", arch="ppc64le"),
        Pkg("data", arch="noarch", requires=("multi",))]
    loaded = load_repo(make_repo(tmp_path / "repo", pkgs).url, tmp_path / "cache")
    wanted = {"x86_64": "only32", "aarch64": "armonly", "ppc64le": "poweronly"}[arch]
    trans = solve(SolveRequest(arch=Architecture(arch), repos=(loaded,), install=("data", wanted)))
    assert {str(i.nevra) for i in trans.items} == picks
    for name in refused:
        with pytest.raises(NotFoundError):
            solve(SolveRequest(arch=Architecture(arch), repos=(loaded,), install=(name,)))


def test_order_puts_dependencies_first_and_hook_returns_it(tmp_path):
    pkgs = [Pkg("top", requires=("mid",)), Pkg("mid", requires=("/usr/lib/base/file",)),
            Pkg("base", files=(File("/usr/lib/base/file", b"x"),))]
    loaded = load_repo(make_repo(tmp_path / "repo", pkgs).url, tmp_path / "cache")
    request = SolveRequest(arch=Architecture.X86_64, repos=(loaded,), install=("top",))
    trans = solve(request)
    assert [i.nevra.name for i in trans.items] == ["base", "mid", "top"]
    assert get_registry().hook.hybridos_solve(request=request) == trans


def test_excludepkgs_of_a_repository(tmp_path):
    from hybridos.packages.repofile import RepoConfig

    repo = make_repo(tmp_path / "repo", [Pkg("app", requires=("mta",)), Pkg("postfix", provides=("mta",)),
                                         Pkg("exim", provides=("mta",))])
    cfg = RepoConfig(id="r", name="r", baseurls=(repo.url,), excludepkgs=("postfix*",))
    loaded = load_repo(cfg, tmp_path / "cache")
    trans = solve(SolveRequest(arch=Architecture.X86_64, repos=(loaded,), install=("app",)))
    assert {i.nevra.name for i in trans.items} == {"app", "exim"}
    with pytest.raises(NotFoundError):
        solve(SolveRequest(arch=Architecture.X86_64, repos=(loaded,), install=("postfix",)))
    with pytest.raises(SolverError):
        solve(SolveRequest(arch=Architecture.X86_64, repos=(loaded,), install=("app",), excludes=("exim",)))
