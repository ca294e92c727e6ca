"""Packages a compose must not put into an image as they are (docs/security.md, "Packages and scriptlets"):
/usr/etc and what lies below kernel mount points are one-line errors naming the package; /boot content merges into
/usr/lib/ostree-boot."""

from __future__ import annotations

import textwrap

import pytest

from hybridos.ostree.repo import Repo
from tests.compose.conftest import BASE_TREEFILE, write_treefile
from tests.compose.test_compose import compose, init_repo
from tests.conftest import require_root
from tests.helpers.rpms import File, Pkg, make_repo


@pytest.fixture(scope="module")
def extras(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("extras") / "repo", [
        Pkg("usretc", "1.0", arch="noarch", files=(File("/usr/etc/passwd", b"evil:x:0:0::/:/bin/sh\n"),)),
        Pkg("procfile", "1.0", arch="noarch", files=(File("/proc/evil", b"x\n"),)),
        Pkg("bootefi", "1.0", arch="noarch", files=(File("/boot/efi/EFI/test/shim.efi", b"shim\n"),)),
        Pkg("ostreebootefi", "1.0", arch="noarch",
            files=(File("/usr/lib/ostree-boot/efi/EFI/test/grub.efi", b"grub\n"),)),
    ])


def _treefile(treedir, extras, packages: str):
    (treedir / "extras.repo").write_text(textwrap.dedent(f"""\
        [extras]
        name=extras
        baseurl={extras.url}
        gpgcheck=0
        """))
    return write_treefile(treedir, BASE_TREEFILE.replace("repos: [testos]", "repos: [testos, extras]")
                          .replace("hello]", f"hello, {packages}]"))


@pytest.mark.parametrize("package,needle", [
    ("usretc", "usretc-1.0-1.noarch: cannot install '/usr/etc/passwd': /usr/etc holds the image's defaults"),
    ("procfile", "procfile-1.0-1.noarch: cannot install '/proc/evil': /proc is mounted over"),
])
def test_usr_etc_and_mount_points_are_refused(tmp_path, treedir, extras, package, needle):
    require_root()
    repo = init_repo(tmp_path / "repo")
    p = compose(_treefile(treedir, extras, package), repo, check=False)
    assert p.returncode == 1 and needle in p.stderr, p.stderr
    assert "internal error" not in p.stderr and len(p.stderr.strip().splitlines()) <= 2
    assert Repo.open(repo).list_refs() == {}


def test_boot_content_merges_into_usr_lib_ostree_boot(tmp_path, treedir, extras):
    """Both packages have efi/EFI/test: /boot's moved onto the existing directory (it was ENOTEMPTY)."""
    require_root()
    repo = init_repo(tmp_path / "repo")
    cid = tmp_path / "cid"
    compose(_treefile(treedir, extras, "bootefi, ostreebootefi"), repo, "--write-commitid-to", str(cid))
    co = tmp_path / "co"
    Repo.open(repo).checkout(cid.read_text(), co)
    assert (co / "usr/lib/ostree-boot/efi/EFI/test/shim.efi").read_bytes() == b"shim\n"
    assert (co / "usr/lib/ostree-boot/efi/EFI/test/grub.efi").read_bytes() == b"grub\n"
    assert list((co / "boot").iterdir()) == []
