"""rpm-md that differential fuzzing (issue 15) found mishandled: odd numbers and encodings, multi-frame zstd,
filelists spellings the old regex missed (and its quadratic scan), and decompression bombs, the last one served
by the real test HTTP server."""

from __future__ import annotations

import gzip
import hashlib
import re

import pytest
import zstandard

from hybridos.errors import FormatError
from hybridos.packages.repomd import decompress, load_repo, parse_filelists, parse_metalink, parse_repomd
from tests.helpers.httpserver import serve
from tests.helpers.rpms import File, Pkg, make_repo

_RECORD = ('<data type="primary"><checksum type="sha256">ab</checksum><location href="p.xml.zst"/>'
           '<size>{size}</size><open-size>{size}</open-size></data>')


def _repomd(size: str, encoding: str = "UTF-8") -> bytes:
    return (f'<?xml version="1.0" encoding="{encoding}"?>'
            f'<repomd xmlns="http://linux.duke.edu/metadata/repo"><revision>1</revision>'
            + _RECORD.format(size=size) + "</repomd>").encode()


@pytest.mark.parametrize("size", ["²", "1²", "٣", "9" * 5000, "-1", " 12 x"])
def test_odd_sizes_are_no_size(size):
    rec = parse_repomd(_repomd(size)).records["primary"]
    assert rec.size is None and rec.open_size is None


def test_sizes_are_read():
    rec = parse_repomd(_repomd("1234")).records["primary"]
    assert rec.size == 1234 and rec.open_size == 1234


@pytest.mark.parametrize("encoding", ["x-unknown-42", "utf-16"])
def test_unknown_xml_encodings_are_format_errors(encoding):
    with pytest.raises(FormatError, match="corrupt repomd.xml"):
        parse_repomd(_repomd("1", encoding))
    metalink = (f'<?xml version="1.0" encoding="{encoding}"?><metalink/>').encode()
    with pytest.raises(FormatError, match="corrupt metalink"):
        parse_metalink(metalink)


def test_metalink_preference_with_superscript_digits():
    doc = ('<metalink xmlns="http://www.metalinker.org/"><files><file name="repomd.xml"><resources>'
           '<url protocol="http" preference="²">http://m/repodata/repomd.xml</url>'
           '<url protocol="http" preference="' + "9" * 5000 + '">http://n/repodata/repomd.xml</url>'
           '</resources></file></files></metalink>').encode()
    assert parse_metalink(doc).baseurls == ("http://m/", "http://n/")


def test_multi_frame_zstd_is_read_whole():
    c = zstandard.ZstdCompressor()
    data = c.compress(b"<a>first frame ") + c.compress(b"second frame</a>")
    assert decompress(data, "x.xml.zst") == b"<a>first frame second frame</a>"


def _fl(body: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<filelists xmlns="http://linux.duke.edu/metadata/filelists" '
            'packages="1">' + body + "</filelists>").encode()


def test_filelists_spellings_the_regex_missed():
    xml = _fl("<package pkgid='aa' name='a' arch='noarch'><version epoch='0' ver='1' rel='1'/>"
              "<file >/usr/bin/spaced</file>"
              "<file><![CDATA[/usr/bin/cdata]]></file>"
              "<file type='dir'>/usr/share/dir</file>"
              "<file>/usr/bin/&#x61;mp&amp;</file>"
              "</package>")
    index = parse_filelists(xml, {b"aa": [0]}, "f.xml")
    assert set(index) == {b"/usr/bin/spaced", b"/usr/bin/cdata", b"/usr/share/dir", b"/usr/bin/amp&"}


def test_filelists_with_entity_declarations_is_refused():
    xml = (b'<?xml version="1.0"?><!DOCTYPE f [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
           b'<filelists><package pkgid="aa"><file>/&b;</file></package></filelists>')
    with pytest.raises(FormatError, match="declares XML entities"):
        parse_filelists(xml, {b"aa": [0]}, "f.xml")


def test_filelists_that_made_the_regex_quadratic_is_a_format_error():
    """180 kB of unclosed '<package ' took the regex 20 s and gave an empty index."""
    with pytest.raises(FormatError, match="corrupt filelists"):
        parse_filelists(b"<filelists>" + b"<package " * 20000, {}, "f.xml")


