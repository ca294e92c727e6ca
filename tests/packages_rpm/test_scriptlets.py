"""Scriptlets run inside the tree (static busybox as its /bin/sh), in a sandbox, with rpm's arguments."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from hybridos.arch import Architecture
from hybridos.errors import PackageError
from hybridos.packages.header import read_rpm_header
from hybridos.packages.model import Action
from hybridos.packages.rpmdb import read_rpmdb
from hybridos.packages.scriptlets import arch_runnable, is_hardlink_checkout, run_script, script_env
from tests.conftest import require_tool
from tests.helpers.rpms import File, Pkg, build_rpm, build_with_rpmbuild

from .conftest import layer, rpm_q


def test_post_runs_inside_the_tree(tmp_path, base_tree):
    marker = "/var/lib/hello/created-by-post"
    rpm = build_rpm(Pkg("hello", requires=("/bin/sh",), files=(File("/usr/bin/hello", b"hi", mode=0o755),),
                        post=f"mkdir -p /var/lib/hello && id -u > {marker} && echo \"arg=$1\" >> {marker} "
                             f"&& ls /usr/bin > /var/lib/hello/seen && echo post-output"), tmp_path)
    res = layer(base_tree, [rpm])
    created = base_tree / marker.lstrip("/")
    assert created.read_text().split() == ["0", "arg=1"]
    assert (base_tree / "var/lib/hello/seen").read_text().split() == ["hello"]   # the tree's /usr/bin, not the host's
    assert not os.path.exists(marker)
    assert "[hello-1.0-1.x86_64 %post]" in res.script_output and "post-output" in res.script_output
    assert not [n for n in os.listdir(base_tree / "var/tmp") if n.startswith("rpm-tmp")]


def test_failing_scriptlet_names_package_scriptlet_and_output(tmp_path, base_tree):
    before = {h.name for h in read_rpmdb(base_tree)}
    rpm = build_rpm(Pkg("broken", "2", files=(File("/usr/share/broken/f", b"x"),),
                        pre="echo checking the system; echo 'fatal: disk on fire' >&2; exit 3"), tmp_path)
    with pytest.raises(PackageError) as e:
        layer(base_tree, [rpm])
    msg = str(e.value)
    assert "broken-2-1.x86_64" in msg and "%pre scriptlet" in msg and "exit status 3" in msg
    assert "fatal: disk on fire" in msg and "\n" not in msg
    assert {h.name for h in read_rpmdb(base_tree)} == before          # the rpmdb was not touched
    assert not (base_tree / "usr/share/broken").exists()             # %pre failed before unpacking


def test_failing_post_keeps_the_database_unchanged(tmp_path, base_tree):
    rpm = build_rpm(Pkg("badpost", files=(File("/usr/share/badpost", b"x"),), post="false"), tmp_path)
    with pytest.raises(PackageError, match=r"badpost-1.0-1.x86_64: %post scriptlet failed with exit status 1"):
        layer(base_tree, [rpm])
    assert "badpost" not in rpm_q(base_tree, "-qa").stdout


def test_upgrade_runs_scriptlets_with_rpm_counts(tmp_path, base_tree):
    log = "/var/log/counts"
    scripts = {k: f"echo \"$0 {{v}} {k} $1\" >> {log}" for k in ("pre", "post", "preun", "postun", "posttrans")}

    def pkg(v, files):
        return build_rpm(Pkg("counted", v, files=files, **{k: s.replace("{v}", v) for k, s in scripts.items()}),
                         tmp_path / v)

    (base_tree / "var/log").mkdir()
    layer(base_tree, [pkg("1", (File("/usr/share/counted/old-only", b"1"), File("/usr/share/counted/both", b"1")))])
    layer(base_tree, [pkg("2", (File("/usr/share/counted/both", b"2"),))], action=Action.UPGRADE)
    lines = [line.split()[1:] for line in (base_tree / log.lstrip("/")).read_text().splitlines()]
    assert lines == [["1", "pre", "1"], ["1", "post", "1"], ["1", "posttrans", "0"],
                     ["2", "pre", "2"], ["2", "post", "2"], ["1", "preun", "1"], ["1", "postun", "1"],
                     ["2", "posttrans", "0"]]
    assert rpm_q(base_tree, "-q", "counted").stdout.strip() == "counted-2-1.x86_64"
    assert not (base_tree / "usr/share/counted/old-only").exists()
    assert (base_tree / "usr/share/counted/both").read_bytes() == b"2"
    assert rpm_q(base_tree, "-V", "counted", check=False).stdout == ""
    # erase: %preun/%postun with 0
    layer(base_tree, [], erase=("counted-2-1.x86_64",))
    tail = [line.split()[1:] for line in (base_tree / log.lstrip("/")).read_text().splitlines()[-2:]]
    assert tail == [["2", "preun", "0"], ["2", "postun", "0"]]


def test_chroot_fallback_runs_the_same(base_tree):
    res = run_script(base_tree, "x-1-1.noarch", "post", ("/bin/sh",), "echo via-chroot > /tmp/fallback; echo $1",
                     [7], env={"PATH": "/bin"}, use_bwrap=False)
    assert res.output.strip() == "7"
    assert (base_tree / "tmp/fallback").read_text() == "via-chroot\n"


def test_missing_interpreter_and_lua_are_clear_errors(base_tree, tmp_path):
    with pytest.raises(PackageError, match="needs /usr/bin/python3, which the tree does not have"):
        run_script(base_tree, "p-1-1.noarch", "post", ("/usr/bin/python3",), "print(1)", [1], env={})
    with pytest.raises(PackageError, match="p-1-1.noarch: %pretrans scriptlet is written in Lua"):
        run_script(base_tree, "p-1-1.noarch", "pretrans", ("<lua>",), "print(1)", [0], env={})


def test_scripts_can_be_turned_off(tmp_path, base_tree):
    rpm = build_rpm(Pkg("quiet", files=(File("/usr/share/quiet", b"q"),), post="touch /post-ran"), tmp_path)
    layer(base_tree, [rpm], run_scripts=False)
    assert not (base_tree / "post-ran").exists() and (base_tree / "usr/share/quiet").exists()


SPEC = """\
    Name: %(name)s
    Version: 1
    Release: 1
    Summary: fixture
    License: MIT
    BuildArch: noarch
    %(extra)s
    %%description
    fixture
    %%install
    mkdir -p %%{buildroot}%(dir)s
    echo data > %%{buildroot}%(dir)s/data
    %%files
    %(dir)s
    """


def rpmbuild(tmp_path, rpmbuild_dir, name, body, *, directory=None, extra=""):
    text = textwrap.dedent(SPEC % {"name": name, "dir": directory or f"/usr/share/{name}", "extra": extra})
    text += textwrap.dedent(body)
    (rpm,) = build_with_rpmbuild(text, tmp_path / name, rpmbuild_dir / name)
    return rpm


INTERP_SPEC = """\
    Name: interp
    Version: 1
    Release: 1
    Summary: fixture
    License: MIT
    BuildArch: noarch
    %description
    fixture
    %install
    mkdir -p %{buildroot}/usr/bin
    printf '#!/bin/sh\\ntr a-z A-Z < "$1" > /var/tmp/upper-out\\necho "args: $*" >> /var/tmp/upper-out\\n' \\
        > %{buildroot}/usr/bin/upper
    chmod 755 %{buildroot}/usr/bin/upper
    %files
    /usr/bin/upper
    %post -p /usr/bin/upper
    the body is handed to its interpreter
    %posttrans -p /bin/ash
    echo "ash $1" > /var/tmp/ash-ran
    %preun -p /bin/touch
    """


def test_interpreters_from_rpmbuild(tmp_path, base_tree, rpmbuild_dir):
    (rpm,) = build_with_rpmbuild(textwrap.dedent(INTERP_SPEC), tmp_path / "out", rpmbuild_dir)
    h = read_rpm_header(rpm)
    assert h.scriptlet("post").interpreter == ("/usr/bin/upper",)
    assert h.scriptlet("preun").interpreter == ("/bin/touch",) and h.scriptlet("preun").body == ""
    layer(base_tree, [rpm])
    out = (base_tree / "var/tmp/upper-out").read_text()
    body, args = out.split("args: ")      # rpm stores the body without its final newline
    assert body == "THE BODY IS HANDED TO ITS INTERPRETER"
    assert args.startswith("/var/tmp/rpm-tmp.") and args.endswith(" 1\n")   # as rpm runs it: PROG FILE $1
    assert (base_tree / "var/tmp/ash-ran").read_text() == "ash 0\n"
    assert not (base_tree / "0").exists()
    layer(base_tree, [], erase=("interp-1-1.noarch",))
    assert (base_tree / "0").exists()      # a program without a body gets $1 (0 on erase), run in /


def test_triggers_from_rpmbuild(tmp_path, base_tree, rpmbuild_dir):
    watcher = rpmbuild(tmp_path, rpmbuild_dir, "watcher", """\
        %triggerin -- target
        echo "triggerin $1 $2" >> /var/tmp/triggers
        %triggerun -- target
        echo "triggerun $1 $2" >> /var/tmp/triggers
        %triggerpostun -- target
        echo "triggerpostun $1 $2" >> /var/tmp/triggers
        %triggerin -- busybox
        echo "busybox-present $1 $2" >> /var/tmp/triggers
        %filetriggerin -- /usr/share/target
        cat >> /var/tmp/filetrigger
        %transfiletriggerin -- /usr/share
        echo "transfiletrigger $(wc -l)" >> /var/tmp/triggers
        %transfiletriggerun -- /usr/share/target
        echo "transfiletriggerun $(wc -l)" >> /var/tmp/triggers
        %transfiletriggerpostun -- /usr/share/target
        echo "transfiletriggerpostun $(wc -l)" >> /var/tmp/triggers
        """)
    target = rpmbuild(tmp_path, rpmbuild_dir, "target", "")
    layer(base_tree, [watcher])       # busybox is already installed: the watcher's own trigger on it fires
    layer(base_tree, [target])        # the watcher's triggers on the target fire
    layer(base_tree, [], erase=("target-1-1.noarch",))
    lines = (base_tree / "var/tmp/triggers").read_text().splitlines()
    assert lines[0] == "busybox-present 1 1"
    assert lines[1].startswith("transfiletrigger ")           # the watcher's own /usr/share/watcher files
    # the target ships /usr/share/target and /usr/share/target/data: both are under the trigger prefixes
    # on erase: the trans file triggers around it (the postun one gets no file list, as in rpm)
    assert lines[2:] == ["triggerin 1 1", "transfiletrigger 2", "transfiletriggerun 2", "triggerun 1 0",
                         "triggerpostun 1 0", "transfiletriggerpostun 0"]
    assert (base_tree / "var/tmp/filetrigger").read_text() == "/usr/share/target\n/usr/share/target/data\n"


def test_install_prefix_environment(tmp_path, base_tree, rpmbuild_dir):
    rpm = rpmbuild(tmp_path, rpmbuild_dir, "reloc", """\
        %post
        echo "$RPM_INSTALL_PREFIX $RPM_INSTALL_PREFIX0" > /var/tmp/prefix
        """, directory="/opt/reloc", extra="Prefix: /opt")
    h = read_rpm_header(rpm)
    assert h.prefixes == ("/opt",)
    assert script_env(h)["RPM_INSTALL_PREFIX"] == "/opt"
    layer(base_tree, [rpm])
    assert (base_tree / "var/tmp/prefix").read_text() == "/opt /opt\n"


def test_foreign_architecture_scriptlets_are_a_clear_error(tmp_path, base_tree):
    if arch_runnable("aarch64"):
        pytest.skip("qemu-aarch64 is registered in binfmt_misc here: aarch64 scriptlets would run")
    rpm = build_rpm(Pkg("armpkg", arch="aarch64", files=(File("/usr/share/armpkg", b"a"),), post="true"),
                    tmp_path)
    with pytest.raises(PackageError, match=r"armpkg-1.0-1.aarch64: cannot run its %post scriptlet: the tree is "
                                           r"aarch64 and this \w+ machine has no qemu-aarch64"):
        layer(base_tree, [rpm], arch=Architecture.AARCH64)
    layer(base_tree, [rpm], arch=Architecture.AARCH64, run_scripts=False)
    assert "armpkg-1.0-1.aarch64" in rpm_q(base_tree, "-qa").stdout


def test_script_file_never_goes_through_a_symlink_out_of_the_tree(tmp_path, base_tree):
    outside = tmp_path / "outside"
    outside.mkdir()
    (base_tree / "var/tmp").rmdir()
    os.symlink(str(outside), base_tree / "var/tmp")
    res = run_script(base_tree, "p-1-1.noarch", "post", ("/bin/sh",), "echo $0", [1], env={"PATH": "/bin"})
    assert res.output.startswith("/tmp/rpm-tmp.")
    assert not any(outside.iterdir())


def _hardlink_checkout(tree, store):
    """Make every /usr file of ``tree`` share its inode with a file in ``store``, as an ostree hardlink checkout."""
    store.mkdir()
    for i, p in enumerate(sorted(q for q in (tree / "usr").rglob("*") if q.is_file() and not q.is_symlink())):
        os.link(p, store / f"obj{i}")
    assert is_hardlink_checkout(tree)


def test_scriptlets_cannot_change_stored_files_of_a_hardlink_checkout(tmp_path, base_tree):
    require_tool("rofiles-fuse")
    base = build_rpm(Pkg("basefiles", files=tuple(File(f"/usr/share/base/{n}", f"{n} original\n".encode())
                                                  for n in "abcde")), tmp_path / "base")
    layer(base_tree, [base])
    store = tmp_path / "objects"
    _hardlink_checkout(base_tree, store)
    before = {p.name: p.read_bytes() for p in store.iterdir()}
    polite = build_rpm(Pkg("polite", files=(File("/usr/share/polite", b"p"),), post=(
        "echo created > /usr/share/base/new-by-post && "
        "sed 's/original/replaced/' /usr/share/base/a > /usr/share/base/a.tmp && mv /usr/share/base/a.tmp "
        "/usr/share/base/a")), tmp_path / "polite")
    layer(base_tree, [polite])
    assert (base_tree / "usr/share/base/new-by-post").read_text() == "created\n"
    assert (base_tree / "usr/share/base/a").read_text() == "a replaced\n"
    assert {p.name: p.read_bytes() for p in store.iterdir()} == before     # replaced, not changed in place
    rude = build_rpm(Pkg("rude", files=(File("/usr/share/rude", b"r"),),
                         post="echo appended >> /usr/share/base/b"), tmp_path / "rude")
    store = tmp_path / "objects-2"          # the next layering starts from a fresh checkout of the new commit
    _hardlink_checkout(base_tree, store)
    before = {p.name: p.read_bytes() for p in store.iterdir()}
    with pytest.raises(PackageError, match=r"rude-1.0-1.x86_64: %post scriptlet failed .*Read-only file system"):
        layer(base_tree, [rude])
    assert {p.name: p.read_bytes() for p in store.iterdir()} == before     # the stored objects never changed
    assert (base_tree / "usr/share/base/b").read_text() == "b original\n"
    assert "hybridos-usr-" not in Path("/proc/mounts").read_text()     # the guard was unmounted
