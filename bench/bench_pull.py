"""Pull benchmark: our pull vs ``ostree pull`` over HTTP (and once over HTTPS), and our file:// pull vs
``ostree pull-local``.

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
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench.common import case, hybridos  # noqa: E402

#: Directories of /usr whose union holds well over 30,000 objects (content + dirtree + dirmeta).
FULL_DIRS = ["/usr/share/man", "/usr/share/icons", "/usr/share/doc", "/usr/include", "/usr/share/cmake-3.25",
             "/usr/share/vim", "/usr/share/perl", "/usr/share/zoneinfo", "/usr/share/mime", "/usr/share/i18n",
             "/usr/share/X11", "/usr/lib/python3"]
SMALL_DIRS = ["/usr/share/zoneinfo", "/usr/share/perl", "/usr/share/mime"]

SERVER = """
import sys, time
sys.path.insert(0, {root!r})
from tests.helpers.httpserver import serve
with serve({path!r}, tls=({cert!r}, {key!r}) if {cert!r} else None) as srv:
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


#: Seconds to wait after deleting the previous run's repository: for a few seconds after tens of thousands of
#: files are deleted, ext4 allocates inodes slowly (``recently_deleted`` in the profile): the next tool to
#: create files would be charged for its predecessor's deletion.
SETTLE = 6


