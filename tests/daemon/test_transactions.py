"""Transactions as rpm-ostreed runs them: one at a time (busy error, identical request joins), Cancel before the
commit point, a client gone before Start(), late joiners, a daemon killed mid-transaction; authorization of a
real unprivileged uid; idle exit; properties following the sysroot."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import require_tool
from tests.daemon.bus import (
    BUS_NAME,
    OS_IFACE,
    SYSROOT_OBJ,
    TXN_IFACE,
    Bus,
    Daemon,
    Monitor,
    busctl,
    call_os,
    deployments,
    gdbus,
    has_owner,
    os_object,
    prop_json,
    serving,
    start,
    unquote_address,
)
from tests.sysroot.conftest import check_consistent, snapshot

SYSROOT_IFACE = "org.projectatomic.rpmostree1.Sysroot"


@pytest.fixture(autouse=True)
def _tools():
    require_tool("dbus-daemon", "busctl", "gdbus")


@contextlib.contextmanager
def holding_lock(sysroot):
    """Another process holds the sysroot lock (as a running `ostree admin` would) until the block ends."""
    p = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys\n"
                          "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\nfcntl.lockf(fd, fcntl.LOCK_EX)\n"
                          "print('locked', flush=True)\nsys.stdin.read()\n", str(sysroot / "ostree/lock")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    try:
        yield
    finally:
        p.stdin.close()
        p.wait(10)


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def active(bus):
    return prop_json(bus, SYSROOT_OBJ, SYSROOT_IFACE, "ActiveTransaction")


def test_busy_join_cancel_unchanged_and_late_joiner(host):
    sr, remote, v1 = host
    v2 = remote.publish("2.0")
    with serving(sr, env={"HYBRIDOS_LOCK_TIMEOUT": "120"}) as (bus, daemon):
        before = snapshot(sr)
        with holding_lock(sr):
            addr = unquote_address(call_os(bus, "Upgrade", "{}").stdout)
            mon = Monitor(addr)
            assert start(addr) == "(true,)"
            time.sleep(0.5)
            assert active(bus)[0] == "Upgrade", "".join(mon.lines)
            assert active(bus)[0] == "Upgrade" and active(bus)[2] == os_object(bus)
            assert prop_json(bus, SYSROOT_OBJ, SYSROOT_IFACE, "ActiveTransactionPath") == addr
            # another request: the busy error naming the running transaction
            r = call_os(bus, "Rollback", "{}", check=False)
            assert r.returncode != 0 and "UpdateInProgress" in r.stderr
            assert "Transaction in progress: upgrade" in r.stderr
            # the identical request joins it
            assert unquote_address(call_os(bus, "Upgrade", "{}").stdout) == addr
            # a second Start() does not start it again
            assert start(addr) == "(false,)"
            gdbus(bus, "call", "--address", addr, "--dest", BUS_NAME, "--object-path", "/", "--method",
                  f"{TXN_IFACE}.Cancel", check=False)
            subprocess.run(["gdbus", "call", "--address", addr, "--dest", BUS_NAME, "--object-path", "/",
                            "--method", f"{TXN_IFACE}.Cancel"], check=True, capture_output=True)
        signals = mon.wait_finished(60)
        assert "Finished (false, 'upgrade cancelled; the sysroot is unchanged')" in signals, signals
        assert snapshot(sr) == before
        assert active(bus) == ["", "", ""]
        # a client connecting after the end gets Finished again
        late = Monitor(addr)
        assert start(addr) == "(false,)"
        assert "Finished (false, 'upgrade cancelled" in late.wait_finished(30)
        # and the next transaction runs
        addr = unquote_address(call_os(bus, "Upgrade", "{}").stdout)
        mon = Monitor(addr)
        start(addr)
        assert ".Finished (true, '')" in mon.wait_finished(120)
        assert [d["checksum"] for d in deployments(bus)] == [v2, v1]
        check_consistent(sr)


def test_client_gone_before_start_cancels(host):
    sr, remote, v1 = host
    remote.publish("2.0")
    with serving(sr) as (bus, daemon):
        before = snapshot(sr)
        caller = subprocess.Popen(["gdbus", "call", "--address", bus.address, "--dest", BUS_NAME, "--object-path",
                                   os_object(bus), "--method", f"{OS_IFACE}.Upgrade", "{}"],
                                  stdout=subprocess.PIPE, text=True)
        addr = unquote_address(caller.stdout.readline())
        caller.kill()
        caller.wait()
        assert active(bus)[0] == "Upgrade"
        assert wait_for(lambda: active(bus) == ["", "", ""]), "the abandoned transaction is still active"
        assert snapshot(sr) == before
        late = Monitor(addr)
        start(addr)
        assert "Finished (false, 'upgrade cancelled; the sysroot is unchanged')" in late.wait_finished(30)


def test_daemon_killed_mid_transaction_then_the_next_one_serves(host):
    sr, remote, v1 = host
    v2 = remote.publish("2.0")
    with Bus() as bus:
        with Daemon(bus, sr, env={"HYBRIDOS_TEST_ABORT_AT": "swap"}) as daemon:
            addr = unquote_address(call_os(bus, "Upgrade", "{}").stdout)
            mon = Monitor(addr)
            start(addr)
            daemon.proc.wait(60)
            assert daemon.proc.returncode == -signal.SIGKILL
            mon.close()
            assert "Finished" not in "".join(mon.lines)
        check_consistent(sr)
        local = dict(os.environ, HYBRIDOS_NO_DAEMON="1")
        out = subprocess.run([sys.executable, "-m", "hybridos", "--sysroot", str(sr), "status", "--json"],
                             capture_output=True, text=True, env=local, check=True).stdout
        assert v1 in out
        assert wait_for(lambda: not has_owner(bus))
        with Daemon(bus, sr):
            r = subprocess.run([sys.executable, "-m", "hybridos", "--sysroot", str(sr), "upgrade"],
                               capture_output=True, text=True, env=bus.env(), timeout=300)
            assert r.returncode == 0, r.stderr
            assert [d["checksum"] for d in deployments(bus)][0] == v2
        check_consistent(sr)


def test_unprivileged_uid_reads_but_may_not_upgrade(host):
    sr, remote, v1 = host
    remote.publish("2.0")
    with serving(sr) as (bus, daemon):
        osobj = os_object(bus)
        out = busctl(bus, "get-property", BUS_NAME, SYSROOT_OBJ, SYSROOT_IFACE, "Deployments", user="nobody").stdout
        assert v1 in out
        r = busctl(bus, "call", BUS_NAME, osobj, OS_IFACE, "GetDeploymentBootConfig", "sb", "", "false",
                   user="nobody")
        assert "root=/dev/vda1" in r.stdout
        r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "gdbus", "call",
                            "--address", bus.address, "--dest", BUS_NAME, "--object-path", osobj, "--method",
                            f"{OS_IFACE}.Upgrade", "{}"], capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "org.projectatomic.rpmostreed.Error.NotAuthorized" in r.stderr, r.stderr
        # hybridos status as that user goes through the daemon (the sysroot itself is not readable to it)
        cli = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-m", "hybridos",
               "--sysroot", str(sr)]
        env = bus.env(HOME="/")
        st = subprocess.run([*cli, "status", "--json"], capture_output=True, text=True, env=env, timeout=60)
        assert st.returncode == 0 and v1 in st.stdout, st.stderr
        up = subprocess.run([*cli, "upgrade"], capture_output=True, text=True, env=env, timeout=60)
        assert up.returncode == 1 and up.stderr.startswith("error: not authorized"), up.stderr
        assert [d["checksum"] for d in deployments(bus)] == [v1]
        # root may
        r = busctl(bus, "call", BUS_NAME, osobj, OS_IFACE, "Upgrade", "a{sv}", "0")
        assert "unix:path=" in r.stdout


def test_idle_exit_and_properties_follow_the_sysroot(host):
    sr, remote, v1 = host
    v2 = remote.publish("2.0")
    with Bus() as bus:
        with Daemon(bus, sr, idle=0) as daemon:
            # another process deploys: the property follows without Reload()
            local = dict(os.environ, HYBRIDOS_NO_DAEMON="1")
            subprocess.run([sys.executable, "-m", "hybridos", "--sysroot", str(sr), "upgrade"], env=local,
                           check=True, capture_output=True)
            assert wait_for(lambda: [d["checksum"] for d in deployments(bus)] == [v2, v1])
        with Daemon(bus, sr, idle=1) as daemon:
            assert wait_for(lambda: daemon.proc.poll() is not None, 20), "hybridosd did not exit when idle"
            assert daemon.proc.returncode == 0 and not has_owner(bus)
