"""The fetch interface: what a fetch plugin (repo_fs, repo_http, third parties) implements.

A fetcher serves one or more URL schemes. The core picks the fetcher for a URL by its scheme
(``select_fetcher`` in ``hybridos.plugins``) and uses it for OSTree pulls, rpm-md metadata and RPM downloads.
"""

from __future__ import annotations

import dataclasses
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

from hybridos.errors import CorruptionError, FetchError, HybridosError

#: Called with (items_done, bytes_done) increments as data arrives.
ProgressCallback = Callable[[int, int], None]
#: The caller's handle for one item of :meth:`Fetcher.read_batch`.
Key = TypeVar("Key")
#: Bodies larger than this come out of ``read_batch(..., spool_dir=D)`` as a :class:`BodyFile`, not in memory
#: (read at call time: tests lower it).
SPOOL_OVER = 16 << 20


@dataclass(frozen=True)
class BodyFile:
    """A body too large to hold in memory: a file to read, which the caller removes when ``temporary``."""

    path: Path
    size: int
    temporary: bool


@dataclass(frozen=True)
class FetchOptions:
    """Settings shared by every fetcher; plugins ignore what does not apply to them."""

    timeout: float = 30.0
    retries: int = 4
    max_parallel: int = 8
    tls_verify: bool = True
    ca_file: str | None = None
    #: a transfer moving fewer than ``low_speed_limit`` bytes a second for ``low_speed_time`` seconds is given
    #: up, as ostree does (libcurl's low-speed limit: 1000 B/s for 30 s); 0 turns it off
    low_speed_limit: int = 1000
    low_speed_time: float = 30.0
    #: ``time.monotonic()`` by which everything fetched with these options must have arrived (None: no limit);
    #: an absolute time, so that forked workers keep the operation's deadline
    deadline: float | None = None

    def with_deadline(self, seconds: float | None) -> FetchOptions:
        """These options with a deadline ``seconds`` from now (unchanged for None)."""
        if seconds is None:
            return self
        return dataclasses.replace(self, deadline=time.monotonic() + seconds)


