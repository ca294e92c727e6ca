"""Fetching from the local file system: file:// URLs and plain paths."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from hybridos import fetch as _fetch
from hybridos.errors import CorruptionError, FetchError, HybridosError, NotFoundError
from hybridos.fetch import (
    BodyFile,
    DownloadRequest,
    Fetcher,
    Key,
    ProgressCallback,
    body_too_large,
    sha256_file,
)
from hybridos.util.files import read_fd


def url_to_path(url: str) -> Path:
    """``file:///a/b`` or ``/a/b`` -> Path('/a/b')."""
    return Path(_local(url))


def _local(url: str) -> str:
    """``file:///a/b`` or ``/a/b`` -> '/a/b' (a str: this runs once per object of a local pull)."""
    if url.startswith("file:"):
        if url.startswith("file:///") and "%" not in url and "?" not in url and "#" not in url:
            return url[7:]
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise FetchError(f"file URLs with a host are not supported: {url}")
        return unquote(parts.path)
    return url


class FileFetcher(Fetcher):
    """Reads local files directly; downloads are hardlinks when the file system allows and the file is ours or
    root's (so nobody else can change it later through the shared inode): no byte copied. Else one copy."""

    name = "file"
    schemes = ("file", "")

    def read_capped(self, url: str, limit: int) -> bytes:
        try:
            size = os.stat(_local(url)).st_size
        except OSError:
            size = 0   # read() reports it
        if size > limit:
            raise body_too_large(url, limit)
        return super().read_capped(url, limit)

    def read(self, url: str) -> bytes:
        path = _local(url)
        try:
            # open, fstat, read, close: a pull reads tens of thousands of small files this way
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFoundError(f"{url}: no such file") from None
        except OSError as exc:
            raise FetchError(f"{url}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise FetchError(f"{url}: is a directory")
            return read_fd(fd, st.st_size)
        except OSError as exc:
            raise FetchError(f"{url}: {exc.strerror}") from None
        finally:
            os.close(fd)

    def read_batch(self, items: Iterable[tuple[Key, str]], spool_dir: str | os.PathLike | None = None
                   ) -> Iterator[tuple[Key, bytes | BodyFile]]:
        """One read after the other: a local read hardly waits, so threads would only add switching. With
        ``spool_dir``, a file over ``SPOOL_OVER`` bytes is handed over as itself (not temporary)."""
        for key, url in items:
            if spool_dir is not None:
                path = _local(url)
                with contextlib.suppress(OSError):
                    st = os.stat(path)
                    if stat.S_ISREG(st.st_mode) and st.st_size > _fetch.SPOOL_OVER:
                        yield key, BodyFile(Path(path), st.st_size, temporary=False)
                        continue
            try:
                yield key, self.read(url)
            except HybridosError as exc:
                exc.key = key
                raise

    def download(self, request: DownloadRequest, progress: ProgressCallback | None = None) -> Path:
        src = _local(request.url)
        dest = os.fspath(request.dest)
        part = dest + ".part"
        try:
            st = os.stat(src)
        except FileNotFoundError:
            raise NotFoundError(f"{request.url}: no such file") from None
        except OSError as exc:
            raise FetchError(f"{request.url}: {exc.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            raise FetchError(f"{request.url}: is a directory")
        # Without a checksum to check first, the hardlink itself is the atomic step.
        staged = part if request.sha256 else dest
        if not (st.st_uid in (os.geteuid(), 0) and _link(src, staged)):
            staged = part
            try:
                shutil.copyfile(src, part)
            except FileNotFoundError:
                raise NotFoundError(f"{request.url}: no such file") from None
            except OSError as exc:
                raise FetchError(f"{request.url}: {exc.strerror}") from None
        if request.sha256:
            actual = sha256_file(staged)
            if actual != request.sha256.lower():
                os.unlink(staged)
                raise CorruptionError(
                    f"checksum mismatch for {request.url}: expected sha256 {request.sha256}, got {actual}"
                )
        if staged != dest:
            os.replace(staged, dest)
        if progress:
            progress(1, st.st_size)
        return request.dest if isinstance(request.dest, Path) else Path(dest)


def _link(src: str, dest: str) -> bool:
    """Hardlink ``src`` to ``dest`` (replacing it); False when the file system does not allow it."""
    for _ in range(2):
        try:
            os.link(src, dest)
            return True
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dest)
        except OSError:
            return False
    return False
