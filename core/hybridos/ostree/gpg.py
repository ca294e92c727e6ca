"""GPG signatures on commits and summaries, in libostree's format (``ostree-gpg-verifier.c``, ``ostree gpg-sign``).

A commit's signatures are binary detached OpenPGP signatures over the serialized commit object, kept in its
detached metadata (``.commitmeta``, ``a{sv}``) under ``ostree.gpgsigs`` as an ``aay``. A summary's are the same
over the ``summary`` file's bytes, in ``summary.sig`` (an ``a{sv}`` with the same key).

Trusted keys of a remote, as libostree looks for them: ``<repo>/<remote>.trustedkeys.gpg`` (written by
``remote gpg-import``) and the remote's ``gpgkeypath=`` (files or directories, ``;`` or ``,`` separated).
Signing goes through ``gpg --homedir DIR --detach-sign`` (the secret keys stay in GnuPG's keyring directory, as
with libostree, which signs through gpgme); verifying is in process (:mod:`hybridos.openpgp`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from hybridos import gvariant
from hybridos.errors import ConfigError, FormatError, SignatureError, UsageError
from hybridos.gvariant import Variant
from hybridos.openpgp import Keyring, Verified, parse_keys, parse_signature, verify_detached
from hybridos.util.atomic import atomic_write

if TYPE_CHECKING:
    from hybridos.ostree.remotes import Remote
    from hybridos.ostree.repo import Repo

METADATA_KEY = "ostree.gpgsigs"


# ---------------------------------------------------------------------------------------------------- metadata

def signatures_in(metadata: dict | None) -> list[bytes]:
    """The GPG signatures in a detached-metadata (or summary.sig) dictionary."""
    from hybridos.ostree.sign import byte_strings

    return byte_strings(metadata, METADATA_KEY)


def with_signatures(metadata: dict | None, signatures: Sequence[bytes]) -> dict:
    out = dict(metadata or {})
    sigs = signatures_in(out)
    sigs += [s for s in signatures if s not in sigs]
    out[METADATA_KEY] = Variant("aay", sigs)
    return out


def parse_detached(data: bytes | None, what: str) -> dict | None:
    if data is None:
        return None
    try:
        return gvariant.parse_vardict(data)
    except FormatError as exc:
        raise SignatureError(f"{what} is malformed: {exc}") from None


# ---------------------------------------------------------------------------------------------------- keys

def trustedkeys_path(repo: Repo, remote: str) -> Path:
    return Path(repo.path) / f"{remote}.trustedkeys.gpg"


def gpgkeypaths(remote: Remote) -> list[str]:
    value = remote.options.get("gpgkeypath", "")
    return [p.strip() for p in re.split(r"[;,]", value) if p.strip()]


def remote_keyring(repo: Repo, remote: Remote) -> Keyring:
    """The keys a remote's signatures are checked with (empty when it has none)."""
    ring = Keyring()
    own = trustedkeys_path(repo, remote.name)
    if own.is_file():
        ring.add_file(own)
    for path in gpgkeypaths(remote):
        if not os.path.exists(path):
            raise ConfigError(f'remote "{remote.name}": gpgkeypath {path} does not exist',
                              hint=f'fix gpgkeypath= in [remote "{remote.name}"] of {repo.path}/config')
        ring.add_path(path)
    return ring


def no_keys_error(remote: Remote) -> SignatureError:
    return SignatureError(
        f'remote "{remote.name}" requires GPG signatures (gpg-verify=true) but has no trusted keys',
        hint=f"import the key that signs it: hybridos repo remote gpg-import {remote.name} --keyring KEYFILE "
             f"(or set gpgkeypath=), or disable it with gpg-verify=false")


