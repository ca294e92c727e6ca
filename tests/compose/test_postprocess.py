"""Postprocessing: the pure helpers, and the treefile keys that shape the tree (checked on real composes)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from hybridos.compose.pipeline import pkgdiff
from hybridos.compose.postprocess import (
    id_names,
    merge_passwd,
    mutate_os_release,
    split_passwd,
    tmpfiles_paths,
    var_tmpfiles_line,
)
from hybridos.ostree.repo import Repo
from hybridos.packages.model import Nevra
from tests.compose.conftest import BASE_TREEFILE, KVER, write_treefile
from tests.conftest import require_root, run_cli


def test_split_and_merge_passwd():
    text = "root:x:0:0:root:/root:/bin/sh\nbin:x:1:1::/:/sbin/nologin\nwheel:x:10:\n\n"
    stay, move = split_passwd(text, {"root", "wheel"})
    assert stay == "root:x:0:0:root:/root:/bin/sh\nwheel:x:10:\n"
    assert move == "bin:x:1:1::/:/sbin/nologin\n"
    assert merge_passwd("bin:x:1:1::/:/sbin/nologin\n", move + "daemon:x:2:2::/:/sbin/nologin\n") == \
        "bin:x:1:1::/:/sbin/nologin\ndaemon:x:2:2::/:/sbin/nologin\n"
    assert id_names(["root:x:0:0::/root:/bin/sh\nhello:x:990:990::/:/bin/false\n"]) == {0: "root", 990: "hello"}


def test_mutate_os_release():
    src = 'NAME="TestOS"\nVERSION="39 (Test)"\nVERSION_ID=39\nPRETTY_NAME="TestOS 39 (Test)"\nOSTREE_VERSION=old\n'
    out = mutate_os_release(src, "39.20240101.0", "39")
    assert 'VERSION="39.20240101.0 (Test)"' in out and 'PRETTY_NAME="TestOS 39.20240101.0 (Test)"' in out
    assert "VERSION_ID=39\n" in out                        # only VERSION and PRETTY_NAME change
    assert out.count("OSTREE_VERSION=") == 1 and out.endswith("OSTREE_VERSION='39.20240101.0'\n")
    assert 'VERSION="39 (Test)"' in mutate_os_release(src, "39.1", None)


def test_var_tmpfiles_lines(tmp_path):
    d = tmp_path / "lib/x"
    d.mkdir(parents=True)
    d.chmod(0o750)
    os.symlink("../run/lock", tmp_path / "lock")
    assert var_tmpfiles_line("/var/lib/x", d.lstat(), None, {0: "root"}, {0: "root"}) == \
        f"d /var/lib/x 0750 {'root' if d.lstat().st_uid == 0 else d.lstat().st_uid} " \
        f"{'root' if d.lstat().st_gid == 0 else d.lstat().st_gid} - -"
    st = (tmp_path / "lock").lstat()
    assert stat.S_ISLNK(st.st_mode)
    assert var_tmpfiles_line("/var/lock", st, "../run/lock", {}, {}) == "L /var/lock - - - - ../run/lock"
    f = tmp_path / "file"
    f.write_text("x")
    assert var_tmpfiles_line("/var/file", f.lstat(), None, {}, {}) is None
    assert tmpfiles_paths(["# c\nd /var/log 0755 root root -\nL /var/run - - - - ../run\n"]) == {"/var/log", "/var/run"}


def test_pkgdiff_types_follow_rpm_ostree():
    def n(name, v, r="1", arch="x86_64", e=0):
        return Nevra(name, e, v, r, arch)

    old = {(x.name, x.arch): x for x in (n("a", "1.0"), n("b", "2.0"), n("c", "1.0"), n("d", "1.0"))}
    new = {(x.name, x.arch): x for x in (n("a", "1.0"), n("b", "2.10"), n("c", "0.9"), n("e", "1.0"))}
    assert pkgdiff(old, new) == [
        ["b", 2, {"PreviousPackage": ["b", "2.0-1", "x86_64"], "NewPackage": ["b", "2.10-1", "x86_64"]}],
        ["c", 3, {"PreviousPackage": ["c", "1.0-1", "x86_64"], "NewPackage": ["c", "0.9-1", "x86_64"]}],
        ["d", 1, {"PreviousPackage": ["d", "1.0-1", "x86_64"]}],
        ["e", 0, {"NewPackage": ["e", "1.0-1", "x86_64"]}],
    ]


def _compose_checkout(tmp_path: Path, treedir: Path, body: str, *args: str) -> tuple[Path, dict]:
    tf = write_treefile(treedir, body)
    repo = tmp_path / "repo"
    if not repo.exists():
        Repo.init(repo, "bare")
    cid = tmp_path / "cid"
    run_cli("compose", "tree", str(tf), "--repo", str(repo), "--write-commitid-to", str(cid), *args)
    co = tmp_path / "co"
    subprocess.run(["rm", "-rf", str(co)], check=True)
    r = Repo.open(repo)
    r.checkout(cid.read_text(), co)
    return co, r.load_commit(cid.read_text()).metadata


def test_treefile_keys_shape_the_tree(tmp_path, treedir):
    require_root()
    (treedir / "motd").write_text("welcome\n")
    (treedir / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    (treedir / "tool.sh").chmod(0o755)
    body = BASE_TREEFILE + """\
