"""Interop with the real ostree: same checksums, ostree accepts what we write, we read what ostree writes."""

from __future__ import annotations

import os
import stat

import pytest

from hybridos.ostree.objects import ObjectType
from hybridos.ostree.repo import Repo, RepoMode
from tests.conftest import require_root
from tests.store.ostree_tool import listing, ostree, ostree_commit, root_checksums
from tests.store.trees import make_tree, snapshot

pytestmark = pytest.mark.tool("ostree")

CANON = ("--owner-uid=0", "--owner-gid=0", "--no-xattrs")
MODES = ["archive", "bare-user", "bare", "bare-user-only"]


def _expected_snapshot(tree, mode: str, user_mode: bool = False) -> dict:
    """What a checkout must hold: bare-user-only keeps only 0755 of the permission bits; user mode (-U)
    drops setuid/setgid from files."""
    snap = snapshot(tree)
    if mode == "bare-user-only":
        snap = {k: (kind, perm if kind == "l" else perm & 0o755, data) for k, (kind, perm, data) in snap.items()}
    if user_mode:
        snap = {k: (kind, perm & ~0o6000 if kind == "f" else perm, data) for k, (kind, perm, data) in snap.items()}
    return snap


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("src") / "tree")


@pytest.mark.parametrize("mode", MODES)
def test_same_checksums_as_ostree_commit(tmp_path, tree, mode):
    if mode == "bare":
        require_root()
    theirs = tmp_path / "theirs"
    ostree(theirs, "init", f"--mode={mode}")
    ostree_commit(theirs, tree, "x", *CANON)
    ours = Repo.init(tmp_path / "ours", mode)
    commit = ours.commit_tree(tree, branch="x", subject="s", owner_uid=0, owner_gid=0, xattrs=False)
    c = ours.load_commit(commit)
    assert (c.root_tree, c.root_meta) == root_checksums(theirs, "x")
    # ostree reads our repository: the whole tree, entry by entry, equals what ostree itself committed
    assert listing(ours.path, "x") == listing(theirs, "x")
    assert ostree(ours.path, "rev-parse", "x").stdout.strip() == commit
    assert ostree(ours.path, "show", "x", "--print-metadata-key=ostree.ref-binding").stdout.strip() == "['x']"
    assert ostree(ours.path, "cat", "x", "/ünïcödé ☃/日本語.txt").stdout == "こんにちは\n"


@pytest.mark.parametrize("mode", MODES)
def test_ostree_fsck_and_checkout_of_our_repo(tmp_path, tree, mode):
    if mode == "bare":
        require_root()
    repo = Repo.init(tmp_path / "repo", mode)
    repo.commit_tree(tree, branch="x", owner_uid=0, owner_gid=0, xattrs=False,
                     metadata={"version": "1.2.3", "custom": "value"})
    fsck = ostree(repo.path, "fsck")
    assert "corrupt" not in fsck.stdout.lower()
    args = ["checkout"] + (["-U"] if mode.startswith("bare-user") else []) + ["x", str(tmp_path / "co")]
    ostree(repo.path, *args)
    assert snapshot(tmp_path / "co") == _expected_snapshot(tree, mode, user_mode=mode.startswith("bare-user"))
    assert ostree(repo.path, "show", "x", "--print-metadata-key=version").stdout.strip() == "'1.2.3'"
    log = ostree(repo.path, "log", "x").stdout
    assert "Version: 1.2.3" in log


@pytest.mark.parametrize("mode", MODES)
def test_we_read_and_check_out_ostree_repos(tmp_path, tree, mode):
    if mode == "bare":
        require_root()
    theirs = tmp_path / "theirs"
    ostree(theirs, "init", f"--mode={mode}")
    commit = ostree_commit(theirs, tree, "x", *CANON, "--add-metadata-string=version=7")
    repo = Repo.open(theirs)
    assert repo.mode is RepoMode.parse(mode)
    assert repo.resolve_rev("x") == commit
    assert repo.list_refs() == {"x": commit}
    c = repo.load_commit(commit)
    assert c.version == "7" and c.ref_binding == ["x"]
    assert (c.root_tree, c.root_meta) == root_checksums(theirs, "x")
    assert repo.fsck() == []
    objs = repo.traverse_commit(commit)
    assert all(repo.has_object(cs, t) for cs, t in objs)
    assert sum(1 for _, t in objs if t is ObjectType.FILE) >= 20
    repo.checkout("x", tmp_path / "co", user_mode=True)
    assert snapshot(tmp_path / "co") == _expected_snapshot(tree, mode, user_mode=True)


