"""The options rpm-ostree's scripts use: --stateroot, -r/--reboot, --lock-finalization, --bypass-driver, kargs'
--append-if-missing/--delete-if-present by KEY=VALUE, the hidden aliases, and the exit codes of "nothing to do"."""

from __future__ import annotations

from tests.sysroot.conftest import STATEROOT, hyb, status


def _commits(sr):
    return [d["checksum"] for d in status(sr)]


def test_stateroot_reboot_lock_finalization_and_bypass_driver(host):
    sr, remote, v1 = host
    v2 = remote.publish("2.0")
    r = hyb(sr, "upgrade", "--stateroot", STATEROOT, "-r", "--lock-finalization", "--bypass-driver")
    assert _commits(sr) == [v2, v1]
    # not the running system: a --sysroot elsewhere is never rebooted
    assert r.stdout.rstrip().endswith(f"Not rebooting: {sr} is not the running system (--sysroot)")
    assert "--lock-finalization has no effect" in r.stderr
    # --check/--preview deploy nothing: with --reboot, rpm-ostree's usage error (exit 1), and no reboot
    remote.publish("3.0")
    r = hyb(sr, "upgrade", "--check", "--reboot", check=False)
    assert (r.returncode, r.stderr, r.stdout) == (1, "error: Cannot specify both --reboot and --check\n", "")
    r = hyb(sr, "upgrade", "--preview", "-r", check=False)
    assert (r.returncode, r.stderr) == (1, "error: Cannot specify both --reboot and --preview\n")
    assert "Version: 3.0" in hyb(sr, "upgrade", "--check").stdout
    r = hyb(sr, "rollback", "--reboot")
    assert "Not rebooting" in r.stdout and _commits(sr) == [v1, v2]


def test_hidden_aliases_run_their_commands(host):
    sr, remote, v1 = host
    v2 = remote.publish("2.0")
    hyb(sr, "update")
    assert _commits(sr) == [v2, v1]
    help_text = hyb(sr, "--help").stdout
    assert "update" not in help_text.split("Commands:")[1] and "makecache" not in help_text


def test_kargs_if_missing_and_if_present_by_key_and_value(host):
    sr, _remote, _v1 = host
    hyb(sr, "kargs", "--append", "console=tty0")
    hyb(sr, "kargs", "--append-if-missing", "console=ttyS0", "--append-if-missing", "rw")
    kargs = hyb(sr, "kargs").stdout.split()
    assert kargs.count("rw") == 1 and "console=tty0" in kargs and "console=ttyS0" in kargs
    r = hyb(sr, "kargs", "--delete-if-present", "console", "--unchanged-exit-77", check=False)
    assert r.returncode == 77                          # no bare 'console': nothing to do, and no error
    hyb(sr, "kargs", "--delete-if-present", "console=ttyS0")
    kargs = hyb(sr, "kargs").stdout.split()
    assert "console=ttyS0" not in kargs and "console=tty0" in kargs


def test_deploy_forms_branch_check_and_rebase_to_a_checksum(host, workdir):
    from tests.sysroot.conftest import make_tree, ostree_commit

    sr, remote, v1 = host
    v2 = remote.publish("2.0")
    remote.publish("3.0")
    hyb(sr, "deploy", "version=2.0")
    assert _commits(sr)[0] == v2
    hyb(sr, "deploy", f"revision={v1}")
    assert _commits(sr)[0] == v1
    r = hyb(sr, "deploy", "revision=2.0", check=False)
    assert r.returncode == 1 and "not a commit checksum" in r.stderr
    # a commit that is not on the origin's branch: refused unless --skip-branch-check
    other = ostree_commit(sr / "ostree/repo", make_tree(workdir / "other", "9.0"), "elsewhere", "9.0")
    r = hyb(sr, "deploy", other, check=False)
    assert r.returncode == 1 and f"checksum {other} not found in origin:testos/stable" in r.stderr
    assert "--skip-branch-check" in r.stderr and _commits(sr)[0] == v1
    hyb(sr, "deploy", "--skip-branch-check", other)
    assert _commits(sr)[0] == other
    # rebase to a checksum: the origin names the commit
    hyb(sr, "rebase", v2)
    d = status(sr)[0]
    assert d["checksum"] == v2 and d["origin"] == v2
    r = hyb(sr, "upgrade", check=False)
    assert r.returncode == 0 and "no upgrade available" in r.stdout          # a checksum does not move
