"""Signed static deltas: ``static-delta generate --sign``, ``static-delta verify``, ``apply-offline`` with keys,
and pulls from a remote with ``sign-verify``. The real ostree 2022.7 here is built without ed25519 (its
``--sign-type=ed25519`` says "not implemented"), so it checks the container format only: it reports our
deltas as signed and applies them; the signatures are checked over the bytes libostree signs (the ``ay`` of
the ``(taya{sv})`` wrapper), located here by the GVariant framing rules, not by our parser."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hybridos.ostree import delta_format as df
from hybridos.ostree.sign import generate_keypair
from tests.deltas.helpers import client_repo, fsck_clean, listing, ostree, source_repo
from tests.helpers.httpserver import serve

pytestmark = pytest.mark.tool("ostree")


@pytest.fixture
def src(tmp_path):
    return source_repo(tmp_path)


@pytest.fixture
def keys():
    return generate_keypair(), generate_keypair()   # (secret, public) pairs: the signer's and a stranger's


def _signed_delta(cli, repo: Path, c1: str, c2: str, secret: str, *extra: str) -> Path:
    out = cli("repo", "static-delta", "generate", f"--repo={repo}", "--from", c1, "--to", c2, f"--sign={secret}",
              *extra)
    assert "signed with 1 ed25519 key" in out.stdout
    return repo / df.delta_dir(c1, c2) / "superblock"


def _framing(data: bytes) -> tuple[int, bytes]:
    """(big-endian magic, signed bytes) of a ``(taya{sv})``: ``t`` is 8 fixed bytes; the ``ay`` is the only
    non-last variable member, so the file ends with one framing offset (its end), 1/2/4/8 bytes wide."""
    size = len(data)
    width = 1 if size < 0x100 else 2 if size < 0x10000 else 4 if size < 0x100000000 else 8
    end = int.from_bytes(data[-width:], "little")
    return struct.unpack(">Q", data[:8])[0], data[8:end]


def test_generate_sign_is_ostrees_format(src, tmp_path, cli, keys):
    repo, c1, c2 = src
    (secret, public), _ = keys
    sb_path = _signed_delta(cli, repo, c1, c2, secret)
    data = sb_path.read_bytes()
    magic, signed = _framing(data)
    assert magic == 0x4F535453474E4454   # "OSTSGNDT"
    parsed = df.Superblock.parse(signed)   # the signed bytes are a whole plain superblock
    assert (parsed.from_commit, parsed.to_commit) == (c1, c2)
    sig_at = data.index(b"ostree.sign.ed25519")   # the key, then its value: an aay of 64-byte signatures
    sigs = [data[i:i + 64] for i in range(sig_at, len(data) - 64)]
    pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(public))
    ok = 0
    for s in sigs:
        try:
            pub.verify(s, signed)
            ok += 1
        except Exception:  # noqa: BLE001 - only one of the candidate windows is the signature
            pass
    assert ok == 1
    # the real ostree reads the wrapper: it reports the delta as signed and applies it
    assert "Signed: yes" in ostree("static-delta", "show", f"--repo={repo}", f"{c1}-{c2}").stdout
    client = client_repo(tmp_path / "client", repo, c1)
    ostree("static-delta", "apply-offline", f"--repo={client}", str(sb_path.parent))
    assert listing(client, c2) == listing(repo, c2)
    fsck_clean(client)
    # and so does ours
    assert "Signed: yes (ed25519)" in cli("repo", "static-delta", "show", f"--repo={repo}", f"{c1}-{c2}").stdout


def test_verify(src, tmp_path, cli, keys):
    repo, c1, c2 = src
    (secret, public), (_, stranger) = keys
    cli("repo", "static-delta", "generate", f"--repo={repo}", "--empty", "--to", c1)
    sb_path = _signed_delta(cli, repo, c1, c2, secret)
    delta = f"{c1}-{c2}"
    out = cli("repo", "static-delta", "verify", f"--repo={repo}", delta, public)
    assert out.stdout.startswith("Verification OK") and public in out.stdout
    (tmp_path / "keys").write_text(f"# trusted\n{stranger}\n{public}\n")
    assert cli("repo", "static-delta", "verify", f"--repo={repo}", f"--keys-file={tmp_path / 'keys'}",
               delta).returncode == 0
    assert cli("repo", "static-delta", "verify", f"--repo={repo}", str(sb_path), public).returncode == 0
    # a key directory in libostree's layout; a revoked key does not count
    kd = tmp_path / "kd"
    (kd / "trusted.ed25519.d").mkdir(parents=True)
    (kd / "trusted.ed25519.d" / "vendor").write_text(public + "\n")
    assert cli("repo", "static-delta", "verify", f"--repo={repo}", f"--keys-dir={kd}", delta).returncode == 0
    (kd / "revoked.ed25519").write_text(public + "\n")
    for args, msg in [
        ([f"--keys-dir={kd}", delta], "no trusted ed25519 public keys"),
        ([delta, stranger], "none of its 1 ed25519 signature(s) is valid"),
        ([c1, public], "is not signed"),   # the from-scratch delta
        (["--sign-type=dummy", delta, public], "not supported"),
        (["nonexistent/superblock", public], "no delta superblock"),
        ([delta, "AAAA"], "must be 32 bytes"),
    ]:
        proc = cli("repo", "static-delta", "verify", f"--repo={repo}", *args, check=False)
        assert proc.returncode != 0 and msg in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
    # a tampered signed superblock fails verification
    data = bytearray(sb_path.read_bytes())
    data[100] ^= 1
    bad = tmp_path / "bad-superblock"
    bad.write_bytes(bytes(data))
    proc = cli("repo", "static-delta", "verify", f"--repo={repo}", str(bad), public, check=False)
    assert proc.returncode != 0 and "is valid" in proc.stderr


def test_generate_sign_usage_errors(src, cli):
    repo, c1, c2 = src
    for args, msg in [(("--sign=AAAA",), "must be 64 bytes"), (("--sign-type=dummy", "--sign=AAAA"), "not supported"),
                      (("--keys-file=/nonexistent",), "does not exist")]:
        proc = cli("repo", "static-delta", "generate", f"--repo={repo}", "--from", c1, "--to", c2, *args, check=False)
        assert proc.returncode != 0 and msg in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (repo / df.delta_dir(c1, c2)).exists()


def test_apply_offline_checks_signatures(src, tmp_path, cli, keys):
    repo, c1, c2 = src
    (secret, public), (_, stranger) = keys
    sb_path = _signed_delta(cli, repo, c1, c2, secret)
    ddir = str(sb_path.parent)

    def apply(client, *args):
        return cli("repo", "static-delta", "apply-offline", f"--repo={client}", *args, check=False)

    client = client_repo(tmp_path / "c1", repo, c1)
    proc = apply(client, ddir, stranger)
    assert proc.returncode != 0 and "none of its 1 ed25519 signature(s) is valid" in proc.stderr, proc.stderr
    assert ostree("show", f"--repo={client}", c2, check=False).returncode != 0   # nothing of it stored
    proc = apply(client, ddir, public)
    assert proc.returncode == 0, proc.stderr
    assert listing(client, c2) == listing(repo, c2)
    fsck_clean(client)
    # unsigned delta: applied without keys (as ostree), refused when keys are named or the repository asks
    unsigned = tmp_path / "unsigned" / "superblock"
    cli("repo", "static-delta", "generate", f"--repo={repo}", "--from", c1, "--to", c2,
        "--min-fallback-size=0", f"--filename={unsigned}")
    client2 = client_repo(tmp_path / "c2", repo, c1)
    proc = apply(client2, str(unsigned), public)
    assert proc.returncode != 0 and "is not signed" in proc.stderr
    ostree("config", f"--repo={client2}", "set", "core.sign-verify-deltas", "true")
    proc = apply(client2, str(unsigned))
    assert proc.returncode != 0 and "is not signed" in proc.stderr
    proc = apply(client2, ddir)
    assert proc.returncode != 0 and "no trusted ed25519 key" in proc.stderr
    ostree("config", f"--repo={client2}", "set", "core.sign-verify-deltas", "false")
    assert apply(client2, str(unsigned)).returncode == 0
    fsck_clean(client2)


def _signed_remote_client(path: Path, src: Path, c1: str, url: str, cli, public: str, *extra: str) -> Path:
    client_repo(path, src, c1)
    cli("repo", "remote", "add", f"--repo={path}", f"--sign-verify=ed25519=inline:{public}", "o", url)
    for opt in extra:
        ostree("config", f"--repo={path}", "set", 'remote "o".' + opt.split("=")[0], opt.split("=")[1])
    ostree("refs", f"--repo={path}", "--create=o:main", c1)
    return path


@pytest.mark.parametrize("case", ["good", "stranger", "stranger-required", "unsigned-required"])
def test_pull_verifies_delta_signature(src, tmp_path, cli, keys, case):
    repo, c1, c2 = src
    (secret, public), (stranger_secret, _) = keys
    cli("repo", "sign", f"--repo={repo}", c2, secret)   # sign-verify: the commit itself must be signed
    if case.startswith("unsigned"):
        cli("repo", "static-delta", "generate", f"--repo={repo}", "--from", c1, "--to", c2)
    else:
        _signed_delta(cli, repo, c1, c2, secret if case == "good" else stranger_secret)
    cli("repo", "summary", f"--repo={repo}", "-u")
    with serve(repo) as srv:
        extra = ("sign-verify-deltas=true",) if case == "unsigned-required" else ()
        client = _signed_remote_client(tmp_path / "client", repo, c1, srv.url, cli, public, *extra)
        args = ["--require-static-deltas"] if case == "stranger-required" else []
        proc = cli("repo", "pull", f"--repo={client}", *args, "o", "main", check=False)
    filez = [p for p, _r, st in srv.requests if p.endswith(".filez") and st == 200]
    if case == "good":
        assert proc.returncode == 0, proc.stderr
        assert f"used static delta {c1}-{c2}" in proc.stderr and "superblock signature verified" in proc.stderr
        assert not filez
    elif case == "stranger-required":
        assert proc.returncode != 0 and "is valid" in proc.stderr and "--require-static-deltas" in proc.stderr
        assert ostree("rev-parse", f"--repo={client}", "o:main").stdout.strip() == c1
        assert not filez
        return
    else:
        assert proc.returncode == 0, proc.stderr
        expected = "is valid" if case == "stranger" else "is not signed"
        assert f"static delta {c1}-{c2} could not be used" in proc.stderr and expected in proc.stderr, proc.stderr
        assert "fetching objects instead" in proc.stderr and filez
    assert ostree("rev-parse", f"--repo={client}", "o:main").stdout.strip() == c2
    assert listing(client, c2) == listing(repo, c2)
    fsck_clean(client)