class SpeedGuard:
    """The low-speed limit and the deadline of one transfer: call :meth:`update` as bytes arrive (and now and
    then without any); raises FetchError naming ``what``."""

    def __init__(self, options: FetchOptions, what: str):
        self.options = options
        self.what = what
        self.window_start = time.monotonic()
        self.window_bytes = 0

    def update(self, nbytes: int = 0, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        o = self.options
        if o.deadline is not None and now > o.deadline:
            raise FetchError(f"{self.what}: not done before the deadline (the remote's or --deadline)")
        self.window_bytes += nbytes
        elapsed = now - self.window_start
        if o.low_speed_limit and o.low_speed_time and elapsed >= o.low_speed_time:
            if self.window_bytes < o.low_speed_limit * elapsed:
                raise FetchError(f"{self.what}: slower than {o.low_speed_limit} bytes/s for "
                                 f"{o.low_speed_time:g} s ({self.window_bytes} bytes in {elapsed:.1f} s)")
            self.window_start, self.window_bytes = now, 0

    def restart(self, now: float | None = None) -> None:
        """A new transfer (the connection was idle): the window starts again."""
        self.window_start = time.monotonic() if now is None else now
        self.window_bytes = 0

    def poll_interval(self) -> float:
        """How often :meth:`update` needs calling while waiting for data."""
        o = self.options
        steps = [o.low_speed_time / 4] if o.low_speed_limit and o.low_speed_time else []
        if o.deadline is not None:
            steps.append(max(0.05, (o.deadline - time.monotonic()) / 2))
        return max(0.05, min(steps, default=3600.0))


@dataclass(frozen=True)
class DownloadRequest:
    """One file to download to ``dest``; verified against ``sha256`` (hex) when given."""

    url: str
    dest: Path
    sha256: str | None = None
    size: int | None = None


def body_too_large(url: str, limit: int) -> FetchError:
    return FetchError(f"{url}: larger than the {limit} bytes allowed for it")


def sha256_file(path: str | os.PathLike) -> str:
    from hybridos.util.files import file_digest

    return file_digest(path, "sha256")


def verify_sha256(path: Path, expected: str, url: str) -> None:
    """Raise CorruptionError naming the URL when ``path`` does not hash to ``expected``."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise CorruptionError(f"checksum mismatch for {url}: expected sha256 {expected}, got {actual}")


class Fetcher(ABC):
    """Reads and downloads URLs of the schemes it names."""

    #: Human name shown by ``hybridos plugins``.
    name: ClassVar[str]
    #: URL schemes served, lower case, e.g. ("http", "https"). "" stands for plain local paths.
    schemes: ClassVar[tuple[str, ...]]

    def __init__(self, options: FetchOptions | None = None):
        self.options = options or FetchOptions()

    @abstractmethod
    def read(self, url: str) -> bytes:
        """Return the whole body of ``url``.

        Raise ``NotFoundError`` when the file does not exist (a real 404 or ENOENT) and ``FetchError`` for
        any other failure, so that callers can treat "absent" differently from "broken".
        """

    @abstractmethod
    def download(self, request: DownloadRequest, progress: ProgressCallback | None = None) -> Path:
        """Fetch ``request.url`` to ``request.dest`` and return it.

        The data lands in ``dest`` + ``.part`` first (resumed if present and the scheme allows), is checked
        against ``request.sha256`` when given, and only then renamed to ``dest``: a failed or tampered
        download never appears at ``dest``.
        """

    def download_many(self, requests: Sequence[DownloadRequest],
                      progress: ProgressCallback | None = None) -> list[Path]:
        """Download every request, ``options.max_parallel`` at a time; the first failure is raised."""
        if not requests:
            return []
        workers = max(1, min(self.options.max_parallel, len(requests)))
        if workers == 1:
            return [self.download(r, progress) for r in requests]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda r: self.download(r, progress), requests))

    def read_capped(self, url: str, limit: int) -> bytes:
        """:meth:`read`, refusing a body over ``limit`` bytes with FetchError. This default reads first and then
        checks; the bundled fetchers stop before holding more than ``limit`` (Content-Length, file size)."""
        data = self.read(url)
        if len(data) > limit:
            raise body_too_large(url, limit)
        return data

    def read_many(self, urls: Iterable[str]) -> list[bytes]:
        """Read several small files, in parallel where the fetcher allows."""
        urls = list(urls)
        workers = max(1, min(self.options.max_parallel, len(urls)))
        if workers == 1:
            return [self.read(u) for u in urls]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(self.read, urls))

    def read_batch(self, items: Iterable[tuple[Key, str]], spool_dir: str | os.PathLike | None = None
                   ) -> Iterator[tuple[Key, bytes | BodyFile]]:
        """Read many small files: yields ``(key, body)`` for each ``(key, url)`` as it arrives, in any order.

        With ``spool_dir``, a fetcher may hand a body over ``SPOOL_OVER`` bytes over as a :class:`BodyFile`
        (a temporary one in ``spool_dir``, or the file itself for local paths); this default never does.

        The first failure is raised from the iteration (``NotFoundError`` for a missing file), with the item's
        key in its ``key`` attribute, and the rest is abandoned; so is everything when the caller stops iterating. ``items`` is consumed lazily, only as fast
        as transfers can be started. This default keeps ``max_parallel`` reads in flight on threads; fetchers
        with a cheaper way to keep many requests going (HTTP pipelining, plain file reads) override it.
        """
        workers = max(1, self.options.max_parallel)
        source = iter(items)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
            running: dict = {}
            try:
                while True:
                    for key, url in source:
                        running[pool.submit(self.read, url)] = key
                        if len(running) >= 2 * workers:
                            break
                    if not running:
                        return
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        key = running.pop(fut)
                        try:
                            data = fut.result()
                        except HybridosError as exc:
                            exc.key = key
                            raise
                        yield key, data
            finally:
                for fut in running:
                    fut.cancel()

    def close(self) -> None:
        """Release connections and other resources."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
