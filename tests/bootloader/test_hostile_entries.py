"""Hostile values and files reaching the bootloader plugins: no line injection in any format, no host files read
through a deployment's symlinks (docs/security.md, "Boot configuration")."""

from __future__ import annotations

import dataclasses
import os

import pytest

from hybridos.arch import Architecture
from hybridos.bootloader import BootEntry
from hybridos.errors import BootloaderError
from hybridos_bootloader_grub.backend import GrubBootloader
from hybridos_bootloader_grub.config import parse_menu
from hybridos_bootloader_uboot.backend import UBootBootloader
from hybridos_bootloader_uboot.config import parse_extlinux, parse_uenv
from tests.bootloader.checks import current_bls, grub_script_check
from tests.bootloader.layout import Deployment, Sysroot, commit_id

ENTRY = BootEntry(id="ostree-1-fedora", title="Fedora (ostree:0)", sort_version=1, linux="/ostree/f-1/vmlinuz-6.1",
                  initrd=("/ostree/f-1/initramfs-6.1.img",), options="root=/dev/vda1 ostree=/ostree/boot.1/f/1/0",
                  stateroot="fedora", version="39", kernel_version="6.1", deployment="ostree/deploy/f/deploy/c.0")


@pytest.mark.parametrize("field", ["title", "options", "linux", "version", "kernel_version", "deployment", "id"])
@pytest.mark.parametrize("bad", ["\n", "\r", "\x85", "\u2028", "\u2029", "\x1b", "\x0b"])
def test_boot_entry_refuses_line_breaks_and_controls(field, bad):
    with pytest.raises(BootloaderError, match=field):
        dataclasses.replace(ENTRY, **{field: f"x{bad}options init=/bin/sh"})
    with pytest.raises(BootloaderError, match="initrd"):
        dataclasses.replace(ENTRY, initrd=(f"/a{bad}linux /evil",))


@pytest.mark.tool("grub-script-check")
def test_shell_metacharacters_in_titles_stay_one_word(tmp_path):
    """GRUB script and extlinux.conf get a version full of quotes, braces and expansions back verbatim."""
    evil = "39'; reboot; echo '${root}{}\"$(x)`y`;#"
    s = Sysroot(tmp_path / "grub", Architecture.X86_64)
    (s.root / "boot/grub2").mkdir(parents=True)
    (s.root / "boot/grub2/grub.cfg").write_text("# installer's config\n")
    d = Deployment(commit_id(1), version=evil)
    s.cycle(GrubBootloader(), [d])
    cfg = s.root / "boot/grub2/grub.cfg"
    grub_script_check(cfg)
    (menu,) = parse_menu(cfg.read_text())
    assert menu["title"] == f"Fedora Linux {evil} (ostree:0)"

    u = Sysroot(tmp_path / "uboot", Architecture.AARCH64)
    (u.root / "boot/extlinux").mkdir(parents=True)
    (u.root / "boot/extlinux/extlinux.conf").write_text("DEFAULT x\nLABEL x\n\tLINUX /Image\n")
    u.cycle(UBootBootloader(), [d])
    _, labels = parse_extlinux((u.root / "boot/extlinux/extlinux.conf").read_text())
    assert [lab["MENU LABEL"] for lab in labels] == [f"Fedora Linux {evil} (ostree:0)"]
    assert set(labels[0]) == {"LABEL", "MENU LABEL", "LINUX", "INITRD", "FDTDIR", "APPEND"}


def test_uboot_never_appends_a_host_file_through_an_image_symlink(tmp_path):
    secret = tmp_path / "host-uEnv.txt"
    secret.write_text("bootcmd=run host_secret\n")
    s = Sysroot(tmp_path / "sysroot", Architecture.AARCH64)
    (s.root / "boot/extlinux").mkdir(parents=True)
    (s.root / "boot/extlinux/extlinux.conf").write_text("DEFAULT x\nLABEL x\n\tLINUX /Image\n")
    d = Deployment(commit_id(1), system_uenv="board_name=rockpro64\n")
    tree = s._checkout(d)
    uenv = tree / "usr/lib/ostree-boot/uEnv.txt"
    uenv.unlink()
    os.symlink(secret, uenv)
    s.cycle(UBootBootloader(), [d])
    written = (s.root / "boot/loader/uEnv.txt").read_text()
    assert "host_secret" not in written and "bootcmd" not in parse_uenv(written)
    # a symlink that stays inside the deployment is followed there, as the image means it
    (tree / "usr/lib/ostree-boot/board.txt").write_text("board_name=rockpro64\n")
    uenv.unlink()
    os.symlink("/usr/lib/ostree-boot/board.txt", uenv)
    s.cycle(UBootBootloader(), [d])
    assert parse_uenv((s.root / "boot/loader/uEnv.txt").read_text())["board_name"] == "rockpro64"


def test_grub_never_reads_default_grub_through_an_image_symlink(tmp_path):
    host = tmp_path / "host-default-grub"
    host.write_text('GRUB_ENABLE_BLSCFG="true"\n')
    s = Sysroot(tmp_path / "sysroot", Architecture.X86_64)
    (s.root / "boot/grub2").mkdir(parents=True)
    (s.root / "boot/grub2/grub.cfg").write_text("# installer's config\n")
    d = Deployment(commit_id(1))
    tree = s._checkout(d)
    (tree / "etc/default").mkdir(parents=True)
    os.symlink(host, tree / "etc/default/grub")
    s.cycle(GrubBootloader(), [d])
    text = (s.root / "boot/grub2/grub.cfg").read_text()
    assert "menuentry" in text and "blscfg" not in text   # the host's setting was not read
    assert [e["title"] for e in current_bls(s.root)] == ["Fedora Linux 39.1 (ostree:0)"]
