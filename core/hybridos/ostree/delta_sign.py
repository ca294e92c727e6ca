"""Signed static delta superblocks (``ostree static-delta generate --sign``, ``static-delta verify``).

A signed superblock file is the GVariant ``(taya{sv})``: the magic ``OSTSGNDT`` (a big-endian ``t``), the
whole unsigned superblock as ``ay``, and a dictionary holding, per signature type, the signatures of those
bytes (``ostree.sign.ed25519`` -> ``aay`` of 64-byte ed25519 signatures), as libostree's
``ostree-repo-static-delta-compilation.c`` writes it and ``_ostree_repo_static_delta_verify_signature`` reads
it. The summary and delta indexes advertise the SHA-256 of the signed file as written.

Pure functions on bytes, and the reading of trusted key directories (``--keys-dir``: ``trusted.ed25519`` and
``trusted.ed25519.d/*``, minus ``revoked.ed25519``/``revoked.ed25519.d/*``, as libostree's ed25519 engine).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path

from hybridos import gvariant
from hybridos.errors import ConfigError, FormatError, SignatureError
from hybridos.ostree import delta_format as df
from hybridos.ostree import sign as _sign

#: Where libostree's ed25519 engine looks for trusted (and revoked) keys when no file or directory is named.
SYSTEM_KEY_DIRS = ("/etc/ostree", "/usr/share/ostree")


def is_signed_bytes(data: bytes) -> bool:
    """True when ``data`` starts like a signed superblock (the ``OSTSGNDT`` magic)."""
    return len(data) >= 8 and struct.unpack_from("<Q", data)[0] == gvariant.bswap64(df.SIGNED_MAGIC)


def unwrap(data: bytes) -> tuple[bytes, dict | None]:
    """(superblock bytes, signature dictionary) of a superblock file; the dictionary is None when unsigned."""
    if not is_signed_bytes(data):
        return data, None
    try:
        _magic, inner, sigs = gvariant.parse(df.SIGNED_SUPERBLOCK_TYPE, data)
    except FormatError as exc:
        raise FormatError(f"malformed signed superblock: {exc}") from None
    return bytes(inner), dict(sigs)


def signature_types(data: bytes) -> list[str]:
    """The signature types (``ed25519``...) a superblock file carries (empty: unsigned)."""
    _inner, sigs = unwrap(data)
    return sorted(k[len("ostree.sign."):] for k in (sigs or {}) if k.startswith("ostree.sign."))


def sign(superblock: bytes, secret_keys: Sequence[str]) -> bytes:
    """The signed superblock file: ``superblock`` (unsigned bytes) signed with each base64 ed25519 secret key."""
    if not secret_keys:
        raise ConfigError("no secret key to sign the delta with")
    if is_signed_bytes(superblock):
        raise FormatError("the superblock is signed already")
    signatures = [_sign.sign_data(_sign.parse_secret_key(k), superblock) for k in secret_keys]
    return gvariant.serialize(df.SIGNED_SUPERBLOCK_TYPE, (
        gvariant.bswap64(df.SIGNED_MAGIC), superblock,
        {_sign.METADATA_KEY: gvariant.Variant("aay", signatures)}))


def verify(data: bytes, public_keys: Sequence[bytes], what: str) -> bytes:
    """Check that the superblock file ``data`` carries a valid ed25519 signature by one of ``public_keys``;
    returns that key. SignatureError (naming ``what``) when it is unsigned, has no ed25519 signature, or none
    is valid."""
    if not public_keys:
        raise SignatureError(f"{what}: no trusted ed25519 public keys to verify it with")
    try:
        inner, sigs = unwrap(data)
    except FormatError as exc:
        raise SignatureError(f"{what}: {exc}") from None
    if sigs is None:
        raise SignatureError(f"{what} is not signed")
    signatures = _sign.byte_strings(sigs, _sign.METADATA_KEY)
    if not signatures:
        raise SignatureError(f"{what} has no {_sign.METADATA_KEY} signature")
    key = _sign.verify_data(inner, signatures, public_keys)
    if key is None:
        raise SignatureError(f"{what}: none of its {len(signatures)} ed25519 signature(s) is valid for the "
                             f"{len(public_keys)} trusted key(s)")
    return key


# ---------------------------------------------------------------------------------------------------- keys

def _key_files(base: Path, kind: str) -> list[Path]:
    files = [base / f"{kind}.ed25519"]
    d = base / f"{kind}.ed25519.d"
    if d.is_dir():
        files.extend(sorted(p for p in d.iterdir() if p.is_file()))
    return [f for f in files if f.is_file()]


def keys_from_dirs(dirs: Sequence[str | os.PathLike]) -> list[bytes]:
    """The trusted public keys of key directories (libostree's layout), revoked ones removed."""
    trusted: list[bytes] = []
    revoked: set[bytes] = set()
    for base in map(Path, dirs):
        for f in _key_files(base, "trusted"):
            trusted.extend(_sign.parse_public_key(k) for k in _sign.read_key_file(f))
        for f in _key_files(base, "revoked"):
            revoked.update(_sign.parse_public_key(k) for k in _sign.read_key_file(f))
    return [k for k in dict.fromkeys(trusted) if k not in revoked]


def public_keys(keys: Sequence[str] = (), keys_file: str | os.PathLike | None = None,
                keys_dir: str | os.PathLike | None = None) -> list[bytes]:
    """The public keys ``static-delta verify`` and ``apply-offline`` check against, as ``ostree``: the KEY
    arguments; then the keys file; with neither, the key directory (default: the system's)."""
    out = [_sign.parse_public_key(k) for k in keys]
    if keys_file is not None:
        out.extend(_sign.parse_public_key(k) for k in _sign.read_key_file(keys_file))
    if not keys and keys_file is None:
        out.extend(keys_from_dirs([keys_dir] if keys_dir is not None else SYSTEM_KEY_DIRS))
    return list(dict.fromkeys(out))
