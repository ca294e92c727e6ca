"""Pulls against a real HTTP server on 127.0.0.1 and between local repositories, checked by the real ostree."""

from __future__ import annotations

import io
import os
import shutil

import pytest

from hybridos.errors import CorruptionError, FetchError, NotFoundError, SignatureError, UsageError
from hybridos.fetch import FetchOptions
from hybridos.ostree import remotes, sign
from hybridos.ostree.objects import ObjectType
from hybridos.ostree.pull import pull
from hybridos.ostree.repo import Repo
from hybridos.util.progress import Progress
from tests.conftest import require_root, require_tool
from tests.helpers.httpserver import self_signed_cert, serve
from tests.pull.helpers import (
    big_objects,
    force_pull_workers,
    ls_tree,
    make_tree,
    object_name,
    object_requests,
    ostree,
    ostree_repo,
)

FAST = FetchOptions(retries=2, max_parallel=4)


@pytest.fixture
def upstream(tmp_path):
    """An archive repo written by the real ostree with two commits on ``main``, served over HTTP."""
    require_tool("ostree")
    tree = make_tree(tmp_path / "tree", big=400_000, tag="one")
    src = tmp_path / "upstream"
    first = ostree_repo(src, tree, subject="first")
    make_tree(tree, tag="two")
    second = ostree_repo(src, tree, subject="second")
    with serve(src) as srv:
        srv.commits = (first, second)
        srv.repo = src
        yield srv


def local_repo(path, mode="archive", url=None, **opts) -> Repo:
    repo = Repo.init(path, mode)
    if url is not None:
        remotes.add_remote(repo.config, "origin", url, options={"gpg-verify": "false", **opts})
        repo.write_config()
    return repo


def fsck(path):
    out = ostree("fsck", f"--repo={path}")
    assert "no errors found" in out.stdout


@pytest.mark.parametrize("mode", ["archive", "bare-user", "bare"])
@pytest.mark.parametrize("with_summary", [False, True])
def test_our_http_pull_from_ostree_repo(upstream, tmp_path, mode, with_summary):
    if mode == "bare":
        require_root()
    if with_summary:
        ostree("summary", f"--repo={upstream.repo}", "-u")
    repo = local_repo(tmp_path / "local", mode, upstream.url)
    result = pull(repo, "origin", ["main"], fetch_options=FAST)
    first, second = upstream.commits
    assert result.refs == {"main": second}
    assert (repo.path / "refs/remotes/origin/main").read_text() == second + "\n"
    assert not list((repo.path / "state").glob("*.commitpartial"))
    assert not repo.has_object(first, ObjectType.COMMIT)   # depth 0
    fsck(repo.path)
    assert ls_tree(repo.path, "origin:main") == ls_tree(upstream.repo, "main")
    paths = [p for p, _, _ in upstream.requests]
    assert ("/refs/heads/main" in paths) != with_summary
    # Pulling again fetches nothing.
    upstream.requests.clear()
    again = pull(repo, "origin", ["main"], fetch_options=FAST)
    assert again.content_objects == 0 and not object_requests(upstream)[1:]


def test_depth_follows_parents(upstream, tmp_path):
    repo = local_repo(tmp_path / "local", "archive", upstream.url)
    pull(repo, "origin", ["main"], depth=1, fetch_options=FAST)
    first, _ = upstream.commits
    assert repo.has_object(first, ObjectType.COMMIT)
    assert "first" in ostree("log", f"--repo={repo.path}", "origin:main").stdout
    ostree("checkout", f"--repo={repo.path}", "-U", first, str(tmp_path / "co"))   # parent complete too
    assert (tmp_path / "co/usr/share/doc/README").read_text() == "readme one"
    fsck(repo.path)


def test_commit_metadata_only(upstream, tmp_path):
    repo = local_repo(tmp_path / "local", "archive", upstream.url)
    _, second = upstream.commits
    pull(repo, "origin", ["main"], commit_metadata_only=True, fetch_options=FAST)
    assert repo.has_object(second, ObjectType.COMMIT)
    assert repo.commit_is_partial(second)
    assert not repo.has_object(repo.load_commit(second).root_tree, ObjectType.DIR_TREE)
    # as ostree does, the ref moves; the commitpartial marker says the commit is incomplete
    assert repo.resolve_rev("origin:main") == second
    pull(repo, "origin", ["main"], fetch_options=FAST)
    assert not repo.commit_is_partial(second)
    fsck(repo.path)


