"""A hostile image (commit) deployed by root: its symlinks never lead onto host files, and nothing it ships can
inject lines into boot configuration (docs/security.md, "Images and deployments", "Boot configuration")."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from hybridos.sysroot import bls
from tests.sysroot.conftest import KVER, STATEROOT, hyb, make_tree, ostree, ostree_commit

REF = "testos/hostile"


@pytest.fixture
def local(workdir):
    """An empty sysroot with stateroot testos, deployed from commits made straight into its repository."""
    from tests.conftest import require_tool

    require_tool("ostree")
    sr = workdir / "sysroot"
    hyb(sr, "admin", "init-fs", str(sr))
    hyb(sr, "admin", "os-init", STATEROOT)
    return sr


def commit(sr, tree, version="1.0"):
    return ostree_commit(sr / "ostree/repo", tree, REF, version)


def deploy(sr, *extra, check=True, timeout=120):
    proc = subprocess.run([sys.executable, "-m", "hybridos", "--sysroot", str(sr), "admin", "deploy", "--os",
                           STATEROOT, *extra, REF], capture_output=True, text=True, timeout=timeout,
                          env={k: v for k, v in os.environ.items() if k != "HYBRIDOS_SYSROOT"})
    if check:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode not in (0, 70) and "Traceback" not in proc.stderr, proc.stderr
    return proc


def deployed(sr):
    deps = sorted((sr / "ostree/deploy" / STATEROOT / "deploy").glob("*.0"), key=os.path.getmtime)
    return deps[-1]


def entries(sr):
    return [bls.parse_entry(p.read_bytes()) for p in sorted((sr / "boot/loader/entries").glob("*.conf"))]


def boot_bytes(sr) -> bytes:
    out = b""
    for dirpath, _, files in os.walk(sr / "boot"):
        for name in files:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                with open(p, "rb") as f:
                    out += f.read()
    return out


def host_dir(workdir, files):
    d = workdir / "host"
    d.mkdir(exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


# -- /etc merge --------------------------------------------------------------------------------------------


def test_usr_etc_symlink_to_host_is_refused(local, workdir):
    sr = local
    commit(sr, make_tree(workdir / "t1", "1.0"))
    deploy(sr)
    (deployed(sr) / "etc/app.conf").write_text("local change\n")
    (deployed(sr) / "etc/motd").unlink()
    host = host_dir(workdir, {"app.conf": "host file\n", "motd": "host motd\n"})
    tree = make_tree(workdir / "t2", "2.0")
    shutil.rmtree(tree / "usr/etc")
    os.symlink(host, tree / "usr/etc")
    commit(sr, tree, "2.0")
    r = deploy(sr, check=False)
    assert "usr/etc" in r.stderr and "symbolic link" in r.stderr
    assert sorted(os.listdir(host)) == ["app.conf", "motd"]
    assert (host / "app.conf").read_text() == "host file\n" and (host / "motd").read_text() == "host motd\n"


def test_merge_never_deletes_or_writes_through_an_image_symlink(local, workdir):
    sr = local
    commit(sr, make_tree(workdir / "t1", "1.0", etc={"d/x": "x\n", "d/keep": "k\n"}))
    deploy(sr)
    (deployed(sr) / "etc/d/x").unlink()                              # the admin removed d/x
    host = host_dir(workdir, {"x": "host x\n", "keep": "host keep\n"})
    tree = make_tree(workdir / "t2", "2.0")
    os.symlink(host, tree / "usr/etc/d")                             # the new image makes etc/d a link to the host
    commit(sr, tree, "2.0")
    deploy(sr)
    assert (host / "x").read_text() == "host x\n"                    # not deleted through the link
    assert sorted(os.listdir(host)) == ["keep", "x"]


def test_new_etc_files_are_never_readable_while_written(workdir, monkeypatch):
    """A new /etc copy is created 0600 and gets its final mode only once written: a 0640 shadow never exists as
    0644, not even while its bytes are copied (the mode is observed from inside the copy)."""
    import hybridos.sysroot.etcmerge as em

    src = workdir / "src"
    src.mkdir()
    (src / "shadow").write_text("root:*:1::::::\n")
    os.chmod(src / "shadow", 0o640)
    seen = []
    real_copy = em.copy_fd
    monkeypatch.setattr(em, "copy_fd", lambda fin, fout: seen.append(os.fstat(fout).st_mode & 0o777)
                        or real_copy(fin, fout))
    em.copy_entry(src, workdir / "etc")
    assert seen == [0o600]
    assert os.stat(workdir / "etc/shadow").st_mode & 0o777 == 0o640
    assert (workdir / "etc/shadow").read_text() == "root:*:1::::::\n"


# -- boot files and os-release -----------------------------------------------------------------------------


def test_boot_files_are_never_copied_from_the_host(local, workdir):
    sr = local
    secret = host_dir(workdir, {"secret": "HOST-SECRET-BYTES\n"}) / "secret"
    tree = make_tree(workdir / "t1", "1.0")
    kdir = tree / "usr/lib/modules" / KVER
    (kdir / "initramfs.img").unlink()
    os.symlink(secret, kdir / "initramfs.img")
    (kdir / "dtb").mkdir()
    (kdir / "dtb/board.dtb").write_bytes(b"\xd0\x0d\xfe\xed real dtb")
    os.symlink(secret, kdir / "dtb/evil.dtb")
    os.symlink("../" * 12 + str(secret).lstrip("/"), kdir / "dtb/evil-relative.dtb")
    commit(sr, tree)
    deploy(sr)
    data = boot_bytes(sr)
    assert b"HOST-SECRET" not in data
    assert b"real dtb" in data
    (entry,) = entries(sr)
    assert entry.get("initrd") is None    # the escaping initramfs.img counts as absent
    assert os.stat(secret).st_nlink == 1  # and was not hardlinked into /boot either


@pytest.mark.parametrize("target", ["hostfile", "fifo", "/dev/zero"])
def test_os_release_is_never_read_from_the_host(local, workdir, target):
    sr = local
    host = host_dir(workdir, {"os-release": 'PRETTY_NAME="Host Secret Linux"\n'})
    if target == "hostfile":
        target = str(host / "os-release")
    elif target == "fifo":
        os.mkfifo(host / "fifo")
        target = str(host / "fifo")
    tree = make_tree(workdir / "t1", "1.0", etc={"os-release": 'PRETTY_NAME="Image OS"\n'})
    (tree / "usr/lib/os-release").unlink()
    os.symlink(target, tree / "usr/lib/os-release")
    commit(sr, tree)
    deploy(sr, timeout=60)
    (entry,) = entries(sr)
    assert entry.get("title") == "Image OS 1.0 (ostree:0)"


# -- boot configuration injection --------------------------------------------------------------------------


def test_version_and_os_name_cannot_add_boot_entry_lines(local, workdir):
    sr = local
    evil_name = 'PRETTY_NAME="Evil\u2028options init=/bin/sh\x85linux /evil\x1b[2J"\n'
    tree = make_tree(workdir / "t1", "1.0")
    (tree / "usr/lib/os-release").write_text(evil_name)
    commit(sr, tree, "1.0\noptions rd.break")
    deploy(sr, "--karg", "root=/dev/vda1")
    (entry,) = entries(sr)
    assert entry.options.split()[0] == "root=/dev/vda1" and len(entry.keys["options"]) == 1
    assert "init=/bin/sh" not in entry.options and "rd.break" not in entry.options
    assert entry.keys["linux"][0].startswith("/ostree/")
    assert entry.get("title") == "Evil options init=/bin/sh linux /evil [2J 1.0 options rd.break (ostree:0)"
    import json

    (dep,) = json.loads(hyb(sr, "status", "--json").stdout)["deployments"]
    assert dep["kernel-arguments"] == ["root=/dev/vda1"]    # what is read back as the kernel arguments


def test_kernel_version_with_control_characters_is_refused(local, workdir):
    sr = local
    tree = make_tree(workdir / "t1", "1.0")
    os.rename(tree / "usr/lib/modules" / KVER, tree / "usr/lib/modules" / f"{KVER}\noptions rd.break")
    commit(sr, tree)
    r = deploy(sr, check=False)
    assert "kernel version" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (sr / "boot/loader").exists()


@pytest.mark.parametrize("karg", ['quiet="a\u0085init=/bin/sh"', 'a="b\u2028c"', "x\u2029", 'x="\u200e"'])
def test_karg_with_unicode_line_break_is_refused_up_front(local, workdir, karg):
    sr = local
    commit(sr, make_tree(workdir / "t1", "1.0"))
    r = deploy(sr, "--karg", karg, check=False)
    assert "invalid kernel argument" in r.stderr
    deploy(sr, "--karg", "quiet")
    r = hyb(sr, "kargs", "--append", karg, check=False)
    assert r.returncode == 1 and "invalid kernel argument" in r.stderr
    hyb(sr, "status")   # the sysroot still loads
    assert entries(sr)[0].options.startswith("quiet ostree=")


def test_ostree_reads_what_we_wrote(local, workdir):
    """The sanitized entries stay valid for the reference implementation."""
    sr = local
    tree = make_tree(workdir / "t1", "1.0")
    (tree / "usr/lib/os-release").write_text('PRETTY_NAME="Odd\u2028Name"\n')
    commit(sr, tree, "1.0\n2.0")
    deploy(sr)
    out = ostree("admin", "status", f"--sysroot={sr}").stdout
    assert STATEROOT in out


# -- terminal escapes --------------------------------------------------------------------------------------


def test_nothing_from_a_commit_reaches_the_terminal_as_escapes(local, workdir):
    sr = local
    evil = "1.0\x1b]0;owned\x07\x1b[2J\u202e\nFake: row"
    ostree(f"--repo={sr}/ostree/repo", "commit", f"--branch={REF}", f"--add-metadata-string=version={evil}",
           "--subject", "subject \x1b[31mred", "--body", "line one\nline \x1b[8mtwo", str(make_tree(workdir / "t1", "1")))
    deploy(sr)
    outputs = [hyb(sr, "status").stdout, hyb(sr, "status", "-v").stdout, hyb(sr, "admin", "status").stdout,
               hyb(sr, "repo", "log", "--repo", str(sr / "ostree/repo"), REF).stdout]
    for out in outputs:
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
        assert not any(line.startswith("Fake") or line.strip().startswith("Fake:") for line in out.splitlines())
    assert "\\x1b]0;owned" in outputs[0]        # shown, escaped
    assert "line one\n" in outputs[3]           # a body keeps its lines
    r = hyb(sr, "rebase", "no\x1b[2Jsuch:ref", check=False)
    assert r.returncode != 0 and "\x1b" not in r.stderr
