"""Commit signatures in OSTree's ed25519 format (libostree ``ostree-sign-ed25519.c``).

A signature is 64 bytes of ed25519 over the serialized commit object. Signatures live in the commit's detached
metadata (``.commitmeta``, ``a{sv}``) under ``ostree.sign.ed25519`` as an ``aay``. Public keys are base64 of
32 bytes; secret keys base64 of 64 bytes (seed then public key, libsodium's layout). Key files hold one key per
line.

The pure functions (keys, signing and verifying bytes, metadata dictionaries) come first; the two at the end
read and write a repository.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

# cryptography is imported where a key is used: remotes import this module, and `status` should not pay ~15 ms
from hybridos.errors import ConfigError, SignatureError, UsageError
from hybridos.gvariant import Variant

if TYPE_CHECKING:
    from hybridos.ostree.repo import Repo

SIGN_TYPES = ("ed25519",)
METADATA_KEY = "ostree.sign.ed25519"
PUBLIC_KEY_SIZE = 32
SECRET_KEY_SIZE = 64
SIGNATURE_SIZE = 64


def check_sign_type(name: str) -> str:
    if name not in SIGN_TYPES:
        raise UsageError(f"signature type {name!r} is not supported (supported: {', '.join(SIGN_TYPES)})")
    return name


# ---------------------------------------------------------------------------------------------------- keys

def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{what} is not valid base64") from None


def parse_public_key(text: str) -> bytes:
    """A base64 ed25519 public key -> its 32 raw bytes."""
    raw = _b64(text, "ed25519 public key")
    if len(raw) != PUBLIC_KEY_SIZE:
        raise ConfigError(f"ed25519 public key must be {PUBLIC_KEY_SIZE} bytes, got {len(raw)}")
    return raw


def parse_secret_key(text: str) -> bytes:
    """A base64 ed25519 secret key (64 bytes: seed + public key; a bare 32-byte seed is accepted) -> the seed."""
    raw = _b64(text, "ed25519 secret key")
    if len(raw) == SECRET_KEY_SIZE:
        seed, pub = raw[:32], raw[32:]
        if public_key_of(seed) != pub:
            raise ConfigError("ed25519 secret key is inconsistent: its public half does not match its seed")
        return seed
    if len(raw) == 32:
        return raw
    raise ConfigError(f"ed25519 secret key must be {SECRET_KEY_SIZE} bytes, got {len(raw)}")


def key_lines(text: str) -> list[str]:
    """The keys of a key file: one per line; blank lines and ``#`` comments skipped."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def read_key_file(path: str | os.PathLike) -> list[str]:
    try:
        with open(path, encoding="ascii") as f:
            return key_lines(f.read())
    except FileNotFoundError:
        raise ConfigError(f"key file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read key file {path}: {exc}") from None


