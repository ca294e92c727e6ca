"""rpm-md loading over HTTP and file://, the .solv cache, RPM downloads, and bad input."""

from __future__ import annotations

import hashlib
import re
import shutil

import pytest

from hybridos.arch import Architecture
from hybridos.errors import CorruptionError, FetchError, FormatError, NotFoundError
from hybridos.packages.download import download_packages
from hybridos.packages.model import SolveRequest
from hybridos.packages.repofile import RepoConfig, parse_repo_file
from hybridos.packages.repomd import decompress, load_repo, parse_filelists, parse_metalink, parse_repomd
from hybridos.packages.solver import solve
from tests.helpers.httpserver import serve
from tests.helpers.rpms import File, Pkg, make_repo

PKGS = [
    Pkg("app", "1.0", requires=("/usr/lib/libz/data", "libz >= 1.2")),
    Pkg("libz", "1.2.13", files=(File("/usr/lib/libz/data", b"z" * 1000),)),
    Pkg("extra", "0.1", arch="noarch"),
]


def _names(repo, arch="x86_64", **request) -> set[str]:
    trans = solve(SolveRequest(arch=Architecture.parse(arch), repos=(repo,), **request))
    return {str(i.nevra) for i in trans.items}


def _config(url: str, **kw) -> RepoConfig:
    return RepoConfig(id="test", name="test", baseurls=(url,), **kw)


@pytest.mark.parametrize("compression", ["zst", "gz", "xz", "bz2", "none"])
def test_every_compression_loads(tmp_path, compression):
    repo = make_repo(tmp_path / "repo", PKGS, compression=compression)
    loaded = load_repo(repo.url, tmp_path / "cache")
    assert _names(loaded, install=("app",)) == {"app-1.0-1.x86_64", "libz-1.2.13-1.x86_64"}


def test_http_and_file_give_the_same_packages_and_cache_is_reused(tmp_path):
    repo = make_repo(tmp_path / "repo", PKGS)
    with serve(repo.path) as srv:
        cfg = _config(srv.url + "/", metadata_expire=3600)
        first = load_repo(cfg, tmp_path / "cache")
        assert not first.from_cache
        fetched = {p for p, _, _ in srv.requests}
        assert "/repodata/repomd.xml" in fetched
        assert any(p.endswith("-primary.xml.zst") for p in fetched)
        assert any(p.endswith("-filelists.xml.zst") for p in fetched)
        assert not any("other.xml" in p for p in fetched)
        n = len(srv.requests)
        again = load_repo(cfg, tmp_path / "cache")      # fresh metadata: no network at all
        assert again.from_cache and again.solv_path == first.solv_path and len(srv.requests) == n
        expired = load_repo(_config(srv.url, metadata_expire=0), tmp_path / "cache")   # only repomd.xml again
        assert expired.from_cache and [p for p, _, _ in srv.requests[n:]] == ["/repodata/repomd.xml"]
        http_set = _names(first, install=("app", "extra"))
    local = load_repo(_config(repo.url), tmp_path / "cache2")
    assert _names(local, install=("app", "extra")) == http_set == {
        "app-1.0-1.x86_64", "libz-1.2.13-1.x86_64", "extra-0.1-1.noarch"}
    offline = load_repo(_config(repo.url), tmp_path / "cache2", cache_only=True)
    assert offline.from_cache


def test_changed_repository_gets_a_new_cache_entry(tmp_path):
    repo = make_repo(tmp_path / "repo", PKGS)
    first = load_repo(repo.url, tmp_path / "cache")
    make_repo(tmp_path / "repo", [*PKGS, Pkg("app", "2.0", requires=("libz",))])
    second = load_repo(repo.url, tmp_path / "cache")
    assert second.solv_path != first.solv_path and not second.from_cache
    assert not first.solv_path.exists()           # the old revision's cache is pruned
    assert "app-2.0-1.x86_64" in _names(second, install=("app",))


