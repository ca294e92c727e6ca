"""Session fixtures shared by the boot tests: Debian kernels, the tiny distribution's RPMs, composed repos.

Composing is the slow part (a real kernel's modules go through depmod, the initramfs generator and the
OSTree commit), so each composed repository is made once per session and every test deploys from it into its
own sysroot and disk image.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.boot.distro import make_boot_repo, treefile
from tests.boot.kernels import debian_busybox, debian_kernel
from tests.boot.qemu import PROBE_KERNELS
from tests.boot.sysroot import Composed, compose
from tests.conftest import require_root, require_tool
from tests.helpers.guest_python import guest_specs

BUSYBOX = Path("/bin/busybox")
REF_X86 = "testos/1/x86_64/boottest"
REF_ARM64 = "testos/1/aarch64/boottest"
REF_PPC64LE = "testos/1/ppc64le/boottest"
REF_GUEST = "testos/1/x86_64/guest"
#: what a guest that runs hybridos itself carries (tests/helpers/guest_python.py)
GUEST_PACKAGES = ("hybridos", "hybridos-repo-fs", "hybridos-bootloader-grub",
                  "hybridos-bootloader-systemd-boot")


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


@dataclass(frozen=True)
class GuestVersions:
    v1: Composed        #: a repository whose ref is at v1 (what the image is made from)
    v2: Composed        #: the same repository with the ref moved to v2 (what the second disk carries)


@pytest.fixture(scope="session")
def guest_versions(amd64_kernel, tmp_path_factory) -> GuestVersions:
    """v1 and v2 of the tiny distribution with hybridos in it; v2 is composed on top of a copy of v1's repo."""
    work = tmp_path_factory.mktemp("guest-compose")
    extra = guest_specs(GUEST_PACKAGES)
    tf = treefile(REF_GUEST, packages=GUEST_PACKAGES)
    rpms1 = make_boot_repo(work / "rpms1", amd64_kernel, BUSYBOX, extra=extra, version="1")
    v1 = compose(work / "compose1", rpms1.url, tf, REF_GUEST, repo=work / "repo1", cachedir=work / "cache")
    shutil.copytree(v1.repo, work / "repo2", symlinks=True)
    rpms2 = make_boot_repo(work / "rpms2", amd64_kernel, BUSYBOX, extra=extra, version="2")
    v2 = compose(work / "compose2", rpms2.url, tf, REF_GUEST, repo=work / "repo2", cachedir=work / "cache")
    return GuestVersions(v1, v2)
