"""Unpacking onto a tree: metadata as the header says, owners from the TARGET tree, and no escape from it."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from hybridos.errors import PackageError
from hybridos.packages.header import read_rpm_header
from hybridos.packages.unpack import caps_to_xattr, load_owners, unpack_rpm
from tests.conftest import require_tool
from tests.helpers.rpms import File, Pkg, build_rpm

FEATURES = Pkg("feat", "1.0", files=(
    File("/usr/bin/suid", b"#!/bin/sh\n", mode=0o4755, user="alice", group="staff"),
    File("/usr/bin/sgid", b"#!/bin/sh\n", mode=0o2711, user="root", group="staff"),
    File("/usr/bin/pinger", b"ping", mode=0o755, caps="cap_net_raw,cap_net_admin=ep"),
    File("/usr/lib/feat/h1", b"shared data", hardlink="H"), File("/usr/lib/feat/h2", b"shared data", hardlink="H"),
    File("/usr/lib/feat/h3", b"shared data", hardlink="H"),
    File("/usr/bin/suid-link", symlink="suid"),
    File("/usr/share/feat/abs-link", symlink="/etc/feat.conf"),
    File("/etc/feat.conf", b"setting=1\n", noreplace=True),
    File("/var/lib/feat", dir=True, mode=0o700, user="alice", group="staff"),
    File("/var/log/feat.log", ghost=True),
))


def host_has(user: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="module")
def feat_rpm(tmp_path_factory):
    return build_rpm(FEATURES, tmp_path_factory.mktemp("feat"))


def make_tree(tmp_path, passwd_dir="etc"):
    tree = tmp_path / "tree"
    (tree / passwd_dir).mkdir(parents=True)
    (tree / passwd_dir / "passwd").write_text("root:x:0:0::/root:/bin/sh\nalice:x:4321:4321::/:/bin/sh\n")
    (tree / passwd_dir / "group").write_text("root:x:0:\nstaff:x:6543:\n")
    return tree


def test_modes_owners_links_caps(tmp_path, feat_rpm):
    assert not host_has("alice")   # the owners can only come from the target tree
    tree = make_tree(tmp_path)
    res = unpack_rpm(feat_rpm, tree)
    h = read_rpm_header(feat_rpm)
    st = os.lstat(tree / "usr/bin/suid")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4321, 6543, 0o4755)
    st = os.lstat(tree / "usr/bin/sgid")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 6543, 0o2711)
    st = os.lstat(tree / "var/lib/feat")
    assert stat.S_ISDIR(st.st_mode) and (st.st_uid, stat.S_IMODE(st.st_mode)) == (4321, 0o700)
    # hardlinks: one inode, the data once
    inodes = {os.lstat(tree / f"usr/lib/feat/h{i}").st_ino for i in (1, 2, 3)}
    assert len(inodes) == 1 and os.lstat(tree / "usr/lib/feat/h1").st_nlink == 3
    assert (tree / "usr/lib/feat/h3").read_bytes() == b"shared data"
    # symlinks as they are, relative and absolute
    assert os.readlink(tree / "usr/bin/suid-link") == "suid"
    assert os.readlink(tree / "usr/share/feat/abs-link") == "/etc/feat.conf"
    # capabilities
    assert os.getxattr(tree / "usr/bin/pinger", "security.capability") == caps_to_xattr("cap_net_raw,cap_net_admin=ep")
    require_tool("getcap")
    out = subprocess.run(["getcap", str(tree / "usr/bin/pinger")], capture_output=True, text=True).stdout
    assert "cap_net_admin,cap_net_raw=ep" in out
    # mtimes from the header; ghost skipped; config recorded
    mtimes = {e.path: e.mtime for e in h.file_entries}
    assert os.lstat(tree / "usr/bin/suid").st_mtime == mtimes["/usr/bin/suid"]
    assert os.lstat(tree / "usr/bin/suid-link").st_mtime == mtimes["/usr/bin/suid-link"]
    assert not (tree / "var/log/feat.log").exists()
    assert res.config_files == ("/etc/feat.conf",)
    assert "/var/log/feat.log" not in res.written and "/usr/lib/feat/h1" in res.written
    assert not any(n.startswith(".") for n in os.listdir(tree / "usr/bin"))   # no temp files left


def test_owners_from_ostree_style_usr_lib_passwd(tmp_path, feat_rpm):
    tree = make_tree(tmp_path, "usr/lib")
    assert load_owners(tree).uid("alice") == 4321
    unpack_rpm(feat_rpm, tree)
    assert os.lstat(tree / "usr/bin/suid").st_uid == 4321


def test_unknown_owner_falls_back_to_root_with_a_warning(tmp_path, feat_rpm):
    tree = tmp_path / "bare"
    tree.mkdir()
    res = unpack_rpm(feat_rpm, tree)
    assert os.lstat(tree / "usr/bin/suid").st_uid == 0
    assert stat.S_IMODE(os.lstat(tree / "usr/bin/suid").st_mode) == 0o4755
    assert any("user alice does not exist" in w for w in res.warnings)


def test_caps_text_forms():
    assert caps_to_xattr("cap_net_raw=ep") == caps_to_xattr("cap_net_raw+ep")
    assert caps_to_xattr("cap_sys_admin,cap_chown=p") != caps_to_xattr("cap_sys_admin,cap_chown=ep")
    with pytest.raises(PackageError, match="unknown file capability"):
        caps_to_xattr("cap_fly=ep")


def test_relative_directory_symlinks_of_the_tree_are_followed(tmp_path):
    tree = tmp_path / "tree"
    (tree / "usr/bin").mkdir(parents=True)
    os.symlink("usr/bin", tree / "bin")
    rpm = build_rpm(Pkg("tool", files=(File("/bin/tool", b"t", mode=0o755),)), tmp_path)
    unpack_rpm(rpm, tree)
    assert os.path.islink(tree / "bin") and (tree / "usr/bin/tool").read_bytes() == b"t"


def _empty(p):
    return not p.exists() or not any(p.rglob("*"))


def test_dotdot_path_is_refused_and_nothing_written(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    tree = tmp_path / "a" / "b" / "tree"
    tree.mkdir(parents=True)
    rpm = build_rpm(Pkg("evil", files=(File("/usr/share/ok", b"fine"),
                                       File("/usr/../../../../outside/pwned", b"gotcha"))), tmp_path)
    with pytest.raises(PackageError, match=r"escapes the tree \('\.\.'\)") as e:
        unpack_rpm(rpm, tree)
    assert "evil-1.0-1.x86_64" in str(e.value)
    assert _empty(outside) and _empty(tree)


def test_absolute_symlink_in_the_package_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    tree = tmp_path / "tree"
    tree.mkdir()
    rpm = build_rpm(Pkg("evil", files=(File("/evil", symlink=str(outside)),
                                       File("/evil/pwned", b"gotcha"))), tmp_path)
    with pytest.raises(PackageError, match="absolute symlink"):
        unpack_rpm(rpm, tree)
    assert _empty(outside) and _empty(tree)


def test_absolute_symlink_already_in_the_tree_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    tree = tmp_path / "tree"
    tree.mkdir()
    os.symlink(str(outside), tree / "opt")
    rpm = build_rpm(Pkg("evil", files=(File("/opt/pwned", b"gotcha"),)), tmp_path)
    with pytest.raises(PackageError, match="absolute symlink"):
        unpack_rpm(rpm, tree)
    assert _empty(outside) and os.listdir(tree) == ["opt"]


def test_relative_symlink_climbing_out_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    tree = tmp_path / "tree"
    tree.mkdir()
    rpm = build_rpm(Pkg("evil", files=(File("/usr/up", symlink="../../outside"),
                                       File("/usr/up/pwned", b"gotcha"))), tmp_path)
    with pytest.raises(PackageError, match="leaves the tree"):
        unpack_rpm(rpm, tree)
    assert _empty(outside) and _empty(tree)


def test_final_symlink_is_replaced_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target").write_text("precious")
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    os.symlink(str(outside / "target"), tree / "etc/file")
    rpm = build_rpm(Pkg("p", files=(File("/etc/file", b"new"),)), tmp_path)
    unpack_rpm(rpm, tree)
    assert (outside / "target").read_text() == "precious"
    assert not os.path.islink(tree / "etc/file") and (tree / "etc/file").read_bytes() == b"new"


def test_protected_paths_are_refused_unless_forced(tmp_path):
    tree = tmp_path / "tree"
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "usr/bin/base-tool").write_text("from the base image")
    rpm = build_rpm(Pkg("p", files=(File("/usr/bin/base-tool", b"layered"), File("/usr/bin/new", b"n"))), tmp_path)
    with pytest.raises(PackageError, match="refusing to overwrite /usr/bin/base-tool"):
        unpack_rpm(rpm, tree, protected=frozenset({"/usr/bin/base-tool"}))
    assert (tree / "usr/bin/base-tool").read_text() == "from the base image"
    assert not (tree / "usr/bin/new").exists()
    unpack_rpm(rpm, tree, protected=frozenset({"/usr/bin/base-tool"}), force=True)
    assert (tree / "usr/bin/base-tool").read_bytes() == b"layered"


def test_changed_noreplace_config_gets_rpmnew(tmp_path, feat_rpm):
    tree = make_tree(tmp_path)
    (tree / "etc/feat.conf").write_text("admin's edit\n")
    res = unpack_rpm(feat_rpm, tree)
    assert (tree / "etc/feat.conf").read_text() == "admin's edit\n"
    assert (tree / "etc/feat.conf.rpmnew").read_bytes() == b"setting=1\n"
    assert res.rpmnew == ("/etc/feat.conf",)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_modes_and_owners_do_not_depend_on_the_umask_or_the_parent_directory(tmp_path, umask):
    """Files are created with their permissions and changed only where the new file differs: the result is the
    header's modes and owners whatever the umask strips and whatever a setgid parent directory hands down."""
    rpm = build_rpm(Pkg("modes", files=(
        File("/srv/shared/open", b"o", mode=0o777), File("/srv/shared/private", b"p", mode=0o640),
        File("/srv/shared/suid", b"s", mode=0o4755), File("/srv/shared/sticky", b"t", mode=0o1644),
        File("/srv/shared/mine", b"m", mode=0o644, user="alice", group="staff"),
        File("/srv/shared/plain", b"r", mode=0o644), File("/srv/shared/link", symlink="plain"),
        File("/srv/shared/alice-link", symlink="mine", user="alice", group="staff"))), tmp_path)
    tree = make_tree(tmp_path)
    (tree / "srv/shared").mkdir(parents=True)
    os.chown(tree / "srv/shared", 0, 6543)
    os.chmod(tree / "srv/shared", 0o2775)   # new files inherit the group staff
    old = os.umask(umask)
    try:
        unpack_rpm(rpm, tree)
    finally:
        os.umask(old)
    got = {p.name: (stat.S_IMODE(p.lstat().st_mode), p.lstat().st_uid, p.lstat().st_gid)
           for p in (tree / "srv/shared").iterdir() if not p.is_symlink()}
    assert got == {"open": (0o777, 0, 0), "private": (0o640, 0, 0), "suid": (0o4755, 0, 0),
                   "sticky": (0o1644, 0, 0), "mine": (0o644, 4321, 6543), "plain": (0o644, 0, 0)}
    links = {p.name: (p.lstat().st_uid, p.lstat().st_gid, p.lstat().st_mtime)
             for p in (tree / "srv/shared").iterdir() if p.is_symlink()}
    mtimes = {e.path.rsplit("/", 1)[1]: e.mtime for e in read_rpm_header(rpm).file_entries}
    assert links == {"link": (0, 0, mtimes["link"]), "alice-link": (4321, 6543, mtimes["alice-link"])}