def test_baseurl_failover(tmp_path):
    repo = make_repo(tmp_path / "repo", PKGS)
    cfg = RepoConfig(id="f", name="f", baseurls=((tmp_path / "missing").as_uri(), repo.url))
    loaded = load_repo(cfg, tmp_path / "cache")
    assert loaded.baseurl == repo.url
    with pytest.raises(FetchError, match=r"\[f\]: cannot fetch repomd.xml from any baseurl"):
        load_repo(RepoConfig(id="f", name="f", baseurls=((tmp_path / "missing").as_uri(),)), tmp_path / "c2")


def test_cache_only_without_cache(tmp_path):
    repo = make_repo(tmp_path / "repo", PKGS)
    with pytest.raises(NotFoundError, match="no cached metadata"):
        load_repo(_config(repo.url), tmp_path / "cache", cache_only=True)


def _rewrite_record(repo_path, kind: str, new_name: str, new_data: bytes) -> None:
    """Replace a metadata file and fix repomd.xml so that only the payload is wrong."""
    repomd = (repo_path / "repodata/repomd.xml").read_text()
    old = re.search(rf'href="(repodata/[^"]*-{kind}\.xml[^"]*)"', repomd)[1]
    (repo_path / old).unlink()
    (repo_path / "repodata" / new_name).write_bytes(new_data)
    old_sum = re.search(rf'<data type="{kind}">\s*<checksum type="sha256">([0-9a-f]+)<', repomd)[1]
    repomd = repomd.replace(old, f"repodata/{new_name}").replace(old_sum, hashlib.sha256(new_data).hexdigest())
    (repo_path / "repodata/repomd.xml").write_text(repomd)


def test_corrupt_repomd(tmp_path):
    repo = make_repo(tmp_path / "repo", PKGS)
    (repo.path / "repodata/repomd.xml").write_bytes(b"<repomd><data type=")
    with pytest.raises(FormatError, match="corrupt repomd.xml"):
        load_repo(repo.url, tmp_path / "cache")
    (repo.path / "repodata/repomd.xml").write_bytes(b"<html>hello</html>")
    with pytest.raises(FormatError, match="not a repomd.xml"):
        load_repo(repo.url, tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("*.solv"))


def test_checksum_mismatch_over_http(tmp_path):
    repo = make_repo(tmp_path / "repo", PKGS)
    with serve(repo.path) as srv:
        srv.faults.tamper["-primary.xml.zst"] = lambda body: body[:-1] + bytes([body[-1] ^ 1])
        with pytest.raises(CorruptionError, match=r"checksum mismatch for http://.*-primary\.xml\.zst"):
            load_repo(srv.url, tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("*.solv"))
    assert not list((tmp_path / "cache").rglob("repomd.xml"))


def test_unknown_and_corrupt_compression(tmp_path):
    repo = make_repo(tmp_path / "repo", PKGS)
    _rewrite_record(repo.path, "primary", "abc-primary.xml.lz4", b"\x04\x22\x4d\x18 not really lz4")
    with pytest.raises(FormatError, match=r"abc-primary\.xml\.lz4: unknown compression"):
        load_repo(repo.url, tmp_path / "cache")
    _rewrite_record(repo.path, "primary", "abc-primary.xml.gz", b"\x1f\x8b\x08\x00 truncated gzip")
    with pytest.raises(FormatError, match=r"abc-primary\.xml\.gz: corrupt gz data"):
        load_repo(repo.url, tmp_path / "cache")
    _rewrite_record(repo.path, "primary", "abc-primary.xml", b"<metadata><package><name>x")
    with pytest.raises(FormatError, match="corrupt primary metadata"):
        load_repo(repo.url, tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("*.solv"))


