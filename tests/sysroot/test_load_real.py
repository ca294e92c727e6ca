"""We read sysroots written by the real `ostree admin`."""

from __future__ import annotations

from pathlib import Path

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


def _layout(sr):
    """Relative path -> symlink target or file bytes, for everything ostree admin writes outside the repo."""
    import os

    out = {}
    for top in ("boot", "ostree"):
        for dirpath, dirnames, filenames in os.walk(sr / top):
            dirnames[:] = [d for d in dirnames if not (top == "ostree" and d in ("repo", "deploy"))]
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                rel = os.path.relpath(p, sr)
                if os.path.islink(p):
                    out[rel] = ("link", os.readlink(p))
                elif os.path.isfile(p):
                    out[rel] = ("file", Path(p).read_bytes())
    for p in sorted((sr / f"ostree/deploy/{STATEROOT}/deploy").iterdir()):
        if p.name.endswith(".origin"):
            out[str(p.relative_to(sr))] = ("file", p.read_bytes())
    refs = sr / "ostree/repo/refs/heads/ostree"
    for p in sorted(refs.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(sr))] = ("file", p.read_bytes())
    out.pop("ostree/lock", None)
    return out


def _etc(sr):
    """The default deployment's /etc after the merge: path -> (mode, link target or content)."""
    import os

    etc = sr / Sysroot.load(sr).deployments[0].relpath / "etc"
    out = {}
    for p in sorted(etc.rglob("*")):
        st = os.lstat(p)
        out[str(p.relative_to(etc))] = (st.st_mode, os.readlink(p) if p.is_symlink() else
                                        p.read_bytes() if p.is_file() else None)
    return out


def _twin_sysroots(workdir, name):
    from tests.sysroot.conftest import hyb

    theirs, ours = workdir / f"theirs-{name}", workdir / f"ours-{name}"
    theirs.mkdir()
    ostree("admin", "init-fs", str(theirs))
    ostree("admin", "os-init", f"--sysroot={theirs}", STATEROOT)
    hyb(ours, "admin", "init-fs", str(ours))
    hyb(ours, "admin", "os-init", STATEROOT)
    return theirs, ours


def _deploy_both(repo, theirs, ours, ref, *kargs):
    from tests.sysroot.conftest import hyb

    for sr in (theirs, ours):
        ostree(f"--repo={sr}/ostree/repo", "pull-local", str(repo), ref)
    ostree("admin", "deploy", f"--sysroot={theirs}", f"--os={STATEROOT}", *(f"--karg={k}" for k in kargs), ref)
    hyb(ours, "admin", "deploy", "--os", STATEROOT, *(a for k in kargs for a in ("--karg", k)), ref)


def test_same_deployments_give_the_same_layout_as_ostree(workdir):
    """Deploying the same commits with the same kernel arguments, hybridos and ostree write the same files."""
    require_tool("ostree")
    repo = workdir / "repo"
    ostree(f"--repo={repo}", "init", "--mode=archive")
    c1 = ostree_commit(repo, make_tree(workdir / "t1", "1.0"), "testos/stable", "1.0")
    theirs, ours = _twin_sysroots(workdir, "plain")
    _deploy_both(repo, theirs, ours, "testos/stable", "root=/dev/vda1", "rw")
    assert _layout(ours) == _layout(theirs)
    for sr in (theirs, ours):     # the same local /etc changes on both
        etc = sr / Sysroot.load(sr).deployments[0].relpath / "etc"
        (etc / "motd").write_text("local\n")
        (etc / "app.conf").unlink()
        (etc / "sub/dir").mkdir(parents=True)
        (etc / "sub/dir/new.conf").write_text("new\n")
        (etc / "link").symlink_to("motd")
    c2 = ostree_commit(repo, make_tree(workdir / "t2", "2.0", kernel_bytes=b"kernel 2\n"), "testos/stable", "2.0")
    _deploy_both(repo, theirs, ours, "testos/stable")
    assert _layout(ours) == _layout(theirs)
    assert [d.checksum for d in Sysroot.load(ours).deployments] == [c2, c1]
    assert _etc(ours) == _etc(theirs) and "sub/dir/new.conf" in _etc(ours)

    # device trees: a single file, and a directory (bootcsum covers them; entries name them)
    kdir = f"usr/lib/modules/{KVER}"
    ostree_commit(repo, make_tree(workdir / "t3", "3.0", files={f"{kdir}/devicetree": "dtb\n"}), "dt/file", "3.0")
    ostree_commit(repo, make_tree(workdir / "t4", "4.0", files={f"{kdir}/dtb/b.dtb": "b\n",
                                                                 f"{kdir}/dtb/vendor/a.dtb": "a\n"}), "dt/dir", "4.0")
    for ref in ("dt/file", "dt/dir"):
        theirs, ours = _twin_sysroots(workdir, ref.replace("/", "-"))
        _deploy_both(repo, theirs, ours, ref)
        assert _layout(ours) == _layout(theirs), ref
