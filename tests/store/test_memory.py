"""Peak memory does not grow with file size: files are streamed, never loaded whole."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

BIG = 256 << 20

_RUN = textwrap.dedent("""
    import sys
    from hybridos.ostree.repo import Repo
    repo = Repo.init(sys.argv[1], sys.argv[2])
    c = repo.commit_tree(sys.argv[3], branch="x")
    assert repo.fsck() == []
    repo.checkout("x", sys.argv[4], mode="copy")
""")


def _peak_rss_kib(argv: list[str]) -> int:
    p = subprocess.Popen(argv)
    _, status, ru = os.wait4(p.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return ru.ru_maxrss


@pytest.mark.parametrize("mode", ["archive", "bare-user"])
def test_peak_rss_independent_of_file_size(tmp_path, mode):
    rss = {}
    for size in (1 << 20, BIG):
        src = tmp_path / f"src{size}"
        src.mkdir()
        with open(src / "big", "wb") as f:  # sparse: costs no disk, still BIG bytes to hash and compress
            f.truncate(size)
        rss[size] = _peak_rss_kib([sys.executable, "-c", _RUN, str(tmp_path / f"repo{size}"), mode, str(src),
                                   str(tmp_path / f"co{size}")])
        assert os.path.getsize(tmp_path / f"co{size}" / "big") == size
    # streaming in chunks of 1 MiB: a few MiB of difference at most, never the file's 256 MiB
    assert rss[BIG] - rss[1 << 20] < 32 * 1024, rss
