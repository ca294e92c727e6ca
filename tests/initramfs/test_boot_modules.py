"""What the built-in initramfs needs to find a real root: modules.softdep and aliases followed, /sbin/modprobe,
rd.timeout, reboot on failure (rd.shell keeps a shell), and a kernel package's own image kept."""

from __future__ import annotations

import gzip
import os
import subprocess

from hybridos.initramfs import InitramfsRequest
from hybridos.initramfs_gen import (
    DEFAULT_DRIVERS,
    build_builtin_initramfs,
    builtin_entries,
    module_closure,
    module_load_order,
    parse_modules_alias,
    parse_modules_dep,
    parse_modules_softdep,
)
from hybridos.plugins import get_registry
from tests.conftest import require_root, require_tool
from tests.initramfs.test_initramfs import HOST, KVER, _extracted_init, cpio_extract, cpio_list, make_tree

# As depmod writes them for Debian's 6.1 kernel (trimmed).
DEP = """kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/fs/xfs/xfs.ko: kernel/lib/libcrc32c.ko
kernel/lib/libcrc32c.ko:
kernel/crypto/crc32c_generic.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/drivers/net/dummy.ko:
"""
SOFTDEP = """# Soft dependencies extracted from modules themselves.
softdep ext4 pre: crypto-crc32c
softdep jbd2 pre: crypto-crc32c
softdep libcrc32c pre: crc32c
softdep dummy pre: nosuchmodule post: crc16
"""
ALIAS = """alias crypto-crc32c crc32c_generic
alias crc32c crc32c_generic
alias crypto-crc32c crc32c_intel
alias crc32c crc32c_intel
alias fs-ext4 ext4
alias net-pf-* dummy
"""


def test_softdep_and_alias_parsing_and_load_order():
    dep, soft, aliases = parse_modules_dep(DEP), parse_modules_softdep(SOFTDEP), parse_modules_alias(ALIAS)
    assert soft["ext4"].pre == ("crypto-crc32c",) and soft["dummy"].post == ("crc16",)
    # ext4's soft dependency (an alias) loads before ext4; unknown names are skipped; post: comes after
    assert module_load_order(dep, ["ext4"], soft, aliases) == ["crc32c_generic", "crc32c_intel", "ext4"]
    assert module_load_order(dep, ["dummy"], soft, aliases) == ["dummy", "crc16"]
    assert module_load_order(dep, ["fs-ext4"], soft, aliases)[-1] == "ext4"
    assert module_load_order(dep, ["ext4"]) == ["ext4"]           # without softdep: what broke real boots
    paths = module_closure(dep, ["xfs"], soft, aliases)
    # xfs -> libcrc32c (modules.dep) -> crc32c (softdep of the dependency, through the alias)
    assert paths == ["kernel/arch/x86/crypto/crc32c-intel.ko", "kernel/crypto/crc32c_generic.ko",
                     "kernel/fs/xfs/xfs.ko", "kernel/lib/libcrc32c.ko"]


def _tree_with_modules(tmp_path):
    tree = make_tree(tmp_path / "tree")
    mod = tree / "usr/lib/modules" / KVER
    for line in DEP.splitlines():
        rel = line.split(":")[0]
        (mod / rel).parent.mkdir(parents=True, exist_ok=True)
        (mod / rel).write_bytes(b"module " + rel.encode())
    (mod / "modules.dep").write_text(DEP)
    (mod / "modules.softdep").write_text(SOFTDEP)
    (mod / "modules.alias").write_text(ALIAS)
    return tree


def test_builtin_image_follows_softdep_and_has_sbin_modprobe(tmp_path):
    tree = _tree_with_modules(tmp_path)
    names = {e.name: e for e in builtin_entries(tree, kver=KVER, drivers=("ext4",))}
    base = f"lib/modules/{KVER}"
    assert f"{base}/kernel/crypto/crc32c_generic.ko" in names          # only a soft dependency of ext4
    assert f"{base}/modules.softdep" in names and f"{base}/modules.alias" in names
    assert f"{base}/kernel/drivers/net/dummy.ko" not in names
    assert names["etc/hybridos-modules"].data.decode().split() == ["crc32c_generic", "crc32c_intel", "ext4"]
    # the kernel itself runs /sbin/modprobe (CONFIG_MODPROBE_PATH) for crypto-crc32c when ext4 mounts
    assert names["sbin/modprobe"].data == b"../bin/busybox"
    for applet in ("reboot", "insmod"):
        assert f"bin/{applet}" in names
    assert {"virtio_blk", "virtio_scsi", "virtio_pci", "nvme", "ahci", "sd_mod", "ext4", "xfs"} <= set(DEFAULT_DRIVERS)


