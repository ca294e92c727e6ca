"""Downloads (packages, and the pull's spool files for big objects) are created 0600 from the start and never
written through a symlink (docs/security.md, "Local privilege")."""

from __future__ import annotations

import os

import pytest

from hybridos.errors import FetchError
from hybridos.fetch import DownloadRequest, FetchOptions
from hybridos_repo_http.fetcher import HttpFetcher
from tests.helpers.httpserver import serve

DATA = bytes(range(256)) * 4096


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    (root / "big.bin").write_bytes(DATA)
    with serve(root) as srv:
        yield srv


def test_download_is_private_from_the_first_byte(served, tmp_path):
    os.umask(0o022)   # the usual umask: a plain open() would make the file 0644
    dest = tmp_path / "spool/body-1"
    dest.parent.mkdir()
    with HttpFetcher(FetchOptions()) as f:
        f.download(DownloadRequest(served.url + "/big.bin", dest))
    assert dest.read_bytes() == DATA
    assert os.stat(dest).st_mode & 0o777 == 0o600   # created so: nothing chmods it afterwards


def test_partial_file_symlink_is_not_followed(served, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    dest = tmp_path / "spool/body-2"
    dest.parent.mkdir()
    os.symlink(victim, dest.with_name(dest.name + ".part"))
    with HttpFetcher(FetchOptions()) as f, pytest.raises(FetchError, match="cannot write the download"):
        f.download(DownloadRequest(served.url + "/big.bin", dest))
    assert victim.read_bytes() == b"precious\n"
