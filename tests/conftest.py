"""Shared fixtures: external-tool requirements, CLI runner, temporary sysroots."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hybridos.util.run import which

REQUIRE_TOOLS = os.environ.get("HYBRIDOS_REQUIRE_TOOLS") == "1"
ROOT = Path(__file__).resolve().parent.parent


def require_tool(*names: str) -> None:
    """Skip the test when a program is missing, or fail when HYBRIDOS_REQUIRE_TOOLS=1 (as in CI)."""
    for name in names:
        if which(name) is None:
            msg = f"external tool {name!r} is not installed"
            if REQUIRE_TOOLS:
                pytest.fail(msg + " (HYBRIDOS_REQUIRE_TOOLS=1)")
            pytest.skip(msg)


def require_root() -> None:
    if os.geteuid() != 0:
        if REQUIRE_TOOLS:
            pytest.fail("this test needs root (HYBRIDOS_REQUIRE_TOOLS=1)")
        pytest.skip("needs root")


def pytest_configure(config):
    config.addinivalue_line("markers", "tool(*names): needs external programs")


def pytest_runtest_setup(item):
    for mark in item.iter_markers(name="tool"):
        require_tool(*mark.args)


def run_cli(*args: str, env: dict | None = None, check: bool = True, input: str | None = None,
            cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m hybridos ARGS`` as a user would; returns the completed process (text)."""
    full_env = dict(os.environ)
    full_env.pop("HYBRIDOS_SYSROOT", None)
    if env:
        full_env.update(env)
    proc = subprocess.run([sys.executable, "-m", "hybridos", *args], capture_output=True, text=True,
                          env=full_env, input=input, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"hybridos {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def cli():
    return run_cli


def pytest_sessionfinish(session):
    """Drop the immutable attribute the real ``ostree admin deploy`` puts on deployment roots in temporary
    sysroots, so pytest can delete old temporary directories later (fixed depths: no walk of whole trees)."""
    from hybridos.sysroot.cleanup import clear_immutable

    factory = getattr(session.config, "_tmp_path_factory", None)
    try:
        base = factory.getbasetemp() if factory is not None else None
    except (OSError, ValueError):
        return
    if base is None or not base.is_dir():
        return
    for depth in range(1, 5):
        for dep in base.glob("*/" * depth + "ostree/deploy/*/deploy/*"):
            clear_immutable(dep)
