"""`hybridos repo ...` against `ostree ...` on the same repositories."""

from __future__ import annotations

import pytest

from hybridos.ostree.objects import ObjectType, Summary
from hybridos.ostree.repo import Repo
from tests.conftest import run_cli
from tests.store.ostree_tool import listing, ostree, ostree_commit
from tests.store.trees import make_tree, snapshot

pytestmark = pytest.mark.tool("ostree")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("src") / "tree", big=False)


def hy(repo, *args, check=True):
    return run_cli("repo", args[0], f"--repo={repo}", *args[1:], check=check)


def test_init_commit_log_show_cat_ls_like_ostree(tmp_path, tree):
    repo = tmp_path / "repo"
    hy(repo, "init", "--mode=archive")
    assert "mode=archive-z2" in (repo / "config").read_text()
    c1 = hy(repo, "commit", "-b", "main", "-s", "first", "--owner-uid=0", "--owner-gid=0", "--no-xattrs",
            f"--tree=dir={tree}", "--add-metadata-string=version=1.0").stdout.strip()
    c2 = hy(repo, "commit", "-b", "main", "-s", "second", "--body", "line1\nline2", "--owner-uid=0",
            "--owner-gid=0", "--no-xattrs", str(tree), "--add-metadata-string=version=2.0",
            "--add-metadata-string=org.example.key=value").stdout.strip()
    assert len(c2) == 64 and c1 != c2
    # ostree reads what we wrote and prints the same log, show, ls and cat as we do
    assert hy(repo, "log", "main").stdout == ostree(repo, "log", "main").stdout
    assert hy(repo, "show", "main").stdout == ostree(repo, "show", "main").stdout
    for key in ("version", "ostree.ref-binding", "org.example.key"):
        assert hy(repo, "show", "main", f"--print-metadata-key={key}").stdout == \
            ostree(repo, "show", "main", f"--print-metadata-key={key}").stdout
    assert hy(repo, "rev-parse", "main").stdout.strip() == c2
    assert hy(repo, "rev-parse", "main^").stdout.strip() == c1
    assert hy(repo, "rev-parse", c2[:10]).stdout.strip() == c2
    assert ostree(repo, "rev-parse", "main^").stdout.strip() == c1
    for args, path in ((["-R", "-C"], "/"), ([], "/sorted"), (["-d"], "/ünïcödé ☃"), ([], "/symlink"),
                       (["-R"], "/ünïcödé ☃"), (["-C"], "/regular")):
        assert hy(repo, "ls", *args, "main", path).stdout == ostree(repo, "ls", *args, "main", path).stdout
    assert hy(repo, "cat", "main", "/ünïcödé ☃/日本語.txt").stdout == "こんにちは\n"
    proc = hy(repo, "cat", "main", "/nope", check=False)
    assert proc.returncode == 1 and "no such path" in proc.stderr


def test_commit_from_ostree_repo_and_refs(tmp_path, tree):
    repo = tmp_path / "repo"
    ostree(repo, "init", "--mode=bare-user")
    c = ostree_commit(repo, tree, "a/b", "--owner-uid=0", "--owner-gid=0")
    assert hy(repo, "refs").stdout == ostree(repo, "refs").stdout
    hy(repo, "refs", "--create=copy", "a/b")
    assert ostree(repo, "rev-parse", "copy").stdout.strip() == c
    assert set(hy(repo, "refs").stdout.split()) == {"a/b", "copy"}
    hy(repo, "refs", "--delete", "copy")
    assert hy(repo, "refs").stdout.split() == ["a/b"]
    proc = hy(repo, "rev-parse", "nope", check=False)
    assert proc.returncode == 1 and "no such ref" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("mode", ["archive", "bare-user"])
