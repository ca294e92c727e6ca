"""Fixtures for sysroot tests: tiny bootable trees, real `ostree` commits and sysroots, cleanup of +i dirs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

KVER = "6.1.0-test"
STATEROOT = "testos"


def make_tree(root: Path, version: str, *, etc: dict[str, str] | None = None, files: dict[str, str] | None = None,
              kernel: bool = True, os_release: bool = True, kernel_bytes: bytes = b"kernel image\n") -> Path:
    """A minimal deployable tree: usr/lib/os-release, usr/lib/modules/<kver>/{vmlinuz,initramfs.img}, usr/etc."""
    if root.exists():
        shutil.rmtree(root)
    (root / "usr/etc").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "var").mkdir()
    if os_release:
        (root / "usr/lib").mkdir(parents=True, exist_ok=True)
        (root / "usr/lib/os-release").write_text(f'ID={STATEROOT}\nPRETTY_NAME="Test OS"\nVERSION_ID={version}\n')
    if kernel:
        kdir = root / "usr/lib/modules" / KVER
        kdir.mkdir(parents=True)
        (kdir / "vmlinuz").write_bytes(kernel_bytes)
        (kdir / "initramfs.img").write_bytes(b"initramfs\n")
    for rel, text in {"hostname": "test\n", "motd": "hello\n", "app.conf": "a=1\n", **(etc or {})}.items():
        p = root / "usr/etc" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (root / "usr/bin/version").write_text(version + "\n")
    for rel, text in (files or {}).items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def ostree(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ostree", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"ostree {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def ostree_commit(repo: Path, tree: Path, branch: str, version: str) -> str:
    return ostree(f"--repo={repo}", "commit", f"--branch={branch}", f"--add-metadata-string=version={version}",
                  "--subject", f"v{version}", str(tree)).stdout.strip()


def unlock_tree(path: Path) -> None:
    """Remove the immutable attribute the real `ostree admin deploy` sets, so the tree can be deleted."""
    if path.exists() and shutil.which("chattr"):
        subprocess.run(["chattr", "-R", "-i", str(path)], capture_output=True)


@pytest.fixture
def workdir(tmp_path):
    yield tmp_path
    unlock_tree(tmp_path)


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything observable about a sysroot: paths with type, mode, size, link target or content digest."""
    import hashlib

    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if rel.startswith("ostree/repo/tmp") or rel == "ostree/lock":
                continue
            st = os.lstat(p)
            if os.path.islink(p):
                out[rel] = ("l", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("d", st.st_mode)
            else:
                out[rel] = ("f", st.st_mode, hashlib.sha256(p.read_bytes()).hexdigest())
    return out
