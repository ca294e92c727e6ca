"""compose tree with gpgcheck=1: the real distribution's RPMs signed by rpmsign compose; one unsigned or
wrongly signed package stops the compose before any tree or commit is made."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hybridos.ostree.repo import Repo
from tests.compose.conftest import BASE_TREEFILE, write_treefile
from tests.conftest import require_root, require_tool, run_cli
from tests.helpers.gpg import GnuPG
from tests.helpers.rpms import write_repodata


@pytest.fixture(scope="module")
def signed_distro(distro_repo, tmp_path_factory):
    """The distro repository with every RPM signed by one key; ``other`` is a key it does not trust."""
    require_tool("gpg", "rpmsign")
    base = tmp_path_factory.mktemp("signed-distro")
    gnupg = GnuPG.create(base / "gnupg")
    key = gnupg.generate("Distro <distro@example.com>", "rsa2048")
    other = gnupg.generate("Other <other@example.com>", "ed25519")
    repo = base / "repo"
    shutil.copytree(distro_repo.path / "Packages", repo / "Packages")
    rpms = sorted((repo / "Packages").glob("*.rpm"))
    subprocess.run(["rpmsign", "--addsign", "--define", "__gpg /usr/bin/gpg", "--define",
                    f"_gpg_name {key.fingerprint}", "--define", f"_gpg_path {gnupg.home}", *map(str, rpms)],
                   env=gnupg.env, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    write_repodata(repo, rpms)
    (base / "RPM-GPG-KEY-distro").write_bytes(key.public_armored)
    yield repo, base / "RPM-GPG-KEY-distro", gnupg, other
    gnupg.close()


def _treedir(tmp_path: Path, repo: Path, keyfile: Path) -> Path:
    d = tmp_path / "tree"
    d.mkdir()
    (d / "test.repo").write_text(f"[testos]\nname=t\nbaseurl={repo.as_uri()}\ngpgcheck=1\ngpgkey={keyfile.as_uri()}\n")
    return d


def test_signed_distribution_composes_with_gpgcheck(tmp_path, signed_distro):
    require_root()
    repo_dir, keyfile, _, _ = signed_distro
    tf = write_treefile(_treedir(tmp_path, repo_dir, keyfile), BASE_TREEFILE)
    Repo.init(tmp_path / "repo", "archive")
    run_cli("compose", "tree", str(tf), "--repo", str(tmp_path / "repo"))
    assert list(Repo.open(tmp_path / "repo").list_refs()) == ["testos/39/x86_64/base"]


@pytest.mark.parametrize("case", ["unsigned", "other-key"])
def test_one_bad_package_stops_the_compose_before_a_commit(tmp_path, signed_distro, case):
    require_root()
    repo_dir, keyfile, gnupg, other = signed_distro
    bad_repo = tmp_path / "bad-repo"
    shutil.copytree(repo_dir, bad_repo)
    hello = next((bad_repo / "Packages").glob("hello-*.rpm"))
    if case == "unsigned":
        subprocess.run(["rpmsign", "--delsign", str(hello)], check=True, capture_output=True)
    else:
        subprocess.run(["rpmsign", "--addsign", "--define", "__gpg /usr/bin/gpg", "--define",
                        f"_gpg_name {other.fingerprint}", "--define", f"_gpg_path {gnupg.home}", str(hello)],
                       env=gnupg.env, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    write_repodata(bad_repo, sorted((bad_repo / "Packages").glob("*.rpm")))
    tf = write_treefile(_treedir(tmp_path, bad_repo, keyfile), BASE_TREEFILE)
    Repo.init(tmp_path / "repo", "archive")
    before = sorted(os.walk(tmp_path / "repo/objects"))
    r = run_cli("compose", "tree", str(tf), "--repo", str(tmp_path / "repo"), check=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    expected = ("is not signed" if case == "unsigned" else f"signed with key {other.fingerprint[-16:]}")
    assert "package hello-" in r.stderr and "from repository [testos]" in r.stderr and expected in r.stderr
    assert Repo.open(tmp_path / "repo").list_refs() == {}
    assert sorted(os.walk(tmp_path / "repo/objects")) == before
