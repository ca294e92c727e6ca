"""Treefiles that differential fuzzing (issue 15) turned into "internal error" (exit 70) or worse: each is a
one-line error naming the file and the key (or position), exit 1, through the real CLI; an included file that is
not a treefile is never echoed."""

from __future__ import annotations

import pytest

from hybridos.arch import Architecture
from hybridos.compose.treefile import load_treefile
from hybridos.errors import ConfigError
from tests.conftest import run_cli

_BOMB = ("variables: {a: &a [x,x,x,x,x,x,x,x,x], b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], "
         "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b], d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c], "
         "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d], f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e], "
         "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f], h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]}\n"
         "add-commit-metadata: {x: *h}\n")

CASES = {
    "python-tag": ("ref: !!python/object/apply:os.system [true]\n", "'ref'"),
    "unknown-tag": ("ref: !custom x\n", "'ref'"),
    "bad-binary": ("ref: x\nadd-commit-metadata: {a: !!binary '***'}\n", "'add-commit-metadata.a'"),
    "bad-timestamp": ("ref: x\nreleasever: !!timestamp 2020-13-45\n", "'releasever'"),
    "bad-bool": ("ref: x\nrecommends: !!bool maybe\n", "'recommends'"),
    "deep": ("ref: x\nadd-commit-metadata: {a: " + "[" * 10000 + "]" * 10000 + "}\n", "line 2"),
    "nul-include": ('ref: x\ninclude: "inc\\0.yaml"\n', "'include'"),
    "self-alias": ("ref: x\nadd-commit-metadata: &a {b: *a}\n", "'add-commit-metadata.b'"),
    "alias-bomb": ("ref: x\n" + _BOMB, "alias bomb"),
    "date": ("ref: x\nreleasever: 2020-01-01\n", "'releasever'"),
    "binary": ("ref: x\nadd-commit-metadata: {a: !!binary aGVsbG8=}\n", "'add-commit-metadata.a'"),
    "set": ("ref: x\nadd-commit-metadata: {a: !!set {x, y}}\n", "'add-commit-metadata.a'"),
    "digits-5000": ("ref: x\nreleasever: " + "9" * 5000 + "\n", "'releasever'"),
    "superscript": ("ref: x\nreleasever: '²'\nconditional-include: [{if: 'releasever > 3', include: {}}]\n",
                    "'conditional-include[0].if'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_treefile_is_a_one_line_config_error(tmp_path, case):
    text, key = CASES[case]
    tf = tmp_path / "tf.yaml"
    tf.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_treefile(tf, Architecture.parse("x86_64"))
    message = str(info.value)
    assert "\n" not in message and str(tf) in message and key in message, message


@pytest.mark.parametrize("case", ["python-tag", "alias-bomb", "deep", "digits-5000"])
def test_through_the_cli(tmp_path, case):
    tf = tmp_path / "tf.yaml"
    tf.write_text(CASES[case][0])
    p = run_cli("compose", "tree", "--print-only", str(tf), check=False)
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(tf) in lines[0], p.stderr


def test_json_with_5000_digits_and_deep_nesting(tmp_path):
    for body, key in (('{"ref": "x", "releasever": ' + "9" * 5000 + "}", "'releasever'"),
                      ('{"ref": "x", "add-commit-metadata": {"a": ' + "[" * 100000 + "]" * 100000 + "}}",
                       "nests too deeply")):
        tf = tmp_path / "tf.json"
        tf.write_text(body)
        with pytest.raises(ConfigError, match=key):
            load_treefile(tf, Architecture.parse("x86_64"))


@pytest.mark.parametrize("secret_file", [
    "root:$6$SECRETHASH:19000:0:99999:7:::\nbin:*:19000:0:99999:7:::\n",
    "SECRETKEY: SECRETVALUE\n",
    "!SECRETTAG SECRETVALUE\n",
    "a: [SECRETVALUE\n",
    "SECRETKEY: [SECRETVALUE, {SECRET: 2020-01-01}]\n",
])
def test_an_included_non_treefile_is_never_echoed(tmp_path, secret_file):
    (tmp_path / "shadow").write_text(secret_file)
    tf = tmp_path / "tf.yaml"
    tf.write_text(f"ref: x\ninclude: {tmp_path / 'shadow'}\n")
    p = run_cli("compose", "tree", "--print-only", str(tf), check=False)
    assert p.returncode == 1 and "SECRET" not in p.stderr + p.stdout, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_image_passwd_with_odd_digits_is_skipped_not_a_crash():
    from hybridos.compose.passwd import parse_group, parse_passwd

    text = "root:x:0:0::/root:/bin/sh\nodd:x:²:1::/:/bin/sh\nbig:x:" + "9" * 5000 + ":1::/:/bin/sh\n"
    assert parse_passwd(text) == {"root": (0, 0)}
    assert parse_group("root:x:0:\nodd:x:٣:\n") == {"root": 0}
