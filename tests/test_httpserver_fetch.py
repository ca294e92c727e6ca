"""The fetch plugins against a real server on 127.0.0.1 and the local file system."""

from __future__ import annotations

import hashlib

import pytest

from hybridos.errors import CorruptionError, NotFoundError
from hybridos.fetch import DownloadRequest, FetchOptions
from hybridos.plugins import PluginRegistry
from tests.helpers.httpserver import serve


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    (root / "big.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    with serve(root) as srv:
        yield srv, root


def test_http_read_404_and_resume(served, tmp_path):
    srv, root = served
    reg = PluginRegistry()
    data = (root / "big.bin").read_bytes()
    # retries=0: the fetcher would otherwise resume the cut-off body itself within the same call
    with reg.fetcher_for(srv.url, FetchOptions(retries=0)) as f:
        assert f.read(srv.url + "/big.bin") == data
        with pytest.raises(NotFoundError, match="404"):
            f.read(srv.url + "/missing")
        srv.faults.drop_after["/big.bin"] = 100_000
        dest = tmp_path / "out.bin"
        req = DownloadRequest(srv.url + "/big.bin", dest, hashlib.sha256(data).hexdigest())
        with pytest.raises(Exception):  # noqa: B017 - the first attempt is cut off by the server
            f.download(req)
        assert not dest.exists()
        f.download(req)  # resumes from the partial file
        assert dest.read_bytes() == data
        assert any(r[1] for r in srv.requests if r[0] == "/big.bin"), "second request should use Range"


def test_tampered_download_never_appears(served, tmp_path):
    srv, root = served
    reg = PluginRegistry()
    srv.faults.tamper["/big.bin"] = lambda b: b[:-1] + b"X"
    dest = tmp_path / "out.bin"
    good = hashlib.sha256((root / "big.bin").read_bytes()).hexdigest()
    with reg.fetcher_for(srv.url) as f, pytest.raises(CorruptionError, match="checksum mismatch"):
        f.download(DownloadRequest(srv.url + "/big.bin", dest, good))
    assert not dest.exists()


def test_file_fetcher(tmp_path):
    (tmp_path / "a").write_bytes(b"hello")
    f = PluginRegistry().fetcher_for("file:///x")
    assert f.read(f"file://{tmp_path}/a") == b"hello"
    assert f.read(str(tmp_path / "a")) == b"hello"
    with pytest.raises(NotFoundError):
        f.read(f"file://{tmp_path}/nope")
    with pytest.raises(CorruptionError):
        f.download(DownloadRequest(str(tmp_path / "a"), tmp_path / "b", "00" * 32))
    assert not (tmp_path / "b").exists()
    f.download(DownloadRequest(str(tmp_path / "a"), tmp_path / "b", hashlib.sha256(b"hello").hexdigest()))
    assert (tmp_path / "b").read_bytes() == b"hello"
