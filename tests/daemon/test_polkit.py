"""Authorization through a real polkitd: Debian's polkitd on the test bus, reading our action file and a test
rule from a private mount namespace (the host's /usr/share/polkit-1 and /etc/polkit-1 are never touched)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from hybridos.daemon import service
from tests.conftest import REQUIRE_TOOLS, require_tool
from tests.daemon.bus import (
    BUS_NAME,
    OS_IFACE,
    Bus,
    Daemon,
    busctl,
    deployments,
    os_object,
    run_transaction,
    unquote_address,
)

POLKITD = Path("/usr/lib/polkit-1/polkitd")
POLKIT_BUS_POLICY = Path("/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf")
ACTIONS = Path(service.__file__).parent.parent / "data/org.projectatomic.rpmostree1.policy"

#: nobody may refresh repository metadata (and so download rpm diffs), and nothing else of ours
RULE = """polkit.addRule(function(action, subject) {
  if (action.id.indexOf("org.projectatomic.rpmostree1.") == 0 && subject.user == "nobody") {
    return action.id == "org.projectatomic.rpmostree1.repo-refresh" ? polkit.Result.YES : polkit.Result.NO;
  }
});
"""


@contextmanager
def polkit_on(bus: Bus):
    """polkitd owning org.freedesktop.PolicyKit1 on ``bus`` with only our actions and the rule above."""
    if not POLKITD.exists() or not POLKIT_BUS_POLICY.exists():   # scripts/system-deps.sh installs it
        if REQUIRE_TOOLS:
            pytest.fail("polkitd is not installed (HYBRIDOS_REQUIRE_TOOLS=1)")
        pytest.skip("polkitd is not installed")
    require_tool("unshare", "mount")
    work = Path(tempfile.mkdtemp(prefix="hybridos-polkit-"))
    try:
        (work / "actions").mkdir()
        (work / "rules").mkdir()
        shutil.copy(ACTIONS, work / "actions")
        (work / "rules/10-hybridos-test.rules").write_text(RULE)
        for p in (work, work / "actions", work / "rules"):
            os.chmod(p, 0o755)
        script = (f"mount --bind {work}/actions /usr/share/polkit-1/actions && "
                  f"mount --bind {work}/rules /etc/polkit-1/rules.d && exec {POLKITD} --no-debug")
        with open(work / "polkitd.log", "w") as log:
            proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                                    env=bus.env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while busctl(bus, "call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                         "NameHasOwner", "s", "org.freedesktop.PolicyKit1").stdout.strip() != "b true":
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"polkitd did not start: {(work / 'polkitd.log').read_text()}")
                time.sleep(0.1)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _as_nobody(bus: Bus, osobj: str, method: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "gdbus", "call",
                           "--address", bus.address, "--dest", BUS_NAME, "--object-path", osobj, "--method",
                           f"{OS_IFACE}.{method}", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_polkit_decides_for_other_users(host):
    require_tool("dbus-daemon", "busctl", "gdbus", "setpriv")
    sr, remote, v1 = host
    remote.publish("2.0")
    with Bus(policies=(POLKIT_BUS_POLICY,)) as bus, polkit_on(bus), Daemon(bus, sr):
        osobj = os_object(bus)
        # the rule allows repo-refresh: nobody gets a transaction, which runs
        r = _as_nobody(bus, osobj, "DownloadUpdateRpmDiff")
        assert r.returncode == 0 and "unix:path=" in r.stdout, r.stderr
        assert ".Finished (true, '')" in run_transaction(unquote_address(r.stdout))
        # ... and denies upgrade: refused by name, nothing deployed
        r = _as_nobody(bus, osobj, "Upgrade", "{}")
        assert r.returncode != 0 and "NotAuthorized" in r.stderr, r.stderr
        assert "org.projectatomic.rpmostree1.upgrade" in r.stderr, r.stderr
        r = _as_nobody(bus, osobj, "Rollback", "{}")
        assert r.returncode != 0 and "org.projectatomic.rpmostree1.rollback" in r.stderr, r.stderr
        assert [d["checksum"] for d in deployments(bus)] == [v1]
        # root is not asked
        r = busctl(bus, "call", BUS_NAME, osobj, OS_IFACE, "Upgrade", "a{sv}", "0")
        assert ".Finished (true, '')" in run_transaction(unquote_address(r.stdout))
        assert len(deployments(bus)) == 2
