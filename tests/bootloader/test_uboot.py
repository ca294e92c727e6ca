"""U-Boot plugin: uEnv.txt, extlinux.conf, boot.scr (checked with mkimage and our own CRCs), bootcount env."""

from __future__ import annotations

import os
import struct
import subprocess
import zlib

import pytest

from hybridos.arch import Architecture
from hybridos.errors import BootloaderError
from hybridos_bootloader_uboot.backend import UBootBootloader
from hybridos_bootloader_uboot.config import parse_extlinux, parse_uenv
from hybridos_bootloader_uboot.envimage import format_env_image, parse_env_image
from hybridos_bootloader_uboot.script import make_script_image
from tests.bootloader.checks import current_bls
from tests.bootloader.layout import Deployment, Sysroot, commit_id, snapshot

SYSTEM_UENV = "board_name=rockpro64\nfdtfile=rockchip/rk3399-rockpro64.dtb\n"
A, B, C = (Deployment(commit_id(n), version=f"39.{n}", system_uenv=SYSTEM_UENV) for n in (1, 2, 3))


def check_script_image(path) -> str:
    """Our own reading of a legacy image: magic, header CRC, data CRC; returns the script. Plus mkimage -l."""
    data = path.read_bytes()
    magic, hcrc, _time, size, _load, _ep, dcrc, os_, arch, typ, comp = struct.unpack_from(">IIIIIIIBBBB", data)
    assert magic == 0x27051956
    assert zlib.crc32(data[:4] + bytes(4) + data[8:64]) == hcrc
    assert len(data) == 64 + size and zlib.crc32(data[64:]) == dcrc
    assert (os_, arch, typ, comp) == (5, 22, 6, 0)  # linux, arm64, script, none
    (length, terminator) = struct.unpack_from(">II", data, 64)
    assert terminator == 0 and length == size - 8
    listed = subprocess.run(["mkimage", "-l", str(path)], capture_output=True, text=True, check=True).stdout
    assert "AArch64 Linux Script (uncompressed)" in listed
    return data[72:].decode()


def make_board(tmp_path, files=("extlinux", "script"), options=None):
    s = Sysroot(tmp_path / "sysroot", Architecture.AARCH64, options)
    if "extlinux" in files:
        (s.root / "boot/extlinux").mkdir(parents=True)
        (s.root / "boot/extlinux/extlinux.conf").write_text("DEFAULT installer\nLABEL installer\n\tLINUX /Image\n")
    if "script" in files:
        (s.root / "boot/boot.scr").write_bytes(make_script_image("echo installer\n", "installer",
                                                                  Architecture.AARCH64, 0))
    return s


def assert_uboot_config(s: Sysroot, fdt: str, files):
    bls = current_bls(s.root)
    boot = s.root / "boot"
    uenv = parse_uenv((boot / "loader/uEnv.txt").read_text())
    for i, b in enumerate(bls):
        sfx = "" if i == 0 else str(i + 1)
        assert uenv[f"kernel_image{sfx}"] == b["linux"] and uenv[f"ramdisk_image{sfx}"] == b["initrd"]
        assert uenv[f"bootargs{sfx}"] == b["options"]
        dt_key = "fdt_file" if "devicetree" in b else "fdtdir"
        assert uenv[f"{dt_key}{sfx}"] == b.get("devicetree", b.get("fdtdir"))
        for p in (b["linux"], b["initrd"], b.get("devicetree", b.get("fdtdir"))):
            assert (boot / p.lstrip("/")).exists(), p
    assert f"kernel_image{len(bls) + 1}" not in uenv
    assert uenv["board_name"] == "rockpro64"  # the deployment's usr/lib/ostree-boot/uEnv.txt is appended
    if "extlinux" in files:
        cfg = boot / "extlinux/extlinux.conf"
        assert os.readlink(cfg) == "../loader/extlinux.conf"
        glob, labels = parse_extlinux(cfg.read_text())
        assert glob["DEFAULT"] == labels[0]["LABEL"] and glob["TIMEOUT"] == "50" and glob["MENU TITLE"]
        assert [lab["MENU LABEL"] for lab in labels] == [b["title"] for b in bls]
        for lab, b in zip(labels, bls, strict=True):
            assert lab["LINUX"] == b["linux"] and lab["INITRD"] == b["initrd"] and lab["APPEND"] == b["options"]
            if fdt == "fdtdir":
                assert lab["FDTDIR"] == b["fdtdir"] and "FDT" not in lab
            else:
                assert (boot / lab["FDT"].lstrip("/")).is_file()
            assert (boot / lab["LINUX"].lstrip("/")).is_file() and (boot / lab["INITRD"].lstrip("/")).is_file()
    if "script" in files:
        assert os.readlink(boot / "boot.scr") == "loader/boot.scr"
        script = check_script_image(boot / "boot.scr")
        default_part = script.split("else\n", 1)[-1]
        assert f"load ${{devtype}} ${{devnum}}:${{distro_bootpart}} ${{kernel_addr_r}} {bls[0]['linux']}" in default_part
        assert f"setenv bootargs '{bls[0]['options']}'" in default_part
        if len(bls) > 1:
            fallback = script.split("else\n", 1)[0]
            assert "hybridos_fallback" in fallback and bls[1]["linux"] in fallback
        # byte-identical to what mkimage makes of the same script at the same time stamp
        stamp = struct.unpack_from(">I", (boot / "boot.scr").read_bytes(), 8)[0]
        (s.root / "boot.cmd").write_text(script)
        subprocess.run(["mkimage", "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-n",
                        "hybridos boot script", "-d", str(s.root / "boot.cmd"), str(s.root / "ref.scr")],
                       check=True, capture_output=True, env=dict(os.environ, SOURCE_DATE_EPOCH=str(stamp)))
        assert (s.root / "ref.scr").read_bytes() == (boot / "boot.scr").read_bytes()
    return uenv


