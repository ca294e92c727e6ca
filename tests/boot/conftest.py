"""Session fixtures shared by the boot tests: Debian kernels, the tiny distribution's RPMs, composed repos.

Composing is the slow part (a real kernel's modules go through depmod, the initramfs generator and the
OSTree commit), so each composed repository is made once per session and every test deploys from it into its
own sysroot and disk image.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.boot.distro import make_boot_repo, treefile
from tests.boot.kernels import debian_busybox, debian_kernel
from tests.boot.qemu import PROBE_KERNELS
from tests.boot.sysroot import compose
from tests.conftest import require_root, require_tool

BUSYBOX = Path("/bin/busybox")
REF_X86 = "testos/1/x86_64/boottest"
REF_ARM64 = "testos/1/aarch64/boottest"
REF_PPC64LE = "testos/1/ppc64le/boottest"


@pytest.fixture(scope="session")
def amd64_kernel():
    require_root()
    require_tool("apt-get", "dpkg-deb", "depmod", "mkfs.ext4", "sfdisk")
    kernel = debian_kernel("amd64")
    PROBE_KERNELS.setdefault("x86_64", kernel.vmlinuz)
    return kernel


@pytest.fixture(scope="session")
def x86_composed(amd64_kernel, tmp_path_factory):
    """Version 1 of the tiny x86_64 distribution with Debian's kernel, composed once per session."""
    work = tmp_path_factory.mktemp("x86-compose")
    rpms = make_boot_repo(work / "rpms", amd64_kernel, BUSYBOX, version="1")
    return compose(work / "compose", rpms.url, treefile(REF_X86), REF_X86)


@pytest.fixture(scope="session")
def arm64_composed(tmp_path_factory):
    """The tiny distribution for aarch64 (Debian's arm64 kernel and static busybox), composed once; the
    packages have no scriptlets, so the foreign compose runs with --no-scripts."""
    require_root()
    require_tool("apt-get", "dpkg-deb", "depmod", "mkfs.ext4", "sfdisk", "qemu-system-aarch64")
    kernel = debian_kernel("arm64")
    busybox = debian_busybox("arm64")
    work = tmp_path_factory.mktemp("arm64-compose")
    rpms = make_boot_repo(work / "rpms", kernel, busybox, version="1")
    return compose(work / "compose", rpms.url, treefile(REF_ARM64, arch="aarch64"), REF_ARM64,
                   args=("--no-scripts", "--arch", "aarch64"))


@pytest.fixture(scope="session")
def ppc64le_composed(tmp_path_factory):
    """The tiny distribution for ppc64le (Debian's ppc64el kernel, an ELF vmlinux, and static busybox)."""
    require_root()
    require_tool("apt-get", "dpkg-deb", "depmod", "mkfs.ext4", "sfdisk", "qemu-system-ppc64")
    kernel = debian_kernel("ppc64el")
    busybox = debian_busybox("ppc64el")
    work = tmp_path_factory.mktemp("ppc64le-compose")
    rpms = make_boot_repo(work / "rpms", kernel, busybox, version="1")
    return compose(work / "compose", rpms.url, treefile(REF_PPC64LE, arch="ppc64le"), REF_PPC64LE,
                   args=("--no-scripts", "--arch", "ppc64le"))
