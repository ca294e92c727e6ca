"""OpenPGP: keyrings and detached-signature verification, in process, through Sequoia (``pysequoia``).

The same verifier serves RPM header signatures (``gpgcheck``), ``repomd.xml.asc`` (``repo_gpgcheck``), OSTree
commits (``ostree.gpgsigs`` in the detached metadata) and ``summary.sig``. Policy is Sequoia's standard
policy, the one rpm uses on Fedora (rpm-sequoia): a key must be valid when it made the signature (a signature
made before the key expired stays good; one made after does not), a hard-revoked key (compromised, or no
reason given) invalidates all of its signatures, a soft revocation (superseded, retired) those made after it,
and a subkey counts only with a valid binding signature that lets it sign. Weak algorithms (MD5, SHA-1
signatures over data) are refused.

Keys come from files, armored or binary, with any number of certificates per file (a keyring).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pysequoia
from pysequoia.packet import PacketPile, Tag

from hybridos.errors import ConfigError, FormatError, SignatureError

_KEY_TAGS = (Tag.PublicKey, Tag.PublicSubkey, Tag.SecretKey, Tag.SecretSubkey)


def _first_line(exc: BaseException) -> str:
    """Sequoia's errors carry a Rust backtrace when RUST_BACKTRACE is set: keep the message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass(frozen=True)
class Key:
    """One certificate: its primary fingerprint, the 16-hex key ids of its primary key and subkeys."""

    fingerprint: str                 #: primary key, upper-case hex (as gpg and rpm-ostree print it)
    key_ids: tuple[str, ...]         #: upper-case 16-hex ids, primary first
    user_ids: tuple[str, ...]
    revoked: bool
    expires: datetime | None
    cert: pysequoia.Cert = field(repr=False, compare=False)
    problem: str = ""                #: why the policy finds no valid self-signature ("" when it is usable)

    @property
    def key_id(self) -> str:
        return self.key_ids[0]

    @property
    def user_id(self) -> str:
        return self.user_ids[0] if self.user_ids else ""


def _key(cert: pysequoia.Cert) -> Key:
    ids = []
    for packet in PacketPile.from_bytes(bytes(cert)):
        if packet.tag in _KEY_TAGS and packet.key_id:
            ids.append(packet.key_id.upper())
    problem = ""
    try:   # these evaluate the certificate under the policy: a key whose only self-signatures use SHA-1
        uids = tuple(str(u) for u in cert.user_ids)   # (as old CentOS keys) has no valid binding, as in rpm
        revoked, expires = cert.is_revoked, cert.expiration
    except Exception as exc:
        uids, revoked, expires, problem = (), False, None, _first_line(exc)
    return Key(cert.fingerprint.upper(), tuple(ids), uids, revoked, expires, cert, problem)


class Keyring:
    """Trusted certificates, looked up by key id (primary or subkey)."""

    def __init__(self, keys: Iterable[Key] = (), sources: Iterable[str] = ()):
        self.keys: list[Key] = []
        self.sources: list[str] = list(sources)
        self._by_id: dict[str, Key] = {}
        for k in keys:
            self.add(k)

    def __len__(self) -> int:
        return len(self.keys)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def add(self, key: Key) -> None:
        if key.fingerprint in {k.fingerprint for k in self.keys}:
            return
        self.keys.append(key)
        for kid in key.key_ids:
            self._by_id.setdefault(kid, key)

    def find(self, key_id: str) -> Key | None:
        """The certificate holding the key ``key_id`` (16 hex digits, or a full fingerprint)."""
        kid = key_id.upper()[-16:]
        return self._by_id.get(kid)

    def add_bytes(self, data: bytes, source: str) -> int:
        """Add every certificate in ``data`` (armored or binary); returns how many. Nothing usable: ConfigError."""
        for key in parse_keys(data, source):
            self.add(key)
        self.sources.append(source)
        return len(self.keys)

    def add_file(self, path: str | os.PathLike) -> None:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"OpenPGP key file {path} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"cannot read OpenPGP key file {path}: {exc.strerror}") from None
        self.add_bytes(data, os.fspath(path))

    def add_path(self, path: str | os.PathLike) -> None:
        """A key file, or every regular file of a directory (sorted by name), as ostree's ``gpgkeypath``."""
        p = Path(path)
        if p.is_dir():
            for child in sorted(p.iterdir()):
                if child.is_file() and not child.name.startswith("."):
                    self.add_file(child)
        else:
            self.add_file(p)

    @property
    def cert_list(self) -> list[pysequoia.Cert]:
        return [k.cert for k in self.keys]


def parse_keys(data: bytes, source: str = "key") -> list[Key]:
    """Every certificate in an armored or binary key file."""
    try:
        certs = pysequoia.Cert.split_bytes(data)
    except Exception as exc:   # pysequoia raises RuntimeError/ValueError for malformed input
        raise ConfigError(f"{source}: not an OpenPGP key file ({_first_line(exc)})") from None
    if not certs:
        raise ConfigError(f"{source}: holds no OpenPGP public key")
    return [_key(cert) for cert in certs]


def keyring_from_files(paths: Iterable[str | os.PathLike]) -> Keyring:
    ring = Keyring()
    for p in paths:
        ring.add_path(p)
    return ring


