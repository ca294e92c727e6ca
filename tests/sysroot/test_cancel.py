"""``cancel`` signals a hybridos transaction holding the sysroot lock, and nothing else."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.sysroot.conftest import hyb

HOLD = """
import fcntl, os, struct, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.fcntl(fd, fcntl.F_SETLK, struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 0, 0))
print("locked", flush=True)
time.sleep(60)
"""


def test_cancel_leaves_a_foreign_lock_holder_alone(host):
    sr, _remote, _v1 = host
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(sr / "ostree/lock")], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"locked"
        r = hyb(sr, "cancel", check=False)
        assert r.returncode == 1 and "is not a hybridos transaction; not signalling it" in r.stderr
        time.sleep(0.2)
        assert proc.poll() is None                          # still running: it was not signalled
    finally:
        proc.kill()
        proc.wait()
    assert hyb(sr, "cancel").stdout == "No active transaction.\n"