def test_pure_format_functions():
    assert decompress(b"<?xml version='1.0'?><x/>", "a.xml") == b"<?xml version='1.0'?><x/>"
    with pytest.raises(FormatError, match="a.zst: corrupt zst data"):
        decompress(b"\x28\xb5\x2f\xfd garbage", "a.zst")
    md = parse_repomd(b'<repomd xmlns="http://linux.duke.edu/metadata/repo"><revision>7</revision>'
                      b'<data type="primary"><checksum type="sha256">AB</checksum><location href="p.xml"/>'
                      b'</data></repomd>')
    assert md.revision == "7" and md.records["primary"].checksum == "ab"
    with pytest.raises(FormatError, match="lists no filelists"):
        md.record("filelists", "x")


def test_download_parallel_verified_and_cached(tmp_path):
    repo = make_repo(tmp_path / "repo", PKGS)
    with serve(repo.path) as srv:
        loaded = load_repo(srv.url, tmp_path / "cache")
        trans = solve(SolveRequest(arch=Architecture.X86_64, repos=(loaded,), install=("app", "extra")))
        assert all(i.location.startswith(srv.url) and i.checksum.startswith("sha256:") for i in trans.items)
        n = len(srv.requests)
        rpms = download_packages(trans, tmp_path / "pkgs")
        rpm_requests = [p for p, _, _ in srv.requests[n:]]
        assert sorted(rpm_requests) == sorted(f"/Packages/{p.filename}" for p in PKGS)
        for item in trans.items:
            assert rpms[str(item.nevra)].read_bytes() == repo.rpms[str(item.nevra)].read_bytes()
        n = len(srv.requests)
        again = download_packages(trans, tmp_path / "pkgs")       # second run: nothing downloaded
        assert again == rpms and len(srv.requests) == n


def test_download_checksum_mismatch_leaves_nothing(tmp_path):
    repo = make_repo(tmp_path / "repo", PKGS)
    with serve(repo.path) as srv:
        loaded = load_repo(srv.url, tmp_path / "cache")
        trans = solve(SolveRequest(arch=Architecture.X86_64, repos=(loaded,), install=("extra",)))
        srv.faults.tamper["extra-0.1-1.noarch.rpm"] = lambda body: body[:-1] + b"x"   # (a longer body: see
        # test_hostile_repomd.py::test_an_endless_package_stops_at_its_declared_size)
        with pytest.raises(CorruptionError, match="checksum mismatch for http://.*extra-0.1-1.noarch.rpm"):
            download_packages(trans, tmp_path / "pkgs")
    assert [p.name for p in (tmp_path / "pkgs").iterdir()] == []


def test_download_over_file_url_and_local_rpm(tmp_path):
    repo = make_repo(tmp_path / "repo", PKGS)
    loaded = load_repo(repo.url, tmp_path / "cache")
    local = tmp_path / "local.rpm"
    shutil.copyfile(repo.rpms["extra"], local)
    trans = solve(SolveRequest(arch=Architecture.X86_64, repos=(loaded,), install=("app", str(local))))
    rpms = download_packages(trans, tmp_path / "pkgs")
    assert rpms["extra-0.1-1.noarch"] == local
    assert rpms["app-1.0-1.x86_64"].parent == tmp_path / "pkgs"
    # A repository file that changed after the metadata was written is refused.
    repo.rpms["libz"].write_bytes(repo.rpms["libz"].read_bytes() + b"junk")
    with pytest.raises(CorruptionError):
        download_packages(trans, tmp_path / "pkgs2")


def test_filelists_index_scan():
    xml = (b'<?xml version="1.0"?><filelists packages="2">'
           b'<package pkgid="AA" name="a" arch="x86_64"><version epoch="0" ver="1" rel="1"/>'
           b'<file>/usr/share/a&amp;b/x</file><file type="dir">/usr/share/a&amp;b</file></package>'
           b'<package pkgid="bb" name="b" arch="noarch"><version epoch="0" ver="1" rel="1"/>'
           b'<file>/usr/share/a&amp;b/x</file></package></filelists>')
    index = parse_filelists(xml, {b"aa": [0], b"bb": [1, 2]}, "f.xml")
    assert index == {b"/usr/share/a&b/x": [0, 1, 2], b"/usr/share/a&b": [0]}
    with pytest.raises(FormatError, match="file outside any package"):
        parse_filelists(b"<filelists><file>/x</file></filelists>", {}, "f.xml")


