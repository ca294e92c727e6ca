"""Benchmark the store against the real ``ostree`` on the same tree, side by side, in one run.

The tree is copied from this machine's /usr (regular files, symlinks, directories; files over 64 MiB and names
that are not UTF-8 are skipped) until it holds at least --files files and --mbytes MiB. Both tools run as
processes (``ostree ...`` and ``python -m hybridos repo ...``) with the same options; wall time and the peak RSS
of that process are measured with wait4(). Results go to bench/results/store.json.

    .venv/bin/python bench/bench_store.py              # full size: >= 30,000 files, >= 500 MiB
    .venv/bin/python bench/bench_store.py --small      # quick: ~3,000 files, ~60 MiB
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="~3,000 files / 60 MiB instead of the full size")
    ap.add_argument("--files", type=int, default=None, help="minimum number of files")
    ap.add_argument("--mbytes", type=int, default=None, help="minimum MiB of file data")
    ap.add_argument("--src", type=Path, default=Path("/usr"), help="where the tree is copied from")
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp/hybridos-bench"))
    ap.add_argument("--repeat", type=int, default=1, help="runs per measurement (the best is kept)")
    ap.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "store.json")
    args = ap.parse_args(argv)
    min_files = args.files or (3000 if args.small else 30000)
    min_mb = args.mbytes or (60 if args.small else 500)
    if shutil.which("ostree") is None:
        print("ostree is not installed", file=sys.stderr)
        return 2

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    tree = work / f"tree-{min_files}-{min_mb}"
    info = build_tree(args.src, tree, min_files, min_mb << 20)
    print(f"tree: {info['files']} files, {info['bytes'] / 2**20:.0f} MiB, {info['symlinks']} symlinks, "
          f"{info['dirs']} dirs (from {info['src']})")
    # warm the page cache for both tools alike
    subprocess.run(["tar", "-cf", "/dev/null", "-C", str(tree), "."], check=True)

    results: dict = {"tree": info, "cpus": os.cpu_count(), "ops": {}}

    def measure(name: str, theirs, ours, prepare=None) -> None:
        best: dict = {}
        for _ in range(args.repeat):
            for who, fn in (("ostree", theirs), ("hybridos", ours)):
                if prepare:
                    prepare(who)
                sync()
                wall, rss, _ = fn()
                if who not in best or wall < best[who][0]:
                    best[who] = (wall, rss)
        ratio = best["hybridos"][0] / best["ostree"][0]
        results["ops"][name] = {"ostree_s": round(best["ostree"][0], 3), "hybridos_s": round(best["hybridos"][0], 3),
                                "ratio": round(ratio, 3), "ostree_rss_kib": best["ostree"][1],
                                "hybridos_rss_kib": best["hybridos"][1]}
        print(f"{name:<34} ostree {best['ostree'][0]:8.2f}s  hybridos {best['hybridos'][0]:8.2f}s  "
              f"ratio {ratio:5.2f}   peak RSS ostree {best['ostree'][1] / 1024:6.1f} MiB  "
              f"hybridos {best['hybridos'][1] / 1024:6.1f} MiB", flush=True)

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

    for mode in ("archive", "bare-user"):
        measure(f"commit {mode}", commit("ostree", mode, tree), commit("hybridos", mode, tree),
                prepare=lambda who, mode=mode: init(who, mode))

    # both repositories hold the same tree: check the checksums agree before going on
    roots = {}
    for who in ("ostree", "hybridos"):
        out = subprocess.run(["ostree", f"--repo={repos[who]['bare-user']}", "ls", "-C", "-d", "bench", "/"],
                             capture_output=True, text=True, check=True).stdout.split()
        roots[who] = (out[4], out[5])
    results["same_root_checksums"] = roots["ostree"] == roots["hybridos"]
    print(f"same root dirtree/dirmeta from both tools: {results['same_root_checksums']}")

    cos = {who: work / f"co-{who}" for who in ("ostree", "hybridos")}

    def co_prepare(who: str) -> None:
        drop(cos[who])

    measure("checkout -U -H (bare-user)",
            lambda: timed_rss(["ostree", f"--repo={repos['ostree']['bare-user']}", "checkout", "-U", "-H", "bench",
                               str(cos["ostree"])]),
            lambda: timed_rss(HY + ["checkout", f"--repo={repos['hybridos']['bare-user']}", "-U", "-H", "bench",
                                    str(cos["hybridos"])]),
            prepare=co_prepare)
    measure("fsck archive",
            lambda: timed_rss(["ostree", f"--repo={repos['ostree']['archive']}", "fsck"]),
            lambda: timed_rss(HY + ["fsck", f"--repo={repos['hybridos']['archive']}"]))
    measure("fsck bare-user",
            lambda: timed_rss(["ostree", f"--repo={repos['ostree']['bare-user']}", "fsck"]),
            lambda: timed_rss(HY + ["fsck", f"--repo={repos['hybridos']['bare-user']}"]))
    measure("recommit hardlink checkout",
            commit("ostree", "bare-user", cos["ostree"], ("--link-checkout-speedup",)),
            commit("hybridos", "bare-user", cos["hybridos"], ("--link-checkout-speedup",)))
    full = results["ops"]["commit bare-user"]["hybridos_s"]
    re = results["ops"]["recommit hardlink checkout"]["hybridos_s"]
    results["recommit_vs_full_commit"] = round(re / full, 3)
    print(f"hybridos recommit / hybridos full bare-user commit: {re / full:.3f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
