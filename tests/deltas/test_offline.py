"""Static deltas on disk: ours applied by the real ostree, ostree's applied by us, and bad deltas refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hybridos.errors import CorruptionError
from hybridos.ostree import delta_format as df
from hybridos.ostree.delta_apply import apply_offline
from hybridos.ostree.delta_generate import DeltaOptions, generate
from hybridos.ostree.objects import ObjectType
from hybridos.ostree.repo import Repo
from tests.deltas.helpers import client_repo, fsck_clean, listing, ostree, source_repo

pytestmark = pytest.mark.tool("ostree")


@pytest.fixture
def src(tmp_path):
    return source_repo(tmp_path)


def _delta_dir(repo: Path, frm: str | None, to: str) -> Path:
    return repo / df.delta_dir(frm, to)


def test_our_delta_applied_by_ostree(src, tmp_path, cli):
    repo, c1, c2 = src
    out = cli("repo", "static-delta", "generate", f"--repo={repo}", "--from", c1, "--to", c2).stdout
    assert "bsdiff" in out
    # ostree reads it, and it uses bsdiff for the modified files
    shown = ostree("static-delta", "show", f"--repo={repo}", f"{c1}-{c2}").stdout
    assert "bspatch=" in shown and "bspatch=0" not in shown
    assert f"{c1}-{c2}" in ostree("static-delta", "list", f"--repo={repo}").stdout
    client = client_repo(tmp_path / "client", repo, c1)
    ostree("static-delta", "apply-offline", f"--repo={client}", str(_delta_dir(repo, c1, c2)))
    assert listing(client, c2) == listing(repo, c2)
    fsck_clean(client)


@pytest.mark.parametrize("inline", [False, True])
def test_our_delta_file_applied_by_ostree(src, tmp_path, cli, inline):
    """The USB-stick flow: --min-fallback-size=0 --filename (parts beside it, or inline)."""
    repo, c1, c2 = src
    target = tmp_path / "usb" / "update"
    cli("repo", "static-delta", "generate", f"--repo={repo}", "--from", c1, c2, "--min-fallback-size=0",
        f"--filename={target}", *(["--inline"] if inline else []))
    assert sorted(p.name for p in target.parent.iterdir()) == (["update"] if inline else ["0", "update"])
    client = client_repo(tmp_path / "client", repo, c1)
    ostree("static-delta", "apply-offline", f"--repo={client}", str(target))
    assert listing(client, c2) == listing(repo, c2)
    fsck_clean(client)


@pytest.mark.parametrize("inline", [False, True])
def test_ostree_delta_applied_by_us(src, tmp_path, cli, inline):
    repo, c1, c2 = src
    target = tmp_path / "usb" / "superblock"
    target.parent.mkdir()
    ostree("static-delta", "generate", f"--repo={repo}", f"--from={c1}", f"--to={c2}", "--min-fallback-size=0",
           f"--filename={target}", *(["--inline"] if inline else []))
    client = client_repo(tmp_path / "client", repo, c1)
    out = cli("repo", "static-delta", "apply-offline", f"--repo={client}",
              str(target if inline else target.parent)).stdout
    assert "1 parts applied" in out, out
    assert listing(client, c2) == listing(repo, c2)
    fsck_clean(client)


def test_ostree_bsdiff_parts_applied_by_us(src, tmp_path):
    """ostree's own bsdiff stream (mendsley raw format) through our bspatch."""
    repo, c1, c2 = src
    ostree("static-delta", "generate", f"--repo={repo}", f"--from={c1}", f"--to={c2}", "--min-fallback-size=0")
    sb = df.Superblock.parse((_delta_dir(repo, c1, c2) / "superblock").read_bytes())
    client = client_repo(tmp_path / "client", repo, c1)
    _sb, stats = apply_offline(Repo.open(client), _delta_dir(repo, c1, c2))
    assert stats.parts_applied == len(sb.parts)
    assert listing(client, c2) == listing(repo, c2)
    fsck_clean(client)


def test_from_scratch_delta_both_ways(src, tmp_path, cli):
    repo, _c1, c2 = src
    cli("repo", "static-delta", "generate", f"--repo={repo}", "--empty", "--to", c2, "--min-fallback-size=0")
    for name in ("ostree-client", "our-client"):
        client = tmp_path / name
        ostree("init", f"--repo={client}", "--mode=bare-user")
        if name == "ostree-client":
            ostree("static-delta", "apply-offline", f"--repo={client}", str(_delta_dir(repo, None, c2)))
        else:
            cli("repo", "static-delta", "apply-offline", f"--repo={client}", str(_delta_dir(repo, None, c2)))
        assert listing(client, c2) == listing(repo, c2)
        fsck_clean(client)


