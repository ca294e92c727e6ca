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
import time
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
    #: key id -> (public key for OpenSSL, start, end of the window in which it may sign), see _fast_keys
    fast: dict = field(default_factory=dict, repr=False, compare=False)

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
    key = Key(cert.fingerprint.upper(), tuple(ids), uids, revoked, expires, cert, problem)
    if not problem and not revoked:
        key.fast.update(_fast_keys(cert, expires))
    return key


class Keyring:
    """Trusted certificates, looked up by key id (primary or subkey)."""

    def __init__(self, keys: Iterable[Key] = (), sources: Iterable[str] = ()):
        self.keys: list[Key] = []
        self.sources: list[str] = list(sources)
        #: signing key id -> its fingerprint, once Sequoia has accepted a signature by it (see _fast_verify)
        self.vouched: dict[str, str] = {}
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
    kid = info.key_id or key.key_id
    if kid in keyring.vouched and _fast_verify(data, info, key.fast.get(kid)):
        return Verified(key, kid, info.created, info.algorithm, info.hash, keyring.vouched[kid])
    try:
        result = pysequoia.verify(bytes=data, store=lambda _ids: [key.cert], signature=info.sig)
    except Exception:
        result = None
    if result is None or not result.valid_sigs:
        raise SignatureError(f"{what}: {_why_bad(info, key)} (key {info.key_id or key.key_id}"
                             f"{' ' + repr(key.user_id) if key.user_id else ''})", hint=hint) from None
    signer = str(getattr(result.valid_sigs[0], "signing_key", "") or key.fingerprint).upper()
    if kid in key.fast and signer.endswith(kid):
        keyring.vouched[kid] = signer
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


# ---------------------------------------------------------------------------------------------------- fast path
#
# Sequoia's pure-Rust RSA takes ~1.3 ms to check one RSA-4096 signature (Fedora's keys are RSA-4096), a third of
# the time of installing a small package. So the arithmetic of the common case goes to OpenSSL (``cryptography``)
# while Sequoia stays the judge of keys: a (sub)key is used this way only after Sequoia has accepted a signature
# by it in this keyring (its binding, flags, algorithm and policy are then known good), only for v4 binary
# signatures with a SHA-2 hash, no critical subpacket beyond creation time and issuer, no expiry of their own,
# made inside the key's window: from its latest self-signature or binding to its expiry, in a certificate
# without any revocation and whose components have a single binding each. Anything else goes to Sequoia.

_SHA2 = {8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}
_SAFE_CRITICAL = {2, 16, 33}      # signature creation time, issuer, issuer fingerprint


def _mpi(buf: bytes, at: int) -> tuple[int, int]:
    bits = int.from_bytes(buf[at:at + 2], "big")
    n = (bits + 7) // 8
    if at + 2 + n > len(buf):
        raise ValueError("truncated MPI")
    return int.from_bytes(buf[at + 2:at + 2 + n], "big"), at + 2 + n


def _public_key(body: bytes):
    """An OpenSSL public key from a v4 public (sub)key packet body (RSA or legacy EdDSA on Ed25519)."""
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    if len(body) < 6 or body[0] != 4:
        return None
    algo = body[5]
    if algo in (1, 3):
        n, at = _mpi(body, 6)
        e, _ = _mpi(body, at)
        return rsa.RSAPublicNumbers(e, n).public_key()
    if algo == 22:
        oid_len = body[6]
        oid = body[7:7 + oid_len]
        if oid != bytes.fromhex("2b06010401da470f01"):   # Ed25519 (legacy OID)
            return None
        point, _ = _mpi(body, 7 + oid_len)
        raw = point.to_bytes(33, "big")
        return ed25519.Ed25519PublicKey.from_public_bytes(raw[1:]) if raw[0] == 0x40 else None
    return None


