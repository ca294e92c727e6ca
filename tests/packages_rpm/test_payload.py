"""Payload reading: every compression rpm uses, compared with rpm2cpio | cpio; bad input is a clear error."""

from __future__ import annotations

import io
import subprocess

import pytest
import rpm_rs

from hybridos.errors import FormatError, PackageError
from hybridos.packages.header import read_rpm
from hybridos.packages.payload import iter_cpio, open_decompressed, read_whole
from hybridos.packages.unpack import hardlink_sets, stripped_sizes, unpack_rpm
from tests.conftest import require_tool
from tests.helpers.rpms import File, Pkg, build_with_rpmbuild, retry_hardlink_race

SPEC = Pkg("pay", "1", files=(
    File("/usr/share/pay/big", bytes(range(256)) * 4096),
    File("/usr/share/pay/small", b"small\n"),
    File("/usr/share/pay/empty", b""),
    File("/usr/share/pay/h1", b"link", hardlink="H"), File("/usr/share/pay/h2", b"link", hardlink="H"),
    File("/usr/share/pay/l", symlink="small"),
))


def build(tmp_path, compression):
    """SPEC as an RPM with the given payload compression."""
    return retry_hardlink_race(lambda: _build(tmp_path, compression))


def _build(tmp_path, compression):
    builder = rpm_rs.PackageBuilder("pay", "1", "MIT", "x86_64", "p")
    builder.release("1")
    for f in SPEC.files:
        if f.symlink:
            builder.with_symlink(rpm_rs.FileOptions.symlink(f.path, f.symlink))
        else:
            builder.with_file_contents(f.content, rpm_rs.FileOptions.new(f.path, hardlink=f.hardlink))
    builder.using_config(rpm_rs.BuildConfig(format=rpm_rs.RpmFormat.V4, compression=compression,
                                            source_date=1_700_000_000))
    path = tmp_path / f"pay-{compression}.rpm"
    builder.build().write_to(str(path))
    return path


def build_bzip2(tmp_path):
    """rpm-rs cannot write bzip2 payloads: rpmbuild can."""
    require_tool("rpmbuild")
    spec = """\
        %define _binary_payload w9.bzdio
        Name: pay
        Version: 1
        Release: 1
        Summary: p
        License: MIT
        %description
        p
        %install
        mkdir -p %{buildroot}/usr/share/pay
        head -c 100000 /dev/urandom > %{buildroot}/usr/share/pay/big
        echo small > %{buildroot}/usr/share/pay/small
        ln %{buildroot}/usr/share/pay/small %{buildroot}/usr/share/pay/h1
        ln -s small %{buildroot}/usr/share/pay/l
        %files
        /usr/share/pay
        """
    (path,) = build_with_rpmbuild(spec, tmp_path / "out", tmp_path / "rpmbuild")
    assert read_rpm(path).header.payload_compressor == "bzip2"
    return path


def members(path):
    info = read_rpm(path)
    with open(path, "rb") as f:
        f.seek(info.payload_offset)
        return [(e.name, e.size, r.read()) for e, r in iter_cpio(open_decompressed(f, info.header.payload_compressor))]


@pytest.mark.parametrize("compression", [rpm_rs.CompressionType.Gzip, rpm_rs.CompressionType.Xz,
                                         rpm_rs.CompressionType.Zstd, rpm_rs.CompressionType.NONE, "bzip2"])
def test_payload_members_match_cpio(tmp_path, compression):
    require_tool("rpm2cpio", "cpio")
    path = build_bzip2(tmp_path) if compression == "bzip2" else build(tmp_path, compression)
    ours = members(path)
    listing = subprocess.run(f"rpm2cpio {path} | cpio -it --quiet", shell=True, capture_output=True, text=True,
                             check=True).stdout.split()
    assert ["." + name for name, _, _ in ours] == listing
    out = tmp_path / "cpio-out"
    out.mkdir()
    subprocess.run(f"rpm2cpio {path} | cpio -idm --quiet", shell=True, cwd=out, check=True)
    for name, size, data in ours:
        ref = out / name.lstrip("/")
        if ref.is_symlink():
            assert data.decode() == str(ref.readlink())
        elif size:
            assert ref.read_bytes() == data


def test_unknown_compression_is_a_clear_error(tmp_path):
    path = build(tmp_path, rpm_rs.CompressionType.Zstd)
    data = path.read_bytes()
    assert data.count(b"zstd\x00") == 1
    bad = tmp_path / "bad.rpm"
    bad.write_bytes(data.replace(b"zstd\x00", b"lz5x\x00"))
    (tmp_path / "tree").mkdir()
    with pytest.raises(FormatError, match="unknown RPM payload compression 'lz5x'") as e:
        unpack_rpm(bad, tmp_path / "tree")
    assert "\n" not in str(e.value)
    assert not any((tmp_path / "tree").iterdir())


def test_payload_that_lies_about_its_compression(tmp_path):
    path = build(tmp_path, rpm_rs.CompressionType.Gzip)
    bad = tmp_path / "bad.rpm"
    bad.write_bytes(path.read_bytes().replace(b"gzip\x00", b"zstd\x00", 1))
    (tmp_path / "tree").mkdir()
    with pytest.raises(FormatError, match="not zstd data"):
        unpack_rpm(bad, tmp_path / "tree")
    assert not any((tmp_path / "tree").iterdir())


