"""Static delta benchmark: ``hybridos repo static-delta generate`` vs ``ostree static-delta generate`` on a
realistic update of the 30,000-file benchmark tree, the delta sizes, and applying it over HTTP (``hybridos repo
pull`` vs ``ostree pull`` of the same update into a bare-user repository holding the old commit), with our own
plain object pull of the same update and our peak RSS while applying.

The update (v1 -> v2 of the tree bench_pull builds from /usr): about 5% of the files get a small edit (a line
changed in the middle), 2% are added (edited copies of other files under new names), 1% are removed, and one
large binary (a shared library of several MB) is "rebuilt": a 4-byte word changed every few KB (moved
addresses) and a block inserted. Both commits are made by the real ``ostree commit``. Each tool generates into
its own hardlinked copy of the source repository, whose ``summary -u`` then advertises that tool's delta;
the same HTTP server process serves each copy to its own tool.

Applying forks worker processes (one per CPU, at most 4): the peak RSS reported is the CLI process's own
(VmHWM); the largest worker's peak (its pages are mostly shared with the parent it was forked from) is
reported beside it. The apply runs take turns (ours, ostree's, our object pull; then the other way round);
each round's ours/objects ratio is recorded with the load average, and the median of those paired ratios
is reported with the ratio of the medians, since on a shared machine the load drifts between rounds.

Usage: python bench/bench_deltas.py [--small] [--keep DIR] [--runs N] [--apply-runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench.bench_pull import FULL_DIRS, SMALL_DIRS, ostree, serve_in_process, timed, warm  # noqa: E402
from bench.common import case, hybridos  # noqa: E402

BINARIES = ["/usr/lib/x86_64-linux-gnu/libasan.so.8.0.0", "/usr/lib/x86_64-linux-gnu/libtsan.so.2.0.0",
            "/usr/lib/x86_64-linux-gnu/libcapstone.so.4"]
RSS_GOAL_MB = 64
#: Runs the CLI in this interpreter and writes its own peak RSS (VmHWM) on exit: wait4()'s ru_maxrss of a child
#: started by this (larger) benchmark process can report the parent's peak, carried across vfork/exec.
HWM = """
import atexit, resource, sys
def _hwm(path=sys.argv[1]):
    own = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
    with open(path, "w") as f:   # own peak (KiB), and the largest of its forked workers' (reaped) peaks
        f.write(f"{own} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
atexit.register(_hwm)
from hybridos.cli.main import main
main(sys.argv[2:])
"""


def _rewrite(path: Path, data: bytes) -> None:
    """Replace a (possibly hardlinked to /usr) file by a new inode: never write through the link."""
    mode = path.stat().st_mode
    path.unlink()
    path.write_bytes(data)
    os.chmod(path, mode & 0o7777)


def build_trees(work: Path, dirs: list[str]) -> tuple[Path, Path, dict]:
    rng = random.Random(21)
    v1 = work / "v1"
    if not v1.exists():
        for d in dirs:
            if not os.path.isdir(d):
                continue
            dest = v1 / d.strip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if subprocess.run(["cp", "-al", d, str(dest)], capture_output=True).returncode:
                shutil.copytree(d, dest, symlinks=True)
        binary = next((b for b in BINARIES if os.path.isfile(b)), None)
        (v1 / "usr/lib").mkdir(parents=True, exist_ok=True)
        big = v1 / "usr/lib/libbig.so"
        if binary:
            shutil.copyfile(binary, big)
        else:   # a stand-in with the structure of code: repeats with small variations
            big.write_bytes(b"".join(rng.randbytes(64) * 3 for _ in range(40_000)))
    v2 = work / "v2"
    if v2.exists():
        shutil.rmtree(v2)
    subprocess.run(["cp", "-al", str(v1), str(v2)], check=True)
    files = sorted(p for p in v2.rglob("*") if p.is_file() and not p.is_symlink() and p.name != "libbig.so")
    rng.shuffle(files)
    n = len(files)
    edited, added, removed = files[:n * 5 // 100], files[n * 5 // 100:n * 7 // 100], files[n * 7 // 100:n * 8 // 100]
    for p in edited:
        data = p.read_bytes()
        mid = len(data) // 2
        _rewrite(p, data[:mid] + b"\nedited in v2 " + str(rng.random()).encode() + b"\n" + data[mid + 8:])
    for i, p in enumerate(added):
        data = p.read_bytes()
        (p.parent / f"added-{i}-{p.name}").write_bytes(b"added in v2\n" + data[:len(data) // 2] + b"v2\n" +
                                                       data[len(data) // 2:])
    for p in removed:
        p.unlink()
    big = v2 / "usr/lib/libbig.so"
    data = bytearray(big.read_bytes())
    for off in range(1024, len(data) - 8, 4096):
        data[off:off + 4] = rng.randbytes(4)
    at = len(data) * 2 // 5
    data[at:at] = rng.randbytes(16 << 10)
    _rewrite(big, bytes(data))
    return v1, v2, {"files": n, "edited": len(edited), "added": len(added), "removed": len(removed),
                    "binary_bytes": len(data)}


def commit(repo: Path, tree: Path, subject: str) -> str:
    return ostree("commit", f"--repo={repo}", "-b", "main", "-s", subject, "--owner-uid=0", "--owner-gid=0",
                  "--no-xattrs", str(tree)).strip()


def delta_bytes(repo: Path) -> int:
    return sum(f.stat().st_size for f in (repo / "deltas").rglob("*") if f.is_file())


def clone(src: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    subprocess.run(["cp", "-al", str(src), str(dest)], check=True)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--small", action="store_true", help="a quick run on a few thousand files")
    ap.add_argument("--keep", default=None, help="work in this directory and keep it")
    ap.add_argument("--runs", type=int, default=3, help="runs per timed case (the median is reported)")
    ap.add_argument("--apply-runs", type=int, default=None, help="runs of the apply cases (default: --runs)")
    args = ap.parse_args(argv)
    apply_runs = args.apply_runs or args.runs
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-deltas-"))
    work.mkdir(parents=True, exist_ok=True)
    cases = []
    try:
        v1, v2, stats = build_trees(work, SMALL_DIRS if args.small else FULL_DIRS)
        print(f"  update: {stats}", flush=True)
        src = work / "src"
        if src.exists():
            shutil.rmtree(src)
        ostree("init", f"--repo={src}", "--mode=archive")
        c1, c2 = commit(src, v1, "v1"), commit(src, v2, "v2")
        # a client holding v1, cloned (hardlinks: objects are never changed in place) for every run
        base_client = work / "client-v1"
        if base_client.exists():
            shutil.rmtree(base_client)
        ostree("init", f"--repo={base_client}", "--mode=bare-user")
        ostree("pull-local", f"--repo={base_client}", str(src), c1)
        ostree("refs", f"--repo={base_client}", "--create=o:main", c1)

        # generation, each tool into its own copy of the source
        src_o, src_h = work / "src-ostree", work / "src-ours"
        gen = {"ours": [], "ref": []}
        for i in range(args.runs):
            order = [("ref", src_o, ["ostree", "static-delta", "generate", f"--repo={src_o}", f"--from={c1}",
                                     f"--to={c2}"]),
                     ("ours", src_h, hybridos("repo", "static-delta", "generate", f"--repo={src_h}",
                                              f"--from={c1}", f"--to={c2}"))]
            if i % 2:
                order.reverse()
            for who, repo, argv_ in order:
                clone(src, repo)
                warm(repo / "objects")
                gen[who].append(timed(argv_))
        med = {w: sorted(v)[len(v) // 2] for w, v in gen.items()}
        cases.append(case("generate delta (30k-file update)", med["ours"][0], med["ref"][0], 1.0,
                          ours_walls=[round(x[0], 2) for x in gen["ours"]],
                          reference_walls=[round(x[0], 2) for x in gen["ref"]],
                          ours_cpu=round(med["ours"][1], 2), reference_cpu=round(med["ref"][1], 2),
                          ours_peak_rss_mb=round(med["ours"][2]), reference_peak_rss_mb=round(med["ref"][2])))
        size_o, size_h = delta_bytes(src_o), delta_bytes(src_h)
        cases.append(case("delta size (bytes, as seconds column)", size_h, size_o, 1.0,
                          ours_bytes=size_h, reference_bytes=size_o))
        ostree("summary", f"--repo={src_o}", "-u")
        subprocess.run(hybridos("repo", "summary", f"--repo={src_h}", "-u"), check=True, capture_output=True)

        # applying over HTTP: each tool pulls its own delta from the same server process
        servers = {"ours": serve_in_process(src_h), "ref": serve_in_process(src_o)}
        try:
            urls = {k: s.stdout.readline().strip() for k, s in servers.items()}
            pulls = {"ours": [], "ref": [], "objects": []}
            rounds = []
            for i in range(apply_runs):
                order = ["ours", "ref", "objects"] if i % 2 == 0 else ["objects", "ref", "ours"]
                for who in order:
                    client = work / f"client-{who}"
                    clone(base_client, client)
                    url = urls["ref" if who == "ref" else "ours"]
                    with open(client / "config", "a") as f:
                        f.write(f'\n[remote "o"]\nurl={url}\ngpg-verify=false\n')
                    if who == "ref":
                        argv_ = ["ostree", "pull", f"--repo={client}", "o", "main"]
                    else:
                        argv_ = [sys.executable, "-c", HWM, str(work / "hwm"), "repo", "pull", "--repo", str(client),
                                 "o", "main", *(["--disable-static-deltas"] if who == "objects" else [])]
                    load = os.getloadavg()[0]
                    wall, cpu, rss = timed(argv_)
                    workers_rss = 0.0
                    if who != "ref":
                        own, kids = (work / "hwm").read_text().split()
                        rss, workers_rss = int(own) / 1024, int(kids) / 1024
                    pulls[who].append((wall, cpu, rss, workers_rss, load))
                    got = ostree("rev-parse", f"--repo={client}", "o:main").strip()
                    if got != c2:
                        raise RuntimeError(f"{who}: pulled {got}, not {c2}")
                rounds.append({"ours": round(pulls["ours"][-1][0], 2), "objects": round(pulls["objects"][-1][0], 2),
                               "ratio": round(pulls["ours"][-1][0] / pulls["objects"][-1][0], 2),
                               "load": round(pulls["ours"][-1][4], 1)})
                print(f"  apply round {i + 1}: {rounds[-1]}", flush=True)
            for who in ("ours", "objects"):
                a = ostree("ls", f"--repo={work / f'client-{who}'}", "-R", c2)
                b = ostree("ls", f"--repo={work / 'client-ref'}", "-R", c2)
                if a != b:
                    raise RuntimeError(f"{who}: the pulled tree differs from ostree's")
        finally:
            for s in servers.values():
                s.stdin.close()
                s.wait(timeout=10)
        med = {w: sorted(v)[len(v) // 2] for w, v in pulls.items()}
        cases.append(case("apply delta over HTTP vs ostree pull", med["ours"][0], med["ref"][0], 1.0,
                          ours_walls=[round(x[0], 2) for x in pulls["ours"]],
                          reference_walls=[round(x[0], 2) for x in pulls["ref"]],
                          ours_peak_rss_mb=round(med["ours"][2]), reference_peak_rss_mb=round(med["ref"][2]),
                          ours_workers_peak_rss_mb=round(max(x[3] for x in pulls["ours"])),
                          rss_goal_mb=RSS_GOAL_MB, rss_met=max(x[2] for x in pulls["ours"]) <= RSS_GOAL_MB))
        paired = sorted(r["ratio"] for r in rounds)[len(rounds) // 2]
        cases.append(case("apply delta vs our object pull", med["ours"][0], med["objects"][0], 0.5,
                          ours_walls=[round(x[0], 2) for x in pulls["ours"]],
                          reference_walls=[round(x[0], 2) for x in pulls["objects"]],
                          ours_cpu=round(med["ours"][1], 2), reference_cpu=round(med["objects"][1], 2),
                          reference_peak_rss_mb=round(med["objects"][2]),
                          rounds=rounds, paired_median_ratio=paired,
                          loads=[round(x[4], 1) for x in pulls["ours"]]))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result = {"name": "deltas",
              "input": f"update of {stats['files']} files: {stats['edited']} edited, {stats['added']} added, "
                       f"{stats['removed']} removed, one {stats['binary_bytes'] >> 20} MiB binary rebuilt",
              "cases": cases}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "deltas.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
