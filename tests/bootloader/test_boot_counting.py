"""Each bundled plugin's boot counting state machine, without QEMU: armed when a deployment becomes the
default, counted down the way the bootloader itself does it, marked good, fallen back, cleared; the state read
back with the bootloaders' own tools (grub-editenv, bootctl's triesLeft, fw_printenv)."""

from __future__ import annotations

import dataclasses
import os
import subprocess

import pytest

from hybridos.arch import Architecture
from hybridos.bootloader import BootCountStatus
from hybridos_bootloader_grub.backend import GrubBootloader
from hybridos_bootloader_systemd_boot.backend import SystemdBootBootloader
from hybridos_bootloader_uboot.backend import UBootBootloader
from hybridos_bootloader_uboot.envimage import format_env_image, parse_env_image
from hybridos_bootloader_uboot.script import read_script_image
from tests.bootloader.layout import Deployment, commit_id
from tests.bootloader.test_grub import make_grub_sysroot
from tests.bootloader.test_systemd_boot import make_sdboot_sysroot
from tests.bootloader.test_uboot import A as UA
from tests.bootloader.test_uboot import B as UB
from tests.bootloader.test_uboot import make_board

A, B = (Deployment(commit_id(n), version=f"39.{n}") for n in (1, 2))


def booted(context, index):
    return dataclasses.replace(context, booted=index)


@pytest.mark.tool("grub-editenv")
def test_grub_armed_counted_down_fallback_and_good(tmp_path):
    s = make_grub_sysroot(tmp_path, Architecture.X86_64, "bios", {"boot-counting": "2"})
    grub = GrubBootloader()
    s.cycle(grub, [A])
    ctx = s.cycle(grub, [B, A])
    env = s.root / "boot/grub2/grubenv"

    def editenv(*args):
        return subprocess.run(["grub-editenv", str(env), *args], capture_output=True, text=True, check=True).stdout

    assert editenv("list").splitlines() == ["boot_counter=2", "boot_success=0"]
    state = grub.boot_count_state(booted(ctx, 0))
    assert (state.status, state.tries_left) == (BootCountStatus.ARMED, 2)
    editenv("set", "boot_counter=-1")                        # what grub.cfg does when the tries ran out
    assert grub.boot_count_state(booted(ctx, 1)).status is BootCountStatus.FALLBACK
    grub.clear_fallback(ctx)
    assert editenv("list").splitlines() == ["boot_success=0"]
    assert grub.boot_count_state(ctx).status is BootCountStatus.NONE
    # armed again, then a good boot
    grub.arm_boot_counting(ctx, 3)
    grub.mark_boot_good(booted(ctx, 0))
    assert editenv("list").splitlines() == ["boot_success=1"]
    # disarming (counting off for a new default) removes the counter GRUB would act on
    grub.arm_boot_counting(ctx, 2)
    grub.arm_boot_counting(ctx, 0)
    assert "boot_counter" not in editenv("list")


@pytest.mark.tool("bootctl")
def test_systemd_boot_names_counts_blesses_and_sees_the_fallback(tmp_path):
    from tests.bootloader.checks import bootctl_list

    s, esp = make_sdboot_sysroot(tmp_path, Architecture.X86_64, options={"boot-counting": "3"})
    sd = SystemdBootBootloader()
    s.cycle(sd, [A])
    ctx = s.cycle(sd, [B, A])
    entries = esp / "loader/entries"
    names = sorted(p.name for p in entries.iterdir())
    new = next(n for n in names if "+3" in n)
    assert "default ostree-*" in (esp / "loader/loader.conf").read_text()
    view = bootctl_list(s.root, esp)
    assert {e["title"]: e.get("triesLeft") for e in view.entries} == {
        "Fedora Linux 39.2 (ostree:0)": 3, "Fedora Linux 39.1 (ostree:1)": None}
    default = next(e for e in view.entries if e["id"] == view.default_id)
    assert default["title"] == "Fedora Linux 39.2 (ostree:0)"   # the glob picks the new deployment
    assert sd.boot_count_state(booted(ctx, 0)).status is BootCountStatus.ARMED
    # systemd-boot's renames, try by try, down to "bad"
    for left, done in ((2, 1), (1, 2), (0, 3)):
        current = next(p for p in entries.iterdir() if p.name.startswith(new.split("+")[0]))
        os.rename(current, entries / new.replace("+3", f"+{left}-{done}"))
    view = bootctl_list(s.root, esp)
    default = next(e for e in view.entries if e["id"] == view.default_id)
    assert default["title"] == "Fedora Linux 39.1 (ostree:1)"   # bad sorts last: the glob now picks v1
    state = sd.boot_count_state(booted(ctx, 1))
    assert (state.status, state.tries_left, state.tries_done) == (BootCountStatus.FALLBACK, 0, 3)
    # a good boot instead: blessing strips the counter
    os.rename(entries / new.replace("+3", "+0-3"), entries / new.replace("+3", "+2-1"))
    sd.mark_boot_good(booted(ctx, 0))
    assert new.replace("+3", "") in os.listdir(entries)
    assert sd.boot_count_state(booted(ctx, 0)).status is BootCountStatus.NONE


@pytest.mark.tool("fw_printenv")
def test_uboot_env_armed_counted_fallback_and_good(tmp_path):
    s = make_board(tmp_path, ("script",), {"boot-counting": "2"})
    ub = UBootBootloader()
    s.cycle(ub, [UA])
    ctx = s.cycle(ub, [UB, UA])
    env = s.root / "boot/uboot.env"
    config = tmp_path / "fw_env.config"
    config.write_text(f"{env} 0x0000 0x4000\n")

    def printenv():
        out = subprocess.run(["fw_printenv", "-c", str(config)], capture_output=True, text=True, check=True).stdout
        return dict(line.split("=", 1) for line in out.splitlines())

    assert {k: printenv()[k] for k in ("upgrade_available", "bootcount", "bootlimit")} == {
        "upgrade_available": "1", "bootcount": "0", "bootlimit": "2"}
    script = read_script_image((s.root / "boot/loader/boot.scr").read_bytes())
    assert "setexpr bootcount ${bootcount} + 1" in script and "hybridos.fallback=1" in script
    assert ub.boot_count_state(booted(ctx, 0)).status is BootCountStatus.ARMED
    subprocess.run(["fw_setenv", "-c", str(config), "bootcount", "3"], check=True)   # boot.scr counted 3
    state = ub.boot_count_state(booted(ctx, 1))
    assert (state.status, state.tries_done) == (BootCountStatus.FALLBACK, 3)
    ub.clear_fallback(ctx)
    assert (printenv()["upgrade_available"], printenv()["bootcount"]) == ("0", "0")
    assert ub.boot_count_state(ctx).status is BootCountStatus.NONE
    ub.arm_boot_counting(ctx, 2)
    ub.mark_boot_good(booted(ctx, 0))
    assert parse_env_image(env.read_bytes())["upgrade_available"] == "0"
    assert format_env_image(parse_env_image(env.read_bytes())) == env.read_bytes()


def test_a_plugin_without_boot_counting_keeps_working(tmp_path):
    from hybridos.bootloader import Bootloader, Detection

    class Plain(Bootloader):
        name = "plain"
        architectures = frozenset({Architecture.X86_64})

        def detect(self, sysroot):
            return Detection(1, "")

        def write_config(self, context):
            pass

    s = make_grub_sysroot(tmp_path, Architecture.X86_64, "bios")
    ctx = s.cycle(Plain(), [B, A])
    assert Plain().arm_boot_counting(ctx, 3) is False and Plain().boot_count_state(ctx) is None
