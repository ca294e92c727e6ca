"""The OpenPGP verifier against signatures made by the real gpg: key files, algorithms, expiry, revocation."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from hybridos.errors import ConfigError, SignatureError
from hybridos.openpgp import Keyring, parse_keys, parse_signature, verify_detached
from tests.conftest import require_tool

DATA = Path(__file__).parent.parent / "data" / "distribution-gpg-keys"
GO_RPMDB = Path("/usr/share/gocode/src/github.com/knqyf263/go-rpmdb/pkg/testdata")


def ring(*blobs: bytes) -> Keyring:
    r = Keyring()
    for i, b in enumerate(blobs):
        r.add_bytes(b, f"key{i}")
    return r


def test_key_files_armored_binary_and_several_per_file(keys, tmp_path):
    both = keys.rsa.public_armored + keys.ed.public_armored
    assert [k.fingerprint for k in parse_keys(both)] == [keys.rsa.fingerprint, keys.ed.fingerprint]
    binary = keys.rsa.public_binary + keys.ed.public_binary
    assert [k.fingerprint for k in parse_keys(binary)] == [keys.rsa.fingerprint, keys.ed.fingerprint]
    [k] = parse_keys(keys.rsa.public_binary)
    assert k.key_id == keys.rsa.key_id and k.user_id == "RSA Signer <rsa@example.com>"
    with pytest.raises(ConfigError, match="not an OpenPGP key file"):
        parse_keys(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\ngarbage\n-----END PGP PUBLIC KEY BLOCK-----\n", "x.asc")
    with pytest.raises(ConfigError, match="OpenPGP key file .* does not exist"):
        Keyring().add_file(tmp_path / "nope.asc")


@pytest.mark.parametrize("which", ["rsa", "ed", "sub"])
def test_good_signatures_from_gpg_verify(keys, which):
    key = getattr(keys, which)
    data = b"some signed bytes\n"
    sig = keys.gnupg.detach_sign(data, key)
    trusted = ring(keys.rsa.public_binary, keys.ed.public_armored, keys.sub.public_binary)
    v = verify_detached(data, sig, trusted, "test data")
    assert v.fingerprint == key.fingerprint
    assert v.signing_key_id == (keys.sub_id if which == "sub" else key.key_id)
    assert v.algorithm == ("RSA" if which == "rsa" else "EdDSA")
    # armored signatures work too
    assert verify_detached(data, keys.gnupg.detach_sign(data, key, armor=True), trusted, "x").fingerprint \
        == key.fingerprint


def test_tampered_data_unknown_key_and_garbage_are_refused(keys):
    data = b"original\n"
    sig = keys.gnupg.detach_sign(data, keys.rsa)
    trusted = ring(keys.rsa.public_binary)
    with pytest.raises(SignatureError, match=f"pkg: BAD signature.*key {keys.rsa.key_id}"):
        verify_detached(b"originaL\n", sig, trusted, "pkg")
    other = keys.gnupg.detach_sign(data, keys.other)
    with pytest.raises(SignatureError, match=f"signed with key {keys.other.key_id}, which is not among the "
                                             f"trusted keys \\(known: {keys.rsa.key_id}\\)"):
        verify_detached(data, other, trusted, "pkg")
    with pytest.raises(SignatureError, match="not an OpenPGP signature"):
        verify_detached(data, b"\x89\x01garbage", trusted, "pkg")


def test_expired_key_signature_made_before_expiry_is_good_after_is_not(gnupg):
    """As rpm (rpm-sequoia) decides: the key must have been valid when it signed."""
    key = gnupg.generate("Old <old@example.com>", "ed25519", expire="1y", faked_time="20200101T000000")
    data = b"signed in 2020\n"
    before = gnupg.detach_sign(data, key, faked_time="20200601T000000")
    trusted = ring(key.public_binary)
    assert verify_detached(data, before, trusted, "old").fingerprint == key.fingerprint
    # a signature made after the expiry: extend the expiry in gpg's copy only, then sign in 2022; the
    # trusted copy still says the key expired at the end of 2020
    gnupg.gpg("--quick-set-expire", key.fingerprint, "0", faked_time="20220101T000000")
    after = gnupg.detach_sign(data, key, faked_time="20220601T000000")
    with pytest.raises(SignatureError, match="made after the signing key expired on 2020-12-31"):
        verify_detached(data, after, trusted, "old")
    assert verify_detached(data, after, ring(gnupg.export(key)), "old")   # the extended key accepts it


def test_revoked_key_is_refused(gnupg):
    key = gnupg.generate("Revoked <rev@example.com>", "ed25519")
    data = b"data\n"
    sig = gnupg.detach_sign(data, key)
    assert verify_detached(data, sig, ring(key.public_binary), "x")
    gnupg.revoke(key)
    revoked = gnupg.export(key)
    with pytest.raises(SignatureError, match=f"the signing key is revoked.*{key.key_id}"):
        verify_detached(data, sig, ring(revoked), "x")


def test_real_distribution_keys_parse_with_their_published_fingerprints():
    """The Fedora and CentOS release keys as Debian's distribution-gpg-keys package ships them."""
    fprs = {p.name: [k.fingerprint for k in parse_keys(p.read_bytes(), p.name)] for p in DATA.iterdir()
            if p.name.startswith("RPM-GPG-KEY")}
    assert fprs["RPM-GPG-KEY-fedora-40-primary"] == ["115DF9AEF857853EE8445D0A0727707EA15B79CC"]
    assert fprs["RPM-GPG-KEY-fedora-41-primary"] == ["466CF2D8B60BC3057AA9453ED0622462E99D6AD1"]
    assert fprs["RPM-GPG-KEY-CentOS-Official-SHA256"] == ["99DB70FAE1D7CE227FB6488205B555B38483C65D"]
    fedora = Keyring()
    for name in ("RPM-GPG-KEY-fedora-40-primary", "RPM-GPG-KEY-fedora-41-primary"):
        fedora.add_path(DATA / name)
    assert fedora.find("0727707EA15B79CC").user_id == "Fedora (40) <fedora-40-primary@fedoraproject.org>"
    assert fedora.find("D0622462E99D6AD1").fingerprint.endswith("E99D6AD1")


