"""The GVariant codec: known byte vectors, round trips, normal form, and malformed input."""

from __future__ import annotations

import random

import pytest

from hybridos import gvariant
from hybridos.errors import FormatError
from hybridos.gvariant import Variant, parse, serialize
from hybridos.ostree.objects import Commit, DirMeta, DirTree, FileHeader, Summary, SummaryRef


def test_dirmeta_vector():
    assert DirMeta(0, 0, 0o40755).serialize().hex() == "00000000" "00000000" "000041ed"


def test_empty_dirtree_is_one_byte():
    assert DirTree().serialize() == b"\0"


def test_file_header_vector():
    hdr = FileHeader(0, 0, 0o100644).serialize()
    assert hdr.hex() == "00000000" "00000000" "000081a4" "00000000" "00" "11"


@pytest.mark.parametrize("sig,value", [
    ("y", 255), ("b", True), ("n", -2), ("q", 65535), ("i", -7), ("u", 2**32 - 1), ("x", -(2**63)),
    ("t", 2**64 - 1), ("d", 1.5), ("s", ""), ("s", "héllo"), ("o", "/a/b"), ("g", "a{sv}"),
    ("ay", b""), ("ay", b"\0\1\2"), ("as", []), ("as", ["", "a", "bc"]), ("at", [1, 2, 3]),
    ("(yt)", (1, 2)), ("(ty)", (2, 1)), ("()", ()), ("a(yy)", [(1, 2), (3, 4)]), ("(sy)", ("s", 1)),
    ("(ys)", (1, "x")), ("ms", None), ("ms", "x"), ("mu", 5), ("mu", None), ("v", Variant("s", "x")),
    ("a{sv}", {"a": Variant("u", 1), "b": Variant("as", ["x"]), "c": Variant("v", Variant("y", 3))}),
    ("(a{sv}aya(say)sstayay)", ({}, b"", [], "", "", 0, b"\1" * 32, b"\2" * 32)),
    ("aas", [["a"], [], ["b", "c"]]),
])
def test_round_trip(sig, value):
    data = serialize(sig, value)
    assert parse(sig, data) == value
    assert serialize(sig, parse(sig, data)) == data


def test_framing_offsets_grow_past_255_bytes():
    value = ["x" * 100, "y" * 100, "z" * 100]
    data = serialize("as", value)
    assert len(data) == 303 + 3 * 2  # two-byte offsets
    assert parse("as", data) == value
    big = ["a" * 70000]
    assert parse("as", serialize("as", big)) == big


def test_tuple_offsets_are_in_reverse_order():
    data = serialize("(ssy)", ("ab", "c", 7))
    # "ab\0" "c\0" then y at 5, then offsets: end of 2nd string (5) then end of 1st (3)
    assert data == b"ab\0c\0\x07\x05\x03"


def test_metadata_dict_plain_values_round_trip():
    d = {"version": "1", "ostree.ref-binding": ["a"], "n": 5, "flag": True, "raw": b"\0",
         "keep": Variant("u", 3), "nested": {"k": "v"}}
    assert gvariant.parse_vardict(gvariant.serialize_vardict(d)) == d


def test_commit_round_trip():
    c = Commit(metadata={"version": "9"}, parent="ab" * 32, subject="s", body="b", timestamp=1700000000,
               root_tree="cd" * 32, root_meta="ef" * 32)
    assert Commit.parse(c.serialize()) == c
    assert c.version == "9"


def test_summary_round_trip():
    s = Summary((SummaryRef("b", "11" * 32, 10, {"ostree.commit.timestamp": 5}),
                 SummaryRef("a", "22" * 32, 20, {})), {"ostree.summary.mode": "archive-z2"})
    parsed = Summary.parse(s.serialize())
    assert [r.name for r in parsed.refs] == ["a", "b"]
    assert parsed.lookup("b").size == 10


