"""Fixtures for static delta tests: an archive repository with two commits (an update of small edits, an added
and a removed file, a rebuilt binary), made by the real ``ostree``, and bare-user clients holding the first."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path


def ostree(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ostree", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"ostree {' '.join(args)} exited {proc.returncode}: {proc.stdout}{proc.stderr}")
    return proc


def make_trees(base: Path, *, big: int = 300_000) -> tuple[Path, Path]:
    """Two trees: ``v2`` edits a few text files, adds one, removes one, retargets a symlink and rebuilds the
    binary ``usr/bin/prog`` (a few bytes changed, a block inserted)."""
    rng = random.Random(7)
    v1 = base / "v1"
    for d in ("usr/bin", "usr/share/doc", "etc"):
        (v1 / d).mkdir(parents=True, exist_ok=True)
    for i in range(30):
        (v1 / f"usr/share/doc/f{i}.txt").write_text("".join(f"line {j} of file {i}\n" for j in range(40 + i * 7)))
    prog = bytes(rng.getrandbits(8) for _ in range(big))
    (v1 / "usr/bin/prog").write_bytes(prog)
    os.chmod(v1 / "usr/bin/prog", 0o755)
    (v1 / "usr/bin/link").symlink_to("prog")
    (v1 / "etc/gone.conf").write_text("removed in v2\n")
    v2 = base / "v2"
    subprocess.run(["cp", "-a", str(v1), str(v2)], check=True)
    for i in (1, 5, 9):
        p = v2 / f"usr/share/doc/f{i}.txt"
        p.write_text(p.read_text().replace("line 3 ", "LINE three "))
    (v2 / "usr/share/doc/new.txt").write_text("a new file\n" * 20)
    (v2 / "etc/gone.conf").unlink()
    (v2 / "usr/bin/link").unlink()
    (v2 / "usr/bin/link").symlink_to("/usr/bin/prog")
    rebuilt = bytearray(prog)
    rebuilt[1000:1004] = b"\x01\x02\x03\x04"
    rebuilt[big // 2:big // 2] = bytes(rng.getrandbits(8) for _ in range(2000))
    (v2 / "usr/bin/prog").write_bytes(bytes(rebuilt))
    return v1, v2


def source_repo(base: Path, **kw) -> tuple[Path, str, str]:
    """(archive repo, commit v1, commit v2) with ``main`` at v2 (v1 its parent)."""
    v1, v2 = make_trees(base, **kw)
    repo = base / "src"
    ostree("init", f"--repo={repo}", "--mode=archive")
    c1 = ostree("commit", f"--repo={repo}", "-b", "main", "-s", "v1", "--owner-uid=0", "--owner-gid=0",
                str(v1)).stdout.strip()
    c2 = ostree("commit", f"--repo={repo}", "-b", "main", "-s", "v2", "--owner-uid=0", "--owner-gid=0",
                str(v2)).stdout.strip()
    return repo, c1, c2


def client_repo(path: Path, src: Path, commit: str, *, mode: str = "bare-user") -> Path:
    """A repository of ``mode`` holding ``commit`` (copied by ``ostree pull-local``)."""
    ostree("init", f"--repo={path}", f"--mode={mode}")
    ostree("pull-local", f"--repo={path}", str(src), commit)
    return path


def listing(repo: Path, rev: str) -> str:
    return ostree("ls", f"--repo={repo}", "-R", "-C", rev).stdout


def fsck_clean(repo: Path) -> None:
    out = ostree("fsck", f"--repo={repo}")
    assert "no errors found" in out.stdout, out.stdout + out.stderr
