"""Session-wide real keys made by Debian's gpg in a temporary GNUPGHOME (key generation takes a moment)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.conftest import require_tool
from tests.helpers.gpg import GnuPG, GpgKey


@dataclass(frozen=True)
class Keys:
    gnupg: GnuPG
    rsa: GpgKey          #: RSA 2048, signs with its primary key
    ed: GpgKey           #: EdDSA (ed25519) primary key
    other: GpgKey        #: a key nobody trusts (the "wrong key")
    sub: GpgKey          #: a primary key that signs through an ed25519 signing subkey
    sub_id: str


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    require_tool("gpg")
    gnupg = GnuPG.create(tmp_path_factory.mktemp("gnupg") / "home")
    rsa = gnupg.generate("RSA Signer <rsa@example.com>", "rsa2048")
    ed = gnupg.generate("Ed Signer <ed@example.com>", "ed25519")
    other = gnupg.generate("Other Signer <other@example.com>", "ed25519")
    sub = gnupg.generate("Sub Signer <sub@example.com>", "ed25519", usage="cert")
    sub_id = gnupg.add_signing_subkey(sub)
    yield Keys(gnupg, rsa, ed, other, gnupg.key(sub.fingerprint), sub_id)
    gnupg.close()


@pytest.fixture
def gnupg(tmp_path):
    """A fresh GNUPGHOME of its own (for keys a test expires or revokes)."""
    require_tool("gpg")
    g = GnuPG.create(tmp_path / "gnupg")
    yield g
    g.close()
