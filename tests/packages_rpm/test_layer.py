"""apply_transaction as the layer hook runs it: interplay with rpm's own database, conflicts, users, bad requests."""

from __future__ import annotations

import os

import pytest

from hybridos.errors import HybridosError, PackageError
from hybridos.packages.header import read_rpm_header
from hybridos.packages.layer import apply_transaction
from hybridos.packages.model import Action, LayerRequest, Nevra, Transaction, TransactionItem
from hybridos.packages.rpmdb import read_rpmdb
from hybridos.plugins import get_registry
from tests.helpers.rpms import File, Pkg, build_rpm

from .conftest import layer, rpm_q


def test_layering_onto_a_database_rpm_wrote(tmp_path, base_rpms):
    """rpm installs the base (sqlite in WAL mode, with -wal/-shm); we add to it; rpm still reads everything."""
    tree = tmp_path / "tree"
    tree.mkdir()
    rpm_q(tree, "--initdb")
    rpm_q(tree, "-i", "--nodeps", "--noscripts", str(base_rpms["filesystem"]), str(base_rpms["busybox"]))
    assert sorted(h.name for h in read_rpmdb(tree)) == ["busybox", "filesystem"]
    extra = build_rpm(Pkg("extra", requires=("busybox",), files=(File("/usr/bin/extra", b"e", mode=0o755),)),
                      tmp_path)
    layer(tree, [extra])
    db = tree / "usr/lib/sysimage/rpm/rpmdb.sqlite"
    assert db.read_bytes()[18:20] == b"\x01\x01"   # left in rollback-journal mode (works on a read-only /usr)
    assert not list(db.parent.glob("rpmdb.sqlite-*")) and not list(db.parent.glob(".rpmdb*"))
    assert set(rpm_q(tree, "-qa").stdout.split()) == {"filesystem-3.18-1.x86_64", "busybox-1.35.0-1.x86_64",
                                                      "extra-1.0-1.x86_64"}
    assert rpm_q(tree, "-Va", check=False).stdout == ""
    # and rpm can erase what we installed, keeping the database consistent for us
    rpm_q(tree, "-e", "--nodeps", "--noscripts", "extra")
    assert sorted(h.name for h in read_rpmdb(tree)) == ["busybox", "filesystem"]
    assert not (tree / "usr/bin/extra").exists()


def test_the_layer_hook_reaches_apply_transaction(tmp_path, base_tree):
    rpm = build_rpm(Pkg("hooked", files=(File("/usr/share/hooked", b"h"),)), tmp_path)
    h = read_rpm_header(rpm)
    req = LayerRequest(tree=base_tree, transaction=Transaction((TransactionItem(Action.INSTALL, h.nevra),)),
                       rpms={str(h.nevra): rpm})
    result = get_registry().hook.hybridos_layer(request=req)
    assert result.installed == (h.nevra,)
    assert "hooked-1.0-1.x86_64" in rpm_q(base_tree, "-qa").stdout


def test_file_conflicts_are_refused(tmp_path, base_tree):
    a = build_rpm(Pkg("a", files=(File("/usr/share/common/file", b"from a"), File("/usr/share/same", b"equal"))),
                  tmp_path / "a")
    b = build_rpm(Pkg("b", files=(File("/usr/share/common/file", b"from b"),)), tmp_path / "b")
    c = build_rpm(Pkg("c", files=(File("/usr/share/same", b"equal"),)), tmp_path / "c")
    with pytest.raises(PackageError, match="file /usr/share/common/file from install of b-1.0-1.x86_64 conflicts "
                                           "with file from package a-1.0-1.x86_64"):
        layer(base_tree, [a, b])
    assert not (base_tree / "usr/share/common").exists()       # checked before anything was written
    layer(base_tree, [a, c])                                   # identical files may be shared, as in rpm
    layer(base_tree, [], erase=("a-1.0-1.x86_64",))
    assert (base_tree / "usr/share/same").read_bytes() == b"equal"   # still owned by c
    with pytest.raises(PackageError, match="conflicts"):
        layer(base_tree, [b, build_rpm(Pkg("d", files=(File("/usr/share/same", b"other"),)), tmp_path / "d")])
    layer(base_tree, [b, build_rpm(Pkg("d", files=(File("/usr/share/same", b"other"),)), tmp_path / "d")],
          force_replacefiles=True)
    assert (base_tree / "usr/share/same").read_bytes() == b"other"


