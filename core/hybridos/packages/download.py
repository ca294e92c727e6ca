"""Downloading a transaction's RPMs through the fetch hook into a verified, content-keyed cache.

Each RPM lands in the cache only after matching the checksum the repository metadata gives for it
(``<checksum-prefix>-<file name>``), so a second run finds everything and downloads nothing. Local RPM files
named on the command line are used in place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from hybridos.errors import CorruptionError, FetchError, FormatError, NotFoundError
from hybridos.fetch import DownloadRequest, FetchOptions, ProgressCallback
from hybridos.packages.model import Transaction, TransactionItem, safe_file_name
from hybridos.packages.repomd import LoadedRepo
from hybridos.util.files import file_digest

_HASHES = {"sha": "sha1", "sha1": "sha1", "sha224": "sha224", "sha256": "sha256", "sha384": "sha384",
           "sha512": "sha512", "md5": "md5"}


def split_checksum(checksum: str, what: str) -> tuple[str, str]:
    """``"sha256:ab12..."`` -> ("sha256", "ab12..."); a missing or unknown checksum is an error."""
    algo, _, digest = checksum.partition(":")
    algo = _HASHES.get(algo.lower())
    if not digest or algo is None:
        raise FormatError(f"{what}: the repository metadata gives no usable checksum ({checksum or 'none'})")
    return algo, digest.lower()


def cache_name(item: TransactionItem) -> str:
    """The cache file name of an item: checksum prefix + the RPM's file name."""
    algo, digest = split_checksum(item.checksum, str(item.nevra))
    base = unquote(urlsplit(item.location).path).rsplit("/", 1)[-1] or f"{safe_file_name(item.nevra)}.rpm"
    return f"{digest[:24]}-{base}"


def _is_local(location: str) -> bool:
    return "://" not in location


def _alternatives(url: str, repos: Sequence[LoadedRepo]) -> list[str]:
    """The same package at the other base URLs of the repository ``url`` comes from."""
    for repo in repos:
        base = repo.baseurl.rstrip("/") + "/"
        if url.startswith(base):
            rest = url[len(base):]
            return [m.rstrip("/") + "/" + rest for m in repo.mirrors if m.rstrip("/") + "/" != base]
    return []


def _failover(entries, repos: Sequence[LoadedRepo], options: FetchOptions | None,
              progress: ProgressCallback | None) -> None:
    """Retry every not yet downloaded entry, one by one, from its URL and then its mirrors."""
    from hybridos.plugins import get_registry

    for _item, req, _algo in entries:
        if req.dest.is_file():
            continue
        error: Exception | None = None
        for url in (req.url, *_alternatives(req.url, repos)):
            try:
                with get_registry().fetcher_for(url, options) as fetcher:
                    fetcher.download(dataclasses.replace(req, url=url), progress)
                break
            except (FetchError, NotFoundError, CorruptionError) as exc:
                error = exc
        else:
            raise error


def download_packages(items: Transaction | Iterable[TransactionItem], cachedir: str | os.PathLike, *,
                      repos: Sequence[LoadedRepo] = (), options: FetchOptions | None = None,
                      progress: ProgressCallback | None = None) -> dict[str, Path]:
    """Fetch every install/upgrade item's RPM (in parallel per fetcher) and return ``str(nevra) -> path``.

    Files already in ``cachedir`` are reused without any network access. With ``repos`` given, a package
    that fails from its repository's base URL is tried from the repository's other base URLs.
    """
    from hybridos.plugins import get_registry

    if isinstance(items, Transaction):
        items = items.installs
    cachedir = Path(cachedir)
    cachedir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Path] = {}
    pending: dict[str, list[tuple[TransactionItem, DownloadRequest, str]]] = defaultdict(list)
    for item in items:
        if not item.location:
            continue
        if _is_local(item.location):
            result[str(item.nevra)] = Path(item.location)
            continue
        algo, digest = split_checksum(item.checksum, str(item.nevra))
        dest = cachedir / cache_name(item)
        if dest.is_file():
            result[str(item.nevra)] = dest
            continue
        # The fetcher checks sha256 before renaming into place; other algorithms land beside and are checked here.
        target = dest if algo == "sha256" else dest.with_name(f".unverified-{dest.name}")
        req = DownloadRequest(item.location, target, digest if algo == "sha256" else None, item.size)
        scheme = urlsplit(item.location).scheme.lower()
        pending[scheme].append((item, req, algo))
    registry = get_registry()
    for entries in pending.values():
        with registry.fetcher_for(entries[0][1].url, options) as fetcher:
            try:
                fetcher.download_many([req for _, req, _ in entries], progress)
            except (FetchError, NotFoundError, CorruptionError):
                if not repos:
                    raise
                _failover(entries, repos, options, progress)
        for item, req, algo in entries:
            dest = cachedir / cache_name(item)
            if algo != "sha256":
                _, digest = split_checksum(item.checksum, str(item.nevra))
                actual = file_digest(req.dest, algo)
                if actual != digest:
                    with contextlib.suppress(FileNotFoundError):
                        req.dest.unlink()
                    raise CorruptionError(f"checksum mismatch for {req.url}: expected {algo} {digest}, "
                                          f"got {actual}")
                os.replace(req.dest, dest)
            result[str(item.nevra)] = dest
    return result
