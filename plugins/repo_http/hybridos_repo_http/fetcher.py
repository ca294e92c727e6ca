"""HTTP(S) fetching with urllib3.

Why urllib3: it is the connection pool underneath requests and pip, thread-safe, keeps connections alive,
verifies TLS with the system store by default, speaks to HTTP proxies (ProxyManager) and lets us drive Range
requests and retries ourselves, without an async runtime.

Behaviour:

- connections are pooled and reused, at most ``max_parallel`` per host, and ``download_many`` runs at most
  ``max_parallel`` transfers at once;
- transient failures (refused/reset/dropped connections, timeouts, a body cut short, HTTP 408/429/5xx) are
  retried ``retries`` times with exponential backoff and jitter; a body cut short resumes with ``Range``;
- a real 404 (or 410) raises ``NotFoundError`` at once, never retried; other failures raise ``FetchError``;
- downloads land in ``dest.part`` (resumed across calls), are checked against ``sha256`` and only then renamed;
- proxies come from ``http_proxy``/``https_proxy``/``all_proxy``/``no_proxy`` (either case), as curl reads them;
- ``read_batch`` (an OSTree pull's tens of thousands of small objects) pipelines requests on a few connections
  from one thread (``pipeline.py``) for ``http://`` and ``https://`` without a proxy; proxied URLs keep
  ``max_parallel`` requests in flight on threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import random
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from urllib.parse import urlsplit

import urllib3

from hybridos import __version__
from hybridos import fetch as _fetch
from hybridos.errors import CorruptionError, FetchError, NotFoundError
from hybridos.fetch import (
    BodyFile,
    DownloadRequest,
    Fetcher,
    FetchOptions,
    Key,
    ProgressCallback,
    SpeedGuard,
    body_too_large,
)
from hybridos_repo_http.pipeline import PipelinedReader

#: Statuses worth asking again: the server or a middlebox may recover.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
CHUNK = 1 << 16
#: Bodies up to this size are read in one piece (a cut-off one is fetched again whole, not resumed).
SMALL_BODY = 1 << 18
#: Connections a pipelined batch uses (each with up to ``pipeline.PipelinedReader.depth`` requests waiting).
PIPELINED_CONNECTIONS = 2


class _Transient(Exception):
    """A failure that another attempt may cure; ``retry_after`` is the server's hint in seconds."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def _proxy_for(url: str, proxies: dict[str, str]) -> str | None:
    """The proxy URL the environment asks for ``url``, or None for a direct connection."""
    parts = urlsplit(url)
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy:
        return None
    host = parts.hostname or ""
    if "no" in proxies and urllib.request.proxy_bypass_environment(host, proxies):
        return None
    return proxy if "://" in proxy else "http://" + proxy


def _retry_after(resp) -> float | None:
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, min(float(value), 30.0))
    except ValueError:
        return None