def test_protected_base_files(tmp_path, base_tree):
    (base_tree / "usr/lib/os-release").write_text("ID=hybrid\n")       # a base file no package owns
    rpm = build_rpm(Pkg("shadow", files=(File("/usr/lib/os-release", b"ID=other\n"),)), tmp_path)
    with pytest.raises(PackageError, match="refusing to overwrite /usr/lib/os-release"):
        layer(base_tree, [rpm], protected_paths=frozenset({"/usr/lib/os-release"}))
    assert (base_tree / "usr/lib/os-release").read_text() == "ID=hybrid\n"
    assert "shadow" not in rpm_q(base_tree, "-qa").stdout


def test_users_created_by_pre_own_the_files(tmp_path, base_tree):
    rpm = build_rpm(Pkg("daemon", requires=("/bin/sh",),
                        pre="echo 'svc:x:777:778::/:/bin/false' >> /etc/passwd; echo 'svc:x:778:' >> /etc/group",
                        files=(File("/var/lib/daemon", dir=True, mode=0o750, user="svc", group="svc"),
                               File("/var/lib/daemon/state", b"s", user="svc", group="svc"))), tmp_path)
    layer(base_tree, [rpm])
    st = os.stat(base_tree / "var/lib/daemon/state")
    assert (st.st_uid, st.st_gid) == (777, 778)
    assert rpm_q(base_tree, "-V", "daemon", check=False).stdout == ""


def test_changed_config_is_saved_on_erase(tmp_path, base_tree):
    rpm = build_rpm(Pkg("conf", files=(File("/etc/conf.d/x.conf", b"default\n", config=True),
                                       File("/etc/conf.d/y.conf", b"untouched\n", config=True))), tmp_path)
    layer(base_tree, [rpm])
    (base_tree / "etc/conf.d/x.conf").write_text("edited\n")
    layer(base_tree, [], erase=("conf-1.0-1.x86_64",))
    assert (base_tree / "etc/conf.d/x.conf.rpmsave").read_text() == "edited\n"
    assert not (base_tree / "etc/conf.d/y.conf").exists()


def test_bad_requests(tmp_path, base_tree):
    rpm = build_rpm(Pkg("real", files=(File("/usr/share/real", b"r"),)), tmp_path)
    wrong = Nevra("other", 0, "1", "1", "x86_64")
    with pytest.raises(PackageError, match="holds real-1.0-1.x86_64, not other-1-1.x86_64"):
        apply_transaction(LayerRequest(tree=base_tree, transaction=Transaction(
            (TransactionItem(Action.INSTALL, wrong),)), rpms={str(wrong): rpm}))
    with pytest.raises(PackageError, match="no downloaded RPM for other-1-1.x86_64"):
        apply_transaction(LayerRequest(tree=base_tree, transaction=Transaction(
            (TransactionItem(Action.INSTALL, wrong),)), rpms={}))
    with pytest.raises(PackageError, match="is not a directory"):
        apply_transaction(LayerRequest(tree=tmp_path / "missing", transaction=Transaction(())))
    truncated = tmp_path / "trunc.rpm"
    truncated.write_bytes(rpm.read_bytes()[:-100])
    h = read_rpm_header(rpm)
    with pytest.raises(HybridosError, match="truncated") as e:
        apply_transaction(LayerRequest(tree=base_tree, transaction=Transaction(
            (TransactionItem(Action.INSTALL, h.nevra),)), rpms={str(h.nevra): truncated}))
    assert "trunc.rpm" in str(e.value)
    assert "real" not in {x.name for x in read_rpmdb(base_tree)} and not (base_tree / "usr/share/real").exists()


