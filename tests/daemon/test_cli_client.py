"""The CLI as hybridosd's client: same output and exit codes as in-process."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import require_tool
from tests.daemon.bus import serving


def hyb_env(sysroot, *args, env, check=False):
    return subprocess.run([sys.executable, "-m", "hybridos", "--sysroot", str(sysroot), *args],
                          capture_output=True, text=True, env=env, timeout=300, check=check)


def test_status_through_the_daemon_equals_in_process(host):
    require_tool("dbus-daemon", "busctl")
    sr, remote, v1 = host
    remote.publish("2.0")
    import os

    local = dict(os.environ, HYBRIDOS_NO_DAEMON="1")
    hyb_env(sr, "upgrade", env=local, check=True)
    with serving(sr) as (bus, daemon):
        for args in (("status",), ("status", "--json"), ("status", "-v"), ("status", "-b", "--json")):
            a = hyb_env(sr, *args, env=local)
            b = hyb_env(sr, *args, env=bus.env())
            assert a.returncode == b.returncode == 0
            assert a.stdout == b.stdout and a.stderr == b.stderr, (args, a.stdout, b.stdout)
        r = hyb_env(sr, "upgrade", "--unchanged-exit-77", env=bus.env())
        print(r.stdout, r.stderr, daemon.output())
        assert r.returncode == 77
