"""`make demo`'s script, end to end in a temporary directory, and the state it leaves behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_tool, run_cli


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    require_tool("busybox", "createrepo_c")
    out = tmp_path_factory.mktemp("demo")
    env = dict(os.environ, DEMO_DIR=str(out / "demo"), PYTHON=sys.executable,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("HYBRIDOS_SYSROOT", None)
    for attempt in ("first", "second"):  # the demo can be run twice in a row
        proc = subprocess.run(["bash", str(ROOT / "examples/demo.sh")], capture_output=True, text=True,
                              env=env, timeout=600)
        assert proc.returncode == 0, f"{attempt} demo run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return out / "demo", proc.stdout


def _status(sysroot: Path) -> list[dict]:
    return json.loads(run_cli("--sysroot", str(sysroot), "status", "--json").stdout)["deployments"]


def test_demo_prints_each_command_it_runs(demo):
    _, stdout = demo
    for command in ("$ hybridos compose tree", "$ hybridos admin deploy", "$ hybridos --sysroot",
                    "upgrade", "install cowsay", "db diff", "rollback"):
        assert command in stdout


def test_demo_final_state(demo):
    root, _ = demo
    sysroot = root / "sysroot"
    deployments = _status(sysroot)
    # After upgrade -> install -> rollback: the plain v2 image is the default, v2 + cowsay the rollback.
    assert [d["version"] for d in deployments] == ["2", "2"]
    default, rollback = deployments
    assert default["packages"] == [] and rollback["packages"] == ["cowsay"]
    assert rollback["base-checksum"] == default["checksum"]
    deploy_dir = sysroot / "ostree/deploy/hybriddemo/deploy"
    default_tree = deploy_dir / f"{default['checksum']}.{default['serial']}"
    layered_tree = deploy_dir / f"{rollback['checksum']}.{rollback['serial']}"
    assert not (default_tree / "usr/bin/cowsay").exists()
    assert (layered_tree / "usr/bin/cowsay").exists()
    assert (layered_tree / "usr/share/cowsay-post-ran").exists()
    for tree in (default_tree, layered_tree):
        assert "VERSION_ID=2" in (tree / "usr/lib/os-release").read_text()
        assert (tree / "etc/hello.conf").read_text() == "greeting=bonjour\n"     # edited
        assert (tree / "etc/yum.repos.d/hybriddemo.repo").exists()              # added
        assert not (tree / "etc/hostname").exists()                              # deleted
    assert (sysroot / "ostree/deploy/hybriddemo/var/userdata").read_text() == "precious user data\n"
    # the boot entries: both v2, the default first, and GRUB's menu in the same order
    entries = sorted((sysroot / "boot/loader/entries").glob("*.conf"))
    assert len(entries) == 2
    titles = {e.name: e.read_text().splitlines()[0] for e in entries}
    assert titles == {"ostree-2-hybriddemo.conf": "title Hybrid Demo 2 (ostree:0)",
                      "ostree-1-hybriddemo.conf": "title Hybrid Demo 2 (ostree:1)"}
    default_entry = (sysroot / "boot/loader/entries/ostree-2-hybriddemo.conf").read_text()
    assert f"/{default['checksum']}" not in default_entry  # entries name the bootcsum, resolved via bootlinks
    link = sysroot / default_entry.split("ostree=/", 1)[1].split()[0]
    assert link.resolve() == default_tree.resolve()
    grub = (sysroot / "boot/grub2/grub.cfg").read_text()
    assert grub.index("(ostree:0)") < grub.index("(ostree:1)")


def test_demo_ostree_agrees(demo):
    require_tool("ostree")
    root, _ = demo
    proc = subprocess.run(["ostree", "fsck", "--repo", str(root / "repo")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(["ostree", "admin", "status", "--sysroot", str(root / "sysroot")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("Version: 2") == 2


def _readme_commands() -> list[str]:
    """The ``$ hybridos ...`` lines of the README's console blocks."""
    commands, in_console = [], False
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            in_console = line.strip() == "```console"
            continue
        if in_console and line.startswith("$ hybridos"):
            commands.append(line[2:])
    return commands


def test_readme_commands_run_as_shown(demo):
    """Every command of the README tour runs, as written, against the state the demo leaves."""
    import shlex

    root, _ = demo
    commands = _readme_commands()
    assert len(commands) >= 6
    for command in commands:
        argv = shlex.split(command)[1:]
        proc = run_cli(*argv, check=False, cwd=root.parent)
        assert proc.returncode == 0, f"{command}: exit {proc.returncode}\n{proc.stderr}"
        if "fsck" not in command:
            assert proc.stdout.strip(), f"{command} printed nothing"