def test_decompression_stops_at_open_size():
    bomb = zstandard.ZstdCompressor().compress(bytes(64 << 20))
    with pytest.raises(FormatError, match="open-size"):
        decompress(bomb, "primary.xml.zst", open_size=4096)
    with pytest.raises(FormatError, match="not its <open-size>"):
        decompress(zstandard.ZstdCompressor().compress(b"<a/>"), "primary.xml.zst", open_size=5)


def test_decompression_without_open_size_has_a_ratio_cap():
    bomb = gzip.compress(bytes(80 << 20), compresslevel=9)   # ~80 KB
    with pytest.raises(FormatError, match="decompression bomb"):
        decompress(bomb, "primary.xml.gz")


def test_primary_bomb_over_http_is_refused(tmp_path):
    """A repository serving a gzip bomb as primary.xml.gz (checksum and sizes consistent with it)."""
    repo = make_repo(tmp_path / "repo", [Pkg("a", files=(File("/usr/bin/a", b"a"),))], compression="gz")
    repomd_path = repo.repodata / "repomd.xml"
    text = repomd_path.read_text()
    href = re.search(r'<location href="(repodata/[^"]*primary[^"]*)"', text).group(1)
    bomb = gzip.compress(b"<metadata>" + b" " * (300 << 20), compresslevel=9)
    (repo.path / href).write_bytes(bomb)
    block = re.search(r'<data type="primary">.*?</data>', text, re.S).group(0)
    new = re.sub(r'(<checksum type="sha256">)[0-9a-f]+', lambda m: m.group(1) + hashlib.sha256(bomb).hexdigest(),
                 block)
    new = re.sub(r"<size>\d+</size>", f"<size>{len(bomb)}</size>", new)
    new = re.sub(r"<open-size>\d+</open-size>", "<open-size>100000</open-size>", new)
    repomd_path.write_text(text.replace(block, new))
    with serve(repo.path) as srv, pytest.raises(FormatError, match="<open-size> of 100000 bytes"):
        load_repo(srv.url, tmp_path / "cache")


@pytest.mark.parametrize("line", ["priority=²", "priority=-²", "priority=" + "9" * 5000, "metadata_expire=²",
                                  "metadata_expire=" + "9" * 5000, "metadata_expire=٣"])
def test_repo_file_numbers_are_ascii_digits(line):
    from hybridos.errors import ConfigError
    from hybridos.packages.repofile import parse_repo_file

    key = line.split("=")[0]
    with pytest.raises(ConfigError, match=f"t.repo:3: {key}=") as info:
        parse_repo_file(f"[r]\nbaseurl=http://x/\n{line}\n", "t.repo")
    assert "\n" not in str(info.value) and len(str(info.value)) < 200


def test_libsolv_text_with_newlines_is_one_line(tmp_path):
    """A dependency name from repository metadata holding a newline used to split the error over two lines."""
    from hybridos.arch import Architecture
    from hybridos.packages.model import SolveRequest
    from hybridos.packages.solver import UnsolvableError, solve
    from tests.helpers.rpms import write_synthetic_repo

    write_synthetic_repo(tmp_path / "r", [Pkg("app", requires=("missing\ninjected line",))])
    repo = load_repo((tmp_path / "r").as_uri(), tmp_path / "cache")
    with pytest.raises(UnsolvableError) as info:
        solve(SolveRequest(arch=Architecture.parse("x86_64"), repos=(repo,), install=("app",)))
    assert "\n" not in str(info.value) and "missing injected line" in str(info.value)
    assert "\n" not in (info.value.hint or "")


def _served_repo(tmp_path, *, declared_size: bool):
    """A repository whose primary (and filelists) a lying server sends without end; repomd.xml declares their
    ``<size>`` or (``declared_size=False``) not."""
    repo = make_repo(tmp_path / "repo", [Pkg("a", files=(File("/usr/bin/a", b"a"),))], compression="gz")
    repomd_path = repo.repodata / "repomd.xml"
    text = repomd_path.read_text()
    if not declared_size:
        text = re.sub(r"<size>\d+</size>", "", text)
        repomd_path.write_text(text)
    hrefs = re.findall(r'<location href="(repodata/[^"]*(?:primary|filelists)[^"]*)"', text)
    return repo, ["/" + h for h in hrefs]


