"""Pull benchmark: our pull vs ``ostree pull`` over HTTP, and our file:// pull vs ``ostree pull-local``.

One source repository (archive) is made by the real ``ostree commit`` of a hardlink copy of directories from
/usr; the same HTTP server (tests/helpers/httpserver.py, run in its own process so it does not share our GIL)
serves it to both clients; each client pulls into a fresh repository of the same mode.

Usage: python bench/bench_pull.py [--small] [--modes archive,bare-user] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench.common import case, hybridos, timed_command  # noqa: E402

#: Directories of /usr whose union holds well over 30,000 objects (content + dirtree + dirmeta).
FULL_DIRS = ["/usr/share/man", "/usr/share/icons", "/usr/share/doc", "/usr/include", "/usr/share/cmake-3.25",
             "/usr/share/vim", "/usr/share/perl", "/usr/share/zoneinfo", "/usr/share/mime", "/usr/share/i18n",
             "/usr/share/X11", "/usr/lib/python3"]
SMALL_DIRS = ["/usr/share/zoneinfo", "/usr/share/perl", "/usr/share/mime"]

SERVER = """
import sys, time
sys.path.insert(0, {root!r})
from tests.helpers.httpserver import serve
with serve({path!r}) as srv:
    # Without this, headers and body go out as two small segments and Nagle + delayed ACK stall every
    # keep-alive request by ~40 ms: both clients would only measure that.
    srv.httpd.RequestHandlerClass.disable_nagle_algorithm = True
    print(srv.url, flush=True)
    sys.stdin.read()
"""


def ostree(*args: str) -> str:
    return subprocess.run(["ostree", *args], check=True, capture_output=True, text=True).stdout


def build_source(work: Path, dirs: list[str]) -> tuple[Path, int]:
    """Hardlink-copy ``dirs`` into one tree, commit it with the real ostree; returns (repo, object count)."""
    tree = work / "tree"
    for d in dirs if not (work / "src/refs/heads/main").exists() else ():
        if not os.path.isdir(d):
            continue
        dest = tree / d.strip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if subprocess.run(["cp", "-al", d, str(dest)], capture_output=True).returncode:
            shutil.copytree(d, dest, symlinks=True)
    src = work / "src"
    if (src / "refs/heads/main").exists():   # --keep: reuse the source of an earlier run
        return src, sum(len(files) for _, _, files in os.walk(src / "objects"))
    ostree("init", f"--repo={src}", "--mode=archive")
    ostree("commit", f"--repo={src}", "-b", "main", "-s", "bench", "--owner-uid=0", "--owner-gid=0",
           "--no-xattrs", str(tree))
    ostree("summary", f"--repo={src}", "-u")
    count = sum(len(files) for _, _, files in os.walk(src / "objects"))
    return src, count


def warm(path: Path) -> None:
    for dirpath, _, files in os.walk(path):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                while fh.read(1 << 20):
                    pass


def fresh_repo(path: Path, mode: str, url: str, tool: str) -> None:
    if path.exists():
        shutil.rmtree(path)
    if tool == "ostree":
        ostree("init", f"--repo={path}", f"--mode={mode}")
        ostree("remote", "add", f"--repo={path}", "--no-gpg-verify", "o", url)
    else:
        subprocess.run(hybridos("repo", "init", "--repo", str(path), "--mode", mode), check=True,
                       capture_output=True)
        subprocess.run(hybridos("repo", "remote", "add", "--repo", str(path), "--no-gpg-verify", "o", url),
                       check=True, capture_output=True)


def verify_same(ours: Path, theirs: Path, ref: str, their_ref: str | None = None) -> None:
    a = ostree("ls", f"--repo={ours}", "-R", ref)
    b = ostree("ls", f"--repo={theirs}", "-R", their_ref or ref)
    if a != b:
        raise RuntimeError(f"pulled trees differ between {ours} and {theirs}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--small", action="store_true", help="a quick run on a few hundred objects")
    ap.add_argument("--modes", default="archive,bare-user", help="repository modes to pull into")
    ap.add_argument("--keep", default=None, help="work in this directory and keep it")
    ap.add_argument("--runs", type=int, default=1, help="runs per case (the best is kept)")
    args = ap.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-pull-"))
    work.mkdir(parents=True, exist_ok=True)
    cases = []
    try:
        src, count = build_source(work, SMALL_DIRS if args.small else FULL_DIRS)
        size_mb = sum(f.stat().st_size for f in (src / "objects").rglob("*") if f.is_file()) / 2**20
        print(f"  source: {count} objects, {size_mb:.0f} MiB (archive, made by ostree commit)", flush=True)
        if not args.small and count < 30_000:
            raise RuntimeError(f"the source repository has only {count} objects (< 30,000)")
        warm(src)
        server = subprocess.Popen([sys.executable, "-c", SERVER.format(root=str(ROOT), path=str(src))],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            url = server.stdout.readline().strip()
            for mode in modes:
                best_ours = best_ref = None
                for _ in range(args.runs):
                    fresh_repo(work / "theirs", mode, url, "ostree")
                    ref_t, ref_rss = timed_command(["ostree", "pull", f"--repo={work / 'theirs'}", "o", "main"])
                    fresh_repo(work / "ours", mode, url, "ours")
                    ours_t, ours_rss = timed_command(hybridos("repo", "pull", "--repo", str(work / "ours"),
                                                              "o", "main"))
                    best_ref = min(best_ref or ref_t, ref_t)
                    best_ours = min(best_ours or ours_t, ours_t)
                verify_same(work / "ours", work / "theirs", "o:main")
                cases.append(case(f"http pull into {mode}", best_ours, best_ref, 1.0, objects=count,
                                  ours_peak_rss_mb=round(ours_rss), reference_peak_rss_mb=round(ref_rss)))
        finally:
            server.stdin.close()
            server.wait(timeout=10)
        for mode in modes:
            for label, extra in (("pull-local", []), ("pull-local --untrusted", ["--untrusted"])):
                best_ours = best_ref = None
                for _ in range(args.runs):
                    theirs = work / "theirs"
                    if theirs.exists():
                        shutil.rmtree(theirs)
                    ostree("init", f"--repo={theirs}", f"--mode={mode}")
                    ref_t, _ = timed_command(["ostree", "pull-local", *extra, f"--repo={theirs}", str(src), "main"])
                    fresh_repo(work / "ours", mode, f"file://{src}", "ours")
                    ours_t, _ = timed_command(hybridos("repo", "pull", "--repo", str(work / "ours"), "o", "main"))
                    best_ref = min(best_ref or ref_t, ref_t)
                    best_ours = min(best_ours or ours_t, ours_t)
                verify_same(work / "ours", theirs, "o:main", "main")
                cases.append(case(f"file:// pull vs ostree {label} ({mode})", best_ours, best_ref, 1.0,
                                  objects=count))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result = {"name": "pull", "input": f"{count} objects from {', '.join(SMALL_DIRS if args.small else FULL_DIRS)}",
              "cases": cases}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "pull.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
