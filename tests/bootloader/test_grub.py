"""GRUB2 plugin: generated menus per architecture and firmware, BLS mode, boot counting, crash safety."""

from __future__ import annotations

import os
import subprocess

import pytest

from hybridos.arch import Architecture
from hybridos.errors import BootloaderError
from hybridos_bootloader_grub.backend import GrubBootloader
from hybridos_bootloader_grub.config import parse_menu
from hybridos_bootloader_grub.grubenv import SIZE, format_grubenv, parse_grubenv
from tests.bootloader.checks import current_bls, grub_script_check
from tests.bootloader.layout import Deployment, Sysroot, commit_id, snapshot

A, B, C = (Deployment(commit_id(n), version=f"39.{n}") for n in (1, 2, 3))

# (arch, layout, options, kernel command, initrd command)
CASES = {
    "x86_64-bios": (Architecture.X86_64, "bios", {}, "linux16", "initrd16"),
    "x86_64-efi": (Architecture.X86_64, "esp", {}, "linux", "initrd"),
    "x86_64-efi-linuxefi": (Architecture.X86_64, "esp", {"grub-flavour": "efi-linuxefi"}, "linuxefi", "initrdefi"),
    "aarch64-efi-fdtdir": (Architecture.AARCH64, "esp", {"fdt-file": "qemu/virt.dtb"}, "linux", "initrd"),
    "aarch64-posix-devicetree": (Architecture.AARCH64, "bios", {}, "linux", "initrd"),
    "ppc64le-ieee1275": (Architecture.PPC64LE, "bios", {}, "linux", "initrd"),
}


def make_grub_sysroot(tmp_path, arch, layout, options=None):
    s = Sysroot(tmp_path / "sysroot", arch, options)
    if layout == "esp":
        d = s.root / "boot/efi/EFI/fedora"
        d.mkdir(parents=True)
        (d / "grubx64.efi").write_bytes(b"MZ")
        (d / "grub.cfg").write_text("# installer's config\n")
    else:
        (s.root / "boot/grub2").mkdir(parents=True)
        (s.root / "boot/grub2/grub.cfg").write_text("# installer's config\n")
    return s


def grub_cfg_read_by_grub(s: Sysroot):
    for rel in ("boot/grub2/grub.cfg", "boot/efi/EFI/fedora/grub.cfg"):
        if (s.root / rel).exists():
            return s.root / rel
    raise AssertionError("no grub.cfg")


def assert_menu_matches_deployments(s: Sysroot, cfg_path, kernel_cmd, initrd_cmd, devicetree):
    grub_script_check(cfg_path)
    text = cfg_path.read_text()
    menu = parse_menu(text)
    bls = current_bls(s.root)
    assert [m["title"] for m in menu] == [b["title"] for b in bls]
    for m, b in zip(menu, bls, strict=True):
        assert m["linux"] == b["linux"] and m["initrd"] == [b["initrd"]] and m["options"] == b["options"]
        for p in [m["linux"], *m["initrd"]] + ([m["devicetree"]] if m["devicetree"] else []):
            assert (s.root / "boot" / p.lstrip("/")).is_file(), p
        assert bool(m["devicetree"]) == devicetree
    assert text.count(f"\t{kernel_cmd} ") == len(bls) and text.count(f"\t{initrd_cmd} ") == len(bls)
    return menu


@pytest.mark.tool("grub-script-check")
@pytest.mark.parametrize("case", CASES)
def test_deploy_upgrade_rollback_menu(tmp_path, case):
    arch, layout, options, kcmd, icmd = CASES[case]
    single_dt = case == "aarch64-posix-devicetree"
    a, b = (Deployment(d.commit, version=d.version, single_devicetree=single_dt) for d in (A, B))
    s = make_grub_sysroot(tmp_path, arch, layout, options)
    grub = GrubBootloader()
    assert grub.detect(s.root) is not None
    want_dt = arch == Architecture.AARCH64
    for deployments in ([a], [b, a], [a, b]):  # deploy, upgrade, rollback
        s.cycle(grub, deployments)
        cfg = grub_cfg_read_by_grub(s)
        menu = assert_menu_matches_deployments(s, cfg, kcmd, icmd, want_dt)
        assert [m["title"].split()[2] for m in menu] == [d.version for d in deployments]
        if layout == "bios":
            assert os.readlink(cfg) == "../loader/grub.cfg"
        else:
            assert not cfg.is_symlink() and not cfg.with_name("grub.cfg.new").exists()
    if arch == Architecture.PPC64LE:
        assert "load_video" not in cfg.read_text()  # no video modules on ieee1275/petitboot


