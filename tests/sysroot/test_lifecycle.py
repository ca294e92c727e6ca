"""The administrator's day: deploy, /etc changes, upgrade over HTTP, rollback, deploy VERSION, rebase, kargs,
cleanup and pinning, checked through our status, the files on disk and the real `ostree admin status`."""

from __future__ import annotations

import os

from tests.sysroot.conftest import STATEROOT, check_consistent, hyb, ostree, status


def _etc(sr, dep):
    return sr / f"ostree/deploy/{STATEROOT}/deploy/{dep['checksum']}.{dep['serial']}/etc"


def test_upgrade_keeps_etc_and_var_then_rollback_twice(host):
    sr, remote, v1 = host
    [d1] = status(sr)
    assert d1["checksum"] == v1 and d1["version"] == "1.0" and d1["origin"] == "origin:testos/stable"
    assert d1["kernel-arguments"] == ["root=/dev/vda1", "rw"]
    etc = _etc(sr, d1)
    (etc / "motd").write_text("local motd\n")        # edit
    (etc / "local.conf").write_text("mine\n")         # add
    (etc / "app.conf").unlink()                        # delete
    var_file = sr / f"ostree/deploy/{STATEROOT}/var/lib/data"
    var_file.write_text("state\n")

    v2 = remote.publish("2.0", etc={"motd": "motd v2\n", "new-in-v2": "x\n"})
    out = hyb(sr, "upgrade").stdout
    assert "1.0 -> 2.0" in out
    deps = status(sr)
    assert [d["checksum"] for d in deps] == [v2, v1]
    assert [d["version"] for d in deps] == ["2.0", "1.0"]
    assert deps[0]["kernel-arguments"] == ["root=/dev/vda1", "rw"]   # carried forward
    etc2 = _etc(sr, deps[0])
    assert (etc2 / "motd").read_text() == "local motd\n"
    assert (etc2 / "local.conf").read_text() == "mine\n"
    assert not (etc2 / "app.conf").exists()
    assert (etc2 / "new-in-v2").read_text() == "x\n"
    assert var_file.read_text() == "state\n"
    check_consistent(sr)

    # the real ostree reads what we wrote
    text = ostree("admin", "status", f"--sysroot={sr}").stdout
    assert text.index(v2) < text.index(v1)
    assert "Version: 2.0" in text and "Version: 1.0" in text

    assert hyb(sr, "upgrade", "--unchanged-exit-77", check=False).returncode == 77
    assert hyb(sr, "upgrade", check=False).returncode == 0

    hyb(sr, "rollback")
    assert [d["checksum"] for d in status(sr)] == [v1, v2]
    check_consistent(sr)
    hyb(sr, "rollback")
    assert [d["checksum"] for d in status(sr)] == [v2, v1]
    check_consistent(sr)


def test_ostree_deploys_on_top_of_our_sysroot_and_we_read_it(host):
    sr, remote, v1 = host
    v2 = remote.publish("2.0")
    ostree(f"--repo={sr}/ostree/repo", "pull", "origin", "testos/stable")
    ostree("admin", "deploy", f"--sysroot={sr}", f"--os={STATEROOT}", "origin:testos/stable")
    deps = status(sr)
    assert [d["checksum"] for d in deps] == [v2, v1]
    assert [d["version"] for d in deps] == ["2.0", "1.0"]
    assert deps[0]["kernel-arguments"] == ["root=/dev/vda1", "rw"]
    check_consistent(sr)
    # and we continue from there
    v3 = remote.publish("3.0")
    hyb(sr, "upgrade")
    assert [d["checksum"] for d in status(sr)] == [v3, v2]
    check_consistent(sr)


def test_deploy_version_and_rebase(host):
    sr, remote, v1 = host
    v2 = remote.publish("2.0")
    v3 = remote.publish("3.0")
    other = remote.publish("9.0", ref="testos/other")
    hyb(sr, "deploy", "2.0")
    deps = status(sr)
    assert deps[0]["checksum"] == v2 and deps[0]["override-commit"] == v2
    hyb(sr, "deploy", v3)
    assert status(sr)[0]["checksum"] == v3
    r = hyb(sr, "deploy", "7.7", check=False)
    assert r.returncode != 0 and "version '7.7' not found" in r.stderr
    hyb(sr, "rebase", "origin:testos/other")
    deps = status(sr)
    assert deps[0]["checksum"] == other and deps[0]["origin"] == "origin:testos/other"
    assert "override-commit" not in deps[0]
    assert deps[1]["checksum"] == v3
    check_consistent(sr)
    del v1