class HttpFetcher(Fetcher):
    name = "http"
    schemes = ("http", "https")

    #: First backoff delay in seconds; doubled on every further attempt, capped at ``backoff_max``.
    backoff_base = 0.2
    backoff_max = 8.0

    def __init__(self, options: FetchOptions | None = None):
        super().__init__(options)
        o = self.options
        self._pool_kw = dict(
            num_pools=8,
            maxsize=max(o.max_parallel, 1),
            block=True,   # never more than max_parallel connections per host
            timeout=urllib3.Timeout(connect=o.timeout, read=o.timeout),
            # We retry ourselves (to resume bodies with Range); urllib3 only follows redirects.
            retries=urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=5,
                                  raise_on_redirect=True, raise_on_status=False),
            cert_reqs="CERT_REQUIRED" if o.tls_verify else "CERT_NONE",
            ca_certs=o.ca_file,
            headers={"User-Agent": f"hybridos/{__version__}"},
        )
        self.proxies = urllib.request.getproxies_environment()
        self._direct: urllib3.PoolManager | None = None
        self._by_proxy: dict[str, urllib3.ProxyManager] = {}
        self._lock = threading.Lock()
        if not o.tls_verify:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    # -- connections -----------------------------------------------------------------------------

    def _manager(self, url: str) -> urllib3.PoolManager:
        proxy = _proxy_for(url, self.proxies) if self.proxies else None
        if proxy is None and self._direct is not None:
            return self._direct   # the per-request path: no lock once the pool exists
        with self._lock:
            if proxy is None:
                if self._direct is None:
                    self._direct = urllib3.PoolManager(**self._pool_kw)
                return self._direct
            mgr = self._by_proxy.get(proxy)
            if mgr is None:
                try:
                    mgr = urllib3.ProxyManager(proxy, **self._pool_kw)
                except (ValueError, urllib3.exceptions.HTTPError) as exc:
                    raise FetchError(f"invalid proxy {proxy!r} from the environment: {exc}") from None
                self._by_proxy[proxy] = mgr
            return mgr

    def _open(self, url: str, offset: int = 0):
        """Send the request; return the response positioned at ``offset`` (status 200 or 206).

        Raises NotFoundError, FetchError (permanent) or _Transient.
        """
        headers = {"Range": f"bytes={offset}-"} if offset else None
        try:
            resp = self._manager(url).request("GET", url, headers=headers, preload_content=False)
        except urllib3.exceptions.SSLError as exc:
            raise FetchError(f"{url}: TLS error: {exc}") from None
        except urllib3.exceptions.MaxRetryError as exc:
            if isinstance(exc.reason, urllib3.exceptions.SSLError):
                raise FetchError(f"{url}: TLS error: {exc.reason}") from None
            if isinstance(exc.reason, urllib3.exceptions.ResponseError):   # too many redirects
                raise FetchError(f"{url}: {exc.reason}") from None
            raise _Transient(f"{url}: {exc.reason}") from None
        except urllib3.exceptions.LocationValueError as exc:
            raise FetchError(f"{url}: invalid URL: {exc}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _Transient(f"{url}: {exc}") from None
        status = resp.status
        if status in (200, 206):
            return resp
        resp.drain_conn()
        resp.release_conn()
        if status in (404, 410):
            raise NotFoundError(f"{url}: not found (HTTP {status})")
        if status == 416 and offset:
            raise _RangeNotSatisfiable()
        if status in TRANSIENT_STATUSES:
            raise _Transient(f"{url}: HTTP {status}", _retry_after(resp))
        raise FetchError(f"{url}: HTTP {status}")

    def _with_retries(self, url: str, attempt_fn):
        """Call ``attempt_fn()`` until it succeeds, retrying transient failures with backoff."""
        attempt = 0
        while True:
            try:
                return attempt_fn()
            except _Transient as exc:
                attempt += 1
                if attempt > self.options.retries:
                    raise FetchError(f"{exc} (gave up after {attempt} attempts)") from None
                delay = exc.retry_after
                if delay is None:
                    delay = min(self.backoff_base * 2 ** (attempt - 1), self.backoff_max)
                    delay *= 0.5 + random.random() / 2
                time.sleep(delay)

    def _transfer(self, url: str, offset: int, sink, progress: ProgressCallback | None, resp=None) -> None:
        """Copy the body from ``offset`` into ``sink(chunk)``; a cut-off body raises _Transient.

        ``sink.restart()`` is called when the server ignores the Range and sends the whole body. ``resp`` is
        a response already opened for this offset.
        """
        if resp is None:
            resp = self._open(url, offset)
        try:
            if offset:
                if resp.status == 200:
                    sink.restart()
                else:
                    crange = resp.headers.get("Content-Range", "")
                    if not crange.startswith(f"bytes {offset}-"):
                        raise FetchError(f"{url}: asked for bytes from {offset}, server sent {crange!r}")
            guard = SpeedGuard(self.options, url)
            try:
                # read1 hands over whatever arrived, so a cut-off body keeps every byte received.
                while chunk := resp.read1(CHUNK):
                    sink.write(chunk)
                    guard.update(len(chunk))
                    if progress:
                        progress(0, len(chunk))
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if isinstance(exc, OSError) and not isinstance(exc, (ConnectionError, TimeoutError)):
                    raise   # a local write error, not the network
                raise _Transient(f"{url}: connection lost after {sink.size} bytes ({exc})") from None
        finally:
            resp.release_conn()

    # -- reading ---------------------------------------------------------------------------------

    def read(self, url: str) -> bytes:
        return self.read_from(url, b"")

    def read_capped(self, url: str, limit: int) -> bytes:
        buf = _MemorySink(limit, url)

        def attempt():
            try:
                self._transfer(url, buf.size, buf, None)
            except _RangeNotSatisfiable:
                buf.restart()
                raise _Transient(f"{url}: range not satisfiable") from None
        self._with_retries(url, attempt)
        return bytes(buf.data)

    def read_from(self, url: str, partial: bytes) -> bytes:
        """The whole body of ``url`` when its first ``len(partial)`` bytes are ``partial`` (a transfer cut off
        earlier): the rest is asked for with a Range request."""
        buf = _MemorySink()
        buf.data += partial
        first = not partial
        whole: bytes | None = None

        def attempt():
            nonlocal first, whole
            resp = None
            if first:
                first = False
                resp = self._open(url)
                length = int(resp.headers.get("Content-Length", "-1"))
                if 0 <= length <= SMALL_BODY:
                    # the common small file: usually the whole body in one call
                    guard = SpeedGuard(self.options, url)
                    try:
                        data = b""
                        while len(data) < length and (chunk := resp.read1(length - len(data))):
                            data += chunk
                            guard.update(len(chunk))
                    except (urllib3.exceptions.HTTPError, OSError) as exc:
                        raise _Transient(f"{url}: connection lost ({exc})") from None
                    finally:
                        resp.release_conn()
                    if len(data) != length:
                        raise _Transient(f"{url}: body cut short")
                    whole = data
                    return
            try:
                self._transfer(url, buf.size, buf, None, resp)
            except _RangeNotSatisfiable:
                buf.restart()
                raise _Transient(f"{url}: range not satisfiable") from None
        self._with_retries(url, attempt)
        return whole if whole is not None else bytes(buf.data)

    def read_batch(self, items: Iterable[tuple[Key, str]], spool_dir: str | os.PathLike | None = None
                   ) -> Iterator[tuple[Key, bytes | BodyFile]]:
        source = iter(items)
        first = next(source, None)
        if first is None:
            return
        url = first[1]
        rest = _chain(first, source)
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https") or (self.proxies and _proxy_for(url, self.proxies)):
            yield from super().read_batch(rest, spool_dir)
            return
        large = None
        if spool_dir is not None:
            counter = itertools.count()

            def large(body_url: str) -> BodyFile:
                dest = Path(spool_dir) / f"body-{os.getpid()}-{next(counter)}"
                try:
                    self.download(DownloadRequest(body_url, dest))
                except BaseException:
                    with contextlib.suppress(FileNotFoundError):
                        dest.with_name(dest.name + ".part").unlink()
                    raise
                return BodyFile(dest, dest.stat().st_size, temporary=True)
        reader = PipelinedReader(url, fallback=self.read, resume=self.read_from, user_agent=f"hybridos/{__version__}",
                                 timeout=self.options.timeout, retries=self.options.retries,
                                 connections=min(self.options.max_parallel, PIPELINED_CONNECTIONS),
                                 large=large, large_over=_fetch.SPOOL_OVER, options=self.options,
                                 tls=self._tls_context() if scheme == "https" else None)
        yield from reader.read_batch(rest)

    def _tls_context(self) -> ssl.SSLContext:
        """TLS settings as the urllib3 pools have them: verified against the system store (or ``ca_file``)."""
        o = self.options
        if not o.tls_verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        return ssl.create_default_context(cafile=o.ca_file)

    # -- downloading -----------------------------------------------------------------------------

    def download(self, request: DownloadRequest, progress: ProgressCallback | None = None) -> Path:
        dest = Path(request.dest)
        part = dest.with_name(dest.name + ".part")
        sink = _FileSink(part, request.size, request.url)
        try:
            resumed = sink.size > 0
            self._fetch_to(request, sink, progress)
            digest = sink.hexdigest()
            if request.sha256 and digest != request.sha256.lower() and resumed:
                # The partial file came from an older or broken transfer: start over once.
                sink.restart()
                self._fetch_to(request, sink, progress)
                digest = sink.hexdigest()
        except CorruptionError:
            sink.close()
            with contextlib.suppress(FileNotFoundError):
                part.unlink()   # a body past its declared size: nothing of it is worth resuming
            raise
        finally:
            sink.close()
        if request.sha256 and digest != request.sha256.lower():
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
            raise CorruptionError(
                f"checksum mismatch for {request.url}: expected sha256 {request.sha256}, got {digest}"
            )
        os.replace(part, dest)
        if progress:
            progress(1, 0)
        return dest

    def _fetch_to(self, request: DownloadRequest, sink: _FileSink, progress: ProgressCallback | None) -> None:
        if request.size is not None and sink.size == request.size:
            return   # already complete from an earlier attempt
        if request.size is not None and sink.size > request.size:
            sink.restart()

        def attempt():
            try:
                self._transfer(request.url, sink.size, sink, progress)
            except _RangeNotSatisfiable:
                sink.restart()
                raise _Transient(f"{request.url}: range not satisfiable, starting over") from None
        self._with_retries(request.url, attempt)

    def download_many(self, requests: Sequence[DownloadRequest],
                      progress: ProgressCallback | None = None) -> list[Path]:
        """Download every request, at most ``max_parallel`` at once; on the first failure the rest is
        cancelled and that failure raised."""
        if not requests:
            return []
        workers = max(1, min(self.options.max_parallel, len(requests)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="http") as pool:
            futures = [pool.submit(self.download, r, progress) for r in requests]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for fut in futures:
                if fut.done() and fut.exception() is not None:
                    for other in futures:
                        other.cancel()
                    raise fut.exception()
        return [f.result() for f in futures]

    def close(self) -> None:
        with self._lock:
            for mgr in [self._direct, *self._by_proxy.values()]:
                if mgr is not None:
                    mgr.clear()
            self._direct = None
            self._by_proxy.clear()


def _chain(first, rest):
    yield first
    yield from rest


class _RangeNotSatisfiable(Exception):
    """HTTP 416 on a resumed request: the partial data does not fit the file on the server."""


class _MemorySink:
    def __init__(self, limit: int | None = None, url: str = ""):
        self.data = bytearray()
        self.limit = limit
        self.url = url

    @property
    def size(self) -> int:
        return len(self.data)

    def write(self, chunk: bytes) -> None:
        self.data += chunk
        if self.limit is not None and len(self.data) > self.limit:
            raise body_too_large(self.url, self.limit)

    def restart(self) -> None:
        self.data.clear()


class _FileSink:
    """Appends to a ``.part`` file and keeps its running sha256 (including bytes from earlier runs)."""

    def __init__(self, path: Path, limit: int | None = None, url: str = ""):
        self.path = path
        self.limit = limit    #: the declared size: a body growing past it is refused before it is written
        self.url = url
        self.hash = hashlib.sha256()
        self.size = 0
        # created 0600 from the start (never readable by others while it fills), never through a symlink
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise FetchError(f"cannot write the download {path}: {exc.strerror}") from None
        self.f = os.fdopen(fd, "r+b")
        while chunk := self.f.read(1 << 20):
            self.hash.update(chunk)
            self.size += len(chunk)

    def write(self, chunk: bytes) -> None:
        if self.limit is not None and self.size + len(chunk) > self.limit:
            raise CorruptionError(f"{self.url}: larger than the {self.limit} bytes its metadata declares")
        self.f.write(chunk)
        self.hash.update(chunk)
        self.size += len(chunk)

    def restart(self) -> None:
        self.f.seek(0)
        self.f.truncate()
        self.hash = hashlib.sha256()
        self.size = 0

    def hexdigest(self) -> str:
        self.f.flush()
        return self.hash.hexdigest()

    def close(self) -> None:
        self.f.close()
