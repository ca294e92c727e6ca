"""For the same repository and request, the package set we resolve equals the one dnf installs.

Each case builds real RPMs and createrepo_c repodata, lets ``dnf --installroot`` act on a temporary root
(first a setup install when the case has an installed set), reads the result back with ``rpm --root -qa`` and
compares it with the installed set plus our transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from hybridos.arch import Architecture
from hybridos.errors import HybridosError, NotFoundError, SolverError
from hybridos.packages.model import Action, SolveRequest
from hybridos.packages.repomd import load_repo
from hybridos.packages.rpmdb import read_rpmdb
from hybridos.packages.solver import solve
from tests.conftest import require_tool
from tests.helpers.rpms import File, Pkg, build_rpm, make_repo

from .dnfpeer import dnf, installed_nevras


@dataclass(frozen=True)
class Case:
    packages: tuple[Pkg, ...]
    dnf_args: tuple[str, ...]
    request: dict
    setup: tuple[str, ...] = ()          #: installed first (by dnf) from the setup repository
    setup_packages: tuple[Pkg, ...] = ()  #: packages only in the setup repository
    weak_deps: bool = False
    arch: str = "x86_64"
    fails: bool = False
    local_packages: tuple[Pkg, ...] = ()  #: built outside the repository, named as @NEVRA


def _bin(path: str) -> File:
    return File(path, b"#!/bin/sh\n", mode=0o755)


CASES = {
    "file-dep-only-in-filelists": Case(
        (Pkg("app", requires=("/usr/lib/libx/plugin.so", "/usr/bin/tool")),
         Pkg("libx", files=(File("/usr/lib/libx/plugin.so", b"so"),)),
         Pkg("tools", files=(_bin("/usr/bin/tool"),))),
        ("install", "app"), {"install": ("app",)}),
    "virtual-provides": Case(
        (Pkg("web", requires=("webserver", "libssl.so.3()(64bit)")),
         Pkg("nginx", "1.24", provides=("webserver",)),
         Pkg("openssl-libs", "3.0", provides=("libssl.so.3()(64bit)",))),
        ("install", "web"), {"install": ("web",)}),
    "install-by-provide": Case(
        (Pkg("nginx", "1.24", provides=("webserver = 2",)),),
        ("install", "webserver"), {"install": ("webserver",)}),
    "versioned-requires": Case(
        (Pkg("app", requires=("libfoo >= 2.0", "libbar < 2", "libbaz = 1:1.5-2")),
         Pkg("libfoo", "1.0"), Pkg("libfoo", "2.0"), Pkg("libfoo", "3.1"),
         Pkg("libbar", "1.5"), Pkg("libbar", "2.5"),
         Pkg("libbaz", "1.5", "2", epoch=1), Pkg("libbaz", "1.6", "1", epoch=1), Pkg("libbaz", "9.0")),
        ("install", "app"), {"install": ("app",)}),
    "obsoletes-on-install": Case(
        (Pkg("oldname", "1.0"), Pkg("newname", "2.0", obsoletes=("oldname < 2",), provides=("oldname = 2",))),
        ("install", "oldname"), {"install": ("oldname",)}),
    "obsoletes-on-upgrade": Case(
        (Pkg("oldname", "1.0"), Pkg("newname", "2.0", obsoletes=("oldname < 2",), provides=("oldname = 2",)),
         Pkg("user", "1.0", requires=("oldname",))),
        ("upgrade",), {"upgrade_all": True}, setup=("oldname", "user"),
        setup_packages=(Pkg("oldname", "1.0"), Pkg("user", "1.0", requires=("oldname",)))),
    "conflicts-choose-other-provider": Case(
        (Pkg("app", requires=("mta",)), Pkg("monitor", conflicts=("postfix",)),
         Pkg("postfix", provides=("mta",)), Pkg("exim", provides=("mta",))),
        ("install", "app", "monitor"), {"install": ("app", "monitor")}),
    "conflicts-versioned": Case(
        (Pkg("app", requires=("lib",), conflicts=("lib >= 3",)), Pkg("lib", "2.0"), Pkg("lib", "3.0")),
        ("install", "app"), {"install": ("app",)}),
    "mixed-arches-x86_64": Case(
        (Pkg("multi", arch="x86_64"), Pkg("multi", arch="i686"), Pkg("multi", arch="aarch64"),
         Pkg("legacy", arch="i686"), Pkg("data", arch="noarch", requires=("multi",)),
         Pkg("armonly", arch="aarch64")),
        ("install", "data", "legacy"), {"install": ("data", "legacy")}),
    "mixed-arches-aarch64": Case(
        (Pkg("multi", arch="x86_64"), Pkg("multi", arch="aarch64"), Pkg("data", arch="noarch", requires=("multi",))),
        ("install", "data"), {"install": ("data",)}, arch="aarch64"),
    "mixed-arches-ppc64le": Case(
        (Pkg("multi", arch="ppc64le"), Pkg("multi", arch="aarch64"), Pkg("data", arch="noarch", requires=("multi",))),
        ("install", "data"), {"install": ("data",)}, arch="ppc64le"),
    "wrong-arch-only": Case(
        (Pkg("armonly", arch="aarch64"),), ("install", "armonly"), {"install": ("armonly",)}, fails=True),
    "rich-deps": Case(
        (Pkg("app", requires=("(libA or libB)", "(plugin if extra)", "(lib3 >= 2 with lib3 < 3)")),
         Pkg("libB"), Pkg("extra"), Pkg("plugin"), Pkg("lib3", "1.0"), Pkg("lib3", "2.5"), Pkg("lib3", "3.0")),
        ("install", "app", "extra"), {"install": ("app", "extra")}),
    "weak-deps-on": Case(
        (Pkg("app", recommends=("helper",)), Pkg("helper"), Pkg("addon", supplements=("app",))),
        ("install", "app"), {"install": ("app",)}, weak_deps=True),
    "weak-deps-off": Case(
        (Pkg("app", recommends=("helper",)), Pkg("helper"), Pkg("addon", supplements=("app",))),
        ("install", "app"), {"install": ("app",)}, weak_deps=False),
    "upgrade-all": Case(
        (Pkg("a", "2.0", requires=("b >= 2",)), Pkg("b", "2.0"), Pkg("c", "1.0"), Pkg("c", "1.1")),
        ("upgrade",), {"upgrade_all": True},
        setup=("a", "b", "c"), setup_packages=(Pkg("a", "1.0", requires=("b",)), Pkg("b", "1.0"), Pkg("c", "1.0"))),
    "install-already-installed": Case(
        (Pkg("a", "2.0"), Pkg("b", requires=("a",))),
        ("install", "a", "b"), {"install": ("a", "b")},
        setup=("a",), setup_packages=(Pkg("a", "1.0"),)),
    "install-needs-newer-installed": Case(
        (Pkg("a", "2.0"), Pkg("b", requires=("a >= 2",))),
        ("install", "b"), {"install": ("b",)},
        setup=("a",), setup_packages=(Pkg("a", "1.0"),)),
    "conflict-with-installed": Case(
        (Pkg("x", conflicts=("y",)), Pkg("y")), ("install", "x"), {"install": ("x",)},
        setup=("y",), setup_packages=(Pkg("y"),), fails=True),
    "install-obsoleting-installed": Case(
        (Pkg("newtool", "2.0", obsoletes=("oldtool",)),), ("install", "newtool"), {"install": ("newtool",)},
        setup=("oldtool",), setup_packages=(Pkg("oldtool", "1.0"),)),
    "erase-with-dependents": Case(
        (Pkg("base"), Pkg("mid", requires=("base",)), Pkg("top", requires=("mid",)), Pkg("other")),
        ("remove", "base"), {"erase": ("base",)}, setup=("top", "other")),
    "erase-cleans-unneeded-deps": Case(
        (Pkg("base"), Pkg("mid", requires=("base",)), Pkg("top", requires=("mid",)), Pkg("other", requires=("base",))),
        ("remove", "top"), {"erase": ("top",), "user_installed": ("top", "other")}, setup=("top", "other")),
    "installed-file-dep": Case(
        (Pkg("shell", files=(_bin("/usr/bin/zsh"),)), Pkg("script", requires=("/usr/bin/zsh",))),
        ("install", "script"), {"install": ("script",)}, setup=("shell",)),
    "unsatisfiable": Case(
        (Pkg("app", requires=("missing-lib >= 1",)),), ("install", "app"), {"install": ("app",)}, fails=True),
    "unsatisfiable-conflict": Case(
        (Pkg("a", conflicts=("b",)), Pkg("b")), ("install", "a", "b"), {"install": ("a", "b")}, fails=True),
    "nothing-matches": Case(
        (Pkg("a"),), ("install", "no-such-package"), {"install": ("no-such-package",)}, fails=True),
    "install-local-rpm": Case(
        (Pkg("tool", "3.0", requires=("libt",)), Pkg("libt")),
        ("install", "@tool-3.0-1.x86_64"), {"install": ("@tool-3.0-1.x86_64",)}),
    "local-rpm-file-dep-only-in-filelists": Case(
        (Pkg("qdata", files=(File("/usr/share/q/data.bin", b"q"),)), Pkg("unrelated")),
        ("install", "@localapp-1.0-1.x86_64"), {"install": ("@localapp-1.0-1.x86_64",)},
        local_packages=(Pkg("localapp", requires=("/usr/share/q/data.bin",)),)),
    "install-by-file-path": Case(
        (Pkg("libx", files=(File("/usr/lib/libx/plugin.so", b"so"),)), Pkg("other")),
        ("install", "/usr/lib/libx/plugin.so"), {"install": ("/usr/lib/libx/plugin.so",)}),
    "installed-file-dep-from-filelists": Case(
        (Pkg("provider", "2.0", files=(File("/usr/share/p/v2", b"2"),)), Pkg("unrelated")),
        ("upgrade",), {"upgrade_all": True},
        setup=("consumer",), setup_packages=(
            Pkg("provider", "1.0", files=(File("/usr/share/p/v1", b"1"), File("/usr/share/p/v2", b"2"))),
            Pkg("consumer", "1.0", requires=("/usr/share/p/v2",)))),
    "replace-exact-upgrade": Case(
        (Pkg("a", "1.1"), Pkg("a", "1.2")),
        ("install", "a-1.1-1.x86_64"), {"replace": ("a-1.1-1.x86_64",)},
        setup=("a",), setup_packages=(Pkg("a", "1.0"),)),
    "replace-local-downgrade": Case(
        (Pkg("a", "1.0"), Pkg("b", "1.0", requires=("a < 3",))),
        ("downgrade", "@a-1.0-1.x86_64"), {"replace": ("@a-1.0-1.x86_64",)},
        setup=("a",), setup_packages=(Pkg("a", "2.0"),)),
    "distupgrade-downgrades": Case(
        (Pkg("a", "1.0"), Pkg("b", "2.0")),
        ("distro-sync",), {"distupgrade": True},
        setup=("a", "b"), setup_packages=(Pkg("a", "2.0"), Pkg("b", "1.0"))),
    "exclude-forms": Case(
        (Pkg("app", requires=("mta", "lib")), Pkg("postfix", provides=("mta",)), Pkg("exim", provides=("mta",)),
         Pkg("lib", "1.0"), Pkg("lib", "2.0")),
        ("install", "app", "--exclude=exim.x86_64", "--exclude=lib-2.0-1.x86_64"),
        {"install": ("app",), "excludes": ("exim.x86_64", "lib-2.0-1.x86_64")}),
    "exclude": Case(
        (Pkg("app", requires=("mta",)), Pkg("postfix", provides=("mta",)), Pkg("exim", provides=("mta",))),
        ("install", "app", "--exclude=exim"), {"install": ("app",), "excludes": ("exim",)}),
}


def _with_local_paths(case: Case, rpms: dict) -> Case:
    """``@NEVRA`` in a case stands for the path of that RPM file (a local package on the command line)."""
    def sub(values):
        return tuple(str(rpms[v[1:]]) if v.startswith("@") else v for v in values)
    request = {k: sub(v) if isinstance(v, tuple) else v for k, v in case.request.items()}
    return replace(case, dnf_args=sub(case.dnf_args), request=request)


def _read_tree_rpmdb(root):
    """The installed set as the layering code reads it: our rpmdb reader on the tree dnf populated.

    Debian's rpm (and so dnf) keeps the database at /root/.rpmdb; an in-tree symlink makes it the tree's
    usr/lib/sysimage/rpm.
    """
    sysimage = root / "usr/lib/sysimage/rpm"
    sysimage.parent.mkdir(parents=True, exist_ok=True)
    if not sysimage.exists():
        sysimage.symlink_to("../../../root/.rpmdb")
    return read_rpmdb(root)


def _ours(tmp_path, repo_url: str, case: Case, installed) -> set[str]:
    repo = load_repo(repo_url, tmp_path / "cache")
    request = SolveRequest(arch=Architecture.parse(case.arch), repos=(repo,), installed=tuple(installed),
                           weak_deps=case.weak_deps, **case.request)
    result = {str(h.nevra) for h in installed}
    for item in solve(request).items:
        if item.action is Action.ERASE:
            result.discard(str(item.nevra))
            continue
        if item.replaces is not None:
            result.discard(str(item.replaces))
        result.add(str(item.nevra))
    return result


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_set_as_dnf(tmp_path, name):
    require_tool("dnf", "rpm")
    case = CASES[name]
    root = tmp_path / "root"
    root.mkdir()
    installed = []
    if case.setup:
        setup_repo = make_repo(tmp_path / "setup-repo", case.setup_packages or case.packages)
        proc = dnf(root, [setup_repo.url], "install", *case.setup)
        assert proc.returncode == 0, proc.stderr
        installed = _read_tree_rpmdb(root)
        assert {str(h.nevra) for h in installed} == installed_nevras(root)
        assert {h.name for h in installed} >= set(case.setup)
    repo = make_repo(tmp_path / "repo", case.packages)
    local = {p.nevra: build_rpm(p, tmp_path / "local") for p in case.local_packages}
    case = _with_local_paths(case, {**{k: v for k, v in repo.rpms.items()}, **local})
    arch = None if case.arch == "x86_64" else case.arch
    proc = dnf(root, [repo.url], *case.dnf_args, weak_deps=case.weak_deps, arch=arch)
    if case.fails:
        assert proc.returncode != 0, f"dnf unexpectedly succeeded:\n{proc.stdout}"
        with pytest.raises((SolverError, NotFoundError)) as exc:
            _ours(tmp_path, repo.url, case, installed)
        assert str(exc.value) and "\n" not in str(exc.value)
        return
    assert proc.returncode == 0, f"dnf failed:\n{proc.stdout}\n{proc.stderr}"
    theirs = installed_nevras(root)
    ours = _ours(tmp_path, repo.url, case, installed)
    assert ours == theirs, f"ours - dnf: {sorted(ours - theirs)}; dnf - ours: {sorted(theirs - ours)}"


def test_unsatisfiable_problem_is_readable_with_solutions(tmp_path):
    repo = make_repo(tmp_path / "repo", [Pkg("app", requires=("missing-lib >= 1",)), Pkg("a", conflicts=("b",)),
                                         Pkg("b")])
    loaded = load_repo(repo.url, tmp_path / "cache")
    with pytest.raises(SolverError) as exc:
        solve(SolveRequest(arch=Architecture.X86_64, repos=(loaded,), install=("app",)))
    assert "nothing provides missing-lib >= 1 needed by app-1.0-1.x86_64" in str(exc.value)
    assert exc.value.problems[0].solutions
    with pytest.raises(SolverError) as exc:
        solve(SolveRequest(arch=Architecture.X86_64, repos=(loaded,), install=("a", "b")))
    assert "conflicts with b" in str(exc.value)
    assert "do not ask to install" in exc.value.hint


def test_request_matching_nothing_is_an_error(tmp_path):
    repo = make_repo(tmp_path / "repo", [Pkg("a")])
    loaded = load_repo(repo.url, tmp_path / "cache")
    for request in ({"install": ("nope",)}, {"erase": ("a",)}, {"replace": ("a-9-9.x86_64",)}):
        with pytest.raises(HybridosError) as exc:
            solve(SolveRequest(arch=Architecture.X86_64, repos=(loaded,), **request))
        assert "matches" in str(exc.value)


def test_file_dependency_across_repositories_like_dnf(tmp_path):
    require_tool("dnf", "rpm")
    base = make_repo(tmp_path / "base", [Pkg("bprov", files=(File("/usr/share/b/file", b"b"),)), Pkg("x")])
    updates = make_repo(tmp_path / "updates", [Pkg("app", requires=("/usr/share/b/file",))])
    root = tmp_path / "root"
    proc = dnf(root, [base.url, updates.url], "install", "app")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    repos = (load_repo(base.url, tmp_path / "cache"), load_repo(updates.url, tmp_path / "cache"))
    trans = solve(SolveRequest(arch=Architecture.X86_64, repos=repos, install=("app",)))
    assert {str(i.nevra) for i in trans.items} == installed_nevras(root) == {"app-1.0-1.x86_64",
                                                                            "bprov-1.0-1.x86_64"}


def test_repository_priority_like_dnf(tmp_path):
    require_tool("dnf", "rpm")
    from hybridos.packages.repofile import RepoConfig

    main = make_repo(tmp_path / "main", [Pkg("tool", "2.0"), Pkg("other", "1.0")])
    pinned = make_repo(tmp_path / "pinned", [Pkg("tool", "1.5"), Pkg("other", "0.9")])
    root = tmp_path / "root"
    proc = dnf(root, [main.url, pinned.url], "install", "tool", "other", "--setopt=r1.priority=10")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    repos = (load_repo(RepoConfig(id="main", name="m", baseurls=(main.url,)), tmp_path / "cache"),
             load_repo(RepoConfig(id="pinned", name="p", baseurls=(pinned.url,), priority=10), tmp_path / "cache"))
    trans = solve(SolveRequest(arch=Architecture.X86_64, repos=repos, install=("tool", "other")))
    assert {str(i.nevra) for i in trans.items} == installed_nevras(root) == {"tool-1.5-1.x86_64",
                                                                            "other-0.9-1.x86_64"}
