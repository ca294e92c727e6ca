"""A third-party bootloader (docs/examples/bootloader_plugin), installed as its own distribution into a
directory, is found through its entry point, selected on a sysroot that has its files, and gets the entries."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.bootloader import e2e
from tests.bootloader.checks import current_bls
from tests.conftest import ROOT, require_tool, run_cli

EXAMPLE = ROOT / "docs/examples/bootloader_plugin"

CHILD = textwrap.dedent("""\
    import json, sys
    from pathlib import Path
    from hybridos.arch import Architecture
    from hybridos.plugins import get_registry
    from tests.bootloader import e2e

    root, work = Path(sys.argv[1]), Path(sys.argv[2])
    e2e.make_sysroot(root)
    choice = get_registry().select_bootloader(root)
    calls = []
    original = type(choice.bootloader).write_config
    def spy(self, context):  # records what the core hands the plugin, then runs the plugin unchanged
        calls.append([e.id for e in context.entries])
        return original(self, context)
    type(choice.bootloader).write_config = spy
    for n in (1, 2):
        e2e.deploy(root, e2e.commit(root, Architecture.X86_64, n, work))
    print(json.dumps({"plugin": choice.plugin, "name": choice.bootloader.name,
                      "module": type(choice.bootloader).__module__, "calls": calls}))
""")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The example distribution installed with pip into a private directory (as a user would, offline)."""
    tmp = tmp_path_factory.mktemp("third-party")
    src = tmp / "src"
    shutil.copytree(EXAMPLE, src)  # build in a copy: no build/ or egg-info in the repository
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(src)], check=True, capture_output=True)
    return target


def _env(site):
    return {"PYTHONPATH": os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _syslinux_sysroot(tmp_path):
    root = tmp_path / "sysroot"
    (root / "boot/syslinux").mkdir(parents=True, exist_ok=True)
    (root / "boot/syslinux/syslinux.cfg").write_text("DEFAULT installer\n")
    (root / "boot/grub2").mkdir(parents=True)
    (root / "boot/grub2/grub.cfg").write_text("# also here: the higher detection score decides\n")
    return root


@pytest.mark.slow
def test_example_plugin_is_discovered_and_selected(site, tmp_path):
    root = _syslinux_sysroot(tmp_path)
    data = json.loads(run_cli("plugins", "--json", "--sysroot", str(root), env=_env(site)).stdout)
    plugins = {p["name"]: p for p in data["plugins"]}
    assert plugins["acme_syslinux"]["distribution"] == "acme-bootloader-syslinux"
    assert plugins["acme_syslinux"]["loaded"] and plugins["acme_syslinux"]["hooks"] == ["hybridos_bootloaders"]
    boot = data["selection"]["bootloader"]
    assert boot["selected"] == "syslinux" and boot["plugin"] == "acme_syslinux"
    assert boot["detections"]["grub2"] is not None  # GRUB saw its file too and lost on score
    # without the directory on the path the plugin does not exist
    data = json.loads(run_cli("plugins", "--json", "--sysroot", str(root)).stdout)
    assert data["selection"]["bootloader"]["selected"] == "grub2"


@pytest.mark.slow
def test_example_plugin_receives_the_entries_and_writes_its_config(site, tmp_path):
    require_tool("ostree")
    root = _syslinux_sysroot(tmp_path)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(root), str(tmp_path)], capture_output=True, text=True,
                          env={**os.environ, **_env(site)}, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["plugin"] == "acme_syslinux" and result["module"] == "acme_bootloader_syslinux.backend"
    assert result["calls"] == [["ostree-1-fedora"], ["ostree-2-fedora", "ostree-1-fedora"]]
    cfg = root / "boot/syslinux/syslinux.cfg"
    assert os.readlink(cfg) == "../loader/syslinux.cfg"
    text = cfg.read_text()
    bls = current_bls(root)
    labels = [line.split(None, 1)[1] for line in text.splitlines() if line.startswith("LABEL ")]
    assert labels == [b["id"] for b in bls] and f"DEFAULT {bls[0]['id']}" in text
    booted = [e2e.deployment_of(root, line.split(None, 1)[1]) for line in text.splitlines()
              if line.startswith("\tAPPEND ")]
    assert booted == e2e.ostree_status_order(root) and len(booted) == 2
    for b in bls:
        assert f"\tKERNEL {b['linux']}\n" in text and f"\tAPPEND {b['options']}\n" in text
        assert (root / "boot" / b["linux"].lstrip("/")).is_file()