def test_file_dependency_with_escaped_path(tmp_path):
    repo = make_repo(tmp_path / "repo", [Pkg("amp", files=(File("/usr/share/a&b/data", b"x"),)),
                                         Pkg("user", requires=("/usr/share/a&b/data",))])
    loaded = load_repo(repo.url, tmp_path / "cache")
    assert _names(loaded, install=("user",)) == {"amp-1.0-1.x86_64", "user-1.0-1.x86_64"}
    assert _names(loaded, install=("/usr/share/a&b/data",)) == {"amp-1.0-1.x86_64"}


def test_local_repository_is_always_revalidated(tmp_path):
    repo = make_repo(tmp_path / "repo", PKGS)
    cfg = _config(repo.url, metadata_expire=-1)
    first = load_repo(cfg, tmp_path / "cache")
    make_repo(tmp_path / "repo", [*PKGS, Pkg("new")])
    second = load_repo(cfg, tmp_path / "cache")
    assert second.solv_path != first.solv_path and "new-1.0-1.x86_64" in _names(second, install=("new",))


def test_corrupt_cache_file_is_a_clear_error(tmp_path):
    repo = make_repo(tmp_path / "repo", PKGS)
    loaded = load_repo(repo.url, tmp_path / "cache")
    loaded.solv_path.write_bytes(b"SOLV garbage")
    with pytest.raises(CorruptionError, match=r"cache file .*\.solv is corrupt"):
        _names(loaded, install=("app",))
    loaded.solv_path.unlink()
    with pytest.raises(NotFoundError, match="is missing"):
        _names(loaded, install=("app",))
    assert _names(load_repo(repo.url, tmp_path / "cache"), install=("extra",)) == {"extra-0.1-1.noarch"}


def test_download_fails_over_to_the_next_baseurl(tmp_path):
    repo = make_repo(tmp_path / "repo", PKGS)
    mirror = tmp_path / "mirror"
    shutil.copytree(repo.path, mirror)
    with serve(repo.path) as primary, serve(mirror) as backup:
        cfg = RepoConfig(id="m", name="m", baseurls=(primary.url, backup.url))
        loaded = load_repo(cfg, tmp_path / "cache")
        assert loaded.baseurl == primary.url
        trans = solve(SolveRequest(arch=Architecture.X86_64, repos=(loaded,), install=("app",)))
        primary.faults.status["libz-1.2.13-1.x86_64.rpm"] = 404
        primary.faults.tamper["app-1.0-1.x86_64.rpm"] = lambda body: body[:100]
        with pytest.raises((NotFoundError, CorruptionError)):
            download_packages(trans, tmp_path / "no-failover")
        rpms = download_packages(trans, tmp_path / "pkgs", repos=(loaded,))
        assert rpms["libz-1.2.13-1.x86_64"].read_bytes() == repo.rpms["libz"].read_bytes()
        assert rpms["app-1.0-1.x86_64"].read_bytes() == repo.rpms["app"].read_bytes()
        assert {p for p, _, _ in backup.requests} >= {"/Packages/libz-1.2.13-1.x86_64.rpm",
                                                      "/Packages/app-1.0-1.x86_64.rpm"}


