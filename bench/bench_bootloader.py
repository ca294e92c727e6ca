"""Bootloader benchmark: our format writers against the reference tools, and whole write_config runs.

Format cases make the same artefact R times: a boot.scr (ours: make_script_image + atomic write; reference:
``mkimage -T script``), a U-Boot environment image (ours: format_env_image; reference: ``mkenvimage``) and a
grubenv with boot counting variables (ours: format_grubenv; reference: ``grub-editenv create`` + ``set``).
Ours runs in-process, as hybridos uses it; the references are the programs a shell implementation would run.
The outputs are compared byte for byte before timing. write_config cases time each plugin on a sysroot with
N deployments (no reference tool does the same job; informational).

Usage: python bench/bench_bootloader.py [--small]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench.common import case  # noqa: E402
from tests.bootloader.layout import Deployment, Sysroot, commit_id  # noqa: E402

from hybridos.arch import Architecture  # noqa: E402
from hybridos.util.atomic import atomic_write  # noqa: E402
from hybridos_bootloader_grub.backend import GrubBootloader  # noqa: E402
from hybridos_bootloader_grub.grubenv import format_grubenv  # noqa: E402
from hybridos_bootloader_systemd_boot.backend import SystemdBootBootloader  # noqa: E402
from hybridos_bootloader_uboot.backend import UBootBootloader  # noqa: E402
from hybridos_bootloader_uboot.envimage import format_env_image  # noqa: E402
from hybridos_bootloader_uboot.script import make_script_image  # noqa: E402

SCRIPT = "".join(f"setenv var{i} value{i}\n" for i in range(50)) + "booti ${kernel_addr_r} - ${fdt_addr_r}\n"
ENV = {f"var{i}": f"value {i}" for i in range(100)} | {"upgrade_available": "1", "bootcount": "0", "bootlimit": "3"}
GRUBENV = {"saved_entry": "ostree-2-fedora", "boot_counter": "3", "boot_success": "0"}


def _time(fn, repeat: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return time.perf_counter() - t0


def format_cases(work: Path, repeat: int) -> list[dict]:
    out = []
    cmd = work / "boot.cmd"
    cmd.write_text(SCRIPT)
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    mk = ["mkimage", "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-n", "hybridos boot script",
          "-d", str(cmd), str(work / "ref.scr")]
    subprocess.run(mk, check=True, capture_output=True, env=env)
    ours_bytes = make_script_image(SCRIPT, "hybridos boot script", Architecture.AARCH64, 1700000000)
    assert ours_bytes == (work / "ref.scr").read_bytes(), "boot.scr differs from mkimage's"
    ours = _time(lambda: atomic_write(work / "ours.scr", make_script_image(
        SCRIPT, "hybridos boot script", Architecture.AARCH64, 1700000000), sync=False), repeat)
    ref = _time(lambda: subprocess.run(mk, check=True, capture_output=True, env=env), repeat)
    out.append(case(f"boot.scr x{repeat} (vs mkimage)", ours, ref, None))

    txt = work / "env.txt"
    txt.write_text("".join(f"{k}={v}\n" for k, v in ENV.items()))
    mkenv = ["mkenvimage", "-s", "0x4000", "-o", str(work / "ref.env"), str(txt)]
    subprocess.run(mkenv, check=True)
    assert format_env_image(ENV) == (work / "ref.env").read_bytes(), "env image differs from mkenvimage's"
    ours = _time(lambda: atomic_write(work / "ours.env", format_env_image(ENV), sync=False), repeat)
    ref = _time(lambda: subprocess.run(mkenv, check=True), repeat)
    out.append(case(f"uboot env x{repeat} (vs mkenvimage)", ours, ref, None))

    grubenv = work / "grubenv"

    def editenv():
        subprocess.run(["grub-editenv", str(grubenv), "create"], check=True)
        subprocess.run(["grub-editenv", str(grubenv), "set", *(f"{k}={v}" for k, v in GRUBENV.items())], check=True)

    editenv()
    assert format_grubenv(GRUBENV) == grubenv.read_bytes(), "grubenv differs from grub-editenv's"
    ours = _time(lambda: atomic_write(work / "ours.grubenv", format_grubenv(GRUBENV), sync=False), repeat)
    ref = _time(editenv, repeat)
    out.append(case(f"grubenv x{repeat} (vs grub-editenv)", ours, ref, None))
    return out


def _grub_bios(root: Path) -> None:
    (root / "boot/grub2").mkdir(parents=True)
    (root / "boot/grub2/grub.cfg").write_text("")


def _esp(root: Path) -> None:
    (root / "boot/efi/loader").mkdir(parents=True)


def _uboot_board(root: Path) -> None:
    (root / "boot/extlinux").mkdir(parents=True)
    (root / "boot/extlinux/extlinux.conf").write_text("")
    (root / "boot/boot.scr").write_bytes(make_script_image("echo board\n", "board", Architecture.AARCH64, 0))


def write_config_cases(work: Path, counts: list[int]) -> list[dict]:
    out = []
    setups = {
        "grub2": (Architecture.X86_64, GrubBootloader(), _grub_bios),
        "systemd-boot": (Architecture.X86_64, SystemdBootBootloader(), _esp),
        "uboot": (Architecture.AARCH64, UBootBootloader(), _uboot_board),
    }
    for n in counts:
        for name, (arch, bl, prepare) in setups.items():
            s = Sysroot(work / f"{name}-{n}", arch)
            prepare(s.root)
            deployments = [Deployment(commit_id(i), version=f"39.{i}") for i in range(n)]
            s.cycle(bl, deployments[1:] or deployments)
            context = s.stage(deployments)
            t0 = time.perf_counter()
            bl.write_config(context)
            s.swap(context)
            bl.post_swap(context)
            elapsed = time.perf_counter() - t0
            print(f"  write_config+post_swap {name:<13} {n:3d} deployments {elapsed:8.4f}s", flush=True)
            out.append({"name": f"write_config {name} ({n} deployments)", "ours": round(elapsed, 4),
                        "reference": None, "ratio": None, "goal": None})
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="quick smoke sizes")
    args = ap.parse_args(argv)
    repeat = 20 if args.small else 200
    counts = [2] if args.small else [2, 10, 50]
    with tempfile.TemporaryDirectory(prefix="bench-bootloader-") as tmp:
        work = Path(tmp)
        cases = format_cases(work, repeat) + write_config_cases(work, counts)
    result = {"name": "bootloader", "input": f"{repeat} artefacts per format; sysroots with {counts} deployments",
              "cases": cases}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results/bootloader.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
