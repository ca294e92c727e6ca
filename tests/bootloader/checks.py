"""Independent readers used by the bootloader tests: BLS entries as the core wrote them, real-tool checks."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hybridos.util.run import run
from tests.conftest import REQUIRE_TOOLS, require_root, require_tool


def current_bls(sysroot: Path) -> list[dict[str, str]]:
    """The BLS entries ``boot/loader`` points to, sorted like ostree readers do (version descending)."""
    entries = []
    for f in (sysroot / "boot/loader/entries").glob("ostree-*.conf"):
        fields: dict[str, str] = {"id": f.name.removesuffix(".conf")}
        for line in f.read_text().splitlines():
            key, _, value = line.partition(" ")
            fields[key] = value
        entries.append(fields)
    return sorted(entries, key=lambda e: int(e["version"]), reverse=True)


def grub_script_check(path: Path) -> None:
    proc = run(["grub-script-check", str(path)], check=False)
    assert proc.returncode == 0, proc.stdout.decode()


@contextlib.contextmanager
def bind_mounted(path: Path) -> Iterator[None]:
    """``mount --bind path path`` so that bootctl sees a mount point there; always unmounted again."""
    require_root()
    require_tool("mount", "umount")
    proc = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        msg = f"cannot bind-mount {path} for bootctl: {proc.stderr.strip()}"
        if REQUIRE_TOOLS:
            pytest.fail(msg)
        pytest.skip(msg)
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True, capture_output=True)


@dataclass
class BootctlView:
    entries: list[dict]   #: ``--json=short`` objects, in bootctl's menu order
    default_id: str | None
    stderr: str


def bootctl_list(sysroot: Path, esp: Path) -> BootctlView:
    """What ``bootctl --root=SYSROOT list`` (systemd's own BLS parser) makes of an ESP directory."""
    require_tool("bootctl")
    env = dict(os.environ, SYSTEMD_RELAX_ESP_CHECKS="1", SYSTEMD_RELAX_XBOOTLDR_CHECKS="1", SYSTEMD_PAGER="")
    with bind_mounted(esp):
        js = subprocess.run(["bootctl", f"--root={sysroot}", "list", "--json=short", "--no-pager"],
                            capture_output=True, text=True, env=env, check=True)
        text = subprocess.run(["bootctl", f"--root={sysroot}", "list", "--no-pager"],
                              capture_output=True, text=True, env=env, check=True)
    entries = [json.loads(line) for line in js.stdout.splitlines() if line.strip()]
    if len(entries) == 1 and isinstance(entries[0], list):
        entries = entries[0]
    default_id, pending_default = None, False
    for line in text.stdout.splitlines():
        key, _, value = line.strip().partition(": ")
        if key == "title":
            pending_default = "(default)" in value
        elif key == "id" and pending_default:
            default_id = value
    return BootctlView(entries, default_id, js.stderr + text.stderr)
