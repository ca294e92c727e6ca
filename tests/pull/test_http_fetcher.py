"""The HTTP fetch plugin against a real server on 127.0.0.1: retries, resume, 404, proxies, TLS, bounds."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest

from hybridos.errors import CorruptionError, FetchError, NotFoundError
from hybridos.fetch import DownloadRequest, FetchOptions
from hybridos_repo_http.fetcher import HttpFetcher
from tests.helpers.httpserver import self_signed_cert, serve

DATA = bytes(range(256)) * 4096  # 1 MiB


class FailFirst(dict):
    """A fault table that applies to the first ``n`` requests only."""

    def __init__(self, table, n=1):
        super().__init__(table)
        self.left = n

    def items(self):
        items = list(super().items())
        self.left -= 1
        if self.left <= 0:
            self.clear()
        return items


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    (root / "big.bin").write_bytes(DATA)
    (root / "small").write_bytes(b"hello")
    with serve(root) as srv:
        yield srv, root


def fetcher(**kw) -> HttpFetcher:
    f = HttpFetcher(FetchOptions(**kw))
    f.backoff_base = 0.01
    return f


def paths(srv, name):
    return [r for r in srv.requests if r[0] == name]


def test_404_is_not_found_and_not_retried(served):
    srv, _ = served
    with fetcher() as f:
        with pytest.raises(NotFoundError, match="404"):
            f.read(srv.url + "/missing")
        with pytest.raises(NotFoundError):
            f.download(DownloadRequest(srv.url + "/missing", served[1] / "x"))
    assert len(paths(srv, "/missing")) == 2


def test_persistent_500_fails_after_retries(served, tmp_path):
    srv, _ = served
    srv.faults.status["/small"] = 500
    with fetcher(retries=2) as f:
        with pytest.raises(FetchError, match=r"HTTP 500 \(gave up after 3 attempts\)") as ei:
            f.read(srv.url + "/small")
        assert not isinstance(ei.value, NotFoundError)
    assert len(paths(srv, "/small")) == 3


def test_transient_503_is_retried(served, tmp_path):
    srv, _ = served
    srv.faults.status = FailFirst({"/small": 503}, n=2)
    with fetcher() as f:
        assert f.read(srv.url + "/small") == b"hello"
    srv.faults.status = FailFirst({"/big.bin": 502}, n=1)
    with fetcher() as f:
        dest = f.download(DownloadRequest(srv.url + "/big.bin", tmp_path / "big", hashlib.sha256(DATA).hexdigest()))
    assert dest.read_bytes() == DATA


def test_other_4xx_is_a_failure_not_retried(served):
    srv, _ = served
    srv.faults.status["/small"] = 403
    with fetcher() as f, pytest.raises(FetchError, match="HTTP 403"):
        f.read(srv.url + "/small")
    assert len(paths(srv, "/small")) == 1   # no retries


def test_connection_refused_fails_cleanly(tmp_path):
    with serve(tmp_path) as srv:
        url = srv.url
    with fetcher(retries=1) as f, pytest.raises(FetchError, match="gave up after 2 attempts"):
        f.read(url + "/x")


def test_dropped_connection_resumes_with_range_in_one_call(served, tmp_path):
    srv, _ = served
    srv.faults.drop_after["/big.bin"] = 300_000
    seen = []
    with fetcher() as f:
        req = DownloadRequest(srv.url + "/big.bin", tmp_path / "out", hashlib.sha256(DATA).hexdigest())
        f.download(req, progress=lambda i, b: seen.append((i, b)))
    assert (tmp_path / "out").read_bytes() == DATA
    assert not (tmp_path / "out.part").exists()
    reqs = paths(srv, "/big.bin")
    assert [r[1] for r in reqs] == ["", "bytes=300000-"]
    assert sum(i for i, _ in seen) == 1 and sum(b for _, b in seen) == len(DATA)


def test_read_resumes_after_drop(served):
    srv, _ = served
    srv.faults.drop_after["/big.bin"] = 123_456
    with fetcher() as f:
        assert f.read(srv.url + "/big.bin") == DATA
    assert any(r[1] == "bytes=123456-" for r in paths(srv, "/big.bin"))


def test_partial_file_survives_failure_and_resumes_later(served, tmp_path):
    srv, _ = served
    srv.faults.drop_after["/big.bin"] = 100_000
    srv.faults.drop_always = True
    req = DownloadRequest(srv.url + "/big.bin", tmp_path / "out", hashlib.sha256(DATA).hexdigest())
    with fetcher(retries=2) as f, pytest.raises(FetchError, match="connection lost"):
        f.download(req)
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "out.part").stat().st_size == 300_000
    srv.faults.drop_after.clear()
    with fetcher() as f:
        f.download(req)
    assert (tmp_path / "out").read_bytes() == DATA
    assert paths(srv, "/big.bin")[-1][1] == "bytes=300000-"


def test_stale_partial_larger_than_file_starts_over(served, tmp_path):
    srv, _ = served
    (tmp_path / "out.part").write_bytes(b"x" * (len(DATA) + 10))
    with fetcher() as f:
        f.download(DownloadRequest(srv.url + "/big.bin", tmp_path / "out", hashlib.sha256(DATA).hexdigest()))
    assert (tmp_path / "out").read_bytes() == DATA


def test_wrong_partial_content_is_redownloaded(served, tmp_path):
    srv, _ = served
    (tmp_path / "out.part").write_bytes(b"garbage")
    with fetcher() as f:
        f.download(DownloadRequest(srv.url + "/big.bin", tmp_path / "out", hashlib.sha256(DATA).hexdigest()))
    assert (tmp_path / "out").read_bytes() == DATA


def test_tampered_download_never_appears(served, tmp_path):
    srv, _ = served
    srv.faults.tamper["/big.bin"] = lambda b: b[:-1] + b"X"
    with fetcher() as f, pytest.raises(CorruptionError, match="checksum mismatch for .*/big.bin"):
        f.download(DownloadRequest(srv.url + "/big.bin", tmp_path / "out", hashlib.sha256(DATA).hexdigest()))
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.part").exists()


def test_parallel_downloads_are_bounded(served, tmp_path):
    srv, root = served
    for i in range(12):
        (root / f"f{i}").write_bytes(b"%d" % i)
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def slow(body):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return body

    for i in range(12):
        srv.faults.tamper[f"/f{i}"] = slow
    reqs = [DownloadRequest(f"{srv.url}/f{i}", tmp_path / f"f{i}") for i in range(12)]
    with fetcher(max_parallel=3) as f:
        out = f.download_many(reqs)
    assert [p.read_bytes() for p in out] == [b"%d" % i for i in range(12)]
    assert 2 <= state["max"] <= 3


def test_download_many_stops_at_first_failure(served, tmp_path):
    srv, _ = served
    reqs = [DownloadRequest(srv.url + "/missing", tmp_path / "m")] + [
        DownloadRequest(srv.url + "/small", tmp_path / f"s{i}") for i in range(50)]
    with fetcher(max_parallel=2) as f, pytest.raises(NotFoundError):
        f.download_many(reqs)
    assert len(paths(srv, "/small")) < 50


def test_proxy_from_environment(served, tmp_path, monkeypatch):
    srv, _ = served
    with serve(tmp_path) as proxy:   # the test server answers absolute-URI requests from its own root
        (tmp_path / "small").write_bytes(b"via proxy")
        monkeypatch.setenv("http_proxy", proxy.url)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        with fetcher() as f:
            assert f.read(srv.url + "/small") == b"via proxy"
        assert proxy.requests and proxy.requests[0][0] == srv.url + "/small"
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        with fetcher() as f:
            assert f.read(srv.url + "/small") == b"hello"
        assert len(proxy.requests) == 1


def test_tls_verified_by_default(served, tmp_path):
    srv, root = served
    cert, key = self_signed_cert(tmp_path)
    with serve(root, tls=(cert, key)) as tls:
        url = tls.url + "/small"
        with fetcher(retries=0) as f, pytest.raises(FetchError, match="TLS|certificate"):
            f.read(url)
        with fetcher(ca_file=str(cert)) as f:
            assert f.read(url) == b"hello"
        with fetcher(tls_verify=False) as f:
            assert f.read(url) == b"hello"
