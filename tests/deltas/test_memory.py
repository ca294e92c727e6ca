"""Applying a delta keeps memory bounded: the peak RSS does not grow with the part's uncompressed size."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from hybridos.ostree.delta_generate import DeltaOptions, generate
from hybridos.ostree.objects import ObjectType
from hybridos.ostree.repo import Repo

BIG = 64 << 20

_APPLY = textwrap.dedent("""
    import sys
    from hybridos.ostree.delta_apply import apply_offline
    from hybridos.ostree.repo import Repo
    sb, stats = apply_offline(Repo.open(sys.argv[1]), sys.argv[2])
    assert stats.parts_applied == 1, stats
    # VmHWM: this program's own peak (ru_maxrss of a child can carry its parent's peak across exec)
    print([line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")][0])
""")


def _peak_rss_kib(argv: list[str]) -> int:
    return int(subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip())


@pytest.mark.slow
def test_apply_peak_rss_independent_of_part_size(tmp_path):
    rss = {}
    for size in (1 << 20, BIG):
        tree = tmp_path / f"tree{size}"
        tree.mkdir()
        with open(tree / "big", "wb") as f:   # one part holding the whole file (no fallback)
            f.truncate(size)
        src = Repo.init(tmp_path / f"src{size}", "archive")
        commit = src.commit_tree(tree, branch="x")
        sb_file = tmp_path / f"delta{size}" / "superblock"
        generate(src, None, commit, DeltaOptions(min_fallback_size=0, max_chunk_size=4096, filename=sb_file))
        Repo.init(tmp_path / f"dst{size}", "bare-user")
        rss[size] = _peak_rss_kib([sys.executable, "-c", _APPLY, str(tmp_path / f"dst{size}"), str(sb_file)])
        dst = Repo.open(tmp_path / f"dst{size}")
        obj = dst.load_dirtree(dst.load_commit(commit).root_tree).files[0][1]
        assert os.path.getsize(dst.object_path(obj, ObjectType.FILE)) == size
    # the 64 MiB part is decompressed to a spool file and read by offset: a few MiB more at most
    assert rss[BIG] - rss[1 << 20] < 24 * 1024, rss
