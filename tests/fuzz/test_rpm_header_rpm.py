"""RPM headers against rpm's own reader (python3-rpm's headerImport): generated headers with odd types, counts,
duplicate tags and orders, and mutated real headers. Where rpm refuses a package header we refuse it; where both
read it, NAME, EVR, arch, provides, requires, file names and modes agree; nothing raises anything but
FormatError. Cpio payloads: any bytes give members or a FormatError."""

from __future__ import annotations

import io
import struct

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from hybridos.errors import FormatError
from hybridos.packages import header as H
from hybridos.packages.payload import iter_cpio
from tests.helpers.oracles import Oracle, require_system_module
from tests.helpers.props import budget
from tests.helpers.rpmhdr import header_blob, minimal_entries, s


@pytest.fixture(scope="module")
def rpm_oracle():
    require_system_module("rpm")
    o = Oracle("rpm_worker.py")
    yield o
    o.close()


# tags worth varying and the type rpm declares for each
TAGS = {H.Tag.NAME: H.STRING, H.Tag.VERSION: H.STRING, H.Tag.RELEASE: H.STRING, H.Tag.ARCH: H.STRING,
        H.Tag.EPOCH: H.INT32, H.Tag.SUMMARY: H.I18NSTRING, H.Tag.PROVIDENAME: H.STRING_ARRAY,
        H.Tag.PROVIDEFLAGS: H.INT32, H.Tag.PROVIDEVERSION: H.STRING_ARRAY, H.Tag.REQUIRENAME: H.STRING_ARRAY,
        H.Tag.REQUIREFLAGS: H.INT32, H.Tag.REQUIREVERSION: H.STRING_ARRAY, H.Tag.BASENAMES: H.STRING_ARRAY,
        H.Tag.DIRNAMES: H.STRING_ARRAY, H.Tag.DIRINDEXES: H.INT32, H.Tag.FILEMODES: H.INT16,
        H.Tag.SIZE: H.INT32, 4999: H.INT32, 1196: H.STRING}
_WORDS = st.sampled_from(["foo", "bar", "1.0", "x86_64", "/usr/", "/", "a", "", "é"])


@st.composite
def entry(draw):
    tag = draw(st.sampled_from(sorted(TAGS)))
    typ = draw(st.one_of(st.just(TAGS[tag]), st.integers(0, 10)))
    if typ in (H.STRING, H.STRING_ARRAY, H.I18NSTRING):
        words = draw(st.lists(_WORDS, min_size=1, max_size=3))
        if typ == H.STRING:
            words = words[:1]
        count = len(words) if draw(st.integers(0, 9)) else draw(st.integers(0, 4))
        return tag, typ, count, b"".join(s(w) for w in words)
    size = {H.CHAR: 1, H.INT8: 1, H.INT16: 2, H.INT32: 4, H.INT64: 8}.get(typ, 1)
    count = draw(st.integers(0, 3))
    if typ in (H.INT16, H.INT32, H.INT64) and draw(st.booleans()):
        fmt = {H.INT16: ">H", H.INT32: ">I", H.INT64: ">Q"}[typ]
        value = b"".join(struct.pack(fmt, draw(st.sampled_from([0, 1, 0o100644, 0o40755, 2**16 - 1])))
                         for _ in range(count))
    else:
        value = draw(st.binary(min_size=size * count, max_size=size * count))
    return tag, typ, count, value


@st.composite
def headers(draw):
    base = minimal_entries()
    entries = draw(st.lists(entry(), max_size=8))
    ents = draw(st.permutations(base + entries)) if draw(st.booleans()) else base + entries
    return header_blob(list(ents), region=draw(st.integers(0, 5)) > 0)