def test_tampered_part_refused(src, tmp_path, cli):
    repo, c1, c2 = src
    cli("repo", "static-delta", "generate", f"--repo={repo}", "--from", c1, "--to", c2)
    part = _delta_dir(repo, c1, c2) / "0"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    client = client_repo(tmp_path / "client", repo, c1)
    proc = cli("repo", "static-delta", "apply-offline", f"--repo={client}", str(part.parent), check=False)
    assert proc.returncode != 0
    assert "checksum mismatch" in proc.stderr and "Traceback" not in proc.stderr
    # nothing half-done is taken as the new commit
    assert (client / "state" / f"{c2}.commitpartial").exists()


def test_fallbacks_listed_and_refused_offline(tmp_path, cli):
    """Files over --min-fallback-size are fallbacks (fetched as objects); such a delta cannot go offline."""
    repo, _c1, c2 = source_repo(tmp_path, big=1_100_000)
    report = generate(Repo.open(repo), None, c2, DeltaOptions(min_fallback_size=1))
    assert report.fallbacks == 1
    shown = ostree("static-delta", "show", f"--repo={repo}", c2).stdout
    assert "Number of fallback entries: 1" in shown
    client = tmp_path / "client"
    ostree("init", f"--repo={client}", "--mode=bare-user")
    proc = cli("repo", "static-delta", "apply-offline", f"--repo={client}", str(_delta_dir(repo, None, c2)),
               check=False)
    assert proc.returncode != 0 and "--min-fallback-size=0" in proc.stderr
    generate(Repo.open(repo), None, c2, DeltaOptions(min_fallback_size=0))
    cli("repo", "static-delta", "apply-offline", f"--repo={client}", str(_delta_dir(repo, None, c2)))
    fsck_clean(client)


def test_delete_show_list(src, cli):
    repo, c1, c2 = src
    cli("repo", "static-delta", "generate", f"--repo={repo}", "--from", c1, "--to", c2, "--inline")
    assert cli("repo", "static-delta", "list", f"--repo={repo}").stdout.split() == [f"{c1}-{c2}"]
    shown = cli("repo", "static-delta", "show", f"--repo={repo}", f"{c1}-{c2}").stdout
    assert "(inline)" in shown and "Number of parts: 1" in shown
    cli("repo", "static-delta", "delete", f"--repo={repo}", f"{c1}-{c2}")
    assert "(No static deltas)" in cli("repo", "static-delta", "list", f"--repo={repo}").stdout
    proc = cli("repo", "static-delta", "show", f"--repo={repo}", f"{c1}-{c2}", check=False)
    assert proc.returncode != 0 and proc.stderr.startswith("error: ")


def test_summary_advertises_deltas_like_ostree(src, cli):
    repo, c1, c2 = src
    cli("repo", "static-delta", "generate", f"--repo={repo}", "--from", c1, "--to", c2)
    cli("repo", "summary", f"--repo={repo}", "-u")
    ours = ostree("summary", f"--repo={repo}", "--view").stdout
    assert f"{c1}-{c2}" in ours
    index = repo / df.index_path(c2)
    ours_index = index.read_bytes()
    ostree("summary", f"--repo={repo}", "-u")
    assert index.read_bytes() == ours_index   # ostree's reindex writes the very same bytes
    theirs = ostree("summary", f"--repo={repo}", "--view").stdout
    assert f"{c1}-{c2}" in theirs


def test_bsdiff_stream_roundtrip():
    from bsdiff4 import core

    from hybridos.ostree.delta_apply import _SliceReader, bspatch_stream

    old = os.urandom(50_000)
    new = old[:100] + b"inserted" + old[100:30_000] + os.urandom(500) + old[31_000:]
    raw = df.raw_bsdiff_stream(*core.diff(old, new))
    assert not raw.startswith(b"BSDIFF40")

    class _Payload:
        def read_abs(self, a, b):
            return raw[a:b]

    import io
    out = bytearray()
    bspatch_stream(io.BytesIO(old), len(old), _SliceReader(_Payload(), 0, len(raw)), len(new), out.extend)
    assert bytes(out) == new


