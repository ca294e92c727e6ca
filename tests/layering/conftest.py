"""Fixtures for layering tests: base images composed from real RPMs into a sysroot, and a host package
repository of real RPMs served over HTTP on 127.0.0.1.

The session builds one template sysroot (v1 deployed from the local ref ``testos/stable``, v2 and v3 composed
into ``testos/v2``/``testos/v3``); each test gets its own copy (``cp -a`` keeps the hardlinks).
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.compose.conftest import BUSYBOX, KVER, distro_specs
from tests.conftest import require_root, require_tool, run_cli
from tests.helpers.rpms import File, Pkg, build_rpm, make_repo

STATEROOT = "testos"


def layer_specs() -> list[Pkg]:
    """Packages layered in the tests (also in the compose repository, so a base can include them)."""
    return [
        Pkg("layered-tool", "1.0", arch="noarch", requires=("libbar", "busybox"), files=(
            File("/usr/bin/layered-tool", b"#!/bin/sh\necho layered\n", mode=0o755),
            File("/etc/layered.conf", b"layered=1\n", config=True, noreplace=True),
            File("/var/lib/layered", dir=True, mode=0o750)),
            post="mkdir -p /usr/share/layered && echo \"layered post ran with $1\" > /usr/share/layered/post-ran\n"
                 "echo 'layered-tool post says hi'\n"),
        Pkg("libbar", "1.0", arch="noarch", files=(File("/usr/lib/libbar.so.1", b"\x7fELFbar", mode=0o755),)),
    ]


def host_specs() -> list[Pkg]:
    """The host's repository: the layerable packages and the troublemakers."""
    return [
        *layer_specs(),
        Pkg("clobber", "1.0", arch="noarch", files=(File("/usr/bin/hello", b"#!/bin/sh\necho clobbered\n",
                                                           mode=0o755),)),
        Pkg("clobber-initramfs", "1.0", arch="noarch",
            files=(File(f"/usr/lib/modules/{KVER}/initramfs.img", b"not an initramfs\n", mode=0o644),)),
        Pkg("libfoo", "3.0", files=(File("/usr/lib/libfoo.so.3", b"\x7fELFfoo3", mode=0o755),)),
        Pkg("needs-newer-libfoo", "1.0", arch="noarch", requires=("libfoo >= 3",)),
        Pkg("unsat", "1.0", arch="noarch", requires=("doesnotexist",)),
        Pkg("appender", "1.0", arch="noarch", requires=("busybox",),
            post="echo 'appended by a scriptlet' >> /usr/lib/os-release\n"),
        Pkg("sleeper", "1.0", arch="noarch", requires=("busybox",), post="sleep 60\n"),
        Pkg("failpost", "1.0", arch="noarch", requires=("busybox",),
            files=(File("/usr/share/failpost/data", b"x"),),
            post="echo 'failpost: the scriptlet exploded' >&2\nexit 3\n"),
    ]


def hello2_spec() -> Pkg:
    return Pkg("hello", "2.0", requires=("libfoo >= 2", "busybox"), files=(
        File("/usr/bin/hello", b"#!/bin/sh\necho hello two\n", mode=0o755),
        File("/etc/hello.conf", b"greeting=hi\n", config=True, noreplace=True)))


TREEFILE = """\
ref: {ref}
releasever: 39
repos: [testos]
automatic-version-prefix: "{version}"
packages: [{packages}]
selinux: false
"""
V1 = "filesystem, busybox, testos-release, kernel, hello"


@dataclass
class Env:
    template: Path
    v1: str
    v2: str
    v3: str
    server: object          #: the HTTP server of the host repository
    host_repo: object       #: tests.helpers.rpms.Repo
    rpmdir: Path            #: local RPM files (hello 2.0)


def _compose(workdir: Path, repo: Path, ref: str, version: str, packages: str) -> str:
    tf = workdir / f"{ref.replace('/', '-')}.yaml"
    tf.write_text(TREEFILE.format(ref=ref, version=version, packages=packages))
    out = workdir / f"{ref.replace('/', '-')}.id"
    run_cli("compose", "tree", str(tf), "--repo", str(repo), "--cachedir", str(workdir / "cache"),
            "--write-composejson-to", str(out))
    return json.loads(out.read_text())["ostree-commit"]


@pytest.fixture(scope="session")
def layering_env(tmp_path_factory):
    require_root()
    require_tool("rpm", "ostree", "bwrap", "cpio")
    if not BUSYBOX.exists():
        require_tool("busybox")
    from tests.helpers.httpserver import serve

    base = tmp_path_factory.mktemp("layering")
    compose_repo = make_repo(base / "compose-repo", [*distro_specs(), *layer_specs()])
    host_repo = make_repo(base / "host-repo", host_specs())
    rpmdir = base / "local-rpms"
    build_rpm(hello2_spec(), rpmdir)
    cfg = base / "compose"
    cfg.mkdir()
    (cfg / "test.repo").write_text(f"[testos]\nname=TestOS\nbaseurl={compose_repo.url}\ngpgcheck=0\n")

    sr = base / "template"
    run_cli("admin", "init-fs", str(sr))
    run_cli("--sysroot", str(sr), "admin", "os-init", STATEROOT)
    repo = sr / "ostree/repo"
    v1 = _compose(cfg, repo, "testos/stable", "1", V1)
    v2 = _compose(cfg, repo, "testos/v2", "2", V1 + ", unrequested")
    v3 = _compose(cfg, repo, "testos/v3", "3", V1 + ", unrequested, layered-tool")
    run_cli("--sysroot", str(sr), "admin", "deploy", "--os", STATEROOT, "--karg", "root=/dev/vda1",
            "testos/stable")
    with serve(host_repo.path) as srv:
        [dep] = status(sr)
        repos_d = deployment_dir(sr, dep) / "etc/yum.repos.d"
        repos_d.mkdir(parents=True, exist_ok=True)
        (repos_d / "extras.repo").write_text(textwrap.dedent(f"""\
            [extras]
            name=Extras for $basearch
            baseurl={srv.url}
            gpgcheck=0
            """))
        yield Env(sr, v1, v2, v3, srv, host_repo, rpmdir)


@pytest.fixture
def host(layering_env, tmp_path) -> Path:
    """A private copy of the template sysroot (v1 deployed, the extras repository configured)."""
    sr = tmp_path / "sysroot"
    subprocess.run(["cp", "-a", str(layering_env.template), str(sr)], check=True)
    layering_env.server.requests.clear()
    return sr


def hyb(sysroot: Path, *args: str, check: bool = True):
    return run_cli("--sysroot", str(sysroot), *args, check=check)


def status(sysroot: Path) -> list[dict]:
    return json.loads(run_cli("--sysroot", str(sysroot), "status", "--json").stdout)["deployments"]


def deployment_dir(sysroot: Path, dep: dict) -> Path:
    return sysroot / f"ostree/deploy/{dep['osname']}/deploy/{dep['checksum']}.{dep['serial']}"


def rpm_q(tree: Path, *names: str) -> subprocess.CompletedProcess:
    return subprocess.run(["rpm", "--root", str(tree), "--dbpath", "/usr/share/rpm", "-q", *names],
                          capture_output=True, text=True, env=dict(os.environ, LC_ALL="C"))


def set_ref(sysroot: Path, ref: str, commit: str) -> None:
    from hybridos.ostree.repo import Repo

    Repo.open(sysroot / "ostree/repo").set_ref(ref, commit)
