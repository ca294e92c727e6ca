"""Filesystem limits an image can push a deployment into: the hard link limit, very deep trees, a full disk
(docs/security.md, "Errors and limits")."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.sysroot.conftest import STATEROOT, hyb, make_tree, ostree_commit, status
from tests.sysroot.test_hostile_image import REF, deploy, local  # noqa: F401 - the fixture

N_SAME = 33_000


@pytest.mark.slow
def test_many_identical_files_deploy_twice_despite_the_link_limit(local, workdir):  # noqa: F811
    """33,000 files share one object: the second deployment would need 66,001 links (ext4 allows 65,000)."""
    sr = local
    tree = make_tree(workdir / "t1", "1.0")
    (tree / "usr/share").mkdir()
    (tree / "usr/share/one").write_bytes(b"identical\n")
    for d in range(33):
        sub = tree / f"usr/share/same/{d}"
        sub.mkdir(parents=True)
        for i in range(N_SAME // 33):
            os.link(tree / "usr/share/one", sub / str(i))
    csum = hyb(sr, "repo", "commit", "--repo", str(sr / "ostree/repo"), f"--branch={REF}", str(tree)).stdout.strip()
    shutil.rmtree(tree)
    deploy(sr)
    deploy(sr)   # the same commit again: a second hardlink checkout of every object
    deps = sorted(p for p in (sr / "ostree/deploy" / STATEROOT / "deploy").glob(f"{csum}.*") if p.is_dir())
    assert len(deps) == 2
    for dep in deps:
        files = os.listdir(dep / "usr/share/same/32")
        assert len(files) == N_SAME // 33
        assert (dep / "usr/share/same/32" / files[-1]).read_bytes() == b"identical\n"
    links = os.stat(deps[1] / "usr/share/same/32/999").st_nlink
    assert links == 1 or links > N_SAME   # a copy once the object was full, else a link


def commit_with_deep_dir(repo_path, tree, levels: int) -> str:
    """Commit ``tree`` with ``levels`` nested directories added at usr/share/deep, written as dirtree objects
    directly (as a hostile remote would serve them): no PATH_MAX-breaking tree on disk, no slow walk."""
    import dataclasses

    from hybridos.ostree.objects import DirTree
    from hybridos.ostree.repo import Repo

    repo = Repo.open(repo_path)
    base = repo.load_commit(repo.commit_tree(tree, branch=REF))
    root = repo.load_dirtree(base.root_tree)
    usr_t, usr_m = next((t, m) for n, t, m in root.dirs if n == "usr")
    usr = repo.load_dirtree(usr_t)
    chain = repo.write_dirtree(DirTree())
    for _ in range(levels):
        chain = repo.write_dirtree(DirTree(dirs=(("d", chain, usr_m),)))
    share = repo.write_dirtree(DirTree(dirs=(("deep", chain, usr_m),)))
    usr_t = repo.write_dirtree(dataclasses.replace(usr, dirs=(*usr.dirs, ("share", share, usr_m))))
    root_t = repo.write_dirtree(dataclasses.replace(
        root, dirs=tuple((n, usr_t if n == "usr" else t, m) for n, t, m in root.dirs)))
    commit = repo.write_commit(dataclasses.replace(base, root_tree=root_t, parent=None))
    repo.set_ref(REF, commit)
    return commit


def test_a_10000_level_tree_is_a_clear_error_and_leaves_nothing(local, workdir):  # noqa: F811
    sr = local
    commit_with_deep_dir(sr / "ostree/repo", make_tree(workdir / "t1", "1.0"), 10_000)
    r = deploy(sr, check=False)
    assert r.returncode == 1 and "deeper than 256 levels" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert os.listdir(sr / "ostree/deploy" / STATEROOT / "deploy") == []   # no partial deployment
    hyb(sr, "status")


@pytest.fixture
def small_boot(local):  # noqa: F811
    """The sysroot's /boot on its own 3 MiB filesystem (a tmpfs), as a separate boot partition."""
    from tests.conftest import require_root, require_tool

    require_root()
    require_tool("mount", "umount")
    boot = local / "boot"
    saved = {p.name: os.readlink(p) for p in boot.iterdir() if p.is_symlink()}
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(boot)], check=True)
    try:
        for name, target in saved.items():
            os.symlink(target, boot / name)
        yield local
    finally:
        subprocess.run(["umount", "-l", str(boot)])


def test_full_boot_is_a_clear_error_and_leftovers_never_block_the_next_upgrade(small_boot, workdir):
    sr = small_boot
    big = make_tree(workdir / "t1", "1.0", kernel_bytes=os.urandom(4 << 20))
    ostree_commit(sr / "ostree/repo", big, REF, "1.0")
    r = deploy(sr, check=False)
    assert r.returncode == 1 and "No space left on device" in r.stderr, r.stderr
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr
    assert os.listdir(sr / "ostree/deploy" / STATEROOT / "deploy") == []    # the new deployment is gone again
    assert not [n for n in os.listdir(sr / "boot/ostree") if n.startswith(".tmp-")]
    # a crash in the middle of writing boot files left 2 MiB behind; the next deployment still fits
    stale = sr / "boot/ostree/.tmp-testos-0123456789abcdef"
    stale.mkdir()
    (stale / "vmlinuz-6.1").write_bytes(os.urandom(2 << 20))
    ostree_commit(sr / "ostree/repo", make_tree(workdir / "t2", "2.0", kernel_bytes=os.urandom(1200 << 10)), REF,
                  "2.0")
    deploy(sr)
    assert not stale.exists()
    assert status(sr)[0]["version"] == "2.0"