def _compare(rpm_oracle, blob: bytes) -> None:
    theirs = rpm_oracle.ask({"op": "hdr", "blob": blob.hex()}, crash_ok=True)
    if theirs is None:
        assume(False)
    try:
        raw, _ = H.parse_raw_header(blob, magic=False)
    except FormatError:
        raw = None
    region = len(blob) >= 24 and struct.unpack_from(">I", blob, 8)[0] == 63
    if region:   # a package header: the same verdict as rpm
        assert (raw is not None) == theirs["ok"], f"rpm: {theirs}, ours: {'accepts' if raw else 'refuses'}"
    if raw is None or not theirs["ok"]:
        return
    try:
        h = H.header_from_raw(raw)
    except FormatError:
        return
    # in a header without a region rpm reads a tag of the wrong type as whatever it is (VERSION = 0) or not at
    # all; we read it as missing: only values that rpm reads with their own type are compared
    def same(ours, key, kind, default):
        value = theirs[key]
        if isinstance(value, list) and not all(isinstance(x, str) for x in value):
            return
        if value is None or isinstance(value, kind):
            assert ours == (default if value is None else value), key

    same(h.name, "name", str, "")
    same(h.version, "version", str, "")
    same(h.release, "release", str, "")
    same(h.epoch, "epoch", int, 0)
    same([d.name for d in h.provides], "provides", list, [])
    same([d.name for d in h.requires], "requires", list, [])
    if H.Tag.BASENAMES in raw:
        same(list(h.files), "files", list, [])
        if theirs["modes"] and isinstance(theirs["modes"], list):
            assert [e.mode for e in h.file_entries] == [m & 0xFFFF for m in theirs["modes"]]


@budget(300)
@given(headers())
@example(header_blob([(1000, H.INT32, 1, struct.pack(">I", 12345))] + minimal_entries()[1:]))
@example(header_blob(minimal_entries() + [(1047, H.I18NSTRING, 2, s("a") + s("b"))]))
@example(header_blob(minimal_entries() + [(1047, H.STRING_ARRAY, 1, s(n)) for n in "abc"]))
@example(header_blob(minimal_entries() + [(1030, H.INT64, 1, bytes(8))]))
def test_generated_headers_match_rpm(rpm_oracle, blob):
    _compare(rpm_oracle, blob)


@pytest.fixture(scope="module")
def real_header(tmp_path_factory):
    from tests.helpers.rpms import File, Pkg, build_rpm
    d = tmp_path_factory.mktemp("hdr")
    p = build_rpm(Pkg("fuzzme", provides=("virt = 1",), requires=("dep >= 2",),
                      files=(File("/usr/bin/fuzzme", b"x"), File("/etc/fuzzme.conf", b"y", config=True))), d)
    return H.read_rpm(p).header.blob


@budget(300)
@given(st.data())
def test_mutated_real_headers_match_rpm(rpm_oracle, real_header, data):
    blob = bytearray(real_header)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(blob) - 1))
        if data.draw(st.booleans()) and i < 8 + 16 * struct.unpack_from(">I", blob, 0)[0]:
            i -= i % 4   # a whole index field
            blob[i:i + 4] = struct.pack(">I", data.draw(st.sampled_from([0, 1, 4, 6, 8, 9, 1000, 1047, 0xFFFFFFFF])))
        else:
            blob[i] = data.draw(st.integers(0, 255))
    _compare(rpm_oracle, bytes(blob))


def _cpio_member(name: bytes, body: bytes) -> bytes:
    fields = [1, 0o100644, 0, 0, 1, 0, len(body), 0, 0, 0, 0, len(name) + 1, 0]
    out = b"070701" + b"".join(b"%08x" % f for f in fields) + name + b"\0"
    out += bytes((-len(out)) % 4) + body
    return out + bytes((-len(out)) % 4)


@budget(300)
@given(st.data())
def test_cpio_payloads_give_members_or_a_format_error(data):
    archive = bytearray(_cpio_member(b"./a", b"hello") + _cpio_member(b"./b", b"") + _cpio_member(b"TRAILER!!!", b""))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(archive) - 1))
        archive[i] = data.draw(st.sampled_from(list(b"0123456789abcdefX-+ x\0")))
    for source in (bytes(archive), io.BytesIO(bytes(archive))):
        try:
            for member, reader in iter_cpio(source, size_of=lambda i: 0 if i < 2 else 1 / 0):
                assert member.size >= 0 and member.index >= -1
                reader.read(-1)
        except FormatError:
            pass
        except ZeroDivisionError:
            assume(False)