def test_reinstall_and_downgrade(tmp_path, base_tree):
    v2 = build_rpm(Pkg("tool", "2", files=(File("/usr/bin/tool", b"v2", mode=0o755),)), tmp_path / "2")
    v1 = build_rpm(Pkg("tool", "1", files=(File("/usr/bin/tool", b"v1", mode=0o755),
                                          File("/usr/share/tool/v1-only", b"x"))), tmp_path / "1")
    layer(base_tree, [v2])
    (base_tree / "usr/bin/tool").write_bytes(b"damaged")
    layer(base_tree, [v2], action=Action.REINSTALL)
    assert (base_tree / "usr/bin/tool").read_bytes() == b"v2"
    assert rpm_q(base_tree, "-q", "tool").stdout.split() == ["tool-2-1.x86_64"]
    layer(base_tree, [v1], action=Action.DOWNGRADE)
    assert rpm_q(base_tree, "-q", "tool").stdout.split() == ["tool-1-1.x86_64"]
    assert (base_tree / "usr/bin/tool").read_bytes() == b"v1"
    assert rpm_q(base_tree, "-Va", check=False).stdout == ""


def test_config_files_on_upgrade_follow_rpm_rules(tmp_path, base_tree):
    def version(v):
        return build_rpm(Pkg("cfg", v, files=(File("/etc/cfg/a.conf", f"a {v}\n".encode(), noreplace=True),
                                             File("/etc/cfg/b.conf", f"b {v}\n".encode(), noreplace=True),
                                             File("/etc/cfg/c.conf", f"c {v}\n".encode(), config=True))),
                         tmp_path / v)

    layer(base_tree, [version("1")])
    (base_tree / "etc/cfg/b.conf").write_text("b edited\n")
    (base_tree / "etc/cfg/c.conf").write_text("c edited\n")
    result = layer(base_tree, [version("2")], action=Action.UPGRADE)
    cfg = base_tree / "etc/cfg"
    assert (cfg / "a.conf").read_text() == "a 2\n" and not (cfg / "a.conf.rpmnew").exists()   # unmodified
    assert (cfg / "b.conf").read_text() == "b edited\n" and (cfg / "b.conf.rpmnew").read_text() == "b 2\n"
    assert (cfg / "c.conf").read_text() == "c 2\n" and (cfg / "c.conf.rpmsave").read_text() == "c edited\n"
    assert "warning: cfg-2-1.x86_64: /etc/cfg/b.conf was changed" in result.script_output
    verify = rpm_q(base_tree, "-V", "cfg", check=False).stdout.splitlines()
    assert [line.split()[-1] for line in verify] == ["/etc/cfg/b.conf"]     # only the admin's edit differs


def test_owners_from_a_passwd_installed_earlier_in_the_same_transaction(tmp_path, base_rpms):
    """Owners are looked up once per transaction and again after a package wrote passwd or group."""
    svc = build_rpm(Pkg("svcfiles", files=(File("/srv/alice", dir=True, mode=0o750, user="alice", group="staff"),
                                           File("/srv/alice/data", b"d", user="alice", group="staff"))), tmp_path)
    tree = tmp_path / "tree"
    tree.mkdir()
    result = layer(tree, [base_rpms["filesystem"], svc], run_scripts=False)
    for path in ("srv/alice", "srv/alice/data"):
        st = os.stat(tree / path)
        assert (st.st_uid, st.st_gid) == (1234, 2345), path
    assert "does not exist" not in result.script_output
    assert rpm_q(tree, "-V", "svcfiles", check=False).stdout == ""


def test_directories_are_checked_again_after_a_scriptlet(tmp_path, base_tree):
    """A scriptlet may turn a directory an earlier package created into a symlink out of the tree: a later
    package of the same transaction is refused rather than written through it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    a = build_rpm(Pkg("opt-a", requires=("/bin/sh",), post=f"rmdir /opt/data && ln -s {outside} /opt/data",
                      files=(File("/opt/data", dir=True, mode=0o755),)), tmp_path)
    b = build_rpm(Pkg("opt-b", files=(File("/opt/data/file", b"b"),)), tmp_path)
    with pytest.raises(PackageError, match="absolute symlink"):
        layer(base_tree, [a, b])
    assert not any(outside.iterdir())
