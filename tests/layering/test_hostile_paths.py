"""Layered packages with files where an OSTree image cannot have them (docs/security.md, "Packages and
scriptlets"): /usr/etc, /proc, /sys, /dev, /sysroot, /ostree and rpm-ostree's other unsupported paths are one-line
errors with the sysroot untouched; /boot content moves to /usr/lib/ostree-boot as in rpm-ostree; a /var path
cannot add tmpfiles.d lines."""

from __future__ import annotations

import pytest

from tests.helpers.rpms import File, Pkg, build_rpm
from tests.layering.conftest import deployment_dir, hyb, status
from tests.sysroot.conftest import snapshot


def _refused(host, tmp_path, pkg: Pkg, *extra: str) -> str:
    rpm = build_rpm(pkg, tmp_path / "rpms")
    before = snapshot(host / "boot"), snapshot(host / "ostree/deploy/testos/deploy"), status(host)
    p = hyb(host, "install", *extra, str(rpm), check=False)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "internal error" not in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) <= 2, p.stderr   # the error line (and a hint)
    assert (snapshot(host / "boot"), snapshot(host / "ostree/deploy/testos/deploy"), status(host)) == before
    assert not list((host / "ostree/repo/tmp/hybridos").glob("layer-*"))
    return p.stderr


@pytest.mark.parametrize("files", [
    (File("/usr/etc/evil.conf", b"x\n"),),
    # a layered /usr/etc/passwd would replace the base image's default /etc/passwd without any conflict check
    (File("/usr/etc/passwd", b"root:x:0:0::/root:/bin/sh\nevil:x:0:0::/:/bin/sh\n"),),
    (File("/usr/etc", symlink="/tmp"),),
    (File("/usr/etc", b"not a directory"),),
], ids=["file", "passwd", "symlink", "regular"])
@pytest.mark.parametrize("force", [False, True], ids=["", "force-replacefiles"])
def test_usr_etc_in_a_layered_package_is_a_clear_error(host, tmp_path, files, force):
    """It was "internal error: Directory not empty" (or "Not a directory") when /etc went back to /usr/etc."""
    err = _refused(host, tmp_path, Pkg("usretc", "1.0", arch="noarch", files=files),
                   *(["--force-replacefiles"] if force else []))
    assert "usretc-1.0-1.noarch" in err and "/usr/etc" in err and "installs configuration to /etc" in err


@pytest.mark.parametrize("path,where", [
    ("/proc/evil", "/proc"), ("/sys/kernel/evil", "/sys"), ("/dev/evil", "/dev"), ("/sysroot/evil", "/sysroot"),
    ("/sysroot/ostree/repo/evil", "/sysroot"), ("/ostree/evil", "/ostree"), ("/home/evil", "/home"),
    ("/tmp/evil", "/tmp"), ("/usr/local/bin/evil", "/usr/local"), ("/srv/evil", "/srv"),
])
def test_unsupported_paths_are_refused_like_rpm_ostree(host, tmp_path, path, where):
    err = _refused(host, tmp_path, Pkg("unsupported", "1.0", arch="noarch", files=(File(path, b"x\n"),)))
    assert f"unsupported-1.0-1.noarch: cannot install '{path}'" in err and where in err


@pytest.mark.parametrize("top", ["/proc", "/boot", "/sysroot", "/var", "/usr/lib/ostree-boot"])
def test_structural_directories_are_never_replaced_even_with_force_replacefiles(host, tmp_path, top):
    err = _refused(host, tmp_path, Pkg("replacer", "1.0", arch="noarch", files=(File(top, symlink="/"),)),
                   "--force-replacefiles")
    assert f"cannot install '{top}'" in err and "cannot be replaced by a symlink" in err


def test_boot_content_moves_to_usr_lib_ostree_boot(host, tmp_path):
    """As rpm-ostree translates /boot: the deployment's /boot stays an empty mount point."""
    rpm = build_rpm(Pkg("bootstuff", "1.0", arch="noarch", files=(
        File("/boot/efi/EFI/test/shim.efi", b"shim\n"), File("/boot/grub2", dir=True, mode=0o700),
        File("/usr/lib/ostree-boot/efi/EFI/test/grub.efi", b"grub\n"))), tmp_path)
    hyb(host, "install", str(rpm))
    [new, _old] = status(host)
    tree = deployment_dir(host, new)
    assert list((tree / "boot").iterdir()) == []
    ob = tree / "usr/lib/ostree-boot"
    assert (ob / "efi/EFI/test/shim.efi").read_bytes() == b"shim\n"
    assert (ob / "efi/EFI/test/grub.efi").read_bytes() == b"grub\n"
    assert (ob / "grub2").is_dir() and (ob / "grub2").stat().st_mode & 0o777 == 0o700