BOARDS = {
    "uenv-only": ((), {}, "fdtdir"),
    "extlinux-fdtdir": (("extlinux",), {}, "fdtdir"),
    "extlinux-fdt-file": (("extlinux",), {"fdt-file": "rockchip/rk3399-rockpro64.dtb"}, "fdt"),
    "boot-scr": (("script",), {}, "fdtdir"),
    "extlinux-and-boot-scr-devicetree": (("extlinux", "script"), {}, "devicetree"),
}


@pytest.mark.tool("mkimage")
@pytest.mark.parametrize("board", BOARDS)
def test_deploy_upgrade_rollback(tmp_path, board):
    files, options, fdt = BOARDS[board]
    s = make_board(tmp_path, files, options)
    single = fdt == "devicetree"
    a, b, c = (Deployment(d.commit, version=d.version, system_uenv=SYSTEM_UENV, single_devicetree=single)
               for d in (A, B, C))
    uboot = UBootBootloader()
    for deployments in ([a], [b, a], [a, b], [c, a]):
        s.cycle(uboot, deployments)
        assert uboot.detect(s.root) is not None
        assert_uboot_config(s, fdt, files)


@pytest.mark.tool("fw_printenv", "mkenvimage")
def test_bootcount_environment_readable_by_fw_printenv(tmp_path):
    s = make_board(tmp_path, ("script",), {"boot-counting": "3"})
    env = s.root / "boot/uboot.env"
    (tmp_path / "env.txt").write_text("bootcmd=run distro_bootcmd\nbootdelay=2\n")
    subprocess.run(["mkenvimage", "-s", "0x4000", "-o", str(env), str(tmp_path / "env.txt")], check=True)
    uboot = UBootBootloader()
    s.cycle(uboot, [A])
    assert parse_env_image(env.read_bytes()) == {"bootcmd": "run distro_bootcmd", "bootdelay": "2"}
    s.cycle(uboot, [B, A])
    config = tmp_path / "fw_env.config"
    config.write_text(f"{env} 0x0000 0x4000\n")
    out = subprocess.run(["fw_printenv", "-c", str(config)], capture_output=True, text=True, check=True).stdout
    assert dict(line.split("=", 1) for line in out.splitlines()) == {
        "bootcmd": "run distro_bootcmd", "bootdelay": "2", "upgrade_available": "1", "bootcount": "0",
        "bootlimit": "3", "altbootcmd": "setenv hybridos_fallback 1; run bootcmd",
        "hybridos_count_in_script": "1"}   # this U-Boot has no CONFIG_BOOTCOUNT_LIMIT: boot.scr counts
    assert env.stat().st_size == 0x4000
    # userspace marks the boot good with fw_setenv; the next deployment keeps that tool's edits readable
    subprocess.run(["fw_setenv", "-c", str(config), "upgrade_available", "0"], check=True, capture_output=True)
    subprocess.run(["fw_setenv", "-c", str(config), "marked_by", "greenboot"], check=True, capture_output=True)
    assert parse_env_image(env.read_bytes())["upgrade_available"] == "0"
    s.cycle(uboot, [C, B])
    after = parse_env_image(env.read_bytes())
    assert after["marked_by"] == "greenboot" and after["upgrade_available"] == "1" and after["bootcount"] == "0"


@pytest.mark.tool("mkenvimage")
@pytest.mark.parametrize("redundant", [False, True])
def test_env_image_bytes_equal_mkenvimage(tmp_path, redundant):
    values = {"bootcmd": "run distro_bootcmd; reset", "bootlimit": "3", "empty": ""}
    (tmp_path / "env.txt").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    argv = ["mkenvimage", "-s", "0x2000", "-o", str(tmp_path / "ref.env"), str(tmp_path / "env.txt")]
    subprocess.run(argv[:1] + (["-r"] if redundant else []) + argv[1:], check=True)
    ours = format_env_image(values, 0x2000, redundant=redundant)
    assert ours == (tmp_path / "ref.env").read_bytes()
    assert parse_env_image(ours, redundant=redundant) == values


