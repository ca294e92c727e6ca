"""initramfs --enable regenerates the initramfs into the new deployment's boot files; --disable goes back."""

from __future__ import annotations

import subprocess

from tests.compose.conftest import KVER
from tests.layering.conftest import hyb, status


def _entry(host, dep) -> dict[str, str]:
    """The BLS entry of a deployment (found through its ostree= bootlink)."""
    for conf in (host / "boot/loader/entries").glob("ostree-*.conf"):
        keys = dict(line.split(" ", 1) for line in conf.read_text().splitlines() if " " in line)
        if f"/{dep['bootcsum']}/" in keys["options"]:
            return keys
    raise AssertionError(f"no boot entry for {dep['checksum']}")


def test_initramfs_enable_then_disable(host, layering_env):
    [base] = status(host)
    base_initrd = _entry(host, base)["initrd"]
    out = hyb(host, "initramfs", "--enable", "--arg=--zstd").stdout
    assert "Initramfs regeneration: enabled (--zstd)" in out
    new = status(host)[0]
    assert new["regenerate-initramfs"] is True and new["initramfs-args"] == ["--zstd"]
    assert new["bootcsum"] != base["bootcsum"]
    initrd = _entry(host, new)["initrd"]
    assert initrd != base_initrd and initrd == f"/ostree/testos-{new['bootcsum']}/initramfs-{KVER}.img"
    image = (host / "boot" / initrd.lstrip("/")).read_bytes()
    assert image[:4] == b"\x28\xb5\x2f\xfd"                                  # zstd, as asked
    listing = subprocess.run(["sh", "-c", "zstd -dc | cpio -t"], input=image, capture_output=True, check=True)
    assert b"init" in listing.stdout.split()
    assert "Initramfs: regenerate --zstd" in hyb(host, "status").stdout
    assert "enabled" in hyb(host, "initramfs").stdout
    again = hyb(host, "initramfs", "--enable", "--arg=--zstd", check=False)
    assert again.returncode == 1 and "already enabled" in again.stderr          # rpm-ostree exits 1 too

    hyb(host, "initramfs", "--disable")
    back = status(host)[0]
    assert back["checksum"] == layering_env.v1 and back["regenerate-initramfs"] is False
    assert back["bootcsum"] == base["bootcsum"] and _entry(host, back)["initrd"] == base_initrd


def test_kernel_replacement_regenerates_the_initramfs(host, layering_env, tmp_path):
    from tests.helpers.rpms import File, Pkg, build_rpm

    kver = "6.6.0-1.test.x86_64"
    rpm = build_rpm(Pkg("kernel", "6.6.0", release="1.test", requires=("filesystem",), files=(
        File(f"/usr/lib/modules/{kver}/vmlinuz", b"\x7fnew-kernel" * 100, mode=0o755),)), tmp_path)
    hyb(host, "override", "replace", str(rpm))
    new = status(host)[0]
    entry = _entry(host, new)
    assert entry["linux"].endswith(f"vmlinuz-{kver}") and entry["initrd"].endswith(f"initramfs-{kver}.img")
    image = (host / "boot" / entry["initrd"].lstrip("/")).read_bytes()
    listing = subprocess.run(["sh", "-c", "gzip -dc | cpio -t"], input=image, capture_output=True, check=True)
    assert b"init" in listing.stdout.split()