def test_boot_content_conflicting_with_usr_lib_ostree_boot(host, tmp_path):
    files = (File("/boot/shim.efi", b"from boot\n"), File("/usr/lib/ostree-boot/shim.efi", b"from usr\n"))
    err = _refused(host, tmp_path, Pkg("bootclash", "1.0", arch="noarch", files=files))
    assert "/boot/shim.efi moves to /usr/lib/ostree-boot/shim.efi" in err
    hyb(host, "install", "--force-replacefiles", str(tmp_path / "rpms/bootclash-1.0-1.noarch.rpm"))
    tree = deployment_dir(host, status(host)[0])
    assert (tree / "usr/lib/ostree-boot/shim.efi").read_bytes() == b"from boot\n"


def test_a_var_path_cannot_add_tmpfiles_lines(host, tmp_path):
    """/var entries become tmpfiles.d lines run by root at boot: a newline in a path would add a line."""
    evil = "/var/lib/a\nL+ /etc/shadow - - - - /evil"
    err = _refused(host, tmp_path, Pkg("varnl", "1.0", arch="noarch", files=(File(evil, dir=True),)))
    assert "control character" in err and "\\n" in err
    # blanks are quoted as systemd-tmpfiles reads them
    rpm = build_rpm(Pkg("varspace", "1.0", arch="noarch", files=(File('/var/lib/a b"c', dir=True),)), tmp_path)
    hyb(host, "install", str(rpm))
    conf = deployment_dir(host, status(host)[0]) / "usr/lib/tmpfiles.d/hybridos-layered-var.conf"
    assert 'd "/var/lib/a b\\"c" 0755 root root - -' in conf.read_text().splitlines()


def test_a_scriptlet_creating_usr_etc_is_a_clear_error(host, tmp_path):
    err = _refused(host, tmp_path, Pkg("mkusretc", "1.0", arch="noarch", requires=("busybox",),
                                       post="mkdir -p /usr/etc && echo x > /usr/etc/x\n"))
    assert "a scriptlet created /usr/etc" in err


def test_a_directory_cannot_replace_a_file_of_the_base(host, tmp_path):
    """rpm's file conflict covers file types: a package's directory where a base package has its file (it
    replaced /usr/bin/hello silently)."""
    err = _refused(host, tmp_path, Pkg("dirclash", "1.0", arch="noarch", files=(File("/usr/bin/hello", dir=True),)))
    assert "/usr/bin/hello" in err and "conflicts with file from package hello-1.0-1.x86_64" in err
    # a file no package owns (the composed initramfs) is protected from a directory as from a file
    kver_dir = next((deployment_dir(host, status(host)[0]) / "usr/lib/modules").iterdir()).name
    err = _refused(host, tmp_path, Pkg("dirclash2", "1.0", arch="noarch",
                                       files=(File(f"/usr/lib/modules/{kver_dir}/initramfs.img", dir=True),)))
    assert "refusing to overwrite" in err and "initramfs.img" in err


def test_tmpfiles_configuration_is_read_and_written_inside_the_tree(host, tmp_path):
    """A package's tmpfiles.d symlinks to host paths: its /var content is turned into tmpfiles.d lines without
    opening a host FIFO (it hung) or writing through a symlink to a host file."""
    import os
    import threading
    import time

    fifo, target = tmp_path / "host-fifo", tmp_path / "host-file"
    os.mkfifo(fifo)
    target.write_text("host content\n")
    opened = []
    stop = threading.Event()

    def watch():   # a reader opening the FIFO lets a non-blocking writer in: note it and let the reader go
        while not stop.is_set():
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                time.sleep(0.02)
                continue
            opened.append(True)
            os.close(fd)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        rpm = build_rpm(Pkg("tmpfileslinks", "1.0", arch="noarch", files=(
            File("/usr/lib/tmpfiles.d/evil.conf", symlink=str(fifo)),
            File("/usr/lib/tmpfiles.d/hybridos-layered-var.conf", symlink=str(target)),
            File("/var/lib/tmpfileslinks", dir=True))), tmp_path / "rpms")
        hyb(host, "install", str(rpm))
    finally:
        stop.set()
        watcher.join()
    assert not opened and target.read_text() == "host content\n"
    conf = deployment_dir(host, status(host)[0]) / "usr/lib/tmpfiles.d/hybridos-layered-var.conf"
    assert not conf.is_symlink() and "d /var/lib/tmpfileslinks 0755 root root - -" in conf.read_text()
