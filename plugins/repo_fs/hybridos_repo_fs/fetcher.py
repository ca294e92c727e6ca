"""Fetching from the local file system: file:// URLs and plain paths."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

from hybridos.errors import CorruptionError, FetchError, NotFoundError
from hybridos.fetch import DownloadRequest, Fetcher, ProgressCallback, sha256_file


def url_to_path(url: str) -> Path:
    """``file:///a/b`` or ``/a/b`` -> Path('/a/b')."""
    if url.startswith("file:"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise FetchError(f"file URLs with a host are not supported: {url}")
        return Path(unquote(parts.path))
    return Path(url)


def _may_link(src: Path) -> bool:
    """Share the inode only with files nobody but us (or root) can change later."""
    try:
        owner = os.stat(src).st_uid
    except OSError:
        return False
    return owner in (os.geteuid(), 0)


class FileFetcher(Fetcher):
    """Reads local files directly; downloads are hardlinks when the file system and ownership allow
    (no byte copied), else one copy."""

    name = "file"
    schemes = ("file", "")

    def read(self, url: str) -> bytes:
        path = url_to_path(url)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"{url}: no such file") from None
        except IsADirectoryError:
            raise FetchError(f"{url}: is a directory") from None
        except OSError as exc:
            raise FetchError(f"{url}: {exc.strerror}") from None

    def download(self, request: DownloadRequest, progress: ProgressCallback | None = None) -> Path:
        src = url_to_path(request.url)
        dest = Path(request.dest)
        part = dest.with_name(dest.name + ".part")
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        try:
            try:
                if not _may_link(src):
                    raise OSError(errno.EPERM, "not linking a file owned by another user")
                os.link(src, part)   # same file system: no bytes copied at all
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    raise
                shutil.copyfile(src, part)
        except FileNotFoundError:
            raise NotFoundError(f"{request.url}: no such file") from None
        except OSError as exc:
            raise FetchError(f"{request.url}: {exc.strerror}") from None
        if request.sha256:
            actual = sha256_file(part)
            if actual != request.sha256.lower():
                part.unlink()
                raise CorruptionError(
                    f"checksum mismatch for {request.url}: expected sha256 {request.sha256}, got {actual}"
                )
        size = part.stat().st_size
        os.replace(part, dest)
        if progress:
            progress(1, size)
        return dest
