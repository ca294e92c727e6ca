"""Real Linux kernels from Debian's packages, for boot tests; never installed on the host.

:func:`debian_kernel` resolves the ``linux-image-<flavour>`` meta package to the versioned image package,
fetches it with ``apt-get download`` (as root, after ``apt-get update``), unpacks it with ``dpkg-deb -x`` and
keeps the kernel, its config and the modules a small machine needs to find its root (storage, filesystems,
crypto; the rest of the 400 MB is dropped). The result lives in a cache directory keyed by the package's
version (``$HYBRIDOS_TEST_CACHE``, else ``~/.cache/hybridos-tests``), so a test session downloads each kernel
at most once. No ``modules.dep`` is kept: like the real package, compose must run depmod.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Debian architecture -> (meta package, the architecture qualifier apt needs)
META_PACKAGES = {
    "amd64": "linux-image-amd64",
    "arm64": "linux-image-arm64:arm64",
    "ppc64el": "linux-image-powerpc64le:ppc64el",
}
#: module directories (relative to lib/modules/<kver>/kernel) a tiny virtual or generic machine needs;
#: drivers/scsi keeps only its top-level modules (sd_mod, virtio_scsi, scsi_mod...).
KEEP = ("arch", "block", "crypto", "lib", "fs/ext4", "fs/jbd2", "fs/xfs", "fs/fat", "fs/nls", "fs/mbcache.ko",
        "drivers/block", "drivers/virtio", "drivers/nvme", "drivers/ata", "drivers/scsi/*.ko")
INDEXES = ("modules.order", "modules.builtin", "modules.builtin.modinfo")


@dataclass(frozen=True)
class DebianKernel:
    """An unpacked, trimmed Debian kernel: ``root/vmlinuz``, ``root/config``, ``root/modules/kernel/...``."""

    arch: str          #: Debian architecture (amd64, arm64, ppc64el)
    package: str       #: e.g. linux-image-6.1.0-57-amd64
    version: str       #: Debian package version, e.g. 6.1.188-1
    kver: str          #: kernel release, e.g. 6.1.0-57-amd64
    root: Path

    @property
    def vmlinuz(self) -> Path:
        return self.root / "vmlinuz"

    @property
    def modules(self) -> Path:
        return self.root / "modules"


def cache_dir() -> Path:
    return Path(os.environ.get("HYBRIDOS_TEST_CACHE") or Path.home() / ".cache/hybridos-tests")


def _apt(*args: str) -> str:
    p = subprocess.run(list(args), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    return p.stdout


def resolve_package(arch: str) -> tuple[str, str]:
    """(versioned image package with arch qualifier, its candidate version) for the meta package of ``arch``."""
    meta = META_PACKAGES[arch]
    out = _apt("apt-cache", "depends", meta)
    deps = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.strip().startswith("Depends:")]
    image = next((d for d in deps if d.startswith("linux-image-")), None)
    if image is None:
        raise RuntimeError(f"{meta} depends on no linux-image package:\n{out}")
    if ":" not in image and ":" in meta:
        image += ":" + meta.split(":", 1)[1]
    policy = _apt("apt-cache", "policy", image)
    version = next(line.split(":", 1)[1].strip() for line in policy.splitlines()
                   if line.strip().startswith("Candidate:"))
    if version in ("", "(none)"):
        raise RuntimeError(f"apt has no candidate for {image}")
    return image, version


def _keep(src_kernel: Path, dest_kernel: Path) -> None:
    for pattern in KEEP:
        for src in src_kernel.glob(pattern):
            dest = dest_kernel / src.relative_to(src_kernel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dest, symlinks=True)
            else:
                shutil.copy2(src, dest)


def debian_kernel(arch: str = "amd64") -> DebianKernel:
    """The trimmed Debian kernel for ``arch``, downloaded and unpacked once per package version.

    Skips (fails under HYBRIDOS_REQUIRE_TOOLS=1) when apt cannot provide it, with apt's message."""
    from tests.conftest import REQUIRE_TOOLS

    try:
        package, version = resolve_package(arch)
    except (RuntimeError, StopIteration, FileNotFoundError) as exc:
        msg = f"cannot find Debian's {arch} kernel package with apt ({exc}); run scripts/system-deps.sh as root"
        if REQUIRE_TOOLS:
            pytest.fail(msg)
        pytest.skip(msg)
    name = package.split(":", 1)[0]
    root = cache_dir() / "kernels" / f"{name}_{version}_{arch}"
    done = root / ".complete"
    if not done.exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="kernel-", dir=root.parent) as tmp:
            tmp = Path(tmp)
            try:
                subprocess.run(
                    ["apt-get", "download", "-q", f"{package}={version}"], cwd=tmp, check=True,
                    capture_output=True, text=True)
            except subprocess.CalledProcessError as exc:
                msg = f"apt-get download {package}={version} failed: {exc.stderr.strip()[-500:]}"
                if REQUIRE_TOOLS:
                    pytest.fail(msg)
                pytest.skip(msg)
            deb = next(tmp.glob("*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp / "x")], check=True, capture_output=True)
            mods = next((tmp / "x").glob("*lib/modules/*"))
            kver = mods.name
            out = tmp / "out"
            (out / "modules").mkdir(parents=True)
            boot = tmp / "x/boot"
            vmlinuz = next(p for p in (boot / f"vmlinuz-{kver}", boot / f"vmlinux-{kver}") if p.exists())
            shutil.copy2(vmlinuz, out / "vmlinuz")
            shutil.copy2(boot / f"config-{kver}", out / "config")
            _keep(mods / "kernel", out / "modules/kernel")
            for index in INDEXES:
                if (mods / index).exists():
                    shutil.copy2(mods / index, out / "modules" / index)
            (out / "kver").write_text(kver + "\n")
            if root.exists():
                shutil.rmtree(root)
            os.rename(out, root)
        done.write_text(f"{package}={version}\n")
    kver = (root / "kver").read_text().strip()
    return DebianKernel(arch=arch, package=name, version=version, kver=kver, root=root)


def _candidate(package: str) -> str:
    """The version apt would install of ``package`` (skip, or fail in CI, when apt knows none)."""
    from tests.conftest import REQUIRE_TOOLS

    try:
        policy = _apt("apt-cache", "policy", package)
        version = next(line.split(":", 1)[1].strip() for line in policy.splitlines()
                       if line.strip().startswith("Candidate:"))
        if version in ("", "(none)"):
            raise RuntimeError(f"apt has no candidate for {package}")
    except (RuntimeError, StopIteration, FileNotFoundError) as exc:
        msg = f"cannot find {package} with apt ({exc}); run scripts/system-deps.sh as root"
        if REQUIRE_TOOLS:
            pytest.fail(msg)
        pytest.skip(msg)
    return version


def _unpack(package: str, version: str, tmp: Path) -> Path:
    """``apt-get download`` of ``package=version`` into ``tmp``, unpacked with ``dpkg-deb -x`` to ``tmp/x``."""
    from tests.conftest import REQUIRE_TOOLS

    p = subprocess.run(["apt-get", "download", "-q", f"{package}={version}"], cwd=tmp, capture_output=True,
                       text=True)
    if p.returncode != 0:
        msg = f"apt-get download {package}={version} failed: {p.stderr.strip()[-500:]}"
        if REQUIRE_TOOLS:
            pytest.fail(msg)
        pytest.skip(msg)
    subprocess.run(["dpkg-deb", "-x", str(next(tmp.glob("*.deb"))), str(tmp / "x")], check=True,
                   capture_output=True)
    return tmp / "x"


def debian_busybox(arch: str) -> Path:
    """Debian's static busybox for ``arch`` (``busybox-static:<arch>``, downloaded and unpacked once)."""
    package = "busybox-static" if arch == "amd64" else f"busybox-static:{arch}"
    version = _candidate(package)
    dest = cache_dir() / "busybox" / f"busybox-static_{version.replace(':', '_')}_{arch}"
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="busybox-", dir=dest.parent) as tmp:
            tmp = Path(tmp)
            shutil.copy2(_unpack(package, version, tmp) / "bin/busybox", tmp / "busybox")
            os.rename(tmp / "busybox", dest)
    return dest


def debian_package_tree(package: str) -> Path:
    """The unpacked files of a Debian package (``name`` or ``name:arch``), downloaded once per version and kept
    under the cache directory (``dpkg-deb -x``; nothing is installed)."""
    version = _candidate(package)
    dest = cache_dir() / "packages" / f"{package.replace(':', '_')}_{version.replace(':', '_')}"
    if not (dest / ".complete").exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="deb-", dir=dest.parent) as tmp:
            tree = _unpack(package, version, Path(tmp))
            (tree / ".complete").write_text(f"{package}={version}\n")
            if dest.exists():
                shutil.rmtree(dest)
            os.rename(tree, dest)
    return dest
