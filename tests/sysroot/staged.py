"""A temporary sysroot standing in for the running system (``hybridos.sysroot.runstate``): its own /run and
/proc/cmdline, "reboots" that forget /run (a tmpfs) and boot whatever the boot entries make the default."""

from __future__ import annotations

import shutil
from pathlib import Path

from hybridos.sysroot.sysroot import Sysroot


class RunningSystem:
    """``env`` makes hybridos treat ``sysroot`` as the booted ``/``, booted into ``checksum`` (default: the default
    deployment)."""

    def __init__(self, sysroot: Path, work: Path):
        self.sysroot = sysroot
        self.run = work / "run"
        self.cmdline = work / "cmdline"
        self.boot()

    def boot(self, index: int = 0) -> None:
        """A (re)boot into the deployment at ``index`` of the boot entries: /run starts empty."""
        if self.run.exists():
            shutil.rmtree(self.run)
        self.run.mkdir(parents=True)
        (self.run / "ostree-booted").touch()
        s = Sysroot.load(self.sysroot)
        dep = s.deployments[index]
        self.cmdline.write_text("quiet " + s.entries[dep.name].options + "\n")
        self.booted = dep

    @property
    def env(self) -> dict[str, str]:
        return {"HYBRIDOS_TEST_BOOTED_SYSROOT": str(self.sysroot), "HYBRIDOS_TEST_RUN_DIR": str(self.run),
                "HYBRIDOS_TEST_CMDLINE": str(self.cmdline), "HYBRIDOS_NO_DAEMON": "1"}

    @property
    def staged_file(self) -> Path:
        return self.run / "ostree/staged-deployment"

    def load(self) -> Sysroot:
        """The sysroot as the running system sees it (the staged deployment first)."""
        import os
        from unittest import mock

        with mock.patch.dict(os.environ, self.env):
            return Sysroot.load(self.sysroot)
