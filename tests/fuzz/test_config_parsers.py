"""Property tests for the parsers of outside text and bytes other than GVariant and RPM headers: rpm-md XML
(repomd.xml, metalinks, filelists, compressed metadata), treefiles, .repo files and origins. Generated and
mutated documents give a value or the project's own error (HybridosError); anything else (ValueError,
RecursionError, MemoryError, UnicodeError...) is a failure."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hybridos.arch import Architecture
from hybridos.compose.treefile import load_treefile
from hybridos.errors import HybridosError
from hybridos.packages.repofile import parse_repo_file, set_repo_option
from hybridos.packages.repomd import decompress, parse_filelists, parse_metalink, parse_repomd
from hybridos.sysroot.origin import parse_origin, serialize_origin
from tests.helpers.props import budget

_NUMBERS = st.one_of(st.integers(-5, 10**6).map(str), st.sampled_from(["²", "٣", "9" * 5000, "1e5", " 7 ", ""]))
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


def _mutate(data: st.DataObject, doc: bytes) -> bytes:
    b = bytearray(doc)
    for _ in range(data.draw(st.integers(0, 3))):
        if not b:
            break
        i = data.draw(st.integers(0, len(b) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "dup"]))
        if op == "flip":
            b[i] = data.draw(st.sampled_from(list(b"<>&;'\"=/ \0\xff\xc3x9")))
        elif op == "cut":
            del b[i:i + data.draw(st.integers(1, 8))]
        else:
            b[i:i] = b[i:i + data.draw(st.integers(1, 16))]
    return bytes(b)


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


@st.composite
def repomd_docs(draw):
    enc = draw(st.sampled_from(["UTF-8", "utf-8", "ISO-8859-1", "x-unknown", "utf-16"]))
    records = "".join(
        f'<data type="{t}"><checksum type="{draw(st.sampled_from(["sha256", "sha1", "md4", ""]))}">'
        f'{_xml_escape(draw(_TEXT))}</checksum><location href="{_xml_escape(draw(_TEXT))}"/>'
        f"<size>{_xml_escape(draw(_NUMBERS))}</size><open-size>{_xml_escape(draw(_NUMBERS))}</open-size></data>"
        for t in draw(st.lists(st.sampled_from(["primary", "filelists", "other", "x"]), max_size=3)))
    doc = (f'<?xml version="1.0" encoding="{enc}"?><repomd xmlns="http://linux.duke.edu/metadata/repo">'
           f"<revision>{_xml_escape(draw(_NUMBERS))}</revision>{records}</repomd>")
    return doc.encode("utf-8", "surrogatepass")


def _only_our_errors(fn, *args):
    try:
        return fn(*args)
    except HybridosError as exc:
        assert "\n" not in str(exc)
        return None


@budget(200)
@given(repomd_docs(), st.data())
@example(b'<repomd xmlns="http://linux.duke.edu/metadata/repo"><data type="primary"><checksum>a</checksum>'
         b'<location href="x"/><size>\xc2\xb2</size></data></repomd>', None)
def test_repomd(doc, data):
    if data is not None:
        doc = _mutate(data, doc)
    _only_our_errors(parse_repomd, doc, "repomd.xml")


@budget(150)
@given(st.data())
def test_metalink(data):
    pref = data.draw(_NUMBERS)
    doc = (f'<metalink xmlns="http://www.metalinker.org/"><files><file name="repomd.xml"><verification>'
           f'<hash type="sha256">{_xml_escape(data.draw(_TEXT))}</hash></verification><resources>'
           f'<url protocol="http" preference="{_xml_escape(pref)}">http://m/repodata/repomd.xml</url>'
           "</resources></file></files></metalink>").encode("utf-8", "surrogatepass")
    _only_our_errors(parse_metalink, _mutate(data, doc), "metalink")


@st.composite
def filelists_docs(draw):
    pkgs = []
    for i in range(draw(st.integers(0, 3))):
        q = draw(st.sampled_from(['"', "'"]))
        files = "".join(
            draw(st.sampled_from(["<file>{}</file>", "<file >{}</file>", '<file type="dir">{}</file>',
                                  "<file><![CDATA[{}]]></file>"])).format(
                draw(st.sampled_from(["/usr/bin/a", "/a&amp;b", "/é", "/x&#10;y", "/"])))
            for _ in range(draw(st.integers(0, 3))))
        pkgs.append(f"<package pkgid={q}p{i}{q} name={q}n{q} arch={q}noarch{q}>{files}</package>")
    return ('<?xml version="1.0" encoding="UTF-8"?><filelists xmlns="http://linux.duke.edu/metadata/filelists">'
            + "".join(pkgs) + "</filelists>").encode()


@budget(200)
@given(filelists_docs(), st.data())
@example(b'<!DOCTYPE f [<!ENTITY a "x">]><filelists><package pkgid="p0"><file>&a;</file></package></filelists>',
         None)
def test_filelists(doc, data):
    if data is not None:
        doc = _mutate(data, doc)
    positions = {b"p0": [0], b"p1": [1], b"p2": [2]}
    index = _only_our_errors(parse_filelists, doc, positions, "filelists.xml")
    if index is not None:
        assert all(isinstance(k, bytes) and all(isinstance(p, int) for p in v) for k, v in index.items())


@budget(150)
@given(st.sampled_from([b"\x28\xb5\x2f\xfd", b"\x1f\x8b", b"\xfd7zXZ\x00", b"BZh", b"<", b""]),
       st.binary(max_size=64), st.sampled_from(["x.zst", "x.gz", "x.xz", "x.bz2", "x.xml", "x"]),
       st.one_of(st.none(), st.integers(0, 100)))
def test_decompress(magic, rest, name, open_size):
    _only_our_errors(decompress, magic + rest, name, open_size)


# ---------------------------------------------------------------------------------------------------- treefiles

_KEYS = ["ref", "releasever", "packages", "repos", "include", "add-commit-metadata", "variables", "recommends",
         "conditional-include", "automatic-version-prefix", "check-passwd", "remove-files", "unknown-key"]
_YAML_SCALARS = ["x", "'²'", "2020-01-01", "!!binary aGk=", "!!set {a}", "!!python/name:os.system", "!foo x",
                 "~", "true", "maybe", "1e400", "9" * 5000, "0x1F", "'a\\0b'", '"a\\0b"', "*nope", "&a x", "*a",
                 "[*a, *a]", "{a: *a}", "!!int x", "!!timestamp 2020-99-99", "<<: *a", "'/etc/shadow'", "\"\\x00\""]


@st.composite
def treefile_texts(draw):
    lines = []
    for key in draw(st.lists(st.sampled_from(_KEYS), max_size=5)):
        value = draw(st.one_of(
            st.sampled_from(_YAML_SCALARS),
            st.lists(st.sampled_from(_YAML_SCALARS), max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
            st.integers(1, 40).map(lambda n: "[" * n + "]" * n),
            st.sampled_from(["{if: 'releasever > 3', include: {}}", "[{if: 'x == 1', include: a.yaml}]"])))
        lines.append(f"{key}: {value}")
    if draw(st.booleans()):
        lines.insert(0, "anchor: &a [x, x, x]")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "a.yaml").write_text("packages: [a]\n")
        yield Path(d)


@budget(300)
@given(treefile_texts())
@example("ref: x\ninclude: /etc/shadow\n")
def test_treefiles(workdir, text):
    path = workdir / "tf.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _only_our_errors(load_treefile, path, Architecture.parse("x86_64"))


@budget(200)
@given(st.binary(max_size=200))
def test_treefile_bytes(workdir, raw):
    for name in ("tf.yaml", "tf.json"):
        (workdir / name).write_bytes(raw)
        _only_our_errors(load_treefile, workdir / name, Architecture.parse("x86_64"))


# ---------------------------------------------------------------------------------------------------- .repo, origins

_REPO_LINES = ["[r]", "[ r ]", "[bad id!]", "baseurl=http://x/", "baseurl=$releasever/x", "priority=",
               "metadata_expire=", "enabled=", "gpgcheck=", "name=", "  continued", "# c", "=", "x"]


@budget(300)
@given(st.lists(st.tuples(st.sampled_from(_REPO_LINES), st.one_of(_NUMBERS, _TEXT)), max_size=8))
def test_repo_files(lines):
    text = "\n".join(a + b if a.endswith("=") else a for a, b in lines)
    _only_our_errors(parse_repo_file, text, "t.repo", {"releasever": "²"})


@budget(300)
@given(st.lists(st.tuples(st.sampled_from(_REPO_LINES), st.one_of(_NUMBERS, _TEXT)), max_size=8),
       st.sampled_from(["0", "1"]))
def test_switching_a_repo_changes_only_enabled(lines, value):
    """ModifyYumRepo's edit: on any file we read, ``enabled`` of every section can be set and the file still
    reads the same except for that one value."""
    text = "\n".join(a + b if a.endswith("=") else a for a, b in lines)
    before = _only_our_errors(parse_repo_file, text, "t.repo")
    if not before:
        return
    for repo in before:
        edited = set_repo_option(text, repo.id, "enabled", value, "t.repo")
        after = {r.id: r for r in parse_repo_file(edited, "t.repo")}
        assert after[repo.id].enabled == (value == "1")
        for other in before:
            mine = after[other.id]
            if other.id == repo.id:
                assert {k: v for k, v in mine.options.items() if k != "enabled"} == \
                       {k: v for k, v in other.options.items() if k != "enabled"}
            else:
                assert mine.options == other.options


_ORIGIN_LINES = ["[origin]", "refspec=", "baserefspec=", "container-image-reference=", "[packages]", "requested=",
                 "requested-local=", "[overrides]", "remove=", "[rpmostree]", "regenerate-initramfs=",
                 "initramfs-args=", "[libostree-transient]", "pinned=", "x", "a=b\\", "[", "\\x00"]


@budget(300)
@given(st.lists(st.tuples(st.sampled_from(_ORIGIN_LINES), _TEXT), max_size=8), st.binary(max_size=8))
def test_origins(lines, junk):
    data = "\n".join(a + b if a.endswith("=") else a for a, b in lines).encode("utf-8", "surrogatepass") + junk
    origin = _only_our_errors(parse_origin, data)
    if origin is not None:   # what we read we can write back and read the same
        assert parse_origin(serialize_origin(origin)) == origin
