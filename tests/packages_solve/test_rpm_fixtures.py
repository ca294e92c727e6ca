"""The shared fixture toolkit (tests/helpers/rpms.py) builds RPMs and repodata that the real tools accept."""

from __future__ import annotations

import subprocess

import createrepo_c

from tests.conftest import require_tool
from tests.helpers.rpms import (
    File,
    Pkg,
    build_rpm,
    make_repo,
    parse_dep,
    synthetic_specs,
    write_synthetic_repo,
)

HELLO = Pkg(
    "hello", "1.2", "3", epoch=2,
    requires=("libfoo >= 2.0", "(a or libfoo)"), provides=("greeter = 1",), conflicts=("oldhello < 1",),
    obsoletes=("hello-legacy",), recommends=("hello-doc",),
    files=(File("/usr/bin/hello", b"#!/bin/sh\necho hi\n", mode=0o755),
           File("/usr/bin/suid", b"x", mode=0o4755),
           File("/etc/hello.conf", b"x=1\n", noreplace=True),
           File("/usr/bin/hi", symlink="hello"),
           File("/usr/share/hello", dir=True, mode=0o750)),
    pre="echo pre", post="echo post", posttrans="echo posttrans",
)


def _rpm(*args: str) -> str:
    return subprocess.run(["rpm", *args], check=True, capture_output=True, text=True).stdout


def test_parse_dep():
    assert parse_dep("foo") == ("foo", None, None)
    name, evr, flags = parse_dep("foo >= 1:2.0-3")
    assert (name, evr, int(flags)) == ("foo", "1:2.0-3", 12)
    assert parse_dep("(a or b)") == ("(a or b)", None, None)


def test_rpm_reads_what_was_built(tmp_path):
    require_tool("rpm")
    path = build_rpm(HELLO, tmp_path)
    assert path.name == "hello-1.2-3.x86_64.rpm"
    assert _rpm("-qp", "--qf", "%{NEVRA}", str(path)) == "hello-2:1.2-3.x86_64"
    assert "libfoo >= 2.0" in _rpm("-qp", "--requires", str(path)).splitlines()
    assert "(a or libfoo)" in _rpm("-qp", "--requires", str(path)).splitlines()
    assert "greeter = 1" in _rpm("-qp", "--provides", str(path)).splitlines()
    assert "oldhello < 1" in _rpm("-qp", "--conflicts", str(path)).splitlines()
    assert "hello-legacy" in _rpm("-qp", "--obsoletes", str(path)).splitlines()
    assert "hello-doc" in _rpm("-qp", "--recommends", str(path)).splitlines()
    listing = _rpm("-qp", "--qf", "[%{FILEMODES:perms} %{FILENAMES} %{FILELINKTOS}\n]", str(path)).splitlines()
    assert "-rwsr-xr-x /usr/bin/suid " in listing
    assert "lrwxrwxrwx /usr/bin/hi hello" in listing
    assert "drwxr-x--- /usr/share/hello " in listing
    assert _rpm("-qpc", str(path)).split() == ["/etc/hello.conf"]
    scripts = _rpm("-qp", "--scripts", str(path))
    assert "echo pre" in scripts and "echo post" in scripts and "posttrans scriptlet" in scripts


def test_builds_are_reproducible_and_cpio_readable(tmp_path):
    require_tool("rpm2cpio", "cpio")
    a = build_rpm(HELLO, tmp_path / "a").read_bytes()
    b = build_rpm(HELLO, tmp_path / "b").read_bytes()
    assert a == b
    listing = subprocess.run(f"rpm2cpio {tmp_path / 'a' / HELLO.filename} | cpio -t --quiet", shell=True,
                             check=True, capture_output=True, text=True).stdout.split()
    assert "./usr/bin/hello" in listing


def test_make_repo_metadata_lists_every_package(tmp_path):
    repo = make_repo(tmp_path / "repo", [HELLO, Pkg("libfoo", "2.1", arch="noarch")], compression="gz")
    assert repo.rpms["hello"].is_file()
    seen = {}
    md = createrepo_c.Metadata()
    md.locate_and_load_xml(str(repo.path))
    keys = md.keys()
    for key in keys:
        pkg = md.get(key)
        seen[pkg.name] = pkg.location_href
    assert seen == {"hello": "Packages/hello-1.2-3.x86_64.rpm", "libfoo": "Packages/libfoo-2.1-1.noarch.rpm"}


def test_synthetic_repo(tmp_path):
    specs = synthetic_specs(50)
    write_synthetic_repo(tmp_path / "syn", specs)
    md = createrepo_c.Metadata()
    md.locate_and_load_xml(str(tmp_path / "syn"))
    keys = md.keys()
    assert len(keys) == 50
    pkg = md.get(next(k for k in keys if md.get(k).name == "pkg0"))
    assert ("pkg1", None, None, None, None, False) in pkg.requires
    pkg10 = md.get(next(k for k in keys if md.get(k).name == "pkg10"))
    assert ("pkg5", "GE", "0", "1.0", None, False) in pkg10.requires
    assert ("/usr/lib/pkg1/data", None, None, None, None, False) in pkg10.requires


def test_synthetic_repo_solves_to_a_small_closure(tmp_path):
    from hybridos.arch import Architecture
    from hybridos.packages.model import SolveRequest
    from hybridos.packages.repomd import load_repo
    from hybridos.packages.solver import solve

    write_synthetic_repo(tmp_path / "syn", synthetic_specs(2000))
    repo = load_repo((tmp_path / "syn").as_uri(), tmp_path / "cache")
    names = {i.nevra.name for i in solve(SolveRequest(arch=Architecture.X86_64, repos=(repo,),
                                                      install=("pkg1500",))).items}
    # pkg1500 -> pkg750, cap500 (pkg500), /usr/lib/pkg214/data (pkg214) -> ... -> pkg0 <-> pkg1
    assert {"pkg1500", "pkg750", "pkg500", "pkg214", "pkg1", "pkg0"} <= names
    assert len(names) < 100
