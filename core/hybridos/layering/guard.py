"""Cleaning up after a killed layering run: the layer hook shows the hardlink checkout's /usr to scriptlets
through ``rofiles-fuse`` (so no scriptlet can change the repository's objects in place); a SIGKILL in the middle
leaves that FUSE mount behind. The next run unmounts every rofiles-fuse view of a stale work tree, then deletes
the tree.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hybridos.util.run import which


def _rofiles_mounts_of(workdir: Path) -> list[str]:
    """Mountpoints of rofiles-fuse processes whose source lies under ``workdir``."""
    prefix = str(workdir).rstrip("/") + "/"
    out = []
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return out
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) >= 3 and os.path.basename(argv[0]) == b"rofiles-fuse":
            args = [a.decode(errors="replace") for a in argv[1:] if a and not a.startswith(b"-")]
            if len(args) >= 2 and args[0].startswith(prefix):
                out.append(args[1])
    return out


def unmount_stale(workdir: Path) -> None:
    """Unmount rofiles-fuse views of a stale work tree (innermost first); their daemons then exit."""
    umount = which("umount")
    if umount is None:
        return
    for mnt in sorted(_rofiles_mounts_of(Path(workdir)), key=len, reverse=True):
        if subprocess.run([umount, mnt], capture_output=True).returncode != 0:
            subprocess.run([umount, "-l", mnt], capture_output=True)
        try:
            os.rmdir(mnt)
        except OSError:
            pass
