"""Large pulls store content in forked worker processes: the same results, errors and guarantees as one
process. Forced here on small repositories by lowering the per-worker threshold (a tampered object in a worker:
test_pull.py::test_tampered_object_fails_naming_it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from hybridos.errors import NotFoundError
from hybridos.ostree.pull import pull
from tests.pull import test_pull
from tests.pull.helpers import big_objects, force_pull_workers, ls_tree, make_tree, object_name, ostree_repo
from tests.pull.test_pull import FAST, fsck, local_repo

upstream = test_pull.upstream   # the same fixture: ostree's repository with two commits, served over HTTP


@pytest.fixture(autouse=True)
def two_workers(monkeypatch):
    return force_pull_workers(monkeypatch, 2)


@pytest.mark.parametrize("mode", ["archive", "bare-user"])
def test_http_pull_with_workers(upstream, tmp_path, mode, two_workers):
    repo = local_repo(tmp_path / "local", mode, upstream.url)
    result = pull(repo, "origin", ["main"], fetch_options=FAST)
    assert len(two_workers) == 2
    expected = sum(1 for p in (upstream.repo / "objects").rglob("*.filez"))
    second = upstream.commits[1]
    assert result.refs == {"main": second}
    # the workers' counts reach the result (objects of the second commit only: depth 0)
    assert 0 < result.content_objects <= expected
    fsck(repo.path)
    assert ls_tree(repo.path, "origin:main") == ls_tree(upstream.repo, "main")


def test_local_pull_with_workers_links_checked_source_files(tmp_path, two_workers):
    src = tmp_path / "src"
    ostree_repo(src, make_tree(tmp_path / "tree", big=50_000))
    repo = local_repo(tmp_path / "local", "archive", f"file://{src}")
    pull(repo, "origin", ["main"])
    assert len(two_workers) == 2
    fsck(repo.path)
    assert ls_tree(repo.path, "origin:main") == ls_tree(src, "main")
    # every content object is the very inode of the source (a worker links the file it checked, through
    # its own /proc/self/fd: the parent's descriptor numbers mean nothing there)
    for obj in (src / "objects").rglob("*.filez"):
        mine = repo.path / "objects" / obj.parent.name / obj.name
        assert os.stat(mine).st_ino == os.stat(obj).st_ino, obj.name


def test_missing_object_in_a_worker_is_named(upstream, tmp_path):
    repo = local_repo(tmp_path / "local", "bare-user", upstream.url)
    victim = big_objects(upstream.repo)[0]
    name = object_name(victim)
    upstream.faults.status[victim.name] = 404
    with pytest.raises(NotFoundError, match=f"filez object {name} is missing"):
        pull(repo, "origin", ["main"], fetch_options=FAST)
    assert repo.resolve_rev("origin:main", allow_missing=True) is None
    assert repo.commit_is_partial(upstream.commits[1])


def test_interrupted_pull_leaves_no_worker_behind(upstream, tmp_path):
    """Ctrl-C while workers fetch: the command stops, no worker survives it, no ref moves; the next pull
    completes."""
    repo = local_repo(tmp_path / "local", "bare-user", upstream.url)
    upstream.faults.delay[".filez"] = 0.5   # slow enough to interrupt in the middle
    script = (
        "import sys\n"
        "from hybridos.ostree import pull as P\n"
        "from hybridos.ostree.repo import Repo\n"
        "P.PARALLEL_MIN_OBJECTS = 4\n"
        "P.pull_workers = lambda: 2\n"
        "P.pull(Repo.open(sys.argv[1]), 'origin', ['main'])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(repo.path)], stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while len(_children(proc.pid)) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, "the workers never started"
        time.sleep(0.05)
    workers = _children(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)   # what a terminal does on Ctrl-C: the whole foreground group
    assert proc.wait(timeout=30) != 0
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}"), f"worker {pid} outlived the pull"
    assert repo.resolve_rev("origin:main", allow_missing=True) is None
    assert repo.commit_is_partial(upstream.commits[1])
    upstream.faults.delay.clear()
    pull(repo, "origin", ["main"], fetch_options=FAST)
    fsck(repo.path)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]