def test_kargs_reach_the_boot_entries(host):
    sr, _, _ = host
    hyb(sr, "kargs", "--append", "console=ttyS0", "--append", "quiet", "--replace", "root=/dev/vdb2",
        "--delete", "rw")
    deps = status(sr)
    assert deps[0]["kernel-arguments"] == ["root=/dev/vdb2", "console=ttyS0", "quiet"]
    assert deps[1]["kernel-arguments"] == ["root=/dev/vda1", "rw"]
    entries = {p.name: p.read_text() for p in (sr / "boot/loader/entries").iterdir()}
    default = entries[f"ostree-2-{STATEROOT}.conf"]
    opts = next(line for line in default.splitlines() if line.startswith("options "))
    assert opts.startswith("options root=/dev/vdb2 console=ttyS0 quiet ostree=/ostree/boot.")
    assert hyb(sr, "kargs").stdout.strip() == "root=/dev/vdb2 console=ttyS0 quiet"
    assert hyb(sr, "kargs", "--append-if-missing", "quiet", "--delete-if-present", "absent",
               "--unchanged-exit-77", check=False).returncode == 77
    check_consistent(sr)


def test_cleanup_rollback_and_pinning(host):
    sr, remote, v1 = host
    v2 = remote.publish("2.0")
    hyb(sr, "upgrade")
    old_dir = sr / f"ostree/deploy/{STATEROOT}/deploy/{v1}.0"
    assert old_dir.is_dir()
    hyb(sr, "admin", "pin", "1")
    assert status(sr)[1]["pinned"] is True
    out = hyb(sr, "cleanup", "-r").stdout
    assert "pinned" in out
    assert [d["checksum"] for d in status(sr)] == [v2, v1]
    # a pinned deployment also survives an upgrade that would otherwise drop it
    v3 = remote.publish("3.0")
    hyb(sr, "upgrade")
    assert [d["checksum"] for d in status(sr)] == [v3, v2, v1]
    hyb(sr, "admin", "pin", "--unpin", "2")
    hyb(sr, "cleanup", "-r")
    assert [d["checksum"] for d in status(sr)] == [v3, v1]
    hyb(sr, "cleanup", "-r")
    assert [d["checksum"] for d in status(sr)] == [v3]
    assert not old_dir.exists()
    assert sorted(os.listdir(sr / "boot/ostree")) == [f"{STATEROOT}-{status(sr)[0]['bootcsum']}"]
    objects_before = sum(1 for _ in (sr / "ostree/repo/objects").rglob("*.file"))
    hyb(sr, "cleanup", "-b")
    check_consistent(sr)
    # what was pruned was unreachable: the real ostree finds the repository complete, and v3 still checks out
    assert sum(1 for _ in (sr / "ostree/repo/objects").rglob("*.file")) <= objects_before
    ostree(f"--repo={sr}/ostree/repo", "fsck")
    ostree(f"--repo={sr}/ostree/repo", "checkout", "-H", v3, str(sr.parent / "co-v3"))
    text = ostree("admin", "status", f"--sysroot={sr}").stdout
    assert v3 in text and v1 not in text


def test_admin_undeploy_and_status_text(host):
    sr, remote, v1 = host
    v2 = remote.publish("2.0")
    hyb(sr, "upgrade")
    out = hyb(sr, "status", "-v").stdout
    assert "Version: 2.0" in out and "KernelArguments: root=/dev/vda1 rw" in out
    assert out.index(v2) < out.index(v1)
    hyb(sr, "admin", "pin", "1")
    # `admin status` prints exactly what `ostree admin status` prints for the same sysroot
    assert hyb(sr, "admin", "status").stdout == ostree("admin", "status", f"--sysroot={sr}").stdout
    hyb(sr, "admin", "undeploy", "1")    # an explicit undeploy removes a pinned deployment, as ostree's does
    assert [d["checksum"] for d in status(sr)] == [v2]
    r = hyb(sr, "admin", "undeploy", "5", check=False)
    assert r.returncode != 0 and "no deployment at index 5" in r.stderr
    check_consistent(sr)
