"""Layering benchmark: `hybridos install` of one small package on a base of >= 30,000 files, against a full deploy
of the same base from scratch (pull from a file:// archive repository into a fresh sysroot + `admin deploy`), with the real
`ostree pull` + `ostree admin deploy` of the same commit shown beside.

Goals (issue #9): install <= 3 s wall and <= 0.3x the full deploy. The per-step split of an install comes from
the transaction's named steps (an in-process run of a second install).

The base is composed by `hybridos compose tree` from real RPMs (rpm-rs, createrepo_c): a small distribution
(filesystem, busybox, release, kernel) plus "bulk" packages holding the files; it is served as an archive
repository (pulled through file://, the fastest transport, so the reference is not inflated by the test HTTP
server); the host's package repository is served over HTTP on 127.0.0.1.

Usage: python bench/bench_layering.py [--small] [--files N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from common import case, hybridos, timed_command  # noqa: E402

STATEROOT = "bench"
REF = "bench/stable"
KVER = "6.5.0-1.bench.x86_64"
PER_PACKAGE = 1000


def _run(*argv: str) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def _specs(nfiles: int):
    from tests.helpers.rpms import File, Pkg

    os_release = b'NAME="BenchOS"\nID=bench\nVERSION_ID=1\nPRETTY_NAME="BenchOS 1"\n'
    applets = ("sh", "echo", "mkdir", "touch", "cat", "true")
    base = [
        Pkg("filesystem", "1", arch="noarch", files=(
            File("/usr/bin", dir=True, mode=0o755), File("/bin", symlink="usr/bin"),
            File("/var/tmp", dir=True, mode=0o1777),
            File("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", noreplace=True),
            File("/etc/group", b"root:x:0:\n", noreplace=True))),
        Pkg("busybox", "1.35", arch="noarch", requires=("filesystem",), provides=("/bin/sh",), files=(
            File("/usr/bin/busybox", Path("/bin/busybox").read_bytes(), mode=0o755),
            *(File(f"/usr/bin/{a}", symlink="busybox") for a in applets))),
        Pkg("bench-release", "1", arch="noarch", files=(File("/usr/lib/os-release", os_release),)),
        Pkg("kernel", "6.5.0", release="1.bench", files=(
            File(f"/usr/lib/modules/{KVER}/vmlinuz", os.urandom(1 << 20), mode=0o755),)),
    ]
    bulk = []
    for p in range((nfiles + PER_PACKAGE - 1) // PER_PACKAGE):
        files = tuple(File(f"/usr/share/bulk{p:02d}/d{i // 250}/f{i:04d}", f"bulk {p} {i}\n".encode() * (1 + i % 7),
                           mode=0o644) for i in range(PER_PACKAGE))
        bulk.append(Pkg(f"bulk{p:02d}", "1", arch="noarch", files=files))
    host = [Pkg(f"small-tool{n}", "1.0", arch="noarch", requires=("busybox",), files=(
        File(f"/usr/bin/small-tool{n}", b"#!/bin/sh\necho small\n", mode=0o755),),
        post=f"mkdir -p /usr/share/small && touch /usr/share/small/ran{n}\n") for n in (1, 2, 3)]
    return base, bulk, host


def _steps_of_install(sysroot: Path, package: str) -> tuple[float, list[tuple[str, float]]]:
    """An in-process install through the same code as the CLI; returns (wall, [(step, seconds)])."""
    from hybridos.layering.requests import Change
    from hybridos.operations.packages import apply_change
    from hybridos.sysroot.sysroot import Sysroot
    from hybridos.sysroot.transaction import Transaction

    t0 = time.perf_counter()
    with Transaction(sysroot, "install") as tx:
        apply_change(Sysroot.load(sysroot), tx, Change(install=(package,)))
    wall = time.perf_counter() - t0
    return wall, [(e.step, e.elapsed) for e in tx.events if e.kind == "end"]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--small", action="store_true", help="3,000 files")
    ap.add_argument("--files", type=int, default=30_000)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (printed)")
    args = ap.parse_args(argv)
    nfiles = 3_000 if args.small else args.files

    from tests.helpers.httpserver import serve
    from tests.helpers.rpms import make_repo

    work = Path(tempfile.mkdtemp(prefix="bench-layering-"))
    try:
        base_specs, bulk_specs, host_specs = _specs(nfiles)
        t0 = time.perf_counter()
        compose_repo = make_repo(work / "compose-repo", base_specs + bulk_specs)
        host_repo = make_repo(work / "host-repo", host_specs)
        cfg = work / "compose"
        cfg.mkdir()
        (cfg / "bench.repo").write_text(f"[bench]\nname=Bench\nbaseurl={compose_repo.url}\ngpgcheck=0\n")
        names = ", ".join(s.name for s in base_specs + bulk_specs)
        (cfg / "bench.yaml").write_text(f"ref: {REF}\nreleasever: 1\nrepos: [bench]\nselinux: false\n"
                                        f"automatic-version-prefix: \"1\"\npackages: [{names}]\n")
        archive = work / "archive"
        _run(*hybridos("repo", "init", "--repo", str(archive), "--mode", "archive"))
        _run(*hybridos("compose", "tree", str(cfg / "bench.yaml"), "--repo", str(archive),
                       "--cachedir", str(work / "cache")))
        _run("ostree", f"--repo={archive}", "summary", "-u")
        commit = _run("ostree", f"--repo={archive}", "rev-parse", REF).strip()
        count = int(_run("ostree", f"--repo={archive}", "ls", "-R", REF).count("\n-"))
        print(f"  base {commit[:12]}: {count} regular files (setup {time.perf_counter() - t0:.1f}s)", flush=True)

        with serve(host_repo.path) as srv_host:
            ours, theirs = work / "ours", work / "theirs"
            subprocess.run(hybridos("admin", "init-fs", str(ours)), check=True, capture_output=True)
            subprocess.run(hybridos("admin", "os-init", "--sysroot", str(ours), STATEROOT), check=True,
                           capture_output=True)
            subprocess.run(hybridos("repo", "remote", "add", "--repo", str(ours / "ostree/repo"),
                                    "--no-gpg-verify", "origin", archive.as_uri()), check=True, capture_output=True)
            theirs.mkdir()
            _run("ostree", "admin", "init-fs", str(theirs))
            _run("ostree", "admin", "os-init", f"--sysroot={theirs}", STATEROOT)
            _run("ostree", f"--repo={theirs}/ostree/repo", "remote", "add", "--no-gpg-verify", "origin",
                 archive.as_uri())

            # the full deploy from scratch: pull into an empty sysroot, then deploy
            subprocess.run(["sync"], check=True)
            pull_ours, _ = timed_command(hybridos("repo", "pull", "--repo", str(ours / "ostree/repo"), "origin",
                                                  REF))
            dep_ours, _ = timed_command(hybridos("admin", "deploy", "--sysroot", str(ours), "--os", STATEROOT,
                                                 "--karg", "rw", f"origin:{REF}"))
            subprocess.run(["sync"], check=True)
            pull_ref, _ = timed_command(["ostree", f"--repo={theirs}/ostree/repo", "pull", "origin", REF])
            dep_ref, _ = timed_command(["ostree", "admin", "deploy", f"--sysroot={theirs}", f"--os={STATEROOT}",
                                        "--karg=rw", f"origin:{REF}"])
            full_ours, full_ref = pull_ours + dep_ours, pull_ref + dep_ref
            print(f"  full deploy from scratch: hybridos pull {pull_ours:.2f}s + deploy {dep_ours:.2f}s; "
                  f"ostree pull {pull_ref:.2f}s + deploy {dep_ref:.2f}s", flush=True)

            # the host's package repository, its metadata cached as after any earlier refresh
            dep = json.loads(subprocess.run(hybridos("status", "--sysroot", str(ours), "--json"), check=True,
                                            capture_output=True).stdout)["deployments"][0]
            repos_d = ours / f"ostree/deploy/{STATEROOT}/deploy/{dep['checksum']}.{dep['serial']}/etc/yum.repos.d"
            repos_d.mkdir(parents=True, exist_ok=True)
            (repos_d / "host.repo").write_text(f"[host]\nname=Host\nbaseurl={srv_host.url}\ngpgcheck=0\n")
            subprocess.run(hybridos("refresh-md", "--sysroot", str(ours)), check=True, capture_output=True)

            # first install: 1 deployment -> 2; then in the steady state (default + rollback), where each new
            # deployment also deletes the oldest one (a 30k-file tree) as ostree does
            subprocess.run(["sync"], check=True)
            install, _ = timed_command(hybridos("install", "--sysroot", str(ours), "small-tool1"))
            subprocess.run(["sync"], check=True)
            steady, _ = timed_command(hybridos("install", "--sysroot", str(ours), "small-tool2"))
            step_wall, steps = _steps_of_install(ours, "small-tool3")

        cases = [
            case(f"install 1 package vs full deploy ({count} files)", install, full_ours, 0.3,
                 goal_seconds=3.0, met=install <= 3.0 and install <= 0.3 * full_ours),
            case("install, steady state (drops the oldest deployment)", steady, full_ours, 0.3,
                 goal_seconds=3.0, met=steady <= 3.0 and steady <= 0.3 * full_ours),
            case("full deploy: hybridos vs ostree pull+deploy", full_ours, full_ref, None,
                 pull=round(pull_ours, 3), deploy=round(dep_ours, 3), ostree_pull=round(pull_ref, 3),
                 ostree_deploy=round(dep_ref, 3)),
        ]
        print(f"  install steps (in-process third install, steady state, {step_wall:.2f}s):", flush=True)
        for name, secs in steps:
            print(f"    {name:<18} {secs * 1000:8.1f} ms", flush=True)
        return {"name": "layering", "input": f"{count}-file base composed from {len(bulk_specs) + 4} RPMs; "
                                             "1 small package with a %post",
                "cases": cases, "install_steps": [{"step": n, "seconds": round(s, 4)} for n, s in steps],
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    finally:
        if args.keep:
            print(f"  kept {work}", flush=True)
        else:
            subprocess.run(["chattr", "-R", "-i", str(work)], capture_output=True)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    res = main()
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "layering.json").write_text(json.dumps(res, indent=2))
