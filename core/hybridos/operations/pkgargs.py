"""Package arguments as rpm-ostree's client reads them (``rust/src/client.rs`` ``client_handle_fd_argument``):
``http(s)://...`` is downloaded and installed as a local package, ``file://PATH`` and ``*.rpm`` are local
files, a ``*.src.rpm`` is refused, anything else is a package name for the repositories.

The download happens on the client side, before the transaction (as rpm-ostree's client does before it hands
the daemon file descriptors): the request then carries local files, and the origin keeps them as local
packages (``requested-local``/``replace-local``), so the next upgrade needs no network for them. Errors name
the argument as the user wrote it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from hybridos.errors import HybridosError, NotFoundError, PackageError, UsageError

#: an RPM given by URL larger than this is refused (the biggest Fedora packages are a few hundred MiB)
MAX_URL_RPM = 4 << 30


def is_http_arg(arg: str) -> bool:
    return arg.startswith(("https://", "http://"))


def is_rpm_arg(arg: str) -> bool:
    """rpm-ostree's ``is_rpm_arg``; a name with a slash that ends in .rpm is a path too."""
    return arg.endswith(".rpm") or arg.startswith("file://")


@dataclass
class PackageArgs:
    """Package arguments sorted out: ``names`` for the repositories, ``files`` (local paths, downloads included)
    and the temporary directory the downloads live in until the transaction is over (``cleanup``)."""

    names: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    tmpdir: Path | None = None

    def cleanup(self) -> None:
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    def __enter__(self) -> PackageArgs:
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()


def _download(url: str, dest_dir: Path) -> Path:
    from hybridos.fetch import DownloadRequest
    from hybridos.plugins import get_registry

    name = os.path.basename(unquote(urlsplit(url).path)) or "package.rpm"
    if name in (".", "..") or "\0" in name:
        name = "package.rpm"
    dest = dest_dir / name
    n = 1
    while dest.exists():        # two URLs with the same file name
        n += 1
        dest = dest_dir / f"{n}-{name}"
    try:
        with get_registry().fetcher_for(url) as fetcher:
            fetcher.download(DownloadRequest(url=url, dest=dest))
    except HybridosError as exc:
        raise type(exc)(f"Handling argument {url}: {exc.message}", hint=exc.hint) from None
    if dest.stat().st_size > MAX_URL_RPM:
        raise PackageError(f"Handling argument {url}: larger than {MAX_URL_RPM} bytes")
    return dest


def _check_rpm(path: Path, shown: str) -> None:
    """The file is a binary RPM (checked here so that the error names the argument, not a temporary file)."""
    from hybridos.packages.header import read_rpm_header

    try:
        header = read_rpm_header(path)
    except HybridosError as exc:
        raise PackageError(f"Handling argument {shown}: not a usable RPM: {exc.message}") from None
    if header.is_source:
        raise PackageError(f"{shown} appears to be a source RPM which are not usually intended to be installed")


def resolve_package_args(specs, *, files_only: bool = False) -> PackageArgs:
    """Sort ``specs`` into names and local files, downloading URLs into a temporary directory.

    ``files_only`` (``override replace``): every argument must be an RPM file or URL."""
    out = PackageArgs()
    try:
        for spec in specs:
            if spec.endswith(".src.rpm"):
                raise PackageError(f"{spec} appears to be a source RPM which are not usually intended to be "
                                   "installed")
            if is_http_arg(spec):
                if out.tmpdir is None:
                    out.tmpdir = Path(tempfile.mkdtemp(prefix="hybridos-rpm-urls-"))
                path = _download(spec, out.tmpdir)
                _check_rpm(path, spec)
                out.files.append(str(path))
            elif spec.startswith("file://"):
                path = unquote(spec[len("file://"):])
                if not os.path.isfile(path):
                    raise NotFoundError(f"Handling argument {spec}: no such RPM file: {path}")
                out.files.append(path)
            elif spec.endswith(".rpm") and (os.sep in spec or os.path.isfile(spec)):
                out.files.append(spec)
            elif files_only:
                raise UsageError(f"override replace takes RPM files or URLs; {spec!r} is not one")
            else:
                out.names.append(spec)
    except BaseException:
        out.cleanup()
        raise
    return out
