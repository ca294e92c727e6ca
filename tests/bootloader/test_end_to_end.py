"""Each bootloader plugin driven by the ``hybridos`` command line: admin deploy, upgrade, rollback, and a real
crash (SIGKILL via HYBRIDOS_TEST_ABORT_AT=swap) between the bootloader step and the swap.

The order each configuration boots is checked against the real ``ostree admin status``.
"""

from __future__ import annotations

import signal

import pytest

from hybridos.arch import Architecture
from hybridos_bootloader_grub.config import parse_menu
from hybridos_bootloader_uboot.config import parse_extlinux, parse_uenv
from hybridos_bootloader_uboot.script import make_script_image
from tests.bootloader import e2e
from tests.bootloader.checks import bootctl_list, grub_script_check
from tests.bootloader.test_uboot import check_script_image
from tests.conftest import require_tool, run_cli


def _grub(root):
    cfg = next(p for p in (root / "boot/grub2/grub.cfg", root / "boot/efi/EFI/fedora/grub.cfg") if p.exists())
    grub_script_check(cfg)
    menu = parse_menu(cfg.read_text())
    for m in menu:
        assert all((root / "boot" / p.lstrip("/")).is_file() for p in [m["linux"], *m["initrd"]])
        if m["devicetree"]:
            assert (root / "boot" / m["devicetree"].lstrip("/")).is_file()
    return [m["options"] for m in menu]


def _sdboot(root):
    esp = root / "boot/efi"
    view = bootctl_list(root, esp)
    assert "Unknown line" not in view.stderr and "No such file" not in view.stderr, view.stderr
    for e in view.entries:
        assert all((esp / p.lstrip("/")).is_file() for p in [e["linux"], *e["initrd"]])
    default = next(e for e in view.entries if e["id"] == view.default_id)
    others = sorted((e for e in view.entries if e is not default), key=lambda e: -int(e["version"]))
    return [e["options"] for e in [default, *others]]


def _uboot(root):
    uenv = parse_uenv((root / "boot/loader/uEnv.txt").read_text())
    assert uenv["board_name"] == "rockpro64"
    n = sum(1 for k in uenv if k.startswith("kernel_image"))
    suffixes = [""] + [str(i) for i in range(2, n + 1)]
    for s in suffixes:
        assert (root / "boot" / uenv[f"kernel_image{s}"].lstrip("/")).is_file()
        assert (root / "boot" / uenv[f"fdtdir{s}"].lstrip("/")).is_dir()
    glob, labels = parse_extlinux((root / "boot/extlinux/extlinux.conf").read_text())
    assert glob["DEFAULT"] == labels[0]["LABEL"]
    assert [lab["APPEND"] for lab in labels] == [uenv[f"bootargs{s}"] for s in suffixes]
    script = check_script_image(root / "boot/boot.scr")
    assert f"setenv bootargs '{uenv['bootargs']}'" in script.split("else\n", 1)[-1]
    return [uenv[f"bootargs{s}"] for s in suffixes]


def _layout_grub_bios(root):
    (root / "boot/grub2").mkdir(parents=True)
    (root / "boot/grub2/grub.cfg").write_text("# installer\n")


def _layout_grub_esp(root):
    (root / "boot/efi/EFI/fedora").mkdir(parents=True)
    (root / "boot/efi/EFI/fedora/grub.cfg").write_text("# installer\n")


def _layout_sdboot(root):
    (root / "boot/efi/loader").mkdir(parents=True)
    (root / "boot/efi/EFI/systemd").mkdir(parents=True)


def _layout_uboot(root):
    (root / "boot/extlinux").mkdir(parents=True)
    (root / "boot/extlinux/extlinux.conf").write_text("DEFAULT installer\n")
    (root / "boot/boot.scr").write_bytes(make_script_image("echo installer\n", "installer", Architecture.AARCH64, 0))


