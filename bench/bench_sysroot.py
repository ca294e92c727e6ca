"""Sysroot benchmark: `hybridos admin deploy` vs `ostree admin deploy` of the same >= 30,000-file commit,
and `hybridos status` on a sysroot with 3 deployments (goal: <= 150 ms wall, `ostree admin status` shown).

Usage: python bench/bench_sysroot.py [--small] [--files N] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import case, hybridos, timed_command  # noqa: E402

STATEROOT = "bench"
REF = "bench/stable"


def _run(*argv: str) -> str:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True).stdout


def make_tree(root: Path, nfiles: int) -> None:
    (root / "usr/lib/modules/6.1.0").mkdir(parents=True)
    (root / "usr/lib/modules/6.1.0/vmlinuz").write_bytes(os.urandom(1 << 20))
    (root / "usr/lib/modules/6.1.0/initramfs.img").write_bytes(os.urandom(1 << 20))
    (root / "usr/lib/os-release").write_text('ID=bench\nPRETTY_NAME="Bench OS"\n')
    (root / "usr/etc").mkdir(parents=True)
    for i in range(50):
        (root / f"usr/etc/conf{i}").write_text(f"setting={i}\n")
    per_dir = 500
    for i in range(nfiles):
        d = root / f"usr/share/data/d{i // per_dir:03d}"
        if i % per_dir == 0:
            d.mkdir(parents=True)
        (d / f"f{i:06d}").write_bytes(f"file {i}\n".encode() * (1 + i % 7))


def unlock(path: Path) -> None:
    if path.exists():
        subprocess.run(["chattr", "-R", "-i", str(path)], capture_output=True)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--small", action="store_true", help="3,000 files, 1 round")
    ap.add_argument("--files", type=int, default=30_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    nfiles = 3_000 if args.small else args.files
    rounds = 1 if args.small else args.rounds
    work = Path(tempfile.mkdtemp(prefix="bench-sysroot-"))
    try:
        tree = work / "tree"
        make_tree(tree, nfiles)
        ours, theirs = work / "ours", work / "theirs"
        for sr in (ours, theirs):
            sr.mkdir()
        subprocess.run(hybridos("admin", "init-fs", str(ours)), check=True)
        subprocess.run(hybridos("admin", "os-init", "--sysroot", str(ours), STATEROOT), check=True)
        _run("ostree", "admin", "init-fs", str(theirs))
        _run("ostree", "admin", "os-init", f"--sysroot={theirs}", STATEROOT)
        commit = _run("ostree", f"--repo={ours}/ostree/repo", "commit", f"--branch={REF}",
                      "--add-metadata-string=version=1.0", str(tree)).strip()
        _run("ostree", f"--repo={theirs}/ostree/repo", "pull-local", f"{ours}/ostree/repo", REF)
        count = int(_run("find", str(tree), "-type", "f", "-printf", ".").count("."))
        print(f"  commit {commit[:12]} with {count} files", flush=True)

        t_ours, t_ref = [], []
        for r in range(rounds):
            pair = [("ours", hybridos("admin", "deploy", "--sysroot", str(ours), "--os", STATEROOT,
                                      "--karg", "rw", REF)),
                    ("ref", ["ostree", "admin", "deploy", f"--sysroot={theirs}", f"--os={STATEROOT}",
                             "--karg=rw", REF])]
            if r % 2:
                pair.reverse()
            for who, argv_ in pair:
                subprocess.run(["sync"], check=True)
                wall, _ = timed_command(argv_)
                (t_ours if who == "ours" else t_ref).append(wall)
        cases = [case(f"admin deploy ({count} files)", statistics.median(t_ours), statistics.median(t_ref), 1.0,
                      rounds=rounds)]

        # status with 3 deployments: retain keeps them all
        while True:
            n = len(json.loads(subprocess.run(hybridos("status", "--sysroot", str(ours), "--json"),
                                              check=True, capture_output=True).stdout)["deployments"])
            if n >= 3:
                break
            subprocess.run(hybridos("admin", "deploy", "--sysroot", str(ours), "--os", STATEROOT, "--retain",
                                    REF), check=True, capture_output=True)
        s_ours = min(timed_command(hybridos("status", "--sysroot", str(ours)))[0] for _ in range(5))
        s_ref = min(timed_command(["ostree", "admin", "status", f"--sysroot={ours}"])[0] for _ in range(5))
        cases.append(case("status, 3 deployments", s_ours, s_ref, None, goal_seconds=0.150,
                          met=s_ours <= 0.150))
        print(f"  status: {s_ours * 1000:.0f} ms (goal <= 150 ms)", flush=True)
        return {"name": "sysroot", "input": f"{count}-file commit; 3 deployments for status",
                "cases": cases, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    finally:
        unlock(work)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    res = main()
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "sysroot.json").write_text(json.dumps(res, indent=2))
