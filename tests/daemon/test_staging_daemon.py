"""Staging through hybridosd on the running system (a stand-in sysroot, tests/sysroot/staged.py): the CLI's
--lock-finalization and finalize-deployment, the D-Bus FinalizeDeployment and AutomaticUpdateTrigger."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import require_tool
from tests.daemon.bus import call_os, deployments, os_txn, serving
from tests.sysroot.staged import RunningSystem


def _hyb(sr, *args, env):
    return subprocess.run([sys.executable, "-m", "hybridos", "--sysroot", str(sr), *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_lock_finalization_and_finalize_deployment_through_the_daemon(host, workdir):
    require_tool("dbus-daemon", "busctl", "gdbus")
    sr, remote, v1 = host
    system = RunningSystem(sr, workdir / "machine")
    marker = workdir / "rebooted"
    (sr / "etc/hybridos").mkdir(parents=True)
    (sr / "etc/hybridos/hybridosd.conf").write_text(f"[Daemon]\nRebootCommand=touch {marker}\n")
    v2 = remote.publish("2.0")
    machine = {k: v for k, v in system.env.items() if k != "HYBRIDOS_NO_DAEMON"}
    with serving(sr, env=machine) as (bus, daemon):
        env = bus.env(**machine)
        r = _hyb(sr, "upgrade", "--lock-finalization", env=env)
        assert r.returncode == 0, r.stderr
        deps = deployments(bus)                     # the daemon's view: the staged deployment first, locked
        assert [(d["checksum"], d["staged"], d["finalization-locked"]) for d in deps] == [
            (v2, True, True), (v1, False, False)]
        assert "hybridosd" in daemon.output() or daemon.proc.poll() is None

        # the D-Bus method wants a checksum unless told otherwise, then the right one
        r = call_os(bus, "FinalizeDeployment", "{}", check=False)
        assert r.returncode != 0 and "Missing expected checksum" in r.stderr
        signals = os_txn(bus, "FinalizeDeployment", f"{{'checksum': <'{v1}'>}}")
        assert "Expected staged base checksum" in signals and not marker.exists()
        r = _hyb(sr, "finalize-deployment", v2, env=env)
        assert r.returncode == 0, r.stderr
        assert f"rebooting into {v2}" in r.stdout and marker.exists()
        assert [(d["staged"], d["finalization-locked"]) for d in deployments(bus)][0] == (True, False)
        signals = os_txn(bus, "FinalizeDeployment", f"{{'checksum': <'{v2}'>}}")
        assert "Staged deployment already unlocked" in signals

        # the shutdown finalizes it (in-process: the daemon may be gone by then)
        _hyb(sr, "finalize-staged", env=system.env).check_returncode()

        # the automatic update trigger stages through the daemon
        system.boot()
        v3 = remote.publish("3.0")
        signals = os_txn(bus, "AutomaticUpdateTrigger", "{'mode': <'stage'>}")
        assert ".Finished (true, '')" in signals, signals
        assert [(d["checksum"], d["staged"]) for d in deployments(bus)][0] == (v3, True)
