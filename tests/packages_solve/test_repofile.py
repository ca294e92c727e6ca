""".repo files: the yum.repos.d format, variable substitution, unknown keys kept, clear errors with file:line."""

from __future__ import annotations

import pytest

from hybridos.errors import ConfigError
from hybridos.packages.repofile import parse_repo_file, read_repo_dir, repo_variables

GOOD = """\
# main repositories
[base]
name=Base $releasever for $basearch
baseurl=http://mirror-a.example/$releasever/$basearch/
        http://mirror-b.example/${releasever}/${basearch}/
  , file:///srv/repo/$basearch
enabled=1
gpgcheck=0
metadata_expire=6h
excludepkgs=kernel* foo, bar
priority=10
skip_if_unavailable=True
x-custom = keep me

[updates]
name = Updates
baseurl = https://updates.example/$arch/
enabled = no
gpgcheck = yes
metadata_expire = never

; a comment
[extras]
baseurl=file:///srv/extras
metadata_expire=90
sslcacert=/etc/pki/ca.pem
unknownvar=$notavariable
"""


def test_parse_known_and_unknown_keys():
    repos = parse_repo_file(GOOD, "test.repo", repo_variables("aarch64", "39"))
    base, updates, extras = repos
    assert base.id == "base"
    assert base.name == "Base 39 for aarch64"
    assert base.baseurls == ("http://mirror-a.example/39/aarch64/", "http://mirror-b.example/39/aarch64/",
                             "file:///srv/repo/aarch64")
    assert base.enabled and not base.gpgcheck
    assert base.metadata_expire == 6 * 3600
    assert base.excludepkgs == ("kernel*", "foo", "bar")
    assert base.priority == 10
    assert dict(base.extra) == {"skip_if_unavailable": "True", "x-custom": "keep me"}
    assert base.source == "test.repo:2"
    assert updates.baseurls == ("https://updates.example/aarch64/",)
    assert not updates.enabled and updates.gpgcheck and updates.metadata_expire == -1
    assert extras.name == "extras" and extras.metadata_expire == 90
    assert extras.get("sslcacert") == "/etc/pki/ca.pem"
    assert extras.get("unknownvar") == "$notavariable"      # unknown variables stay as written, as in dnf


@pytest.mark.parametrize("text, line, words", [
    ("baseurl=file:///x\n", 1, "before any [repo-id]"),
    ("[a]\nbaseurl=file:///x\njunk line\n", 3, "expected 'key=value'"),
    ("[a\nbaseurl=file:///x\n", 1, "malformed section header"),
    ("[a b]\nbaseurl=file:///x\n", 1, "invalid repository id"),
    ("[a]\nbaseurl=file:///x\nenabled=maybe\n", 3, "not a boolean"),
    ("[a]\nbaseurl=file:///x\nmetadata_expire=soon\n", 3, "not a duration"),
    ("[a]\nname=no url\n", 1, "has no baseurl"),
    ("[a]\nbaseurl=file:///x\n[a]\nbaseurl=file:///y\n", 3, "defined twice"),
    ("[a]\nbaseurl=file:///x\nbaseurl=file:///y\n", 3, "repeated"),
    ("[a]\nbaseurl=http://h/$releasever/\n", 2, "unresolved variable"),
    ("[a]\nbaseurl=file:///x\npriority=high\n", 3, "not an integer"),
])
def test_malformed_files_name_file_and_line(text, line, words):
    with pytest.raises(ConfigError) as exc:
        parse_repo_file(text, "/etc/yum.repos.d/bad.repo", repo_variables("x86_64"))
    msg = str(exc.value)
    assert msg.startswith(f"/etc/yum.repos.d/bad.repo:{line}: ")
    assert words in msg and "\n" not in msg


def test_read_repo_dir(tmp_path):
    (tmp_path / "a.repo").write_text("[one]\nbaseurl=file:///one\n[off]\nbaseurl=file:///off\nenabled=0\n")
    (tmp_path / "b.repo").write_text("[two]\nbaseurl=file:///two/$basearch\n")
    (tmp_path / "ignored.txt").write_text("not a repo file")
    repos = read_repo_dir(tmp_path, repo_variables("ppc64le"))
    assert [r.id for r in repos] == ["one", "two"]
    assert repos[1].baseurls == ("file:///two/ppc64le",)
    assert [r.id for r in read_repo_dir(tmp_path, repo_variables("x86_64"), enabled_only=False)] == ["one", "off", "two"]
    (tmp_path / "c.repo").write_text("\n[one]\nbaseurl=file:///again\n")
    with pytest.raises(ConfigError, match=r"c\.repo:2: repository \[one\] is already defined at .*a\.repo:1"):
        read_repo_dir(tmp_path, repo_variables("x86_64"))
    (tmp_path / "c.repo").write_bytes(b"[x]\nbaseurl=\xff\xfe\n")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        read_repo_dir(tmp_path, repo_variables("x86_64"))
