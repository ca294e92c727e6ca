"""Real U-Boot (Debian's u-boot-qemu, qemu_arm64) boots an arm64 deployment with /boot on / through each file
the uboot plugin writes: extlinux.conf, boot.scr, and ostree's uEnv.txt read by a board script. TCG: lean."""

from __future__ import annotations

import pytest

from tests.boot.images import SETUPS, uboot_arm64
from tests.boot.qemu import UBOOT_ARM64, boot
from tests.boot.sysroot import bls_entries, deploy_sysroot, write_var_data

pytestmark = [pytest.mark.slow, pytest.mark.tool("mkimage", "mkfs.ext4", "sfdisk", "qemu-system-aarch64")]
KARGS = ["root=LABEL=root", "rw", "console=ttyAMA0", "panic=10", "hybridos.fail-delay=1"]
FILES = {"extlinux": "extlinux.conf", "bootscr": "boot.scr", "uenv": "uEnv.txt"}


@pytest.mark.parametrize("kind", ["extlinux", "bootscr", "uenv"])
def test_uboot_qemu_arm64_boots_the_deployment(tmp_path, arm64_composed, kind):
    if not UBOOT_ARM64.exists():
        pytest.fail(f"{UBOOT_ARM64} is missing (Debian u-boot-qemu; scripts/system-deps.sh)")
    root = tmp_path / "sysroot"
    prepare, options = SETUPS[f"uboot-{kind}"]
    deploy_sysroot(root, arm64_composed, KARGS, options=options, prepare=prepare)
    write_var_data(root, f"uboot-{kind}")
    entry = bls_entries(root)[0]
    assert entry["linux"].startswith("/boot/ostree/")
    loader = root / "boot/loader"
    written = sorted(p.name for p in loader.iterdir() if p.is_file())
    assert FILES[kind] in written, written
    if kind == "uenv":
        assert "extlinux.conf" not in written and "boot.scr" not in written
        assert f"kernel_image={entry['linux']}" in (loader / "uEnv.txt").read_text()
    spec = uboot_arm64(tmp_path, root)
    result = boot(spec.machine, spec.disks, tmp_path, timeout=600)
    result.expect(r"U-Boot 20\d\d", "U-Boot's banner")
    if kind == "uenv":
        result.expect(r"board script: booting what /boot/loader/uEnv.txt says", "the board script")
    result.expect(r"HYBRIDOS-BOOT-MARKER", "the deployment's marker")
    assert result.markers() == [{"version": "1", "ostree-booted": "yes", "usr": "ro", "var": f"uboot-{kind}",
                                 "etc": "from-image-1"}], result.tail()
