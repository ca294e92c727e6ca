"""GPG-signed commits and summaries (ostree.gpgsigs, summary.sig) against the real ostree and gpg.

Commits signed by ``ostree gpg-sign`` and summaries by ``ostree summary -u --gpg-sign`` pull with
gpg-verify=true; unsigned or forged ones are refused with the ref unmoved and nothing written; the real
``ostree`` checks the signatures ``hybridos repo gpg-sign`` writes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hybridos.errors import SignatureError
from hybridos.ostree import gpg as _gpg
from hybridos.ostree import remotes
from hybridos.ostree.pull import pull
from hybridos.ostree.repo import Repo
from tests.conftest import require_tool, run_cli
from tests.helpers.gpg import GnuPG
from tests.helpers.httpserver import serve
from tests.pull.helpers import make_tree, ostree, ostree_repo


@pytest.fixture(scope="module")
def signers(tmp_path_factory):
    require_tool("gpg", "ostree")
    gnupg = GnuPG.create(tmp_path_factory.mktemp("ostree-gpg") / "home")
    good = gnupg.generate("OS Signer <os@example.com>", "rsa2048")
    ed = gnupg.generate("OS Ed Signer <osed@example.com>", "ed25519")
    other = gnupg.generate("Mallory <mallory@example.com>", "ed25519")
    yield gnupg, good, ed, other
    gnupg.close()


def _gpg_sign(repo: Path, commit: str, gnupg: GnuPG, key) -> None:
    ostree("gpg-sign", f"--repo={repo}", f"--gpg-homedir={gnupg.home}", commit, key.fingerprint)


@pytest.fixture
def remote_repo(tmp_path, signers):
    """An archive repo made by ostree: commit 1 signed by ``good`` (ostree gpg-sign), a summary signed too."""
    gnupg, good, _ed, _other = signers
    path = tmp_path / "remote"
    c1 = ostree_repo(path, make_tree(tmp_path / "t1", tag="one"), "os/stable")
    _gpg_sign(path, c1, gnupg, good)
    ostree("summary", f"--repo={path}", "-u", f"--gpg-sign={good.fingerprint}", f"--gpg-homedir={gnupg.home}")
    return path, c1


def _ours(tmp_path: Path, url: str, keyfile: Path | None, **opts) -> Repo:
    repo = Repo.init(tmp_path / "ours", mode="archive")
    options = {"gpg-verify": "true", **opts}
    if keyfile is not None:
        options["gpgkeypath"] = str(keyfile)
    remotes.add_remote(repo.config, "origin", url, options=options)
    repo.write_config()
    return repo


def _objects(repo: Repo) -> set[Path]:
    return set((Path(repo.path) / "objects").rglob("*"))


def test_pull_of_commit_signed_by_ostree_gpg_sign(tmp_path, signers, remote_repo):
    gnupg, good, ed, _ = signers
    path, c1 = remote_repo
    keyfile = tmp_path / "os.asc"
    keyfile.write_bytes(ed.public_armored + good.public_armored)   # several keys in one armored file
    with serve(path) as srv:
        repo = _ours(tmp_path, srv.url, keyfile, **{"gpg-verify-summary": "true"})
        result = pull(repo, "origin", ["os/stable"])
    assert result.refs == {"os/stable": c1}
    assert repo.resolve_rev("origin:os/stable") == c1
    # the detached metadata was kept: the real ostree verifies the pulled commit with the same key
    (tmp_path / "bin.gpg").write_bytes(good.public_binary)
    ostree("remote", "add", f"--repo={repo.path}", "--set=gpgkeypath=" + str(tmp_path / "bin.gpg"), "check",
           "http://127.0.0.1:9/")
    shown = ostree("show", f"--repo={repo.path}", "--gpg-verify-remote=check", c1).stdout
    assert 'Good signature from "OS Signer <os@example.com>"' in shown
    # and `repo show` lists it the same way
    ours = run_cli("repo", "show", "--repo", str(repo.path), "--gpg-verify-remote", "origin", c1).stdout
    assert f"using RSA key ID {good.key_id}" in ours and 'Good signature from "OS Signer <os@example.com>"' in ours


def test_keys_from_gpg_import_and_from_a_gpgkeypath_directory(tmp_path, signers, remote_repo):
    gnupg, good, ed, _ = signers
    path, c1 = remote_repo
    keydir = tmp_path / "keys.d"
    keydir.mkdir()
    (keydir / "a.gpg").write_bytes(ed.public_binary)
    (keydir / "b.asc").write_bytes(good.public_armored)
    with serve(path) as srv:
        repo = _ours(tmp_path, srv.url, keydir)
        assert pull(repo, "origin", ["os/stable"]).refs == {"os/stable": c1}
        # gpg-import into <repo>/origin.trustedkeys.gpg, as ostree remote gpg-import
        repo2 = Repo.init(tmp_path / "ours2", mode="archive")
        remotes.add_remote(repo2.config, "origin", srv.url, options={"gpg-verify": "true"})
        repo2.write_config()
        with pytest.raises(SignatureError, match='remote "origin" requires GPG signatures .* no trusted keys') as e:
            pull(repo2, "origin", ["os/stable"])
        assert "gpg-import origin" in e.value.hint
        (tmp_path / "both.asc").write_bytes(good.public_armored + ed.public_armored)
        out = run_cli("repo", "remote", "gpg-import", "--repo", str(repo2.path), "--keyring",
                      str(tmp_path / "both.asc"), "origin", good.key_id).stdout
        assert "Imported 1 GPG key" in out
        assert (Path(repo2.path) / "origin.trustedkeys.gpg").is_file()
        assert pull(repo2, "origin", ["os/stable"]).refs == {"os/stable": c1}
        # remote add --gpg-import does both at once
        repo3 = tmp_path / "ours3"
        run_cli("repo", "init", "--repo", str(repo3), "--mode", "archive")
        run_cli("repo", "remote", "add", "--repo", str(repo3), "--gpg-import", str(tmp_path / "both.asc"),
                "origin", srv.url)
        assert pull(Repo.open(repo3), "origin", ["os/stable"]).refs == {"os/stable": c1}


@pytest.mark.parametrize("case", ["unsigned", "other-key", "moved-signature"])
def test_unsigned_and_forged_commits_are_refused_ref_unmoved(tmp_path, signers, remote_repo, case):
    gnupg, good, _ed, other = signers
    path, c1 = remote_repo
    keyfile = tmp_path / "os.asc"
    keyfile.write_bytes(good.public_armored)
    with serve(path) as srv:
        repo = _ours(tmp_path, srv.url, keyfile)
        pull(repo, "origin", ["os/stable"])
        c2 = ostree_repo(path, make_tree(tmp_path / "t2", tag="two"), "os/stable")
        if case == "other-key":
            _gpg_sign(path, c2, gnupg, other)
        elif case == "moved-signature":    # commit 1's good signature copied onto commit 2
            src = path / f"objects/{c1[:2]}/{c1[2:]}.commitmeta"
            shutil.copyfile(src, path / f"objects/{c2[:2]}/{c2[2:]}.commitmeta")
        ostree("summary", f"--repo={path}", "-u")
        before = _objects(repo)
        expected = {"unsigned": f"commit {c2} from remote \"origin\" is not GPG-signed",
                    "other-key": f"signed with key {other.key_id}, which is not among the trusted keys",
                    "moved-signature": f"BAD signature.*key {good.key_id}"}[case]
        with pytest.raises(SignatureError, match=expected):
            pull(repo, "origin", ["os/stable"])
        assert repo.resolve_rev("origin:os/stable") == c1           # the ref did not move
        assert _objects(repo) == before                              # nothing was written
        r = run_cli("repo", "pull", "--repo", str(repo.path), "origin", "os/stable", check=False)
        assert r.returncode != 0 and "Traceback" not in r.stderr and "no ref was changed" in r.stderr


@pytest.mark.parametrize("case", ["missing", "other-key", "stale"])
def test_gpg_verify_summary(tmp_path, signers, remote_repo, case):
    gnupg, good, _ed, other = signers
    path, c1 = remote_repo
    keyfile = tmp_path / "os.asc"
    keyfile.write_bytes(good.public_armored)
    if case == "missing":
        (path / "summary.sig").unlink()
    elif case == "other-key":
        ostree("summary", f"--repo={path}", "-u", f"--gpg-sign={other.fingerprint}", f"--gpg-homedir={gnupg.home}")
    else:   # the summary changed after it was signed (a new commit, summary rewritten, the old .sig kept)
        sig = (path / "summary.sig").read_bytes()
        ostree_repo(path, make_tree(tmp_path / "t3", tag="three"), "os/stable")
        ostree("summary", f"--repo={path}", "-u")
        (path / "summary.sig").write_bytes(sig)
    expected = {"missing": "is not signed \\(no summary.sig\\)", "other-key": f"signed with key {other.key_id}",
                "stale": "BAD signature"}[case]
    with serve(path) as srv:
        repo = _ours(tmp_path, srv.url, keyfile, **{"gpg-verify-summary": "true"})
        with pytest.raises(SignatureError, match=f'the summary of remote "origin".*{expected}'):
            pull(repo, "origin", ["os/stable"])
    assert not repo.list_refs()


def test_ostree_verifies_a_commit_we_sign(tmp_path, signers):
    """hybridos repo gpg-sign writes ostree.gpgsigs that the real ostree accepts when pulling with gpg-verify."""
    gnupg, good, ed, _ = signers
    ours = tmp_path / "ours"
    run_cli("repo", "init", "--repo", str(ours), "--mode", "archive")
    make_tree(tmp_path / "t")
    commit = run_cli("repo", "commit", "--repo", str(ours), "-b", "os/signed", "-s", "signed by us",
                     str(tmp_path / "t")).stdout.strip().splitlines()[-1]
    out = run_cli("repo", "gpg-sign", "--repo", str(ours), "--gpg-homedir", str(gnupg.home), commit,
                  good.fingerprint, ed.key_id).stdout
    assert f"with GPG key {good.key_id}" in out and f"with GPG key {ed.key_id}" in out
    (tmp_path / "keys.asc").write_bytes(good.public_armored + ed.public_armored)
    theirs = tmp_path / "theirs"
    ostree("init", f"--repo={theirs}", "--mode=archive")
    with serve(ours) as srv:
        ostree("remote", "add", f"--repo={theirs}", f"--set=gpgkeypath={tmp_path / 'keys.asc'}", "o", srv.url)
        ostree("pull", f"--repo={theirs}", "o", "os/signed")   # gpg-verify=true is ostree's default
    shown = ostree("show", f"--repo={theirs}", "--gpg-verify-remote=o", commit).stdout
    assert "Found 2 signatures" in shown
    assert 'Good signature from "OS Signer <os@example.com>"' in shown
    assert 'Good signature from "OS Ed Signer <osed@example.com>"' in shown
    # --delete removes one; the other still verifies
    run_cli("repo", "gpg-sign", "--repo", str(ours), "--delete", commit, ed.key_id)
    assert len(_gpg.signatures_in(Repo.open(ours).read_commitmeta(commit))) == 1
