"""Test trees and snapshots shared by the store tests."""

from __future__ import annotations

import os
import stat
from pathlib import Path

BIG = 11 * 1024 * 1024


def make_tree(root: Path, *, big: bool = True) -> Path:
    """A tree with every kind of entry the store must handle."""
    root.mkdir(parents=True)
    (root / "regular").write_text("hello\n")
    (root / "empty").write_bytes(b"")
    (root / "exec").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "exec").chmod(0o755)
    (root / "setuid").write_bytes(b"suid")
    (root / "setuid").chmod(0o4755)
    (root / "setgid").write_bytes(b"sgid")
    (root / "setgid").chmod(0o2711)
    (root / "private").write_bytes(b"secret")
    (root / "private").chmod(0o600)
    os.link(root / "regular", root / "hardlink")
    os.symlink("regular", root / "symlink")
    os.symlink("/does/not/exist", root / "dangling")
    (root / "emptydir").mkdir()
    (root / "stickydir").mkdir(mode=0o1777)
    (root / "stickydir").chmod(0o1777)
    (root / "sgiddir").mkdir()
    (root / "sgiddir").chmod(0o2775)
    deep = root.joinpath(*[f"d{i}" for i in range(12)])
    deep.mkdir(parents=True)
    (deep / "leaf").write_text("deep\n")
    (root / "ünïcödé ☃").mkdir()
    (root / "ünïcödé ☃" / "日本語.txt").write_text("こんにちは\n")
    (root / "ünïcödé ☃" / "Z-upper").write_text("sorting\n")
    (root / "ünïcödé ☃" / "a-lower").write_text("sorting\n")
    (root / "ünïcödé ☃" / "link to dir").symlink_to("..")
    (root / "sorted").mkdir()
    for name in ("b", "B", "a.b", "a-b", "a_b", "aa", "a", "é", "~"):
        (root / "sorted" / name).write_text(name)
    if big:
        with open(root / "big.bin", "wb") as f:
            block = os.urandom(1 << 20)
            for i in range(BIG >> 20):
                f.write(block[i:] + block[:i])
    return root


def snapshot(root: Path, *, owner: bool = False) -> dict[str, tuple]:
    """{relative path: (kind, permission bits, content or target[, uid, gid])} for comparing trees."""
    out: dict[str, tuple] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                entry: tuple = ("l", 0o777, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                entry = ("d", stat.S_IMODE(st.st_mode), None)
            else:
                entry = ("f", stat.S_IMODE(st.st_mode), p.read_bytes())
            if owner:
                entry += (st.st_uid, st.st_gid)
            out[rel] = entry
        dirs[:] = [d for d in dirs if not (Path(dirpath) / d).is_symlink()]
    return out