def import_keys(repo: Repo, remote: str, data: bytes, source: str, key_ids: Sequence[str] = ()) -> list[str]:
    """Add the certificates in ``data`` (only those of ``key_ids`` when given) to ``<remote>.trustedkeys.gpg``;
    returns the fingerprints added."""
    keys = parse_keys(data, source)
    if key_ids:
        wanted = [k.upper().removeprefix("0X") for k in key_ids]
        keys = [k for k in keys if any(k.fingerprint.endswith(w[-16:]) or w[-16:] in k.key_ids for w in wanted)]
        missing = [w for w in wanted if not any(k.fingerprint.endswith(w[-16:]) or w[-16:] in k.key_ids
                                                for k in keys)]
        if missing:
            raise UsageError(f"{source} has no key {missing[0]}")
    path = trustedkeys_path(repo, remote)
    existing = Keyring()
    if path.is_file():
        existing.add_file(path)
    have = {k.fingerprint for k in existing.keys}
    added = [k for k in keys if k.fingerprint not in have]
    if added:
        blob = b"".join(bytes(k.cert) for k in existing.keys) + b"".join(bytes(k.cert) for k in added)
        atomic_write(path, blob)
    return [k.fingerprint for k in added]


# ---------------------------------------------------------------------------------------------------- verifying

def verify_commit(commit: str, commit_bytes: bytes, metadata: dict | None, keyring: Keyring, source: str = "",
                  remote: str = "") -> list[Verified]:
    """Every good GPG signature on a commit (at least one, or SignatureError naming the remote and key)."""
    where = f" from {source}" if source else ""
    hint = (f"import the signing key (hybridos repo remote gpg-import {remote} --keyring KEYFILE), or set "
            f'gpg-verify=false in [remote "{remote}"] if the commits are not signed') if remote else None
    sigs = signatures_in(metadata)
    if not sigs:
        raise SignatureError(f"commit {commit}{where} is not GPG-signed (no {METADATA_KEY} in its detached "
                             "metadata); no ref was changed", hint=hint)
    good: list[Verified] = []
    first: SignatureError | None = None
    for sig in sigs:
        try:
            good.append(verify_detached(commit_bytes, sig, keyring, f"commit {commit}{where}", hint))
        except SignatureError as exc:
            first = first or exc
    if not good:
        assert first is not None
        raise SignatureError(first.message + "; no ref was changed", hint=first.hint)
    return good


def verify_summary(summary: bytes, sig_data: bytes | None, keyring: Keyring, remote: str) -> list[Verified]:
    """``gpg-verify-summary=true``: ``summary.sig`` must hold a good signature over ``summary``."""
    what = f'the summary of remote "{remote}"'
    hint = f'import the signing key (hybridos repo remote gpg-import {remote}), or set gpg-verify-summary=false'
    if sig_data is None:
        raise SignatureError(f"{what} is not signed (no summary.sig) but gpg-verify-summary=true", hint=hint)
    sigs = signatures_in(parse_detached(sig_data, f"summary.sig of remote \"{remote}\""))
    if not sigs:
        raise SignatureError(f"{what}: summary.sig holds no {METADATA_KEY}", hint=hint)
    first: SignatureError | None = None
    good = []
    for sig in sigs:
        try:
            good.append(verify_detached(summary, sig, keyring, what, hint))
        except SignatureError as exc:
            first = first or exc
    if not good:
        assert first is not None
        raise first
    return good


def commit_signatures(repo: Repo, commit: str, remote: Remote) -> list[dict]:
    """What ``status`` shows of a commit's GPG signatures under ``remote``'s keys: one entry per signature,
    ``{"valid", "fingerprint", "key-id", "user-id", "timestamp", "error"}`` (empty when unsigned)."""
    from hybridos.errors import HybridosError
    from hybridos.ostree.objects import ObjectType

    try:
        metadata = repo.read_commitmeta(commit)
        sigs = signatures_in(metadata)
        if not sigs:
            return []
        data = repo.read_metadata_bytes(commit, ObjectType.COMMIT)
        keyring = remote_keyring(repo, remote)
    except HybridosError as exc:
        return [{"valid": False, "fingerprint": "", "key-id": "", "user-id": "", "timestamp": None,
                 "error": exc.message}]
    out = []
    for raw in sigs:
        entry = {"valid": False, "fingerprint": "", "key-id": "", "user-id": "", "timestamp": None, "error": ""}
        try:
            info = parse_signature(raw)
            entry.update({"key-id": info.key_id, "fingerprint": info.fingerprint,
                          "timestamp": int(info.created.timestamp()) if info.created else None})
            v = verify_detached(data, info, keyring, f"commit {commit}")
            entry.update({"valid": True, "fingerprint": v.signing_fingerprint or v.fingerprint,
                          "user-id": v.key.user_id})
        except (SignatureError, FormatError) as exc:
            entry["error"] = exc.message
        out.append(entry)
    return out


