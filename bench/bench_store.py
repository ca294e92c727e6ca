"""Benchmark the store against the real ``ostree`` on the same tree, side by side, in one run.

The tree is copied from this machine's /usr (regular files, symlinks, directories; files over 64 MiB and names
that are not UTF-8 are skipped) until it holds at least --files files and --mbytes MiB. Both tools run as
processes (``ostree ...`` and ``python -m hybridos repo ...``) with the same options; wall time and the peak RSS
of that process are measured with wait4(). Results go to bench/results/store.json.

    .venv/bin/python bench/bench_store.py              # full size: >= 30,000 files, >= 500 MiB
    .venv/bin/python bench/bench_store.py --small      # quick: >= 3,000 files, >= 60 MiB

``main(argv) -> dict`` returns the shared result format of bench/common.py (cases with ours/reference/ratio/goal,
plus peak RSS in MiB); "recommit / full commit" compares our recommit of an unchanged hardlink checkout with our
own full commit of the same tree (goal <= 0.2).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HY = [sys.executable, "-m", "hybridos", "repo"]
CANON = ["--owner-uid=0", "--owner-gid=0", "--no-xattrs"]
MAX_FILE = 64 << 20


def build_tree(src: Path, dest: Path, min_files: int, min_bytes: int) -> dict:
    """Copy files from ``src`` in sorted walk order until both minimums are reached."""
    stamp = dest.parent / f"{dest.name}.json"
    if stamp.exists() and dest.exists():
        info = json.loads(stamp.read_text())
        if info.get("min_files") == min_files and info.get("min_bytes") == min_bytes and info.get("src") == str(src):
            return info
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    files = nbytes = dirs = links = 0
    done = False
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        rel = os.path.relpath(dirpath, src)
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            dirnames[:] = []
            continue
        out = dest / rel
        out.mkdir(exist_ok=True)
        dirs += 1
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            try:
                name.encode("utf-8")
                st = os.lstat(p)
            except (UnicodeEncodeError, OSError):
                continue
            target = out / name
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(p), target)
                links += 1
            elif stat.S_ISREG(st.st_mode) and st.st_size <= MAX_FILE:
                try:
                    shutil.copyfile(p, target, follow_symlinks=False)
                except OSError:
                    continue
                os.chmod(target, stat.S_IMODE(st.st_mode))
                files += 1
                nbytes += st.st_size
            if files >= min_files and nbytes >= min_bytes:
                done = True
                break
        if done:
            break
    info = {"src": str(src), "min_files": min_files, "min_bytes": min_bytes, "files": files, "bytes": nbytes,
            "symlinks": links, "dirs": dirs}
    stamp.write_text(json.dumps(info))
    return info


def timed_rss(argv: list[str]) -> tuple[float, int, str]:
    """Run ``argv``: (wall seconds, peak RSS of that process in KiB via wait4, stdout)."""
    env = dict(os.environ)
    env.pop("HYBRIDOS_SYSROOT", None)
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out = p.stdout.read()  # type: ignore[union-attr]
    err = p.stderr.read()  # type: ignore[union-attr]
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}): {err.decode(errors='replace')[-2000:]}")
    return wall, ru.ru_maxrss, out.decode()


def drop(path: Path) -> None:
    if path.exists():
        subprocess.run(["rm", "-rf", str(path)], check=True)


def sync() -> None:
    os.sync()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="~3,000 files instead of the full size")
    ap.add_argument("--files", type=int, default=None, help="minimum number of files")
    ap.add_argument("--mbytes", type=int, default=None, help="minimum MiB of file data")
    ap.add_argument("--src", type=Path, default=Path("/usr"), help="where the tree is copied from")
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp/hybridos-bench"))
    ap.add_argument("--repeat", type=int, default=2,
                    help="runs per measurement, alternating which tool goes first (the best is kept)")
    ap.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "store.json")
    args = ap.parse_args(argv)
    min_files = args.files or (3000 if args.small else 30000)
    min_mb = args.mbytes or (60 if args.small else 500)
    if shutil.which("ostree") is None:
        raise SystemExit("ostree is not installed")

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    tree = work / f"tree-{min_files}-{min_mb}"
    info = build_tree(args.src, tree, min_files, min_mb << 20)
    desc = (f"{info['files']} files, {info['bytes'] / 2**20:.0f} MiB, {info['symlinks']} symlinks, "
            f"{info['dirs']} dirs copied from {info['src']} (sorted walk, files <= 64 MiB)")
    print(f"tree: {desc}")
    subprocess.run(["tar", "-cf", "/dev/null", "-C", str(tree), "."], check=True)  # same warm start for both

    result: dict = {"name": "store", "input": desc, "tree": info, "cpus": os.cpu_count(), "cases": []}
    timings: dict = {}

    def measure(name: str, goal: float | None, theirs, ours, prepare=None) -> None:
        best: dict = {}
        for i in range(args.repeat):
            order = (("ostree", theirs), ("hybridos", ours))
            for who, fn in (order if i % 2 == 0 else order[::-1]):  # alternate who goes first
                if prepare:
                    prepare(who)
                sync()
                wall, rss, _ = fn()
                if who not in best or wall < best[who][0]:
                    best[who] = (wall, rss)
        timings[name] = best
        (ours_s, ours_rss), (ref_s, ref_rss) = best["hybridos"], best["ostree"]
        ratio = ours_s / ref_s
        result["cases"].append({"name": name, "ours": round(ours_s, 3), "reference": round(ref_s, 3),
                                "ratio": round(ratio, 3), "goal": goal,
                                "ours_peak_rss_mb": round(ours_rss / 1024, 1),
                                "reference_peak_rss_mb": round(ref_rss / 1024, 1)})
        flag = "" if goal is None else ("  OK" if ratio <= goal else "  OVER GOAL")
        print(f"  {name:<34} ostree {ref_s:8.2f}s  hybridos {ours_s:8.2f}s  ratio {ratio:5.2f}{flag}   "
              f"peak RSS ostree {ref_rss / 1024:6.1f} MiB  hybridos {ours_rss / 1024:6.1f} MiB", flush=True)

    repos = {who: {m: work / f"{who}-{m}" for m in ("archive", "bare-user")} for who in ("ostree", "hybridos")}

    def init(who: str, mode: str) -> None:
        path = repos[who][mode]
        drop(path)
        if who == "ostree":
            subprocess.run(["ostree", f"--repo={path}", "init", f"--mode={mode}"], check=True)
        else:
            subprocess.run(HY + ["init", f"--repo={path}", f"--mode={mode}"], check=True)

    def commit(who: str, mode: str, src: Path, extra: tuple = ()):
        repo = repos[who][mode]
        if who == "ostree":
            return lambda: timed_rss(["ostree", f"--repo={repo}", "commit", f"--tree=dir={src}", "-b", "bench",
                                      *CANON, *extra])
        return lambda: timed_rss(HY + ["commit", f"--repo={repo}", f"--tree=dir={src}", "-b", "bench", *CANON,
                                       *extra])

    for mode, goal in (("archive", 0.7), ("bare-user", 1.0)):
        measure(f"commit {mode}", goal, commit("ostree", mode, tree), commit("hybridos", mode, tree),
                prepare=lambda who, mode=mode: init(who, mode))

    # both tools committed the same tree: the checksums must agree before anything else is compared
    roots = {}
    for who in ("ostree", "hybridos"):
        out = subprocess.run(["ostree", f"--repo={repos[who]['bare-user']}", "ls", "-C", "-d", "bench", "/"],
                             capture_output=True, text=True, check=True).stdout.split()
        roots[who] = (out[4], out[5])
    result["same_root_checksums"] = roots["ostree"] == roots["hybridos"]
    print(f"  same root dirtree/dirmeta from both tools: {result['same_root_checksums']}")

    cos = {who: work / f"co-{who}" for who in ("ostree", "hybridos")}
    measure("checkout -U -H (bare-user)", 1.0,
            lambda: timed_rss(["ostree", f"--repo={repos['ostree']['bare-user']}", "checkout", "-U", "-H", "bench",
                               str(cos["ostree"])]),
            lambda: timed_rss(HY + ["checkout", f"--repo={repos['hybridos']['bare-user']}", "-U", "-H", "bench",
                                    str(cos["hybridos"])]),
            prepare=lambda who: drop(cos[who]))
    for mode in ("archive", "bare-user"):
        measure(f"fsck {mode}", 0.8,
                lambda mode=mode: timed_rss(["ostree", f"--repo={repos['ostree'][mode]}", "fsck"]),
                lambda mode=mode: timed_rss(HY + ["fsck", f"--repo={repos['hybridos'][mode]}"]))
    measure("recommit hardlink checkout", None,
            commit("ostree", "bare-user", cos["ostree"], ("--link-checkout-speedup",)),
            commit("hybridos", "bare-user", cos["hybridos"], ("--link-checkout-speedup",)))
    full = timings["commit bare-user"]["hybridos"][0]
    re = timings["recommit hardlink checkout"]["hybridos"][0]
    result["cases"].append({"name": "recommit / full commit (hybridos, bare-user)", "ours": round(re, 3),
                            "reference": round(full, 3), "ratio": round(re / full, 3), "goal": 0.2})
    print(f"  hybridos recommit / hybridos full bare-user commit: {re / full:.3f}{'  OK' if re / full <= 0.2 else ''}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
