"""Remotes in the repo config: written as ostree writes them, read back by the real ostree and by us."""

from __future__ import annotations

import pytest

from hybridos.cli._options import parse_key_values
from hybridos.errors import ConfigError, NotFoundError, UsageError
from hybridos.ostree import remotes, sign
from hybridos.ostree.repo import Repo, RepoMode
from tests.conftest import require_tool
from tests.pull.helpers import ostree


def test_our_remotes_are_read_by_ostree(tmp_path):
    require_tool("ostree")
    repo = Repo.init(tmp_path / "r", RepoMode.ARCHIVE)
    _, pub = sign.generate_keypair()
    opts = {"gpg-verify": "false", **remotes.sign_verify_options([f"ed25519=inline:{pub}"])}
    remotes.add_remote(repo.config, "origin", "http://127.0.0.1:1/repo", branches=["a", "b/c"], options=opts)
    remotes.add_remote(repo.config, "second", "file:///srv/repo", options={"gpg-verify": "false"})
    repo.write_config()
    out = ostree("remote", "list", "-u", f"--repo={repo.path}").stdout.split()
    assert out == ["origin", "http://127.0.0.1:1/repo", "second", "file:///srv/repo"]
    assert ostree("remote", "show-url", f"--repo={repo.path}", "origin").stdout.strip() == "http://127.0.0.1:1/repo"
    text = (repo.path / "config").read_text()
    assert '[remote "origin"]\nurl=http://127.0.0.1:1/repo\nbranches=a;b/c;\n' in text
    r = remotes.get_remote(Repo.open(repo.path).config, "origin")
    assert (r.gpg_verify, r.sign_verify, r.branches) == (False, ("ed25519",), ("a", "b/c"))
    assert r.public_keys() == [sign.parse_public_key(pub)]


def test_ostree_remotes_are_read_by_us(tmp_path):
    require_tool("ostree")
    path = tmp_path / "r"
    ostree("init", f"--repo={path}", "--mode=archive")
    ostree("remote", "add", f"--repo={path}", "--no-gpg-verify", "--set=foo=bar", "one", "http://x/", "b1", "b2")
    ostree("remote", "add", f"--repo={path}", "two", "https://y/")
    ostree("remote", "add", f"--repo={path}", "--no-sign-verify", "three", "file:///z")
    cfg = Repo.open(path).config
    assert remotes.list_remotes(cfg) == ["one", "three", "two"]
    one, two, three = (remotes.get_remote(cfg, n) for n in ("one", "two", "three"))
    assert (one.url, one.gpg_verify, one.branches, one.options["foo"]) == ("http://x/", False, ("b1", "b2"), "bar")
    assert two.gpg_verify is True and two.sign_verify == ()
    assert three.gpg_verify is False and three.sign_verify == ()
    remotes.delete_remote(cfg, "one")
    assert remotes.list_remotes(cfg) == ["three", "two"]


def test_key_file_option(tmp_path):
    _, p1 = sign.generate_keypair()
    _, p2 = sign.generate_keypair()
    keys = tmp_path / "trusted.ed25519"
    keys.write_text(f"{p1}\n{p2}\n")
    opts = remotes.sign_verify_options([f"ed25519=file:{keys}"])
    assert opts == {"verification-ed25519-file": str(keys), "sign-verify": "true"}
    r = remotes.remote_from_section("x", {"url": "http://h/", **opts})
    assert r.public_keys() == [sign.parse_public_key(p1), sign.parse_public_key(p2)]
    keys.write_text("garbage\n")
    with pytest.raises(ConfigError, match="base64"):
        r.public_keys()


@pytest.mark.parametrize("spec, match", [
    ("ed25519", "expected KEYTYPE"),
    ("gpg=inline:AAAA", "not supported"),
    ("ed25519=url:x", "invalid key reference"),
    ("ed25519=inline:AAAA", "must be 32 bytes"),
])
def test_bad_sign_verify_specs(spec, match):
    with pytest.raises((UsageError, ConfigError), match=match):
        remotes.sign_verify_options([spec])


def test_add_delete_rules(tmp_path):
    cfg = Repo.init(tmp_path / "r", RepoMode.ARCHIVE).config
    remotes.add_remote(cfg, "a", "http://one/")
    with pytest.raises(UsageError, match="already exists"):
        remotes.add_remote(cfg, "a", "http://two/")
    assert remotes.add_remote(cfg, "a", "http://two/", if_not_exists=True) is False
    assert remotes.get_remote(cfg, "a").url == "http://one/"
    remotes.add_remote(cfg, "a", "http://two/", force=True)
    assert remotes.get_remote(cfg, "a").url == "http://two/"
    with pytest.raises(UsageError, match="invalid remote name"):
        remotes.add_remote(cfg, "bad name", "http://x/")
    with pytest.raises(NotFoundError, match='remote "zz" not found'):
        remotes.delete_remote(cfg, "zz")
    assert remotes.delete_remote(cfg, "zz", if_exists=True) is False
    with pytest.raises(NotFoundError):
        remotes.get_remote(cfg, "zz")
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_key_values(["novalue"], "--set")
    cfg.add_section('remote "broken"')
    cfg.set('remote "broken"', "url", "http://x/")
    cfg.set('remote "broken"', "gpg-verify", "maybe")
    with pytest.raises(ConfigError, match="gpg-verify must be true or false"):
        remotes.get_remote(cfg, "broken")


def test_which_remotes_require_gpg():
    _, pub = sign.generate_keypair()
    ed = {"sign-verify": "true", "verification-ed25519-key": pub}
    assert remotes.remote_from_section("a", {"url": "http://h/"}).requires_gpg            # ostree's default
    assert not remotes.remote_from_section("a", {"url": "http://h/", **ed}).requires_gpg  # ed25519 instead
    assert remotes.remote_from_section("a", {"url": "http://h/", "gpg-verify": "true", **ed}).requires_gpg
    assert not remotes.remote_from_section("a", {"url": "http://h/", "gpg-verify": "false"}).requires_gpg
