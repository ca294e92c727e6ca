"""Fixtures for pull tests: small trees committed with the real ``ostree``, served over HTTP."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def ostree(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ostree", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"ostree {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def make_tree(root: Path, *, big: int = 0, tag: str = "") -> Path:
    """A small tree with a regular file, an executable, a symlink, an empty file, a nested dir and
    optionally one big incompressible file of ``big`` bytes."""
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    (root / "usr/share/doc").mkdir(parents=True, exist_ok=True)
    (root / "usr/bin/tool").write_text("#!/bin/sh\necho tool\n" + tag)
    os.chmod(root / "usr/bin/tool", 0o755)
    (root / "usr/share/doc/README").write_text("readme " + tag)
    (root / "usr/share/empty").write_bytes(b"")
    link = root / "usr/bin/alias"
    if not link.is_symlink():
        link.symlink_to("tool")
    for i in range(20):
        (root / f"usr/share/doc/f{i}").write_text(f"file {i} {tag}\n" * (i + 1))
    if big:
        (root / "usr/share/big1").write_bytes(os.urandom(big))
        (root / "usr/share/big2").write_bytes(os.urandom(big))
    return root


def ostree_repo(path: Path, tree: Path, branch: str = "main", *, mode: str = "archive", summary: bool = False,
                subject: str = "c") -> str:
    """Commit ``tree`` with the real ostree; returns the commit checksum."""
    if not (path / "config").exists():
        ostree("init", f"--repo={path}", f"--mode={mode}")
    commit = ostree("commit", f"--repo={path}", "-b", branch, "-s", subject, "--owner-uid=0", "--owner-gid=0",
                    str(tree)).stdout.strip()
    if summary:
        ostree("summary", f"--repo={path}", "-u")
    return commit


def ls_tree(repo: Path, ref: str) -> str:
    """``ostree ls -R`` output: mode, ownership, size, name, symlink target of every entry."""
    return ostree("ls", f"--repo={repo}", "-R", ref).stdout


def object_requests(srv) -> list[str]:
    return [p for p, _, status in srv.requests if p.startswith("/objects/") and status in (200, 206)]


def big_objects(repo: Path) -> list[Path]:
    """The ``.filez`` files over 100 kB of an archive repository (the fixtures' big files)."""
    return [p for p in (repo / "objects").rglob("*.filez") if p.stat().st_size > 100_000]


def object_name(path: Path) -> str:
    """The checksum of an object file: its directory name and file name without the extension."""
    return path.parent.name + path.name.split(".")[0]


def force_pull_workers(monkeypatch, workers: int = 2) -> list[int]:
    """Make pulls of small repositories use forked worker processes; returns the list of forked pids."""
    from hybridos.ostree import pull as pull_mod

    monkeypatch.setattr(pull_mod, "PARALLEL_MIN_OBJECTS", 4)
    monkeypatch.setattr(pull_mod, "pull_workers", lambda: workers)
    forks: list[int] = []
    real_fork = os.fork

    def counting_fork():
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid
    monkeypatch.setattr(os, "fork", counting_fork)
    return forks
