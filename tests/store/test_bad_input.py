"""Bad input: corrupt objects, malformed GVariant, unstorable files, unknown modes, interrupted commits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from hybridos.errors import ConfigError, CorruptionError, FormatError, HybridosError, NotFoundError
from hybridos.ostree.objects import DirTree, FileHeader, ObjectType
from hybridos.ostree.repo import Repo, RepoMode
from tests.conftest import require_root, require_tool, run_cli
from tests.store.ostree_tool import ostree
from tests.store.trees import make_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("src") / "tree", big=False)


def _flip(path, offset=None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))


def _pick(repo: Repo, otype: ObjectType) -> str:
    """An object of that type with enough bytes to corrupt (the largest)."""
    objs = [c for c, t in repo.list_objects() if t is otype]
    return max(objs, key=lambda c: os.lstat(repo.object_path(c, otype)).st_size)


@pytest.mark.parametrize("mode", ["archive", "bare-user", "bare", "bare-user-only"])
@pytest.mark.parametrize("otype", [ObjectType.COMMIT, ObjectType.DIR_TREE, ObjectType.DIR_META, ObjectType.FILE])
def test_flipped_byte_is_named_by_fsck(tmp_path, tree, mode, otype):
    if mode == "bare":
        require_root()
    repo = Repo.init(tmp_path / "repo", mode)
    repo.commit_tree(tree, branch="x", owner_uid=0, owner_gid=0, xattrs=False)
    assert repo.fsck() == []
    victim = _pick(repo, otype)
    path = repo.object_path(victim, otype)
    _flip(path)
    problems = repo.fsck()
    assert [(p.checksum, p.otype) for p in problems][:1] == [(victim, otype)]
    proc = run_cli("repo", "fsck", f"--repo={repo.path}", check=False)
    assert proc.returncode == 1
    assert victim in proc.stderr and "Traceback" not in proc.stderr
    # the real ostree agrees that the repository is corrupt
    require_tool("ostree")
    assert ostree(repo.path, "fsck", check=False).returncode != 0


def test_truncated_filez_and_missing_object(tmp_path, tree):
    repo = Repo.init(tmp_path / "repo", "archive")
    repo.commit_tree(tree, branch="x")
    victim = _pick(repo, ObjectType.FILE)
    path = repo.object_path(victim, ObjectType.FILE)
    path.write_bytes(path.read_bytes()[:-2])
    gone = _pick(repo, ObjectType.DIR_META)
    os.unlink(repo.object_path(gone, ObjectType.DIR_META))
    problems = {(p.checksum, p.otype): p.message for p in repo.fsck()}
    assert "corrupted" in problems[(victim, ObjectType.FILE)]
    assert "missing" in problems[(gone, ObjectType.DIR_META)]


def test_truncated_gvariant_is_a_clear_error(tmp_path, tree):
    repo = Repo.init(tmp_path / "repo", "archive")
    commit = repo.commit_tree(tree, branch="x", subject="a subject that makes the commit longer")
    path = repo.object_path(commit, ObjectType.COMMIT)
    data = path.read_bytes()
    for cut in (1, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(CorruptionError, match=commit):
            repo.load_commit(commit)
    proc = run_cli("repo", "show", f"--repo={repo.path}", "x", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
    with pytest.raises(FormatError):
        DirTree.parse(DirTree(files=(("a", "11" * 32),)).serialize()[:-3])


def test_writes_verify_expected_checksums(tmp_path):
    repo = Repo.init(tmp_path / "repo", "bare-user")
    data = DirTree().serialize()
    with pytest.raises(CorruptionError):
        repo.write_metadata_bytes(ObjectType.DIR_TREE, data, expected="00" * 32)
    assert not repo.has_object("00" * 32, ObjectType.DIR_TREE)
    with pytest.raises(CorruptionError):
        repo.write_metadata_bytes(ObjectType.DIR_TREE, b"\x01\x02", expected=None)
    with pytest.raises(CorruptionError):
        repo.write_content(FileHeader(0, 0, 0o100644), b"data", expected="11" * 32)
    assert list(repo.list_objects()) == []
    assert os.listdir(repo.tmp_dir) == []


@pytest.mark.parametrize("kind", ["fifo", "socket", "chardev"])
def test_special_files_are_refused(tmp_path, kind):
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok").write_text("ok")
    special = src / "special"
    if kind == "fifo":
        os.mkfifo(special)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(special))
        s.close()
    else:
        require_root()
        os.mknod(special, 0o600 | 0o020000, os.makedev(1, 3))
    repo = Repo.init(tmp_path / "repo", "archive")
    with pytest.raises(FormatError, match="special"):
        repo.commit_tree(src, branch="x")
    assert repo.list_refs() == {}
    proc = run_cli("repo", "commit", f"--repo={repo.path}", "-b", "x", str(src), check=False)
    assert proc.returncode == 1 and "only regular files, symlinks and directories" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_invalid_utf8_name_is_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with open(os.path.join(os.fsencode(src), b"bad\xff\xfename"), "w") as f:
        f.write("x")
    repo = Repo.init(tmp_path / "repo", "archive")
    with pytest.raises(FormatError, match="not valid UTF-8"):
        repo.commit_tree(src, branch="x")
    proc = run_cli("repo", "commit", f"--repo={repo.path}", "-b", "x", str(src), check=False)
    assert proc.returncode == 1 and "not valid UTF-8" in proc.stderr


def test_unknown_mode_and_missing_repo(tmp_path):
    with pytest.raises(ConfigError, match="unknown repository mode"):
        Repo.init(tmp_path / "r", "tarball")
    repo = Repo.init(tmp_path / "r2", RepoMode.BARE_USER)
    cfg = (repo.path / "config").read_text().replace("bare-user", "weird")
    (repo.path / "config").write_text(cfg)
    with pytest.raises(ConfigError, match="unknown repository mode 'weird'"):
        Repo.open(repo.path)
    proc = run_cli("repo", "refs", f"--repo={repo.path}", check=False)
    assert proc.returncode == 1 and "unknown repository mode" in proc.stderr
    with pytest.raises(NotFoundError, match="not an OSTree repository"):
        Repo.open(tmp_path / "nowhere")
    (repo.path / "config").write_text("this is [not a key file\n")
    with pytest.raises(ConfigError):
        Repo.open(repo.path)
    proc = run_cli("repo", "init", f"--repo={tmp_path / 'r3'}", "--mode=tarball", check=False)
    assert proc.returncode == 1


def test_set_ref_refuses_missing_commit_and_bad_names(tmp_path):
    repo = Repo.init(tmp_path / "repo", "archive")
    with pytest.raises(NotFoundError):
        repo.set_ref("x", "ab" * 32)
    for bad in ("", "/x", "a//b", "a/../b", "-x", "a b"):
        with pytest.raises(HybridosError):
            repo.set_ref(bad, None)


_KILLER = textwrap.dedent("""
    import os, signal, sys
    from hybridos.ostree.repo import Repo

    class KillAfter:
        def __init__(self, n):
            self.n = n
        def advance(self, items=0, nbytes=0):
            self.n -= items
            if self.n <= 0:
                os.kill(os.getpid(), signal.SIGKILL)

    repo = Repo.open(sys.argv[1])
    repo.commit_tree(sys.argv[2], branch="x", progress=KillAfter(int(sys.argv[3])))
""")


@pytest.mark.parametrize("mode,after", [("archive", 1), ("archive", 5), ("bare-user", 3)])
def test_killed_commit_leaves_no_partial_object_and_no_moved_ref(tmp_path, mode, after):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(12):
        with open(src / f"f{i}", "wb") as f:
            f.write(os.urandom(1 << 20) * 3)
    repo = Repo.init(tmp_path / "repo", mode)
    (tmp_path / "old").mkdir()
    old = repo.commit_tree(tmp_path / "old", branch="x")
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(repo.path), str(src), str(after)],
                          capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert repo.resolve_rev("x") == old
    # every visible object is complete and correct; leftovers are only in tmp/
    assert repo.fsck() == []
    require_tool("ostree")
    ostree(repo.path, "fsck")
    assert sum(1 for _ in repo.list_objects()) >= 1
    # a later commit succeeds and reuses nothing half-written
    new = repo.commit_tree(src, branch="x")
    assert repo.fsck() == [] and repo.resolve_rev("x") == new