def test_edit_patch_roundtrip():
    """The linear-time patch for local edits is a valid raw bsdiff stream (ostree applies it: see above)."""
    import io
    import random

    from hybridos.ostree.delta_apply import _SliceReader, bspatch_stream
    from hybridos.ostree.delta_generate import edit_patch

    rng = random.Random(1)
    used = 0
    for _ in range(200):
        old = rng.randbytes(rng.randrange(1, 200_000))
        a = rng.randrange(0, len(old) + 1)
        b = rng.randrange(a, len(old) + 1) if rng.random() < 0.5 else a
        new = old[:a] + rng.randbytes(rng.randrange(0, 50)) + old[b:]
        raw = edit_patch(old, new)
        if raw is None:
            continue
        used += 1

        class _Payload:
            def read_abs(self, x, y, raw=raw):
                return raw[x:y]

        out = bytearray()
        bspatch_stream(io.BytesIO(old), len(old), _SliceReader(_Payload(), 0, len(raw)), len(new), out.extend)
        assert bytes(out) == new
    assert used > 50


def test_usb_directory_with_a_chain_of_deltas(src, tmp_path, cli):
    """A stick holding several deltas: those whose source is here are applied, a chain in order."""
    import shutil

    repo, c1, c2 = src
    tree3 = tmp_path / "v3"
    shutil.copytree(tmp_path / "v2", tree3, symlinks=True)
    (tree3 / "usr/share/doc/v3.txt").write_text("third\n")
    c3 = ostree("commit", f"--repo={repo}", "-b", "main", "-s", "v3", "--owner-uid=0", "--owner-gid=0",
                str(tree3)).stdout.strip()
    usb = tmp_path / "usb"
    for frm, to, name in ((c2, c3, "b"), (c1, c2, "a")):
        cli("repo", "static-delta", "generate", f"--repo={repo}", "--from", frm, "--to", to,
            "--min-fallback-size=0", f"--filename={usb / name / 'superblock'}")
    (usb / "notes.txt").write_text("not a delta\n")
    client = client_repo(tmp_path / "client", repo, c1)
    out = cli("repo", "static-delta", "apply-offline", f"--repo={client}", str(usb)).stdout
    assert out.index(f"Applied {c1}-{c2}") < out.index(f"Applied {c2}-{c3}")
    assert listing(client, c3) == listing(repo, c3)
    fsck_clean(client)
    # nothing more applies now: a clear error
    proc = cli("repo", "static-delta", "apply-offline", f"--repo={client}", str(usb), check=False)
    assert proc.returncode != 0 and "none of the 2 deltas" in proc.stderr


def test_bad_input_is_one_line_errors(src, tmp_path, cli):
    repo, c1, c2 = src
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "superblock").write_bytes(b"\x00garbage" * 10)
    client = client_repo(tmp_path / "client", repo, c1)
    for args in (["generate", f"--repo={repo}", "--empty", "--from", c1, "--to", c2],
                 ["generate", f"--repo={repo}", "--to", "nosuchref"],
                 ["generate", f"--repo={repo}", "--to", c1],          # v1 has no parent
                 ["apply-offline", f"--repo={client}", str(bad)],
                 ["show", f"--repo={repo}", "not-a-delta"]):
        proc = cli("repo", "static-delta", *args, check=False)
        assert proc.returncode != 0, args
        lines = proc.stderr.strip().splitlines()
        assert lines and lines[0].startswith(("error: ", "Error: ", "Usage: ")), (args, proc.stderr)
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("fault", [None, "missing-source"])
def test_parallel_apply_within_a_part(src, tmp_path, cli, monkeypatch, fault):
    """A part's objects shared out among forked workers (forced here on a small delta): the commit is whole;
    an error in a worker (its bsdiff source object is gone) is reported as the delta's error, with nothing
    half-written."""
    from hybridos.ostree import delta_apply, pull

    repo, c1, c2 = src
    cli("repo", "static-delta", "generate", f"--repo={repo}", "--from", c1, "--to", c2, "--min-fallback-size=0")
    client = client_repo(tmp_path / "client", repo, c1)
    monkeypatch.setattr(delta_apply, "PARALLEL_MIN_OBJECTS", 1)
    monkeypatch.setattr(pull, "pull_workers", lambda: 3)
    sb = df.Superblock.parse((repo / df.delta_dir(c1, c2) / "superblock").read_bytes())
    assert len(sb.parts) == 1
    if fault:
        old_prog = ostree("ls", f"--repo={client}", "-C", c1, "/usr/bin/prog").stdout.split()[4]
        os.unlink(Repo.open(client).object_path_str(old_prog, ObjectType.FILE))
        with pytest.raises(CorruptionError, match=f"delta source object {old_prog} is not in the repository"):
            apply_offline(Repo.open(client), repo / df.delta_dir(c1, c2))
        assert Repo.open(client).commit_is_partial(c2)
        return
    _sb, stats = apply_offline(Repo.open(client), repo / df.delta_dir(c1, c2))
    assert stats.objects_written == len(sb.parts[0].objects)
    assert listing(client, c2) == listing(repo, c2)
    fsck_clean(client)
