"""Real systemd-boot (Debian's systemd-bootx64.efi) on OVMF boots a deployment from its ESP layout, and its
own boot counting renames the entry (``+3`` -> ``+2-1``) on the FAT ESP."""

from __future__ import annotations

import pytest

from tests.boot.bootloaders import SYSTEMD_BOOT_X64
from tests.boot.disk import (
    ESP,
    LINUX,
    Partition,
    assemble,
    ext4_image,
    extract,
    vfat_image,
    vfat_list,
    vfat_read,
)
from tests.boot.qemu import Machine, boot
from tests.boot.sysroot import deploy_sysroot, write_var_data

pytestmark = [pytest.mark.slow, pytest.mark.tool("mkfs.vfat", "mcopy", "mkfs.ext4", "sfdisk")]
KARGS = ["root=LABEL=root", "rw", "console=ttyS0", "panic=10", "hybridos.fail-delay=1"]


def _esp_with_systemd_boot(root):
    if not SYSTEMD_BOOT_X64.exists():
        pytest.fail(f"{SYSTEMD_BOOT_X64} is missing (Debian systemd-boot-efi; scripts/system-deps.sh)")
    esp = root / "boot/efi"
    for d in ("EFI/BOOT", "EFI/systemd", "loader/entries"):
        (esp / d).mkdir(parents=True)
    (esp / "EFI/BOOT/BOOTX64.EFI").write_bytes(SYSTEMD_BOOT_X64.read_bytes())
    (esp / "EFI/systemd/systemd-bootx64.efi").write_bytes(SYSTEMD_BOOT_X64.read_bytes())


def test_systemd_boot_boots_from_the_esp_and_counts_the_boot(tmp_path, x86_composed):
    root = tmp_path / "sysroot"
    deploy_sysroot(root, x86_composed, KARGS, options={"boot-counting": "3", "timeout": "0"},
                   prepare=_esp_with_systemd_boot)
    write_var_data(root, "sdboot-data")
    esp_tree = root / "boot/efi"
    entries = sorted(p.name for p in (esp_tree / "loader/entries").iterdir())
    assert len(entries) == 1 and entries[0].endswith("+3.conf"), entries
    entry_text = (esp_tree / "loader/entries" / entries[0]).read_text()
    linux = next(line.split()[1] for line in entry_text.splitlines() if line.startswith("linux "))
    assert (esp_tree / linux.lstrip("/")).is_file()          # the kernel is on the ESP, where systemd-boot reads
    esp = vfat_image(tmp_path / "esp.vfat", esp_tree, size_mb=48)
    moved = tmp_path / "esp-tree"
    esp_tree.rename(moved)
    esp_tree.mkdir()
    try:
        rootfs = ext4_image(tmp_path / "root.ext4", root, "root")
    finally:
        esp_tree.rmdir()
        moved.rename(esp_tree)
    disk = tmp_path / "disk.img"
    offsets = assemble(disk, [Partition(ESP, esp, name="ESP"), Partition(LINUX, rootfs, name="root")])
    result = boot(Machine("x86_64", "uefi"), [disk], tmp_path, timeout=420)
    result.expect(r"HYBRIDOS-BOOT-MARKER", "the deployment's marker")
    assert result.markers() == [{"version": "1", "ostree-booted": "yes", "usr": "ro", "var": "sdboot-data",
                                 "etc": "from-image-1"}], result.tail()
    after = extract(disk, offsets[0], esp.stat().st_size, tmp_path / "esp-after.vfat")
    renamed = vfat_list(after, "/loader/entries")
    # systemd-boot itself decremented the counter by renaming the entry before booting it
    assert renamed == [entries[0].replace("+3.conf", "+2-1.conf")], renamed
    assert vfat_read(after, f"/loader/entries/{renamed[0]}").decode() == entry_text
