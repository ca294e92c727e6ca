"""``Fetcher.read_batch``: many small files at once, as a pull reads objects. Over plain HTTP the requests are
pipelined on a few connections; servers that close connections, frame bodies differently or fail are handled
by the ordinary read path. Against the real test server on 127.0.0.1."""

from __future__ import annotations

import os

import pytest

from hybridos import fetch
from hybridos.errors import FetchError, NotFoundError
from hybridos.fetch import BodyFile, FetchOptions
from hybridos.plugins import PluginRegistry
from tests.helpers.httpserver import self_signed_cert, serve

COUNT = 300


@pytest.fixture
def files(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    contents = {}
    for i in range(COUNT):
        data = os.urandom(i * 37 % 5000) + f"file {i}".encode()
        (root / f"f{i}").write_bytes(data)
        contents[f"f{i}"] = data
    (root / "big").write_bytes(os.urandom(600_000))
    contents["big"] = (root / "big").read_bytes()
    with serve(root) as srv:
        srv.contents = contents
        srv.root = root
        yield srv


def read_all(srv, names, options=FetchOptions(retries=2, max_parallel=4)) -> dict[str, bytes]:
    with PluginRegistry().fetcher_for(srv.url, options) as f:
        got = {}
        for key, data in f.read_batch((n, f"{srv.url}/{n}") for n in names):
            assert key not in got
            got[key] = data
        return got


def test_pipelined_batch_reads_everything_on_few_connections(files):
    names = list(files.contents)
    assert read_all(files, names) == files.contents
    assert sorted(p[1:] for p, _, status in files.requests if status == 200) == sorted(names)
    assert files.connections <= 2


def test_server_closing_connections_unannounced(files):
    files.faults.requests_per_connection = 7   # a keep-alive limit that pipelined requests run into
    assert read_all(files, list(files.contents)) == files.contents
    assert files.connections >= COUNT // 7


def test_chunked_answers_go_the_ordinary_way(files):
    files.faults.chunked = True
    assert read_all(files, list(files.contents)) == files.contents


def test_cut_off_body_resumes_with_range(files):
    files.faults.drop_after["/big"] = 250_000
    assert read_all(files, ["f1", "big", "f2", "f3"])["big"] == files.contents["big"]
    assert any(path == "/big" and rng == "bytes=250000-" for path, rng, _ in files.requests)


def test_missing_file_names_its_key(files):
    with pytest.raises(NotFoundError, match="404") as info:
        read_all(files, ["f1", "f2", "nope", "f3"])
    assert info.value.key == "nope"


def test_server_errors_are_retried_then_reported(files):
    files.faults.status["/f5"] = 503
    with pytest.raises(FetchError, match="HTTP 503") as info:
        read_all(files, [f"f{i}" for i in range(10)], FetchOptions(retries=1))
    assert info.value.key == "f5"
    assert sum(1 for p, _, _ in files.requests if p == "/f5") >= 2   # asked again before giving up


def test_proxied_batch_keeps_requests_in_flight_on_threads(files, monkeypatch):
    # the test server answers absolute-form requests too: it is its own proxy here
    monkeypatch.setenv("http_proxy", files.url)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    names = [f"f{i}" for i in range(50)]
    assert read_all(files, names) == {n: files.contents[n] for n in names}
    with pytest.raises(NotFoundError) as info:
        read_all(files, ["f1", "nope"])
    assert info.value.key == "nope"


def test_file_fetcher_batch(tmp_path):
    for i in range(5):
        (tmp_path / f"f{i}").write_bytes(b"x" * i)
    f = PluginRegistry().fetcher_for("file:///")
    got = dict(f.read_batch((i, f"file://{tmp_path}/f{i}") for i in range(5)))
    assert got == {i: b"x" * i for i in range(5)}
    with pytest.raises(NotFoundError):
        dict(f.read_batch([(9, f"file://{tmp_path}/nope")]))


@pytest.fixture
def tls_files(files, tmp_path):
    """The same files over HTTPS, with a self-signed certificate for 127.0.0.1."""
    cert, key = self_signed_cert(tmp_path)
    with serve(files.root, tls=(cert, key)) as srv:
        srv.contents = files.contents
        srv.https = srv.url
        srv.cert = cert
        yield srv


def test_pipelined_batch_over_tls(tls_files, tmp_path, monkeypatch):
    names = list(tls_files.contents)
    options = FetchOptions(retries=2, max_parallel=4, ca_file=str(tls_files.cert))
    with PluginRegistry().fetcher_for(tls_files.https, options) as f:
        got = dict(f.read_batch((n, f"{tls_files.https}/{n}") for n in names))
        assert got == tls_files.contents
        assert tls_files.connections <= 2
        monkeypatch.setattr(fetch, "SPOOL_OVER", 100_000)   # the big file comes as a file, over TLS too
        spool = tmp_path / "spool"
        spool.mkdir()
        [(_, body)] = list(f.read_batch([("big", f"{tls_files.https}/big")], spool))
        assert isinstance(body, BodyFile) and body.path.read_bytes() == tls_files.contents["big"]


def test_tls_certificate_checked_in_batches(tls_files):
    with PluginRegistry().fetcher_for(tls_files.https, FetchOptions(retries=0)) as f, \
            pytest.raises(FetchError, match="TLS|certificate") as info:
        dict(f.read_batch([("f1", f"{tls_files.https}/f1")]))
    assert info.value.key == "f1"
