"""Run every benchmark (bench/bench_*.py) side by side with its reference tool and summarise the ratios.

Usage: python bench/run.py [--only NAME[,NAME]] [--small] [--write-docs]

Each bench module has ``main(argv) -> dict`` that runs ours and the reference tool on the same input in one run
and writes bench/results/<name>.json. ``--small`` passes ``--small`` to each (a quick smoke run).
``--write-docs`` regenerates the figures table in docs/benchmarks.md from the results.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOCS = HERE.parent / "docs" / "benchmarks.md"
BEGIN, END = "<!-- figures:begin -->", "<!-- figures:end -->"


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(HERE.parent))
    spec.loader.exec_module(mod)
    return mod


def _table(results: dict[str, dict]) -> str:
    lines = ["| benchmark | case | hybridos (s) | reference (s) | ratio | goal | met |",
             "|---|---|---:|---:|---:|---:|---|"]
    for name, res in sorted(results.items()):
        for case in res.get("cases", []):
            ours, ref = case.get("ours"), case.get("reference")
            ratio, goal, goal_s = case.get("ratio"), case.get("goal"), case.get("goal_seconds")
            goals = []
            if goal is not None:
                goals.append(f"<= {goal}x")
            if goal_s is not None:
                goals.append(f"<= {goal_s} s")
            met = case.get("met")
            if met is None and goals:
                met = (goal is None or (ratio is not None and ratio <= goal)) and \
                      (goal_s is None or (ours is not None and ours <= goal_s))
            fmt = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
            lines.append(f"| {name} | {case.get('name', '')} | {fmt(ours)} | {fmt(ref)} | "
                         f"{'' if ratio is None else f'{ratio:.2f}x'} | {', '.join(goals)} | "
                         f"{'' if met is None else ('yes' if met else 'no')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", default="", help="comma-separated bench names (e.g. store,pull)")
    ap.add_argument("--small", action="store_true", help="quick smoke sizes")
    ap.add_argument("--write-docs", action="store_true", help="update the table in docs/benchmarks.md")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        path = Path(args.child)
        res = _load(path).main(["--small"] if args.small else [])
        if isinstance(res, dict):
            RESULTS.mkdir(exist_ok=True)
            (RESULTS / f"{path.stem.removeprefix('bench_')}.json").write_text(json.dumps(res, indent=2))
        return 0
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    RESULTS.mkdir(exist_ok=True)
    failed = []
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if only and name not in only:
            continue
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        # Each benchmark runs in a fresh process: a child forked from a big parent reports the parent's
        # pages in its peak RSS, so a long-lived runner would inflate every later measurement.
        argv = [sys.executable, str(Path(__file__).resolve()), "--child", str(path)] + (["--small"] if args.small else [])
        if subprocess.run(argv).returncode != 0:
            failed.append(name)
        print(f"== {name} took {time.monotonic() - t0:.1f}s", flush=True)
    results = {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}
    table = _table(results)
    print(table)
    if args.write_docs and DOCS.exists():
        text = DOCS.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            stamp = f"Machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
            DOCS.write_text(f"{head}{BEGIN}\n{stamp}\n\n{table}\n{END}{tail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
