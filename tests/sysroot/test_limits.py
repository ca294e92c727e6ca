"""Filesystem limits an image can push a deployment into: the hard link limit, very deep trees, a full disk
(docs/security.md, "Errors and limits")."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.sysroot.conftest import STATEROOT, hyb, make_tree
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
