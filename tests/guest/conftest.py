"""A small distribution that carries hybridos itself, and a booted host simulated without a virtual machine.

:func:`guest_repo` holds real RPMs: a filesystem layout, the static busybox, an os-release, a stand-in kernel and
the packages of :mod:`tests.helpers.guest_python` (this machine's Python and hybridos). :class:`GuestOS`
composes versions of it into an archive repository and deploys them into a temporary sysroot with the host's
hybridos. :func:`run_booted` enters a deployment the way the initramfs does (bind-mounted as ``/`` with
``/sysroot``, the stateroot's ``/var``, ``/boot`` and a read-only ``/usr``, ``/run/ostree-booted``, a
``/proc/cmdline`` naming the deployment) inside a private mount namespace (``unshare -m``) and runs a command
there with ``chroot``: what the deployment's own hybridos does on a booted system, with the machine's real
``/`` untouched.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.conftest import require_root, require_tool, run_cli
from tests.helpers.guest_python import build_guest_rpms
from tests.helpers.rpms import File, Pkg, make_repo

BUSYBOX = Path("/bin/busybox")
KVER = "6.1.0-guest"
STATEROOT = "guestos"
REF = "guestos/x86_64/stable"
OS_RELEASE = b'NAME="GuestOS"\nID=guestos\nVERSION_ID=1\nPRETTY_NAME="GuestOS 1"\n'
APPLETS = ("sh", "cat", "echo", "ls", "mkdir", "mount", "umount", "touch", "rm", "test", "sync", "reboot",
           "poweroff", "sleep", "grep", "readlink", "switch_root", "findfs", "modprobe", "mknod", "cp", "ln", "env", "cut")


def base_specs() -> list[Pkg]:
    """filesystem, busybox, guestos-release and a stand-in kernel: what the guest needs besides hybridos."""
    bb = BUSYBOX.read_bytes()
    return [
        Pkg("filesystem", "1", arch="noarch", files=(
            File("/etc", dir=True, mode=0o755), File("/usr", dir=True, mode=0o755),
            File("/usr/bin", dir=True, mode=0o755), File("/usr/sbin", dir=True, mode=0o755),
            File("/usr/lib", dir=True, mode=0o755), File("/bin", symlink="usr/bin"),
            File("/sbin", symlink="usr/sbin"), File("/lib", symlink="usr/lib"),
            File("/var", dir=True, mode=0o755), File("/tmp", dir=True, mode=0o1777),
            File("/boot", dir=True, mode=0o755),
            File("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", mode=0o644, noreplace=True),
            File("/etc/group", b"root:x:0:\n", mode=0o644, noreplace=True))),
        Pkg("busybox", "1.35.0", requires=("filesystem",), provides=("/bin/sh",),
            files=(File("/usr/bin/busybox", bb, mode=0o755),
                   *(File(f"/usr/bin/{a}", symlink="busybox") for a in APPLETS))),
        Pkg("guestos-release", "1", arch="noarch", requires=("filesystem",), files=(
            File("/usr/lib/os-release", OS_RELEASE, mode=0o644),)),
        Pkg("kernel", "6.1.0", release="guest", requires=("filesystem",), files=(
            File(f"/usr/lib/modules/{KVER}/vmlinuz", b"\x7fnot a kernel" * 64, mode=0o755),)),
    ]


@pytest.fixture(scope="session")
def guest_repo(tmp_path_factory):
    """An rpm-md repository with the base packages and hybridos with its Python runtime."""
    if not BUSYBOX.exists():
        require_tool("busybox")
    d = tmp_path_factory.mktemp("guest-rpms")
    rpms = build_guest_rpms(d / "built")
    return make_repo(d / "repo", [*base_specs(), *rpms])


TREEFILE = """\
ref: {ref}
repos: [guest]
automatic-version-prefix: "1"
packages: [filesystem, busybox, guestos-release, kernel, hybridos, hybridos-repo-fs, hybridos-bootloader-grub]
add-files:
  - [marker, /usr/lib/guest-marker]
