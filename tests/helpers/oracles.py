"""Reference implementations run by the system python: GLib's GVariant (python3-gi) and rpm's header reader
(python3-rpm). The venv's python is not Debian's, so each runs as a long-lived /usr/bin/python3 worker that answers
one JSON line per request (tests/helpers/glib_worker.py, tests/helpers/rpm_worker.py)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hybridos import gvariant
from hybridos.gvariant import GDict, Just, Variant

SYSTEM_PYTHON = "/usr/bin/python3"
HERE = Path(__file__).resolve().parent


class Oracle:
    """A worker process; ``ask(request) -> answer``. A crash of the worker is reported, not hidden."""

    def __init__(self, script: str):
        self.script = script
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen([SYSTEM_PYTHON, str(HERE / self.script)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)

    def ask(self, request: dict, *, crash_ok: bool = False) -> dict | None:
        """The worker's answer; with ``crash_ok`` None when the reference itself crashed on the input (rpm's
        bindings segfault on some legacy headers), which then says nothing about ours."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.proc = None
            if crash_ok:
                return None
            raise RuntimeError(f"{self.script} died on {json.dumps(request)[:300]}: {err[-2000:]}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(timeout=10)
            self.proc = None


def require_system_module(module: str) -> None:
    """Skip (or fail under HYBRIDOS_REQUIRE_TOOLS=1) when the system python lacks ``module``."""
    ok = os.path.exists(SYSTEM_PYTHON) and subprocess.run(
        [SYSTEM_PYTHON, "-c", f"import {module}"], capture_output=True).returncode == 0
    if not ok:
        msg = f"{SYSTEM_PYTHON} cannot import {module} (scripts/system-deps.sh installs it)"
        if os.environ.get("HYBRIDOS_REQUIRE_TOOLS") == "1":
            pytest.fail(msg + " (HYBRIDOS_REQUIRE_TOOLS=1)")
        pytest.skip(msg)


# ---------------------------------------------------------------------------------------------------- GVariant trees

def gv_to_tree(t: gvariant.GType, v: Any) -> Any:
    """Our parsed value as the worker's TREE form (see glib_worker.py)."""
    k = t.kind
    if k == "d":
        return struct.pack("<d", v).hex()
    if k in "ybnqiuxth" or k in "sog":
        return v
    if k == "v":
        return {"sig": v.signature, "value": gv_to_tree(gvariant.gtype(v.signature), v.value)}
    if k == "m":
        if v is None:
            return None
        return {"just": gv_to_tree(t.children[0], v.value if isinstance(v, Just) else v)}
    if k == "a":
        child = t.children[0]
        if child.signature == "y":
            return bytes(v).hex()
        items = v.entries if isinstance(v, GDict) else list(v.items()) if isinstance(v, dict) else v
        return [gv_to_tree(child, list(e) if child.kind == "{" else e) for e in items]
    return [gv_to_tree(c, e) for c, e in zip(t.children, v, strict=True)]


def gv_from_tree(t: gvariant.GType, x: Any) -> Any:
    """The worker's TREE form as a value for our serializer."""
    k = t.kind
    if k == "d":
        return struct.unpack("<d", bytes.fromhex(x))[0]
    if k in "ybnqiuxth" or k in "sog":
        return x
    if k == "v":
        return Variant(x["sig"], gv_from_tree(gvariant.gtype(x["sig"]), x["value"]))
    if k == "m":
        if x is None:
            return None
        inner = gv_from_tree(t.children[0], x["just"])
        return Just(inner) if t.children[0].kind == "m" else inner
    if k == "a":
        child = t.children[0]
        if child.signature == "y":
            return bytes.fromhex(x)
        items = [gv_from_tree(child, e) for e in x]
        if child.kind == "{":
            d = {}
            for key, val in items:
                d.setdefault(key, val)
            if len(d) != len(items):
                g = GDict(d)
                g.entries = items
                return g
            return d
        return items
    return tuple(gv_from_tree(c, e) for c, e in zip(t.children, x, strict=True))
