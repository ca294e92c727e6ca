"""We read sysroots written by the real `ostree admin`."""

from __future__ import annotations

import pytest

from hybridos.errors import SysrootError
from hybridos.sysroot.sysroot import Sysroot
from tests.conftest import require_tool
from tests.sysroot.conftest import KVER, STATEROOT, make_tree, ostree, ostree_commit


@pytest.fixture
def real_sysroot(workdir):
    require_tool("ostree")
    repo = workdir / "repo"
    ostree(f"--repo={repo}", "init", "--mode=archive")
    c1 = ostree_commit(repo, make_tree(workdir / "t1", "1.0"), "testos/stable", "1.0")
    c2 = ostree_commit(repo, make_tree(workdir / "t2", "2.0", kernel_bytes=b"other kernel\n"), "testos/stable", "2.0")
    sr = workdir / "sr"
    sr.mkdir()
    ostree("admin", "init-fs", str(sr))
    ostree("admin", "os-init", f"--sysroot={sr}", STATEROOT)
    ostree(f"--repo={sr}/ostree/repo", "pull-local", str(repo), c1)
    ostree("admin", "deploy", f"--sysroot={sr}", f"--os={STATEROOT}", c1, "--karg=root=/dev/vda1", "--karg=rw")
    ostree(f"--repo={sr}/ostree/repo", "pull-local", str(repo), c2)  # ostree's deploy prunes what no ref holds
    ostree("admin", "deploy", f"--sysroot={sr}", f"--os={STATEROOT}", c2)
    return sr, c1, c2


def test_load_sysroot_written_by_ostree(real_sysroot):
    sr, c1, c2 = real_sysroot
    s = Sysroot.load(sr)
    assert s.bootversion == 0 and s.subbootversion == 1
    assert [d.checksum for d in s.deployments] == [c2, c1]
    assert [d.index for d in s.deployments] == [0, 1]
    assert all(d.kargs == "root=/dev/vda1 rw" for d in s.deployments)
    assert s.deployments[0].bootcsum != s.deployments[1].bootcsum
    assert all(d.origin is not None and d.origin.refspec == c for d, c in zip(s.deployments, (c2, c1), strict=True))
    assert s.booted is None  # a sysroot that is not / is never booted
    assert s.merge_deployment(STATEROOT) == s.deployments[0]
    assert s.default_stateroot() == STATEROOT
    assert (sr / s.deployments[0].relpath / "usr/lib/modules" / KVER / "vmlinuz").is_file()


def test_bootcsum_matches_ostree(real_sysroot):
    import hashlib
    sr, c1, _ = real_sysroot
    s = Sysroot.load(sr)
    want = hashlib.sha256(b"kernel image\n" + b"initramfs\n").hexdigest()
    assert s.deployments[1].bootcsum == want


def test_broken_loader_link_is_a_clear_error(real_sysroot):
    sr, _, _ = real_sysroot
    (sr / "boot/loader").unlink()
    (sr / "boot/loader").symlink_to("loader.7")
    with pytest.raises(SysrootError, match="loader.7"):
        Sysroot.load(sr)


def test_not_a_sysroot(tmp_path):
    with pytest.raises(SysrootError, match="not an OSTree sysroot"):
        Sysroot.load(tmp_path)
