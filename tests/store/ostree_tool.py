"""Driving the real ``ostree`` as an independent verifier in tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import require_tool


def ostree(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    require_tool("ostree")
    proc = subprocess.run(["ostree", f"--repo={repo}", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"ostree {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def ostree_commit(repo: Path, tree: Path, branch: str, *extra: str) -> str:
    return ostree(repo, "commit", f"--tree=dir={tree}", "-b", branch, *extra).stdout.strip()


def root_checksums(repo: Path, rev: str) -> tuple[str, str]:
    """(root dirtree, root dirmeta) as ``ostree ls -C -d`` prints them."""
    fields = ostree(repo, "ls", "-C", "-d", rev, "/").stdout.split()
    return fields[4], fields[5]


def listing(repo: Path, rev: str) -> str:
    """``ostree ls -R -C`` of a commit: every entry with mode, owner, size and checksums."""
    return ostree(repo, "ls", "-R", "-C", rev, "/").stdout
