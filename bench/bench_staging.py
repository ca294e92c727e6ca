"""Staging benchmark: finalization at shutdown (goal: <= 1 s for a 30,000-file deployment), `hybridos
finalize-staged` side by side with `ostree admin finalize-staged` on the same sysroot.

The sysroot stands in for the booted system (hybridos: the HYBRIDOS_TEST_* variables of sysroot/runstate.py;
ostree: run in a private mount namespace with the booted deployment as `/`, tests/sysroot/booted_ostree.py).
Each round stages the other commit and times only the finalization: the /etc merge, the new boot entries and
the swap, and the removal of the deployment that leaves the list (both tools do it at shutdown). Rounds
alternate between the two tools on the one sysroot.

Usage: python bench/bench_staging.py [--small] [--files N] [--rounds N]
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
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_sysroot import STATEROOT, make_tree, unlock  # noqa: E402
from common import case, hybridos, timed_command  # noqa: E402
from tests.sysroot.booted_ostree import SCRIPT  # noqa: E402
from tests.sysroot.staged import RunningSystem  # noqa: E402

REF = "bench/stable"
#: the script's command, timed inside the namespace (so the mount set-up is not counted)
TIMED = 'S=$(date +%s%N); "$@" || exit $?; E=$(date +%s%N); echo "elapsed-ns $((E - S))"'


def _run(*argv: str, env: dict | None = None) -> str:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, env=env).stdout


def ostree_booted(system: RunningSystem, *args: str, timed: bool = False) -> float:
    """Run `ostree ARGS` as on the booted system; the seconds it took when ``timed``."""
    mnt = system.run.parent / "newroot"
    mnt.mkdir(exist_ok=True)
    script = SCRIPT.replace('chroot "$N" /usr/bin/env -i PATH=/usr/bin:/usr/sbin HOME=/ '
                            'OSTREE_SYSROOT_DEBUG="${OSTREE_SYSROOT_DEBUG:-}" "$@"',
                            f"chroot \"$N\" /usr/bin/env -i PATH=/usr/bin:/usr/sbin HOME=/ sh -c '{TIMED}' sh "
                            '"$@"' if timed else
                            'chroot "$N" /usr/bin/env -i PATH=/usr/bin:/usr/sbin HOME=/ "$@"')
    dep = system.sysroot / system.booted.relpath
    out = _run("unshare", "-m", "-p", "-f", "--propagation", "private", "sh", "-ec", script, "sh",
               str(system.sysroot), str(dep), str(mnt), str(system.run), str(system.cmdline), "ostree", *args)
    if not timed:
        return 0.0
    return int(out.split("elapsed-ns ")[1].split()[0]) / 1e9


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--small", action="store_true", help="3,000 files, 2 rounds")
    ap.add_argument("--files", type=int, default=30_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    nfiles = 3_000 if args.small else args.files
    rounds = 2 if args.small else args.rounds
    work = Path(tempfile.mkdtemp(prefix="bench-staging-"))
    try:
        sr = work / "sysroot"
        make_tree(work / "tree", nfiles)
        for d in ("sysroot", "proc", "dev", "run", "tmp", "boot", "var"):     # a bootable root's directories
            (work / "tree" / d).mkdir(exist_ok=True)
        for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"), ("sbin", "usr/sbin"),
                             ("ostree", "sysroot/ostree")):
            (work / "tree" / link).symlink_to(target)
        subprocess.run(hybridos("admin", "init-fs", str(sr)), check=True)
        subprocess.run(hybridos("admin", "os-init", "--sysroot", str(sr), STATEROOT), check=True)
        repo = f"--repo={sr}/ostree/repo"
        commits = [_run("ostree", repo, "commit", f"--branch={REF}", f"--add-metadata-string=version={v}",
                        str(work / "tree")).strip() for v in ("1", "2")]
        subprocess.run(hybridos("admin", "deploy", "--sysroot", str(sr), "--os", STATEROOT, "--karg", "rw",
                                commits[0]), check=True, capture_output=True)
        system = RunningSystem(sr, work / "machine")
        env = {**os.environ, **system.env}
        count = int(_run("find", str(work / "tree"), "-type", "f", "-printf", ".").count("."))
        print(f"  {count} files per deployment", flush=True)
        t_ours, t_ref = [], []
        turn = 0
        for r in range(rounds):
            for who in (("ours", "ref") if r % 2 == 0 else ("ref", "ours")):
                target = commits[(turn + 1) % 2]
                turn += 1
                system.boot()
                (sr / system.booted.relpath / "etc/conf1").write_text(f"edited {turn}\n")
                subprocess.run(["sync"], check=True)
                if who == "ours":
                    subprocess.run(hybridos("admin", "deploy", "--sysroot", str(sr), "--stage", target),
                                   check=True, capture_output=True, env=env)
                    subprocess.run(["sync"], check=True)
                    wall, _ = timed_command(hybridos("finalize-staged", "--sysroot", str(sr)), env=env)
                    t_ours.append(wall)
                else:
                    ostree_booted(system, "admin", "deploy", "--stage", target)
                    subprocess.run(["sync"], check=True)
                    t_ref.append(ostree_booted(system, "admin", "finalize-staged", timed=True))
                system.boot()
                assert system.booted.checksum == target, (who, "did not finalize")
                assert (sr / system.booted.relpath / "etc/conf1").read_text() == f"edited {turn}\n", who
        ours, ref = statistics.median(t_ours), statistics.median(t_ref)
        cases = [case(f"finalize-staged ({count} files)", ours, ref, None, goal_seconds=1.0, met=ours <= 1.0,
                      rounds=rounds)]
        return {"name": "staging", "input": f"{count}-file deployments, a /etc edit after staging",
                "cases": cases, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    finally:
        if not os.environ.get("KEEP"):
            unlock(work)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    res = main()
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "staging.json").write_text(json.dumps(res, indent=2))