@pytest.mark.parametrize("mode", ["bare-user", "archive"])
def test_without_canonicalization_uses_real_owner(tmp_path, tree, mode):
    """Without --owner-uid/--no-xattrs both tools record the files' real owner the same way."""
    theirs = tmp_path / "theirs"
    ostree(theirs, "init", f"--mode={mode}")
    ostree_commit(theirs, tree, "x")
    ours = Repo.init(tmp_path / "ours", mode)
    ours.commit_tree(tree, branch="x", owner_uid=None, owner_gid=None)
    assert listing(ours.path, "x") == listing(theirs, "x")


def test_our_commit_owner_override(tmp_path, tree):
    ours = Repo.init(tmp_path / "ours", "archive")
    ours.commit_tree(tree, branch="x", owner_uid=1234, owner_gid=5678, xattrs=False)
    theirs = tmp_path / "theirs"
    ostree(theirs, "init", "--mode=archive")
    ostree_commit(theirs, tree, "x", "--owner-uid=1234", "--owner-gid=5678", "--no-xattrs")
    assert root_checksums(ours.path, "x") == root_checksums(theirs, "x")
    assert " 1234 5678 " in listing(ours.path, "x")


def test_copy_checkout_restores_modes_and_owner(tmp_path, tree):
    repo = Repo.init(tmp_path / "repo", "archive")
    repo.commit_tree(tree, branch="x", owner_uid=0, owner_gid=0, xattrs=False)
    repo.checkout("x", tmp_path / "co")
    assert snapshot(tmp_path / "co") == snapshot(tree)
    st = os.lstat(tmp_path / "co" / "setuid")
    assert stat.S_IMODE(st.st_mode) == 0o4755


@pytest.mark.parametrize("mode", ["archive", "bare-user"])
def test_xattrs_are_committed_and_restored_like_ostree(tmp_path, mode):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "f").write_text("with xattrs")
    (src / "plain").write_text("without")
    os.setxattr(src / "f", "user.b", b"2")
    os.setxattr(src / "f", "user.a", b"\x00\x01binary")
    os.setxattr(src / "d", "user.dir", b"yes")
    theirs = tmp_path / "theirs"
    ostree(theirs, "init", f"--mode={mode}")
    ostree_commit(theirs, src, "x", "--owner-uid=0", "--owner-gid=0")
    ours = Repo.init(tmp_path / "ours", mode)
    ours.commit_tree(src, branch="x", owner_uid=0, owner_gid=0)
    assert root_checksums(ours.path, "x") == root_checksums(theirs, "x")
    assert ostree(ours.path, "ls", "-R", "-X", "x").stdout == ostree(theirs, "ls", "-R", "-X", "x").stdout
    header, stream = ours.open_content(ours.load_dirtree(ours.load_commit(ours.resolve_rev("x")).root_tree)
                                       .lookup_file("f"))
    stream.close()
    assert header.xattrs == ((b"user.a\0", b"\x00\x01binary"), (b"user.b\0", b"2"))
    # a copy checkout as root restores them
    ours.checkout("x", tmp_path / "co", mode="copy")
    assert os.getxattr(tmp_path / "co" / "f", "user.a") == b"\x00\x01binary"
    assert os.getxattr(tmp_path / "co" / "d", "user.dir") == b"yes"
    # with xattrs=False they are left out, as with --no-xattrs
    ours.commit_tree(src, branch="y", owner_uid=0, owner_gid=0, xattrs=False)
    ostree_commit(theirs, src, "y", "--owner-uid=0", "--owner-gid=0", "--no-xattrs")
    assert root_checksums(ours.path, "y") == root_checksums(theirs, "y")


@pytest.mark.parametrize("parallel", [True, False])
def test_checkout_parallel_and_sequential_give_the_same_tree(tmp_path, tree, parallel):
    repo = Repo.init(tmp_path / "repo", "bare-user")
    repo.commit_tree(tree, branch="x", owner_uid=0, owner_gid=0, xattrs=False)
    repo.checkout("x", tmp_path / "co", user_mode=True, parallel=parallel)
    assert snapshot(tmp_path / "co") == _expected_snapshot(tree, "bare-user", user_mode=True)
    repo.checkout("x", tmp_path / "cp", mode="copy", parallel=parallel)
    assert snapshot(tmp_path / "cp", owner=True) == {
        k: (*v, 0, 0) for k, v in snapshot(tree).items()}
