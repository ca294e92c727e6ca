"""Compose benchmark: ``hybridos compose tree`` of a 200-package treefile vs ``dnf --installroot`` of the same
packages followed by ``ostree commit`` of the result (issue #7: <= 1.0x).

The packages are real RPMs built with rpm-rs (tests/helpers/rpms.py): filesystem, a static busybox as /bin/sh,
and N-2 packages with files of varied sizes, a dependency chain and a few %post scriptlets. One local rpm-md
repository (createrepo_c) serves both sides; each side starts with an empty cache and an empty repository of
the same mode.

Usage: python bench/bench_compose.py [--small] [--packages N] [--mode archive|bare-user] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench.common import case, drop_caches_if_root, hybridos, timed_command  # noqa: E402

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "echo", "cat", "mkdir", "touch", "ln", "rm", "ls", "test", "true")
WORDS = b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "

def make_specs(n: int, seed: int = 7):
    from tests.helpers.rpms import File, Pkg

    rnd = random.Random(seed)
    specs = [
        Pkg("filesystem", "3.18", arch="noarch", files=(
            File("/etc", dir=True, mode=0o755), File("/usr", dir=True, mode=0o755),
            File("/usr/bin", dir=True, mode=0o755), File("/usr/lib", dir=True, mode=0o755),
            File("/usr/share", dir=True, mode=0o755), File("/bin", symlink="usr/bin"),
            File("/var", dir=True, mode=0o755), File("/var/lib", dir=True, mode=0o755),
            File("/tmp", dir=True, mode=0o1777), File("/root", dir=True, mode=0o550),
            File("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", mode=0o644, noreplace=True),
            File("/etc/group", b"root:x:0:\n", mode=0o644, noreplace=True))),
        Pkg("busybox", "1.35.0", arch="noarch", requires=("filesystem",), provides=("/bin/sh",),
            files=(File("/usr/bin/busybox", BUSYBOX.read_bytes(), mode=0o755),
                   *(File(f"/usr/bin/{a}", symlink="busybox") for a in APPLETS))),
    ]
    for i in range(n - 2):
        name = f"pkg{i:03d}"
        files = []
        for j in range(rnd.randint(6, 18)):
            size = rnd.choice((200, 1500, 4000, 12000, 30000, 90000, 250000))
            if rnd.random() < 0.4:     # binaries and compressed data: incompressible
                body = rnd.randbytes(size)
            else:
                body = (WORDS * (size // len(WORDS) + 1))[:size] + f"{name}/{j}".encode()
            d = rnd.choice(("usr/share", "usr/lib", "usr/bin"))
            files.append(File(f"/{d}/{name}/f{j}", body, mode=0o755 if d == "usr/bin" else 0o644))
        files.append(File(f"/etc/{name}.conf", f"{name}=1\n".encode(), config=True, noreplace=True))
        files.append(File(f"/var/lib/{name}", dir=True, mode=0o755))
        requires = ["filesystem"] + ([f"pkg{i - 1:03d}"] if i % 5 else [])
        post = f"mkdir -p /usr/share/{name} && echo {name} > /usr/share/{name}/post\n" if i % 20 == 0 else None
        specs.append(Pkg(name, f"1.{i % 7}", requires=tuple(requires) + (("busybox",) if post else ()),
                         files=tuple(files), post=post))
    return specs

def run_ours(work: Path, cfg: Path, mode: str) -> tuple[float, float]:
    """One cold compose into a fresh repository with an empty cache: (wall s, peak RSS MiB)."""
    repo, cache = work / "ours-repo", work / "ours-cache"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    subprocess.run(["ostree", "init", f"--repo={repo}", f"--mode={mode}"], check=True)
    drop_caches_if_root()
    result = timed_command(hybridos("compose", "tree", str(cfg / "bench.yaml"), "--repo", str(repo),
                                    "--cachedir", str(cache), "--write-commitid-to", str(work / "ours-commit")))
    assert len((work / "ours-commit").read_text().strip()) == 64
    # our work tree is deleted by a detached process after the command returns: let it finish before the
    # reference runs, so that it does not slow the reference down
    deadline = time.monotonic() + 300
    while list((repo / "tmp").glob(".hybridos-trash-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    return result


def run_reference(work: Path, url: str, names: list[str], mode: str) -> tuple[float, float, float, float]:
    """dnf --installroot into an empty root with an empty cache, then ostree commit of that root."""
    repo, root, cache = work / "ref-repo", work / "dnf-root", work / "dnf-cache"
    for d in (repo, root, cache):
        shutil.rmtree(d, ignore_errors=True)
    subprocess.run(["ostree", "init", f"--repo={repo}", f"--mode={mode}"], check=True)
    drop_caches_if_root()
    dnf_t, dnf_rss = timed_command([
        "dnf", "-y", "-q", f"--installroot={root}", "--releasever=39", f"--repofrompath=bench,{url}",
        "--setopt=reposdir=/dev/null", "--setopt=bench.gpgcheck=0", f"--setopt=cachedir={cache}",
        "--setopt=install_weak_deps=False", "--setopt=keepcache=False", "install", *names])
    commit_t, commit_rss = timed_command(["ostree", "commit", f"--repo={repo}", "-b", "bench/x86_64", "-s", "bench",
                                          str(root)])
    return dnf_t + commit_t, dnf_t, commit_t, max(dnf_rss, commit_rss)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--small", action="store_true", help="30 packages")
    ap.add_argument("--packages", type=int, default=200)
    ap.add_argument("--mode", default="archive", choices=("archive", "bare-user", "bare"))
    ap.add_argument("--repeat", type=int, default=3, help="runs per side (alternating); the median counts")
    ap.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = ap.parse_args(argv)
    n = 30 if args.small else args.packages
    from tests.helpers.rpms import make_repo

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-compose-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        specs = make_specs(n)
        rpmrepo = make_repo(work / "rpms", specs)
        names = [s.name for s in specs]
        cfg = work / "config"
        cfg.mkdir(exist_ok=True)
        (cfg / "bench.repo").write_text(f"[bench]\nname=bench\nbaseurl={rpmrepo.url}\ngpgcheck=0\n")
        (cfg / "bench.yaml").write_text(json.dumps({
            "ref": "bench/x86_64", "repos": ["bench"], "releasever": 39, "recommends": False,
            "selinux": False, "packages": names}))
        total_bytes = sum(p.stat().st_size for p in (work / "rpms/Packages").glob("*.rpm"))
        print(f"  {n} packages, {total_bytes / 1e6:.1f} MB of RPMs, {args.mode} repositories", flush=True)

        ours_runs, ref_runs = [], []
        for _ in range(args.repeat):
            ours_runs.append(run_ours(work, cfg, args.mode))
            ref_runs.append(run_reference(work, rpmrepo.url, names, args.mode))
        ours, ours_rss = sorted(ours_runs)[len(ours_runs) // 2]
        ref_total, dnf_t, commit_t, ref_rss = sorted(ref_runs)[len(ref_runs) // 2]
        reference = ref_total
        print(f"  reference: dnf {dnf_t:.3f}s + ostree commit {commit_t:.3f}s (median of {args.repeat})", flush=True)
        result = {
            "name": "compose",
            "input": f"{n} packages ({total_bytes / 1e6:.1f} MB RPMs), {args.mode} repository",
            "cases": [case(f"compose tree, {n} packages ({args.mode})", ours, reference, 1.0,
                           ours_peak_rss_mb=round(ours_rss, 1),
                           reference_peak_rss_mb=round(ref_rss, 1),
                           runs={"ours": [round(t, 3) for t, _ in ours_runs],
                                 "reference": [round(r[0], 3) for r in ref_runs]},
                           reference_parts={"dnf": round(dnf_t, 3), "ostree_commit": round(commit_t, 3)})],
        }
        out = HERE / "results"
        out.mkdir(exist_ok=True)
        (out / "compose.json").write_text(json.dumps(result, indent=2))
        return result
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    main()
    sys.exit(0)

