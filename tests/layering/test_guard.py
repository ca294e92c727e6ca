"""Stale rofiles-fuse cleanup unmounts only root's own rofiles-fuse mounts (docs/security.md, "Local privilege")."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time

from hybridos.layering.guard import unmount_stale
from tests.conftest import require_root, require_tool


def _mounted(path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ")[4] == str(path) for line in f)


@contextlib.contextmanager
def _impostor(argv0: str, args: list[str], uid: int):
    """A process whose command line reads ``argv0 ARGS...`` (a Python reading its program from stdin)."""
    proc = subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "bash", "-c",
                             f'exec -a {argv0} python3 - "$@"', "x", *args], stdin=subprocess.PIPE)
    proc.stdin.write(b"import time\ntime.sleep(60)\n")
    proc.stdin.close()
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), open(f"/proc/{proc.pid}/cmdline", "rb") as f:
                if f.read().startswith(argv0.encode()):
                    break
            time.sleep(0.02)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_nobody_cannot_make_root_unmount_anything(tmp_path):
    require_root()
    require_tool("setpriv", "mount", "umount", "python3")
    workdir = tmp_path / "stale-work"
    (workdir / "usr").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.mkdir()
    subprocess.run(["mount", "--bind", str(victim), str(victim)], check=True)
    try:
        for uid in (65534, 0):   # a user's process, and even root's own process naming a mount that is not FUSE
            with _impostor("rofiles-fuse", [str(workdir / "usr"), str(victim)], uid):
                unmount_stale(workdir)
            assert _mounted(victim)
    finally:
        subprocess.run(["umount", "-l", str(victim)])


def test_roots_own_stale_rofiles_mount_is_unmounted(tmp_path):
    require_root()
    require_tool("rofiles-fuse", "umount")
    if not os.path.exists("/dev/fuse"):
        import pytest

        pytest.skip("no /dev/fuse")
    workdir = tmp_path / "stale-work"
    (workdir / "usr").mkdir(parents=True)
    mnt = tmp_path / "hybridos-usr-x"
    mnt.mkdir()
    subprocess.run(["rofiles-fuse", str(workdir / "usr"), str(mnt)], check=True)
    try:
        assert _mounted(mnt)
        unmount_stale(workdir)
        assert not _mounted(mnt) and not mnt.exists()
    finally:
        if _mounted(mnt):
            subprocess.run(["umount", "-l", str(mnt)])
