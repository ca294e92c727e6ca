"""Fixtures for the RPM half of the package system: a tiny real userland (filesystem + static busybox) as RPMs,
and helpers to layer packages onto a tree and ask the real ``rpm`` about it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hybridos.packages.header import read_rpm_header
from hybridos.packages.layer import apply_transaction
from hybridos.packages.model import Action, LayerRequest, Nevra, Transaction, TransactionItem
from tests.conftest import require_root, require_tool
from tests.helpers.rpms import File, Pkg, build_rpm

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "ash", "echo", "cat", "touch", "id", "mkdir", "rm", "ls", "awk", "test", "printf", "sed", "grep",
           "env", "true", "false", "chmod", "head", "wc", "ln", "cp", "mv", "stat", "readlink", "sort", "tr")

PASSWD = b"root:x:0:0:root:/root:/bin/sh\nalice:x:1234:2345::/home/alice:/bin/sh\nbob:x:1500:1500::/:/bin/sh\n"
GROUP = b"root:x:0:\nstaff:x:2345:\nbob:x:1500:\n"

FILESYSTEM = Pkg(
    "filesystem", "3.18", files=(
        File("/bin", dir=True, mode=0o755), File("/etc", dir=True, mode=0o755), File("/usr", dir=True, mode=0o755),
        File("/usr/bin", dir=True, mode=0o755), File("/usr/lib", dir=True, mode=0o755),
        File("/var", dir=True, mode=0o755), File("/var/tmp", dir=True, mode=0o1777),
        File("/tmp", dir=True, mode=0o1777), File("/root", dir=True, mode=0o550),
        File("/etc/passwd", PASSWD, mode=0o644, noreplace=True),
        File("/etc/group", GROUP, mode=0o644, noreplace=True),
    ))


def busybox_pkg() -> Pkg:
    files = [File("/bin/busybox", BUSYBOX.read_bytes(), mode=0o755)]
    files += [File(f"/bin/{a}", symlink="busybox") for a in APPLETS]
    return Pkg("busybox", "1.35.0", requires=("filesystem",), files=tuple(files))


_NEEDS_ROOT = {"test_unpack", "test_rpmdb", "test_scriptlets", "test_layer"}


@pytest.fixture(autouse=True)
def _root_for_trees(request):
    """Unpacking sets owners, setuid bits and security.capability; the sandbox needs namespaces: root only."""
    if request.module.__name__.rsplit(".", 1)[-1] in _NEEDS_ROOT:
        require_root()


@pytest.fixture(scope="session")
def base_rpms(tmp_path_factory) -> dict[str, Path]:
    """filesystem and busybox RPMs (built once per session)."""
    if not BUSYBOX.exists():
        require_tool("busybox")
    out = tmp_path_factory.mktemp("base-rpms")
    return {"filesystem": build_rpm(FILESYSTEM, out), "busybox": build_rpm(busybox_pkg(), out)}


def layer(tree: Path, rpms: list[Path], *, erase: tuple[str, ...] = (), action: Action = Action.INSTALL,
          **kw):
    """Apply a transaction installing ``rpms`` (in order) onto ``tree``."""
    items, paths = [], {}
    for p in rpms:
        h = read_rpm_header(p)
        items.append(TransactionItem(action, h.nevra, location=str(p)))
        paths[str(h.nevra)] = p
    erase_items = [TransactionItem(Action.ERASE, Nevra.parse(n)) for n in erase]
    return apply_transaction(LayerRequest(tree=tree, transaction=Transaction(tuple(erase_items + items)),
                                          rpms=paths, **kw))


@pytest.fixture
def base_tree(tmp_path, base_rpms) -> Path:
    """A tree with filesystem + busybox layered by hybridos."""
    tree = tmp_path / "tree"
    tree.mkdir()
    layer(tree, [base_rpms["filesystem"], base_rpms["busybox"]])
    return tree


def rpm_q(tree: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Ask Debian's rpm about ``tree`` (its sqlite rpmdb at /usr/lib/sysimage/rpm)."""
    require_tool("rpm")
    proc = subprocess.run(["rpm", "--root", str(tree), "--dbpath", "/usr/lib/sysimage/rpm", *args],
                          capture_output=True, text=True, env=dict(os.environ, LC_ALL="C"))
    if check and proc.returncode != 0:
        raise AssertionError(f"rpm {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def rpmbuild_dir(tmp_path):
    require_tool("rpmbuild")
    d = tmp_path / "rpmbuild"
    yield d
    shutil.rmtree(d, ignore_errors=True)
