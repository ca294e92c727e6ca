"""The one subprocess wrapper: argv lists, explicit environment, errors that show the command."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from hybridos.errors import HybridosError


class CommandError(HybridosError):
    """An external program failed."""

    def __init__(self, argv: Sequence[str], returncode: int, output: str = ""):
        tail = output.strip().splitlines()[-1] if output.strip() else ""
        msg = f"{shlex.join(argv)} failed with exit code {returncode}"
        if tail:
            msg += f": {tail}"
        super().__init__(msg)
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output


def which(program: str) -> str | None:
    """Find a program on PATH, also looking in the sbin directories root's PATH may lack."""
    found = shutil.which(program)
    if found:
        return found
    for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        candidate = os.path.join(d, program)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    input: bytes | None = None,
    check: bool = True,
    capture: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``argv``; with ``check``, a non-zero exit raises CommandError carrying the output."""
    proc = subprocess.run(
        list(argv),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        input=input,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
    )
    if check and proc.returncode != 0:
        out = proc.stdout.decode(errors="replace") if proc.stdout else ""
        raise CommandError(argv, proc.returncode, out)
    return proc
