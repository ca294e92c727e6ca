"""Run this machine's real ``ostree`` as if a temporary sysroot's deployment were the booted system.

libostree reads a staged deployment only on a booted system: ``/`` must be the deployment (same device and
inode), the sysroot ``/``, ``/run/ostree-booted`` must exist, and ``/run/ostree/staged-deployment`` is read
from the real ``/run``. So, in private mount and pid namespaces (``unshare``), the deployment is bind-mounted
as a new root with the sysroot at ``/sysroot`` (``/ostree`` leads there), its ``/boot``, this machine's
``/usr`` (the ostree binary and its libraries), the stateroot's ``/var``, the test's stand-in run directory as ``/run`` and its
command line as ``/proc/cmdline``; the command runs there under ``chroot``. Nothing of the machine's own
``/run`` or ``/boot`` is visible or touched.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = r"""
set -e
S=$1 D=$2 N=$3 RUN=$4 CMDLINE=$5
shift 5
# what a booted deployment has at its root (the test trees are minimal)
for d in sysroot proc dev run tmp boot usr var; do [ -d "$D/$d" ] || mkdir -p "$D/$d"; done
for l in bin lib lib64 sbin; do [ -e "$D/$l" ] || [ -L "$D/$l" ] || ln -s "usr/$l" "$D/$l"; done
[ -L "$D/ostree" ] || ln -s sysroot/ostree "$D/ostree"
mount --bind "$D" "$N"
mount --bind "$S" "$N/sysroot"
mount --bind "$S/boot" "$N/boot"
mount --bind "$(dirname "$(dirname "$D")")/var" "$N/var"      # the stateroot's /var, as at boot
mount --bind /usr "$N/usr"
mount -t proc proc "$N/proc"
mount --bind "$CMDLINE" "$N/proc/cmdline"
mount --bind /dev "$N/dev"
mount --bind "$RUN" "$N/run"
mount -t tmpfs tmpfs "$N/tmp"
chroot "$N" /usr/bin/env -i PATH=/usr/bin:/usr/sbin HOME=/ OSTREE_SYSROOT_DEBUG="${OSTREE_SYSROOT_DEBUG:-}" "$@"
"""


def run_booted_ostree(system, *args: str, check: bool = True,
                      debug: str = "mutable-deployments") -> subprocess.CompletedProcess:
    """``ostree ARGS`` on ``system`` (a tests.sysroot.staged.RunningSystem) as the booted system.

    ``debug``: ``OSTREE_SYSROOT_DEBUG`` (by default no immutable deployment directories, which a test could
    not remove afterwards without ``chattr``)."""
    sysroot = Path(system.sysroot)
    dep = sysroot / system.booted.relpath
    mnt = system.run.parent / "newroot"
    mnt.mkdir(exist_ok=True)
    import os

    env = {**os.environ, "OSTREE_SYSROOT_DEBUG": debug}
    proc = subprocess.run(["unshare", "-m", "-p", "-f", "--propagation", "private", "sh", "-ec", SCRIPT, "sh",
                           str(sysroot), str(dep), str(mnt), str(system.run), str(system.cmdline), "ostree", *args],
                          capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"ostree {' '.join(args)} (booted) failed ({proc.returncode}): {proc.stderr}")
    return proc