def test_corrupt_environment_is_refused_before_writing(tmp_path):
    s = make_board(tmp_path, ("script",), {"boot-counting": "2"})
    s.cycle(UBootBootloader(), [A])
    env = s.root / "boot/uboot.env"
    image = bytearray(format_env_image({"bootcmd": "boot"}))
    image[10] ^= 0xFF
    env.write_bytes(bytes(image))
    context = s.stage([B, A])
    before = snapshot(s.root)
    with pytest.raises(BootloaderError, match="uboot.env: U-Boot environment CRC mismatch"):
        UBootBootloader().write_config(context)
    assert snapshot(s.root) == before


@pytest.mark.tool("mkimage")
def test_crash_between_write_config_and_swap_keeps_previous_config(tmp_path):
    s = make_board(tmp_path, ("extlinux", "script"))
    uboot = UBootBootloader()
    s.cycle(uboot, [A])
    read_by_uboot = ("boot/loader/uEnv.txt", "boot/extlinux/extlinux.conf", "boot/boot.scr")
    before = {rel: (s.root / rel).read_bytes() for rel in read_by_uboot}
    context = s.stage([B, A])
    uboot.write_config(context)
    # crash here
    assert {rel: (s.root / rel).read_bytes() for rel in read_by_uboot} == before
    assert_uboot_config(s, "fdtdir", ("extlinux", "script"))  # still complete and pointing at existing files
    s.cycle(uboot, [B, A])
    assert parse_uenv((s.root / "boot/loader/uEnv.txt").read_text())["kernel_image"] == context.entries[0].linux


@pytest.mark.tool("mkimage")
def test_board_files_become_links_without_changing_current_boot(tmp_path):
    s = make_board(tmp_path, ("extlinux", "script"))
    s.cycle(None, [A])  # deployed before U-Boot integration: the board's own files are plain
    before = {rel: (s.root / rel).read_bytes() for rel in ("boot/extlinux/extlinux.conf", "boot/boot.scr")}
    context = s.stage([B, A])
    UBootBootloader().write_config(context)
    assert (s.root / "boot/boot.scr").is_symlink() and (s.root / "boot/extlinux/extlinux.conf").is_symlink()
    assert {rel: (s.root / rel).read_bytes() for rel in before} == before


@pytest.mark.parametrize("arch", [Architecture.X86_64, Architecture.PPC64LE])
def test_other_architectures_are_refused_before_writing(tmp_path, arch):
    s = Sysroot(tmp_path / "sysroot", arch)
    context = s.stage([A])
    before = snapshot(s.root)
    with pytest.raises(BootloaderError, match=f"uboot cannot boot {arch.value} deployments"):
        UBootBootloader().write_config(context)
    assert snapshot(s.root) == before


def test_single_quote_in_kernel_arguments_is_refused_for_boot_scr(tmp_path):
    s = make_board(tmp_path, ("script",))
    context = s.stage([A])
    e = context.entries[0]
    bad = type(context)(context.sysroot, context.bootversion,
                        (type(e)(**{**e.__dict__, "options": e.options + " quiet='x'"}),), context.arch)
    before = snapshot(s.root)
    with pytest.raises(BootloaderError, match="single quote"):
        UBootBootloader().write_config(bad)
    assert snapshot(s.root) == before


@pytest.mark.tool("mkimage")
def test_board_script_that_imports_uenv_is_left_alone(tmp_path):
    s = make_board(tmp_path, ())
    board = ('ext4load ${devtype} ${devnum}:2 ${loadaddr} /boot/loader/uEnv.txt\n'
             'env import -t ${loadaddr} ${filesize}\n'
             'ext4load ${devtype} ${devnum}:2 ${kernel_addr_r} "/boot"${kernel_image}\n')
    (s.root / "boot/boot.scr").write_bytes(make_script_image(board, "board", Architecture.AARCH64, 0))
    original = (s.root / "boot/boot.scr").read_bytes()
    uboot = UBootBootloader()
    for deployments in ([A], [B, A]):
        s.cycle(uboot, deployments)
    assert (s.root / "boot/boot.scr").read_bytes() == original and not (s.root / "boot/boot.scr").is_symlink()
    assert not (s.root / "boot/loader/boot.scr").exists()
    assert_uboot_config(s, "fdtdir", ())  # what that script imports is kept up to date


def test_paths_leading_out_of_the_sysroot_are_never_written(tmp_path):
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "extlinux.conf").write_text("# host\n")
    s = Sysroot(tmp_path / "sysroot", Architecture.AARCH64, {"boot-counting": "2", "uboot-env": "../host/uboot.env"})
    os.symlink(outside, s.root / "boot/extlinux")
    uboot = UBootBootloader()
    with pytest.raises(BootloaderError, match="uboot-env=.* leads out of the sysroot"):
        uboot.write_config(s.stage([A]))
    s.options.pop("uboot-env")
    s.cycle(uboot, [A])
    s.cycle(uboot, [B, A])
    assert sorted(p.name for p in outside.iterdir()) == ["extlinux.conf"]
    assert (outside / "extlinux.conf").read_text() == "# host\n"
    assert (s.root / "boot/uboot.env").exists()
