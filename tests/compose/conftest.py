"""Fixtures for compose tests: a small real distribution (RPMs built with rpm-rs, createrepo_c repodata)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.helpers.rpms import File, Pkg, make_repo

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "echo", "cat", "touch", "mkdir", "rm", "ls", "test", "printf", "grep", "true", "false", "ln",
           "mount", "switch_root", "readlink", "sleep", "env", "id")
KVER = "6.5.0-1.test.x86_64"
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nhello:x:990:990::/var/lib/hello:/sbin/nologin\n"
GROUP = b"root:x:0:\nwheel:x:10:\nhello:x:990:\n"
OS_RELEASE = b'NAME="TestOS"\nVERSION="39 (Test)"\nID=testos\nVERSION_ID=39\nPRETTY_NAME="TestOS 39 (Test)"\n'


def distro_specs() -> list[Pkg]:
    bb = BUSYBOX.read_bytes()
    return [
        Pkg("filesystem", "3.18", arch="noarch", files=(
            File("/etc", dir=True, mode=0o755), File("/usr", dir=True, mode=0o755),
            File("/usr/bin", dir=True, mode=0o755), File("/usr/lib", dir=True, mode=0o755),
            File("/usr/share", dir=True, mode=0o755), File("/bin", symlink="usr/bin"),
            File("/var", dir=True, mode=0o755), File("/var/tmp", dir=True, mode=0o1777),
            File("/var/log", dir=True, mode=0o755), File("/var/lib", dir=True, mode=0o755),
            File("/tmp", dir=True, mode=0o1777), File("/root", dir=True, mode=0o550),
            File("/home", dir=True, mode=0o755), File("/opt", dir=True, mode=0o755),
            File("/boot", dir=True, mode=0o755),
            File("/etc/passwd", PASSWD, mode=0o644, noreplace=True),
            File("/etc/group", GROUP, mode=0o644, noreplace=True),
        )),
        Pkg("busybox", "1.35.0", arch="noarch", requires=("filesystem",), provides=("/bin/sh",),
            files=(File("/usr/bin/busybox", bb, mode=0o755),
                   *(File(f"/usr/bin/{a}", symlink="busybox") for a in APPLETS))),
        Pkg("testos-release", "39", arch="noarch", requires=("filesystem",), files=(
            File("/usr/lib/os-release", OS_RELEASE, mode=0o644),
            File("/etc/os-release", symlink="../usr/lib/os-release"))),
        Pkg("kernel", "6.5.0", release="1.test", requires=("filesystem",), files=(
            File(f"/usr/lib/modules/{KVER}/vmlinuz", b"\x7fkernel-image" * 100, mode=0o755),
            File(f"/usr/lib/modules/{KVER}/modules.dep", b"", mode=0o644))),
        Pkg("libfoo", "2.1", requires=("filesystem",), files=(File("/usr/lib/libfoo.so.2", b"\x7fELFfoo", mode=0o755),)),
        Pkg("hello", "1.0", requires=("libfoo >= 2", "busybox"), recommends=("bloat",), files=(
            File("/usr/bin/hello", b"#!/bin/sh\necho hello\n", mode=0o755),
            File("/etc/hello.conf", b"greeting=hi\n", config=True, noreplace=True),
            File("/var/lib/hello", dir=True, mode=0o750),
            File("/usr/share/doc/hello/README", b"read me\n", doc=True)),
            post="mkdir -p /usr/share/hello && echo \"post ran with $1\" > /usr/share/hello/post-ran\n"),
        Pkg("bloat", "1.0", arch="noarch", files=(File("/usr/share/bloat", b"x" * 1000),)),
        Pkg("needs-bloat", "1.0", arch="noarch", requires=("bloat",)),
        Pkg("unrequested", "1.0", arch="noarch", files=(File("/usr/share/unrequested", b"u"),)),
        Pkg("badpost", "1.0", arch="noarch", requires=("busybox",),
            post="echo 'badpost: the scriptlet exploded' >&2\nexit 3\n"),
        Pkg("x86-tool", "1.0", arch="x86_64"),
        Pkg("arm-tool", "1.0", arch="aarch64"),
        Pkg("ppc-tool", "1.0", arch="ppc64le"),
    ]


@pytest.fixture(scope="session")
def distro_repo(tmp_path_factory):
    """A repository of real RPMs: filesystem, busybox, release, kernel, libfoo, hello (with %post) and more."""
    if not BUSYBOX.exists():
        require_tool("busybox")
    return make_repo(tmp_path_factory.mktemp("distro") / "repo", distro_specs())


@pytest.fixture
def treedir(tmp_path, distro_repo) -> Path:
    """A directory with ``test.repo`` pointing at the distro repository (repo id ``testos``)."""
    d = tmp_path / "config"
    d.mkdir()
    (d / "test.repo").write_text(textwrap.dedent(f"""\
        [testos]
        name=TestOS $releasever for $basearch
        baseurl={distro_repo.url}
        gpgcheck=0
        """))
    return d


def write_treefile(d: Path, body: str, name: str = "treefile.yaml") -> Path:
    p = d / name
    p.write_text(textwrap.dedent(body))
    return p


BASE_TREEFILE = """\
ref: testos/39/${basearch}/base
releasever: 39
repos: [testos]
automatic-version-prefix: "39.<date:%Y%m%d>"
mutate-os-release: "39"
packages: [filesystem, busybox, testos-release, kernel, hello]
selinux: false
"""
