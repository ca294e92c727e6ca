"""Hostile package headers: fields that become file names are validated (docs/security.md, "Packages and
scriptlets")."""

from __future__ import annotations

import os

import pytest

from hybridos.errors import PackageError
from hybridos.layering.assemble import import_local_rpm, local_store
from hybridos.ostree.repo import Repo
from hybridos.packages.model import Nevra, check_path_safe
from tests.helpers.rpms import File, Pkg, build_rpm


def _everything(root):
    return {os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root) for n in dirs + files}


PLACEHOLDER = "placeholderplaceholder"


@pytest.mark.parametrize("name", ["../../../../../../escp", "a/../../../../../escpe", ".hidden-package-name.x",
                                  "x\ny-package-name-herex"])
def test_local_rpm_name_cannot_write_outside_the_package_store(tmp_path, name):
    assert len(name) == len(PLACEHOLDER)
    repo = Repo.init(tmp_path / "sysroot/ostree/repo", "bare")
    rpm = build_rpm(Pkg(PLACEHOLDER, files=(File("/usr/share/x", b"x"),)), tmp_path / "rpms")
    evil = tmp_path / "rpms/evil.rpm"
    # the same package with its NAME rewritten in place (rpm's builders refuse such names; headers carry them)
    evil.write_bytes(rpm.read_bytes().replace(PLACEHOLDER.encode(), name.encode()))
    before = _everything(tmp_path)
    with pytest.raises(PackageError, match="package name"):
        import_local_rpm(repo, evil)
    assert _everything(tmp_path) == before
    assert not local_store(repo).exists() or not os.listdir(local_store(repo))


@pytest.mark.parametrize("nevra", [Nevra("ok", 0, "1/../..", "1", "x86_64"), Nevra("ok", 0, "1", "..", "x86_64"),
                                   Nevra("ok", 0, "1", "1", "../x"), Nevra("ok", 0, "1", "1\x1b", "x86_64"),
                                   Nevra("", 0, "1", "1", "noarch")])
def test_every_header_field_in_a_file_name_is_checked(nevra):
    with pytest.raises(PackageError):
        check_path_safe(nevra)
    check_path_safe(Nevra("gcc-c++", 2, "1.2.3~rc1^git", "1.fc39", "x86_64"))
