"""Finding and running greenboot's scripts, with greenboot's rules.

Directories (vendor first, then admin): ``usr/lib/greenboot/<dir>`` and ``etc/greenboot/<dir>`` for
``check/required.d``, ``check/wanted.d``, ``green.d`` and ``red.d``. Only ``*.sh`` files run (as greenboot's
``find DIR -name '*.sh' | sort``), each with ``bash SCRIPT`` (``sh`` where there is no bash, as in a busybox
image); a script whose name is in ``DISABLED_HEALTHCHECKS`` is skipped. ``required`` is strict: the first
failure stops the phase (and the admin directory is not reached when a vendor script failed); the others are
relaxed: failures are reported and the phase goes on. Each script runs in its own session and is killed (its
whole process group) when it outlives the time limit.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from hybridos.health.config import GreenbootConfig

VENDOR = "usr/lib/greenboot"
ADMIN = "etc/greenboot"
KILL_GRACE = 2.0
TAIL_LINES = 5


class Phase(StrEnum):
    REQUIRED = "required"
    WANTED = "wanted"
    GREEN = "green"
    RED = "red"

    @property
    def subdir(self) -> str:
        return {"required": "check/required.d", "wanted": "check/wanted.d", "green": "green.d",
                "red": "red.d"}[self.value]

    @property
    def strict(self) -> bool:
        return self is Phase.REQUIRED


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    TIMED_OUT = "timed-out"
    SKIPPED = "skipped"        #: after an earlier required failure
    DISABLED = "disabled"      #: named in DISABLED_HEALTHCHECKS


@dataclass(frozen=True)
class ScriptResult:
    path: str                  #: as found, relative to the root ("etc/greenboot/check/required.d/01_x.sh")
    phase: Phase
    outcome: Outcome
    returncode: int | None = None
    seconds: float = 0.0
    output: str = ""           #: the last lines the script printed

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.PASSED, Outcome.DISABLED)

    def describe(self) -> str:
        if self.outcome is Outcome.TIMED_OUT:
            return f"{self.name} timed out after {self.seconds:.0f} s"
        if self.outcome is Outcome.FAILED:
            return f"{self.name} exited {self.returncode}"
        return f"{self.name} {self.outcome.value}"

    def to_json(self) -> dict:
        return {"script": self.name, "path": "/" + self.path, "phase": self.phase.value,
                "result": self.outcome.value, "returncode": self.returncode, "seconds": round(self.seconds, 3),
                "output": self.output}


def find_scripts(root: Path, phase: Phase) -> list[str]:
    """The ``*.sh`` scripts of a phase, vendor directory first, each sorted by path as greenboot's find|sort."""
    out: list[str] = []
    top = root.resolve()
    for base in (VENDOR, ADMIN):
        directory = root / base / phase.subdir
        if not directory.is_dir() or not directory.resolve().is_relative_to(top):
            continue
        found = []
        for p in directory.rglob("*.sh"):
            try:
                if p.is_file() and p.resolve().is_relative_to(top):
                    found.append(str(p.relative_to(root)))
            except OSError:
                continue
        out += sorted(found)
    return out


def interpreter() -> str:
    """greenboot runs scripts with bash; a busybox image only has sh."""
    return shutil.which("bash") or shutil.which("sh") or "/bin/sh"


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(KILL_GRACE)
            return
        except subprocess.TimeoutExpired:
            continue


def run_script(root: Path, rel: str, phase: Phase, timeout: float, *,
               echo: Callable[[str], None] | None = None) -> ScriptResult:
    """Run one script with a time limit; its output goes to ``echo`` line by line, prefixed with its name."""
    name = os.path.basename(rel)
    start = time.monotonic()
    env = dict(os.environ, GREENBOOT_PHASE=phase.value)
    try:
        proc = subprocess.Popen([interpreter(), str(root / rel)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd="/", env=env)
    except OSError as exc:
        return ScriptResult(rel, phase, Outcome.FAILED, None, 0.0, f"cannot run: {exc.strerror}")
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout if timeout > 0 else None)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        out, _ = proc.communicate()
    seconds = time.monotonic() - start
    lines = out.decode("utf-8", "replace").splitlines()
    if echo is not None:
        for line in lines:
            echo(f"{name}: {line}")
    tail = "\n".join(lines[-TAIL_LINES:])
    if timed_out:
        return ScriptResult(rel, phase, Outcome.TIMED_OUT, None, seconds, tail)
    outcome = Outcome.PASSED if proc.returncode == 0 else Outcome.FAILED
    return ScriptResult(rel, phase, outcome, proc.returncode, seconds, tail)


def run_phase(root: Path, phase: Phase, config: GreenbootConfig, *,
              echo: Callable[[str], None] | None = None) -> list[ScriptResult]:
    """Every script of ``phase`` under ``root`` with greenboot's rules; the results in order."""
    results: list[ScriptResult] = []
    failed = False
    for rel in find_scripts(root, phase):
        name = os.path.basename(rel)
        if name in config.disabled:
            results.append(ScriptResult(rel, phase, Outcome.DISABLED))
            if echo:
                echo(f"{name}: disabled by DISABLED_HEALTHCHECKS")
            continue
        if failed and phase.strict:
            results.append(ScriptResult(rel, phase, Outcome.SKIPPED))
            if echo:
                echo(f"'{name}' was skipped due to a previous failure")
            continue
        result = run_script(root, rel, phase, config.script_timeout, echo=echo)
        results.append(result)
        if not result.ok:
            failed = True
            if echo:
                echo(f"{phase.value} script {result.describe()}")
    return results