def remove(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
        os.sync()
        time.sleep(SETTLE)


def fresh_repo(path: Path, mode: str, url: str, tool: str, ca: Path | None = None) -> None:
    remove(path)
    tls = [f"--set=tls-ca-path={ca}"] if ca else []
    if tool == "ostree":
        ostree("init", f"--repo={path}", f"--mode={mode}")
        ostree("remote", "add", f"--repo={path}", "--no-gpg-verify", *tls, "o", url)
    else:
        subprocess.run(hybridos("repo", "init", "--repo", str(path), "--mode", mode), check=True,
                       capture_output=True)
        subprocess.run(hybridos("repo", "remote", "add", "--repo", str(path), "--no-gpg-verify", "o", url),
                       check=True, capture_output=True)
        if ca:   # the same key file line ostree writes for --set
            with open(path / "config", "a") as f:
                f.write(f"tls-ca-path={ca}\n")


def serve_in_process(src: Path, cert: Path | None = None, key: Path | None = None) -> subprocess.Popen:
    """The test HTTP server in its own process (so it does not share our GIL); its URL is its first line."""
    return subprocess.Popen([sys.executable, "-c", SERVER.format(root=str(ROOT), path=str(src),
                                                                 cert=str(cert or ""), key=str(key or ""))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def verify_same(ours: Path, theirs: Path, ref: str, their_ref: str | None = None) -> None:
    a = ostree("ls", f"--repo={ours}", "-R", ref)
    b = ostree("ls", f"--repo={theirs}", "-R", their_ref or ref)
    if a != b:
        raise RuntimeError(f"pulled trees differ between {ours} and {theirs}")


def timed(argv: list[str]) -> tuple[float, float, float]:
    """Run a command; (wall seconds, CPU seconds user+sys, peak RSS MiB) of the child."""
    with tempfile.TemporaryFile() as errf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errf)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status):
            errf.seek(0)
            raise RuntimeError(f"{' '.join(argv)} failed: {errf.read().decode(errors='replace')[-400:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def compare(name: str, src: Path, prepare_ours, ours_argv, prepare_ref, ref_argv, runs: int, count: int) -> dict:
    """Alternate the two tools ``runs`` times from the same warm page cache; report the medians."""
    samples: dict[str, list[tuple[float, float, float]]] = {"ours": [], "ref": []}
    for i in range(runs):
        order = [("ours", prepare_ours, ours_argv), ("ref", prepare_ref, ref_argv)]
        if i % 2:
            order.reverse()
        for who, prepare, argv in order:
            prepare()
            warm(src)
            samples[who].append(timed(argv))
    med = {who: sorted(v)[len(v) // 2] for who, v in samples.items()}
    return case(name, med["ours"][0], med["ref"][0], 1.0, objects=count, runs=runs,
                ours_walls=[round(x[0], 2) for x in samples["ours"]],
                reference_walls=[round(x[0], 2) for x in samples["ref"]],
                ours_cpu=round(med["ours"][1], 2), reference_cpu=round(med["ref"][1], 2),
                ours_peak_rss_mb=round(med["ours"][2]), reference_peak_rss_mb=round(med["ref"][2]))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--small", action="store_true", help="a quick run on a few thousand objects")
    ap.add_argument("--modes", default="archive,bare-user", help="repository modes to pull into")
    ap.add_argument("--keep", default=None, help="work in this directory and keep it (the source is reused)")
    ap.add_argument("--runs", type=int, default=3, help="alternating runs per case (the median is reported)")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--skip-https", action="store_true", help="skip the (single-run) HTTPS case")
    ap.add_argument("--skip-local", action="store_true")
    args = ap.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-pull-"))
    work.mkdir(parents=True, exist_ok=True)
    dirs = SMALL_DIRS if args.small else FULL_DIRS
    cases = []
    ours, theirs = work / "ours", work / "theirs"
    try:
        src, count = build_source(work, dirs)
        size_mb = sum(f.stat().st_size for f in (src / "objects").rglob("*") if f.is_file()) / 2**20
        print(f"  source: {count} objects, {size_mb:.0f} MiB (archive, made by ostree commit)", flush=True)
        if not args.small and count < 30_000:
            raise RuntimeError(f"the source repository has only {count} objects (< 30,000)")
        if not args.skip_https:
            # One run: ostree opens many connections and pays a TLS handshake for each (80-120 s here).
            from tests.helpers.httpserver import self_signed_cert

            cert, key = self_signed_cert(work)
            server = serve_in_process(src, cert, key)
            try:
                url = server.stdout.readline().strip()
                cases.append(compare(
                    "https pull into archive", src,
                    lambda: fresh_repo(ours, "archive", url, "ours", cert),
                    hybridos("repo", "pull", "--repo", str(ours), "o", "main"),
                    lambda: fresh_repo(theirs, "archive", url, "ostree", cert),
                    ["ostree", "pull", f"--repo={theirs}", "o", "main"], 1, count))
                verify_same(ours, theirs, "o:main")
            finally:
                server.stdin.close()
                server.wait(timeout=10)
        if not args.skip_http:
            server = serve_in_process(src)
            try:
                url = server.stdout.readline().strip()
                for mode in modes:
                    cases.append(compare(
                        f"http pull into {mode}", src,
                        lambda m=mode: fresh_repo(ours, m, url, "ours"),
                        hybridos("repo", "pull", "--repo", str(ours), "o", "main"),
                        lambda m=mode: fresh_repo(theirs, m, url, "ostree"),
                        ["ostree", "pull", f"--repo={theirs}", "o", "main"], args.runs, count))
                    verify_same(ours, theirs, "o:main")
            finally:
                server.stdin.close()
                server.wait(timeout=10)
        if not args.skip_local:
            for mode in modes:
                for label, extra in (("pull-local", []), ("pull-local --untrusted", ["--untrusted"])):
                    def prepare_ref(m=mode):
                        remove(theirs)
                        ostree("init", f"--repo={theirs}", f"--mode={m}")
                    cases.append(compare(
                        f"file:// pull vs ostree {label} ({mode})", src,
                        lambda m=mode: fresh_repo(ours, m, f"file://{src}", "ours"),
                        hybridos("repo", "pull", "--repo", str(ours), "o", "main"),
                        prepare_ref, ["ostree", "pull-local", *extra, f"--repo={theirs}", str(src), "main"],
                        args.runs, count))
                    verify_same(ours, theirs, "o:main", "main")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result = {"name": "pull", "input": f"{count} objects ({size_mb:.0f} MiB archive) from {', '.join(dirs)}",
              "cases": cases}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "pull.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
