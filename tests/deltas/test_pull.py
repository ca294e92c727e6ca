"""Pulling through static deltas over HTTP: the real ostree pulls ours, we pull ostree's; a delta that is
tampered with or missing is reported and the pull completes with plain objects; a cut part resumes."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridos.ostree import delta_format as df
from hybridos.ostree.pull import pull
from hybridos.ostree.repo import Repo
from tests.deltas.helpers import client_repo, fsck_clean, listing, ostree, source_repo
from tests.helpers.httpserver import serve

pytestmark = pytest.mark.tool("ostree")


@pytest.fixture
def src(tmp_path):
    return source_repo(tmp_path)


def _our_client(path: Path, src: Path, c1: str, url: str, cli) -> Repo:
    client_repo(path, src, c1)
    cli("repo", "remote", "add", f"--repo={path}", "--no-gpg-verify", "o", url)
    ostree("refs", f"--repo={path}", "--create=o:main", c1)
    return Repo.open(path)


def _object_gets(srv) -> list[str]:
    return [p for p, _r, st in srv.requests if p.startswith("/objects/") and st in (200, 206)]


def _delta_gets(srv) -> list[str]:
    return [p for p, _r, st in srv.requests if p.startswith("/deltas/")]


def test_ostree_pulls_our_delta(src, tmp_path, cli):
    repo, c1, c2 = src
    cli("repo", "static-delta", "generate", f"--repo={repo}", "--from", c1, "--to", c2)
    cli("repo", "summary", f"--repo={repo}", "-u")
    client = client_repo(tmp_path / "client", repo, c1)
    with serve(repo) as srv:
        ostree("remote", "add", f"--repo={client}", "--no-gpg-verify", "o", srv.url)
        ostree("pull", f"--repo={client}", "o", "main")
    assert f"/{df.delta_dir(c1, c2)}/superblock" in _delta_gets(srv)
    assert f"/{df.delta_dir(c1, c2)}/0" in _delta_gets(srv)
    # No assertion on loose objects: ostree 2022.7 writes the delta's commit and scans it while the parts are
    # still being fetched and applied, so it may also fetch some (under load, all) of the new content as
    # objects. That ostree applies our parts is shown deterministically by the apply-offline tests.
    assert ostree("rev-parse", f"--repo={client}", "o:main").stdout.strip() == c2
    assert listing(client, c2) == listing(repo, c2)
    fsck_clean(client)


@pytest.mark.parametrize("inline", [False, True])
def test_we_pull_ostrees_delta(src, tmp_path, cli, inline):
    repo, c1, c2 = src
    ostree("static-delta", "generate", f"--repo={repo}", f"--from={c1}", f"--to={c2}",
           *(["--inline"] if inline else []))
    ostree("summary", f"--repo={repo}", "-u")
    with serve(repo) as srv:
        client = _our_client(tmp_path / "client", repo, c1, srv.url, cli)
        out = cli("repo", "pull", f"--repo={client.path}", "o", "main")
    assert f"used static delta {c1}-{c2}" in out.stderr
    assert f"/{df.delta_dir(c1, c2)}/superblock" in _delta_gets(srv)
    assert not [p for p in _object_gets(srv) if p.endswith(".filez")]
    assert listing(client.path, c2) == listing(repo, c2)
    fsck_clean(client.path)


def test_progress_shows_delta_parts(src, tmp_path, cli, monkeypatch):
    repo, c1, c2 = src
    _small_parts(monkeypatch, repo, c1, c2)
    cli("repo", "summary", f"--repo={repo}", "-u")
    nparts = len(df.Superblock.parse((repo / df.delta_dir(c1, c2) / "superblock").read_bytes()).parts)

    class Recorder:
        def __init__(self):
            self.labels, self.totals, self.items = [], [], 0
            self.total_items = None

        def set_label(self, label):
            self.labels.append(label)

        def advance(self, items=0, nbytes=0):
            self.items += items
            self.totals.append(self.total_items)

    rec = Recorder()
    with serve(repo) as srv:
        client = _our_client(tmp_path / "client", repo, c1, srv.url, cli)
        result = pull(client, "o", ["main"], progress=rec)
    assert result.deltas == (f"{c1}-{c2}",)
    assert "Receiving delta parts:" in rec.labels
    assert nparts > 1 and nparts in rec.totals and rec.items >= nparts


@pytest.mark.parametrize("fault", ["tamper", "missing"])
def test_bad_part_falls_back_to_objects(src, tmp_path, cli, fault):
    repo, c1, c2 = src
    cli("repo", "static-delta", "generate", f"--repo={repo}", "--from", c1, "--to", c2)
    cli("repo", "summary", f"--repo={repo}", "-u")
    part = f"/{df.delta_dir(c1, c2)}/0"
    with serve(repo) as srv:
        if fault == "tamper":
            srv.faults.tamper[part] = lambda b: b[:-10] + bytes(x ^ 0x55 for x in b[-10:])
        else:
            srv.faults.status[part] = 404
        client = _our_client(tmp_path / "client", repo, c1, srv.url, cli)
        proc = cli("repo", "pull", f"--repo={client.path}", "--network-retries=0", "o", "main")
    expected = "checksum mismatch" if fault == "tamper" else "missing"
    assert f"static delta {c1}-{c2} could not be used" in proc.stderr and expected in proc.stderr, proc.stderr
    assert "fetching objects instead" in proc.stderr
    assert [p for p in _object_gets(srv) if p.endswith(".filez")], "the fallback fetched no objects"
    assert ostree("rev-parse", f"--repo={client.path}", "o:main").stdout.strip() == c2
    assert listing(client.path, c2) == listing(repo, c2)
    fsck_clean(client.path)


def test_tampered_superblock_falls_back(src, tmp_path, cli):
    repo, c1, c2 = src
    cli("repo", "static-delta", "generate", f"--repo={repo}", "--from", c1, "--to", c2)
    cli("repo", "summary", f"--repo={repo}", "-u")
    with serve(repo) as srv:
        srv.faults.tamper[f"/{df.delta_dir(c1, c2)}/superblock"] = lambda b: b[:-1] + bytes([b[-1] ^ 1])
        client = _our_client(tmp_path / "client", repo, c1, srv.url, cli)
        proc = cli("repo", "pull", f"--repo={client.path}", "o", "main")
    assert "does not match the digest" in proc.stderr
    assert listing(client.path, c2) == listing(repo, c2)
    fsck_clean(client.path)


def test_cut_connection_resumes_the_part(src, tmp_path, cli):
    repo, c1, c2 = src
    cli("repo", "static-delta", "generate", f"--repo={repo}", "--from", c1, "--to", c2)
    cli("repo", "summary", f"--repo={repo}", "-u")
    part = f"/{df.delta_dir(c1, c2)}/0"
    size = (repo / df.delta_dir(c1, c2) / "0").stat().st_size
    with serve(repo) as srv:
        srv.faults.drop_after[part] = size // 2
        client = _our_client(tmp_path / "client", repo, c1, srv.url, cli)
        proc = cli("repo", "pull", f"--repo={client.path}", "o", "main")
    assert f"used static delta {c1}-{c2}" in proc.stderr, proc.stderr
    ranges = [r for p, r, st in srv.requests if p == part and st == 206]
    assert ranges and ranges[0] == f"bytes={size // 2}-", srv.requests
    assert not [p for p in _object_gets(srv) if p.endswith(".filez")]
    fsck_clean(client.path)


def _small_parts(monkeypatch, repo: Path, c1: str, c2: str) -> None:
    """Generate with parts of about 2 kB (sizes count in units of 1,000 bytes here) for a multi-part delta."""
    from hybridos.ostree import delta_generate

    monkeypatch.setattr(delta_generate, "MB", 1000)
    delta_generate.generate(Repo.open(repo), c1, c2, delta_generate.DeltaOptions(max_chunk_size=2, workers=1))


def test_interrupted_delta_pull_resumes(src, tmp_path, cli, monkeypatch):
    """A pull stopped after some parts: the next one skips the parts whose objects are all present."""
    repo, c1, c2 = src
    _small_parts(monkeypatch, repo, c1, c2)
    cli("repo", "summary", f"--repo={repo}", "-u")
    sb = df.Superblock.parse((repo / df.delta_dir(c1, c2) / "superblock").read_bytes())
    assert len(sb.parts) >= 2
    last = f"/{df.delta_dir(c1, c2)}/{len(sb.parts) - 1}"
    with serve(repo) as srv:
        client = _our_client(tmp_path / "client", repo, c1, srv.url, cli)
        srv.faults.status[last] = 500
        # the delta fails at its last part; objects are then refused too: the pull stops, nothing moves
        for suffix in (".filez", ".dirtree", ".dirmeta"):
            srv.faults.status[suffix] = 500
        proc = cli("repo", "pull", f"--repo={client.path}", "--network-retries=0", "o", "main", check=False)
        assert proc.returncode != 0
        assert ostree("rev-parse", f"--repo={client.path}", "o:main").stdout.strip() == c1
        srv.faults.status.clear()
        srv.requests.clear()
        proc = cli("repo", "pull", f"--repo={client.path}", "o", "main")
    fetched = [p for p in _delta_gets(srv) if not p.endswith("superblock")]
    assert fetched == [last], fetched
    assert f"{len(sb.parts) - 1} already present" in proc.stderr
    fsck_clean(client.path)
    assert ostree("rev-parse", f"--repo={client.path}", "o:main").stdout.strip() == c2


def test_require_static_deltas(src, tmp_path, cli):
    """--require-static-deltas: with no delta offered, or a delta that cannot be used, the pull fails with a
    clear message and fetches no objects; with a usable delta it is used; --disable-static-deltas fetches
    objects even when a delta is offered."""
    repo, c1, c2 = src
    cli("repo", "summary", f"--repo={repo}", "-u")
    with serve(repo) as srv:
        client = _our_client(tmp_path / "client", repo, c1, srv.url, cli)
        proc = cli("repo", "pull", f"--repo={client.path}", "--require-static-deltas", "o", "main", check=False)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        assert "static deltas are required (--require-static-deltas)" in proc.stderr and c2 in proc.stderr
        assert not [p for p in _object_gets(srv) if p.endswith(".filez")]
        assert ostree("rev-parse", f"--repo={client.path}", "o:main").stdout.strip() == c1
        proc = cli("repo", "pull", f"--repo={client.path}", "--require-static-deltas", "--disable-static-deltas",
                   "o", "main", check=False)
        assert proc.returncode != 0 and "contradict" in proc.stderr

        cli("repo", "static-delta", "generate", f"--repo={repo}", "--from", c1, "--to", c2)
        cli("repo", "summary", f"--repo={repo}", "-u")
        part = f"/{df.delta_dir(c1, c2)}/0"
        srv.faults.tamper[part] = lambda b: b[:-10] + bytes(x ^ 0x55 for x in b[-10:])
        srv.requests.clear()
        proc = cli("repo", "pull", f"--repo={client.path}", "--require-static-deltas", "o", "main", check=False)
        assert proc.returncode != 0 and "checksum mismatch" in proc.stderr and "are required" in proc.stderr
        assert not [p for p in _object_gets(srv) if p.endswith(".filez")]
        assert ostree("rev-parse", f"--repo={client.path}", "o:main").stdout.strip() == c1
        srv.faults.tamper.clear()

        srv.requests.clear()
        proc = cli("repo", "pull", f"--repo={client.path}", "--disable-static-deltas", "o", "main")
        assert not _delta_gets(srv) and [p for p in _object_gets(srv) if p.endswith(".filez")]
        assert "used static delta" not in proc.stderr

        other = _our_client(tmp_path / "other", repo, c1, srv.url, cli)
        srv.requests.clear()
        proc = cli("repo", "pull", f"--repo={other.path}", "--require-static-deltas", "o", "main")
        assert f"used static delta {c1}-{c2}" in proc.stderr
        assert not [p for p in _object_gets(srv) if p.endswith(".filez")]
    assert listing(other.path, c2) == listing(repo, c2)
    fsck_clean(other.path)
    fsck_clean(client.path)


def test_require_static_deltas_into_archive(src, tmp_path, cli):
    repo, c1, c2 = src
    cli("repo", "static-delta", "generate", f"--repo={repo}", "--from", c1, "--to", c2)
    cli("repo", "summary", f"--repo={repo}", "-u")
    with serve(repo) as srv:
        client = client_repo(tmp_path / "client", repo, c1, mode="archive")
        cli("repo", "remote", "add", f"--repo={client}", "--no-gpg-verify", "o", srv.url)
        proc = cli("repo", "pull", f"--repo={client}", "--require-static-deltas", "o", "main", check=False)
    assert proc.returncode != 0 and "archive repository" in proc.stderr and "Traceback" not in proc.stderr
    assert ostree("rev-parse", f"--repo={client}", "o:main", check=False).returncode != 0


def test_delta_that_leaves_out_an_object_still_completes(src, tmp_path, cli, monkeypatch):
    """A delta whose parts lack one object the new commit needs (a faulty or hostile generator): the pull's
    completeness check notices and fetches that object; the commit is whole."""
    from hybridos.ostree import delta_generate

    repo, c1, c2 = src
    real = delta_generate._walk_to
    dropped = []

    def lossy(*args, **kw):
        new_meta, new_files = real(*args, **kw)
        dropped.extend(c for path, c in new_files if path.endswith("new.txt"))
        return new_meta, [(path, c) for path, c in new_files if c not in dropped]

    monkeypatch.setattr(delta_generate, "_walk_to", lossy)
    delta_generate.generate(Repo.open(repo), c1, c2)
    assert dropped
    cli("repo", "summary", f"--repo={repo}", "-u")
    with serve(repo) as srv:
        client = _our_client(tmp_path / "client", repo, c1, srv.url, cli)
        proc = cli("repo", "pull", f"--repo={client.path}", "o", "main")
    assert f"used static delta {c1}-{c2}" in proc.stderr
    assert [p for p in _object_gets(srv) if p.endswith(".filez")] == [
        f"/objects/{dropped[0][:2]}/{dropped[0][2:]}.filez"]
    assert listing(client.path, c2) == listing(repo, c2)
    fsck_clean(client.path)
