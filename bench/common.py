"""Helpers shared by the benchmarks: timing commands and functions, peak memory, the result format.

A bench module's ``main(argv) -> dict`` returns ``{"name": ..., "input": "...", "cases": [case, ...]}`` where
each case is ``{"name", "ours", "reference", "ratio", "goal", "ours_peak_rss_mb"?, "reference_peak_rss_mb"?}``
(times in seconds; ratio = ours / reference; goal = the issue's maximum ratio or None).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

VENV_BIN = os.path.dirname(sys.executable)


def timed_command(argv: Sequence[str], *, env: dict | None = None, cwd: str | None = None) -> tuple[float, float]:
    """Run a command; return (wall seconds, peak RSS of the child in MiB). Raises on failure."""
    with tempfile.TemporaryFile() as errf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=errf)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            errf.seek(0)
            tail = errf.read().decode(errors="replace")[-500:]
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {tail}")
    return wall, usage.ru_maxrss / 1024


def _children_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def compile_bytecode() -> None:
    """Byte-compile hybridos and the venv's packages, as an installation does: start-up times measured with
    PYTHONDONTWRITEBYTECODE set (or a fresh checkout) would otherwise include compiling the sources."""
    import compileall
    import sysconfig

    import hybridos as pkg

    for path in {os.path.dirname(pkg.__file__), sysconfig.get_paths()["purelib"],
                 *(os.path.join(os.path.dirname(__file__), "..", "plugins", p) for p in
                   os.listdir(os.path.join(os.path.dirname(__file__), "..", "plugins")))}:
        compileall.compile_dir(path, quiet=2, workers=1)


def hybridos(*args: str) -> list[str]:
    """argv for running the installed hybridos CLI."""
    return [sys.executable, "-m", "hybridos", *args]


def case(name: str, ours: float, reference: float, goal: float | None, **extra) -> dict:
    ratio = ours / reference if reference else None
    out = {"name": name, "ours": round(ours, 4), "reference": round(reference, 4),
           "ratio": None if ratio is None else round(ratio, 3), "goal": goal}
    out.update(extra)
    flag = "" if goal is None or ratio is None else ("  OK" if ratio <= goal else "  OVER GOAL")
    print(f"  {name:<40} ours {ours:8.3f}s  reference {reference:8.3f}s  ratio {ratio or 0:6.2f}x{flag}",
          flush=True)
    return out


def drop_caches_if_root() -> None:
    """Best effort: start each timed run from the same (cold-ish) page cache state."""
    if os.geteuid() == 0:
        try:
            os.sync()
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
        except OSError:
            pass
