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
              kernel: bool = True, os_release: bool = True, kernel_bytes: bytes = b"kernel image\n",
              rpms: list[Path] | None = None) -> Path:
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
    if rpms:
        from hybridos.packages.header import read_rpm_header
        from hybridos.packages.rpmdb import write_rpmdb

        write_rpmdb(root, [(read_rpm_header(p), None) for p in rpms], ostree_layout=True)
    return root


def ostree(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ostree", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"ostree {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def ostree_commit(repo: Path, tree: Path, branch: str, version: str, timestamp: str | None = None) -> str:
    extra = [f"--timestamp={timestamp}"] if timestamp else []
    return ostree(f"--repo={repo}", "commit", f"--branch={branch}", f"--add-metadata-string=version={version}",
                  "--subject", f"v{version}", *extra, str(tree)).stdout.strip()


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


class RemoteRepo:
    """An archive repository made by the real `ostree`, served over HTTP on 127.0.0.1."""

    def __init__(self, base: Path, url: str):
        self.base = base
        self.path = base / "remote"
        self.url = url
        self.n = 0
        ostree(f"--repo={self.path}", "init", "--mode=archive")

    def publish(self, version: str, ref: str = "testos/stable", timestamp: str | None = None, **tree) -> str:
        self.n += 1
        csum = ostree_commit(self.path, make_tree(self.base / f"tree{self.n}", version, **tree), ref, version,
                             timestamp)
        ostree(f"--repo={self.path}", "summary", "-u")
        return csum


@pytest.fixture
def remote(workdir):
    from tests.conftest import require_tool
    from tests.helpers.httpserver import serve

    require_tool("ostree")
    (workdir / "remote").mkdir()
    with serve(workdir / "remote") as srv:
        yield RemoteRepo(workdir, srv.url)


def hyb(sysroot: Path, *args: str, check: bool = True, env: dict | None = None):
    from tests.conftest import run_cli

    return run_cli("--sysroot", str(sysroot), *args, check=check, env=env)


@pytest.fixture
def host(workdir, remote):
    """A sysroot made by hybridos with v1.0 of origin:testos/stable deployed; returns (sysroot, remote, v1)."""
    sr = workdir / "sysroot"
    v1 = remote.publish("1.0")
    hyb(sr, "admin", "init-fs", str(sr))
    hyb(sr, "admin", "os-init", STATEROOT)
    ostree(f"--repo={sr}/ostree/repo", "remote", "add", "--no-gpg-verify", "origin", remote.url)
    ostree(f"--repo={sr}/ostree/repo", "pull", "origin", "testos/stable")
    hyb(sr, "admin", "deploy", "--os", STATEROOT, "--karg", "root=/dev/vda1", "--karg", "rw", "origin:testos/stable")
    return sr, remote, v1


def status(sysroot: Path) -> list[dict]:
    import json

    return json.loads(hyb(sysroot, "status", "--json").stdout)["deployments"]


def check_consistent(sysroot: Path) -> None:
    """The sysroot loads and every entry of the current boot/loader points to a complete deployment."""
    from hybridos.sysroot import bls
    from hybridos.sysroot.origin import parse_origin
    from hybridos.sysroot.sysroot import Sysroot

    s = Sysroot.load(sysroot)
    assert s.deployments, "no deployments"
    for d in s.deployments:
        ddir = sysroot / d.relpath
        assert (ddir / "usr/lib/os-release").is_file(), d
        assert (ddir / "usr/lib/modules" / KVER / "vmlinuz").is_file(), d
        assert (ddir / "etc/hostname").is_file(), d
        parse_origin((sysroot / d.origin_relpath).read_bytes())
        entry = s.entries[d.name]
        for key in ("linux", "initrd"):
            for p in entry.keys.get(key, ()):
                assert (sysroot / "boot" / p.lstrip("/")).is_file(), (d, p)
        assert bls.split_ostree_karg(entry.options)[0] is not None
    refs = sysroot / "ostree/repo/refs/heads/ostree" / str(s.bootversion) / str(s.subbootversion)
    for i, d in enumerate(s.deployments):
        assert (refs / str(i)).read_text().strip() == d.checksum