def _fast_keys(cert, expires: datetime | None) -> dict:
    """key id -> (OpenSSL key, start, end) for the components of a revocation-free certificate (see above)."""
    from pysequoia.packet import SignatureType

    comps: list[list] = []     # [key id, created, body, [self-signature packets]]
    for packet in PacketPile.from_bytes(bytes(cert)):
        if packet.tag in (Tag.PublicKey, Tag.PublicSubkey):
            comps.append([packet.key_id.upper(), packet.key_created, packet.body, []])
        elif packet.tag == Tag.Signature and comps:
            st = packet.signature_type
            if st in (SignatureType.KeyRevocation, SignatureType.SubkeyRevocation,
                      SignatureType.CertificationRevocation):
                return {}
            if st != SignatureType.DirectKey:
                comps[-1][3].append(packet)
    out = {}
    for i, (kid, created, body, sigs) in enumerate(comps):
        if i > 0:    # a subkey: exactly one binding, which gives its expiry
            bindings = [p for p in sigs if p.signature_type == SignatureType.SubkeyBinding]
            if len(bindings) != 1 or bindings[0].signature_created is None:
                continue
            start = max(created, bindings[0].signature_created)
            validity = bindings[0].key_validity_period
            end = created + validity if validity else None
            if expires is not None:
                end = expires if end is None else min(end, expires)
        else:        # the primary key: valid from its latest self-certification to the certificate's expiry
            times = [p.signature_created for p in sigs if p.signature_created is not None]
            if not times:
                continue
            start, end = max([created, *times]), expires
        try:
            public = _public_key(body)
        except (ValueError, TypeError):
            public = None
        if public is not None:
            out[kid] = (public, start, end)
    return out


def _sig_fields(raw: bytes) -> tuple[bytes, int, int, bytes, bytes] | None:
    """A v4 signature packet -> (hashed part, sig type, hash algo, left 16 bits, the signature MPIs' bytes)."""
    if not raw or not raw[0] & 0x80:
        return None
    if raw[0] & 0x40:   # new format
        if (raw[0] & 0x3F) != 2:
            return None
        first = raw[1]
        if first < 192:
            start, length = 2, first
        elif first < 224:
            start, length = 3, ((first - 192) << 8) + raw[2] + 192
        elif first == 255:
            start, length = 6, int.from_bytes(raw[2:6], "big")
        else:
            return None
    else:
        if ((raw[0] >> 2) & 0x0F) != 2:
            return None
        ltype = raw[0] & 3
        if ltype == 3:
            return None
        size = 1 << ltype
        start, length = 1 + size, int.from_bytes(raw[1:1 + size], "big")
    body = raw[start:start + length]
    if len(body) != length or len(raw) != start + length or len(body) < 6 or body[0] != 4:
        return None
    hashed_len = int.from_bytes(body[4:6], "big")
    hashed_end = 6 + hashed_len
    if hashed_end + 2 > len(body):
        return None
    at = 6
    while at < hashed_end:   # subpackets: refuse critical ones we do not know (Sequoia decides those)
        first = body[at]
        if first < 192:
            n, at = first, at + 1
        elif first < 255:
            n, at = ((first - 192) << 8) + body[at + 1] + 192, at + 2
        else:
            n, at = int.from_bytes(body[at + 1:at + 5], "big"), at + 5
        if n < 1 or at + n > hashed_end:
            return None
        if body[at] & 0x80 and (body[at] & 0x7F) not in _SAFE_CRITICAL:
            return None
        at += n
    unhashed_len = int.from_bytes(body[hashed_end:hashed_end + 2], "big")
    rest = hashed_end + 2 + unhashed_len
    if rest + 2 > len(body):
        return None
    return body[:hashed_end], body[1], body[3], body[rest:rest + 2], body[rest + 2:]


def _fast_verify(data: bytes, info: SignatureInfo, material) -> bool:
    """True only when OpenSSL confirms the signature under the conditions above; False means "ask Sequoia"."""
    import hashlib

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils

    if material is None or info.version != 4 or info.created is None or info.sig.expiration is not None:
        return False
    public, start, end = material
    if info.created < start or (end is not None and info.created >= end):
        return False
    if info.created.timestamp() > time.time() + 60:
        return False
    try:
        fields = _sig_fields(bytes(info.sig))
    except (IndexError, ValueError):
        return False
    if fields is None:
        return False
    hashed, sig_type, hash_algo, left16, mpis = fields
    name = _SHA2.get(hash_algo)
    if name is None or sig_type != 0x00:
        return False
    h = hashlib.new(name, data)
    h.update(hashed)
    h.update(b"\x04\xff" + len(hashed).to_bytes(4, "big"))
    digest = h.digest()
    if digest[:2] != left16:
        return False
    try:
        if isinstance(public, rsa.RSAPublicKey):
            value, _ = _mpi(mpis, 0)
            sig = value.to_bytes((public.key_size + 7) // 8, "big")
            algo = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512(),
                    "sha224": hashes.SHA224()}[name]
            public.verify(sig, digest, padding.PKCS1v15(), utils.Prehashed(algo))
            return True
        if isinstance(public, ed25519.Ed25519PublicKey):
            r, at = _mpi(mpis, 0)
            s_, _ = _mpi(mpis, at)
            public.verify(r.to_bytes(32, "big") + s_.to_bytes(32, "big"), digest)
            return True
    except (InvalidSignature, ValueError, OverflowError):
        return False
    return False
