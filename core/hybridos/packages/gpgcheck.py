"""dnf's ``gpgcheck``, ``localpkg_gpgcheck`` and ``repo_gpgcheck``: OpenPGP checks of packages and metadata.

A package's signature is the header-only signature rpm checks first: ``RSAHEADER`` (268) for RSA keys,
``DSAHEADER`` (267) for DSA and EdDSA keys (rpm 4.18 files EdDSA there), or the ``OPENPGP`` (278) array rpm 6
writes (base64 signatures). It covers the main header as it sits in the file (its 8-byte magic included); the
header carries the payload digest, which unpacking checks, so a good header signature vouches for every byte.

Keys are the repository's ``gpgkey=`` URLs, read through the fetch hook (``file://``, ``https://``...), any
number of armored or binary certificates per file. Everything is checked after download and before the
transaction touches the tree: one bad package stops it with nothing written.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from hybridos.errors import ConfigError, FetchError, FormatError, NotFoundError, SignatureError
from hybridos.fetch import FetchOptions
from hybridos.openpgp import Keyring, SignatureInfo, Verified, parse_signature, verify_detached
from hybridos.packages.header import HEADER_MAGIC, RawHeader, Tag, read_headers
from hybridos.packages.model import TransactionItem

#: rpm 6's RPMSIGTAG_OPENPGP: an array of base64 OpenPGP signatures over the header
OPENPGP_TAG = 278


def header_signatures(sig: RawHeader) -> list[bytes]:
    """The OpenPGP header signatures in a signature header (binary packets; empty when unsigned)."""
    out: list[bytes] = []
    for tag in (Tag.RSAHEADER, Tag.DSAHEADER):
        value = sig.get(tag)
        if isinstance(value, (bytes, bytearray)) and value:
            out.append(bytes(value))
    extra = sig.get(OPENPGP_TAG)
    if isinstance(extra, str):
        extra = (extra,)
    for text in extra or ():
        try:
            out.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError, TypeError):
            out.append(b"")   # unparseable: reported as a bad signature
    return out


def _fetch_key(url: str, options: FetchOptions | None) -> bytes:
    from hybridos.plugins import get_registry

    if "://" not in url:
        try:
            return Path(url).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read gpgkey {url}: {exc.strerror}") from None
    with get_registry().fetcher_for(url, options) as fetcher:
        return fetcher.read(url)


def load_keys(urls: Sequence[str], what: str, options: FetchOptions | None = None) -> Keyring:
    """The keyring of a repository's ``gpgkey=`` URLs (fetched through the fetch hook)."""
    ring = Keyring()
    for url in urls:
        try:
            data = _fetch_key(url, options)
        except (FetchError, NotFoundError) as exc:
            raise ConfigError(f"{what}: cannot fetch gpgkey {url}: {exc}") from None
        try:
            ring.add_bytes(data, url)
        except ConfigError as exc:
            raise ConfigError(f"{what}: gpgkey {exc}") from None
    return ring


def verify_rpm(path: str | os.PathLike, keyring: Keyring, what: str, hint: str | None = None) -> Verified:
    """Check the header signature of the RPM at ``path``; return who signed. SignatureError names ``what``
    (the package) and the key id."""
    try:   # the raw headers only: decoding the whole main header is not needed to check its signature
        with open(path, "rb") as f:
            signature, main = read_headers(f)
    except FormatError as exc:
        raise SignatureError(f"{what}: cannot check its signature: {exc}", hint=hint) from None
    except OSError as exc:
        raise SignatureError(f"{what}: cannot read {path}: {exc.strerror}", hint=hint) from None
    raws = header_signatures(signature)
    if not raws:
        raise SignatureError(f"{what} is not signed (no header signature), but its repository requires "
                             "signed packages (gpgcheck=1)", hint=hint)
    data = HEADER_MAGIC + main.blob
    first: SignatureError | None = None
    for raw in raws:
        try:
            sig: SignatureInfo | bytes = parse_signature(raw, f"the header signature of {what}")
        except FormatError as exc:
            first = first or SignatureError(exc.message, hint=hint)
            continue
        try:
            return verify_detached(data, sig, keyring, what, hint)
        except SignatureError as exc:
            first = first or exc
    assert first is not None
    raise first