def test_default_image_carries_the_generic_root_drivers(tmp_path):
    require_tool("cpio")
    tree = _tree_with_modules(tmp_path)
    out = build_builtin_initramfs(InitramfsRequest(tree, KVER, HOST))
    names = cpio_list(gzip.decompress(out.read_bytes()))
    for rel in ("kernel/fs/ext4/ext4.ko", "kernel/fs/xfs/xfs.ko", "kernel/lib/libcrc32c.ko",
                "kernel/crypto/crc32c_generic.ko", "kernel/fs/jbd2/jbd2.ko"):
        assert f"lib/modules/{KVER}/{rel}" in names, rel


def _run_die(root, cmdline: str, tmp_path, stdin: str = ""):
    cmdfile = tmp_path / "cmdline"
    cmdfile.write_text(cmdline + "\n")
    # do_reboot is replaced: the test must never reboot the machine it runs on
    script = 'do_reboot() { echo "REBOOT NOW"; exit 7; }; die "root device LABEL=x did not appear"'
    argv = [str(root / "bin/busybox"), "sh", "-c", f". {root}/init; {script}"]
    env = {"HYBRIDOS_INIT_LIB": "1", "PATH": f"{root}/bin", "CMDLINE_FILE": str(cmdfile)}
    return subprocess.run(argv, capture_output=True, text=True, env=env, input=stdin, timeout=30)


def test_init_reboots_after_the_delay_on_failure_and_rd_shell_keeps_a_shell(tmp_path):
    require_root()
    require_tool("cpio")
    root = _extracted_init(tmp_path)
    p = _run_die(root, "root=LABEL=x ostree=/ostree/boot.1/a/b/0 hybridos.fail-delay=0", tmp_path)
    assert p.returncode == 7 and p.stdout.splitlines()[-1] == "REBOOT NOW", p.stdout + p.stderr
    assert "rebooting in 0 seconds" in p.stdout
    p = _run_die(root, "root=LABEL=x hybridos.fail-delay=1", tmp_path)
    assert "rebooting in 1 seconds" in p.stdout and p.returncode == 7
    p = _run_die(root, "root=LABEL=x", tmp_path)                  # default delay: 5 s
    assert "rebooting in 5 seconds" in p.stdout and p.returncode == 7
    p = _run_die(root, "root=LABEL=x rd.shell", tmp_path, stdin="echo IN-SHELL\nexit 0\n")
    assert "IN-SHELL" in p.stdout and "REBOOT NOW" not in p.stdout and "starting a shell" in p.stdout
    init = (root / "init").read_text()
    assert 'cmdline_value rd.timeout "$cmdline"' in init


def test_kernel_packages_own_initramfs_is_kept_without_dracut_and_busybox(tmp_path):
    tree = make_tree(tmp_path / "tree", busybox=None)
    shipped = tree / "usr/lib/modules" / KVER / "initramfs.img"
    shipped.write_bytes(b"070701 shipped by the kernel package")
    out = get_registry().hook.hybridos_initramfs(request=InitramfsRequest(tree, KVER, HOST))
    assert out == shipped and shipped.read_bytes() == b"070701 shipped by the kernel package"
    # with busybox in the tree the built-in image replaces it
    tree2 = make_tree(tmp_path / "tree2")
    (tree2 / "usr/lib/modules" / KVER / "initramfs.img").write_bytes(b"old")
    out = get_registry().hook.hybridos_initramfs(request=InitramfsRequest(tree2, KVER, HOST))
    assert out.read_bytes()[:2] == b"\x1f\x8b"
    # a symlink by that name is not an image
    tree3 = make_tree(tmp_path / "tree3", busybox=None)
    os.symlink("/etc/shadow", tree3 / "usr/lib/modules" / KVER / "initramfs.img")
    import pytest

    from hybridos.errors import PackageError
    with pytest.raises(PackageError, match="neither dracut nor busybox"):
        get_registry().hook.hybridos_initramfs(request=InitramfsRequest(tree3, KVER, HOST))


def test_extracted_image_links_sbin_modprobe_to_busybox(tmp_path):
    require_root()
    require_tool("cpio")
    tree = _tree_with_modules(tmp_path)
    out = build_builtin_initramfs(InitramfsRequest(tree, KVER, HOST))
    root = tmp_path / "x"
    cpio_extract(gzip.decompress(out.read_bytes()), root)
    assert os.path.realpath(root / "sbin/modprobe") == str(root / "bin/busybox")
