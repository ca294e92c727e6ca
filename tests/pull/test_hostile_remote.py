"""A remote that attacks with resources (issue 15): a small .filez that inflates to far more, a huge summary,
a slow-drip server, a pull that never ends. Each is stopped with a one-line error (or streamed in bounded
memory), with small limits set per remote so the tests stay fast; all against the real test HTTP server."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from hybridos.errors import ConfigError, FetchError
from hybridos.fetch import FetchOptions
from hybridos.ostree import remotes
from hybridos.ostree.pull import pull
from hybridos.ostree.repo import Repo
from tests.conftest import require_tool
from tests.helpers.httpserver import serve
from tests.pull import test_pull
from tests.pull.test_pull import FAST, local_repo

upstream = test_pull.upstream   # ostree's repository with two commits, served over HTTP

BIG = 192 << 20

_PULL = textwrap.dedent("""
    import sys
    from hybridos.ostree import remotes
    from hybridos.ostree.pull import pull
    from hybridos.ostree.repo import Repo
    repo = Repo.init(sys.argv[1], sys.argv[2])
    remotes.add_remote(repo.config, "origin", sys.argv[3], options={"gpg-verify": "false"})
    repo.write_config()
    pull(repo, "origin", ["x"])
    assert repo.fsck() == []
""")


def _peak_rss_kib(argv: list[str]) -> int:
    p = subprocess.Popen(argv)
    _, status, ru = os.wait4(p.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return ru.ru_maxrss


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["archive", "bare-user"])
def test_a_small_filez_that_inflates_big_is_streamed(tmp_path, mode):
    """A .filez of ~200 kB declaring 192 MiB used to be inflated whole in memory; now in bounded steps."""
    rss = {}
    for size in (1 << 20, BIG):
        src = tmp_path / f"src{size}"
        src.mkdir()
        with open(src / "big", "wb") as f:   # sparse zeros: a tiny .filez
            f.truncate(size)
        up = Repo.init(tmp_path / f"up{size}", "archive")
        up.commit_tree(str(src), branch="x")
        with serve(up.path) as srv:
            rss[size] = _peak_rss_kib([sys.executable, "-c", _PULL, str(tmp_path / f"down{size}"), mode, srv.url])
    assert rss[BIG] - rss[1 << 20] < 48 * 1024, rss


def test_summary_over_the_limit_is_refused(upstream, tmp_path):
    require_tool("ostree")
    subprocess.run(["ostree", "summary", f"--repo={upstream.repo}", "-u"], check=True, capture_output=True)
    size = (upstream.repo / "summary").stat().st_size
    repo = local_repo(tmp_path / "local", "archive", upstream.url, **{"max-summary-size": str(size - 1)})
    with pytest.raises(FetchError, match=f"larger than the {size - 1} bytes allowed"):
        pull(repo, "origin", ["main"], fetch_options=FAST)
    repo = local_repo(tmp_path / "local2", "archive", upstream.url, **{"max-summary-size": str(size)})
    pull(repo, "origin", ["main"], fetch_options=FAST)


@pytest.mark.parametrize("suffix,drip", [(".commit", (10, 0.5)), (".dirtree", (50, 0.1)), (".filez", (50, 0.1))])
def test_slow_drip_is_aborted_below_the_low_speed_limit(upstream, tmp_path, suffix, drip):
    """20-500 bytes/s against a limit of 1000 bytes/s for 1 s: given up after about a second (ostree: 30 s),
    whether the object comes alone (commit), in a pipelined batch (dirtree) or streamed (filez)."""
    upstream.faults.drip[suffix] = drip
    repo = local_repo(tmp_path / "local", "archive", upstream.url,
                      **{"low-speed-limit": "1000", "low-speed-time": "1"})
    start = time.monotonic()
    with pytest.raises(FetchError, match="slower than 1000 bytes/s for 1 s"):
        pull(repo, "origin", ["main"], fetch_options=FetchOptions(retries=0, max_parallel=4))
    assert time.monotonic() - start < 20


def test_overall_deadline(upstream, tmp_path):
    """Fast enough for the low-speed limit, but the whole pull would take longer than the remote's deadline."""
    upstream.faults.drip[".filez"] = (4000, 0.05)   # 80 kB/s
    repo = local_repo(tmp_path / "local", "archive", upstream.url, deadline="1")
    start = time.monotonic()
    with pytest.raises(FetchError, match="deadline"):
        pull(repo, "origin", ["main"], fetch_options=FetchOptions(retries=0, max_parallel=4))
    assert time.monotonic() - start < 20


def test_limits_in_the_remote_config_are_checked(tmp_path):
    repo = local_repo(tmp_path / "local", "archive", "http://127.0.0.1:9/",
                      **{"low-speed-limit": "²", "deadline": "9" * 5000})
    with pytest.raises(ConfigError, match="low-speed-limit='²' is not a whole number"):
        remotes.get_remote(repo.config, "origin").fetch_options(FetchOptions())
