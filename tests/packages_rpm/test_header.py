"""Header parsing checked against Debian's rpm reading the same bytes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import rpm_rs

from hybridos.errors import FormatError
from hybridos.packages.header import (
    Dependency,
    Sense,
    Tag,
    header_from_raw,
    parse_header,
    parse_raw_header,
    parse_rich,
    read_rpm,
    read_rpm_header,
    rpmvercmp,
)
from tests.conftest import require_tool
from tests.helpers.rpms import File, Pkg, build_rpm, build_with_rpmbuild

TESTDATA = Path("/usr/share/gocode/src/github.com/knqyf263/go-rpmdb/pkg/testdata")

RICH = Pkg(
    "richpkg", "2.5", release="3.fc40", epoch=2,
    requires=("libfoo >= 1.2-1", "(bar or baz)", "(pkgconfig(glib-2.0) >= 2.60 with gtk3 < 4)", "/usr/bin/sh"),
    provides=("virtual-thing = 7", "libx.so.1()(64bit)"), conflicts=("oldthing < 2",), obsoletes=("ancient",),
    recommends=("nice-to-have",), supplements=("(richpkg and langpacks-de)",),
    files=(
        File("/usr/bin/tool", b"#!/bin/sh\n", mode=0o4755, user="alice", group="staff"),
        File("/usr/bin/pinger", b"x", mode=0o755, caps="cap_net_raw=ep"),
        File("/usr/lib/a", b"same", hardlink="L"), File("/usr/lib/b", b"same", hardlink="L"),
        File("/usr/bin/t2", symlink="tool"), File("/etc/tool.conf", b"k=v\n", noreplace=True),
        File("/var/lib/tool", dir=True, mode=0o750), File("/var/log/tool.log", ghost=True),
    ),
    pre="echo pre", post="echo post $1", posttrans="echo done", preun="true", postun="true",
)


def rpm_qp(rpm: Path, fmt: str) -> list[str]:
    require_tool("rpm")
    out = subprocess.run(["rpm", "-qp", "--qf", fmt, str(rpm)], capture_output=True, text=True, check=True).stdout
    return out.splitlines()


@pytest.fixture(scope="module")
def rich_rpm(tmp_path_factory) -> Path:
    return build_rpm(RICH, tmp_path_factory.mktemp("rich"))


def test_tag_numbers_agree_with_rpm_rs():
    ours = {k: v for k, v in vars(Tag).items() if k.isupper()}
    theirs = {t.name: int(t) for t in rpm_rs.Tag}
    # rpm-rs 0.30 numbers SIGSIZE 256; rpm 4.18 stores it as 257 (RPMTAG_SIG_BASE + 1) in installed headers
    common = set(ours) & set(theirs) - {"SIGSIZE"}
    assert len(common) > 100
    assert {k: ours[k] for k in common} == {k: theirs[k] for k in common}


def test_identity_and_dependencies_match_rpm(rich_rpm):
    h = read_rpm_header(rich_rpm)
    assert str(h.nevra) == rpm_qp(rich_rpm, "%{NAME}-%{EPOCH}:%{VERSION}-%{RELEASE}.%{ARCH}")[0]
    assert (h.name, h.epoch, h.version, h.release, h.arch) == ("richpkg", 2, "2.5", "3.fc40", "x86_64")
    for attr, tag in (("requires", "REQUIRE"), ("provides", "PROVIDE"), ("conflicts", "CONFLICT"),
                      ("obsoletes", "OBSOLETE"), ("recommends", "RECOMMEND"), ("supplements", "SUPPLEMENT")):
        expected = [tuple(line.split("\t")) for line in
                    rpm_qp(rich_rpm, f"[%{{{tag}NAME}}\t%{{{tag}FLAGS}}\t%{{{tag}VERSION}}\n]")]
        got = [(d.name, str(d.flags), d.evr) for d in getattr(h, attr)]
        assert got == expected, attr
    assert any(d.is_rich for d in h.requires)
    assert Dependency("libfoo", Sense.GREATER | Sense.EQUAL, "1.2-1") in h.requires


def test_file_list_matches_rpm(rich_rpm):
    h = read_rpm_header(rich_rpm)
    fmt = ("[%{FILENAMES}\t%{FILEMODES}\t%{FILEUSERNAME}\t%{FILEGROUPNAME}\t%{FILEFLAGS}\t%{FILEDIGESTS}\t"
           "%{FILELINKTOS}\t%{FILECAPS}\t%{FILEINODES}\t%{FILESIZES}\t%{FILEMTIMES}\n]")
    expected = [tuple(line.split("\t")) for line in rpm_qp(rich_rpm, fmt)]
    got = [(e.path, str(e.mode), e.user, e.group, str(e.flags), e.digest, e.linkto, e.caps, str(e.inode),
            str(e.size), str(e.mtime)) for e in h.file_entries]
    assert got == expected
    assert h.files == tuple(r[0] for r in expected)
    by_path = {e.path: e for e in h.file_entries}
    assert by_path["/var/log/tool.log"].is_ghost and by_path["/etc/tool.conf"].is_config
    assert by_path["/usr/lib/a"].inode == by_path["/usr/lib/b"].inode


def test_scriptlets_match_rpm(rich_rpm):
    h = read_rpm_header(rich_rpm)
    assert [s.kind for s in h.scriptlets] == ["pre", "post", "preun", "postun", "posttrans"]
    assert h.scriptlet("post").body == rpm_qp(rich_rpm, "%{POSTIN}")[0] == "echo post $1"
    assert h.scriptlet("post").interpreter == ("/bin/sh",)


def test_interpreters_and_triggers_from_rpmbuild(tmp_path, rpmbuild_dir):
    spec = """\
        Name: trig
        Version: 1
        Release: 1
        Summary: t
        License: MIT
        BuildArch: noarch
        %description
        t
        %install
        mkdir -p %{buildroot}/usr/share/trig
        echo x > %{buildroot}/usr/share/trig/x
        %files
        /usr/share/trig/x
        %post -p /bin/awk
        BEGIN { print "awk" }
        %postun -p /sbin/ldconfig
        %pretrans -p <lua>
        print("lua")
        %triggerin -- busybox >= 1.0
        echo in $1 $2
        %triggerun -- other
        echo un
        %filetriggerin -- /usr/lib/mods
        cat
        %transfiletriggerin -P 5000 -- /usr/share/icons
        echo icons
        """
    (rpm,) = build_with_rpmbuild(spec, tmp_path, rpmbuild_dir)
    h = read_rpm_header(rpm)
    assert h.scriptlet("post").interpreter == ("/bin/awk",)
    assert h.scriptlet("post").body.strip() == 'BEGIN { print "awk" }'
    assert h.scriptlet("postun").interpreter == ("/sbin/ldconfig",) and h.scriptlet("postun").body == ""
    assert h.scriptlet("pretrans").interpreter == ("<lua>",)
    kinds = {(t.kind, t.condition.name, t.condition.evr) for t in h.triggers}
    assert kinds == {("triggerin", "busybox", "1.0"), ("triggerun", "other", ""),
                     ("filetriggerin", "/usr/lib/mods", ""), ("transfiletriggerin", "/usr/share/icons", "")}
    trig_in = next(t for t in h.triggers if t.kind == "triggerin")
    assert trig_in.condition.flags == Sense.GREATER | Sense.EQUAL and "echo in $1 $2" in trig_in.body
    assert next(t for t in h.triggers if t.kind == "transfiletriggerin").priority == 5000
    # rpm agrees on the trigger conditions
    require_tool("rpm")
    out = subprocess.run(["rpm", "-qp", "--triggers", str(rpm)], capture_output=True, text=True).stdout
    assert "triggerin scriptlet (using /bin/sh) -- busybox >= 1.0" in out


@pytest.mark.parametrize("db", sorted(p.name for p in TESTDATA.iterdir()) if TESTDATA.exists() else [])
def test_real_centos_headers_parse(db, tmp_path):
    require_tool("rpmdb")
    dbpath = tmp_path / db   # rpm takes a lock file in the dbpath: a private one, so parallel tests do not clash
    dbpath.mkdir()
    (dbpath / "Packages").symlink_to(TESTDATA / db / "Packages")
    exported = subprocess.run(["rpmdb", "--define", "_db_backend bdb_ro", "--dbpath", str(dbpath), "--exportdb"],
                              capture_output=True, check=True).stdout
    expected = subprocess.run(
        ["rpm", "--define", "_db_backend bdb_ro", "--dbpath", str(dbpath), "-qa", "--qf",
         "%{NAME}-%{EPOCHNUM}:%{VERSION}-%{RELEASE}.%{ARCH} %{NAME}:%{FILENAMES:arraysize}\n"],
        capture_output=True, text=True).stdout.split("\n")
    headers, off = [], 0
    while off < len(exported):
        raw, off = parse_raw_header(exported, off)
        headers.append(header_from_raw(raw))
    assert len(headers) > 100
    got = sorted(f"{h.name}-{h.epoch}:{h.version}-{h.release}.{h.arch} {h.name}:{len(h.files)}" for h in headers)
    # rpm prints "(none)" for an empty array and for gpg-pubkey's missing arch, which we read as noarch
    assert got == sorted(line.replace(":(none)", ":0").replace(".(none) ", ".noarch ") for line in expected if line)
    # everything decodes: dependencies, scriptlets, triggers
    assert sum(len(h.requires) for h in headers) > 1000
    assert all(s.interpreter for h in headers for s in h.scriptlets)


def test_rich_dependency_parser():
    assert parse_rich("(foo >= 1.0 and pkgconfig(bar))") == (
        "and", Dependency("foo", Sense.GREATER | Sense.EQUAL, "1.0"), Dependency("pkgconfig(bar)"))
    assert parse_rich("(a if (b or c) else d)") == (
        "if", Dependency("a"), ("or", Dependency("b"), Dependency("c")), Dependency("d"))
    with pytest.raises(FormatError):
        parse_rich("(a and")
    with pytest.raises(FormatError):
        parse_rich("(a xor b)")


@pytest.mark.parametrize("a,b", [("1.0", "1.0"), ("1.0", "2.0"), ("1.0a", "1.0"), ("1.0~rc1", "1.0"),
                                 ("1.0^git1", "1.0"), ("1.0^git1", "1.0.1"), ("10", "9"), ("a", "1"),
                                 ("1.01", "1.1"), ("2.0.1", "2.0.1a"), ("1~", "1~~"), ("5.5p1", "5.5p10"),
                                 ("1.0.", "1.0"), ("xyz", "xyz.1"), ("1_0", "1.0")])
def test_rpmvercmp_agrees_with_rpm(a, b):
    require_tool("rpm")
    out = subprocess.run(["rpm", "--eval", f'%{{lua: print(rpm.vercmp("{a}", "{b}"))}}'], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert rpmvercmp(a, b) == int(out)


def test_not_an_rpm(tmp_path):
    p = tmp_path / "x.rpm"
    p.write_bytes(b"hello, not an rpm" * 10)
    with pytest.raises(FormatError, match="not an RPM file"):
        read_rpm(p)


@pytest.mark.parametrize("cut", [50, 200, 1000])
def test_truncated_rpm_headers(rich_rpm, tmp_path, cut):
    p = tmp_path / "cut.rpm"
    p.write_bytes(rich_rpm.read_bytes()[:cut])
    with pytest.raises(FormatError, match="truncated") as e:
        read_rpm(p)
    assert "\n" not in str(e.value)


def test_truncated_payload_detected_from_signature_size(rich_rpm, tmp_path):
    data = rich_rpm.read_bytes()
    p = tmp_path / "cut.rpm"
    p.write_bytes(data[:-20])
    with pytest.raises(FormatError, match="truncated"):
        read_rpm(p)


def test_corrupt_header_index(rich_rpm):
    info = read_rpm(rich_rpm)
    blob = bytearray(info.header.blob)
    blob[8 + 16 * 3 + 8:8 + 16 * 3 + 12] = (0x7FFFFFF0).to_bytes(4, "big")   # an offset far past the data
    with pytest.raises(FormatError, match="bad offset|past the end"):
        parse_header(bytes(blob))


def test_damaged_headers_and_archives_only_raise_format_errors(rich_rpm):
    """Random byte flips and cuts: the pure parsers either succeed or raise FormatError, nothing else."""
    import io
    import random

    from hybridos.packages.payload import iter_cpio, open_decompressed

    info = read_rpm(rich_rpm)
    blob = info.header.blob
    with open(rich_rpm, "rb") as f:
        f.seek(info.payload_offset)
        archive = open_decompressed(f, info.header.payload_compressor).read()
    rnd = random.Random(5)
    for data, parse in ((blob, lambda b: parse_header(b)),
                        (archive, lambda b: [r.read() for _, r in iter_cpio(io.BytesIO(b), size_of=lambda i: 8)])):
        failures = 0
        for _ in range(1500):
            b = bytearray(data)
            for _ in range(rnd.randint(1, 4)):
                b[rnd.randrange(len(b))] = rnd.randrange(256)
            if rnd.random() < 0.2:
                b = b[:rnd.randrange(len(b))]
            try:
                parse(bytes(b))
            except FormatError:
                failures += 1
        assert failures > 100