@pytest.mark.parametrize("sig,data,why", [
    ("u", b"\0\0\0", "expected 4 bytes"),
    ("s", b"abc", "NUL-terminated"),
    ("s", b"a\0b\0", "contains NUL"),
    ("s", b"\xff\0", "UTF-8"),
    ("b", b"\x02", "neither 0 nor 1"),
    ("as", b"a\0\x09", "out of bounds"),
    ("at", b"\0" * 9, "multiple"),
    ("(uuua(ayay))", b"\0" * 11, "out of bounds"),
    ("v", b"abc", "variant"),
    ("v", b"\0\0(", "invalid type"),
    ("(ss)", b"a\0b\0\x07", "out of bounds"),
])
def test_malformed_is_a_format_error(sig, data, why):
    with pytest.raises(FormatError, match=why):
        parse(sig, data)


def test_non_normal_form_is_rejected():
    good = serialize("(yt)", (1, 2))
    bad = bytes([1, 9]) + good[2:]  # non-zero padding
    with pytest.raises(FormatError, match="normal form"):
        parse("(yt)", bad)
    # two-byte offsets where one byte suffices
    with pytest.raises(FormatError):
        parse("as", b"a\0\x02\x00")


def test_truncations_and_random_bytes_never_crash():
    data = Commit(metadata={"version": "1", "x": ["a", "b"]}, parent=None, subject="subject", body="",
                  timestamp=1, root_tree="ab" * 32, root_meta="cd" * 32).serialize()
    for n in range(len(data)):
        with pytest.raises(FormatError):
            Commit.parse(data[:n])
    rng = random.Random(1)
    for _ in range(2000):
        blob = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            blob[rng.randrange(len(blob))] = rng.randrange(256)
        try:
            Commit.parse(bytes(blob))
        except FormatError:
            pass


def test_invalid_type_strings():
    for sig in ("", "a", "(u", "{uu", "{vu}", "z", "uu"):
        with pytest.raises(FormatError):
            gvariant.gtype(sig)


def test_serialize_type_errors_are_format_errors():
    with pytest.raises(FormatError):
        serialize("u", "x")
    with pytest.raises(FormatError):
        serialize("(uu)", (1,))
    with pytest.raises(FormatError):
        serialize("ay", "str")
    with pytest.raises(FormatError):
        gvariant.serialize_vardict({"x": object()})


def test_dirtree_must_be_sorted_and_names_valid():
    good = DirTree(files=(("b", "11" * 32), ("a", "22" * 32)))
    data = good.serialize()
    assert [n for n, _ in DirTree.parse(data).files] == ["a", "b"]
    raw = serialize("(a(say)a(sayay))", ([("b", b"\1" * 32), ("a", b"\2" * 32)], []))
    with pytest.raises(FormatError, match="sorted"):
        DirTree.parse(raw)
    for name in ("", ".", "..", "a/b"):
        with pytest.raises(FormatError):
            DirTree(files=((name, "11" * 32),)).serialize()


