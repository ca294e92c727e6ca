"""Content objects too large for memory (over ``hybridos.fetch.SPOOL_OVER``, lowered here to 100 kB so that the
fixtures' 400 kB files count) are streamed to a file and checked and stored in bounded chunks: same results,
same errors, nothing left in ``tmp/``."""

from __future__ import annotations

import os

import pytest

from hybridos import fetch
from hybridos.errors import CorruptionError
from hybridos.fetch import BodyFile, FetchOptions
from hybridos.ostree.objects import ObjectType
from hybridos.ostree.pull import pull
from hybridos.plugins import PluginRegistry
from tests.pull import test_pull
from tests.pull.helpers import big_objects, ls_tree, make_tree, object_name, ostree_repo
from tests.pull.test_pull import FAST, fsck, local_repo

upstream = test_pull.upstream   # the same fixture: ostree's repository with two commits, served over HTTP


@pytest.fixture(autouse=True)
def small_spool_limit(monkeypatch):
    monkeypatch.setattr(fetch, "SPOOL_OVER", 100_000)


def test_read_batch_hands_large_bodies_over_as_files(upstream, tmp_path):
    big = big_objects(upstream.repo)[0]
    small = next(p for p in (upstream.repo / "objects").rglob("*.dirtree"))
    spool = tmp_path / "spool"
    spool.mkdir()
    with PluginRegistry().fetcher_for(upstream.url, FetchOptions()) as f:
        got = dict(f.read_batch([(p.name, f"{upstream.url}/objects/{p.parent.name}/{p.name}")
                                 for p in (big, small)], spool))
    body = got[big.name]
    assert isinstance(body, BodyFile) and body.temporary and body.path.parent == spool
    assert body.path.read_bytes() == big.read_bytes() and body.size == big.stat().st_size
    assert got[small.name] == small.read_bytes()
    assert [p.name for p in spool.iterdir()] == [body.path.name]   # no .part left beside it
    # a local file is handed over as itself
    fs = PluginRegistry().fetcher_for("file:///")
    [(_, local)] = list(fs.read_batch([(1, f"file://{big}")], spool))
    assert local == BodyFile(big, big.stat().st_size, temporary=False)


@pytest.mark.parametrize("mode", ["archive", "bare-user"])
def test_http_pull_streams_large_objects(upstream, tmp_path, mode):
    repo = local_repo(tmp_path / "local", mode, upstream.url)
    pull(repo, "origin", ["main"], fetch_options=FAST)
    fsck(repo.path)
    assert ls_tree(repo.path, "origin:main") == ls_tree(upstream.repo, "main")
    assert not leftovers(repo.path)


def test_large_object_cut_off_resumes(upstream, tmp_path):
    repo = local_repo(tmp_path / "local", "bare-user", upstream.url)
    bigs = big_objects(upstream.repo)
    for p in bigs:
        upstream.faults.drop_after[p.name] = p.stat().st_size // 2
    upstream.faults.drop_always = True   # the pipelined request is given up at its header: cut the download too
    pull(repo, "origin", ["main"], fetch_options=FAST)
    assert {path.rsplit("/", 1)[1] for path, rng, status in upstream.requests if rng and status == 206} \
        == {p.name for p in bigs}
    fsck(repo.path)


def test_tampered_large_object_is_refused(upstream, tmp_path):
    repo = local_repo(tmp_path / "local", "archive", upstream.url)
    big = big_objects(upstream.repo)[0]
    name = object_name(big)
    upstream.faults.tamper[big.name] = lambda b: b[:-10] + bytes(10)
    with pytest.raises(CorruptionError, match=f"content object {name}"):
        pull(repo, "origin", ["main"], fetch_options=FAST)
    assert not repo.has_object(name, ObjectType.FILE)
    assert repo.resolve_rev("origin:main", allow_missing=True) is None
    assert not leftovers(repo.path)


@pytest.mark.parametrize("mode", ["archive", "bare-user"])
def test_local_pull_of_large_objects(tmp_path, mode):
    src = tmp_path / "src"
    ostree_repo(src, make_tree(tmp_path / "tree", big=300_000))
    before = {p: p.read_bytes() for p in big_objects(src)}
    assert before
    repo = local_repo(tmp_path / "local", mode, f"file://{src}")
    pull(repo, "origin", ["main"])
    fsck(repo.path)
    assert ls_tree(repo.path, "origin:main") == ls_tree(src, "main")
    assert {p: p.read_bytes() for p in big_objects(src)} == before   # the source's files are untouched
    if mode == "archive":   # checked in chunks, then linked like the others
        for p in before:
            assert os.stat(repo.path / "objects" / p.parent.name / p.name).st_ino == os.stat(p).st_ino


def leftovers(repo_path) -> list[str]:
    """Files left in the repository's tmp/ (ostree's tmp/cache directory aside)."""
    return [p.name for p in (repo_path / "tmp").iterdir() if p.name != "cache"]
