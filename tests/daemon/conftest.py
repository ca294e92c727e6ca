"""Fixtures: the sysroot tests' served remote and deployed host, and a host composed from real RPMs whose
origin is a real remote served over HTTP (so updates carry an rpm diff and packages can be layered)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.layering.conftest import layering_env  # noqa: F401
from tests.sysroot.conftest import host, remote, workdir  # noqa: F401


@dataclass
class RpmHost:
    sysroot: Path
    remote_repo: Path
    v1: str
    v2: str

    def publish_v2(self) -> str:
        """Commit the composed v2 tree (v1 plus the package "unrequested") as version 2 of the remote's
        testos/stable (the composed commit itself is bound to its own ref); ``v2`` becomes that commit."""
        out = ostree(f"--repo={self.remote_repo}", "commit", "--branch=testos/stable", "--tree=ref=testos/v2",
                     "--subject=v2", "--add-metadata-string=version=2")
        ostree(f"--repo={self.remote_repo}", "summary", "-u")
        self.v2 = out.strip()
        return self.v2


def ostree(*args: str) -> str:
    r = subprocess.run(["ostree", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"ostree {' '.join(args)}: {r.stderr}")
    return r.stdout


@pytest.fixture
def rpm_host(layering_env, tmp_path):  # noqa: F811
    """The layering template (v1 composed from RPMs, the extras package repository) rebased onto
    ``origin:testos/stable`` of an archive repository served on 127.0.0.1 that has v1; v2 is there too,
    under another ref, until ``publish_v2``."""
    from tests.conftest import run_cli
    from tests.helpers.httpserver import serve

    env = layering_env
    sr = tmp_path / "sysroot"
    subprocess.run(["cp", "-a", str(env.template), str(sr)], check=True)
    env.server.requests.clear()
    remote_dir = tmp_path / "remote"
    ostree(f"--repo={remote_dir}", "init", "--mode=archive")
    ostree(f"--repo={remote_dir}", "pull-local", f"{sr}/ostree/repo", env.v1, env.v2)
    ostree(f"--repo={remote_dir}", "refs", "--create=testos/stable", env.v1)
    ostree(f"--repo={remote_dir}", "refs", "--create=testos/v2", env.v2)
    ostree(f"--repo={remote_dir}", "summary", "-u")
    with serve(remote_dir) as srv:
        ostree(f"--repo={sr}/ostree/repo", "remote", "add", "--no-gpg-verify", "origin", srv.url)
        local = {"HYBRIDOS_NO_DAEMON": "1"}
        run_cli("--sysroot", str(sr), "rebase", "origin:testos/stable", env=local)
        run_cli("--sysroot", str(sr), "cleanup", "-r", env=local)   # one deployment: v1 from the remote
        yield RpmHost(sr, remote_dir, env.v1, env.v2)