def test_fast_serializers_agree_with_the_generic_codec():
    from hybridos.gvariant import bswap32, bswap64
    from hybridos.ostree.objects import DIRMETA_TYPE, DIRTREE_TYPE, FILEHEADER_TYPE, ZLIB_FILEHEADER_TYPE

    rng = random.Random(7)

    def csum():
        return f"{rng.getrandbits(256):064x}"

    def name(i):
        return "".join(rng.choice("abcé☃_.-") for _ in range(rng.choice((1, 5, 40, 200, 300)))) + str(i)

    for _ in range(60):
        xattrs = tuple(sorted((f"user.{name(i)}".encode() + b"\0", bytes(rng.randrange(256) for _ in range(
            rng.choice((0, 3, 300))))) for i in range(rng.choice((0, 1, 3)))))
        files = tuple((name(i), csum()) for i in range(rng.choice((0, 1, 4, 30))))
        dirs = tuple((name(i) + "d", csum(), csum())
                     for i in range(rng.choice((0, 1, 4, 30))))
        tree = DirTree(files, dirs)
        generic = serialize(DIRTREE_TYPE, (
            [(n, bytes.fromhex(c)) for n, c in sorted(files, key=lambda e: e[0].encode())],
            [(n, bytes.fromhex(t), bytes.fromhex(m)) for n, t, m in sorted(dirs, key=lambda e: e[0].encode())]))
        assert tree.serialize() == generic
        assert DirTree.parse(generic) == DirTree(
            tuple(sorted(files, key=lambda e: e[0].encode())), tuple(sorted(dirs, key=lambda e: e[0].encode())))
        uid, gid = rng.getrandbits(32), rng.getrandbits(32)
        meta = DirMeta(uid, gid, 0o40755, xattrs)
        assert meta.serialize() == serialize(DIRMETA_TYPE, (bswap32(uid), bswap32(gid), bswap32(0o40755),
                                                            list(xattrs)))
        assert DirMeta.parse(meta.serialize()) == meta
        target = rng.choice(("", "target/" + name(0)))
        mode = 0o120777 if target else 0o100644
        h = FileHeader(uid, gid, mode, target, xattrs, size=rng.getrandbits(40))
        assert h.serialize() == serialize(FILEHEADER_TYPE, (bswap32(uid), bswap32(gid), bswap32(mode), 0, target,
                                                            list(xattrs)))
        assert h.serialize_zlib() == serialize(ZLIB_FILEHEADER_TYPE, (
            bswap64(h.size), bswap32(uid), bswap32(gid), bswap32(mode), 0, target, list(xattrs)))
        assert FileHeader.parse(h.serialize(), size=h.size) == h
        assert FileHeader.parse_zlib(h.serialize_zlib()) == h


# ---------------------------------------------------------------------------------------------------- issue 15
# Defects the differential fuzzing against GLib found; the expected bytes and verdicts are GLib 2.74's.

def test_nested_maybe_holding_nothing():
    assert gvariant.serialize("mmy", gvariant.Just(None)) == b"\0"
    assert gvariant.serialize("mmy", None) == b""
    assert parse("mmy", b"\0") == gvariant.Just(None)
    assert parse("mmy", b"") is None
    assert parse("mmy", b"\x07\0") == gvariant.Just(7)
    assert parse("mmms", b"\0\0") == gvariant.Just(gvariant.Just(None))


def test_dictionary_with_a_repeated_key_is_kept_and_answers_the_first():
    data = b"a\0\x01\x02" b"a\0\x02\x02" b"\x04\x08"  # {'a': 1, 'a': 2}, normal form
    d = parse("a{sy}", data)
    assert d["a"] == 1 and list(d.entries) == [("a", 1), ("a", 2)]
    assert serialize("a{sy}", d) == data
    both = gvariant.GDict({"version": Variant("s", "1")})
    both.entries = [("version", Variant("s", "1")), ("version", Variant("s", "2"))]
    assert gvariant.parse_vardict(serialize("a{sv}", both)) == {"version": "1"}


@pytest.mark.parametrize("sig,text", [("o", "a"), ("o", "/a/"), ("o", "//"), ("o", "/é"), ("g", "m"),
                                      ("g", "a{vs}"), ("g", "(")])
def test_object_paths_and_signatures_are_validated(sig, text):
    with pytest.raises(FormatError):
        parse(sig, text.encode() + b"\0")
    with pytest.raises(FormatError):
        serialize(sig, text)


def test_commit_with_an_invalid_object_path_in_its_metadata_is_refused():
    good = Commit(metadata={"x": Variant("o", "/ok")}, root_tree="1" * 64, root_meta="2" * 64)
    assert Commit.parse(good.serialize()).metadata["x"] == Variant("o", "/ok")
    bad = good.serialize().replace(b"/ok\0", b"ok/\0")
    with pytest.raises(FormatError):
        Commit.parse(bad)


def test_nesting_limit_is_glibs_128():
    assert gvariant.gtype("a" * 128 + "y").depth == 129
    with pytest.raises(FormatError):
        gvariant.gtype("a" * 129 + "y")

    def chain(n):
        data, sig = b"\x05", "y"
        for _ in range(n):
            data, sig = data + b"\0" + sig.encode(), "v"
        return data

    v = parse("v", chain(127))
    for _ in range(126):
        v = v.value
    assert v == Variant("y", 5)
    with pytest.raises(FormatError):
        parse("v", chain(128))
