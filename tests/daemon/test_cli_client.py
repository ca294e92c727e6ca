"""The CLI as hybridosd's client: same output and exit codes as in-process."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import require_tool
from tests.daemon.bus import deployments, serving


def hyb_env(sysroot, *args, env, check=False):
    return subprocess.run([sys.executable, "-m", "hybridos", "--sysroot", str(sysroot), *args],
                          capture_output=True, text=True, env=env, timeout=300, check=check)


LOCAL = dict(os.environ, HYBRIDOS_NO_DAEMON="1")


def test_status_through_the_daemon_equals_in_process(host):
    require_tool("dbus-daemon", "busctl")
    sr, remote, v1 = host
    remote.publish("2.0")
    hyb_env(sr, "upgrade", env=LOCAL, check=True)
    hyb_env(sr, "kargs", "--append", "quiet", env=LOCAL, check=True)
    with serving(sr) as (bus, daemon):
        for args, code in ((("status",), 0), (("status", "--json"), 0), (("status", "-v"), 0),
                           (("status", "-b", "--json"), 0), (("status", "--booted", "--verbose"), 0),
                           (("status", "--pending-exit-77"), 77),        # the new default is not booted
                           (("status", "--sysroot", str(sr), "--json"), 0),
                           (("status", "--jsonpath", "$.deployments[0].version"), 0),
                           (("status", "--json", "--jsonpath", "$"), None),   # usage errors
                           (("status", "--no-such-option"), None)):
            a = hyb_env(sr, *args, env=LOCAL)
            b = hyb_env(sr, *args, env=bus.env())
            assert a.returncode == b.returncode and code in (a.returncode, None), (args, a.stderr, b.stderr)
            assert a.returncode != 0 or code == 0
            assert a.stdout == b.stdout and a.stderr == b.stderr, (args, a.stdout, b.stdout)


#: host commands that leave this sysroot as it is (nothing to do, or refused): same stdout, stderr and exit
#: code in-process and through the daemon
SAME = [
    ("upgrade", "--unchanged-exit-77"),             # 77
    ("upgrade",),                                   # 0, "no upgrade available"
    ("upgrade", "--check", "--unchanged-exit-77"),  # 77
    ("upgrade", "--cache-only", "--unchanged-exit-77"),
    ("rebase", "origin:testos/stable", "--unchanged-exit-77"),
    ("rebase", "nosuchremote:x"),                   # 1, remote not found
    ("deploy", "9.9"),                              # 1, version not found
    ("kargs", "--delete-if-present", "nosuch", "--unchanged-exit-77"),
    ("kargs", "--append", "bad arg"),               # refused before the lock
    ("rollback",),                                  # 1, no rollback deployment
    ("cleanup", "-r"),                              # 0, nothing to remove
    ("cleanup", "-p", "-m"),
    ("uninstall", "nosuch"),                        # not requested
    ("override", "reset", "nosuch"),
    ("initramfs", "--disable", "--unchanged-exit-77"),
    ("install", "/nonexistent/x.rpm"),              # no such RPM file
]


def test_exit_codes_and_output_are_the_same_on_both_paths(host):
    require_tool("dbus-daemon", "busctl")
    sr, remote, v1 = host
    with serving(sr) as (bus, daemon):
        codes = set()
        for args in SAME:
            a = hyb_env(sr, *args, env=LOCAL)
            b = hyb_env(sr, *args, env=bus.env())
            assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr), args
            codes.add(a.returncode)
        assert {0, 1, 77} <= codes
        # the daemon ran them (the CLI did not fall back to in-process)
        assert daemon.output().count("transaction upgrade (Run(upgrade)) for cli") == 4
        # and a change: the same result through the daemon as in-process would print
        v2 = remote.publish("2.0")
        r = hyb_env(sr, "upgrade", env=bus.env())
        assert r.returncode == 0 and "Deployed testos:origin:testos/stable: 1.0 -> 2.0" in r.stdout
        assert r.stdout.rstrip().endswith('Run "systemctl reboot" to start a reboot')
        assert [d["checksum"] for d in deployments(bus)] == [v2, v1]


def test_ctrl_c_cancels_the_daemon_transaction(host):
    require_tool("dbus-daemon", "busctl")
    import signal
    import time

    from tests.daemon.test_transactions import active, holding_lock, wait_for
    from tests.sysroot.conftest import snapshot

    sr, remote, v1 = host
    remote.publish("2.0")
    with serving(sr, env={"HYBRIDOS_LOCK_TIMEOUT": "120"}) as (bus, daemon):
        before = snapshot(sr)
        with holding_lock(sr):
            cli = subprocess.Popen([sys.executable, "-m", "hybridos", "--sysroot", str(sr), "upgrade"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=bus.env())
            assert wait_for(lambda: active(bus)[0] == "Run(upgrade)"), cli.stderr
            time.sleep(0.3)
            cli.send_signal(signal.SIGINT)
            time.sleep(0.3)
        out, err = cli.communicate(timeout=60)
        assert cli.returncode == 130, (out, err)
        assert err == "error: upgrade cancelled; the sysroot is unchanged\n"
        assert snapshot(sr) == before
        assert active(bus) == ["", "", ""]


def test_cancel_command_cancels_the_daemon_transaction(host):
    require_tool("dbus-daemon", "gdbus")
    from tests.daemon.bus import Monitor, call_os, start, unquote_address
    from tests.daemon.test_transactions import active, holding_lock, wait_for

    sr, remote, v1 = host
    remote.publish("2.0")
    with serving(sr, env={"HYBRIDOS_LOCK_TIMEOUT": "120"}) as (bus, daemon):
        with holding_lock(sr):
            addr = unquote_address(call_os(bus, "Upgrade", "{}").stdout)
            mon = Monitor(addr)
            start(addr)
            r = hyb_env(sr, "cancel", env=bus.env())
            assert r.returncode == 0 and r.stdout == "Cancel requested for the daemon's transaction: upgrade\n"
        assert "Finished (false, 'upgrade cancelled; the sysroot is unchanged')" in mon.wait_finished(60)
        assert wait_for(lambda: active(bus) == ["", "", ""])
        assert daemon.proc.poll() is None    # the daemon itself was not stopped
        r = hyb_env(sr, "cancel", env=bus.env())
        assert r.stdout == "No active transaction.\n"


def test_status_fast_path_takes_only_the_plain_forms(monkeypatch):
    """What `hybridos status` answers before loading the command line; everything else goes to click."""
    from hybridos.cli.entry import parse_status_argv

    monkeypatch.delenv("HYBRIDOS_SYSROOT", raising=False)
    assert parse_status_argv(["status"])["sysroot"] == "/"
    assert parse_status_argv(["--sysroot", "/x", "status", "--json", "-b"]) == {
        "sysroot": "/x", "as_json": True, "booted": True, "verbose": False, "pending_exit_77": False}
    assert parse_status_argv(["status", "--sysroot=/y", "-v"])["sysroot"] == "/y"
    for argv in (["status", "--jsonpath", "$"], ["status", "-bv"], ["status", "-h"], ["--debug", "status"],
                 ["status", "status"], ["upgrade"], [], ["status", "--sysroot"], ["--sysroot=", "status"],
                 ["status", "--json", "extra"]):
        assert parse_status_argv(argv) is None, argv
    monkeypatch.setenv("HYBRIDOS_SYSROOT", "/z")
    assert parse_status_argv(["status"])["sysroot"] == "/z"