def test_ostree_pulls_what_we_pulled_over_http(upstream, tmp_path):
    """Our pulled repo, served over HTTP, is pulled by the real ostree (with and without a summary)."""
    ours = local_repo(tmp_path / "ours", "archive", upstream.url)
    pull(ours, "origin", ["main"], depth=1, fetch_options=FAST)
    ours.set_ref("main", ours.resolve_rev("origin:main"))
    for with_summary in (False, True):
        if with_summary:
            ostree("summary", f"--repo={ours.path}", "-u")
        with serve(ours.path) as srv:
            dst = tmp_path / f"theirs{with_summary}"
            ostree("init", f"--repo={dst}", "--mode=archive")
            ostree("remote", "add", f"--repo={dst}", "--no-gpg-verify", "o", srv.url)
            ostree("pull", f"--repo={dst}", "o", "main")
            assert ("/summary", "", 200) in srv.requests if with_summary else True
        fsck(dst)
        assert ls_tree(dst, "o:main") == ls_tree(upstream.repo, "main")


def test_ostree_pulls_a_repo_we_committed(tmp_path):
    require_tool("ostree")
    tree = make_tree(tmp_path / "tree", big=100_000)
    ours = Repo.init(tmp_path / "ours", "archive")
    commit = ours.commit_tree(tree, branch="main", subject="ours", owner_uid=0, owner_gid=0)
    for with_summary in (False, True):
        if with_summary:
            (ours.path / "summary").write_bytes(ours.generate_summary())
        with serve(ours.path) as srv:
            dst = tmp_path / f"theirs{with_summary}"
            ostree("init", f"--repo={dst}", "--mode=bare-user")
            ostree("remote", "add", f"--repo={dst}", "--no-gpg-verify", "o", srv.url)
            ostree("pull", f"--repo={dst}", "o", "main")
            paths = [p for p, _, s in srv.requests if s == 200]
            assert ("/summary" in paths) == with_summary
        fsck(dst)
        assert ostree("rev-parse", f"--repo={dst}", "o:main").stdout.strip() == commit


def test_file_pulls_both_ways(tmp_path):
    require_tool("ostree")
    tree = make_tree(tmp_path / "tree", big=50_000)
    theirs = tmp_path / "theirs"
    commit = ostree_repo(theirs, tree)
    # ours <- theirs over file://
    ours = local_repo(tmp_path / "ours", "archive", f"file://{theirs}")
    pull(ours, "origin", ["main"])
    fsck(ours.path)
    assert ls_tree(ours.path, "origin:main") == ls_tree(theirs, "main")
    # a plain path works as the URL too
    plain = local_repo(tmp_path / "plain", "bare-user", str(theirs))
    pull(plain, "origin", ["main"])
    fsck(plain.path)
    # theirs2 <- ours with ostree pull-local, untrusted so that it verifies every object
    ours.set_ref("main", commit)
    theirs2 = tmp_path / "theirs2"
    ostree("init", f"--repo={theirs2}", "--mode=archive")
    ostree("pull-local", "--untrusted", f"--repo={theirs2}", str(ours.path), "main")
    fsck(theirs2)
    assert ls_tree(theirs2, "main") == ls_tree(theirs, "main")