def public_key_of(seed: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def generate_keypair() -> tuple[str, str]:
    """A new (secret, public) pair, base64, in OSTree's layout."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    pub = public_key_of(seed)
    return base64.b64encode(seed + pub).decode(), base64.b64encode(pub).decode()


# ---------------------------------------------------------------------------------------------------- bytes

def sign_data(seed: bytes, data: bytes) -> bytes:
    """The 64-byte ed25519 signature of ``data``."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(seed).sign(data)


def verify_data(data: bytes, signatures: Iterable[bytes], public_keys: Iterable[bytes]) -> bytes | None:
    """The first public key for which one of ``signatures`` is valid over ``data``, or None."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys = [Ed25519PublicKey.from_public_bytes(k) for k in public_keys]
    for sig in signatures:
        if len(sig) != SIGNATURE_SIZE:
            continue
        for key in keys:
            try:
                key.verify(sig, data)
            except InvalidSignature:
                continue
            return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return None


# ---------------------------------------------------------------------------------------------------- metadata

def signatures_in(metadata: dict | None) -> list[bytes]:
    """The ed25519 signatures in a detached-metadata dictionary (empty when there are none)."""
    return byte_strings(metadata, METADATA_KEY)


def byte_strings(metadata: dict | None, key: str) -> list[bytes]:
    """The ``aay`` value under ``key`` of a metadata dictionary as a list of bytes (empty when absent or of
    another type): how every signature type keeps its signatures."""
    value = (metadata or {}).get(key)
    if isinstance(value, Variant):
        if value.signature != "aay":
            return []
        value = value.value
    if not isinstance(value, list):
        return []
    return [bytes(v) for v in value if isinstance(v, (bytes, bytearray))]


def with_signature(metadata: dict | None, signature: bytes) -> dict:
    """A copy of ``metadata`` with ``signature`` added (once) under ``ostree.sign.ed25519``."""
    out = dict(metadata or {})
    sigs = signatures_in(out)
    if signature not in sigs:
        sigs.append(signature)
    out[METADATA_KEY] = Variant("aay", sigs)
    return out


def without_signatures(metadata: dict | None, public_keys: Sequence[bytes], data: bytes) -> dict:
    """A copy of ``metadata`` without the signatures made by any of ``public_keys``."""
    out = dict(metadata or {})
    keep = [s for s in signatures_in(out) if verify_data(data, [s], public_keys) is None]
    if keep:
        out[METADATA_KEY] = Variant("aay", keep)
    else:
        out.pop(METADATA_KEY, None)
    return out


def verify_commit(commit: str, commit_bytes: bytes, metadata: dict | None, public_keys: Sequence[bytes],
                  source: str = "") -> bytes:
    """Check that ``commit_bytes`` carries a valid signature by one of ``public_keys``; return that key.

    Raises SignatureError: no keys to check against, no signature, or none made by a known key.
    """
    where = f" from {source}" if source else ""
    if not public_keys:
        raise SignatureError(f"commit {commit}{where}: signature verification is required but no ed25519 "
                             "public keys are configured (verification-ed25519-key or -file)")
    sigs = signatures_in(metadata)
    if not sigs:
        raise SignatureError(f"commit {commit}{where} is not signed (no {METADATA_KEY} signatures)")
    key = verify_data(commit_bytes, sigs, public_keys)
    if key is None:
        raise SignatureError(f"commit {commit}{where}: none of its {len(sigs)} ed25519 signature(s) is valid "
                             f"for the {len(public_keys)} trusted key(s) (wrong signature or unknown key)")
    return key


# ---------------------------------------------------------------------------------------------------- repository

def sign_commit(repo: Repo, commit: str, secret_keys: Sequence[str]) -> list[str]:
    """Sign ``commit`` with every secret key (base64); returns the public keys (base64) that signed."""
    from hybridos.ostree.objects import ObjectType

    if not secret_keys:
        raise UsageError("no secret key given")
    data = repo.read_metadata_bytes(commit, ObjectType.COMMIT)
    metadata = repo.read_commitmeta(commit)
    signers = []
    for text in secret_keys:
        seed = parse_secret_key(text)
        metadata = with_signature(metadata, sign_data(seed, data))
        signers.append(base64.b64encode(public_key_of(seed)).decode())
    repo.write_commitmeta(commit, metadata)
    return signers


def verify_commit_in_repo(repo: Repo, commit: str, public_keys: Sequence[str]) -> str:
    """Verify a stored commit against base64 public keys; returns the key (base64) that matched."""
    from hybridos.ostree.objects import ObjectType

    data = repo.read_metadata_bytes(commit, ObjectType.COMMIT)
    key = verify_commit(commit, data, repo.read_commitmeta(commit), [parse_public_key(k) for k in public_keys])
    return base64.b64encode(key).decode()


def delete_signatures(repo: Repo, commit: str, public_keys: Sequence[str]) -> int:
    """Remove the signatures made by ``public_keys`` (base64); returns how many were removed."""
    from hybridos.ostree.objects import ObjectType

    data = repo.read_metadata_bytes(commit, ObjectType.COMMIT)
    metadata = repo.read_commitmeta(commit)
    before = len(signatures_in(metadata))
    new = without_signatures(metadata, [parse_public_key(k) for k in public_keys], data)
    repo.write_commitmeta(commit, new or None)
    return before - len(signatures_in(new))
