"""gpgcheck=1 on a host: signed packages layer; unsigned, wrong-key and tampered ones are refused before
anything is written (real RPMs signed by rpmsign, keys made by gpg, the gpgkey fetched over HTTP)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.helpers.gpg import GnuPG, signed_repo
from tests.helpers.httpserver import serve
from tests.helpers.rpms import File, Pkg
from tests.layering.conftest import deployment_dir, hyb, rpm_q, status


def _pkg(name: str) -> Pkg:
    return Pkg(name, "1.0", arch="noarch", files=(File(f"/usr/share/{name}/data", b"payload of " + name.encode()),))


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    require_tool("gpg", "rpmsign")
    base = tmp_path_factory.mktemp("gpgrepo")
    gnupg = GnuPG.create(base / "gnupg")
    rsa = gnupg.generate("Repo Signer <repo@example.com>", "rsa2048")
    ed = gnupg.generate("Repo Ed Signer <ed@example.com>", "ed25519")
    other = gnupg.generate("Stranger <stranger@example.com>", "ed25519")
    repo = signed_repo(base / "repo", gnupg, {_pkg("signed-rsa"): rsa, _pkg("signed-ed"): ed,
                                              _pkg("wrong-key"): other},
                       unsigned=[_pkg("unsigned")], flipped={_pkg("flipped"): rsa})
    (repo.path / "keys").mkdir()
    (repo.path / "keys/RPM-GPG-KEY-repo").write_bytes(rsa.public_armored + ed.public_armored)
    local = base / "local"
    from tests.helpers.rpms import build_rpm
    signed_local = build_rpm(_pkg("local-signed"), local)
    gnupg.sign_rpm(signed_local, rsa)
    build_rpm(_pkg("local-unsigned"), local)
    gnupg.close()
    with serve(repo.path) as srv:
        yield srv, {"rsa": rsa, "ed": ed, "other": other, "local": local}


def _configure(host: Path, url: str) -> None:
    [dep] = status(host)
    (deployment_dir(host, dep) / "etc/yum.repos.d/signed.repo").write_text(textwrap.dedent(f"""\
        [signed]
        name=Signed
        baseurl={url}
        gpgcheck=1
        gpgkey={url}/keys/RPM-GPG-KEY-repo
        """))


def _snapshot(host: Path) -> set[str]:
    """Every path of the object store, the deployments and /boot (what a transaction would change)."""
    out = set()
    for top in ("ostree/repo/objects", "ostree/repo/refs", "ostree/deploy/testos/deploy", "boot"):
        for dirpath, dirs, files in os.walk(host / top):
            out.update(os.path.join(dirpath, n) for n in dirs + files)
    return out


def test_signed_packages_install_with_gpgcheck(host, signed):
    srv, keys = signed
    _configure(host, srv.url)
    hyb(host, "install", "signed-rsa", "signed-ed")
    new, _old = status(host)
    tree = deployment_dir(host, new)
    assert (tree / "usr/share/signed-rsa/data").read_bytes() == b"payload of signed-rsa"
    assert rpm_q(tree, "signed-rsa", "signed-ed").returncode == 0
    assert any(p.endswith("/keys/RPM-GPG-KEY-repo") for p, *_ in srv.requests)   # fetched through the fetch hook


@pytest.mark.parametrize("name, message", [
    ("unsigned", r"package unsigned-1.0-1.noarch from repository \[signed\] is not signed"),
    ("wrong-key", r"package wrong-key-1.0-1.noarch from repository \[signed\]: signed with key {other}, which is "
                  r"not among the trusted keys"),
    ("flipped", r"package flipped-1.0-1.noarch from repository \[signed\]: BAD signature.*key {rsa}"),
])
def test_bad_packages_are_refused_before_anything_is_written(host, signed, name, message):
    srv, keys = signed
    _configure(host, srv.url)
    before = _snapshot(host)
    deps = status(host)
    r = hyb(host, "install", "signed-rsa", name, check=False)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    import re
    assert re.search(message.format(other=keys["other"].key_id, rsa=keys["rsa"].key_id), r.stderr), r.stderr
    assert status(host) == deps
    assert _snapshot(host) == before     # no object, ref, deployment or boot entry was written


def test_localpkg_gpgcheck_from_dnf_conf(host, signed):
    """Local RPMs are checked only with dnf.conf's localpkg_gpgcheck=1, against the repositories' keys."""
    srv, keys = signed
    _configure(host, srv.url)
    unsigned = next(keys["local"].glob("local-unsigned-*.rpm"))
    signed_rpm = next(keys["local"].glob("local-signed-*.rpm"))
    [dep] = status(host)
    conf = deployment_dir(host, dep) / "etc/dnf/dnf.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("[main]\nlocalpkg_gpgcheck=1\n")
    r = hyb(host, "install", str(unsigned), check=False)
    assert r.returncode != 0 and "local package local-unsigned-1.0-1.noarch" in r.stderr and "not signed" in r.stderr
    assert len(status(host)) == 1
    hyb(host, "install", str(signed_rpm))
    assert len(status(host)) == 2
