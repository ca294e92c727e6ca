"""Fixtures for container image tests: a small distribution composed twice (v2 changes one package), a
sysroot deployed from v1, and Debian's docker-registry on 127.0.0.1 with containers' registries.conf
marking it plain HTTP (as a user would configure a local registry)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.compose.conftest import BUSYBOX, distro_specs
from tests.conftest import require_root, require_tool, run_cli
from tests.helpers.rpms import File, Pkg, make_repo

STATEROOT = "testos"
PACKAGES = "filesystem, busybox, testos-release, kernel, hello, bloat, extra-data"
TREEFILE = """\
ref: {ref}
releasever: 39
repos: [testos]
automatic-version-prefix: "{version}"
packages: [{packages}]
selinux: false
"""


def extra_data(version: str, payload: bytes) -> Pkg:
    return Pkg("extra-data", version, arch="noarch", files=(
        File("/usr/share/extra-data/payload", payload, mode=0o644),
        File("/usr/share/extra-data/version", version.encode(), mode=0o644)))


@dataclass
class Env:
    base: Path
    repo: Path            #: archive repository with testos/v1 and testos/v2
    v1: str
    v2: str
    template: Path        #: a sysroot with v1 deployed from the local ref testos/v1


def _compose(cfg: Path, repo: Path, ref: str, version: str) -> str:
    tf = cfg / f"{version}.yaml"
    tf.write_text(TREEFILE.format(ref=ref, version=version, packages=PACKAGES))
    out = cfg / f"{version}.json"
    run_cli("compose", "tree", str(tf), "--repo", str(repo), "--cachedir", str(cfg / "cache"),
            "--write-composejson-to", str(out))
    return json.loads(out.read_text())["ostree-commit"]


@pytest.fixture(scope="session")
def container_env(tmp_path_factory) -> Env:
    require_root()
    require_tool("rpm", "ostree", "bwrap", "cpio", "skopeo", "umoci")
    if not BUSYBOX.exists():
        require_tool("busybox")
    base = tmp_path_factory.mktemp("container")
    payload = os.urandom(300_000)
    cfg = base / "compose"
    cfg.mkdir()
    repo1 = make_repo(base / "rpms1", [*distro_specs(), extra_data("1.0", payload)])
    repo2 = make_repo(base / "rpms2", [*distro_specs(), extra_data("2.0", payload[::-1])])
    sr = base / "template"
    run_cli("admin", "init-fs", str(sr))
    run_cli("--sysroot", str(sr), "admin", "os-init", STATEROOT)
    repo = sr / "ostree/repo"
    (cfg / "test.repo").write_text(f"[testos]\nname=TestOS\nbaseurl={repo1.url}\ngpgcheck=0\n")
    v1 = _compose(cfg, repo, "testos/v1", "1")
    (cfg / "test.repo").write_text(f"[testos]\nname=TestOS\nbaseurl={repo2.url}\ngpgcheck=0\n")
    (cfg / "cache").rename(cfg / "cache1")
    v2 = _compose(cfg, repo, "testos/v2", "2")
    run_cli("--sysroot", str(sr), "admin", "deploy", "--os", STATEROOT, "--karg", "root=/dev/vda1", "testos/v1")
    return Env(base, repo, v1, v2, sr)


@pytest.fixture
def host(container_env, tmp_path) -> Path:
    """A private copy of the template sysroot (v1 deployed from an OSTree ref)."""
    sr = tmp_path / "sysroot"
    subprocess.run(["cp", "-a", str(container_env.template), str(sr)], check=True)
    return sr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Registry:
    host: str             #: 127.0.0.1:PORT
    env: dict             #: environment for skopeo and hybridos (registries.conf marking it insecure)
    log: Path

    def blob_gets(self) -> list[str]:
        """The blob digests fetched so far (from the registry's access log)."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if '"GET /v2/' in line and "/blobs/sha256:" in line and '" 200 ' in line:
                out.append(line.split("/blobs/")[1].split()[0])
        return out


@pytest.fixture
def registry(tmp_path) -> Registry:
    require_tool("docker-registry", "skopeo")
    port = free_port()
    root = tmp_path / "registry"
    root.mkdir()
    config = root / "config.yml"
    config.write_text(f"""\
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {root}/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
""")
    conf = root / "registries.conf"
    conf.write_text(f'[[registry]]\nlocation = "127.0.0.1:{port}"\ninsecure = true\n')
    log = root / "log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=logf, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"docker-registry did not start:\n{log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        env = {"CONTAINERS_REGISTRIES_CONF": str(conf)}
        yield Registry(f"127.0.0.1:{port}", env, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def hyb(sysroot: Path, *args: str, check: bool = True, env: dict | None = None):
    return run_cli("--sysroot", str(sysroot), *args, check=check, env=env)


def status(sysroot: Path, env: dict | None = None) -> list[dict]:
    return json.loads(hyb(sysroot, "status", "--json", env=env).stdout)["deployments"]


def deployment_dir(sysroot: Path, dep: dict) -> Path:
    return sysroot / f"ostree/deploy/{dep['osname']}/deploy/{dep['checksum']}.{dep['serial']}"
