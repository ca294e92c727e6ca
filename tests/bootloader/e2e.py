"""End-to-end helpers: real commits (made by the real ``ostree``) deployed with the ``hybridos`` command line."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from hybridos.arch import Architecture
from tests.bootloader.fixtures import dtb, kernel_for
from tests.conftest import run_cli

STATEROOT = "fedora"
SYSTEM_UENV = "board_name=rockpro64\n"


def make_sysroot(root: Path, options: dict[str, str] | None = None, env: dict | None = None) -> Path:
    run_cli("admin", "init-fs", str(root), env=env)
    run_cli("admin", "os-init", "--sysroot", str(root), STATEROOT, env=env)
    if options:
        with open(root / "ostree/repo/config", "a") as f:
            f.write("\n[sysroot]\n" + "".join(f"{k}={v}\n" for k, v in options.items()))
    return root


def commit(root: Path, arch: Architecture, n: int, work: Path) -> str:
    """Commit an OS tree for ``arch`` (kernel stand-in, initramfs, dtb/ on aarch64) with the real ostree."""
    tree = work / f"tree-{arch.value}-{n}"
    kdir = tree / "usr/lib/modules/6.1.0"
    kdir.mkdir(parents=True)
    (kdir / "vmlinuz").write_bytes(kernel_for(arch, f"{arch.value} build {n}".encode()))
    (kdir / "initramfs.img").write_bytes(b"070701" + f"initramfs {n}".encode())
    if arch == Architecture.AARCH64:
        for rel in ("qemu/virt.dtb", "rockchip/rk3399-rockpro64.dtb"):
            (kdir / "dtb" / rel).parent.mkdir(parents=True, exist_ok=True)
            (kdir / "dtb" / rel).write_bytes(dtb(f"{rel} {n}"))
        (tree / "usr/lib/ostree-boot").mkdir(parents=True)
        (tree / "usr/lib/ostree-boot/uEnv.txt").write_text(SYSTEM_UENV)
    (tree / "usr/lib/os-release").write_text('ID=fedora\nPRETTY_NAME="Fedora Linux"\n')
    (tree / "usr/etc").mkdir(parents=True)
    (tree / "usr/etc/hostname").write_text("host\n")
    return subprocess.run(
        ["ostree", f"--repo={root}/ostree/repo", "commit", "--branch=os/stable",
         f"--add-metadata-string=version=39.{n}", "--subject", f"build {n}", str(tree)],
        capture_output=True, text=True, check=True).stdout.strip()


def deploy(root: Path, checksum: str, env: dict | None = None, check: bool = True):
    """``hybridos admin deploy``; with ``check=False`` the completed process is returned as it ended."""
    return run_cli("admin", "deploy", "--sysroot", str(root), "--os", STATEROOT, "--karg", "rw", checksum,
                   env=env, check=check)


def rollback(root: Path, env: dict | None = None) -> None:
    run_cli("--sysroot", str(root), "rollback", env=env)


def ostree_status_order(root: Path) -> list[str]:
    """Deployment names (<commit>.<serial>) in boot order, as the real ``ostree admin status`` reports them."""
    out = subprocess.run(["ostree", "admin", "status", f"--sysroot={root}"], capture_output=True, text=True,
                         check=True).stdout
    return re.findall(rf"^\*?\s+{STATEROOT} ([0-9a-f]{{64}}\.\d+)", out, re.MULTILINE)


def deployment_of(root: Path, options: str) -> str:
    """The deployment a kernel command line boots: its ostree= karg resolved through the sysroot's links."""
    karg = next(a for a in options.split() if a.startswith("ostree="))
    return Path(os.path.realpath(root / karg.removeprefix("ostree=").lstrip("/"))).name