def describe_signatures(data: bytes, metadata: dict | None, keyring: Keyring) -> list[str]:
    """``ostree show``'s signature block: "Found N signature(s):" and two lines for each."""
    sigs = signatures_in(metadata)
    if not sigs:
        return []
    out = [f"Found {len(sigs)} signature{'s' if len(sigs) != 1 else ''}:"]
    for raw in sigs:
        out.append("")
        try:
            info = parse_signature(raw)
        except FormatError as exc:
            out.append(f"  Malformed signature: {exc}")
            continue
        made = _ostree_date(info.created)
        out.append(f"  Signature made {made} using {info.algorithm} key ID {info.key_id}")
        key = keyring.find(info.fingerprint or info.key_id)
        if key is None:
            out.append("  Can't check signature: public key not found")
            continue
        try:
            v = verify_detached(data, info, keyring, "commit")
        except SignatureError:
            out.append(f'  BAD signature from "{key.user_id}"')
            continue
        out.append(f'  Good signature from "{v.key.user_id}"')
        if v.signing_key_id != v.key.key_id:
            out.append(f"  Primary key ID {v.key.key_id}")
    return out


def _ostree_date(when: datetime | None) -> str:
    if when is None:
        return "(unknown time)"
    return when.strftime("%a %b %e %H:%M:%S %Y")


# ---------------------------------------------------------------------------------------------------- signing

def gpg_detach_sign(data: bytes, key_id: str, homedir: str | os.PathLike | None) -> bytes:
    """A binary detached signature by ``key_id`` from GnuPG's keyring in ``homedir`` (``gpg`` does the signing)."""
    import subprocess

    from hybridos.util.run import CommandError, which

    gpg = which("gpg")
    if gpg is None:
        raise UsageError("signing with GPG needs the gpg program", hint="install gnupg")
    argv = [gpg, "--batch", "--no-tty", "--pinentry-mode", "loopback"]
    if homedir is not None:
        argv += ["--homedir", os.fspath(homedir)]
    argv += ["--local-user", key_id, "--detach-sign", "--output", "-"]
    # not util.run.run: that one merges stderr into stdout, and stdout is the signature here
    proc = subprocess.run(argv, env=dict(os.environ, LC_ALL="C"), input=data, capture_output=True)
    if proc.returncode != 0 or not proc.stdout:
        raise CommandError(argv, proc.returncode, proc.stderr.decode(errors="replace"))
    return proc.stdout


def sign_commit(repo: Repo, commit: str, key_ids: Sequence[str], homedir: str | os.PathLike | None) -> list[str]:
    """Add a GPG signature by each of ``key_ids`` to ``commit``'s detached metadata (``ostree gpg-sign``)."""
    from hybridos.ostree.objects import ObjectType

    if not key_ids:
        raise UsageError("no key id given")
    data = repo.read_metadata_bytes(commit, ObjectType.COMMIT)
    metadata = repo.read_commitmeta(commit)
    sigs = [gpg_detach_sign(data, k, homedir) for k in key_ids]
    repo.write_commitmeta(commit, with_signatures(metadata, sigs))
    return [parse_signature(s).key_id for s in sigs]


def delete_signatures(repo: Repo, commit: str, key_ids: Sequence[str]) -> int:
    """Remove the GPG signatures made by ``key_ids`` (``ostree gpg-sign --delete``); returns how many."""
    metadata = repo.read_commitmeta(commit)
    wanted = {k.upper().removeprefix("0X")[-16:] for k in key_ids}
    sigs = signatures_in(metadata)
    keep = [s for s in sigs if _key_id_or_empty(s) not in wanted]
    out = dict(metadata or {})
    if keep:
        out[METADATA_KEY] = Variant("aay", keep)
    else:
        out.pop(METADATA_KEY, None)
    repo.write_commitmeta(commit, out or None)
    return len(sigs) - len(keep)


def _key_id_or_empty(sig: bytes) -> str:
    try:
        return parse_signature(sig).key_id
    except FormatError:
        return ""
