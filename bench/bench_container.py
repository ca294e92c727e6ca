"""Container encapsulation: ``hybridos compose container-encapsulate`` of a commit of the 30k-file tree
(the store benchmark's copy of /usr) against ``ostree commit`` of the same tree (the issue's yardstick:
encapsulating a commit should cost no more than committing it).

The other goal of the container issue (a one-package update downloads at most 2x that package's files) is a
byte count, checked by tests/container/test_rebase.py and printed there; it is not a timing.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_store import build_tree  # noqa: E402
from common import case, hybridos, timed_command  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--small", action="store_true", help="~3,000 files instead of 30,000")
    ap.add_argument("--src", type=Path, default=Path("/usr"))
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp/hybridos-bench"))
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    files, mbytes = (3000, 60) if args.small else (30000, 500)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    tree = work / f"tree-{files}-{mbytes}"
    info = build_tree(args.src, tree, files, mbytes << 20)
    desc = f"{info['files']} files, {info['bytes'] / 2**20:.0f} MiB copied from {info['src']}"
    print(f"tree: {desc}")
    repo = work / f"container-repo-{files}-{mbytes}"  # a commit of exactly this tree
    best_ours = best_ref = None
    for i in range(args.repeat):
        for who in (("ostree", "hybridos") if i % 2 == 0 else ("hybridos", "ostree")):
            if who == "ostree":
                shutil.rmtree(work / "container-ref", ignore_errors=True)
                subprocess.run(["ostree", "init", f"--repo={work / 'container-ref'}", "--mode=bare"], check=True)
                wall, _ = timed_command(["ostree", "commit", f"--repo={work / 'container-ref'}", "-b", "bench",
                                         "--owner-uid=0", "--owner-gid=0", "--no-xattrs", str(tree)])
                best_ref = wall if best_ref is None else min(best_ref, wall)
            else:
                if not repo.exists():
                    subprocess.run(["ostree", "init", f"--repo={repo}", "--mode=bare"], check=True)
                    subprocess.run(["ostree", "commit", f"--repo={repo}", "-b", "bench", "--owner-uid=0",
                                    "--owner-gid=0", "--no-xattrs", "--add-metadata=ostree.bootable=true",
                                    str(tree)], check=True, capture_output=True)
                shutil.rmtree(work / "container-img", ignore_errors=True)
                wall, _ = timed_command(hybridos("compose", "container-encapsulate", "--repo", str(repo), "bench",
                                                 f"oci:{work / 'container-img'}:bench"))
                best_ours = wall if best_ours is None else min(best_ours, wall)
    return {"name": "container", "input": desc,
            "cases": [case("encapsulate vs ostree commit (30k files)", best_ours, best_ref, 1.0)]}


if __name__ == "__main__":
    main()
