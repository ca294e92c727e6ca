"""A host whose remote has gpg-verify=true: upgrades pull only signed commits, and ``status`` shows the
signature as rpm-ostree does ("GPGSignature: Valid signature by FINGERPRINT")."""

from __future__ import annotations

import pytest

from tests.conftest import require_tool
from tests.helpers.gpg import GnuPG
from tests.pull.helpers import ostree
from tests.sysroot.conftest import STATEROOT, hyb, status


@pytest.fixture
def signer(workdir):
    require_tool("gpg")
    gnupg = GnuPG.create(workdir / "gnupg")
    key = gnupg.generate("Host OS <hostos@example.com>", "rsa2048")
    yield gnupg, key
    gnupg.close()


def test_status_shows_the_signature_and_upgrade_refuses_an_unsigned_commit(workdir, remote, signer):
    gnupg, key = signer
    sr = workdir / "sysroot"
    v1 = remote.publish("1.0")
    ostree(f"--repo={remote.path}", "gpg-sign", f"--gpg-homedir={gnupg.home}", v1, key.fingerprint)
    (workdir / "os.gpg").write_bytes(key.public_binary)
    hyb(sr, "admin", "init-fs", str(sr))
    hyb(sr, "admin", "os-init", STATEROOT)
    # a remote as Fedora ships them: gpg-verify=true, the key in a file named by gpgkeypath=
    hyb(sr, "repo", "remote", "add", "--repo", str(sr / "ostree/repo"), f"--set=gpgkeypath={workdir / 'os.gpg'}",
        "origin", remote.url)
    hyb(sr, "repo", "pull", "--repo", str(sr / "ostree/repo"), "origin", "testos/stable")
    hyb(sr, "admin", "deploy", "--os", STATEROOT, "--karg", "root=/dev/vda1", "origin:testos/stable")
    text = hyb(sr, "status").stdout
    assert f"GPGSignature: Valid signature by {key.fingerprint}" in text
    [dep] = status(sr)
    assert dep["gpg-enabled"] and dep["signatures"][0]["valid"]
    assert dep["signatures"][0]["fingerprint"] == key.fingerprint

    # a new commit nobody signed: the upgrade is refused, nothing is deployed, the remote ref stays
    remote.publish("2.0")
    r = hyb(sr, "upgrade", check=False)
    assert r.returncode != 0 and "is not GPG-signed" in r.stderr and "Traceback" not in r.stderr
    assert [d["checksum"] for d in status(sr)] == [v1]
    assert ostree(f"--repo={sr}/ostree/repo", "rev-parse", "origin:testos/stable").stdout.strip() == v1
