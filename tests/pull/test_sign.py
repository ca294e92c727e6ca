"""ed25519 commit signatures: keys, bytes, detached metadata, and a signed commit stored by our Repo."""

from __future__ import annotations

import base64

import pytest

from hybridos import gvariant
from hybridos.errors import ConfigError, SignatureError, UsageError
from hybridos.ostree import sign


def test_key_formats_are_ostree_layout():
    secret, public = sign.generate_keypair()
    raw_secret = base64.b64decode(secret)
    assert len(raw_secret) == 64 and len(base64.b64decode(public)) == 32
    assert raw_secret[32:] == base64.b64decode(public)            # libsodium: seed then public key
    seed = sign.parse_secret_key(secret)
    assert sign.public_key_of(seed) == sign.parse_public_key(public)
    assert sign.parse_secret_key(base64.b64encode(seed).decode()) == seed   # a bare seed is accepted


@pytest.mark.parametrize("bad, match", [
    ("not base64!", "not valid base64"),
    (base64.b64encode(b"x" * 31).decode(), "must be 32 bytes"),
])
def test_bad_public_keys(bad, match):
    with pytest.raises(ConfigError, match=match):
        sign.parse_public_key(bad)


def test_inconsistent_secret_key_refused():
    s1, _ = sign.generate_keypair()
    _, p2 = sign.generate_keypair()
    mixed = base64.b64encode(base64.b64decode(s1)[:32] + base64.b64decode(p2)).decode()
    with pytest.raises(ConfigError, match="inconsistent"):
        sign.parse_secret_key(mixed)


def test_key_file_lines(tmp_path):
    _, p1 = sign.generate_keypair()
    _, p2 = sign.generate_keypair()
    f = tmp_path / "keys"
    f.write_text(f"# trusted\n{p1}\n\n  {p2}  \n")
    assert sign.read_key_file(f) == [p1, p2]
    with pytest.raises(ConfigError, match="does not exist"):
        sign.read_key_file(tmp_path / "nope")


def test_sign_and_verify_bytes():
    secret, public = sign.generate_keypair()
    _, other = sign.generate_keypair()
    seed, pk, pk_other = sign.parse_secret_key(secret), sign.parse_public_key(public), sign.parse_public_key(other)
    data = b"commit bytes"
    sig = sign.sign_data(seed, data)
    assert len(sig) == 64
    assert sign.verify_data(data, [sig], [pk_other, pk]) == pk
    assert sign.verify_data(data + b"!", [sig], [pk]) is None
    assert sign.verify_data(data, [sig], [pk_other]) is None
    flipped = bytes([sig[0] ^ 1]) + sig[1:]
    assert sign.verify_data(data, [flipped], [pk]) is None
    assert sign.verify_data(data, [sig[:63]], [pk]) is None


def test_metadata_roundtrip_through_gvariant():
    secret, public = sign.generate_keypair()
    seed, pk = sign.parse_secret_key(secret), sign.parse_public_key(public)
    data = b"the commit"
    meta = sign.with_signature({"other": "kept"}, sign.sign_data(seed, data))
    meta = sign.with_signature(meta, sign.sign_data(seed, data))   # same signature once
    raw = gvariant.serialize_vardict(meta)
    parsed = gvariant.parse_vardict(raw)
    assert gvariant.parse("a{sv}", raw)[sign.METADATA_KEY].signature == "aay"
    assert parsed["other"] == "kept"
    assert len(sign.signatures_in(parsed)) == 1
    assert sign.verify_commit("c" * 64, data, parsed, [pk]) == pk
    stripped = sign.without_signatures(parsed, [pk], data)
    assert sign.METADATA_KEY not in stripped and stripped["other"] == "kept"


def test_verify_commit_refusals():
    secret, public = sign.generate_keypair()
    _, unknown = sign.generate_keypair()
    seed, pk = sign.parse_secret_key(secret), sign.parse_public_key(public)
    data = b"the commit"
    signed = sign.with_signature(None, sign.sign_data(seed, data))
    with pytest.raises(SignatureError, match="not signed"):
        sign.verify_commit("c" * 64, data, None, [pk])
    with pytest.raises(SignatureError, match="not signed"):
        sign.verify_commit("c" * 64, data, {"x": 1}, [pk])
    with pytest.raises(SignatureError, match="unknown key"):
        sign.verify_commit("c" * 64, data, signed, [sign.parse_public_key(unknown)])
    with pytest.raises(SignatureError, match="wrong signature"):
        sign.verify_commit("c" * 64, data + b"x", signed, [pk])
    with pytest.raises(SignatureError, match="no ed25519 public keys"):
        sign.verify_commit("c" * 64, data, signed, [])


def test_unsupported_sign_type():
    with pytest.raises(UsageError, match="not supported"):
        sign.check_sign_type("dummy")