@pytest.mark.parametrize("workers", [1, 2])
def test_tampered_object_fails_naming_it(upstream, tmp_path, workers, monkeypatch):
    if workers > 1:   # the object is checked in a forked worker, which reports the error to the pull
        force_pull_workers(monkeypatch, workers)
    repo = local_repo(tmp_path / "local", "archive", upstream.url)
    _, second = upstream.commits
    # pick a content object of the commit: the big file
    big = big_objects(upstream.repo)[0]
    name = object_name(big)
    upstream.faults.tamper[big.name] = lambda b: b[:-10] + bytes(10)
    with pytest.raises(CorruptionError, match=f"content object {name}.*corrupt"):
        pull(repo, "origin", ["main"], fetch_options=FAST)
    assert repo.resolve_rev("origin:main", allow_missing=True) is None
    assert not repo.has_object(name, ObjectType.FILE)
    assert repo.commit_is_partial(second)
    assert not [p for p in (repo.path / "tmp").iterdir()]   # nothing half-written left behind
    # the server is repaired: the next pull completes and fetches only what is missing (objects stored by
    # the failed pull are not asked for again; requests it had in flight when it stopped may be)
    stored_before = {"/" + str(p.relative_to(repo.path)) for p in (repo.path / "objects").rglob("*.*")}
    assert any(p.endswith(".filez") for p in stored_before)
    upstream.faults.tamper.clear()
    upstream.requests.clear()
    pull(repo, "origin", ["main"], fetch_options=FAST)
    again = set(object_requests(upstream))
    assert f"/objects/{name[:2]}/{name[2:]}.filez" in again
    assert not {p for p in again if not p.endswith((".commit", ".commitmeta"))} & stored_before
    assert repo.resolve_rev("origin:main") == second and not repo.commit_is_partial(second)
    fsck(repo.path)


def test_tampered_commit_and_dirtree(upstream, tmp_path):
    repo = local_repo(tmp_path / "local", "archive", upstream.url)
    _, second = upstream.commits
    upstream.faults.tamper[f"{second[2:]}.commit"] = lambda b: b[:-1] + bytes([b[-1] ^ 1])
    with pytest.raises(CorruptionError, match=f"commit object {second}"):
        pull(repo, "origin", ["main"], fetch_options=FAST)
    assert not repo.has_object(second, ObjectType.COMMIT)
    upstream.faults.tamper.clear()
    root = repo_root_tree(upstream.repo, second)
    upstream.faults.tamper[f"{root[2:]}.dirtree"] = lambda b: b + b"\0"
    with pytest.raises(CorruptionError, match=f"dirtree object {root}"):
        pull(repo, "origin", ["main"], fetch_options=FAST)
    assert repo.resolve_rev("origin:main", allow_missing=True) is None


def repo_root_tree(path, commit) -> str:
    return Repo.open(path).load_commit(commit).root_tree


def test_interrupted_pull_resumes_without_refetching(upstream, tmp_path):
    repo = local_repo(tmp_path / "local", "archive", upstream.url)
    _, second = upstream.commits
    upstream.faults.status[".filez"] = 503   # every content object fails: the pull stops halfway
    with pytest.raises(FetchError, match="HTTP 503"):
        pull(repo, "origin", ["main"], fetch_options=FetchOptions(retries=1, max_parallel=2))
    assert repo.commit_is_partial(second) and repo.resolve_rev("origin:main", allow_missing=True) is None
    meta_before = {p for p in object_requests(upstream) if p.endswith((".dirtree", ".dirmeta"))}
    assert meta_before
    upstream.faults.status.clear()
    upstream.requests.clear()
    pull(repo, "origin", ["main"], fetch_options=FAST)
    assert not meta_before & set(object_requests(upstream))
    assert repo.resolve_rev("origin:main") == second
    fsck(repo.path)


def test_dropped_connections_on_large_files_resume(upstream, tmp_path):
    repo = local_repo(tmp_path / "local", "bare-user", upstream.url)
    bigs = big_objects(upstream.repo)
    assert len(bigs) >= 2
    for p in bigs:
        upstream.faults.drop_after[p.name] = p.stat().st_size // 2
    pull(repo, "origin", ["main"], fetch_options=FAST)
    ranged = [(path, rng) for path, rng, status in upstream.requests if rng and status == 206]
    assert {path.rsplit("/", 1)[1] for path, _ in ranged} == {p.name for p in bigs}
    assert upstream.faults.dropped
    fsck(repo.path)
    assert ls_tree(repo.path, "origin:main") == ls_tree(upstream.repo, "main")


def test_missing_ref_and_missing_remote(upstream, tmp_path):
    repo = local_repo(tmp_path / "local", "archive", upstream.url)
    with pytest.raises(NotFoundError, match="has no ref 'nope'"):
        pull(repo, "origin", ["nope"], fetch_options=FAST)
    with pytest.raises(NotFoundError, match='remote "other" not found'):
        pull(repo, "other", ["main"])
    with pytest.raises(UsageError, match="no refs given"):
        pull(repo, "origin", [])
    ostree("summary", f"--repo={upstream.repo}", "-u")
    with pytest.raises(NotFoundError, match="not in its summary"):
        pull(repo, "origin", ["nope"], fetch_options=FAST)


