"""``hybridos compose tree`` end to end: real RPMs in, a commit the real ostree and rpm accept out."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from hybridos.ostree.repo import Repo
from tests.compose.conftest import BASE_TREEFILE, KVER, write_treefile
from tests.conftest import require_root, require_tool, run_cli

RPM_QF = "%{NAME}-%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}.%{ARCH}\\n"


def init_repo(path: Path) -> Path:
    Repo.init(path, "archive")
    return path


def compose(treefile: Path, repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_cli("compose", "tree", str(treefile), "--repo", str(repo), *args, check=check)


def ostree(*args: str) -> str:
    require_tool("ostree")
    return subprocess.run(["ostree", *args], capture_output=True, text=True, check=True).stdout


def dry_run(treefile: Path, *args: str) -> list[str]:
    return run_cli("compose", "tree", "--dry-run", str(treefile), *args).stdout.splitlines()


def test_compose_makes_a_commit_ostree_and_rpm_accept(tmp_path, treedir):
    require_root()
    require_tool("ostree", "rpm")
    tf = write_treefile(treedir, BASE_TREEFILE + "units: [hello.service]\ndefault-target: multi-user.target\n")
    repo = init_repo(tmp_path / "repo")
    expected = dry_run(tf)
    assert expected == sorted(expected)
    assert {n.rsplit("-", 2)[0] for n in expected} == {
        "filesystem", "busybox", "testos-release", "kernel", "hello", "libfoo", "bloat"}   # bloat: Recommends
    cj = tmp_path / "compose.json"
    p = compose(tf, repo, "--write-composejson-to", str(cj))
    data = json.loads(cj.read_text())
    commit = data["ostree-commit"]
    for key in ("ostree-content-checksum", "ostree-version", "ostree-timestamp", "rpm-ostree-inputhash",
                "ostree-n-metadata-total", "ostree-n-metadata-written", "ostree-n-content-total",
                "ostree-n-content-written", "ostree-n-cache-hits", "ostree-content-bytes-written"):
        assert key in data, key
    assert data["ref"] == "testos/39/x86_64/base"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["ostree-timestamp"])
    assert "pkgdiff" not in data                                  # no parent
    assert data["ostree-n-content-written"] == data["ostree-n-content-total"] > 20
    assert commit in p.stdout

    ostree("fsck", f"--repo={repo}")
    assert ostree("rev-parse", f"--repo={repo}", "testos/39/x86_64/base").strip() == commit
    show = ostree("show", f"--repo={repo}", commit, "--print-metadata-key=version")
    assert show.strip().strip("'") == data["ostree-version"]
    assert data["ostree-version"].startswith("39.") and data["ostree-version"].endswith(".0")
    meta = Repo.open(repo).load_commit(commit).metadata
    assert meta["rpmostree.inputhash"] == data["rpm-ostree-inputhash"]
    assert meta["hybridos.arch"] == "x86_64"
    assert meta["ostree.linux"] == KVER and meta["ostree.bootable"] is True
    pkglist = meta["rpmostree.rpmdb.pkglist"]
    pkglist = pkglist.value if hasattr(pkglist, "value") else pkglist
    assert sorted(f"{n}-{v}-{r}.{a}" for n, _e, v, r, a in pkglist) == expected

    co = tmp_path / "checkout"
    ostree("checkout", f"--repo={repo}", commit, str(co))
    rpm = subprocess.run(["rpm", "--root", str(co), "--dbpath", "/usr/share/rpm", "-qa", "--qf", RPM_QF],
                         capture_output=True, text=True, check=True, env=dict(os.environ, LC_ALL="C"))
    assert sorted(rpm.stdout.split()) == expected
    assert os.readlink(co / "usr/lib/sysimage/rpm") == "../../share/rpm"
    # the layout OSTree expects
    assert not (co / "etc").exists() and (co / "usr/etc/hello.conf").read_text() == "greeting=hi\n"
    assert (co / "usr/share/hello/post-ran").read_text() == "post ran with 1\n"     # %post ran, with $1
    assert os.readlink(co / "ostree") == "sysroot/ostree" and (co / "sysroot").is_dir()
    assert os.readlink(co / "home") == "var/home"
    assert list((co / "var").iterdir()) == []
    autovar = (co / "usr/lib/tmpfiles.d/hybridos-autovar.conf").read_text()
    assert "d /var/lib/hello 0750 root root - -" in autovar and "d /var/tmp 1777 root root - -" in autovar
    assert "L /var/lib/rpm - - - - ../../usr/share/rpm" in autovar
    mod = co / "usr/lib/modules" / KVER
    assert (mod / "vmlinuz").is_file()
    require_tool("gzip", "cpio")
    listing = subprocess.run(f"gzip -dc < {mod / 'initramfs.img'} | cpio -t --quiet", shell=True,
                             capture_output=True, text=True, check=True).stdout.split()
    assert "init" in listing and "bin/busybox" in listing
    osr = (co / "usr/lib/os-release").read_text()
    assert f"OSTREE_VERSION='{data['ostree-version']}'" in osr
    assert f'VERSION="{data["ostree-version"]} (Test)"' in osr
    assert (co / "usr/etc/machine-id").read_bytes() == b""
    assert os.readlink(co / "usr/etc/systemd/system/multi-user.target.wants/hello.service") == \
        "/usr/lib/systemd/system/hello.service"
    assert os.readlink(co / "usr/etc/systemd/system/default.target") == "/usr/lib/systemd/system/multi-user.target"
    assert json.loads((co / "usr/share/hybridos/treefile.json").read_text())["ref"] == "testos/39/x86_64/base"
    assert not list((repo / "tmp").glob("hybridos-compose-*"))          # the work tree is gone at once...
    deadline = time.monotonic() + 60
    while list((repo / "tmp").glob(".hybridos-trash-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list((repo / "tmp").glob(".hybridos-trash-*"))            # ...and its files soon after


def test_unchanged_compose_makes_no_commit_and_force_nocache_does(tmp_path, treedir):
    require_root()
    tf = write_treefile(treedir, BASE_TREEFILE)
    repo = init_repo(tmp_path / "repo")
    cache = tmp_path / "cache"
    first = tmp_path / "first.json"
    compose(tf, repo, "--cachedir", str(cache), "--write-composejson-to", str(first))
    c1 = json.loads(first.read_text())["ostree-commit"]
    again = compose(tf, repo, "--cachedir", str(cache), "--write-composejson-to", str(tmp_path / "again.json"))
    assert "No apparent changes since previous commit" in again.stdout
    assert not (tmp_path / "again.json").exists()
    r = Repo.open(repo)
    assert r.resolve_rev("testos/39/x86_64/base") == c1
    forced = tmp_path / "forced.json"
    compose(tf, repo, "--cachedir", str(cache), "--force-nocache", "--write-composejson-to", str(forced))
    data = json.loads(forced.read_text())
    c2 = data["ostree-commit"]
    assert c2 != c1 and r.resolve_rev("testos/39/x86_64/base") == c2
    assert r.load_commit(c2).parent == c1
    assert data["ostree-version"].endswith(".1")                        # automatic version counts up
    assert data["pkgdiff"] == []                                         # same packages as the parent
    assert data["ostree-n-content-written"] < data["ostree-n-content-total"]
    # a changed treefile is a change
    tf.write_text(tf.read_text().replace("kernel, hello]", "kernel, hello, unrequested]"))
    third = tmp_path / "third.json"
    compose(tf, repo, "--cachedir", str(cache), "--write-composejson-to", str(third))
    diff = json.loads(third.read_text())["pkgdiff"]
    assert diff == [["unrequested", 0, {"NewPackage": ["unrequested", "1.0-1", "noarch"]}]]


def test_write_commitid_to_moves_no_ref(tmp_path, treedir):
    require_root()
    tf = write_treefile(treedir, BASE_TREEFILE)
    repo = init_repo(tmp_path / "repo")
    cid, cj = tmp_path / "commitid", tmp_path / "compose.json"
    compose(tf, repo, "--write-commitid-to", str(cid), "--write-composejson-to", str(cj))
    data = json.loads(cj.read_text())
    assert cid.read_text() == data["ostree-commit"]
    assert "ref" not in data
    r = Repo.open(repo)
    assert r.list_refs() == {}
    assert r.load_commit(data["ostree-commit"]).metadata["ostree.ref-binding"] == ["testos/39/x86_64/base"]


def test_dry_run_honours_recommends_and_exclude_packages(tmp_path, treedir):
    tf = write_treefile(treedir, BASE_TREEFILE + "exclude-packages: [bloat]\n")
    names = {n.rsplit("-", 2)[0] for n in dry_run(tf)}
    assert "bloat" not in names and "hello" in names       # an excluded Recommends is simply left out
    tf = write_treefile(treedir, BASE_TREEFILE.replace("hello]", "hello, needs-bloat]") +
                        "exclude-packages: [bloat]\n")
    p = run_cli("compose", "tree", "--dry-run", str(tf), check=False)
    assert p.returncode != 0 and "bloat" in p.stderr and "Traceback" not in p.stderr
    tf = write_treefile(treedir, BASE_TREEFILE + "recommends: false\n")
    assert "bloat" not in {n.rsplit("-", 2)[0] for n in dry_run(tf)}


@pytest.mark.parametrize("arch,tool", [("x86_64", "x86-tool"), ("aarch64", "arm-tool"), ("ppc64le", "ppc-tool")])
def test_packages_for_each_basearch(treedir, arch, tool):
    tf = write_treefile(treedir, BASE_TREEFILE.replace("kernel, hello", "") + textwrap_arch())
    got = dry_run(tf, "--arch", arch)
    names = {n.rsplit("-", 2)[0] for n in got}
    assert tool in names
    assert not ({"x86-tool", "arm-tool", "ppc-tool"} - {tool}) & names
    assert all(n.endswith((f".{arch}", ".noarch")) for n in got)
    flat = json.loads(run_cli("compose", "tree", "--print-only", "--arch", arch, str(tf)).stdout)
    assert flat["basearch"] == arch and tool in flat["packages"]
    assert flat["ref"] == f"testos/39/{arch}/base"


def textwrap_arch() -> str:
    return ("packages-x86_64: [x86-tool]\npackages-aarch64: [arm-tool]\npackages-ppc64le: [ppc-tool]\n")


def test_foreign_arch_compose_stops_without_qemu_binfmt_unless_no_scripts(tmp_path, treedir):
    require_root()
    from hybridos.arch import Architecture
    from hybridos.compose.pipeline import foreign_scripts_runnable

    foreign = "aarch64" if Architecture.host().value != "aarch64" else "x86_64"
    tf = write_treefile(treedir, BASE_TREEFILE.replace("kernel, hello", "") + textwrap_arch())
    repo = init_repo(tmp_path / "repo")
    if not foreign_scripts_runnable(Architecture.parse(foreign)):
        p = compose(tf, repo, "--arch", foreign, check=False)
        assert p.returncode != 0 and "qemu-user" in p.stderr and "--no-scripts" in p.stderr
        assert Repo.open(repo).list_refs() == {}
    cid = tmp_path / "cid"
    compose(tf, repo, "--arch", foreign, "--no-scripts", "--write-commitid-to", str(cid))
    meta = Repo.open(repo).load_commit(cid.read_text()).metadata
    assert meta["hybridos.arch"] == foreign


def test_failing_postprocess_script_fails_with_its_output_and_leaves_the_ref(tmp_path, treedir):
    require_root()
    tf = write_treefile(treedir, BASE_TREEFILE)
    repo = init_repo(tmp_path / "repo")
    compose(tf, repo)
    r = Repo.open(repo)
    before = r.resolve_rev("testos/39/x86_64/base")
    tf.write_text(BASE_TREEFILE + "postprocess:\n  - |\n    echo 'postprocess: disk on fire' >&2\n    exit 4\n")
    p = compose(tf, repo, check=False)
    assert p.returncode != 0
    assert "postprocess[0] failed with exit code 4" in p.stderr and "disk on fire" in p.stderr
    assert "Traceback" not in p.stderr
    assert r.resolve_rev("testos/39/x86_64/base") == before
    assert not list((repo / "tmp").glob("hybridos-compose-*"))
    # a working postprocess script and postprocess-script run inside the tree, in order
    (treedir / "post.sh").write_text("#!/bin/sh\necho script >> /usr/share/order\n")
    tf.write_text(BASE_TREEFILE + "postprocess: ['echo inline >> /usr/share/order']\npostprocess-script: post.sh\n")
    cid = tmp_path / "cid"
    compose(tf, repo, "--write-commitid-to", str(cid))
    co = tmp_path / "co"
    r.checkout(cid.read_text(), co)
    assert (co / "usr/share/order").read_text() == "inline\nscript\n"
    assert not (co / ".hybridos-postprocess").exists()


def test_failing_scriptlet_fails_with_its_output_and_leaves_the_ref(tmp_path, treedir):
    require_root()
    tf = write_treefile(treedir, BASE_TREEFILE.replace("hello]", "hello, badpost]"))
    repo = init_repo(tmp_path / "repo")
    p = compose(tf, repo, check=False)
    assert p.returncode != 0 and "the scriptlet exploded" in p.stderr and "badpost" in p.stderr
    assert "Traceback" not in p.stderr
    assert Repo.open(repo).list_refs() == {}
    assert not list((repo / "tmp").glob("hybridos-compose-*"))


@pytest.mark.parametrize("body,needle", [
    ("packages: [a\nref: x\n", "invalid YAML"),
    ("packages: [a]\nfrobnicate: yes\n", "unknown treefile key 'frobnicate'"),
    ("packages: [a]\nrepos: [nosuchrepo]\n", "repository 'nosuchrepo' is not defined in any .repo file"),
    ("include: treefile.yaml\n", "include loop detected"),
    ("ref: 'bad ref with spaces'\npackages: [a]\n", "invalid ref name"),
])
def test_malformed_treefiles_give_clear_errors(tmp_path, treedir, body, needle):
    tf = write_treefile(treedir, body)
    repo = init_repo(tmp_path / "repo")
    p = compose(tf, repo, check=False)
    assert p.returncode != 0
    assert p.stderr.startswith("error: ") and needle in p.stderr and "Traceback" not in p.stderr
    assert "treefile.yaml" in p.stderr
    assert Repo.open(repo).list_refs() == {}


def test_print_only_prints_the_flattened_treefile(treedir):
    (treedir / "common.yaml").write_text("packages: [busybox]\nunits: [a.service]\n")
    tf = write_treefile(treedir, "include: common.yaml\n" + BASE_TREEFILE + "units: [b.service]\n")
    flat = json.loads(run_cli("compose", "tree", "--print-only", str(tf)).stdout)
    assert flat["units"] == ["a.service", "b.service"]
    assert "include" not in flat and flat["ref"].startswith("testos/39/")
    assert flat["packages"] == sorted({"busybox", "filesystem", "testos-release", "kernel", "hello"})


def test_compatibility_options(tmp_path, treedir):
    require_root()
    tf = write_treefile(treedir, BASE_TREEFILE)
    repo = init_repo(tmp_path / "repo")
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"testos.release-notes": "https://example.invalid/notes", "testos.candidate": True}))
    stamp = tmp_path / "stamp"
    stamp.write_text("")
    os.utime(stamp, (1, 1))
    workdir = tmp_path / "work"
    compose(tf, repo, "--unified-core", "--touch-if-changed", str(stamp), "--add-metadata-from-json", str(meta),
            "--add-metadata-string", "version=39.custom", "--workdir", str(workdir))
    assert workdir.is_dir() and not list(workdir.glob("hybridos-compose-*"))
    assert stamp.stat().st_mtime > 1
    commit = Repo.open(repo).load_commit(Repo.open(repo).resolve_rev("testos/39/x86_64/base"))
    assert commit.metadata["testos.candidate"] is True and commit.version == "39.custom"
    os.utime(stamp, (1, 1))
    p = compose(tf, repo, "--touch-if-changed", str(stamp), "--add-metadata-from-json", str(meta))
    assert "No apparent changes" in p.stdout and stamp.stat().st_mtime == 1
    bad = compose(tf, repo, "--add-metadata-string", "novalue", check=False)
    assert bad.returncode == 1 and "KEY=VALUE" in bad.stderr


def test_compose_from_a_repository_over_http_and_tampered_packages(tmp_path, treedir, distro_repo):
    """Packages come through the fetch hook (HTTP on 127.0.0.1); a tampered RPM stops the compose."""
    require_root()
    from tests.helpers.httpserver import serve

    with serve(distro_repo.path) as srv:
        (treedir / "test.repo").write_text(f"[testos]\nname=t\nbaseurl={srv.url}\ngpgcheck=0\n")
        tf = write_treefile(treedir, BASE_TREEFILE)
        repo = init_repo(tmp_path / "repo")
        srv.faults.tamper["hello-1.0-1.x86_64.rpm"] = lambda b: b[:-10] + b"0123456789"
        bad = compose(tf, repo, "--cachedir", str(tmp_path / "c1"), check=False)
        assert bad.returncode != 0 and "hello-1.0-1.x86_64.rpm" in bad.stderr and "Traceback" not in bad.stderr
        assert Repo.open(repo).list_refs() == {}
        srv.faults.tamper.clear()
        cache = tmp_path / "cache"
        compose(tf, repo, "--cachedir", str(cache))
        commit = Repo.open(repo).resolve_rev("testos/39/x86_64/base")
        assert any(p.name.endswith("hello-1.0-1.x86_64.rpm") for p in (cache / "packages").rglob("*.rpm"))
        fetched = len(srv.requests)
        # a forced recompose with the same cache downloads no package again
        compose(tf, repo, "--cachedir", str(cache), "--force-nocache")
        assert any(r[0].endswith(".rpm") for r in srv.requests[:fetched])
        assert not [r for r in srv.requests[fetched:] if r[0].endswith(".rpm")]
        assert Repo.open(repo).load_commit(Repo.open(repo).resolve_rev("testos/39/x86_64/base")).parent == commit
