"""HTTP(S) fetching with urllib3: pooled connections, Range resume, checksum verification."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import urllib3

from hybridos.errors import CorruptionError, FetchError, NotFoundError
from hybridos.fetch import DownloadRequest, Fetcher, FetchOptions, ProgressCallback


class HttpFetcher(Fetcher):
    name = "http"
    schemes = ("http", "https")

    def __init__(self, options: FetchOptions | None = None):
        super().__init__(options)
        o = self.options
        self.pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=max(o.max_parallel, 1),
            block=False,
            timeout=urllib3.Timeout(connect=o.timeout, read=o.timeout),
            retries=urllib3.Retry(total=o.retries, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504),
                                  raise_on_status=False),
            cert_reqs="CERT_REQUIRED" if o.tls_verify else "CERT_NONE",
            ca_certs=o.ca_file,
        )

    def _request(self, url: str, headers: dict | None = None, preload: bool = True):
        try:
            resp = self.pool.request("GET", url, headers=headers, preload_content=preload)
        except urllib3.exceptions.HTTPError as exc:
            raise FetchError(f"{url}: {exc}") from None
        if resp.status == 404:
            resp.release_conn()
            raise NotFoundError(f"{url}: not found (HTTP 404)")
        if resp.status not in (200, 206):
            resp.release_conn()
            raise FetchError(f"{url}: HTTP {resp.status}")
        return resp

    def read(self, url: str) -> bytes:
        return self._request(url).data

    def download(self, request: DownloadRequest, progress: ProgressCallback | None = None) -> Path:
        dest = Path(request.dest)
        part = dest.with_name(dest.name + ".part")
        h = hashlib.sha256()
        offset = 0
        if part.exists():
            with open(part, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
                    offset += len(chunk)
        headers = {"Range": f"bytes={offset}-"} if offset else None
        resp = self._request(request.url, headers, preload=False)
        if offset and resp.status != 206:  # server ignored Range: start over
            h, offset = hashlib.sha256(), 0
        try:
            with open(part, "ab" if offset else "wb") as f:
                for chunk in resp.stream(1 << 16):
                    f.write(chunk)
                    h.update(chunk)
                    if progress:
                        progress(0, len(chunk))
        except urllib3.exceptions.HTTPError as exc:
            raise FetchError(f"{request.url}: {exc}") from None
        finally:
            resp.release_conn()
        if request.sha256 and h.hexdigest() != request.sha256.lower():
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
            raise CorruptionError(
                f"checksum mismatch for {request.url}: expected sha256 {request.sha256}, got {h.hexdigest()}"
            )
        os.replace(part, dest)
        if progress:
            progress(1, 0)
        return dest

    def close(self) -> None:
        self.pool.clear()
