"""Recommitting a hardlink checkout (devino cache) and pull-local interop with the real ostree."""

from __future__ import annotations

import os

import pytest

from hybridos.ostree.devino import DevinoCache
from hybridos.ostree.objects import ObjectType
from hybridos.ostree.repo import Repo
from tests.conftest import require_root
from tests.store.ostree_tool import listing, ostree, ostree_commit, root_checksums
from tests.store.trees import make_tree, snapshot


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("src") / "tree", big=False)


@pytest.mark.parametrize("mode", ["bare-user", "bare"])
def test_recommit_of_hardlink_checkout_uses_devino_without_reading(tmp_path, tree, mode):
    if mode == "bare":
        require_root()
    repo = Repo.init(tmp_path / "repo", mode)
    c1 = repo.commit_tree(tree, branch="x", owner_uid=0, owner_gid=0, xattrs=False)
    co = tmp_path / "co"
    repo.checkout("x", co, mode="hardlink", user_mode=(mode == "bare-user"))
    cache = DevinoCache.scan(repo)
    assert len(cache) == sum(1 for _, t in repo.list_objects() if t is ObjectType.FILE)
    c2 = repo.commit_tree(co, branch="y", devino_cache=cache, owner_uid=0, owner_gid=0, xattrs=False)
    assert repo.load_commit(c2).root_tree == repo.load_commit(c1).root_tree
    assert repo.load_commit(c2).root_meta == repo.load_commit(c1).root_meta
    # proof that file data was not read: change an object's bytes in place (its inode is shared with the
    # checkout); a devino recommit still reports the recorded checksum, a plain commit sees the new bytes
    regular = repo.load_dirtree(repo.load_commit(c1).root_tree).lookup_file("exec")
    with open(repo.object_path(regular, ObjectType.FILE), "r+b") as f:
        f.write(b"X")  # the file starts with "#!"
    c3 = repo.commit_tree(co, devino_cache=True, owner_uid=0, owner_gid=0, xattrs=False)
    c4 = repo.commit_tree(co, owner_uid=0, owner_gid=0, xattrs=False)
    assert repo.load_commit(c3).root_tree == repo.load_commit(c1).root_tree
    assert repo.load_commit(c4).root_tree != repo.load_commit(c1).root_tree


def test_devino_ignored_when_owner_override_changes_owner(tmp_path, tree):
    require_root()
    repo = Repo.init(tmp_path / "repo", "bare")
    c1 = repo.commit_tree(tree, owner_uid=0, owner_gid=0, xattrs=False)
    repo.checkout(c1, tmp_path / "co", mode="hardlink")
    c2 = repo.commit_tree(tmp_path / "co", devino_cache=True, owner_uid=42, owner_gid=42, xattrs=False)
    assert " 42 42 " in listing(repo.path, c2)
    assert " 0 0 " not in listing(repo.path, c2).split("\n", 1)[1]


def test_changed_file_in_checkout_is_recommitted(tmp_path, tree):
    repo = Repo.init(tmp_path / "repo", "bare-user")
    c1 = repo.commit_tree(tree, owner_uid=0, owner_gid=0, xattrs=False)
    co = tmp_path / "co"
    repo.checkout(c1, co, mode="hardlink", user_mode=True)
    (co / "new").write_text("replacement")
    os.replace(co / "new", co / "regular")
    c2 = repo.commit_tree(co, devino_cache=True, owner_uid=0, owner_gid=0, xattrs=False)
    new = repo.load_dirtree(repo.load_commit(c2).root_tree).lookup_file("regular")
    header, stream = repo.open_content(new)
    with stream:
        assert stream.read() == b"replacement"


@pytest.mark.tool("ostree")
@pytest.mark.parametrize("src_mode", ["archive", "bare-user"])
@pytest.mark.parametrize("dst_mode", ["archive", "bare-user"])
def test_ostree_pull_local_from_our_repo(tmp_path, tree, src_mode, dst_mode):
    ours = Repo.init(tmp_path / "ours", src_mode)
    commit = ours.commit_tree(tree, branch="x", owner_uid=0, owner_gid=0, xattrs=False,
                              metadata={"version": "1"})
    ours.write_commitmeta(commit, {"note": "detached"})
    theirs = tmp_path / "theirs"
    ostree(theirs, "init", f"--mode={dst_mode}")
    ostree(theirs, "pull-local", str(ours.path), "x")
    assert ostree(theirs, "rev-parse", "x").stdout.strip() == commit
    ostree(theirs, "fsck")
    assert listing(theirs, "x") == listing(ours.path, "x")
    assert ostree(theirs, "show", "x", "--print-detached-metadata-key=note").stdout.strip() == "'detached'"


@pytest.mark.tool("ostree")
@pytest.mark.parametrize("mode", ["archive", "bare-user", "bare-user-only"])
def test_we_read_a_repo_filled_by_ostree_pull_local(tmp_path, tree, mode):
    origin = tmp_path / "origin"
    ostree(origin, "init", "--mode=archive")
    # ostree refuses to pull setuid/setgid content into bare-user-only: commit it canonicalized there
    canon = ["--canonical-permissions"] if mode == "bare-user-only" else []
    c1 = ostree_commit(origin, tree, "x", "--owner-uid=0", "--owner-gid=0", "--no-xattrs", *canon)
    target = tmp_path / "target"
    ostree(target, "init", f"--mode={mode}")
    ostree(target, "pull-local", str(origin), "x")
    repo = Repo.open(target)
    assert repo.resolve_rev("x") == c1
    assert repo.fsck() == []
    assert (repo.load_commit(c1).root_tree, repo.load_commit(c1).root_meta) == root_checksums(origin, "x")
    repo.checkout("x", tmp_path / "co", user_mode=True)
    want = snapshot(tree)
    if mode == "bare-user-only":
        want = {k: (kind, perm if kind == "l" else perm & 0o755, d) for k, (kind, perm, d) in want.items()}
    want = {k: (kind, perm & ~0o6000 if kind == "f" else perm, d) for k, (kind, perm, d) in want.items()}
    assert snapshot(tmp_path / "co") == want
    # and we commit on top of what ostree pulled; ostree still verifies the repository
    repo.commit_tree(tmp_path / "co", branch="x", owner_uid=0, owner_gid=0, xattrs=False)
    ostree(target, "fsck")
