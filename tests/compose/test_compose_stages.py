"""rpm-ostree's split compose: `compose install` (packages into DESTDIR/rootfs), `compose postprocess` (the final
layout, once) and `compose commit` give what `compose tree` gives in one step."""

from __future__ import annotations

import json
import subprocess

from hybridos.ostree.repo import Repo
from tests.compose.conftest import BASE_TREEFILE, write_treefile
from tests.conftest import require_root, require_tool, run_cli


def _paths(repo, ref) -> list[str]:
    out = subprocess.run(["ostree", "ls", "-R", f"--repo={repo}", ref], capture_output=True, text=True, check=True)
    return sorted(line.split()[-1] if "->" not in line else line.split()[-3] for line in out.stdout.splitlines())


def test_install_postprocess_commit_equal_compose_tree(tmp_path, treedir):
    require_root()
    require_tool("ostree")
    tf = write_treefile(treedir, BASE_TREEFILE.replace('automatic-version-prefix: "39.<date:%Y%m%d>"',
                                                       'automatic-version-prefix: "39"'))
    repo, whole = tmp_path / "repo", tmp_path / "whole"
    Repo.init(repo, "archive")
    Repo.init(whole, "archive")
    cache = tmp_path / "cache"
    dest = tmp_path / "dest"

    r = run_cli("compose", "install", str(tf), str(dest), check=False)
    assert (r.returncode, r.stderr) == (1, "error: --repo must be specified\n")
    r = run_cli("compose", "install", str(tf), str(dest), "--repo", str(repo), "--workdir", str(tmp_path), check=False)
    assert (r.returncode, r.stderr) == (1, "error: --workdir is ignored with install-root\n")

    r = run_cli("compose", "install", str(tf), str(dest), "--repo", str(repo), "--cachedir", str(cache))
    assert r.stdout.splitlines()[-1] == f"rootfs: {dest}/rootfs"
    rootfs = dest / "rootfs"
    assert (rootfs / "usr/bin/hello").exists()
    assert (rootfs / "etc").is_dir() and not (rootfs / "usr/etc").exists()     # not postprocessed yet
    assert not list(tmp_path.glob("hybridos-compose-*"))                       # no work directory left
    # DESTDIR must be new (or empty)
    r = run_cli("compose", "install", str(tf), str(dest), "--repo", str(repo), "--cachedir", str(cache),
                "--force-nocache", check=False)
    assert r.returncode == 1 and "exists and is not an empty directory" in r.stderr

    assert run_cli("compose", "postprocess", str(rootfs), str(tf)).stdout == f"Postprocessed {rootfs}\n"
    assert (rootfs / "usr/etc/passwd").exists() and not (rootfs / "etc").exists()
    assert run_cli("compose", "postprocess", str(rootfs)).stdout == f"{rootfs}: already postprocessed\n"

    cj = tmp_path / "split.json"
    out = run_cli("compose", "commit", str(tf), str(rootfs), "--repo", str(repo), "--write-composejson-to",
                  str(cj), "--add-metadata-string", "built-by=stages").stdout
    split = json.loads(cj.read_text())
    ref = split["ref"]
    assert out.strip().endswith(f"{ref} => {split['ostree-commit']}")

    wj = tmp_path / "whole.json"
    run_cli("compose", "tree", str(tf), "--repo", str(whole), "--cachedir", str(cache), "--write-composejson-to",
            str(wj))
    one = json.loads(wj.read_text())
    assert split["rpm-ostree-inputhash"] == one["rpm-ostree-inputhash"]
    assert split["ostree-version"] == one["ostree-version"] == "39"
    a, b = Repo.open(repo).load_commit(split["ostree-commit"]), Repo.open(whole).load_commit(one["ostree-commit"])
    for key in ("rpmostree.rpmdb.pkglist", "ostree.linux", "rpmostree.inputhash", "version", "ostree.bootable"):
        assert a.metadata.get(key) == b.metadata.get(key), key
    assert a.metadata["built-by"] == "stages"
    assert _paths(repo, ref) == _paths(whole, ref)
    subprocess.run(["ostree", "fsck", f"--repo={repo}"], check=True, capture_output=True)


def test_install_with_postprocess_then_commit(tmp_path, treedir):
    require_root()
    tf = write_treefile(treedir, BASE_TREEFILE)
    repo = tmp_path / "repo"
    Repo.init(repo, "archive")
    dest = tmp_path / "dest"
    run_cli("compose", "install", "--postprocess", str(tf), str(dest), "--repo", str(repo))
    assert (dest / "rootfs/usr/etc/passwd").exists()
    assert run_cli("compose", "postprocess", str(dest / "rootfs")).stdout.endswith("already postprocessed\n")
    out = run_cli("compose", "commit", str(tf), str(dest / "rootfs"), "--repo", str(repo), "--write-commitid-to",
                  str(tmp_path / "id")).stdout
    commit = (tmp_path / "id").read_text()
    assert out == f"Wrote commit: {commit}\n"
    assert Repo.open(repo).load_commit(commit).metadata["ostree.ref-binding"] == ["testos/39/x86_64/base"]
