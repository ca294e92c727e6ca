"""``hybridos repo remote|pull|sign`` as a user runs them, checked against the real ostree."""

from __future__ import annotations

import ast
import base64
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hybridos.ostree import sign
from hybridos.ostree.repo import Repo
from tests.conftest import require_tool, run_cli
from tests.helpers.httpserver import serve
from tests.pull.helpers import make_tree, ostree, ostree_repo


@pytest.fixture
def served(tmp_path):
    require_tool("ostree")
    src = tmp_path / "upstream"
    commit = ostree_repo(src, make_tree(tmp_path / "tree"))
    with serve(src) as srv:
        srv.repo, srv.commit = src, commit
        yield srv


def test_remote_commands_match_ostree(tmp_path):
    require_tool("ostree")
    ours = tmp_path / "ours"
    run_cli("repo", "init", "--repo", str(ours), "--mode", "archive")
    run_cli("repo", "remote", "add", "--repo", str(ours), "--no-gpg-verify", "--set=foo=bar", "one",
            "http://127.0.0.1:9/r", "b1", "b2")
    run_cli("repo", "remote", "add", "--repo", str(ours), "two", "https://example.invalid/")
    assert run_cli("repo", "remote", "list", "--repo", str(ours)).stdout.split() == ["one", "two"]
    assert run_cli("repo", "remote", "list", "-u", "--repo", str(ours)).stdout.split() == [
        "one", "http://127.0.0.1:9/r", "two", "https://example.invalid/"]
    assert run_cli("repo", "remote", "show-url", "--repo", str(ours), "one").stdout == "http://127.0.0.1:9/r\n"
    # the real ostree reads what we wrote, in the same form it writes itself
    assert ostree("remote", "list", "-u", f"--repo={ours}").stdout.split() == [
        "one", "http://127.0.0.1:9/r", "two", "https://example.invalid/"]
    theirs = tmp_path / "theirs"
    ostree("init", f"--repo={theirs}", "--mode=archive")
    ostree("remote", "add", f"--repo={theirs}", "--no-gpg-verify", "--set=foo=bar", "one", "http://127.0.0.1:9/r",
           "b1", "b2")
    section = lambda p: p.read_text().split('[remote "one"]')[1].split("[")[0]  # noqa: E731
    assert sorted(section(ours / "config").split()) == sorted(section(theirs / "config").split())
    # errors: one line, non-zero exit, nothing changed
    before = (ours / "config").read_text()
    for args, msg in [
        (("add", "one", "http://x/"), 'remote "one" already exists'),
        (("delete", "nope"), 'remote "nope" not found'),
        (("show-url", "nope"), 'remote "nope" not found'),
        (("add", "--sign-verify=ed25519=inline:AAAA", "three", "http://x/"), "must be 32 bytes"),
        (("add", "bad name", "http://x/"), "invalid remote name"),
    ]:
        proc = run_cli("repo", "remote", *args[:1], "--repo", str(ours), *args[1:], check=False)
        assert proc.returncode != 0 and msg in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert (ours / "config").read_text() == before
    run_cli("repo", "remote", "delete", "--repo", str(ours), "--if-exists", "nope")
    run_cli("repo", "remote", "add", "--repo", str(ours), "--if-not-exists", "one", "http://other/")
    run_cli("repo", "remote", "delete", "--repo", str(ours), "two")
    assert ostree("remote", "list", f"--repo={ours}").stdout.split() == ["one"]
    assert run_cli("repo", "remote", "show-url", "--repo", str(ours), "one").stdout == "http://127.0.0.1:9/r\n"