@pytest.mark.tool("grub-script-check")
def test_distribution_blscfg_config_is_left_alone(tmp_path):
    s = Sysroot(tmp_path / "sysroot", Architecture.X86_64)
    (s.root / "boot/grub2").mkdir(parents=True)
    original = "set default=0\ninsmod blscfg\nblscfg\n"
    (s.root / "boot/grub2/grub.cfg").write_text(original)
    grub = GrubBootloader()
    s.cycle(grub, [A])
    s.cycle(grub, [B, A])
    assert (s.root / "boot/grub2/grub.cfg").read_text() == original
    assert not (s.root / "boot/grub2/grub.cfg").is_symlink()
    assert not (s.root / "boot/loader/grub.cfg").exists()
    assert [e["title"] for e in current_bls(s.root)] == ["Fedora Linux 39.2 (ostree:0)", "Fedora Linux 39.1 (ostree:1)"]


@pytest.mark.tool("grub-script-check")
def test_grub_enable_blscfg_gets_a_minimal_blscfg_config(tmp_path):
    s = make_grub_sysroot(tmp_path, Architecture.X86_64, "bios")
    grub = GrubBootloader()
    a = Deployment(A.commit, etc_files={"default/grub": 'GRUB_TIMEOUT=5\nGRUB_ENABLE_BLSCFG="true"\n'})
    s.cycle(grub, [a])
    cfg = s.root / "boot/grub2/grub.cfg"
    assert os.readlink(cfg) == "../loader/grub.cfg"
    text = cfg.read_text()
    assert "\nblscfg\n" in text and "menuentry" not in text
    grub_script_check(cfg)
    # our own stub follows the setting: without it the next deployment gets a generated menu again
    b = Deployment(B.commit, version="39.2", etc_files={"default/grub": "GRUB_TIMEOUT=5\n"})
    s.cycle(grub, [b, a])
    assert [m["title"] for m in parse_menu(cfg.read_text())] == ["Fedora Linux 39.2 (ostree:0)",
                                                                  "Fedora Linux 39.1 (ostree:1)"]


@pytest.mark.tool("grub-script-check", "grub-editenv")
def test_boot_counting_grubenv_and_fallback_fragment(tmp_path):
    s = make_grub_sysroot(tmp_path, Architecture.X86_64, "bios", {"boot-counting": "3"})
    env = s.root / "boot/grub2/grubenv"
    subprocess.run(["grub-editenv", str(env), "create"], check=True)
    subprocess.run(["grub-editenv", str(env), "set", "saved_entry=keep-me"], check=True)
    grub = GrubBootloader()
    s.cycle(grub, [A])
    assert "boot_counter" not in env.read_text()  # nothing to fall back to with a single deployment
    s.cycle(grub, [B, A])
    listed = subprocess.run(["grub-editenv", str(env), "list"], capture_output=True, text=True, check=True).stdout
    assert listed.splitlines() == ["saved_entry=keep-me", "boot_counter=3", "boot_success=0"]
    assert env.stat().st_size == SIZE
    text = (s.root / "boot/grub2/grub.cfg").read_text()
    grub_script_check(s.root / "boot/grub2/grub.cfg")
    assert "set default=1" in text and "save_env boot_counter" in text
    for n in (3, 2, 1):
        assert f'"${{boot_counter}}" = "{n}" ]; then\n    set boot_counter={n - 1}' in text
    # the fragment runs before the first menuentry, so the fallback applies to this boot
    assert text.index("save_env boot_success") < text.index("\nmenuentry ")