documentation: false
machineid-compat: false
boot-location: new
remove-files: [usr/share/hello]
add-files:
  - [motd, /etc/motd]
  - [tool.sh, /usr/libexec/tool]
initramfs-args: [--zstd]
add-commit-metadata:
  testos.stream: devel
  testos.build: 42
  testos.flags: [a, b]
"""
    co, meta = _compose_checkout(tmp_path, treedir, body, "--add-metadata-string", "testos.stream=override")
    assert not (co / "usr/share/doc/hello/README").exists()          # documentation: false
    assert (co / "usr/bin/hello").exists()
    assert not (co / "usr/etc/machine-id").exists()                  # machineid-compat: false
    assert not (co / "usr/share/hello").exists()                     # remove-files (after %post made it)
    assert (co / "usr/etc/motd").read_text() == "welcome\n"
    assert stat.S_IMODE((co / "usr/libexec/tool").stat().st_mode) == 0o755
    assert (co / "usr/lib/ostree-boot" / f"vmlinuz-{KVER}").read_bytes() == \
        (co / "usr/lib/modules" / KVER / "vmlinuz").read_bytes()     # boot-location: new
    img = (co / "usr/lib/modules" / KVER / "initramfs.img").read_bytes()
    assert img[:4] == b"\x28\xb5\x2f\xfd"                              # zstd frame: initramfs-args --zstd
    assert meta["testos.stream"] == "override" and meta["testos.flags"] == ["a", "b"]
    assert getattr(meta["testos.build"], "value", meta["testos.build"]) == 42
    assert meta["rpmostree.initramfs-args"] == ["--zstd"]
    assert list((co / "boot").iterdir()) == []


def test_passwd_split_with_nss_altfiles_and_etc_group_members(tmp_path, treedir, distro_repo):
    require_root()
    from tests.helpers.rpms import File, Pkg, build_rpm, write_repodata

    # add an nss-altfiles package to the distribution for this test
    extra = build_rpm(Pkg("nss-altfiles", "2.23", files=(File("/usr/lib64/libnss_altfiles.so.2", b"\x7fELF", mode=0o755),
                                                             File("/etc/nsswitch.conf", b"passwd: files\ngroup: files\n",
                                                                  config=True))), tmp_path / "extra")
    repo_dir = tmp_path / "extra-repo"
    repo_dir.mkdir()
    for p in list((distro_repo.path / "Packages").glob("*.rpm")) + [extra]:
        os.link(p, repo_dir / p.name)
    write_repodata(repo_dir, sorted(repo_dir.glob("*.rpm")))
    (treedir / "test.repo").write_text(f"[testos]\nname=t\nbaseurl={repo_dir.as_uri()}\ngpgcheck=0\n")
    co, _ = _compose_checkout(tmp_path, treedir, BASE_TREEFILE.replace("hello]", "hello, nss-altfiles]") +
                              "etc-group-members: [wheel]\n")
    assert (co / "usr/etc/passwd").read_text() == "root:x:0:0:root:/root:/bin/sh\n"
    assert "hello:x:990:990:" in (co / "usr/lib/passwd").read_text()
    group = (co / "usr/etc/group").read_text()
    assert "root:x:0:" in group and "wheel:x:10:" in group and "hello" not in group
    assert "hello:x:990:" in (co / "usr/lib/group").read_text()
    assert (co / "usr/etc/nsswitch.conf").read_text() == "passwd: files altfiles\ngroup: files altfiles\n"


def test_parent_and_no_parent(tmp_path, treedir):
    require_root()
    tf = write_treefile(treedir, BASE_TREEFILE)
    repo = tmp_path / "repo"
    Repo.init(repo, "archive")
    run_cli("compose", "tree", str(tf), "--repo", str(repo))
    r = Repo.open(repo)
    first = r.resolve_rev("testos/39/x86_64/base")
    cj = tmp_path / "cj"
    run_cli("compose", "tree", str(tf), "--repo", str(repo), "--no-parent", "--write-composejson-to", str(cj))
    second = json.loads(cj.read_text())["ostree-commit"]
    assert r.load_commit(second).parent is None and "pkgdiff" not in json.loads(cj.read_text())
    run_cli("compose", "tree", str(tf), "--repo", str(repo), "--parent", first, "--force-nocache",
            "--write-composejson-to", str(cj))
    third = json.loads(cj.read_text())["ostree-commit"]
    assert r.load_commit(third).parent == first
    p = run_cli("compose", "tree", str(tf), "--repo", str(repo), "--parent", first, "--no-parent", check=False)
    assert p.returncode == 1 and "exclude each other" in p.stderr


def test_symlinks_planted_in_the_tree_never_lead_outside(tmp_path):
    """Absolute symlinks from packages are read and written as the tree sees them, never on the host."""
    from hybridos.arch import Architecture
    from hybridos.compose.postprocess import ScriptRunner, place_kernel, postprocess_tree
    from hybridos.compose.treefile import load_treefile
    from hybridos.errors import PackageError

    host = tmp_path / "host"
    (host / "boot").mkdir(parents=True)
    for name in ("os-release", "passwd", "motd"):
        (host / name).write_text(f"host {name}\n")
    (host / "boot/vmlinuz-9.9").write_text("host kernel\n")
    tree = tmp_path / "tree"
    for d in ("etc", "usr/lib", "var", "boot"):
        (tree / d).mkdir(parents=True)
    (tree / "etc/os-release").symlink_to(host / "os-release")
    (tree / "etc/passwd").symlink_to(host / "passwd")
    (tree / "etc/motd").symlink_to(host / "motd")
    (tree / "usr/lib/modules").symlink_to(host / "boot")
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "motd").write_text("image motd\n")
    tf_path = write_treefile(cfg, "packages: [x]\nadd-files: [[motd, /etc/motd]]\nmutate-os-release: '1'\n")
    tf = load_treefile(tf_path, Architecture.X86_64)
    assert place_kernel(tree) is None                      # /usr/lib/modules -> host dir is not followed
    postprocess_tree(tree, tf, version="1.2", kver=None, runner=ScriptRunner(Architecture.X86_64, False))
    for name in ("os-release", "passwd", "motd"):
        assert (host / name).read_text() == f"host {name}\n"
    assert (host / "boot/vmlinuz-9.9").read_text() == "host kernel\n"
    assert (tree / "usr/etc/motd").read_text() == "image motd\n"
    tree2 = tmp_path / "tree2"
    (tree2 / "usr").mkdir(parents=True)
    (tree2 / "boot").symlink_to(host / "boot")
    assert place_kernel(tree2) is None
    with pytest.raises(PackageError, match="/boot in the tree is not a directory"):
        postprocess_tree(tree2, tf, version=None, kver=None, runner=ScriptRunner(Architecture.X86_64, False))
    assert (host / "boot/vmlinuz-9.9").read_text() == "host kernel\n"


def test_binfmt_entries_are_read_as_the_kernel_writes_them():
    from hybridos.compose.pipeline import parse_binfmt_entry

    text = ("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\n"
            "magic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n")
    assert parse_binfmt_entry(text) == (True, "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "POCF")
    assert parse_binfmt_entry(text.replace("enabled", "disabled"))[0] is False