def test_checkout_options(tmp_path, tree, mode):
    repo = tmp_path / "repo"
    hy(repo, "init", f"--mode={mode}")
    hy(repo, "commit", "-b", "x", "--owner-uid=0", "--owner-gid=0", "--no-xattrs", str(tree))
    hy(repo, "checkout", "-U", "x", str(tmp_path / "co"))
    want = {k: (kind, perm & ~0o6000 if kind == "f" else perm, data)
            for k, (kind, perm, data) in snapshot(tree).items()}
    assert snapshot(tmp_path / "co") == want
    # --subpath
    hy(repo, "checkout", "-U", "--subpath=/sorted", "x", str(tmp_path / "sub"))
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == sorted(p.name for p in (tree / "sorted").iterdir())
    # without --union an existing destination is refused; with it files are replaced
    proc = hy(repo, "checkout", "-U", "x", str(tmp_path / "co"), check=False)
    assert proc.returncode != 0 and "exists" in proc.stderr
    (tmp_path / "co" / "new").write_text("changed")  # replace, never write through a hardlink to an object
    (tmp_path / "co" / "new").replace(tmp_path / "co" / "regular")
    (tmp_path / "co" / "extra").write_text("kept")
    hy(repo, "checkout", "-U", "--union", "x", str(tmp_path / "co"))
    assert (tmp_path / "co" / "regular").read_text() == "hello\n"
    assert (tmp_path / "co" / "extra").read_text() == "kept"
    # -H: hardlinks from bare-user in user mode; impossible from archive
    proc = hy(repo, "checkout", "-U", "-H", "x", str(tmp_path / "hl"), check=False)
    if mode == "archive":
        assert proc.returncode != 0 and "hardlink" in proc.stderr
    else:
        assert proc.returncode == 0
        r = Repo.open(repo)
        regular = r.load_dirtree(r.load_commit(r.resolve_rev("x")).root_tree).lookup_file("regular")
        obj = r.object_path(regular, ObjectType.FILE)
        assert (tmp_path / "hl" / "regular").stat().st_ino == obj.stat().st_ino


def test_summary_matches_ostree(tmp_path, tree):
    repo = tmp_path / "repo"
    ostree(repo, "init", "--mode=archive")
    ostree_commit(repo, tree, "b", "--add-metadata-string=version=3")
    ostree_commit(repo, tree, "a", "--owner-uid=0")
    ostree(repo, "summary", "-u")
    theirs = Summary.parse((repo / "summary").read_bytes())
    hy(repo, "summary", "-u")
    ours = Summary.parse((repo / "summary").read_bytes())
    assert ours.refs == theirs.refs
    assert ours.metadata.keys() == theirs.metadata.keys()
    assert ours.metadata["ostree.summary.mode"] == "archive-z2"
    view = ostree(repo, "summary", "--view").stdout
    assert "Latest Commit" in view and "* a" in view
    mine = hy(repo, "summary", "--view").stdout
    assert mine.splitlines()[:4] == view.splitlines()[:4]


def test_prune_depth_and_unreachable(tmp_path, tree):
    repo = tmp_path / "repo"
    hy(repo, "init", "--mode=archive")
    c1 = hy(repo, "commit", "-b", "x", str(tree)).stdout.strip()
    (tmp_path / "t2").mkdir()
    (tmp_path / "t2" / "only-in-2").write_text("2")
    c2 = hy(repo, "commit", "-b", "x", str(tmp_path / "t2")).stdout.strip()
    r = Repo.open(repo)
    before = set(r.list_objects())
    out = hy(repo, "prune", "--refs-only").stdout
    assert "No unreachable objects" in out
    out = hy(repo, "prune", "--refs-only", "--depth=0").stdout
    assert "Deleted" in out
    after = set(r.list_objects())
    assert before - after
    assert not r.has_object(c1, ObjectType.COMMIT) and r.has_object(c2, ObjectType.COMMIT)
    assert listing(repo, "x")  # ostree still reads the surviving commit
    ostree(repo, "fsck")
    # ostree agrees nothing else is unreachable
    assert "Deleted 0 objects" in ostree(repo, "prune", "--refs-only", "--depth=0").stdout or \
        "No unreachable objects" in ostree(repo, "prune", "--refs-only", "--depth=0").stdout


def test_fsck_ok_and_log_of_shallow_history(tmp_path, tree):
    repo = tmp_path / "repo"
    hy(repo, "init", "--mode=bare-user")
    hy(repo, "commit", "-b", "x", str(tree))
    hy(repo, "commit", "-b", "x", str(tree))
    assert "no problems" in hy(repo, "fsck").stdout
    hy(repo, "prune", "--refs-only", "--depth=0")
    assert hy(repo, "log", "x").stdout == ostree(repo, "log", "x").stdout
    assert "History beyond this commit not fetched" in hy(repo, "log", "x").stdout


def test_repo_group_lists_pull_commands_when_present():
    out = run_cli("repo", "--help").stdout
    for name in ("init", "commit", "log", "ls", "cat", "checkout", "fsck", "prune", "refs", "rev-parse", "summary",
                 "show"):
        assert name in out