@pytest.mark.tool("grub-editenv")
def test_grubenv_bytes_equal_grub_editenv(tmp_path):
    ref = tmp_path / "ref"
    subprocess.run(["grub-editenv", str(ref), "create"], check=True)
    values = {"boot_counter": "3", "odd": "back\\slash", "multi": "line1\nline2"}
    for k, v in values.items():
        subprocess.run(["grub-editenv", str(ref), "set", f"{k}={v}"], check=True)
    assert format_grubenv(values) == ref.read_bytes()
    assert parse_grubenv(ref.read_bytes()) == values


def test_grubenv_overflow_is_refused():
    from hybridos.errors import FormatError

    with pytest.raises(FormatError, match="overflows 1024 bytes"):
        format_grubenv({"big": "x" * 1000})


@pytest.mark.tool("grub-script-check")
@pytest.mark.parametrize("layout", ["bios", "esp"])
def test_crash_between_write_config_and_swap_keeps_previous_config(tmp_path, layout):
    s = make_grub_sysroot(tmp_path, Architecture.X86_64, layout)
    grub = GrubBootloader()
    s.cycle(grub, [A])
    cfg = grub_cfg_read_by_grub(s)
    before = cfg.read_bytes()
    context = s.stage([B, A])
    grub.write_config(context)
    # crash here: no swap, no post_swap
    assert cfg.read_bytes() == before
    menu = parse_menu(cfg.read_text())
    assert [m["title"] for m in menu] == ["Fedora Linux 39.1 (ostree:0)"]
    assert all((s.root / "boot" / m["linux"].lstrip("/")).is_file() for m in menu)
    grub_script_check(cfg)
    # the next attempt (same boot version, leftovers present) completes
    s.cycle(grub, [B, A])
    assert [m["title"] for m in parse_menu(cfg.read_text())][0] == "Fedora Linux 39.2 (ostree:0)"


@pytest.mark.tool("grub-script-check")
def test_existing_plain_config_converts_to_symlink_without_changing_current_boot(tmp_path):
    s = make_grub_sysroot(tmp_path, Architecture.X86_64, "bios")
    s.cycle(None, [A])  # deployed before any GRUB integration: grub.cfg is a plain file
    cfg = s.root / "boot/grub2/grub.cfg"
    original = cfg.read_bytes()
    grub = GrubBootloader()
    context = s.stage([B, A])
    grub.write_config(context)
    assert cfg.is_symlink() and cfg.read_bytes() == original  # same bytes still boot before the swap
    s.swap(context)
    grub.post_swap(context)
    assert parse_menu(cfg.read_text())[0]["title"] == "Fedora Linux 39.2 (ostree:0)"


@pytest.mark.parametrize("arch, options, message", [
    (Architecture.AARCH64, {"grub-flavour": "bios"}, "flavour bios does not exist on aarch64"),
    (Architecture.PPC64LE, {"grub-flavour": "efi"}, "flavour efi does not exist on ppc64le"),
    (Architecture.X86_64, {"grub-flavour": "coreboot"}, "unknown grub-flavour 'coreboot'"),
    (Architecture.X86_64, {"boot-counting": "three"}, "boot-counting='three' is not a number"),
])
def test_impossible_combinations_fail_before_writing(tmp_path, arch, options, message):
    s = make_grub_sysroot(tmp_path, arch, "bios", options)
    context = s.stage([A])
    before = snapshot(s.root)
    with pytest.raises(BootloaderError, match=message):
        GrubBootloader().write_config(context)
    assert snapshot(s.root) == before


def test_kernel_of_another_architecture_is_refused(tmp_path):
    s = make_grub_sysroot(tmp_path, Architecture.X86_64, "bios")
    context = s.stage([A])
    wrong = type(context)(context.sysroot, context.bootversion, context.entries, Architecture.PPC64LE)
    before = snapshot(s.root)
    with pytest.raises(BootloaderError, match="has a x86_64 kernel .* but the deployment is ppc64le"):
        GrubBootloader().write_config(wrong)
    assert snapshot(s.root) == before