def test_corrupt_payload_is_a_clear_error(tmp_path):
    path = build(tmp_path, rpm_rs.CompressionType.Zstd)
    info = read_rpm(path)
    data = bytearray(path.read_bytes())
    for i in range(info.payload_offset + 40, len(data) - 40, 7):
        data[i] ^= 0x55
    bad = tmp_path / "bad.rpm"
    bad.write_bytes(bytes(data))
    (tmp_path / "tree").mkdir()
    with pytest.raises((FormatError, PackageError)) as e:
        unpack_rpm(bad, tmp_path / "tree")
    assert "pay-1-1.x86_64" in str(e.value) or "payload" in str(e.value)
    assert "\n" not in str(e.value)
    assert not any((tmp_path / "tree").iterdir())


def _stripped_archive(header, contents: dict[str, bytes]) -> bytes:
    """A stripped (07070X) cpio archive as rpm writes it for packages with files over 4 GiB."""
    sets = hardlink_sets(header)
    out = bytearray()

    def pad():
        out.extend(b"\0" * ((-len(out)) % 4))

    for i, e in enumerate(header.file_entries):
        if e.is_ghost:
            continue
        pad()
        out += b"07070X" + b"%08x" % i
        pad()
        if e.linkto:
            out += e.linkto.encode()
        elif e.path in sets and e.path != sets[e.path][-1]:
            pass
        else:
            out += contents.get(e.path, b"")
    pad()
    name = b"TRAILER!!!\0"
    out += b"070701" + b"00000000" * 11 + b"%08x" % len(name) + b"00000000" + name
    pad()
    return bytes(out)


def test_stripped_cpio_members_come_by_header_index(tmp_path):
    path = build(tmp_path, rpm_rs.CompressionType.Zstd)
    header = read_rpm(path).header
    contents = {f.path: f.content for f in SPEC.files if not f.symlink}
    archive = _stripped_archive(header, contents)
    sets = hardlink_sets(header)
    assert sets["/usr/share/pay/h1"] == sets["/usr/share/pay/h2"]
    got = {}
    for member, reader in iter_cpio(io.BytesIO(archive), size_of=stripped_sizes(header, sets)):
        got[header.file_entries[member.index].path] = reader.read()
    assert got["/usr/share/pay/big"] == contents["/usr/share/pay/big"]
    assert got["/usr/share/pay/l"] == b"small"
    assert {got["/usr/share/pay/h1"], got["/usr/share/pay/h2"]} == {b"", b"link"}   # data on the last only
    assert len(got) == len(header.file_entries)
    with pytest.raises(FormatError, match="needs the header"):
        list(iter_cpio(io.BytesIO(archive)))


def _tree_listing(root):
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        data = str(p.readlink()) if p.is_symlink() else (p.read_bytes() if p.is_file() else None)
        out[str(p.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, int(st.st_mtime), data)
    return out


@pytest.mark.parametrize("compression", [rpm_rs.CompressionType.Gzip, rpm_rs.CompressionType.Xz,
                                         rpm_rs.CompressionType.Zstd, rpm_rs.CompressionType.NONE])
def test_in_memory_and_streamed_payloads_read_the_same(tmp_path, compression):
    """iter_cpio over the whole payload as bytes, over a stream, and over read_whole's stream when the payload
    exceeds its limit (its already read start first) yields the same members."""
    path = build(tmp_path, compression)
    info = read_rpm(path)
    streamed = members(path)
    raw = path.read_bytes()[info.payload_offset:]
    whole = read_whole(open_decompressed(io.BytesIO(raw), info.header.payload_compressor), 1 << 24)
    assert isinstance(whole, bytes)
    assert [(e.name, e.size, r.read()) for e, r in iter_cpio(whole)] == streamed
    over = read_whole(open_decompressed(io.BytesIO(raw), info.header.payload_compressor), 1000)
    assert not isinstance(over, bytes)
    assert [(e.name, e.size, r.read()) for e, r in iter_cpio(over)] == streamed
    with pytest.raises(FormatError, match="truncated"):
        list(iter_cpio(whole[:-200]))


@pytest.mark.parametrize("limit", [0, 1 << 24], ids=["streamed", "in-memory"])
def test_unpack_streamed_or_in_memory_gives_the_same_tree_and_checks_the_digest(tmp_path, monkeypatch, limit):
    """Small payloads are read once and unpacked from memory, large ones streamed (the limit is lowered here to
    take that path): the same tree either way, and a payload that does not match its digest writes nothing."""
    from hybridos.packages import unpack

    path = build(tmp_path, rpm_rs.CompressionType.NONE)
    reference = tmp_path / "reference"
    reference.mkdir()
    unpack_rpm(path, reference)
    monkeypatch.setattr(unpack, "_IN_MEMORY", limit)
    tree = tmp_path / "tree"
    tree.mkdir()
    unpack_rpm(path, tree)
    assert _tree_listing(tree) == _tree_listing(reference)
    assert (tree / "usr/share/pay/big").read_bytes() == bytes(range(256)) * 4096
    data = path.read_bytes()
    at = data.index(b"small\n", read_rpm(path).payload_offset)
    bad = tmp_path / "bad.rpm"
    bad.write_bytes(data[:at] + b"SMALL\n" + data[at + 6:])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PackageError, match="payload does not match its digest"):
        unpack_rpm(bad, empty)
    assert not any(empty.iterdir())
