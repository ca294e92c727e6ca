"""The running system's state outside the sysroot: ``/run`` and ``/proc/cmdline``.

On a booted host libostree keeps the staged deployment in ``/run/ostree/staged-deployment`` (a tmpfs: a power
loss forgets it) and finds the booted deployment from ``/proc/cmdline``. Tests cannot boot the machine they run
on and must never touch its ``/run/ostree``, so a temporary sysroot can stand in for the running system:

- ``HYBRIDOS_TEST_BOOTED_SYSROOT=<path>``: that sysroot counts as the booted ``/`` (only it, and only while
  ``<run>/ostree-booted`` exists, as ``/run/ostree-booted`` does on a real host);
- ``HYBRIDOS_TEST_RUN_DIR=<dir>``: what stands for ``/run`` (the staged deployment, locks, automatic-update
  state);
- ``HYBRIDOS_TEST_CMDLINE=<file>``: what stands for ``/proc/cmdline``.

Mounts (``sysroot.mounts``) never follow these: a stand-in sysroot is not remounted.
"""

from __future__ import annotations

import os
from pathlib import Path

BOOTED_SYSROOT_ENV = "HYBRIDOS_TEST_BOOTED_SYSROOT"
RUN_DIR_ENV = "HYBRIDOS_TEST_RUN_DIR"
CMDLINE_ENV = "HYBRIDOS_TEST_CMDLINE"

#: libostree's run-state files, relative to /run
STAGED = "ostree/staged-deployment"
STAGED_LOCKED = "ostree/staged-deployment-locked"
#: ostree-boot-complete reads this (relative to the boot directory) on the next boot
FINALIZE_FAILURE = "ostree/finalize-failure.stamp"


def run_dir() -> Path:
    return Path(os.environ.get(RUN_DIR_ENV) or "/run")


def cmdline_path() -> Path:
    return Path(os.environ.get(CMDLINE_ENV) or "/proc/cmdline")


def staged_path() -> Path:
    return run_dir() / STAGED


def staged_locked_path() -> Path:
    return run_dir() / STAGED_LOCKED


def stand_in_booted(sysroot: str | os.PathLike) -> bool:
    """Whether ``sysroot`` is the test stand-in for the booted ``/`` (see the module docstring)."""
    declared = os.environ.get(BOOTED_SYSROOT_ENV)
    if not declared:
        return False
    try:
        return os.path.samefile(sysroot, declared) and (run_dir() / "ostree-booted").exists()
    except OSError:
        return False


def read_cmdline() -> str | None:
    try:
        return cmdline_path().read_text()
    except OSError:
        return None
