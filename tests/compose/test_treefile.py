"""Treefile parsing, include merging, variables and conditions, and the errors for malformed input."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from hybridos.arch import Architecture
from hybridos.compose.inputhash import treefile_input_hash
from hybridos.compose.treefile import load_treefile
from hybridos.errors import ConfigError

X86 = Architecture.X86_64


def write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text))
    return p


def test_yaml_and_json_give_the_same_flattened_treefile(tmp_path):
    y = write(tmp_path, "a.yaml", """
        ref: os/${releasever}/${basearch}
        releasever: 39
        repos: [base]
        packages: [bash, "coreutils  systemd", "'podman >= 4.1'"]
        recommends: false
        """)
    j = tmp_path / "b.json"
    j.write_text(json.dumps({"ref": "os/${releasever}/${basearch}", "releasever": 39, "repos": ["base"],
                             "packages": ["bash", "coreutils  systemd", "'podman >= 4.1'"],
                             "recommends": False}))
    a, b = load_treefile(y, X86), load_treefile(j, X86)
    assert a.ref == "os/39/x86_64"
    assert a.packages == ("bash", "coreutils", "podman >= 4.1", "systemd")
    assert a.recommends is False and a.documentation is True
    assert a.to_json() == b.to_json()


def test_include_merging_follows_rpm_ostree(tmp_path):
    write(tmp_path, "sub/base.yaml", """
        ref: base/ref
        automatic-version-prefix: "1"
        packages: [kernel, bash]
        units: [base.service]
        postprocess: ["echo base"]
        add-commit-metadata: {a: base, b: base}
        """)
    write(tmp_path, "extra.yaml", """
        packages: [vim]
        units: [extra.service]
        postprocess: ["echo extra"]
        default-target: graphical.target
        """)
    top = write(tmp_path, "top.yaml", """
        include: [sub/base.yaml, extra.yaml]
        ref: top/ref
        packages: [bash, htop]
        units: [top.service]
        postprocess: ["echo top"]
        add-commit-metadata: {b: top}
        """)
    tf = load_treefile(top, X86)
    assert tf.ref == "top/ref"                          # scalar: includer wins
    assert tf.automatic_version_prefix == "1"           # scalar only in an include is taken
    assert tf.default_target == "graphical.target"
    assert tf.packages == ("bash", "htop", "kernel", "vim")
    assert tf.units == ("extra.service", "base.service", "top.service")     # lists concatenate
    # rpm-ostree's documented order: later includes first, the includer's own scripts last
    assert tf.postprocess == ("echo extra", "echo base", "echo top")
    assert tf.add_commit_metadata == {"a": "base", "b": "top"}


def test_arch_include_and_packages_for_each_basearch(tmp_path):
    write(tmp_path, "x.yaml", "packages: [grub2-efi-x64]\n")
    write(tmp_path, "a.yaml", "packages: [uboot-tools]\n")
    top = write(tmp_path, "t.yaml", """
        packages: [bash]
        packages-x86_64: [microcode_ctl]
        packages-aarch64: [arm-firmware]
        packages-ppc64le: [powerpc-utils]
        packages-s390x: [s390utils]
        arch-include:
          x86_64: x.yaml
          aarch64: [a.yaml]
        """)
    assert load_treefile(top, Architecture.X86_64).packages == ("bash", "grub2-efi-x64", "microcode_ctl")
    assert load_treefile(top, Architecture.AARCH64).packages == ("arm-firmware", "bash", "uboot-tools")
    assert load_treefile(top, Architecture.PPC64LE).packages == ("bash", "powerpc-utils")


def test_variables_and_conditional_include(tmp_path):
    write(tmp_path, "dev.yaml", "packages: [gdb]\n")
    write(tmp_path, "new.yaml", "packages: [newthing]\n")
    write(tmp_path, "prod.yaml", "packages: [never]\n")
    top = write(tmp_path, "t.yaml", """
        releasever: 35
        variables:
          devpackages: true
          stream: development
        ref: os/${stream}
        mutate-os-release: "${releasever}"
        add-commit-metadata: {os.stream: "${stream}", os.flag: false}
        packages: [bash]
        conditional-include:
          - if: devpackages == true
            include: dev.yaml
          - if: [releasever >= 35, basearch == "x86_64"]
            include: [new.yaml]
          - if: stream != "development"
            include: prod.yaml
          - if: basearch == "aarch64"
            include: {packages: [armonly]}
        """)
    tf = load_treefile(top, X86)
    assert tf.packages == ("bash", "gdb", "newthing")
    assert tf.ref == "os/development"
    assert tf.mutate_os_release == "35"
    assert tf.add_commit_metadata == {"os.stream": "development", "os.flag": False}
    assert tf.variables["basearch"] == "x86_64" and tf.variables["devpackages"] is True
    assert load_treefile(top, Architecture.AARCH64).packages == ("armonly", "bash", "gdb")


def test_input_hash_covers_treefile_externals_and_packages(tmp_path):
    write(tmp_path, "post.sh", "#!/bin/sh\necho one\n")
    write(tmp_path, "motd", "hello\n")
    top = write(tmp_path, "t.yaml", """
        packages: [bash]
        postprocess-script: post.sh
        add-files: [[motd, /usr/etc/motd]]
        """)
    tf = load_treefile(top, X86)
    pkgs = [("bash-5.2-1.x86_64", "sha256:aa")]
    h1 = treefile_input_hash(tf, pkgs)
    assert h1 == treefile_input_hash(load_treefile(top, X86), list(reversed(pkgs)))
    assert h1 != treefile_input_hash(tf, [("bash-5.2-2.x86_64", "sha256:bb")])
    (tmp_path / "motd").write_text("changed\n")
    assert h1 != treefile_input_hash(tf, pkgs)
    (tmp_path / "motd").write_text("hello\n")
    (tmp_path / "post.sh").write_text("#!/bin/sh\necho two\n")
    assert h1 != treefile_input_hash(tf, pkgs)
    (tmp_path / "post.sh").write_text("#!/bin/sh\necho one\n")
    assert h1 == treefile_input_hash(tf, pkgs)
    top.write_text(top.read_text() + "units: [x.service]\n")
    assert h1 != treefile_input_hash(load_treefile(top, X86), pkgs)


@pytest.mark.parametrize("text,needle", [
    ("packages: [bash\nref: x\n", "invalid YAML at line"),
    ("- a\n- b\n", "must be a mapping"),
    ("packages: [bash]\nfrobnicate: 1\n", "unknown treefile key 'frobnicate'"),
    ("packages: bash\n", "'packages' must be a list of strings"),
    ("recommends: maybe\n", "'recommends' must be true or false"),
    ("cliwrap: true\n", "'cliwrap: true' is not supported"),
    ("ima: true\n", "'ima: true' is not supported"),
    ("edition: 2020\n", "'edition' must be one of 2014, 2024"),
    ("opt-usrlocal: stateoverlay\n", "stateoverlay' is not supported"),
    ("rpmdb: lmdb\n", "'rpmdb' must be one of"),
    ("check-passwd: {type: file}\n", "needs a 'filename'"),
    ("check-passwd: {type: file, filename: nothere}\n", "does not exist"),
    ("check-groups: {type: data, entries: {wheel: [10, 10]}}\n", "must be an id"),
    ("remove-from-packages: [[cpio, '(']]\n", "invalid regular expression"),
    ("repovars: {releasever: '1'}\n", "cannot set 'releasever'"),
    ("sysusers: always\n", "'sysusers' must be one of"),
    ("repo-packages: [{repo: a}]\n", "'repo-packages[0]' must be"),
    ("include: missing.yaml\n", "missing.yaml does not exist"),
    ("postprocess-script: nope.sh\n", "postprocess-script"),
    ("add-files: [[nope, /usr/share/nope]]\n", "add-files source"),
    ("variables: {basearch: x}\n", "reserved variable 'basearch'"),
    ("ref: ${nosuch}\n", "unknown variable '${nosuch}'"),
    ("packages: [a]\nexclude-packages: [a]\n", "both in 'packages' and in 'exclude-packages'"),
    ("conditional-include:\n  - if: nosuch == 1\n    include: x.yaml\n", "undefined variable 'nosuch'"),
    ("variables: {v: true}\nconditional-include:\n  - if: v == \"x\"\n    include: x.yaml\n",
     "another type"),
    ("conditional-include:\n  - if: what is this\n    include: x.yaml\n", "cannot parse condition"),
    ("boot-location: elsewhere\n", "'boot-location' must be one of"),
    ("basearch: aarch64\n", "basearch is aarch64"),
    ("remove-files: [/etc/passwd]\n", "relative path"),
])
def test_malformed_treefiles_give_one_line_errors_naming_the_file(tmp_path, text, needle):
    top = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError) as ei:
        load_treefile(top, X86)
    msg = str(ei.value)
    assert needle in msg
    assert "bad.yaml" in msg
    assert "\n" not in msg


def test_unknown_key_in_an_include_names_that_file(tmp_path):
    write(tmp_path, "inc.yaml", "packages: [a]\nbogus-key: 1\n")
    top = write(tmp_path, "top.yaml", "include: inc.yaml\n")
    with pytest.raises(ConfigError, match=r"inc\.yaml: unknown treefile key 'bogus-key'"):
        load_treefile(top, X86)


def test_include_loops_are_detected(tmp_path):
    write(tmp_path, "a.yaml", "include: b.yaml\n")
    write(tmp_path, "b.yaml", "include: a.yaml\n")
    with pytest.raises(ConfigError, match=r"include loop detected: .*a\.yaml was already included"):
        load_treefile(tmp_path / "a.yaml", X86)
    write(tmp_path, "self.yaml", "include: self.yaml\n")
    with pytest.raises(ConfigError, match="include loop"):
        load_treefile(tmp_path / "self.yaml", X86)


def test_invalid_json_names_line_and_column(tmp_path):
    p = tmp_path / "t.json"
    p.write_text('{"packages": ["a",]}')
    with pytest.raises(ConfigError, match=r"t\.json: invalid JSON at line 1, column \d+"):
        load_treefile(p, X86)
