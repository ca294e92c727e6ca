"""compose tree's rpm-ostree options: --download-only(-rpms) then --cache-only, --previous-commit/-inputhash/-version,
--ex-write-lockfile-to / --ex-lockfile (with lockfile-repos)."""

from __future__ import annotations

import json
import shutil

from hybridos.ostree.repo import Repo
from tests.compose.conftest import BASE_TREEFILE, write_treefile
from tests.conftest import require_root, run_cli
from tests.helpers.rpms import File, Pkg, make_repo


def compose(tf, repo, *args, check=True):
    return run_cli("compose", "tree", str(tf), "--repo", str(repo), *args, check=check)


def test_download_only_then_cache_only_and_previous_options(tmp_path, treedir, distro_repo):
    require_root()
    tf = write_treefile(treedir, BASE_TREEFILE.replace('automatic-version-prefix: "39.<date:%Y%m%d>"',
                                                       'automatic-version-prefix: "39"'))
    mirror = tmp_path / "mirror"    # a copy we can take away (the cache is keyed by the repository's URL)
    shutil.copytree(distro_repo.path, mirror)
    (treedir / "test.repo").write_text(f"[testos]\nname=t\nbaseurl=file://{mirror}\ngpgcheck=0\n")
    cache = tmp_path / "cache"
    r = run_cli("compose", "tree", str(tf), "--download-only", "--cachedir", str(cache))
    assert r.stdout.startswith("Downloaded ") and len(list((cache / "packages").rglob("*.rpm"))) >= 6
    r = run_cli("compose", "tree", str(tf), "--download-only-rpms", check=False)
    assert r.returncode == 1 and "need --cachedir" in r.stderr
    # the repository is gone: --cache-only composes from the cache alone
    shutil.rmtree(mirror)
    repo = tmp_path / "repo"
    Repo.init(repo, "archive")
    cj = tmp_path / "c.json"
    compose(tf, repo, "--cache-only", "--cachedir", str(cache), "--write-composejson-to", str(cj))
    first = json.loads(cj.read_text())
    assert first["ostree-version"] == "39"
    # --previous-inputhash equal to the new hash: nothing to do, even with --no-parent
    again = compose(tf, repo, "--cache-only", "--cachedir", str(cache), "--no-parent",
                    "--previous-inputhash", first["rpm-ostree-inputhash"])
    assert "No apparent changes" in again.stdout
    # --previous-version: the automatic version counts on from it
    compose(tf, repo, "--cache-only", "--cachedir", str(cache), "--force-nocache", "--previous-version", "39.41",
            "--write-composejson-to", str(cj))
    assert json.loads(cj.read_text())["ostree-version"] == "39.42"
    # --previous-commit: compared with that commit (its version, its packages)
    compose(tf, repo, "--cache-only", "--cachedir", str(cache), "--force-nocache", "--previous-commit",
            first["ostree-commit"], "--write-composejson-to", str(cj))
    data = json.loads(cj.read_text())
    assert data["ostree-version"] == "39.1" and data["pkgdiff"] == []


def test_lockfile_written_then_pinned_with_lockfile_repos(tmp_path, treedir):
    require_root()
    old = make_repo(tmp_path / "old", [Pkg("libfoo", "2.0", files=(File("/usr/lib/libfoo.so.2", b"old"),))])
    (treedir / "pool.repo").write_text(f"[pool]\nname=pool\nbaseurl={old.url}\ngpgcheck=0\n")
    tf = write_treefile(treedir, BASE_TREEFILE + "lockfile-repos: [pool]\n")
    lock = tmp_path / "lock.json"
    names = run_cli("compose", "tree", "--dry-run", str(tf), "--ex-write-lockfile-to", str(lock)).stdout.split()
    data = json.loads(lock.read_text())
    assert data["packages"]["libfoo"] == {"evra": "2.1-1.x86_64"}            # pool is not used without a lockfile
    assert sorted(f"{n}-{p['evra']}" for n, p in data["packages"].items()) == sorted(names)
    data["packages"]["libfoo"] = {"evra": "2.0-1.x86_64"}                   # only the pool has 2.0
    lock.write_text(json.dumps(data))
    names = run_cli("compose", "tree", "--dry-run", str(tf), "--ex-lockfile", str(lock)).stdout.split()
    assert "libfoo-2.0-1.x86_64" in names and "libfoo-2.1-1.x86_64" not in names
    bad = tmp_path / "bad.json"
    bad.write_text('{"packages": {"libfoo": {}}}')
    r = run_cli("compose", "tree", "--dry-run", str(tf), "--ex-lockfile", str(bad), check=False)
    assert r.returncode == 1 and "needs an 'evra' or 'evr' string" in r.stderr


def test_source_root_configures_the_repositories(tmp_path, treedir, distro_repo):
    """--source-root: .repo files, dnf variables and releasever from a root, as rpm-ostree's libdnf setup."""
    (treedir / "test.repo").unlink()                  # nothing beside the treefile
    body = BASE_TREEFILE.replace("releasever: 39\n", "")
    tf = write_treefile(treedir, body)
    src = tmp_path / "source"
    (src / "etc/yum.repos.d").mkdir(parents=True)
    (src / "etc/dnf/vars").mkdir(parents=True)
    (src / "usr/lib").mkdir(parents=True)
    (src / "usr/lib/os-release").write_text('ID=testos\nVERSION_ID=39\n')
    (src / "etc/dnf/vars/distroroot").write_text(str(distro_repo.path.parent) + "\n")
    # baseurl = file://<distroroot>/<releasever-dir>: both variables come from the source root
    if not (distro_repo.path.parent / "v39").exists():
        (distro_repo.path.parent / "v39").symlink_to(distro_repo.path)
    (src / "etc/yum.repos.d/src.repo").write_text(
        "[testos]\nname=From the source root\nbaseurl=file://$distroroot/v$releasever\ngpgcheck=0\n")
    r = run_cli("compose", "tree", "--dry-run", str(tf), check=False)
    assert r.returncode == 1 and "'testos' is not defined in any .repo file" in r.stderr
    names = run_cli("compose", "tree", "--dry-run", "--source-root", str(src), str(tf)).stdout.split()
    assert any(n.startswith("hello-") for n in names) and any(n.startswith("kernel-") for n in names)
    # the treefile's releasever wins over the source root's
    tf = write_treefile(treedir, body + "releasever: 40\n")
    r = run_cli("compose", "tree", "--dry-run", "--source-root", str(src), str(tf), check=False)
    assert r.returncode == 1 and "v40" in r.stderr
