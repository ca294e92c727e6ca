"""Cleaning up after a killed layering run: the layer hook shows the hardlink checkout's /usr to scriptlets
through ``rofiles-fuse`` (so no scriptlet can change the repository's objects in place); a SIGKILL in the middle
leaves that FUSE mount behind. The next run unmounts every rofiles-fuse view of a stale work tree, then deletes
the tree.

Only what root itself mounted is touched: the rofiles-fuse process must run as uid 0 and its mountpoint must be
a ``fuse.rofiles-fuse`` mount made by uid 0 (``user_id=0``) in this mount namespace. Anyone can start a process
whose command line names a path; that never makes root unmount it.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from hybridos.util.run import which


def _unescape(field: str) -> str:
    """A mountinfo path: spaces, tabs, newlines and backslashes are octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _root_rofiles_mounts() -> set[str]:
    """Mountpoints of rofiles-fuse filesystems mounted by uid 0 (from /proc/self/mountinfo)."""
    out = set()
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        fields = line.split(" ")
        try:
            sep = fields.index("-")
        except ValueError:
            continue
        if len(fields) < sep + 4 or fields[sep + 1] != "fuse.rofiles-fuse":
            continue
        if "user_id=0" in fields[sep + 3].split(","):
            out.add(_unescape(fields[4]))
    return out


def _rofiles_mounts_of(workdir: Path) -> list[str]:
    """Mountpoints of root's rofiles-fuse processes whose source lies under ``workdir`` and which are root's own
    rofiles-fuse mounts."""
    prefix = str(workdir).rstrip("/") + "/"
    out = []
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return out
    mounted = _root_rofiles_mounts()
    for pid in pids:
        try:
            if os.stat(f"/proc/{pid}").st_uid != 0:
                continue   # another user's process: whatever it names is not ours to unmount
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) >= 3 and os.path.basename(argv[0]) == b"rofiles-fuse":
            args = [a.decode(errors="replace") for a in argv[1:] if a and not a.startswith(b"-")]
            if len(args) >= 2 and args[0].startswith(prefix) and os.path.abspath(args[1]) in mounted:
                out.append(os.path.abspath(args[1]))
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
