"""Real systemd-boot (Debian's systemd-bootx64.efi) on OVMF boots a deployment from its ESP layout, and its
own boot counting renames the entry (``+3`` -> ``+2-1``) on the FAT ESP."""

from __future__ import annotations

import pytest

from tests.boot.bootloaders import SYSTEMD_BOOT_X64
from tests.boot.disk import extract, vfat_list, vfat_read
from tests.boot.images import SETUPS, uefi
from tests.boot.qemu import boot
from tests.boot.sysroot import deploy_sysroot, write_var_data

pytestmark = [pytest.mark.slow, pytest.mark.tool("mkfs.vfat", "mcopy", "mkfs.ext4", "sfdisk")]
KARGS = ["root=LABEL=root", "rw", "console=ttyS0", "panic=10", "hybridos.fail-delay=1"]


def test_systemd_boot_boots_from_the_esp_and_counts_the_boot(tmp_path, x86_composed):
    if not SYSTEMD_BOOT_X64.exists():
        pytest.fail(f"{SYSTEMD_BOOT_X64} is missing (Debian systemd-boot-efi; scripts/system-deps.sh)")
    root = tmp_path / "sysroot"
    prepare, options = SETUPS["systemd-boot"]
    deploy_sysroot(root, x86_composed, KARGS, options=options, prepare=prepare)
    write_var_data(root, "sdboot-data")
    esp_tree = root / "boot/efi"
    entries = sorted(p.name for p in (esp_tree / "loader/entries").iterdir())
    assert len(entries) == 1 and entries[0].endswith("+3.conf"), entries
    entry_text = (esp_tree / "loader/entries" / entries[0]).read_text()
    linux = next(line.split()[1] for line in entry_text.splitlines() if line.startswith("linux "))
    assert (esp_tree / linux.lstrip("/")).is_file()          # the kernel is on the ESP, where systemd-boot reads
    spec = uefi(tmp_path, root)
    result = boot(spec.machine, spec.disks, tmp_path, timeout=420)
    result.expect(r"HYBRIDOS-BOOT-MARKER", "the deployment's marker")
    assert result.markers() == [{"version": "1", "ostree-booted": "yes", "usr": "ro", "var": "sdboot-data",
                                 "etc": "from-image-1"}], result.tail()
    after = extract(spec.disks[0], spec.offsets[0], (tmp_path / "esp.vfat").stat().st_size,
                    tmp_path / "esp-after.vfat")
    renamed = vfat_list(after, "/loader/entries")
    # systemd-boot itself decremented the counter by renaming the entry before booting it
    assert renamed == [entries[0].replace("+3.conf", "+2-1.conf")], renamed
    assert vfat_read(after, f"/loader/entries/{renamed[0]}").decode() == entry_text
