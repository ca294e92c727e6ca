"""Build the demo distribution: real RPMs (rpm-rs), rpm-md repodata (createrepo_c) and treefiles.

    python examples/distro/build.py OUTDIR --release 1|2 [--arch x86_64]

Release 1 is the first image; release 2 bumps some packages (the "update"). Both releases' RPMs land in
OUTDIR/rpms (a repository holding every version, as a distribution's update repository does), and the
treefiles and the .repo file in OUTDIR/config. The static busybox of this machine (Debian's busybox-static)
provides the userland.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.helpers.rpms import File, Pkg, build_rpm, write_repodata  # noqa: E402

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "ash", "cat", "echo", "ls", "mkdir", "mount", "umount", "switch_root", "sleep", "rm", "cp",
           "mv", "ln", "touch", "test", "printf", "grep", "sed", "readlink", "env", "id", "uname", "true", "false",
           "chmod", "chown", "head", "tail", "vi", "ps", "kill", "date", "hostname", "clear")
KVER = "6.1.0-demo"
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nhello:x:990:990:hello daemon:/var/lib/hello:/sbin/nologin\n"
GROUP = b"root:x:0:\nwheel:x:10:\nhello:x:990:\n"


def os_release(version: str) -> bytes:
    return (f'NAME="Hybrid Demo"\nVERSION="{version}"\nID=hybriddemo\nVERSION_ID={version}\n'
            f'PRETTY_NAME="Hybrid Demo {version}"\nHOME_URL="https://example.invalid/hybriddemo"\n').encode()


def specs(release: int) -> list[Pkg]:
    """Packages of one release; release 2 updates hello, libgreet, the release package and the kernel."""
    bb = BUSYBOX.read_bytes()
    new = release >= 2
    hello_ver = "2.0" if new else "1.0"
    greet_ver = "1.1" if new else "1.0"
    kver = KVER + ("2" if new else "")
    return [
        Pkg("filesystem", "1.0", arch="noarch", summary="The basic directory layout", files=(
            *(File(d, dir=True, mode=0o755) for d in ("/etc", "/usr", "/usr/bin", "/usr/sbin", "/usr/lib",
                                                     "/usr/share", "/var", "/var/lib", "/var/log", "/home",
                                                     "/opt", "/boot", "/srv", "/mnt")),
            File("/tmp", dir=True, mode=0o1777), File("/var/tmp", dir=True, mode=0o1777),
            File("/root", dir=True, mode=0o550),
            File("/bin", symlink="usr/bin"), File("/sbin", symlink="usr/sbin"), File("/lib", symlink="usr/lib"),
            File("/etc/passwd", PASSWD, mode=0o644, noreplace=True),
            File("/etc/group", GROUP, mode=0o644, noreplace=True),
            File("/etc/hostname", b"hybrid-demo\n", mode=0o644, config=True),
        )),
        Pkg("busybox", "1.35.0", arch="x86_64", requires=("filesystem",), provides=("/bin/sh",),
            summary="Static busybox: the demo's whole userland",
            files=(File("/usr/bin/busybox", bb, mode=0o755),
                   *(File(f"/usr/bin/{a}", symlink="busybox") for a in APPLETS))),
        Pkg("hybriddemo-release", str(release), arch="noarch", requires=("filesystem",),
            summary="os-release of the demo", files=(
                File("/usr/lib/os-release", os_release(str(release)), mode=0o644),
                File("/etc/os-release", symlink="../usr/lib/os-release"))),
        Pkg("kernel", "6.1.0", release="2" if new else "1", requires=("filesystem",),
            summary="Kernel image stand-in", files=(
                File(f"/usr/lib/modules/{kver}/vmlinuz", b"MZ" + f"demo kernel {kver}\n".encode() * 512, mode=0o755),
                File(f"/usr/lib/modules/{kver}/modules.dep", b"", mode=0o644))),
        Pkg("libgreet", greet_ver, requires=("filesystem",), provides=("greeting-data",), summary="Greetings",
            files=(File("/usr/share/greet/greeting", f"Hello from libgreet {greet_ver}\n".encode(), mode=0o644),)),
        Pkg("hello", hello_ver, requires=("libgreet >= 1.0", "/bin/sh"), summary="Says hello",
            files=(File("/usr/bin/hello", b"#!/bin/sh\ncat /usr/share/greet/greeting\n"
                        + f"echo 'hello version {hello_ver}'\n".encode(), mode=0o755),
                   File("/etc/hello.conf", b"greeting=hi\n", config=True, noreplace=True),
                   File("/var/lib/hello", dir=True, mode=0o750, user="hello", group="hello")),
            post="mkdir -p /usr/share/hello && echo \"hello %post ran (install count $1)\" > /usr/share/hello/post-ran\n"),
        Pkg("demo-x86-firmware", "1.0", arch="x86_64", summary="Only on x86_64 (packages-x86_64)",
            files=(File("/usr/lib/firmware/demo-x86.bin", b"\x00firmware", mode=0o644),)),
        Pkg("demo-arm-firmware", "1.0", arch="aarch64", summary="Only on aarch64 (packages-aarch64)",
            files=(File("/usr/lib/firmware/demo-arm.bin", b"\x00firmware", mode=0o644),)),
        # Not in the image: layered on the host with `hybridos install`.
        Pkg("cowsay", "3.0", arch="noarch", requires=("/bin/sh",), summary="A package to layer",
            files=(File("/usr/bin/cowsay", b"#!/bin/sh\necho \"< $* >\"\necho '  \\\\ (oo)'\n", mode=0o755),),
            post="echo cowsay installed > /usr/share/cowsay-post-ran\n"),
    ]


TREEFILE_BASE = """\
# Shared by every demo image (included by demo.yaml).
repos:
  - hybriddemo
