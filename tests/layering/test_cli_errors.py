"""Bad input: one line saying what is wrong, a non-zero exit, no traceback, and nothing changed."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli
from tests.layering.conftest import hyb, status


@pytest.mark.parametrize("args, message", [
    (("install", "/nonexistent/x.rpm"), "no such RPM file"),
    (("override", "replace", "hello"), "takes RPM files"),
    (("initramfs", "--arg=--zstd"), "--arg needs --enable"),
    (("initramfs", "--enable", "--disable"), "exclude each other"),
    (("uninstall",), "name at least one package"),
    (("override", "reset"), "name at least one package"),
    (("override", "reset", "hello"), "no override for package 'hello'"),
    (("initramfs", "--disable"), "not enabled"),
])
def test_bad_input(host, args, message):
    p = hyb(host, *args, check=False)
    assert p.returncode != 0 and message in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert len(status(host)) == 1


def test_not_an_rpm_and_no_sysroot(host, tmp_path):
    bogus = tmp_path / "bogus.rpm"
    bogus.write_bytes(b"this is not an rpm\n")
    p = hyb(host, "install", str(bogus), check=False)
    assert p.returncode != 0 and "not a usable RPM" in p.stderr and "Traceback" not in p.stderr
    empty = tmp_path / "empty"
    run_cli("admin", "init-fs", str(empty))
    p = run_cli("--sysroot", str(empty), "install", "layered-tool", check=False)
    assert p.returncode != 0 and "no deployment" in p.stderr and "Traceback" not in p.stderr