def test_gpg_verify_default_is_refused_clearly(upstream, tmp_path):
    repo = Repo.init(tmp_path / "local", "archive")
    remotes.add_remote(repo.config, "origin", upstream.url)
    repo.write_config()
    with pytest.raises(SignatureError, match="requires GPG signatures"):
        pull(repo, "origin", ["main"])
    assert not upstream.requests


def test_non_archive_remote_refused(tmp_path):
    require_tool("ostree")
    src = tmp_path / "bare"
    ostree_repo(src, make_tree(tmp_path / "tree"), mode="bare-user")
    with serve(src) as srv:
        repo = local_repo(tmp_path / "local", "archive", srv.url)
        with pytest.raises(FetchError, match="bare-user repository; only archive"):
            pull(repo, "origin", ["main"])


def test_mirror_pulls_all_refs_and_the_summary(upstream, tmp_path):
    ostree_repo(upstream.repo, make_tree(tmp_path / "t2", tag="other"), "other", summary=True)
    repo = local_repo(tmp_path / "local", "archive", upstream.url)
    pull(repo, "origin", [], mirror=True, fetch_options=FAST)
    assert set(repo.list_refs()) == {"main", "other"}
    assert (repo.path / "summary").read_bytes() == (upstream.repo / "summary").read_bytes()
    fsck(repo.path)


def test_ref_binding_checked(upstream, tmp_path):
    # refs/heads/other points to a commit made with -b main, so bound to "main" only
    shutil.copy(upstream.repo / "refs/heads/main", upstream.repo / "refs/heads/other")
    repo = local_repo(tmp_path / "local", "archive", upstream.url)
    with pytest.raises(SignatureError, match="bound to main, not to the requested ref 'other'"):
        pull(repo, "origin", ["other"], fetch_options=FAST)
    assert not repo.list_refs(remote="origin")
    _, second = upstream.commits
    pull(repo, "origin", [second], fetch_options=FAST)   # by checksum: no binding to check, no ref written
    assert not repo.commit_is_partial(second) and not repo.list_refs(remote="origin")


@pytest.mark.parametrize("local", [False, True])
def test_progress_reports_objects_and_bytes(upstream, tmp_path, local):
    repo = local_repo(tmp_path / "local", "archive", f"file://{upstream.repo}" if local else upstream.url)
    out = io.StringIO()
    progress = Progress("Receiving objects:", stream=out, enabled=True)
    result = pull(repo, "origin", ["main"], progress=progress, fetch_options=FAST)
    assert progress.items == result.metadata_objects + result.content_objects
    assert progress.bytes == result.bytes_transferred > 800_000
    assert progress.total_items == result.metadata_objects + result.content_objects


# ---------------------------------------------------------------------------------------------------- signatures

@pytest.fixture
def signed(upstream, tmp_path):
    """The upstream's tip signed with our signer (Debian's ostree cannot sign ed25519)."""
    secret, public = sign.generate_keypair()
    up = Repo.open(upstream.repo)
    _, second = upstream.commits
    sign.sign_commit(up, second, [secret])
    return upstream, public, second


def test_signed_commit_accepted_with_inline_key_and_key_file(signed, tmp_path):
    srv, public, second = signed
    repo = local_repo(tmp_path / "a", "archive", srv.url, **remotes.sign_verify_options([f"ed25519=inline:{public}"]))
    pull(repo, "origin", ["main"], fetch_options=FAST)
    assert repo.resolve_rev("origin:main") == second
    assert sign.signatures_in(repo.read_commitmeta(second))
    keys = tmp_path / "keys"
    _, other = sign.generate_keypair()
    keys.write_text(f"{other}\n{public}\n")
    repo = local_repo(tmp_path / "b", "archive", srv.url, **remotes.sign_verify_options([f"ed25519=file:{keys}"]))
    pull(repo, "origin", ["main"], fetch_options=FAST)
    assert repo.resolve_rev("origin:main") == second