releasever: "{release}"
packages:
  - filesystem
  - busybox
  - hybriddemo-release
  - kernel
recommends: false
documentation: false
machineid-compat: true
initramfs-args:
  - --gzip
postprocess:
  - |
    #!/bin/sh
    echo "composed by hybridos" > /usr/share/composed-by
"""

TREEFILE = """\
# The demo image: `hybridos compose tree demo.yaml --repo REPO`
include: base.yaml
ref: hybriddemo/stable/x86_64
automatic-version-prefix: "{release}"
mutate-os-release: "{release}"
packages:
  - hello
packages-x86_64:
  - demo-x86-firmware
packages-aarch64:
  - demo-arm-firmware
add-commit-metadata:
  demo.release: "{release}"
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--release", type=int, default=1, choices=(1, 2))
    args = ap.parse_args(argv)
    if not BUSYBOX.exists():
        print("error: /bin/busybox is missing (apt-get install busybox-static)", file=sys.stderr)
        return 1
    rpms = args.outdir / "rpms"
    pkgdir = rpms / "Packages"
    pkgdir.mkdir(parents=True, exist_ok=True)
    for rel in range(1, args.release + 1):
        for spec in specs(rel):
            if not (pkgdir / spec.filename).exists():
                build_rpm(spec, pkgdir)
    write_repodata(rpms, sorted(pkgdir.glob("*.rpm")))
    config = args.outdir / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hybriddemo.repo").write_text(
        f"[hybriddemo]\nname=Hybrid Demo $releasever ($basearch)\nbaseurl={rpms.resolve().as_uri()}\n"
        "enabled=1\ngpgcheck=0\n")
    (config / "base.yaml").write_text(TREEFILE_BASE.format(release=args.release))
    (config / "demo.yaml").write_text(TREEFILE.format(release=args.release))
    print(f"release {args.release}: {len(list(pkgdir.glob('*.rpm')))} RPMs in {rpms}, treefile {config / 'demo.yaml'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