class PackageVerifier:
    """Checks the RPMs of a transaction against their repositories' keys (each keyring loaded once)."""

    def __init__(self, repos: Sequence = (), *, options: FetchOptions | None = None,
                 localpkg_gpgcheck: bool = False, local_keys: Sequence[str] = ()):
        self.repos = [r for r in repos if getattr(r, "id", None)]
        self.options = options
        self.localpkg_gpgcheck = localpkg_gpgcheck
        self.local_keys = tuple(local_keys) or tuple(k for r in self.repos for k in getattr(r, "gpgkeys", ()))
        self._rings: dict[str, Keyring] = {}

    def repo_of(self, location: str):
        """The repository a package URL comes from (by base URL), or None for a local file."""
        for repo in self.repos:
            for base in (repo.baseurl, *repo.mirrors):
                if location.startswith(base.rstrip("/") + "/"):
                    return repo
        return None

    def _ring(self, key: str, urls: Sequence[str], what: str) -> Keyring:
        ring = self._rings.get(key)
        if ring is None:
            ring = self._rings[key] = load_keys(urls, what, self.options)
        return ring

    def check(self, item: TransactionItem, path: Path) -> Verified | None:
        """Verify one downloaded package when its repository (or localpkg_gpgcheck) asks; None when not."""
        repo = self.repo_of(item.location)
        if repo is None:   # a local file (named on the command line, or stored by an earlier layering)
            if not self.localpkg_gpgcheck:
                return None
            what = f"local package {item.nevra} ({Path(item.location).name})"
            hint = "sign it with a key of an enabled repository's gpgkey=, or disable localpkg_gpgcheck"
            urls, name = self.local_keys, "local packages"
        else:
            if not repo.gpgcheck:
                return None
            what = f"package {item.nevra} from repository [{repo.id}]"
            hint = (f"check that [{repo.id}] gpgkey= names the key the repository signs with; set gpgcheck=0 "
                    f"in [{repo.id}] only if you trust the mirror and the connection")
            urls, name = repo.gpgkeys, f"repository [{repo.id}]"
        if not urls:
            raise SignatureError(f"{what} must be signed (gpgcheck=1) but {name} lists no gpgkey",
                                 hint=f"add gpgkey=URL of its signing key to {name}")
        return verify_rpm(path, self._ring(name, urls, name), what, hint)

    def check_all(self, items: Iterable[TransactionItem], rpms: Mapping[str, Path]) -> dict[str, Verified]:
        """Verify every package that needs it; raises at the first bad one (before anything is unpacked)."""
        out: dict[str, Verified] = {}
        for item in items:
            path = rpms.get(str(item.nevra))
            if path is None:
                continue
            verified = self.check(item, Path(path))
            if verified is not None:
                out[str(item.nevra)] = verified
        return out


def check_packages(items: Iterable[TransactionItem], rpms: Mapping[str, Path], repos: Sequence = (), *,
                   options: FetchOptions | None = None, localpkg_gpgcheck: bool = False) -> dict[str, Verified]:
    """:meth:`PackageVerifier.check_all` in one call."""
    return PackageVerifier(repos, options=options, localpkg_gpgcheck=localpkg_gpgcheck).check_all(items, rpms)


def verify_repomd(repomd: bytes, signature: bytes | None, keyring: Keyring, repo_id: str, url: str) -> Verified:
    """``repo_gpgcheck``: ``repomd.xml.asc`` must be a good signature over ``repomd.xml`` by a repository key."""
    what = f"repository [{repo_id}] metadata ({url})"
    hint = (f"the mirror may be tampered with or stale; check [{repo_id}] gpgkey=, or set repo_gpgcheck=0 if "
            "the repository does not sign its metadata")
    if signature is None:
        raise SignatureError(f"{what} is not signed: {url}.asc is missing (repo_gpgcheck=1)", hint=hint)
    return verify_detached(repomd, signature, keyring, what, hint)