def test_unknown_key_refused(signed, tmp_path):
    srv, _, second = signed
    _, stranger = sign.generate_keypair()
    repo = local_repo(tmp_path / "a", "archive", srv.url, **remotes.sign_verify_options([f"ed25519=inline:{stranger}"]))
    with pytest.raises(SignatureError, match=f"commit {second}.*unknown key"):
        pull(repo, "origin", ["main"], fetch_options=FAST)
    assert repo.resolve_rev("origin:main", allow_missing=True) is None
    assert not repo.has_object(second, ObjectType.COMMIT)


def test_wrong_signature_refused(signed, tmp_path):
    srv, public, second = signed
    sig = sign.signatures_in(Repo.open(srv.repo).read_commitmeta(second))[0]
    # flip one bit inside the signature bytes as served
    srv.faults.tamper[f"{second[2:]}.commitmeta"] = lambda b: b.replace(sig, bytes([sig[0] ^ 0x80]) + sig[1:])
    repo = local_repo(tmp_path / "a", "archive", srv.url, **remotes.sign_verify_options([f"ed25519=inline:{public}"]))
    with pytest.raises(SignatureError, match="wrong signature"):
        pull(repo, "origin", ["main"], fetch_options=FAST)
    assert repo.resolve_rev("origin:main", allow_missing=True) is None


def test_missing_signature_refused(upstream, tmp_path):
    _, public = sign.generate_keypair()
    repo = local_repo(tmp_path / "a", "archive", upstream.url,
                      **remotes.sign_verify_options([f"ed25519=inline:{public}"]))
    with pytest.raises(SignatureError, match="is not signed"):
        pull(repo, "origin", ["main"], fetch_options=FAST)
    assert repo.resolve_rev("origin:main", allow_missing=True) is None
    assert not object_requests(upstream)[2:]   # nothing fetched beyond the commit and its metadata


def test_sign_verify_without_keys_refused(upstream, tmp_path):
    repo = local_repo(tmp_path / "a", "archive", upstream.url, **{"sign-verify": "true"})
    with pytest.raises(SignatureError, match="no ed25519 public keys"):
        pull(repo, "origin", ["main"])


def test_locally_present_commit_still_checked(signed, tmp_path):
    """A commit that is already present (pulled unverified earlier) is re-checked when a remote requires
    signatures."""
    srv, _, second = signed
    repo = local_repo(tmp_path / "a", "archive", srv.url)
    pull(repo, "origin", ["main"], fetch_options=FAST)
    _, stranger = sign.generate_keypair()
    remotes.add_remote(repo.config, "strict", srv.url, options=remotes.sign_verify_options(
        [f"ed25519=inline:{stranger}"]))
    repo.write_config()
    with pytest.raises(SignatureError, match="unknown key"):
        pull(repo, "strict", ["main"], fetch_options=FAST)
    assert not repo.list_refs(remote="strict")


def test_no_tmp_leftovers(upstream, tmp_path):
    repo = local_repo(tmp_path / "local", "archive", upstream.url)
    pull(repo, "origin", ["main"], fetch_options=FAST)
    assert os.listdir(repo.path / "tmp") == []


def test_local_pull_adopts_verified_files_and_refuses_tampered_ones(tmp_path):
    require_tool("ostree")
    theirs = tmp_path / "theirs"
    commit = ostree_repo(theirs, make_tree(tmp_path / "tree", big=20_000))
    ours = local_repo(tmp_path / "ours", "archive", f"file://{theirs}")
    victim = next(p for p in (theirs / "objects").rglob("*.filez") if p.stat().st_size > 10_000)
    name = victim.parent.name + victim.name[:-len(".filez")]
    good = victim.read_bytes()
    victim.chmod(0o644)
    victim.write_bytes(good[:-5] + bytes(5))
    with pytest.raises(CorruptionError, match=f"content object {name}"):
        pull(ours, "origin", ["main"])
    assert not ours.has_object(name, ObjectType.FILE) and not os.listdir(ours.path / "tmp")
    assert ours.resolve_rev("origin:main", allow_missing=True) is None
    victim.write_bytes(good)
    pull(ours, "origin", ["main"])
    assert ours.resolve_rev("origin:main") == commit
    # adopted without copying: the same inode as the source object
    assert ours.object_path(name, ObjectType.FILE).stat().st_ino == victim.stat().st_ino
    fsck(ours.path)
    # a source file others may write to is copied, never shared
    victim.chmod(0o666)
    again = local_repo(tmp_path / "again", "archive", f"file://{theirs}")
    pull(again, "origin", ["main"])
    assert again.object_path(name, ObjectType.FILE).stat().st_ino != victim.stat().st_ino
    assert again.object_path(name, ObjectType.FILE).read_bytes() == good
    fsck(again.path)


