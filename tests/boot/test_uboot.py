"""Real U-Boot (Debian's u-boot-qemu, qemu_arm64) boots an arm64 deployment with /boot on / through each file
the uboot plugin writes: extlinux.conf, boot.scr, and ostree's uEnv.txt read by a board script. TCG: lean."""

from __future__ import annotations

import pytest

from tests.boot.disk import Partition, assemble, ext4_image, sh
from tests.boot.qemu import UBOOT_ARM64, Machine, boot
from tests.boot.sysroot import bls_entries, deploy_sysroot, write_var_data

pytestmark = [pytest.mark.slow, pytest.mark.tool("mkimage", "mkfs.ext4", "sfdisk", "qemu-system-aarch64")]
KARGS = ["root=LABEL=root", "rw", "console=ttyAMA0", "panic=10", "hybridos.fail-delay=1"]
#: a board's own boot script in the style of ostree's U-Boot boards: it boots what uEnv.txt says
BOARD_SCRIPT = """\
echo "board script: booting what /boot/loader/uEnv.txt says"
load ${devtype} ${devnum}:${distro_bootpart} ${scriptaddr} /boot/loader/uEnv.txt
env import -t ${scriptaddr} ${filesize}
load ${devtype} ${devnum}:${distro_bootpart} ${kernel_addr_r} ${kernel_image}
load ${devtype} ${devnum}:${distro_bootpart} ${ramdisk_addr_r} ${ramdisk_image}
booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdtcontroladdr}
"""


def _prepare(kind):
    def prepare(root):
        if kind == "extlinux":
            (root / "boot/extlinux").mkdir(parents=True)
            (root / "boot/extlinux/extlinux.conf").write_text("# replaced by the uboot plugin\n")
        elif kind == "uenv":
            (root / "boot.cmd").write_text(BOARD_SCRIPT)
            sh("mkimage", "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-n", "board",
               "-d", root / "boot.cmd", root / "boot.scr")
    return prepare


OPTIONS = {
    "extlinux": {"bootprefix": "true", "timeout": "1"},
    "bootscr": {"bootprefix": "true", "bootloader": "uboot", "uboot-script": "true"},
    "uenv": {"bootprefix": "true", "bootloader": "uboot"},
}


@pytest.mark.parametrize("kind", ["extlinux", "bootscr", "uenv"])
def test_uboot_qemu_arm64_boots_the_deployment(tmp_path, arm64_composed, kind):
    if not UBOOT_ARM64.exists():
        pytest.fail(f"{UBOOT_ARM64} is missing (Debian u-boot-qemu; scripts/system-deps.sh)")
    root = tmp_path / "sysroot"
    deploy_sysroot(root, arm64_composed, KARGS, options=OPTIONS[kind], prepare=_prepare(kind))
    write_var_data(root, f"uboot-{kind}")
    entry = bls_entries(root)[0]
    assert entry["linux"].startswith("/boot/ostree/")
    loader = root / "boot/loader"
    written = sorted(p.name for p in loader.iterdir() if p.is_file())
    expected_file = {"extlinux": "extlinux.conf", "bootscr": "boot.scr", "uenv": "uEnv.txt"}[kind]
    assert expected_file in written, written
    if kind == "uenv":
        assert "extlinux.conf" not in written and "boot.scr" not in written
        assert f"kernel_image={entry['linux']}" in (loader / "uEnv.txt").read_text()
    disk = tmp_path / "disk.img"
    assemble(disk, [Partition("83", ext4_image(tmp_path / "root.ext4", root, "root"), bootable=True)],
             label="dos")
    result = boot(Machine("aarch64", "uboot", memory_mb=1024), [disk], tmp_path, timeout=600)
    result.expect(r"U-Boot 20\d\d", "U-Boot's banner")
    if kind == "uenv":
        result.expect(r"board script: booting what /boot/loader/uEnv.txt says", "the board script")
    result.expect(r"HYBRIDOS-BOOT-MARKER", "the deployment's marker")
    assert result.markers() == [{"version": "1", "ostree-booted": "yes", "usr": "ro", "var": f"uboot-{kind}",
                                 "etc": "from-image-1"}], result.tail()
