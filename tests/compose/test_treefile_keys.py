"""The rest of rpm-ostree's treefile keys: real Fedora manifests flatten unchanged, and a compose using the keys
does what rpm-ostree documents for each."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest

from hybridos.ostree.objects import ObjectType
from hybridos.ostree.repo import Repo
from tests.compose.conftest import BASE_TREEFILE, KVER, write_treefile
from tests.conftest import require_root, require_tool, run_cli
from tests.helpers.rpms import Pkg, build_with_rpmbuild, make_repo, write_repodata

DATA = Path(__file__).resolve().parent.parent / "data" / "treefiles"
FCOS = DATA / "fedora-coreos-config"
ATOMIC = DATA / "workstation-ostree-config"
LEAVES = [FCOS / "manifest.yaml"] + [ATOMIC / f"fedora-{n}.yaml" for n in (
    "silverblue", "kinoite", "base", "lxqt", "mate", "pantheon", "deepin", "vauxite")]


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
@pytest.mark.parametrize("leaf", LEAVES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_fedora_manifests_flatten_unchanged(leaf, arch):
    p = run_cli("compose", "tree", "--print-only", "--arch", arch, str(leaf))
    tf = json.loads(p.stdout)
    assert tf["basearch"] == arch and tf["ref"].startswith("fedora/")
    assert arch in tf["ref"] and len(tf["packages"]) > 20
    assert tf["selinux"] is True                                   # the upstream default, and what they say
    assert tf["check-passwd"]["type"] == "file"
    if leaf.parent == FCOS:
        assert tf["ostree-layers"][0].startswith("overlay/")
        assert tf["rpmdb"] == "sqlite" and tf["recommends"] is False
        assert ["cracklib-dicts", ".*"] in tf["remove-from-packages"]
        assert "fedora-coreos-pool" in tf["lockfile-repos"]
        assert ("irqbalance" in tf["packages"]) is True
        assert tf["add-commit-metadata"]["fedora-coreos.stream"] == "testing-devel"
    else:
        assert tf["tmp-is-dir"] is True and tf["default-target"] == "graphical.target"


def test_an_error_in_an_included_file_names_that_file(tmp_path):
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc/bad.yaml").write_text("check-groups: {type: sometimes}\n")
    (tmp_path / "top.yaml").write_text("include: inc/bad.yaml\npackages: [a]\n")
    p = run_cli("compose", "tree", "--print-only", str(tmp_path / "top.yaml"), check=False)
    assert p.returncode == 1
    assert p.stderr.startswith(f"error: {tmp_path / 'inc/bad.yaml'}: 'check-groups'")
    assert "Traceback" not in p.stderr


# ------------------------------------------------------------------------------------------ end to end

LANG_SPEC = """\
Name: langpkg
Version: 1.0
Release: 1
Summary: files in several languages
License: MIT
BuildArch: noarch
%description
langs
%install
mkdir -p %{buildroot}/usr/share/langpkg
for l in fr de en C; do echo $l > %{buildroot}/usr/share/langpkg/$l.txt; done
echo all > %{buildroot}/usr/share/langpkg/any.txt
%files
%lang(fr) /usr/share/langpkg/fr.txt
%lang(de) /usr/share/langpkg/de.txt
%lang(en) /usr/share/langpkg/en.txt
/usr/share/langpkg/C.txt
/usr/share/langpkg/any.txt
"""


def compose(treefile: Path, repo: Path, *args: str, check: bool = True, env: dict | None = None):
    return run_cli("compose", "tree", str(treefile), "--repo", str(repo), *args, check=check, env=env)


def checkout(repo: Path, rev: str, dest: Path) -> Path:
    Repo.open(repo).checkout(rev, dest)
    return dest


@pytest.fixture
def extra_repo(tmp_path):
    """A second repository: an older libfoo (for repo-packages) and a package with %lang files."""
    require_tool("rpmbuild")
    d = tmp_path / "extra"
    rpms = build_with_rpmbuild(LANG_SPEC, d / "pkgs", tmp_path / "rpmbuild")
    repo = make_repo(d, [Pkg("libfoo", "2.0", files=())])
    write_repodata(d, sorted(d.rglob("*.rpm")))
    assert rpms
    return repo


def test_compose_with_the_newly_supported_keys(tmp_path, treedir, extra_repo):
    require_root()
    require_tool("ostree")
    (treedir / "extra.repo").write_text(f"[extra]\nname=extra\nbaseurl={extra_repo.url}\ngpgcheck=0\n")
    repo = tmp_path / "repo"
    Repo.init(repo, "archive")
    layer = tmp_path / "layer"
    (layer / "usr/share/overlay").mkdir(parents=True)
    (layer / "usr/share/overlay/from-layer").write_text("layer\n")
    Repo.open(repo).commit_tree(layer, branch="overlay/test")
    (treedir / "finalize.d").mkdir()
    fin = treedir / "finalize.d/10-mark"
    fin.write_text('#!/bin/sh\necho "cwd=$(pwd) workdir=$RPMOSTREE_WORKDIR" > usr/share/finalized\n')
    fin.chmod(0o755)
    tf = write_treefile(treedir, BASE_TREEFILE.replace("repos: [testos]", "repos: [testos, extra]") + textwrap.dedent("""\
        edition: "2024"
        rojig: {name: testos, summary: ignored, license: MIT}
        rpmdb: sqlite
        metadata: {tool.note: "built for ${basearch}"}
        packages-x86_64: [langpkg]
        repo-packages:
          - repo: extra
            packages: [libfoo]
        remove-from-packages:
          - [hello, "^/usr/share/doc/"]
        install-langs: [fr_FR, en_US]
        readonly-executables: true
        ostree-layers: [overlay/test]
        container-cmd: [/usr/bin/hello]
        tmp-is-dir: false
        opt-usrlocal: root
        no-initramfs: true
        repo-metadata: inline
        check-passwd: {type: data, entries: {root: 0, hello: [990, 990], olduser: 4242}}
        check-groups: {type: data, entries: {root: 0, hello: 990}}
        ignore-removed-users: [nosuchuser]
        """))
    cj = tmp_path / "compose.json"
    p = compose(tf, repo, "--write-composejson-to", str(cj))
    assert "Unused user removed from new passwd file: olduser" in p.stdout
    commit = json.loads(cj.read_text())["ostree-commit"]
    co = checkout(repo, commit, tmp_path / "co")
    r = Repo.open(repo)
    meta = r.load_commit(commit).metadata
    # repo-packages: libfoo from 'extra' (2.0) although testos has 2.1
    pkgs = {e[0]: e[2] for e in (meta["rpmostree.rpmdb.pkglist"].value)}
    assert pkgs["libfoo"] == "2.0" and "langpkg" in pkgs
    # remove-from-packages: hello's doc gone, the rest of hello stays
    assert not (co / "usr/share/doc/hello/README").exists() and (co / "usr/bin/hello").exists()
    # install-langs: fr and en (prefixes of fr_FR, en_US) and language-less files stay; de goes
    assert sorted(x.name for x in (co / "usr/share/langpkg").iterdir()) == ["C.txt", "any.txt", "en.txt", "fr.txt"]
    # readonly-executables
    assert stat.S_IMODE((co / "usr/bin/hello").lstat().st_mode) == 0o555
    assert stat.S_IMODE((co / "usr/share/langpkg/any.txt").lstat().st_mode) & 0o200     # not executables
    # ostree-layers
    assert (co / "usr/share/overlay/from-layer").read_text() == "layer\n"
    # tmp-is-dir false, opt-usrlocal root
    assert os.readlink(co / "tmp") == "sysroot/tmp"
    assert (co / "opt").is_dir() and not (co / "opt").is_symlink()
    assert (co / "usr/local").is_dir() and not (co / "usr/local").is_symlink()
    # no-initramfs
    assert (co / f"usr/lib/modules/{KVER}/vmlinuz").is_file()
    assert not (co / f"usr/lib/modules/{KVER}/initramfs.img").exists()
    # edition 2024: finalize.d ran on the host in the tree
    cwd, workdir = (co / "usr/share/finalized").read_text().split()
    assert cwd.startswith(f"cwd={repo}/tmp/hybridos-compose-") and cwd.endswith("/rootfs")
    assert workdir == f"workdir={treedir}"
    # container-cmd and metadata are kept in the flattened treefile
    stored = json.loads((co / "usr/share/hybridos/treefile.json").read_text())
    assert stored["container-cmd"] == ["/usr/bin/hello"]
    assert stored["metadata"] == {"tool.note": "built for x86_64"}
    # repo-metadata inline
    repos = meta["rpmostree.rpmmd-repos"]
    repos = repos.value if hasattr(repos, "value") else repos
    assert sorted(str(x["id"].value if hasattr(x["id"], "value") else x["id"]) for x in repos) == ["extra", "testos"]


def test_check_passwd_fails_on_a_changed_id_and_on_a_removed_user_still_owning_files(tmp_path, treedir):
    require_root()
    repo = tmp_path / "repo"
    Repo.init(repo, "archive")
    changed = write_treefile(treedir, BASE_TREEFILE + "check-passwd: {type: data, entries: {hello: 991}}\n")
    p = compose(changed, repo, check=False)
    assert p.returncode == 1 and "passwd UID changed: hello (991 to 990)" in p.stderr
    gone = write_treefile(treedir, BASE_TREEFILE + "check-groups: {type: data, entries: {oldroot: 0}}\n")
    p = compose(gone, repo, check=False)
    assert p.returncode == 1 and "group missing from new group file: oldroot" in p.stderr
    assert Repo.open(repo).list_refs() == {}
    ok = write_treefile(treedir, BASE_TREEFILE + "check-groups: {type: data, entries: {oldroot: 0}}\n"
                        "ignore-removed-groups: ['*']\n")
    p = compose(ok, repo)
    assert "Ignored group missing from new group file: oldroot" in p.stdout


def test_ostree_layers_conflict_and_override(tmp_path, treedir):
    require_root()
    repo = tmp_path / "repo"
    Repo.init(repo, "archive")
    layer = tmp_path / "layer"
    (layer / "usr/bin").mkdir(parents=True)
    (layer / "usr/bin/hello").write_text("#!/bin/sh\necho overridden\n")
    Repo.open(repo).commit_tree(layer, branch="overlay/hello")
    tf = write_treefile(treedir, BASE_TREEFILE + "ostree-layers: [overlay/hello]\n")
    p = compose(tf, repo, check=False)
    assert p.returncode == 1 and "/usr/bin/hello is already provided" in p.stderr
    tf = write_treefile(treedir, BASE_TREEFILE + "ostree-layers: [overlay/missing]\n")
    p = compose(tf, repo, check=False)
    assert p.returncode == 1 and "ref 'overlay/missing' is not in the repository" in p.stderr
    tf = write_treefile(treedir, BASE_TREEFILE + "ostree-override-layers: [overlay/hello]\n")
    compose(tf, repo)
    co = checkout(repo, "testos/39/x86_64/base", tmp_path / "co")
    assert (co / "usr/bin/hello").read_text() == "#!/bin/sh\necho overridden\n"


def test_preserve_passwd_seeds_users_from_the_previous_commit(tmp_path, treedir):
    """A user that only the previous commit has survives (uids stay allocated), as with rpm-ostree."""
    require_root()
    repo = tmp_path / "repo"
    Repo.init(repo, "archive")
    tf = write_treefile(treedir, BASE_TREEFILE + "postprocess: ['echo \"legacy:x:777:777::/:/sbin/nologin\" "
                        ">> /etc/passwd']\n")
    compose(tf, repo)
    tf = write_treefile(treedir, BASE_TREEFILE + "check-passwd: {type: previous}\n")
    compose(tf, repo)
    co = checkout(repo, "testos/39/x86_64/base", tmp_path / "co")
    assert "legacy:x:777:777" in (co / "usr/etc/passwd").read_text() + (
        (co / "usr/lib/passwd").read_text() if (co / "usr/lib/passwd").exists() else "")
    tf = write_treefile(treedir, BASE_TREEFILE + "preserve-passwd: false\nignore-removed-users: [legacy]\n"
                        "check-passwd: {type: previous}\n")
    p = compose(tf, repo)
    assert "Ignored user missing from new passwd file: legacy" in p.stdout


def test_gpg_key_signs_the_commit(tmp_path, treedir):
    require_root()
    require_tool("gpg")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {"GNUPGHOME": str(home)}
    try:
        _gpg_key_signs_the_commit(tmp_path, treedir, env)
    finally:  # gpg starts an agent for this home; it would outlive the test
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True)


def _gpg_key_signs_the_commit(tmp_path, treedir, env):
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "builder@example.org", "ed25519",
                    "sign", "never"], check=True, capture_output=True, env=dict(os.environ, **env))
    repo = tmp_path / "repo"
    Repo.init(repo, "archive")
    tf = write_treefile(treedir, BASE_TREEFILE + "gpg-key: builder@example.org\n")
    compose(tf, repo, env=env)
    r = Repo.open(repo)
    commit = r.resolve_rev("testos/39/x86_64/base")
    sigs = r.read_commitmeta(commit)["ostree.gpgsigs"]
    sigs = sigs.value if hasattr(sigs, "value") else sigs
    (tmp_path / "commit").write_bytes(r.read_metadata_bytes(commit, ObjectType.COMMIT))
    (tmp_path / "sig").write_bytes(bytes(sigs[0]))
    v = subprocess.run(["gpg", "--batch", "--verify", str(tmp_path / "sig"), str(tmp_path / "commit")],
                       capture_output=True, text=True, env=dict(os.environ, **env))
    assert v.returncode == 0, v.stderr
    (tmp_path / "commit").write_bytes(b"x" + (tmp_path / "commit").read_bytes())
    assert subprocess.run(["gpg", "--batch", "--verify", str(tmp_path / "sig"), str(tmp_path / "commit")],
                          capture_output=True, env=dict(os.environ, **env)).returncode != 0


def test_sysusers_compose_forced_needs_systemd_sysusers(tmp_path, treedir):
    require_root()
    repo = tmp_path / "repo"
    Repo.init(repo, "archive")
    tf = write_treefile(treedir, BASE_TREEFILE + "sysusers: compose-forced\n")
    p = compose(tf, repo, check=False)
    assert p.returncode == 1 and "the tree has no systemd-sysusers" in p.stderr
