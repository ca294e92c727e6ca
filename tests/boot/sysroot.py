"""Compose the tiny distribution and deploy it into a sysroot with the ``hybridos`` command line.

:func:`compose` runs ``hybridos compose tree`` (so depmod and the initramfs generator run as for a user);
:func:`deploy_sysroot` makes a sysroot (``admin init-fs``/``os-init``, optional ``[sysroot]`` options and
bootloader detection files), pulls the ref from the composed repository over ``file://`` and runs
``admin deploy`` with the given kernel arguments. :func:`bls_entries` reads the entries a bootloader would read.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.boot.distro import STATEROOT
from tests.conftest import run_cli


@dataclass(frozen=True)
class Composed:
    repo: Path
    ref: str
    commit: str


def compose(workdir: Path, rpm_repo_url: str, treefile_text: str, ref: str, *, repo: Path | None = None,
            cachedir: Path | None = None, args: tuple[str, ...] = ()) -> Composed:
    """Compose ``treefile_text`` (whose repos name ``boottest``) into ``repo`` (an archive repo, made if new)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "boottest.repo").write_text(f"[boottest]\nname=boottest\nbaseurl={rpm_repo_url}\ngpgcheck=0\n")
    tf = workdir / "treefile.yaml"
    tf.write_text(treefile_text)
    repo = repo or workdir / "repo"
    if not (repo / "config").exists():
        run_cli("repo", "init", "--repo", str(repo), "--mode", "archive")
    result = workdir / "compose.json"
    run_cli("compose", "tree", str(tf), "--repo", str(repo), "--cachedir", str(cachedir or workdir / "cache"),
            "--write-composejson-to", str(result), *args)
    wait_for_compose_trash(repo)
    return Composed(repo=repo, ref=ref, commit=json.loads(result.read_text())["ostree-commit"])


def wait_for_compose_trash(repo: Path, timeout: float = 120) -> None:
    """Wait until compose's detached removal of its work tree (in ``repo/tmp``) is done, so the repository
    can be copied or packed into a disk image without files vanishing under the copy."""
    deadline = time.monotonic() + timeout
    while list((repo / "tmp").glob(".hybridos-trash-*")):
        if time.monotonic() > deadline:
            raise AssertionError(f"compose's work tree in {repo}/tmp was not removed within {timeout} s")
        time.sleep(0.1)


def deploy_sysroot(root: Path, composed: Composed, kargs: list[str], *,
                   options: dict[str, str] | None = None,
                   prepare: Callable[[Path], None] | None = None) -> Path:
    """A new sysroot at ``root`` with ``composed.ref`` deployed (stateroot ``testos``); returns the deployment.

    ``options`` go to ``[sysroot]`` in the sysroot repo's config; ``prepare(root)`` runs before the deploy
    (create ``boot/grub/grub.cfg``, ``boot/loader/entries``... so the bootloader is detected)."""
    run_cli("admin", "init-fs", str(root))
    run_cli("admin", "os-init", "--sysroot", str(root), STATEROOT)
    if options:
        with open(root / "ostree/repo/config", "a") as f:
            f.write("\n[sysroot]\n" + "".join(f"{k}={v}\n" for k, v in options.items()))
    if prepare is not None:
        prepare(root)
    run_cli("--sysroot", str(root), "repo", "remote", "add", "--no-gpg-verify", "origin",
            f"file://{composed.repo}", composed.ref)
    run_cli("--sysroot", str(root), "repo", "pull", "origin", composed.ref)
    run_cli("admin", "deploy", "--sysroot", str(root), "--os", STATEROOT,
            *[a for k in kargs for a in ("--karg", k)], f"origin:{composed.ref}")
    return current_deployment(root)


def upgrade_sysroot(root: Path, composed: Composed) -> Path:
    """Pull the new commit of the ref and deploy it on top (what ``hybridos upgrade`` does offline)."""
    run_cli("--sysroot", str(root), "repo", "pull", "origin", composed.ref)
    run_cli("admin", "deploy", "--sysroot", str(root), "--os", STATEROOT, f"origin:{composed.ref}")
    return current_deployment(root)


def current_deployment(root: Path) -> Path:
    """The default deployment: what the first BLS entry's ostree= resolves to."""
    entry = bls_entries(root)[0]
    karg = next(a for a in entry["options"].split() if a.startswith("ostree="))
    return Path(os.path.realpath(root / karg.removeprefix("ostree=").lstrip("/")))


def write_var_data(root: Path, text: str) -> Path:
    """Write ``/var/lib/boottest/data`` of the stateroot (what the guest must find in its /var)."""
    p = root / "ostree/deploy" / STATEROOT / "var/lib/boottest/data"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text + "\n")
    return p


def bls_entries(root: Path, boot: Path | None = None) -> list[dict[str, str]]:
    """BLS entries of ``boot`` (default ``root/boot``) from its ``loader/entries``, default first."""
    entries_dir = (boot or root / "boot") / "loader/entries"
    out = []
    for f in entries_dir.glob("*.conf"):
        entry: dict[str, str] = {"file": f.name}
        for line in f.read_text().splitlines():
            key, _, value = line.strip().partition(" ")
            if key == "options":
                entry["options"] = (entry.get("options", "") + " " + value.strip()).strip()
            elif key:
                entry.setdefault(key, value.strip())
        out.append(entry)
    out.sort(key=lambda e: int(e.get("version", "0")), reverse=True)
    return out
