"""A tiny bootable distribution as real RPMs: filesystem, static busybox, a Debian kernel, a release file and
the boot-test init, in a createrepo_c repository; and the treefile that composes it.

The deployment's ``/sbin/init`` (package ``boottest-init``) checks, from the deployment's own userspace, what
ostree promises a booted system, prints one marker line on the console and powers the machine off::

    HYBRIDOS-BOOT-MARKER version=<VERSION_ID> ostree-booted=yes usr=ro var=<content> etc=<content>

``var`` is ``/var/lib/boottest/data`` (written into the stateroot's var before the image is made, see
:func:`tests.boot.sysroot.write_var_data`), ``etc`` is ``/etc/boottest.conf``. Before powering off it runs
``/etc/boottest/run`` when that file is executable (its output goes to the console), which is where a test
adds its own in-guest steps; ``boottest.noexit`` on the kernel command line keeps the init waiting instead.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from tests.boot.kernels import DebianKernel
from tests.helpers.rpms import File, Pkg, Repo, make_repo

MARKER = "HYBRIDOS-BOOT-MARKER"
STATEROOT = "testos"
RPM_ARCH = {"amd64": "x86_64", "arm64": "aarch64", "ppc64el": "ppc64le"}
OS_RELEASE = 'NAME="TestOS"\nID=testos\nVERSION_ID={v}\nVERSION="{v}"\nPRETTY_NAME="TestOS {v}"\n'
PASSWD = b"root:x:0:0:root:/root:/bin/sh\n"
GROUP = b"root:x:0:\n"

INIT = textwrap.dedent(r"""    #!/bin/sh
    # boot-test init: prove the deployment booted as ostree promises, report it on the console, power off.
    export PATH=/usr/sbin:/usr/bin:/sbin:/bin
    mount -t proc proc /proc 2>/dev/null
    mount -t sysfs sysfs /sys 2>/dev/null
    mount -t devtmpfs devtmpfs /dev 2>/dev/null
    [ -e /run/ostree-booted ] && booted=yes || booted=no
    if touch /usr/.boottest-rw 2>/dev/null; then rm -f /usr/.boottest-rw; usr=rw; else usr=ro; fi
    var=$(head -n 1 /var/lib/boottest/data 2>/dev/null | tr -cd 'A-Za-z0-9_.:-')
    etc=$(head -n 1 /etc/boottest.conf 2>/dev/null | tr -cd 'A-Za-z0-9_.:=-')
    . /usr/lib/os-release
    echo "boottest: cmdline: $(cat /proc/cmdline)"
    echo "HYBRIDOS-BOOT-MARKER version=$VERSION_ID ostree-booted=$booted usr=$usr var=${var:-none} etc=${etc:-none}"
    if [ -x /etc/boottest/run ]; then
        /etc/boottest/run 2>&1
        echo "boottest: /etc/boottest/run exited $?"
    fi
    case " $(cat /proc/cmdline) " in *" boottest.noexit "*) while :; do sleep 3600; done ;; esac
    sync
    poweroff -f
    sleep 10
""")


def busybox_applets(busybox: Path) -> list[str]:
    """Applet names of a busybox binary (the host's copy lists them; a foreign one is asked through qemu)."""
    for candidate in (busybox, Path("/bin/busybox")):      # a foreign busybox cannot run: the host's lists
        try:
            out = subprocess.run([str(candidate), "--list"], capture_output=True, text=True)
        except OSError:
            continue
        if out.returncode == 0:
            return out.stdout.split()
    return ["sh", "mount", "umount", "cat", "echo", "touch", "rm", "mkdir", "ls", "tr", "sleep", "sync",
            "poweroff", "reboot", "grep", "sed", "test", "[", "readlink", "switch_root", "modprobe", "findfs"]


def base_packages(busybox: Path, rpm_arch: str, version: str = "1") -> list[Pkg]:
    bb = busybox.read_bytes()
    applets = [a for a in busybox_applets(busybox) if a not in ("busybox", "init", "linuxrc")]
    return [
        Pkg("filesystem", "1", arch="noarch", files=(
            *(File(f"/{d}", dir=True, mode=0o755) for d in
              ("etc", "usr", "usr/bin", "usr/sbin", "usr/lib", "usr/share", "var", "var/lib", "home", "opt",
               "boot", "proc", "sys", "dev", "run", "mnt", "srv")),
            File("/bin", symlink="usr/bin"), File("/sbin", symlink="usr/sbin"), File("/lib", symlink="usr/lib"),
            File("/tmp", dir=True, mode=0o1777), File("/var/tmp", dir=True, mode=0o1777),
            File("/root", dir=True, mode=0o700),
            File("/etc/passwd", PASSWD, mode=0o644, noreplace=True),
            File("/etc/group", GROUP, mode=0o644, noreplace=True))),
        Pkg("busybox", "1.35.0", arch=rpm_arch, requires=("filesystem",), provides=("/bin/sh",),
            files=(File("/usr/bin/busybox", bb, mode=0o755),
                   *(File(f"/usr/bin/{a}", symlink="busybox") for a in applets))),
        Pkg("testos-release", version, arch="noarch", requires=("filesystem",), files=(
            File("/usr/lib/os-release", OS_RELEASE.format(v=version).encode(), mode=0o644),
            File("/etc/os-release", symlink="../usr/lib/os-release"))),
        Pkg("boottest-init", version, arch="noarch", requires=("busybox",), files=(
            File("/usr/sbin/init", INIT.encode(), mode=0o755),
            File("/etc/boottest.conf", f"from-image-{version}\n".encode(), mode=0o644, config=True,
                 noreplace=True))),
    ]


def kernel_package(kernel: DebianKernel) -> Pkg:
    """``kernel-<version>`` shipping ``/usr/lib/modules/<kver>/{vmlinuz,config,kernel/...}`` (no modules.dep)."""
    base = f"/usr/lib/modules/{kernel.kver}"
    files = [File(f"{base}/vmlinuz", kernel.vmlinuz.read_bytes(), mode=0o755),
             File(f"{base}/config", (kernel.root / "config").read_bytes(), mode=0o644)]
    for p in sorted(kernel.modules.rglob("*")):
        if p.is_file():
            files.append(File(f"{base}/{p.relative_to(kernel.modules)}", p.read_bytes(), mode=0o644))
    version, _, release = kernel.version.partition("-")
    return Pkg("kernel", version.replace("~", "_"), release=(release or "1").replace("~", "_"),
               arch=RPM_ARCH[kernel.arch], requires=("filesystem",), files=tuple(files))


def make_boot_repo(path: Path, kernel: DebianKernel, busybox: Path, extra: list[Pkg] = (),
                   version: str = "1") -> Repo:
    """A repository with the base packages, the kernel and ``extra`` packages (e.g. hybridos itself)."""
    return make_repo(path, [*base_packages(busybox, RPM_ARCH[kernel.arch], version), kernel_package(kernel),
                            *extra])


def treefile(ref: str, repo_id: str = "boottest", packages: tuple[str, ...] = (), arch: str = "x86_64",
             initramfs_args: tuple[str, ...] = ()) -> str:
    """A treefile composing the tiny distribution (plus ``packages``) into ``ref``."""
    pkgs = ["filesystem", "busybox", "testos-release", "boottest-init", "kernel", *packages]
    text = (f"ref: {ref}\nreleasever: 1\nrepos: [{repo_id}]\nbasearch: {arch}\n"
            f"packages: [{', '.join(pkgs)}]\nselinux: false\ndocumentation: false\n")
    if initramfs_args:
        text += f"initramfs-args: [{', '.join(initramfs_args)}]\n"
    return text
