"""gpgcheck and repo_gpgcheck on real RPMs signed by Debian's rpmsign and repomd.xml signed by gpg."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hybridos.errors import SignatureError
from hybridos.packages.gpgcheck import PackageVerifier, header_signatures, verify_rpm
from hybridos.packages.header import read_rpm
from hybridos.packages.model import Action, Nevra, TransactionItem
from hybridos.packages.repofile import parse_repo_file
from hybridos.packages.repomd import load_repo
from tests.conftest import require_tool
from tests.helpers.gpg import flip_header_byte
from tests.helpers.rpms import File, Pkg, build_rpm


def pkg(name: str) -> Pkg:
    return Pkg(name, "1.0", arch="noarch", files=(File(f"/usr/share/{name}/data", name.encode() * 10),))


@pytest.fixture(scope="module")
def rpms(keys, tmp_path_factory):
    require_tool("rpmsign")
    d = tmp_path_factory.mktemp("signed")
    out = {}
    for name, key in (("by-rsa", keys.rsa), ("by-ed", keys.ed), ("by-sub", keys.sub), ("by-other", keys.other)):
        p = build_rpm(pkg(name), d)
        keys.gnupg.sign_rpm(p, key)
        out[name] = p
    out["unsigned"] = build_rpm(pkg("unsigned"), d)
    flipped = d / "flipped.rpm"
    shutil.copyfile(out["by-rsa"], flipped)
    flip_header_byte(flipped, b"fixture")
    out["flipped"] = flipped
    return out


def trusted(keys):
    from hybridos.openpgp import Keyring
    ring = Keyring()
    ring.add_bytes(keys.rsa.public_armored + keys.ed.public_armored, "rsa+ed.asc")
    ring.add_bytes(keys.sub.public_binary, "sub.gpg")
    return ring


def test_rpmsign_signatures_verify_rsa_eddsa_and_subkey(keys, rpms):
    ring = trusted(keys)
    assert verify_rpm(rpms["by-rsa"], ring, "by-rsa").signing_key_id == keys.rsa.key_id
    assert verify_rpm(rpms["by-ed"], ring, "by-ed").signing_key_id == keys.ed.key_id
    v = verify_rpm(rpms["by-sub"], ring, "by-sub")
    assert (v.signing_key_id, v.fingerprint) == (keys.sub_id, keys.sub.fingerprint)
    # rpm 4.18 files RSA under RSAHEADER and EdDSA under DSAHEADER; both are found
    assert len(header_signatures(read_rpm(rpms["by-ed"]).signature)) == 1


def test_unsigned_wrong_key_and_flipped_header_are_refused_naming_package_and_key(keys, rpms):
    ring = trusted(keys)
    with pytest.raises(SignatureError, match="pkg unsigned is not signed"):
        verify_rpm(rpms["unsigned"], ring, "pkg unsigned")
    with pytest.raises(SignatureError, match=f"pkg by-other: signed with key {keys.other.key_id}, which is not "
                                             "among the trusted keys"):
        verify_rpm(rpms["by-other"], ring, "pkg by-other")
    with pytest.raises(SignatureError, match=f"pkg flipped: BAD signature.*key {keys.rsa.key_id}"):
        verify_rpm(rpms["flipped"], ring, "pkg flipped")


def test_rpm_itself_agrees_on_the_flipped_header(keys, rpms, tmp_path):
    """The independent verifier: rpm -K with the same key imported calls the flipped package BAD."""
    import subprocess
    require_tool("rpm")
    db = tmp_path / "db"
    (tmp_path / "k.asc").write_bytes(keys.rsa.public_armored)
    subprocess.run(["rpm", "--dbpath", str(db), "--initdb"], check=True)
    subprocess.run(["rpm", "--dbpath", str(db), "--import", str(tmp_path / "k.asc")], check=True)
    good = subprocess.run(["rpm", "--dbpath", str(db), "-K", str(rpms["by-rsa"])], capture_output=True, text=True)
    bad = subprocess.run(["rpm", "--dbpath", str(db), "-K", str(rpms["flipped"])], capture_output=True, text=True)
    assert good.returncode == 0 and bad.returncode != 0


def _items(repo, names):
    return [TransactionItem(Action.INSTALL, Nevra(n, 0, "1.0", "1", "noarch"),
                            location=f"{repo.baseurl}/Packages/{n}-1.0-1.noarch.rpm") for n in names]


def test_repository_gpgcheck_with_gpgkey_urls_and_localpkg(keys, rpms, tmp_path):
    repo_dir = tmp_path / "repo"
    (repo_dir / "Packages").mkdir(parents=True)
    for name in ("by-rsa", "by-ed", "by-other", "unsigned"):
        shutil.copyfile(rpms[name], repo_dir / "Packages" / f"{name}-1.0-1.noarch.rpm")
    from tests.helpers.rpms import write_repodata
    write_repodata(repo_dir, sorted((repo_dir / "Packages").iterdir()))
    (tmp_path / "rsa.asc").write_bytes(keys.rsa.public_armored)
    (tmp_path / "ed.gpg").write_bytes(keys.ed.public_binary)
    [cfg] = parse_repo_file(f"[signed]\nbaseurl={repo_dir.as_uri()}\ngpgcheck=1\n"
                            f"gpgkey={(tmp_path / 'rsa.asc').as_uri()}\n  {(tmp_path / 'ed.gpg').as_uri()}\n")
    assert cfg.gpgkeys == ((tmp_path / "rsa.asc").as_uri(), (tmp_path / "ed.gpg").as_uri())
    repo = load_repo(cfg, tmp_path / "cache")
    verifier = PackageVerifier([repo])
    paths = {f"{n}-1.0-1.noarch": repo_dir / "Packages" / f"{n}-1.0-1.noarch.rpm" for n in
             ("by-rsa", "by-ed", "by-other", "unsigned")}
    good = verifier.check_all(_items(repo, ["by-rsa", "by-ed"]), paths)
    assert {k: v.signing_key_id for k, v in good.items()} == {"by-rsa-1.0-1.noarch": keys.rsa.key_id,
                                                              "by-ed-1.0-1.noarch": keys.ed.key_id}
    with pytest.raises(SignatureError, match=r"package by-other-1.0-1.noarch from repository \[signed\]: signed "
                                             f"with key {keys.other.key_id}") as exc:
        verifier.check_all(_items(repo, ["by-rsa", "by-other"]), paths)
    assert "gpgkey=" in exc.value.hint
    with pytest.raises(SignatureError, match=r"package unsigned-1.0-1.noarch from repository \[signed\] is not "
                                             "signed"):
        verifier.check_all(_items(repo, ["unsigned"]), paths)
    # gpgcheck=0: nothing is checked; a local file is checked only with localpkg_gpgcheck (dnf's default: off)
    [off] = parse_repo_file(f"[signed]\nbaseurl={repo_dir.as_uri()}\ngpgcheck=0\n")
    assert PackageVerifier([load_repo(off, tmp_path / "cache2")]).check_all(_items(repo, ["unsigned"]), paths) == {}
    local = [TransactionItem(Action.INSTALL, Nevra("by-other", 0, "1.0", "1", "noarch"),
                             location=str(rpms["by-other"]))]
    local_paths = {"by-other-1.0-1.noarch": rpms["by-other"]}
    assert PackageVerifier([repo]).check_all(local, local_paths) == {}
    with pytest.raises(SignatureError, match="local package by-other-1.0-1.noarch .*signed with key"):
        PackageVerifier([repo], localpkg_gpgcheck=True).check_all(local, local_paths)


def test_gpgcheck_without_gpgkey_says_what_to_add(keys, rpms, tmp_path):
    repo_dir = tmp_path / "repo"
    (repo_dir / "Packages").mkdir(parents=True)
    shutil.copyfile(rpms["by-rsa"], repo_dir / "Packages" / "by-rsa-1.0-1.noarch.rpm")
    from tests.helpers.rpms import write_repodata
    write_repodata(repo_dir, [repo_dir / "Packages" / "by-rsa-1.0-1.noarch.rpm"])
    [cfg] = parse_repo_file(f"[nokey]\nbaseurl={repo_dir.as_uri()}\ngpgcheck=1\n")
    repo = load_repo(cfg, tmp_path / "cache")
    with pytest.raises(SignatureError, match=r"\[nokey\] lists no gpgkey") as exc:
        PackageVerifier([repo]).check_all(_items(repo, ["by-rsa"]),
                                          {"by-rsa-1.0-1.noarch": repo_dir / "Packages/by-rsa-1.0-1.noarch.rpm"})
    assert "gpgkey=URL" in exc.value.hint


# -- repo_gpgcheck ---------------------------------------------------------------------------------------------


@pytest.fixture
def md_repo(keys, rpms, tmp_path):
    from tests.helpers.rpms import write_repodata
    repo_dir = tmp_path / "mdrepo"
    (repo_dir / "Packages").mkdir(parents=True)
    shutil.copyfile(rpms["by-rsa"], repo_dir / "Packages" / "by-rsa-1.0-1.noarch.rpm")
    write_repodata(repo_dir, [repo_dir / "Packages" / "by-rsa-1.0-1.noarch.rpm"])
    (tmp_path / "rsa.asc").write_bytes(keys.rsa.public_armored)
    return repo_dir


def _md_config(repo_dir: Path, key: Path):
    [cfg] = parse_repo_file(f"[md]\nbaseurl={repo_dir.as_uri()}\nrepo_gpgcheck=1\ngpgkey={key.as_uri()}\n")
    return cfg


def test_repo_gpgcheck_good_signature_loads(keys, md_repo, tmp_path):
    repomd = md_repo / "repodata/repomd.xml"
    (md_repo / "repodata/repomd.xml.asc").write_bytes(keys.gnupg.detach_sign(repomd.read_bytes(), keys.rsa,
                                                                             armor=True))
    repo = load_repo(_md_config(md_repo, tmp_path / "rsa.asc"), tmp_path / "cache")
    assert repo.solv_path.is_file()


@pytest.mark.parametrize("case", ["missing", "forged", "other-key", "changed-repomd"])
def test_repo_gpgcheck_refuses_missing_and_forged_signatures_and_caches_nothing(keys, md_repo, tmp_path, case):
    repomd = md_repo / "repodata/repomd.xml"
    asc = md_repo / "repodata/repomd.xml.asc"
    if case == "forged":      # a signature by the right key id over other bytes
        asc.write_bytes(keys.gnupg.detach_sign(b"<repomd>forged</repomd>", keys.rsa, armor=True))
    elif case == "other-key":
        asc.write_bytes(keys.gnupg.detach_sign(repomd.read_bytes(), keys.other, armor=True))
    elif case == "changed-repomd":
        asc.write_bytes(keys.gnupg.detach_sign(repomd.read_bytes(), keys.rsa, armor=True))
        repomd.write_bytes(repomd.read_bytes().replace(b"<revision>", b"<revision>9"))
    expected = {"missing": r"is not signed: .*repomd.xml.asc is missing \(repo_gpgcheck=1\)",
                "forged": f"BAD signature.*key {keys.rsa.key_id}",
                "changed-repomd": f"BAD signature.*key {keys.rsa.key_id}",
                "other-key": f"signed with key {keys.other.key_id}, which is not among the trusted keys"}[case]
    cache = tmp_path / "cache"
    with pytest.raises(SignatureError, match=r"repository \[md\] metadata .*" + expected):
        load_repo(_md_config(md_repo, tmp_path / "rsa.asc"), cache)
    assert not any(cache.rglob("*.solv")) and not any(cache.rglob("repomd.xml"))
