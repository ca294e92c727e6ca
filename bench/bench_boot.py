"""Boot benchmark: seconds from QEMU's start to the deployment's marker line, per bootloader, with KVM and TCG;
and the built-in initramfs's size against ``dracut --no-hostonly`` for the same Debian kernel.

Every image is made by the boot tests' harness (tests/boot): Debian's kernel packaged as an RPM, composed and
deployed with hybridos, a disk image per bootloader. There is no reference tool for boot time (the figure is
informational; the reference column stays empty). KVM cases are skipped, with the reason, when KVM cannot run
a kernel on this machine. The size case needs dracut on the host (Debian dracut-core); it runs dracut with
``--kmoddir`` on the kernel's own modules directory (after depmod), never on the host's kernel.

Usage: python bench/bench_boot.py [--small]     (--small: direct boot and GRUB BIOS only, TCG only)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tests.boot import qemu  # noqa: E402
from tests.boot.distro import make_boot_repo, treefile  # noqa: E402
from tests.boot.images import SETUPS, image_for  # noqa: E402
from tests.boot.kernels import debian_busybox, debian_kernel  # noqa: E402
from tests.boot.sysroot import compose, deploy_sysroot, write_var_data  # noqa: E402

from hybridos.arch import Architecture  # noqa: E402
from hybridos.compose.depmod import run_depmod  # noqa: E402
from hybridos.initramfs import InitramfsRequest  # noqa: E402
from hybridos.initramfs_gen import build_builtin_initramfs  # noqa: E402

X86 = ["direct", "grub-bios-separate-boot", "grub-bios-boot-on-root", "grub-efi", "systemd-boot"]
ARM = ["uboot-extlinux"]
CONSOLE = {"x86_64": "ttyS0", "aarch64": "ttyAMA0"}


def _row(name: str, seconds: float | None, **extra) -> dict:
    print(f"  {name:<48} {'' if seconds is None else f'{seconds:7.1f} s'} {extra.get('note', '')}", flush=True)
    return {"name": name, "ours": None if seconds is None else round(seconds, 2), "reference": None,
            "ratio": None, "goal": None, **extra}


def boot_cases(work: Path, small: bool) -> list[dict]:
    out = []
    kernel = debian_kernel("amd64")
    qemu.PROBE_KERNELS.setdefault("x86_64", kernel.vmlinuz)
    rpms = make_boot_repo(work / "x86-rpms", kernel, Path("/bin/busybox"))
    composed = {"x86_64": compose(work / "x86", rpms.url, treefile("testos/1/x86_64/boottest"),
                                  "testos/1/x86_64/boottest")}
    setups = X86[:2] if small else X86 + ARM
    if not small:
        arm = debian_kernel("arm64")
        arm_rpms = make_boot_repo(work / "arm-rpms", arm, debian_busybox("arm64"))
        composed["aarch64"] = compose(work / "arm", arm_rpms.url,
                                      treefile("testos/1/aarch64/boottest", arch="aarch64"),
                                      "testos/1/aarch64/boottest", args=("--no-scripts", "--arch", "aarch64"))
    accels = ["tcg"] if small else ["kvm", "tcg"]
    for setup in setups:
        arch = "aarch64" if setup.startswith("uboot") else "x86_64"
        for accel in accels:
            name = f"{setup} ({arch}, {accel.upper()})"
            if accel == "kvm":
                os.environ.pop("HYBRIDOS_BOOT_ACCEL", None)
                if not qemu.kvm_usable(arch):
                    out.append(_row(name, None, note="KVM cannot run a kernel here (probe failed or other arch)"))
                    continue
            os.environ["HYBRIDOS_BOOT_ACCEL"] = accel
            case_dir = work / f"{setup}-{accel}"
            case_dir.mkdir()
            root = case_dir / "sysroot"
            prepare, options = SETUPS[setup]
            kargs = ["root=LABEL=root", "rw", f"console={CONSOLE[arch]}", "panic=10", "quiet"]
            deploy_sysroot(root, composed[arch], kargs, options=options, prepare=prepare)
            write_var_data(root, "bench")
            spec = image_for(setup, case_dir, root)
            result = qemu.boot(spec.machine, spec.disks, case_dir, timeout=900, **spec.boot_args)
            if result.marker_seconds is None:
                out.append(_row(name, None, note=f"no marker; last console lines: {result.tail(5)!r}"))
            else:
                out.append(_row(name, result.marker_seconds, accel=result.accel))
            shutil.rmtree(case_dir, ignore_errors=True)
    os.environ.pop("HYBRIDOS_BOOT_ACCEL", None)
    return out


def size_case(work: Path) -> dict:
    kernel = debian_kernel("amd64")
    tree = work / "size-tree"
    moddir = tree / "usr/lib/modules" / kernel.kver
    shutil.copytree(kernel.modules, moddir)
    shutil.copy(kernel.vmlinuz, moddir / "vmlinuz")
    (tree / "usr/bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", tree / "usr/bin/busybox")
    run_depmod(tree)
    ours = build_builtin_initramfs(InitramfsRequest(tree, kernel.kver, Architecture.X86_64)).stat().st_size
    dracut = shutil.which("dracut") or ("/usr/bin/dracut" if os.path.exists("/usr/bin/dracut") else None)
    if dracut is None:
        return _row("initramfs size MiB (vs dracut --no-hostonly)", None,
                    note=f"dracut is not installed; ours is {ours / 2**20:.2f} MiB")
    ref_img = work / "dracut.img"
    p = subprocess.run([dracut, "--no-hostonly", "--force", "--quiet", "--kver", kernel.kver, "--kmoddir",
                        str(moddir), "--tmpdir", str(work), str(ref_img)], capture_output=True, text=True)
    if p.returncode != 0 or not ref_img.exists():
        return _row("initramfs size MiB (vs dracut --no-hostonly)", None,
                    note=f"dracut failed: {p.stderr.strip()[-300:]}")
    ref = ref_img.stat().st_size
    print(f"  initramfs size: ours {ours / 2**20:.2f} MiB, dracut --no-hostonly {ref / 2**20:.2f} MiB", flush=True)
    return {"name": "initramfs size MiB (vs dracut --no-hostonly)", "ours": round(ours / 2**20, 2),
            "reference": round(ref / 2**20, 2), "ratio": round(ours / ref, 3), "goal": None,
            "unit": "MiB"}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--small", action="store_true")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench_boot needs root (compose, sysroots, apt-get download)")
    with tempfile.TemporaryDirectory(prefix="bench-boot-") as tmp:
        work = Path(tmp)
        cases = [size_case(work)] + boot_cases(work, args.small)
    return {"name": "boot", "input": "Debian linux-image-amd64/arm64, busybox guest; seconds from QEMU start to "
                                     "the marker (informational; no reference tool)", "cases": cases}


if __name__ == "__main__":
    import json

    print(json.dumps(main(sys.argv[1:]), indent=2))