selinux: false
"""


class GuestOS:
    """Versions of the guest composed into ``repo`` (archive); each has ``/usr/lib/guest-marker`` = its name."""

    def __init__(self, work: Path, rpm_repo):
        self.work = work
        self.repo = work / "remote"
        self.config = work / "config"
        self.config.mkdir(parents=True)
        (self.config / "guest.repo").write_text(f"[guest]\nname=guest\nbaseurl={rpm_repo.url}\ngpgcheck=0\n")
        (self.config / "treefile.yaml").write_text(TREEFILE.format(ref=REF))
        run_cli("repo", "init", "--repo", str(self.repo), "--mode", "archive")

    def compose(self, marker: str) -> str:
        """Compose a version whose marker file says ``marker``; returns the commit."""
        (self.config / "marker").write_text(marker + "\n")
        out = self.work / "compose.json"
        run_cli("compose", "tree", str(self.config / "treefile.yaml"), "--repo", str(self.repo),
                "--cachedir", str(self.work / "cache"), "--write-composejson-to", str(out))
        run_cli("repo", "summary", "--repo", str(self.repo), "-u")
        return json.loads(out.read_text())["ostree-commit"]


def make_sysroot(path: Path, pull_from: Path, remote_url: str = "file:///run/repo",
                 kargs: tuple[str, ...] = ("root=LABEL=root", "rw")) -> Path:
    """A sysroot with the guest's ref pulled from ``pull_from`` and deployed; the remote ``origin`` is
    ``remote_url`` (by default where :func:`run_booted` shows the repository)."""
    run_cli("admin", "init-fs", str(path))
    run_cli("--sysroot", str(path), "admin", "os-init", STATEROOT)
    run_cli("repo", "remote", "add", "--repo", str(path / "ostree/repo"), "--no-gpg-verify", "origin", remote_url)
    run_cli("repo", "pull", "--repo", str(path / "ostree/repo"), "--url", pull_from.as_uri(), "origin", REF)
    run_cli("--sysroot", str(path), "admin", "deploy", "--os", STATEROOT,
            *(a for k in kargs for a in ("--karg", k)), f"origin:{REF}")
    return path


BOOTED_SCRIPT = r"""
set -e
S=$1 D=$2 N=$3 CMDLINE=$4 RO=$5 REPO=$6 SCRIPT=$7 BOOT=$8
mount --bind "$D" "$N"
mount --bind "$S" "$N/sysroot"
mount --bind "$S/ostree/deploy/{stateroot}/var" "$N/var"
if [ "$BOOT" = 1 ]; then mount --bind "$S/boot" "$N/boot"; fi
mount --bind "$N/usr" "$N/usr"
mount -o remount,bind,ro "$N/usr"
if [ "$RO" = 1 ]; then
    mount -o remount,bind,ro "$N/sysroot"
    if [ "$BOOT" = 1 ]; then mount -o remount,bind,ro "$N/boot"; fi
fi
mount -t proc proc "$N/proc"
mount --bind "$CMDLINE" "$N/proc/cmdline"
mount --bind /dev "$N/dev"
mount -t tmpfs -o mode=0755 tmpfs "$N/run"
: > "$N/run/ostree-booted"
if [ -n "$REPO" ]; then
    mkdir -p "$N/run/repo"
    mount --bind "$REPO" "$N/run/repo"
    mount -o remount,bind,ro "$N/run/repo"
fi
# not exec: this shell stays pid 1 of the namespace, in the mount namespace hybridos starts in (like init)
chroot "$N" /usr/bin/env -i PATH=/usr/bin:/usr/sbin HOME=/ /bin/sh -ec "$SCRIPT"
"""


def run_booted(sysroot: Path, script: str, *, index: int | None = None, read_only: bool = True,
               repo: Path | None = None, boot: bool = True, check: bool = True) -> subprocess.CompletedProcess:
    """Run the shell ``script`` (``sh -e``) in deployment ``index`` (default: the default one, as a reboot
    would) as if the machine had booted it, in new mount and pid namespaces whose pid 1 is a shell (as init).

    ``read_only``: ``/sysroot`` and ``/boot`` are read-only mounts, as with ostree's ``sysroot.readonly``.
    ``repo`` is visible read-only at ``/run/repo``. ``boot=False`` leaves ``/boot`` unmounted (the
    deployment's own empty directory), as on a system whose boot partition failed to mount.
    """
    require_root()
    require_tool("unshare", "chroot", "mount")
    from hybridos.sysroot.sysroot import Sysroot

    s = Sysroot.load(sysroot)
    dep = s.deployments[0 if index is None else index]
    cmdline = sysroot.parent / f"cmdline-{dep.name}"
    cmdline.write_text(f"BOOT_IMAGE=/vmlinuz {s.entries[dep.name].options}\n")
    newroot = sysroot.parent / "newroot"
    newroot.mkdir(exist_ok=True)
    setup = BOOTED_SCRIPT.replace("{stateroot}", dep.stateroot)
    proc = subprocess.run(["unshare", "-m", "-p", "-f", "--propagation", "private", "sh", "-c", setup, "booted",
                           str(sysroot), str(sysroot / dep.relpath), str(newroot), str(cmdline),
                           "1" if read_only else "0", str(repo or ""), script, "1" if boot else "0"],
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"the script in the booted deployment exited {proc.returncode}\n{script}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.fixture
def guest_os(tmp_path, guest_repo) -> GuestOS:
    return GuestOS(tmp_path / "guest", guest_repo)


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip()
