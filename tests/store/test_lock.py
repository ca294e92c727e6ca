"""The repository lock interoperates with ostree's, and stale temp files are cleaned."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from hybridos.ostree.lock import LockTimeout, cleanup_tmp
from hybridos.ostree.repo import Repo
from tests.store.ostree_tool import ostree

_HOLD = textwrap.dedent("""
    import sys, time
    from hybridos.ostree.repo import Repo
    with Repo.open(sys.argv[1]).lock(exclusive=sys.argv[2] == "x"):
        print("locked", flush=True)
        time.sleep(float(sys.argv[3]))
""")


def _hold(repo: Repo, exclusive: bool, seconds: float) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", _HOLD, str(repo.path), "x" if exclusive else "s", str(seconds)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def test_exclusive_excludes_and_shared_shares(tmp_path):
    repo = Repo.init(tmp_path / "repo", "archive")
    holder = _hold(repo, exclusive=False, seconds=30)
    try:
        with repo.lock():  # shared + shared
            pass
        with pytest.raises(LockTimeout, match="locked by another process"), repo.lock(exclusive=True, timeout=0.3):
            pass
    finally:
        holder.kill()
        holder.wait()
    with repo.lock(exclusive=True, timeout=1):
        pass


@pytest.mark.tool("ostree")
def test_ostree_prune_waits_for_our_shared_lock(tmp_path):
    repo = Repo.init(tmp_path / "repo", "archive")
    (tmp_path / "t").mkdir()
    repo.commit_tree(tmp_path / "t", branch="x")
    holder = _hold(repo, exclusive=False, seconds=2)
    try:
        t0 = time.monotonic()
        ostree(repo.path, "prune", "--refs-only")
        assert time.monotonic() - t0 >= 1.0  # ostree blocked until our shared lock went away
    finally:
        holder.kill()
        holder.wait()


def test_cleanup_tmp_removes_only_stale_leftovers(tmp_path):
    repo = Repo.init(tmp_path / "repo", "bare-user")
    stale = os.path.join(repo.tmp_dir, "obj-1-2-3")
    fresh = os.path.join(repo.tmp_dir, "obj-1-2-4")
    other = os.path.join(repo.tmp_dir, "someone-elses")
    for p in (stale, fresh, other):
        with open(p, "w") as f:
            f.write("x")
    assert cleanup_tmp(repo, max_age=3600) == 0
    time.sleep(0.3)
    os.chmod(fresh, 0o600)  # a change of metadata renews ctime, as a writer's fchmod/utime does
    assert cleanup_tmp(repo, max_age=0.2) == 1
    assert not os.path.exists(stale) and os.path.exists(fresh) and os.path.exists(other)


def test_lock_is_reentrant_within_a_process(tmp_path):
    repo = Repo.init(tmp_path / "repo", "archive")
    (tmp_path / "t").mkdir()
    with repo.lock():
        repo.commit_tree(tmp_path / "t", branch="x")  # takes the shared lock again
        repo.prune()  # upgrades to exclusive, then back
        with repo.lock(exclusive=True, timeout=1), repo.lock():
            pass
    holder = _hold(repo, exclusive=True, seconds=30)
    try:
        with pytest.raises(LockTimeout), repo.lock(timeout=0.2):
            pass
    finally:
        holder.kill()
        holder.wait()
