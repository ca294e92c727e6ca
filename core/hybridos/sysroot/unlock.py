"""``ostree admin unlock`` (what ``rpm-ostree usroverlay`` runs): a writable overlayfs on the booted /usr.

As libostree's ``ostree_sysroot_deployment_unlock``: the overlay's upper and work directories live in the
deployment's backing directory (``ostree/deploy/OS/backing/CSUM.SERIAL/usr-transient``, on the same filesystem
as the deployment, emptied first), the lower directory is the deployment's /usr, and the state is recorded as a
run-state flag (``/run/ostree/deployment-state/CSUM.SERIAL/unlocked-development`` or ``unlocked-transient``),
so it ends with the boot. ``transient`` mounts the overlay read-only (it can be remounted writable).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hybridos.errors import HybridosError, SysrootError, UsageError

RUNSTATE_DIR = Path("/run/ostree/deployment-state")
USR_TRANSIENT_DIR = "usr-transient"
#: libostree's names of the states (``ostree_deployment_unlocked_state_to_string``)
MODES = ("development", "transient")


def backing_relpath(dep) -> str:
    return f"ostree/deploy/{dep.stateroot}/backing/{dep.name}"


def unlocked_state(dep, run_dir: Path | None = None) -> str:
    """``none``, ``development``, ``transient`` or ``hotfix`` (the origin's ``[origin] unlocked=``)."""
    run_dir = RUNSTATE_DIR if run_dir is None else run_dir
    if dep.origin is not None:
        for group, key, value in dep.origin.extra:
            if (group, key) == ("origin", "unlocked") and value.strip() == "hotfix":
                return "hotfix"
    for mode in MODES:
        if (run_dir / dep.name / f"unlocked-{mode}").exists():
            return mode
    return "none"


def unlock(sysroot_path: Path, dep, mode: str, *, usr: Path = Path("/usr"), run_dir: Path | None = None,
           mount=None) -> None:
    """Mount a writable (``transient``: read-only) overlayfs on ``usr`` over ``dep``'s /usr, and record it.

    ``mount(argv)`` runs the mount command (``hybridos.util.run.run`` by default)."""
    if mode not in MODES:
        raise UsageError(f"unknown unlock mode {mode!r}")
    run_dir = RUNSTATE_DIR if run_dir is None else run_dir
    current = unlocked_state(dep, run_dir)
    if current != "none":
        raise SysrootError(f"Deployment is already in unlocked state: {current}")
    deploy_dir = Path(sysroot_path) / dep.relpath
    usr_mode = os.stat(deploy_dir / "usr").st_mode & 0o7777
    ovl = Path(sysroot_path) / backing_relpath(dep) / USR_TRANSIENT_DIR
    shutil.rmtree(ovl, ignore_errors=True)          # a leftover of an earlier boot is never reused
    for d in (ovl, ovl / "upper", ovl / "work"):
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, usr_mode)
    options = f"lowerdir={deploy_dir / 'usr'},upperdir={ovl / 'upper'},workdir={ovl / 'work'}"
    for path in (deploy_dir / "usr", ovl):
        if "," in str(path) or ":" in str(path):
            raise SysrootError(f"cannot pass {path} to overlayfs (it contains ',' or ':')")
    argv = ["mount", "-t", "overlay", "overlay", "-o", options + (",ro" if mode == "transient" else ""), str(usr)]
    if mount is None:
        from hybridos.util.run import run

        mount = run
    try:
        mount(argv)
    except HybridosError as exc:
        shutil.rmtree(ovl, ignore_errors=True)
        raise SysrootError(f"Failed overlayfs mount: {exc.message}") from None
    flag = run_dir / dep.name / f"unlocked-{mode}"
    flag.parent.mkdir(parents=True, exist_ok=True)
    flag.write_bytes(b"")


#: what ostree admin unlock prints
MESSAGES = {
    "development": ("Development mode enabled.  A writable overlayfs is now mounted on /usr.",
                    "All changes there will be discarded on reboot."),
    "transient": ("A writable overlayfs is prepared for /usr, but is mounted read-only by default.",
                  "All changes there will be discarded on reboot."),
}