@dataclass(frozen=True)
class SignatureInfo:
    """What a signature packet says about itself (before anything is verified)."""

    key_id: str                  #: upper-case 16 hex ("" when the signature names no issuer)
    fingerprint: str             #: issuer fingerprint, upper-case ("" when absent: v4 signatures may lack it)
    created: datetime | None
    algorithm: str               #: "RSA", "EdDSA", "DSA", "ECDSA", ...
    hash: str                    #: "SHA256", ...
    version: int
    sig: pysequoia.Sig = field(repr=False, compare=False)


_ALGOS = {"RSAEncryptSign": "RSA", "RSASign": "RSA", "RSAEncrypt": "RSA", "EdDSA": "EdDSA", "Ed25519": "EdDSA",
          "Ed448": "EdDSA", "DSA": "DSA", "ECDSA": "ECDSA"}


def parse_signature(data: bytes, what: str = "signature") -> SignatureInfo:
    """One detached OpenPGP signature (armored or binary)."""
    try:
        sig = pysequoia.Sig.from_bytes(bytes(data))
    except Exception as exc:
        raise FormatError(f"{what} is not an OpenPGP signature ({_first_line(exc)})") from None
    algo = repr(sig.key_algorithm).rsplit(".", 1)[-1]
    fpr = (sig.issuer_fingerprint or "").upper()
    kid = (sig.issuer_key_id or fpr[-16:]).upper()
    return SignatureInfo(kid, fpr, sig.created, _ALGOS.get(algo, algo), repr(sig.hash_algorithm).rsplit(".", 1)[-1],
                         sig.version, sig)


@dataclass(frozen=True)
class Verified:
    """A good signature: who made it and when."""

    key: Key                     #: the certificate (its primary fingerprint and user ids)
    signing_key_id: str          #: the (sub)key that signed, 16 hex
    created: datetime | None
    algorithm: str
    hash: str
    signing_fingerprint: str = ""   #: the (sub)key that signed, upper-case hex (rpm-ostree status shows it)

    @property
    def fingerprint(self) -> str:
        return self.key.fingerprint

    def describe(self) -> str:
        who = f' "{self.key.user_id}"' if self.key.user_id else ""
        return f"{self.algorithm} key {self.signing_key_id}{who}"


def verify_detached(data: bytes, signature: bytes | SignatureInfo, keyring: Keyring, what: str,
                    hint: str | None = None) -> Verified:
    """Check one detached signature over ``data`` with the ``keyring``; return who signed.

    ``what`` names the signed object in errors ("package foo-1-1.x86_64 from repository [r]"). Raises
    SignatureError saying whether the key is unknown (NOKEY), revoked or expired, or the signature is bad.
    """
    if isinstance(signature, SignatureInfo):
        info = signature
    else:
        try:
            info = parse_signature(signature, f"the signature of {what}")
        except FormatError as exc:
            raise SignatureError(exc.message, hint=hint) from None
    key = keyring.find(info.fingerprint or info.key_id) if (info.fingerprint or info.key_id) else None
    if key is None:
        kid = info.key_id or "(no issuer)"
        known = ", ".join(k.key_id for k in keyring.keys) or "none"
        raise SignatureError(f"{what}: signed with key {kid}, which is not among the trusted keys "
                             f"(known: {known})", hint=hint)
    try:
        result = pysequoia.verify(bytes=data, store=lambda _ids: [key.cert], signature=info.sig)
    except Exception:
        result = None
    if result is None or not result.valid_sigs:
        raise SignatureError(f"{what}: {_why_bad(info, key)} (key {info.key_id or key.key_id}"
                             f"{' ' + repr(key.user_id) if key.user_id else ''})", hint=hint) from None
    signer = str(getattr(result.valid_sigs[0], "signing_key", "") or key.fingerprint).upper()
    return Verified(key, info.key_id or key.key_id, info.created, info.algorithm, info.hash, signer)


def _why_bad(info: SignatureInfo, key: Key) -> str:
    if info.version < 4:
        return f"v{info.version} signatures are not supported (only v4)"
    if key.problem:
        return f"the signing key is not usable ({key.problem})"
    if key.revoked:
        return "the signing key is revoked"
    if key.expires is not None and info.created is not None and info.created >= key.expires:
        return f"the signature was made after the signing key expired on {key.expires:%Y-%m-%d}"
    if info.hash in ("MD5", "SHA1", "RipeMD"):
        return f"the signature uses {info.hash}, which is not accepted"
    return "BAD signature: the data was changed after signing, or the signature is forged"


def verify_any(data: bytes, signatures: Sequence[bytes], keyring: Keyring, what: str,
               hint: str | None = None) -> list[Verified]:
    """All good signatures among ``signatures`` (at least one, else the first failure is raised)."""
    if not signatures:
        raise SignatureError(f"{what} is not signed", hint=hint)
    good: list[Verified] = []
    first: SignatureError | None = None
    for sig in signatures:
        try:
            good.append(verify_detached(data, sig, keyring, what, hint))
        except (SignatureError, FormatError) as exc:
            first = first or (exc if isinstance(exc, SignatureError) else SignatureError(exc.message, hint=hint))
    if not good:
        assert first is not None
        raise first
    return good
