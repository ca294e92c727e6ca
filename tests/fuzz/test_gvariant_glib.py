"""The GVariant codec against GLib's own (python3-gi): same bytes when serializing, the same verdict (normal form
or not) and the same values when parsing, for generated types, values and mutated bytes."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hybridos import gvariant
from hybridos.errors import FormatError
from hybridos.gvariant import GDict, Just
from tests.helpers.oracles import Oracle, gv_from_tree, gv_to_tree, require_system_module
from tests.helpers.props import budget

BASIC = "ybnqiuxthdsog"


@pytest.fixture(scope="module")
def glib():
    require_system_module("gi")
    o = Oracle("glib_worker.py")
    yield o
    o.close()


def types(max_leaves: int = 6) -> st.SearchStrategy[str]:
    def extend(inner):
        return st.one_of(
            inner.map(lambda t: "a" + t),
            inner.map(lambda t: "m" + t),
            st.lists(inner, max_size=4).map(lambda ts: "(" + "".join(ts) + ")"),
            st.tuples(st.sampled_from(BASIC), inner).map(lambda kv: "a{" + kv[0] + kv[1] + "}"),
        )
    return st.recursive(st.sampled_from(BASIC + "v"), extend, max_leaves=max_leaves)


_INT_RANGES = {"y": (0, 255), "n": (-(2**15), 2**15 - 1), "q": (0, 2**16 - 1), "i": (-(2**31), 2**31 - 1),
               "h": (-(2**31), 2**31 - 1), "u": (0, 2**32 - 1), "x": (-(2**63), 2**63 - 1), "t": (0, 2**64 - 1)}
_PATH_PART = st.text(alphabet="abcXYZ019_", min_size=1, max_size=4)


def values(t: gvariant.GType, depth: int = 0) -> st.SearchStrategy:
    k = t.kind
    if k in _INT_RANGES:
        return st.integers(*_INT_RANGES[k])
    if k == "b":
        return st.booleans()
    if k == "d":
        return st.floats(allow_nan=False)
    if k == "s":
        return st.text(alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=8)
    if k == "o":
        return st.lists(_PATH_PART, max_size=3).map(lambda ps: "/" + "/".join(ps))
    if k == "g":
        return st.lists(st.sampled_from(["y", "s", "as", "a{sv}", "(ii)", "v"]), max_size=3).map("".join)
    if k == "v":
        if depth > 3:
            return st.just(gvariant.Variant("y", 1))
        return st.sampled_from(["y", "s", "as", "a{sv}", "(ty)", "mmy", "v", "o"]).flatmap(
            lambda sig: values(gvariant.gtype(sig), depth + 1).map(lambda v: gvariant.Variant(sig, v)))
    if k == "m":
        child = t.children[0]
        just = values(child, depth + 1)
        if child.kind == "m":
            just = just.map(Just)
        return st.one_of(st.none(), just)
    if k == "a":
        child = t.children[0]
        if child.signature == "y":
            return st.binary(max_size=8)
        items = st.lists(values(child, depth + 1), max_size=3)
        if child.kind == "{":
            return items.map(_as_dict)
        return items
    return st.tuples(*(values(c, depth + 1) for c in t.children))


def _as_dict(items):
    d = {}
    for key, val in items:
        d.setdefault(key, val)
    if len(d) == len(items):
        return d
    g = GDict(d)
    g.entries = [tuple(e) for e in items]
    return g


typed_values = types().flatmap(lambda sig: st.tuples(st.just(sig), values(gvariant.gtype(sig))))


def _ours(sig: str, data: bytes):
    try:
        return True, gvariant.parse(sig, data)
    except FormatError:
        return False, None


def _compare_parse(glib, sig: str, data: bytes) -> None:
    ok, value = _ours(sig, data)
    ans = glib.ask({"op": "parse", "type": sig, "data": data.hex()})
    assert ok == ans["normal"], f"{sig} {data.hex()}: ours {'accepts' if ok else 'refuses'}, GLib disagrees"
    if ok:
        assert gv_to_tree(gvariant.gtype(sig), value) == ans["value"]


@budget(150)
@given(typed_values)
@example(("mmy", Just(None)))
@example(("a{sy}", _as_dict([("a", 1), ("a", 2)])))
@example(("(og)", ("/", "")))
def test_serialize_matches_glib(glib, case):
    sig, value = case
    ours = gvariant.serialize(sig, value)
    tree = gv_to_tree(gvariant.gtype(sig), value)
    assert ours.hex() == glib.ask({"op": "serialize", "type": sig, "value": tree})["data"]
    # and what GLib serializes, we read back to the same value
    assert gv_to_tree(gvariant.gtype(sig), gvariant.parse(sig, ours)) == tree
    assert gvariant.serialize(sig, gv_from_tree(gvariant.gtype(sig), tree)) == ours


@st.composite
def mutated(draw):
    sig, value = draw(typed_values)
    data = bytearray(gvariant.serialize(sig, value))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        elif op == "cut" and data:
            i = draw(st.integers(0, len(data) - 1))
            del data[i:i + draw(st.integers(1, 4))]
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=3))
    return sig, bytes(data)


@budget(300)
@given(mutated())
@example(("mmy", b"\0"))
@example(("a{sy}", b"a\0\x01\x02a\0\x02\x02\x04\x08"))
@example(("o", b"a\0"))
@example(("g", b"m\0"))
@example(("g", b"a{vs}\0"))
@example(("v", b"\0\0" + b"(" * 127 + b")" * 127))
@example(("v", b"\0\0" + b"(" * 128 + b")" * 128))
@example(("v", b"\0" + b"a" * 128 + b"y"))
def test_parse_matches_glib(glib, case):
    sig, data = case
    _compare_parse(glib, sig, data)


@budget(200)
@given(st.text(alphabet="ybsoguvam(){}*?r", max_size=12), st.binary(max_size=6))
def test_variant_type_strings_match_glib(glib, sig, body):
    """A ``v`` carries its type string in the data: we accept exactly the ones GLib does."""
    _compare_parse(glib, "v", body + b"\0" + sig.encode())


def test_variant_nesting_limit_matches_glib(glib):
    for n in (126, 127, 128, 129):
        data = b"\x05"
        sig = "y"
        for _ in range(n):
            data += b"\0" + sig.encode()
            sig = "v"
        _compare_parse(glib, "v", data)
    for k in (126, 127, 128, 129):
        _compare_parse(glib, "v", b"\0" + b"a" * k + b"y")


@budget(200)
@given(st.sampled_from(["d", "(yd)", "ad"]), st.binary(min_size=8, max_size=17))
def test_doubles_keep_their_bits(glib, sig, data):
    _compare_parse(glib, sig, data)