def test_location_base_is_honoured(tmp_path):
    import createrepo_c

    from tests.helpers.rpms import build_rpm

    rpm = build_rpm(Pkg("far"), tmp_path / "elsewhere" / "Packages")
    (tmp_path / "repo").mkdir()
    writer = createrepo_c.RepositoryWriter(str(tmp_path / "repo"), compression=createrepo_c.ZSTD_COMPRESSION)
    writer.set_num_of_pkgs(1)
    pkg = createrepo_c.package_from_rpm(str(rpm))
    pkg.location_href = "Packages/far-1.0-1.x86_64.rpm"
    pkg.location_base = (tmp_path / "elsewhere").as_uri() + "/"
    writer.add_pkg(pkg)
    writer.finish()
    loaded = load_repo((tmp_path / "repo").as_uri(), tmp_path / "cache")
    trans = solve(SolveRequest(arch=Architecture.X86_64, repos=(loaded,), install=("far",)))
    assert trans.items[0].location == rpm.as_uri()
    assert download_packages(trans, tmp_path / "pkgs")["far-1.0-1.x86_64"].read_bytes() == rpm.read_bytes()


def _metalink(urls_prefs: list[tuple[str, int]], sha256: str) -> bytes:
    urls = "".join(f'<url protocol="{u.split(":")[0]}" preference="{p}">{u}repodata/repomd.xml</url>'
                   for u, p in urls_prefs)
    return (f'<?xml version="1.0"?><metalink version="3.0" xmlns="http://www.metalinker.org/"><files>'
            f'<file name="repomd.xml"><verification><hash type="sha256">{sha256}</hash></verification>'
            f"<resources>{urls}</resources></file></files></metalink>").encode()


def test_metalink_and_mirrorlist(tmp_path):
    good = make_repo(tmp_path / "good", PKGS)
    stale = make_repo(tmp_path / "stale", PKGS[:1])
    repomd_sha = hashlib.sha256((good.path / "repodata/repomd.xml").read_bytes()).hexdigest()
    meta = tmp_path / "meta"
    meta.mkdir()
    with serve(good.path) as g, serve(stale.path) as st, serve(meta) as m:
        # The stale mirror is preferred but its repomd.xml does not match the metalink: skipped.
        (meta / "metalink").write_bytes(_metalink([(st.url + "/", 100), (g.url + "/", 50)], repomd_sha))
        cfg = RepoConfig(id="ml", name="ml", baseurls=(), options={"metalink": m.url + "/metalink"})
        loaded = load_repo(cfg, tmp_path / "cache")
        assert loaded.baseurl == g.url + "/" and loaded.mirrors == (st.url + "/", g.url + "/")
        assert "app-1.0-1.x86_64" in _names(loaded, install=("app",))
        (meta / "metalink").write_bytes(_metalink([(st.url + "/", 100)], repomd_sha))
        with pytest.raises(FetchError, match="does not match the metalink"):
            load_repo(cfg, tmp_path / "cache2")
        (meta / "mirrors").write_text(f"# mirrors\n{tmp_path.as_uri()}/nowhere/\n\n{g.url}/\n")
        cfg = RepoConfig(id="mlist", name="mlist", baseurls=(), options={"mirrorlist": m.url + "/mirrors"})
        assert load_repo(cfg, tmp_path / "cache").baseurl == g.url + "/"
        (meta / "mirrors").write_text("# none\n")
        with pytest.raises(FetchError, match="lists no mirror"):
            load_repo(cfg, tmp_path / "cache3")
    with pytest.raises(FormatError, match="corrupt metalink"):
        parse_metalink(b"<metalink", "m")
    with pytest.raises(FetchError, match="has no baseurl, metalink or mirrorlist"):
        load_repo(RepoConfig(id="none", name="n", baseurls=()), tmp_path / "cache4")


def test_repo_file_with_metalink_parses():
    (cfg,) = parse_repo_file("[f]\nmetalink=https://mirrors.example/metalink?repo=f$releasever&arch=$basearch\n",
                             "f.repo", {"releasever": "41", "basearch": "aarch64"})
    assert cfg.baseurls == () and cfg.get("metalink") == "https://mirrors.example/metalink?repo=f41&arch=aarch64"