def test_pull_command_and_quiet_progress(served, tmp_path):
    ours = tmp_path / "ours"
    run_cli("repo", "init", "--repo", str(ours), "--mode", "bare-user")
    run_cli("repo", "remote", "add", "--repo", str(ours), "--no-gpg-verify", "origin", served.url)
    proc = run_cli("repo", "pull", "--repo", str(ours), "origin", "main")
    assert "content objects fetched" in proc.stdout
    assert proc.stderr == ""   # not a terminal: no progress display
    assert (ours / "refs/remotes/origin/main").read_text().strip() == served.commit
    assert "no errors found" in ostree("fsck", f"--repo={ours}").stdout
    proc = run_cli("repo", "pull", "--repo", str(ours), "origin", "missing", check=False)
    assert proc.returncode != 0 and proc.stderr.startswith("error: ") and "has no ref 'missing'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_sign_and_verified_pull_via_cli(served, tmp_path):
    secret, public = sign.generate_keypair()
    keys = tmp_path / "secret.ed25519"
    keys.write_text(secret + "\n")
    proc = run_cli("repo", "sign", "--repo", str(served.repo), "main", "--keys-file", str(keys))
    assert public in proc.stdout
    assert run_cli("repo", "sign", "--repo", str(served.repo), "--verify", "main", public).returncode == 0
    _, stranger = sign.generate_keypair()
    bad = run_cli("repo", "sign", "--repo", str(served.repo), "--verify", "main", stranger, check=False)
    assert bad.returncode != 0 and "unknown key" in bad.stderr
    # the signature is in OSTree's place and form: ostree reads the aay back, and the bytes it shows verify
    # (with cryptography directly) over the commit object's file
    shown = ostree("show", f"--repo={served.repo}", "--print-detached-metadata-key=ostree.sign.ed25519", "main")
    sigs = _gvariant_aay(shown.stdout.strip())
    assert len(sigs) == 1 and len(sigs[0]) == 64
    commit_file = served.repo / f"objects/{served.commit[:2]}/{served.commit[2:]}.commit"
    Ed25519PublicKey.from_public_bytes(base64.b64decode(public)).verify(sigs[0], commit_file.read_bytes())
    ours = tmp_path / "ours"
    run_cli("repo", "init", "--repo", str(ours), "--mode", "archive")
    run_cli("repo", "remote", "add", "--repo", str(ours), f"--sign-verify=ed25519=inline:{public}", "good", served.url)
    run_cli("repo", "remote", "add", "--repo", str(ours), f"--sign-verify=ed25519=inline:{stranger}", "bad",
            served.url)
    text = (ours / "config").read_text()
    assert f"verification-ed25519-key={public}" in text and "sign-verify=true" in text
    proc = run_cli("repo", "pull", "--repo", str(ours), "bad", "main", check=False)
    assert proc.returncode != 0 and "unknown key" in proc.stderr
    assert not (ours / "refs/remotes/bad/main").exists()
    run_cli("repo", "pull", "--repo", str(ours), "good", "main")
    assert Repo.open(ours).resolve_rev("good:main") == served.commit
    # deleting the signature makes the verified pull fail
    run_cli("repo", "sign", "--repo", str(served.repo), "--delete", "main", public)
    fresh = tmp_path / "fresh"
    run_cli("repo", "init", "--repo", str(fresh), "--mode", "archive")
    run_cli("repo", "remote", "add", "--repo", str(fresh), f"--sign-verify=ed25519=inline:{public}", "good",
            served.url)
    proc = run_cli("repo", "pull", "--repo", str(fresh), "good", "main", check=False)
    assert proc.returncode != 0 and "is not signed" in proc.stderr


def test_sign_usage_errors(served):
    proc = run_cli("repo", "sign", "--repo", str(served.repo), "main", check=False)
    assert proc.returncode != 0 and "no key given" in proc.stderr
    proc = run_cli("repo", "sign", "--repo", str(served.repo), "--sign-type=dummy", "main", "x", check=False)
    assert proc.returncode != 0 and "not supported" in proc.stderr
    proc = run_cli("repo", "sign", "--repo", str(served.repo), "main", "notbase64!", check=False)
    assert proc.returncode != 0 and "base64" in proc.stderr and "Traceback" not in proc.stderr


def test_pull_progress_line():
    import io
    import time

    from hybridos.cli.repo_remote import PullProgress

    out = io.StringIO()
    p = PullProgress("Receiving objects:", stream=out, enabled=True)
    p.started = time.monotonic() - 10
    p.total_items = 200
    p.advance(50, 5 * 2**20)
    line = out.getvalue()
    assert "Receiving objects: 25% (50/200)" in line and "5.0 MiB" in line and "30s left" in line
    p.done()
    assert out.getvalue().endswith("\n")
    quiet = io.StringIO()
    q = PullProgress("x", stream=quiet)   # a StringIO is not a terminal
    q.advance(1, 10)
    q.done()
    assert quiet.getvalue() == ""


def _gvariant_aay(text: str) -> list[bytes]:
    """The byte strings of GLib's text form of an ``aay`` with one element: ``[[byte 0x01, ...]]``, or
    ``[b'...']`` when the bytes end in their only NUL (GLib then prints a byte string without it)."""
    inner = text[1:-1]
    if inner.startswith("b'") or inner.startswith('b"'):
        return [ast.literal_eval(inner) + b"\0"]
    return [bytes(int(x, 16) for x in re.findall(r"0x([0-9a-f]{2})", inner))]