@pytest.mark.parametrize("declared_size", [True, False], ids=["size-declared", "no-size-max_metadata_size"])
def test_an_endless_primary_is_cut_off_while_it_downloads(tmp_path, declared_size):
    """The body is refused as soon as it passes the declared ``<size>`` (a lie) or, without one, the
    ``max_metadata_size=`` of the .repo file: the rest never reaches memory or disk (it was read whole and only
    then checked against its checksum)."""
    from hybridos.errors import FetchError
    from hybridos.packages.repofile import parse_repo_file

    repo, paths = _served_repo(tmp_path, declared_size=declared_size)
    with serve(repo.path) as srv:
        for p in paths:
            srv.faults.endless[p] = b"<metadata>"
        [config] = parse_repo_file(f"[r]\nbaseurl={srv.url}\nmax_metadata_size=4M\n", "t.repo")
        with pytest.raises(FetchError, match=r"larger than the \d+ bytes allowed"):
            load_repo(config, tmp_path / "cache")
        limit = 1 << 20 if declared_size else 4 << 20
        sent = max(srv.faults.endless_sent.get(p, 0) for p in paths)
        assert 0 < sent < limit + (16 << 20), sent   # what socket buffers held beyond the limit, no more
    assert not any((tmp_path / "cache").rglob("*.solv"))


def test_declared_sizes_over_the_limit_are_refused_before_downloading(tmp_path):
    from hybridos.errors import FetchError
    from hybridos.packages.repofile import parse_repo_file

    repo, paths = _served_repo(tmp_path, declared_size=True)
    repomd_path = repo.repodata / "repomd.xml"
    repomd_path.write_text(re.sub(r"<size>\d+</size>", "<size>99999999999</size>", repomd_path.read_text()))
    with serve(repo.path) as srv:
        [config] = parse_repo_file(f"[r]\nbaseurl={srv.url}\n", "t.repo")
        with pytest.raises(FetchError, match="declares 99999999999 bytes, over the limit of 536870912"):
            load_repo(config, tmp_path / "cache")
        assert not [r for r in srv.requests if r[0] in paths]
    # a lying <open-size> cannot raise the decompression limit either
    with pytest.raises(FormatError, match="<open-size> of 5000000000 bytes is over the limit"):
        decompress(gzip.compress(b"<metadata/>"), "p.xml.gz", 5_000_000_000)


@pytest.mark.parametrize("value", ["0", "-1", "1T", "²", "9" * 40])
def test_max_metadata_size_takes_a_size(value):
    from hybridos.errors import ConfigError
    from hybridos.packages.repofile import parse_repo_file

    with pytest.raises(ConfigError, match="t.repo:3: max_metadata_size=.* is not a size in bytes"):
        parse_repo_file(f"[r]\nbaseurl=http://x/\nmax_metadata_size={value}\n", "t.repo")
    [config] = parse_repo_file("[r]\nbaseurl=http://x/\nmax_metadata_size=512M\n", "t.repo")
    assert config.max_metadata_size == 512 << 20


def test_an_endless_package_stops_at_its_declared_size(tmp_path):
    """An RPM body past the size primary.xml declares for it is refused as it arrives, and its partial file
    removed: a lying server cannot fill the package cache."""
    from hybridos.arch import Architecture
    from hybridos.errors import CorruptionError
    from hybridos.packages.download import download_packages
    from hybridos.packages.model import SolveRequest
    from hybridos.packages.solver import solve

    repo = make_repo(tmp_path / "repo", [Pkg("a", files=(File("/usr/bin/a", b"a" * 5000),))])
    size = repo.rpms["a"].stat().st_size
    with serve(repo.path) as srv:
        loaded = load_repo(srv.url, tmp_path / "md")
        [item] = solve(SolveRequest(arch=Architecture.parse("x86_64"), repos=(loaded,), install=("a",))).installs
        assert item.size == size
        path = "/" + repo.rpms["a"].relative_to(repo.path).as_posix()
        srv.faults.endless[path] = repo.rpms["a"].read_bytes()
        with pytest.raises(CorruptionError, match=f"larger than the {size} bytes its metadata declares"):
            download_packages([item], tmp_path / "cache")
        assert srv.faults.endless_sent[path] < size + (16 << 20)
    assert list((tmp_path / "cache").iterdir()) == []
