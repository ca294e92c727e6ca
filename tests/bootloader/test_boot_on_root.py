"""/boot on the root filesystem (``[sysroot] bootprefix=true``, ostree's key) and GRUB's terminal settings."""

from __future__ import annotations

import subprocess

import pytest

from hybridos.arch import Architecture
from hybridos_bootloader_grub.config import parse_menu
from tests.bootloader.checks import grub_script_check
from tests.bootloader.e2e import STATEROOT, commit, deploy, make_sysroot
from tests.conftest import require_root, require_tool, run_cli

X86 = Architecture.X86_64


def _entry(root):
    conf = next((root / "boot/loader/entries").glob("*.conf")).read_text()
    return dict(line.split(" ", 1) for line in conf.splitlines() if " " in line)


def _grub_sysroot(tmp_path, options):
    root = make_sysroot(tmp_path / "sysroot", options)
    (root / "boot/grub").mkdir(parents=True)
    (root / "boot/grub/grub.cfg").write_text("# installer's\n")
    return root


def test_bootprefix_puts_boot_in_every_path_for_grub(tmp_path):
    require_tool("ostree", "grub-script-check")
    root = _grub_sysroot(tmp_path, {"bootprefix": "true"})
    deploy(root, commit(root, X86, 1, tmp_path))
    entry = _entry(root)
    assert entry["linux"].startswith(f"/boot/ostree/{STATEROOT}-") and entry["initrd"].startswith("/boot/ostree/")
    # on a single filesystem the path from its root is /boot/ostree/...: that file is there
    assert (root / entry["linux"].lstrip("/")).is_file() and (root / entry["initrd"].lstrip("/")).is_file()
    cfg = root / "boot/grub/grub.cfg"
    grub_script_check(cfg)
    menu = parse_menu(cfg.read_text())
    assert menu[0]["linux"] == entry["linux"] and menu[0]["initrd"] == [entry["initrd"]]
    assert f"search --no-floppy --set=root --file {entry['linux']}" in cfg.read_text()
    # the real ostree reads the sysroot as it is
    out = subprocess.run(["ostree", "admin", "status", f"--sysroot={root}"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_without_bootprefix_paths_are_relative_to_the_boot_filesystem(tmp_path):
    require_tool("ostree")
    root = _grub_sysroot(tmp_path, {"bootprefix": "false"})
    deploy(root, commit(root, X86, 1, tmp_path))
    assert _entry(root)["linux"].startswith(f"/ostree/{STATEROOT}-")


def test_bootprefix_set_with_ostree_config_on_an_ostree_sysroot_is_read(tmp_path):
    """A sysroot made by ``ostree admin`` with ``ostree config set sysroot.bootprefix true``: deploying with
    hybridos writes ``/boot/ostree/...`` entries, as ostree >= 2023.x does (its test-admin-deploy-bootprefix.sh
    expects ``linux /boot/ostree/testos-``). Debian 12's ostree 2022.7 predates the key, so it is the reader
    of the result here, not the reference."""
    require_root()
    require_tool("ostree")
    root = tmp_path / "sysroot"
    root.mkdir()
    for argv in (["ostree", "admin", "init-fs", str(root)],
                 ["ostree", "admin", "os-init", f"--sysroot={root}", STATEROOT],
                 ["ostree", f"--repo={root}/ostree/repo", "config", "set", "sysroot.bootprefix", "true"]):
        subprocess.run(argv, check=True, capture_output=True)
    first = commit(root, X86, 1, tmp_path)
    subprocess.run(["ostree", "admin", "deploy", f"--sysroot={root}", f"--os={STATEROOT}", first], check=True,
                   capture_output=True)
    deploy(root, commit(root, X86, 2, tmp_path))
    entries = [dict(line.split(" ", 1) for line in f.read_text().splitlines() if " " in line)
               for f in (root / "boot/loader/entries").glob("*.conf")]
    assert len(entries) == 2 and all(e["linux"].startswith("/boot/ostree/") for e in entries)
    assert all((root / e["linux"].lstrip("/")).is_file() for e in entries)
    out = subprocess.run(["ostree", "admin", "status", f"--sysroot={root}"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.count(STATEROOT) == 2, out.stdout + out.stderr


def test_bad_bootprefix_is_a_clear_error(tmp_path):
    require_tool("ostree")
    root = _grub_sysroot(tmp_path, {"bootprefix": "yes please"})
    p = deploy(root, commit(root, X86, 1, tmp_path), check=False)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "bootprefix='yes please'" in p.stderr and "not a boolean" in p.stderr


@pytest.mark.parametrize(("options", "expected"), [
    ({}, []),
    ({"grub-serial": "--unit=0 --speed=115200"},
     ["serial --unit=0 --speed=115200", "terminal_input serial console", "terminal_output serial console"]),
    ({"grub-serial": "--unit=1", "grub-terminal": "serial"},
     ["serial --unit=1", "terminal_input serial", "terminal_output serial"]),
    ({"grub-terminal": "console"}, ["terminal_input console", "terminal_output console"]),
])
def test_grub_terminal_and_serial_from_configuration(tmp_path, options, expected):
    require_tool("ostree", "grub-script-check")
    root = _grub_sysroot(tmp_path, options)
    deploy(root, commit(root, X86, 1, tmp_path))
    cfg = root / "boot/grub/grub.cfg"
    grub_script_check(cfg)
    lines = [ln for ln in cfg.read_text().splitlines() if ln.startswith(("serial", "terminal_"))]
    assert lines == expected


@pytest.mark.parametrize(("key", "value"), [("grub-serial", "--unit=0;reboot"), ("grub-terminal", "serial$x")])
def test_bad_grub_terminal_settings_are_refused(tmp_path, key, value):
    require_tool("ostree")
    root = _grub_sysroot(tmp_path, {key: value})
    p = deploy(root, commit(root, X86, 1, tmp_path), check=False)
    assert p.returncode != 0 and "Traceback" not in p.stderr and key in p.stderr
    assert not (root / "boot/loader").exists()          # nothing swapped
    run_cli("--sysroot", str(root), "status", check=False)