# name: (arch, bootloader name, layout, options, reader, tools)
CASES = {
    "grub2-x86_64-bios": (Architecture.X86_64, "grub2", _layout_grub_bios, {}, _grub, ("grub-script-check",)),
    "grub2-aarch64-efi": (Architecture.AARCH64, "grub2", _layout_grub_esp, {"fdt-file": "qemu/virt.dtb"}, _grub,
                          ("grub-script-check",)),
    "grub2-ppc64le": (Architecture.PPC64LE, "grub2", _layout_grub_bios, {}, _grub, ("grub-script-check",)),
    "systemd-boot-x86_64": (Architecture.X86_64, "systemd-boot", _layout_sdboot, {}, _sdboot, ("bootctl",)),
    "systemd-boot-aarch64": (Architecture.AARCH64, "systemd-boot", _layout_sdboot, {}, _sdboot, ("bootctl",)),
    "uboot-aarch64": (Architecture.AARCH64, "uboot", _layout_uboot, {"boot-counting": "3"}, _uboot, ("mkimage",)),
}


def _booted_order(root, reader):
    return [e2e.deployment_of(root, options) for options in reader(root)]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_deploy_upgrade_rollback_and_crash(tmp_path, case):
    arch, name, layout, options, reader, tools = CASES[case]
    require_tool("ostree", *tools)
    from hybridos.plugins import PluginRegistry

    root = e2e.make_sysroot(tmp_path / "sysroot", options)
    layout(root)
    assert PluginRegistry().select_bootloader(root).bootloader.name == name
    c1 = e2e.commit(root, arch, 1, tmp_path)
    e2e.deploy(root, c1)
    assert _booted_order(root, reader) == e2e.ostree_status_order(root) == [f"{c1}.0"]

    c2 = e2e.commit(root, arch, 2, tmp_path)
    e2e.deploy(root, c2)  # upgrade
    assert _booted_order(root, reader) == e2e.ostree_status_order(root) == [f"{c2}.0", f"{c1}.0"]

    e2e.rollback(root)
    assert _booted_order(root, reader) == e2e.ostree_status_order(root) == [f"{c1}.0", f"{c2}.0"]

    # a crash right after the bootloader wrote version N, before boot/loader is swapped
    c3 = e2e.commit(root, arch, 3, tmp_path)
    proc = e2e.deploy(root, c3, env={"HYBRIDOS_TEST_ABORT_AT": "swap"}, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert _booted_order(root, reader) == e2e.ostree_status_order(root) == [f"{c1}.0", f"{c2}.0"]

    e2e.deploy(root, c3)  # the next attempt completes
    order = _booted_order(root, reader)
    assert order == e2e.ostree_status_order(root) and order[0] == f"{c3}.0"


@pytest.mark.slow
@pytest.mark.parametrize("case", ["systemd-boot-x86_64", "grub2-aarch64-efi"])
def test_crash_after_the_swap_then_cleanup_keeps_the_esp_bootable(tmp_path, case):
    """Killed after boot/loader moved but before post_swap switched the ESP: a later ``cleanup`` first finishes
    the switch, so it never removes the bootlinks and deployments the ESP configuration still names."""
    arch, name, layout, options, reader, tools = CASES[case]
    require_tool("ostree", *tools)
    root = e2e.make_sysroot(tmp_path / "sysroot", options)
    layout(root)
    c1, c2, c3 = (e2e.commit(root, arch, n, tmp_path) for n in (1, 2, 3))
    e2e.deploy(root, c1)
    e2e.deploy(root, c2)
    proc = e2e.deploy(root, c3, env={"HYBRIDOS_TEST_ABORT_AT": "post-swap"}, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert e2e.ostree_status_order(root) == [f"{c3}.0", f"{c2}.0"]
    run_cli("--sysroot", str(root), "cleanup", "-b")
    order = _booted_order(root, reader)  # every entry resolves to an existing deployment
    assert order == [f"{c3}.0", f"{c2}.0"]
    assert all((root / "ostree/deploy" / e2e.STATEROOT / "deploy" / d).is_dir() for d in order)
    assert not (root / "ostree/.hybridos-post-swap-pending").exists()
