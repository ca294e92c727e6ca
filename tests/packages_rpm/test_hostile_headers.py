"""Headers and payloads that differential fuzzing against rpm's own reader (issue 15) found read differently or
crashing: each is now refused where rpm refuses it, or read the way rpm reads it."""

from __future__ import annotations

import io
import struct

import pytest

from hybridos.errors import FormatError
from hybridos.packages import header as H
from hybridos.packages.payload import iter_cpio
from tests.helpers.rpmhdr import header_blob, minimal_entries, s
from tests.helpers.rpms import Pkg, build_rpm


@pytest.mark.parametrize("typ,value", [(H.INT32, struct.pack(">I", 12345)), (H.INT16, struct.pack(">H", 7)),
                                       (H.BIN, b"foo")])
def test_a_string_tag_typed_as_a_number_is_refused_like_rpm(typ, value):
    blob = header_blob([(H.Tag.NAME, typ, 1 if typ != H.BIN else 3, value)] + minimal_entries()[1:])
    with pytest.raises(FormatError, match="tag 1000 has type"):
        H.parse_header(blob)


def test_string_tags_may_carry_any_string_type():
    for typ, count, value in ((H.I18NSTRING, 2, s("foo") + s("bar")), (H.STRING_ARRAY, 1, s("foo"))):
        assert H.parse_header(header_blob([(H.Tag.NAME, typ, count, value)] + minimal_entries()[1:])).name == "foo"


def test_filemodes_typed_int64_is_refused_and_never_overflows():
    entries = minimal_entries() + [(H.Tag.OLDFILENAMES, H.STRING_ARRAY, 1, s("/a")),
                                   (H.Tag.FILEMODES, H.INT64, 1, struct.pack(">Q", (1 << 32) | 0o100644))]
    with pytest.raises(FormatError, match="tag 1030 has type 5"):
        H.parse_header(header_blob(entries))
    # rpm reads a header without a region unchecked, and keeps 16 bits of a mode (rpm_mode_t)
    h = H.parse_header(header_blob(entries, region=False))
    assert h.file_entries[0].mode == 0o100644


def test_dependencies_typed_i18nstring_are_one_string_as_in_rpm():
    entries = minimal_entries() + [(H.Tag.PROVIDENAME, H.I18NSTRING, 2, s("a") + s("b"))]
    assert [d.name for d in H.parse_header(header_blob(entries)).provides] == ["a"]
    # with flags for two names, rpm's dependency set gives up: no provides at all (it was a, b before)
    entries.append((H.Tag.PROVIDEFLAGS, H.INT32, 2, bytes(8)))
    assert H.parse_header(header_blob(entries)).provides == ()


@pytest.mark.parametrize("copies,expected", [(2, "a"), (3, "b"), (4, "c")])
def test_duplicate_tags_are_read_as_rpm_finds_them(copies, expected):
    """rpm sorts the index by tag and bsearches it: of three PROVIDENAME entries it reads the second."""
    entries = minimal_entries() + [(H.Tag.PROVIDENAME, H.STRING_ARRAY, 1, s(n)) for n in "abcd"[:copies]]
    assert [d.name for d in H.parse_header(header_blob(entries)).provides] == [expected]


@pytest.mark.parametrize("bad", [
    [(50, H.INT32, 1, bytes(4))],                                          # a region tag out of place
    [(H.Tag.SIZE, H.INT32, 0, b"")],                                       # no data
    [(H.Tag.SUMMARY, H.STRING, 2, s("a") + s("b"))],                       # STRING with count 2
])
def test_rpms_index_checks(bad):
    with pytest.raises(FormatError):
        H.parse_header(header_blob(minimal_entries() + bad))


def test_overlapping_data_is_refused():
    blob = bytearray(header_blob(minimal_entries()))
    # point VERSION (second entry after the region) at NAME's data
    struct.pack_into(">i", blob, 8 + 16 * 2 + 8, 0)
    with pytest.raises(FormatError):
        H.parse_header(bytes(blob))


def _with_signature(rpm_path, sig_entries, out):
    data = rpm_path.read_bytes()
    sig_len = 16 + 16 * struct.unpack_from(">I", data, 96 + 8)[0] + struct.unpack_from(">I", data, 96 + 12)[0]
    rest = data[96 + sig_len + (-sig_len) % 8:]
    sig = header_blob(sig_entries, magic=True)
    sig = bytearray(sig)
    struct.pack_into(">I", sig, 16, 62)   # the region of a signature header is HEADERSIGNATURES
    struct.pack_into(">I", sig, len(sig) - 16, 62)
    out.write_bytes(data[:96] + bytes(sig) + bytes((-len(sig)) % 8) + rest)
    return out


@pytest.mark.parametrize("typ,count,value", [(H.STRING_ARRAY, 1, s("12")), (H.STRING, 1, s("12"))])
def test_a_signature_size_of_string_type_is_ignored(tmp_path, typ, count, value):
    rpm = build_rpm(Pkg("sigsize"), tmp_path)
    odd = _with_signature(rpm, [(H.SigTag.SIZE, typ, count, value)], tmp_path / "odd.rpm")
    assert H.read_rpm(odd).header.name == "sigsize"


def _newc(namesize: bytes, name: bytes = b"./x\0") -> bytes:
    fields = b"00000001" + b"000081a4" + b"0" * 8 * 4 + b"00000000" + b"0" * 8 * 4 + namesize + b"00000000"
    return b"070701" + fields + name


@pytest.mark.parametrize("field", [b"-0000001", b"+0000005", b" 0000005", b"0x000005", b"0000_005"])
def test_cpio_numbers_are_hex_digits_only(field):
    for source in (_newc(field), io.BytesIO(_newc(field))):
        with pytest.raises(FormatError, match="corrupt cpio"):
            list(iter_cpio(source))


def test_stripped_archive_index_minus_one_is_refused():
    data = b"07070X" + b"-0000001" + b"\0\0"
    with pytest.raises(FormatError, match="corrupt cpio file index"):
        list(iter_cpio(data, size_of=lambda i: 0))