def test_absolute_config_symlink_is_read_inside_the_sysroot(tmp_path):
    s = Sysroot(tmp_path / "sysroot", Architecture.X86_64)
    (s.root / "boot/grub2").mkdir(parents=True)
    (s.root / "boot/grub2/installer.cfg").write_text("# the installer's menu, inside the sysroot\n")
    os.symlink("/boot/grub2/installer.cfg", s.root / "boot/grub2/grub.cfg")  # absolute: means the sysroot's /boot
    s.cycle(None, [A])
    context = s.stage([B, A])
    GrubBootloader().write_config(context)
    kept = s.root / f"boot/loader.{1 - context.bootversion}/grub.cfg"
    assert kept.read_text() == "# the installer's menu, inside the sysroot\n"
    assert os.readlink(s.root / "boot/grub2/grub.cfg") == "../loader/grub.cfg"


@pytest.mark.tool("grub-script-check")
def test_esp_config_pending_after_a_crash_past_the_swap_is_installed_by_the_next_run(tmp_path):
    s = make_grub_sysroot(tmp_path, Architecture.X86_64, "esp")
    grub = GrubBootloader()
    cfg = s.root / "boot/efi/EFI/fedora/grub.cfg"
    s.cycle(grub, [A])
    context = s.stage([B, A])
    grub.write_config(context)
    s.swap(context)  # crash here: swapped, but post_swap never ran
    assert parse_menu(cfg.read_text())[0]["title"] == "Fedora Linux 39.1 (ostree:0)"
    upgrade = s.stage([C, B, A])
    grub.write_config(upgrade)  # the next transaction first installs the config that became current at the swap
    assert parse_menu(cfg.read_text())[0]["title"] == "Fedora Linux 39.2 (ostree:0)"
    grub_script_check(cfg)
    s.swap(upgrade)
    grub.post_swap(upgrade)
    assert parse_menu(cfg.read_text())[0]["title"] == "Fedora Linux 39.3 (ostree:0)"
    assert not cfg.with_name("grub.cfg.new").exists()


def test_stale_esp_config_from_an_attempt_before_the_swap_is_dropped(tmp_path):
    s = make_grub_sysroot(tmp_path, Architecture.X86_64, "esp")
    grub = GrubBootloader()
    cfg = s.root / "boot/efi/EFI/fedora/grub.cfg"
    s.cycle(grub, [A])
    before = cfg.read_bytes()
    grub.write_config(s.stage([B, A]))  # crash before the swap
    current = s.stage([A])  # what the sysroot still is; a later post_swap for it must not install B's config
    current = type(current)(current.sysroot, 1 - current.bootversion, current.entries, current.arch)
    grub.post_swap(current)
    assert cfg.read_bytes() == before and not cfg.with_name("grub.cfg.new").exists()


def test_configured_but_absent_grub_is_a_clear_error_before_writing(tmp_path):
    s = Sysroot(tmp_path / "sysroot", Architecture.X86_64)  # e.g. [sysroot] bootloader=grub2 on a bare sysroot
    context = s.stage([A])
    before = snapshot(s.root)
    with pytest.raises(BootloaderError, match=r"grub2: no grub.cfg in .* \(looked for boot/grub2/grub.cfg"):
        GrubBootloader().write_config(context)
    assert snapshot(s.root) == before


@pytest.mark.parametrize("linked", ["boot/grub2", "boot/efi"])
def test_grub_dirs_symlinked_out_of_the_sysroot_are_never_used(tmp_path, linked):
    outside = tmp_path / "host"
    (outside / "EFI/fedora").mkdir(parents=True)
    (outside / "EFI/fedora/grub.cfg").write_text("# host\n")
    (outside / "grub.cfg").write_text("# host\n")
    s = Sysroot(tmp_path / "sysroot", Architecture.X86_64)
    os.symlink(outside, s.root / linked)
    before = snapshot(outside)
    grub = GrubBootloader()
    assert grub.detect(s.root) is None
    with pytest.raises(BootloaderError, match="no grub.cfg"):
        grub.write_config(s.stage([A]))
    assert snapshot(outside) == before
