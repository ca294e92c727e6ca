"""RPM payloads against rpm's own archive reader (python3-rpm's ``rpm.files(h).archive(fd)``, rpmfiArchive):
packages generated with rpm-rs (regular files of any bytes, empty ones, setuid/setgid/sticky modes, symlinks,
directories, hardlink sets, %ghost entries; zstd, gzip, xz or no compression), whole or cut off anywhere.

Where rpm reads the whole archive, our cpio reader yields the same members in the same order with the same
bytes, and what ``unpack_rpm`` writes has those bytes, link targets and permission bits; where rpm's reader fails
(a cut-off file), ours refuses the package with a one-line error. Anything else raised is a failure."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hybridos.errors import HybridosError
from hybridos.packages.header import read_rpm
from hybridos.packages.payload import iter_cpio, open_decompressed
from hybridos.packages.unpack import Owners, hardlink_sets, stripped_sizes, unpack_rpm
from tests.conftest import require_root
from tests.helpers.oracles import Oracle, require_system_module
from tests.helpers.props import budget
from tests.helpers.rpms import File, Pkg, build_rpm

_NAMES = st.text("abcxyz019._-é", min_size=1, max_size=8).filter(lambda n: n not in (".", ".."))
_MODES = st.sampled_from([0o644, 0o755, 0o600, 0o4755, 0o2711, 0o1755, 0o444, 0o000])
_CONTENT = st.one_of(st.just(b""), st.binary(max_size=300), st.binary(min_size=4000, max_size=9000))


@pytest.fixture(scope="module")
def rpm_oracle():
    require_system_module("rpm")
    o = Oracle("rpm_worker.py")
    yield o
    o.close()


@st.composite
def packages(draw) -> tuple[Pkg, str]:
    files = []
    names = draw(st.lists(_NAMES, min_size=1, max_size=8, unique=True))
    for i, name in enumerate(names):
        path = f"/usr/share/gen/{name}"
        kind = draw(st.sampled_from(["file", "file", "symlink", "dir", "hardlink", "ghost"]))
        if kind == "file":
            files.append(File(path, draw(_CONTENT), mode=draw(_MODES)))
        elif kind == "symlink":
            files.append(File(path, symlink=draw(st.sampled_from([names[0], "../x", "/etc/passwd", "a/b/c"]))))
        elif kind == "dir":
            files.append(File(path, dir=True, mode=draw(st.sampled_from([0o755, 0o700, 0o1777]))))
        elif kind == "hardlink":
            content = draw(_CONTENT)
            files += [File(f"{path}.{k}", content, mode=0o644, hardlink=f"set{i}")
                      for k in range(draw(st.integers(2, 3)))]
        else:
            files.append(File(path, ghost=True))
    compression = draw(st.sampled_from(["Zstd", "Gzip", "Xz", "NONE"]))
    return Pkg("gen", files=(File("/usr/share/gen", dir=True, mode=0o755), *files)), compression


def _ours_members(path: Path) -> list:
    """Our reader: every payload member (name, data digest) in order."""
    info = read_rpm(path)
    sets = hardlink_sets(info.header)
    with open(path, "rb") as f:
        f.seek(info.payload_offset)
        stream = open_decompressed(f, info.header.payload_compressor)
        out = []
        for member, reader in iter_cpio(stream, size_of=stripped_sizes(info.header, sets)):
            data = reader.read(-1)
            out.append((member.name, hashlib.sha256(data).hexdigest() if data else None))
    return out


def _compare(rpm_oracle, path: Path, tree: Path) -> None:
    theirs = rpm_oracle.ask({"op": "payload", "path": str(path)})
    try:
        members = _ours_members(path)
        unpack_rpm(path, tree, owners=Owners())
        ours_ok = True
    except HybridosError as e:
        assert "\n" not in str(e)
        ours_ok = False
    assert ours_ok == theirs["ok"], f"rpm: {theirs}"
    if not ours_ok:
        return
    # the same members in the same order, the same bytes where rpm has content
    assert [m[0] for m in members] == [m[0] for m in theirs["members"]]
    for (name, digest), (_, mode, has, their_digest, linkto) in zip(members, theirs["members"], strict=True):
        if has:
            assert digest == (their_digest if their_digest != hashlib.sha256(b"").hexdigest() else None), name
        written = tree / name.lstrip("/")
        st_ = os.lstat(written)
        assert stat.S_IFMT(st_.st_mode) == stat.S_IFMT(mode), name
        if stat.S_ISLNK(mode):
            assert os.readlink(written) == linkto, name
        else:
            assert stat.S_IMODE(st_.st_mode) == stat.S_IMODE(mode), name
        if has and stat.S_ISREG(mode):
            assert hashlib.sha256(written.read_bytes()).hexdigest() == their_digest, name


def _check(rpm_oracle, pkg: Pkg, compression: str, cut: float | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="payload-") as d:
        path = build_rpm(pkg, Path(d) / "rpm", compression)
        if cut is not None:   # cut the file off somewhere in its payload
            data = path.read_bytes()
            payload = read_rpm(path).payload_offset
            path.write_bytes(data[:payload + int((len(data) - payload) * cut)])
        tree = Path(d) / "tree"
        tree.mkdir()
        _compare(rpm_oracle, path, tree)
        shutil.rmtree(tree, ignore_errors=True)


@budget(60)
@given(packages())
@example((Pkg("gen", files=(File("/usr/share/gen/a", b"data", mode=0o4755), File("/usr/share/gen/l", symlink="a"),
                            File("/usr/share/gen/h.0", b"same", hardlink="s"),
                            File("/usr/share/gen/h.1", b"same", hardlink="s"),
                            File("/usr/share/gen/g", ghost=True))), "Zstd"))
def test_generated_payloads_read_as_rpm_reads_them(rpm_oracle, spec):
    require_root()   # unpacking sets owners and setuid bits
    pkg, compression = spec
    _check(rpm_oracle, pkg, compression)


@budget(40)
@given(packages(), st.floats(0, 0.999))
def test_cut_off_payloads_are_refused_where_rpm_fails(rpm_oracle, spec, cut):
    require_root()
    pkg, compression = spec
    _check(rpm_oracle, pkg, compression, cut)