def test_file_fetcher_copies_files_owned_by_others(tmp_path):
    require_root()
    from hybridos.fetch import DownloadRequest
    from hybridos.plugins import PluginRegistry

    src = tmp_path / "src"
    src.write_bytes(b"data")
    f = PluginRegistry().fetcher_for("file:///")
    f.download(DownloadRequest(str(src), tmp_path / "linked"))
    assert (tmp_path / "linked").stat().st_ino == src.stat().st_ino
    os.chown(src, 4321, 4321)
    f.download(DownloadRequest(str(src), tmp_path / "copied"))
    assert (tmp_path / "copied").stat().st_ino != src.stat().st_ino
    assert (tmp_path / "copied").read_bytes() == b"data"


def test_filez_check_refuses_every_kind_of_damage(tmp_path):
    """The one-shot .filez check used for local pulls, on objects written by the real ostree."""
    import struct

    from hybridos.ostree.pull import verify_filez_bytes

    require_tool("ostree")
    tree = make_tree(tmp_path / "tree", big=5000)
    theirs = tmp_path / "theirs"
    ostree_repo(theirs, tree)
    objs = {p.parent.name + p.name[:-6]: p.read_bytes() for p in (theirs / "objects").rglob("*.filez")}
    for checksum, data in objs.items():
        verify_filez_bytes(data, checksum)
    regular = next((c, d) for c, d in objs.items() if len(d) > 1000)
    (hlen,) = struct.unpack(">I", regular[1][:4])
    damaged = {
        "truncated stream": regular[1][:-3],
        "data after the stream": regular[1] + b"\0",
        "flipped byte": regular[1][:-20] + bytes([regular[1][-20] ^ 0xFF]) + regular[1][-19:],
        "header only": regular[1][:8 + hlen],
        "bad padding": regular[1][:4] + b"\1\0\0\0" + regular[1][8:],
        "short": regular[1][:6],
    }
    for what, data in damaged.items():
        with pytest.raises(CorruptionError):
            verify_filez_bytes(data, regular[0])
        assert what
    from hybridos.ostree.objects import FileHeader, split_sized

    headers = {c: FileHeader.parse_zlib(split_sized(d, "x")[0]) for c, d in objs.items()}
    link = next(c for c, h in headers.items() if h.is_symlink)
    with pytest.raises(CorruptionError, match="symlink with data"):
        verify_filez_bytes(objs[link] + b"x", link)
    empty = next(c for c, h in headers.items() if h.is_regular and h.size == 0)
    assert objs[empty].endswith(b"\x03\x00")
    with pytest.raises(CorruptionError):
        verify_filez_bytes(objs[empty][:-2], empty)   # an empty file still needs its deflate stream
    with pytest.raises(CorruptionError):
        verify_filez_bytes(objs[regular[0]], next(c for c in objs if c != regular[0]))


def test_pull_over_https_honours_the_remotes_tls_options(upstream, tmp_path):
    """ostree's ``tls-ca-path`` and ``tls-permissive`` remote options, set with ``ostree remote add --set``."""
    cert, key = self_signed_cert(tmp_path)
    with serve(upstream.repo, tls=(cert, key)) as tls:
        url = tls.url
        for name, options in (("plain", []), ("ca", [f"--set=tls-ca-path={cert}"]),
                              ("permissive", ["--set=tls-permissive=true"])):
            path = tmp_path / name
            ostree("init", f"--repo={path}", "--mode=archive")
            ostree("remote", "add", f"--repo={path}", "--no-gpg-verify", *options, "origin", url)
            repo = Repo.open(path)
            if name == "plain":   # a self-signed certificate is refused by default
                with pytest.raises(FetchError, match="certificate verify failed"):
                    pull(repo, "origin", ["main"], fetch_options=FetchOptions(retries=0))
                continue
            pull(repo, "origin", ["main"], fetch_options=FAST)
            assert repo.resolve_rev("origin:main") == upstream.commits[1]
            fsck(path)