def _installed_header_signatures(db: str, tmp_path: Path) -> list[tuple[str, bytes]]:
    require_tool("rpmdb")
    from hybridos.packages.header import parse_raw_header

    dbpath = tmp_path / db
    dbpath.mkdir()
    (dbpath / "Packages").symlink_to(GO_RPMDB / db / "Packages")
    exported = subprocess.run(["rpmdb", "--define", "_db_backend bdb_ro", "--dbpath", str(dbpath), "--exportdb"],
                              capture_output=True, check=True).stdout
    out, off = [], 0
    while off < len(exported):
        raw, off = parse_raw_header(exported, off)
        sig = raw.get(268) or raw.get(267)
        if sig:
            out.append((raw.get(1000), bytes(sig)))
    return out


def test_real_centos_package_signatures_name_the_centos_key(tmp_path):
    """Real CentOS 8 headers (Debian's go-rpmdb test data): every signature's key id is the CentOS key."""
    if not GO_RPMDB.exists():
        pytest.skip("golang-github-knqyf263-go-rpmdb-dev is not installed")
    centos = Keyring()
    centos.add_file(DATA / "RPM-GPG-KEY-CentOS-Official-SHA256")
    sigs = _installed_header_signatures("centos8-modularitylabel", tmp_path)
    assert len(sigs) > 500
    infos = [parse_signature(s) for _, s in sigs]
    assert {i.key_id for i in infos} == {"05B555B38483C65D"}
    assert all(centos.find(i.key_id) is not None for i in infos)
    # CentOS 8 signed with v3 signature packets, which only v4-era verifiers refuse: the error says so
    with pytest.raises(SignatureError, match="v3 signatures are not supported"):
        verify_detached(b"x", sigs[0][1], centos, sigs[0][0])


def test_signature_packet_fields(keys):
    sig = keys.gnupg.detach_sign(b"x", keys.rsa)
    info = parse_signature(sig)
    assert (info.key_id, info.algorithm, info.version) == (keys.rsa.key_id, "RSA", 4)
    assert struct.unpack(">B", sig[:1])[0] & 0x80


@pytest.mark.parametrize("which", ["rsa", "ed", "sub"])
def test_openssl_fast_path_agrees_with_sequoia(keys, which, monkeypatch):
    """After Sequoia has accepted one signature by a key, later ones are checked by OpenSSL: the same verdicts."""
    import pysequoia

    key = getattr(keys, which)
    datas = [f"package header {i}\n".encode() for i in range(4)]
    sigs = [keys.gnupg.detach_sign(d, key) for d in datas]
    trusted = ring(keys.rsa.public_binary, keys.ed.public_binary, keys.sub.public_binary)
    calls = []
    real = pysequoia.verify
    monkeypatch.setattr(pysequoia, "verify", lambda **kw: calls.append(1) or real(**kw))
    first = verify_detached(datas[0], sigs[0], trusted, "first")
    assert len(calls) == 1
    for d, s in zip(datas[1:], sigs[1:], strict=True):
        v = verify_detached(d, s, trusted, "later")
        assert (v.fingerprint, v.signing_key_id, v.signing_fingerprint) == \
            (first.fingerprint, first.signing_key_id, first.signing_fingerprint)
    assert len(calls) == 1                     # no Sequoia call for the later ones
    with pytest.raises(SignatureError, match="BAD signature"):   # a changed byte: OpenSSL says no, Sequoia too
        verify_detached(datas[1] + b"x", sigs[1], trusted, "tampered")
    with pytest.raises(SignatureError, match="BAD signature"):   # a signature moved to other data
        verify_detached(datas[2], sigs[1], trusted, "moved")


def test_expired_signing_subkey_as_rpm_decides(gnupg):
    """A signing subkey that expired: its signatures from before the expiry stay good, later ones are refused,
    also once an earlier signature has let later ones take the OpenSSL path."""
    primary = gnupg.generate("Sub Old <subold@example.com>", "ed25519", usage="cert", faked_time="20200101T000000")
    sub_id = gnupg.add_signing_subkey(primary, faked_time="20200101T000000", expire="1y")
    listing = gnupg.gpg("--with-colons", "--fingerprint", "--list-keys", primary.fingerprint).decode().splitlines()
    sub_fpr = [ln.split(":")[9] for ln in listing if ln.startswith("fpr:")][-1]
    trusted = ring(gnupg.export(primary))      # the subkey expires on 2020-12-31
    assert sub_id in trusted.keys[0].fast      # one binding: eligible for the OpenSSL path once vouched for
    data = b"signed by a subkey\n"
    early = [gnupg.detach_sign(data + bytes([i]), primary, faked_time=f"2020060{i + 1}T000000") for i in range(2)]
    for i, sig in enumerate(early):
        assert verify_detached(data + bytes([i]), sig, trusted, "early").signing_key_id == sub_id
    gnupg.gpg("--quick-set-expire", primary.fingerprint, "0", sub_fpr, faked_time="20220101T000000")
    late = gnupg.detach_sign(data, primary, faked_time="20220601T000000")
    assert parse_signature(late).key_id == sub_id
    with pytest.raises(SignatureError, match=f"key {sub_id}"):
        verify_detached(data, late, trusted, "late")
