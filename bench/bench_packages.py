"""Package system benchmarks, ours and dnf side by side on the same repositories.

Cases:
- ``repodata-cold``: load 20,000-package repodata (synthetic, written from createrepo_c Package objects, served
  over HTTP on 127.0.0.1) with an empty cache until the solver is ready (goal: <= 1 s) vs a ``dnf repoquery
  --whatprovides FILE`` (which needs primary and filelists) with an empty cache.
- ``repodata-cached``: the same from the cache (goal: <= 100 ms) vs the same ``dnf -C repoquery``.
- ``install-200``: resolve, download and install a 200-package set of real RPMs into an empty root, as a fresh
  process each (goal: <= 0.6x) vs ``dnf --installroot install``; best of 5 each, the tools taking turns at going
  first, caches dropped before each run. Both run as installed: dnf's modules come with
  compiled bytecode (its Debian package compiles it, as pip does for an installed hybridos), so ours get theirs
  from an untimed first run, kept under the work directory (PYTHONPYCACHEPREFIX) rather than in the checkout,
  also where PYTHONDONTWRITEBYTECODE is set.
- ``gpgcheck``: ``install-200`` from the same packages signed by ``rpmsign`` (RSA 4096), ours with
  gpgcheck=1 vs ours with gpgcheck=0 (goal: verifying adds <= 10%), and vs ``dnf`` with gpgcheck=1 and the
  key as gpgkey= (dnf imports it into the root's rpmdb; rpm checks each header).
- ``unpack``: unpack one RPM with an 86 MB, 3,000-file zstd payload into an empty directory (our unpacker:
  payload digest check, owners, modes, mtimes) vs ``rpm2cpio | cpio -idm`` (reference figure, no goal).

Usage: python bench/bench_packages.py [--small] [--packages N] [--keep DIR]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

if "--ours-install" not in sys.argv:   # the timed child process imports only what installing needs
    import argparse
    import json
    import shutil
    import tempfile

    from bench.common import case, drop_caches_if_root, timed_command  # noqa: E402
    from tests.helpers.httpserver import serve  # noqa: E402

REPO_COUNT = 20_000
INSTALL_COUNT = 200
RUNS = 5   #: install runs per tool


def _dnf(root: Path, repo_url: str, *args: str, gpgkey: str = "") -> list[str]:
    gpg = ["--setopt=r.gpgcheck=1", f"--setopt=r.gpgkey={gpgkey}"] if gpgkey else ["--setopt=r.gpgcheck=0"]
    return ["dnf", "-y", "-q", f"--installroot={root}", "--releasever=1", "--setopt=reposdir=/dev/null",
            "--setopt=cachedir=/var/cache/dnf-bench", "--setopt=install_weak_deps=False", "--disableplugin=*",
            f"--repofrompath=r,{repo_url}", *gpg, *args]


def _ready(repo) -> float:
    """Time to make a loaded repository solver-ready (pool, whatprovides)."""
    import solv

    from hybridos.packages.repomd import open_solv

    pool = solv.Pool()
    pool.setarch("x86_64")
    open_solv(pool, repo)
    pool.addfileprovides()
    pool.createwhatprovides()
    return pool.nsolvables if hasattr(pool, "nsolvables") else 0


def bench_repodata(work: Path, count: int) -> list[dict]:
    from tests.helpers.rpms import synthetic_specs, write_synthetic_repo

    from hybridos.packages.repofile import RepoConfig
    from hybridos.packages.repomd import load_repo

    repo_dir = work / "synthetic"
    t0 = time.perf_counter()
    write_synthetic_repo(repo_dir, synthetic_specs(count))
    print(f"  (wrote {count}-package synthetic repodata in {time.perf_counter() - t0:.1f}s)", flush=True)
    with serve(repo_dir) as srv:     # over HTTP, so that dnf keeps a cache too (it reads file:// in place)
        url = srv.url + "/"
        cfg = RepoConfig(id="synthetic", name="synthetic", baseurls=(url,), metadata_expire=3600)
        cache = work / "cache"
        colds, warms = [], []
        for _ in range(3):
            shutil.rmtree(cache, ignore_errors=True)
            drop_caches_if_root()
            t0 = time.perf_counter()
            repo = load_repo(cfg, cache)
            _ready(repo)
            colds.append(time.perf_counter() - t0)
            for _ in range(3):
                t0 = time.perf_counter()
                repo = load_repo(cfg, cache)
                _ready(repo)
                warms.append(time.perf_counter() - t0)
        ours_cold, ours_warm = min(colds), min(warms)
        queries = []
        for _ in range(3):     # from the cache, plus answering the file-provides query dnf answers below
            t0 = time.perf_counter()
            repo = load_repo(cfg, cache)
            _whatprovides_file(repo, "/usr/lib/pkg1/data")
            queries.append(time.perf_counter() - t0)

        # dnf: the same path (fetch, parse primary + filelists, answer a file-provides query), then from its cache.
        root = work / "dnfroot"
        query = ("repoquery", "--whatprovides", "/usr/lib/pkg1/data")
        ref_cold = []
        for _ in range(2):
            shutil.rmtree(root, ignore_errors=True)
            drop_caches_if_root()
            ref_cold.append(timed_command(_dnf(root, url, *query))[0])
        ref_warm = min(timed_command(_dnf(root, url, "-C", *query))[0] for _ in range(3))
    return [
        case(f"repodata-cold ({count} pkgs)", ours_cold, min(ref_cold), None,
             goal_seconds=1.0, met=ours_cold <= 1.0),
        case(f"repodata-cached ({count} pkgs)", ours_warm, ref_warm, None,
             goal_seconds=0.1, met=ours_warm <= 0.1),
        case(f"cached + file query ({count} pkgs)", min(queries), ref_warm, None),
    ]


def _whatprovides_file(repo, path: str) -> list[str]:
    """Which packages contain ``path`` (through the solver's file index, as a dependency on it would)."""
    from hybridos.arch import Architecture
    from hybridos.packages.model import SolveRequest
    from hybridos.packages.solver import _Context

    ctx = _Context(SolveRequest(arch=Architecture.X86_64, repos=(repo,)))
    ctx.provide_files([path])
    ctx.pool.createwhatprovides()
    found = [str(s) for s in ctx.pool.whatprovides(ctx.pool.str2id(path))]
    assert found, f"nothing provides {path}"
    return found


def _install_specs(count: int):
    """``count`` real packages: a meta package requiring them all, a web of library deps, ~10 files each."""
    from tests.helpers.rpms import File, Pkg

    specs = []
    for i in range(count - 1):
        deps = (f"lib{(i * 7 + 3) % (count - 1)}-data", f"/usr/lib/pkg{(i * 11 + 5) % (count - 1)}/mod0.so")
        files = tuple(File(f"/usr/lib/pkg{i}/mod{j}.so", (f"pkg{i} mod{j} ".encode() * 400)[: 2000 + 900 * j],
                           mode=0o755) for j in range(6))
        files += (File(f"/usr/bin/pkg{i}", b"#!/bin/sh\necho pkg\n", mode=0o755),
                  File(f"/usr/share/doc/pkg{i}/README", b"readme\n" * 50),
                  File(f"/etc/pkg{i}.conf", b"key=value\n", config=True),
                  File(f"/usr/lib/pkg{i}/current", symlink="mod0.so"))
        specs.append(Pkg(f"pkg{i}", "1.0", requires=deps, provides=(f"lib{i}-data",), files=files))
    specs.append(Pkg("meta", "1.0", arch="noarch", requires=tuple(f"pkg{i}" for i in range(count - 1))))
    return specs


def ours_install(repo_url: str, root: str, cache: str, gpgkey: str = "") -> None:
    """One fresh-process install of ``meta`` into ``root`` (what the install case times); with ``gpgkey``, as
    a ``gpgcheck=1`` repository with that key: every header signature checked between download and unpack,
    as layering and compose do."""
    from hybridos.arch import Architecture
    from hybridos.packages.download import download_packages
    from hybridos.packages.model import LayerRequest, SolveRequest
    from hybridos.packages.repofile import RepoConfig
    from hybridos.packages.repomd import load_repo
    from hybridos.plugins import get_registry

    hook = get_registry().hook
    config = RepoConfig(id="bench", name="bench", baseurls=(repo_url,), metadata_expire=0, gpgcheck=bool(gpgkey),
                        gpgkeys=(gpgkey,) if gpgkey else ())
    repo = load_repo(config, Path(cache) / "md")
    trans = hook.hybridos_solve(request=SolveRequest(arch=Architecture.X86_64, repos=(repo,), install=("meta",),
                                                     weak_deps=False))
    rpms = download_packages(trans, Path(cache) / "packages")
    if gpgkey:
        from hybridos.packages.gpgcheck import check_packages

        verified = check_packages(trans.installs, rpms, (repo,))
        assert len(verified) == len(trans.installs), "not every package was verified"
    hook.hybridos_layer(request=LayerRequest(tree=Path(root), transaction=trans, rpms=rpms,
                                             arch=Architecture.X86_64))


def bench_install(work: Path, count: int) -> list[dict]:
    from tests.helpers.rpms import make_repo

    t0 = time.perf_counter()
    repo = make_repo(work / "install-repo", _install_specs(count))
    print(f"  (built {count} RPMs and repodata in {time.perf_counter() - t0:.1f}s)", flush=True)
    ours, ref = [], []
    ours_rss = ref_rss = 0.0
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")

    def ours_argv(name: str) -> list[str]:
        (work / f"ours-root{name}").mkdir()
        return [sys.executable, str(Path(__file__).resolve()), "--ours-install", repo.url,
                str(work / f"ours-root{name}"), str(work / f"ours-cache{name}")]

    timed_command(ours_argv("-warmup"), env=env)   # compiles the bytecode, as installing hybridos would
    for i in range(RUNS):   # best of RUNS each, the tools taking turns at going first
        for tool in (("ours", "dnf") if i % 2 == 0 else ("dnf", "ours")):
            drop_caches_if_root()
            if tool == "ours":
                wall, rss = timed_command(ours_argv(str(i)), env=env)
                ours.append(wall)
                ours_rss = max(ours_rss, rss)
            else:
                wall, rss = timed_command(_dnf(work / f"dnf-root{i}", repo.url, "install", "meta"))
                ref.append(wall)
                ref_rss = max(ref_rss, rss)
    ours_files = sum(1 for _ in (work / "ours-root0").rglob("*"))
    dnf_files = sum(1 for p in (work / "dnf-root0").rglob("*") if "var" not in p.parts and "root" not in p.parts)
    return [case(f"install-{count} (solve+download+unpack+rpmdb)", min(ours), min(ref), 0.6,
                 ours_peak_rss_mb=round(ours_rss, 1), reference_peak_rss_mb=round(ref_rss, 1),
                 ours_paths=ours_files, dnf_paths=dnf_files, ours_runs=[round(t, 3) for t in ours],
                 reference_runs=[round(t, 3) for t in ref])]


def bench_gpgcheck(work: Path, count: int) -> list[dict]:
    """install-N with gpgcheck=1 on the same packages signed by rpmsign (RSA 4096, as Fedora's keys): ours with
    gpgcheck=1 vs ours with gpgcheck=0 on the same repository (goal: <= 1.10x), and vs dnf with gpgcheck=1
    (dnf imports the key into the root's rpmdb and has rpm check each package)."""
    import subprocess

    from tests.helpers.gpg import GnuPG
    from tests.helpers.rpms import build_rpms, write_repodata

    t0 = time.perf_counter()
    repo_dir = work / "gpg-repo"
    pkgdir = repo_dir / "Packages"
    paths = build_rpms(_install_specs(count), pkgdir)
    gnupg = GnuPG.create(work / "gnupg")
    try:
        key = gnupg.generate("Bench Signer <bench@example.com>", "rsa4096")
        subprocess.run(["rpmsign", "--addsign", "--define", "__gpg /usr/bin/gpg", "--define",
                        f"_gpg_name {key.fingerprint}", "--define", f"_gpg_path {gnupg.home}", *map(str, paths)],
                       env=gnupg.env, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    finally:
        gnupg.close()
    write_repodata(repo_dir, paths)
    keyfile = work / "RPM-GPG-KEY-bench"
    keyfile.write_bytes(key.public_armored)
    url, keyurl = repo_dir.resolve().as_uri(), keyfile.resolve().as_uri()
    print(f"  (built and signed {count} RPMs in {time.perf_counter() - t0:.1f}s)", flush=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    runs: dict[str, list[float]] = {"ours-gpg": [], "ours-nogpg": [], "dnf-gpg": [], "dnf-nogpg": []}

    def argv(tool: str, i: int) -> list[str]:
        root = work / f"g-{tool}-{i}"
        root.mkdir()
        if tool.startswith("dnf"):
            return _dnf(root, url, "install", "meta", gpgkey=keyurl if tool == "dnf-gpg" else "")
        return [sys.executable, str(Path(__file__).resolve()), "--ours-install", url, str(root),
                str(work / f"g-cache-{tool}-{i}"), keyurl if tool == "ours-gpg" else ""]

    timed_command(argv("ours-gpg", -1), env=env)   # bytecode, as an installed hybridos has it
    order = list(runs)
    for i in range(RUNS):
        for tool in order[i % len(order):] + order[:i % len(order)]:   # each goes first in turn
            drop_caches_if_root()
            runs[tool].append(timed_command(argv(tool, i), env=env)[0])
    best = {k: min(v) for k, v in runs.items()}
    # the verification alone, in process (steadier than the difference of two loaded-machine wall times):
    # loading the key and checking every header signature, best of RUNS
    from hybridos.openpgp import Keyring
    from hybridos.packages.gpgcheck import verify_rpm

    verify = []
    for _ in range(RUNS):
        t1 = time.perf_counter()
        ring = Keyring()
        ring.add_file(keyfile)
        for p in paths:
            verify_rpm(p, ring, p.name)
        verify.append(time.perf_counter() - t1)
    dnf_rpmdb = subprocess.run(["rpm", "--root", str(work / "g-dnf-gpg-0"), "-q", "gpg-pubkey"],
                               capture_output=True, text=True).stdout.strip()
    return [
        case(f"install-{count} gpgcheck=1: added by verifying (ours gpgcheck=1 vs gpgcheck=0)", best["ours-gpg"],
             best["ours-nogpg"], 1.10, verify_seconds=round(min(verify), 4),
             verify_share=round(min(verify) / best["ours-nogpg"], 4), ours_runs=[round(t, 3) for t in runs["ours-gpg"]],
             reference_runs=[round(t, 3) for t in runs["ours-nogpg"]]),
        case(f"install-{count} gpgcheck=1 (signed repo) vs dnf gpgcheck=1", best["ours-gpg"], best["dnf-gpg"], 0.6,
             dnf_gpgcheck0=round(best["dnf-nogpg"], 3), dnf_imported_key=dnf_rpmdb,
             reference_runs=[round(t, 3) for t in runs["dnf-gpg"]]),
    ]


def bench_unpack(work: Path, megabytes: int = 86, files: int = 3000) -> list[dict]:
    """Our unpacker vs rpm2cpio | cpio on one big package (added by the RPM-half engineer)."""
    import rpm_rs
    from tests.helpers.rpms import BUILD_CONFIG_ARGS

    from hybridos.packages.unpack import unpack_rpm

    rpm = work / "big.rpm"
    data = os.urandom(megabytes << 20)
    size = len(data) // files
    b = rpm_rs.PackageBuilder("big", "1", "MIT", "x86_64", "big")
    b.release("1")
    for i in range(files):
        b.with_file_contents(data[i * size:(i + 1) * size],
                             rpm_rs.FileOptions.new(f"/usr/share/big/d{i % 30}/f{i}", permissions=0o644))
    b.using_config(rpm_rs.BuildConfig(**BUILD_CONFIG_ARGS))
    b.build().write_to(str(rpm))
    ours, ref = [], []
    for i in range(3):
        dest = work / f"unpack-ours{i}"
        dest.mkdir()
        drop_caches_if_root()
        t0 = time.perf_counter()
        unpack_rpm(rpm, dest)
        ours.append(time.perf_counter() - t0)
        dest = work / f"unpack-cpio{i}"
        dest.mkdir()
        drop_caches_if_root()
        ref.append(timed_command(["sh", "-c", f"rpm2cpio {rpm} | cpio -idm --quiet"], cwd=str(dest))[0])
        shutil.rmtree(work / f"unpack-ours{i}")
        shutil.rmtree(dest)
    return [case(f"unpack ({megabytes} MB, {files} files, zstd)", min(ours), min(ref), None)]


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--ours-install"]:   # the timed child (see bench_install): no argument parser to import
        ours_install(*argv[1:5])
        return {}
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="2,000-package repodata and a 40-package install")
    ap.add_argument("--packages", type=int, help="repodata size (default 20000, --small 2000)")
    ap.add_argument("--install", type=int, help="install set size (default 200, --small 40)")
    ap.add_argument("--only", choices=("repodata", "install", "gpgcheck", "unpack"), help="run one part")
    ap.add_argument("--keep", help="work in this directory and keep it")
    args = ap.parse_args(argv)
    count = args.packages or (2000 if args.small else REPO_COUNT)
    install = args.install or (40 if args.small else INSTALL_COUNT)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-packages-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        cases = []
        if args.only in (None, "repodata"):
            cases += bench_repodata(work, count)
        if args.only in (None, "install"):
            cases += bench_install(work, install)
        if args.only in (None, "gpgcheck"):
            cases += bench_gpgcheck(work, install)
        if args.only in (None, "unpack"):
            cases += bench_unpack(work, 8 if args.small else 86, 300 if args.small else 3000)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result = {"name": "packages", "input": f"{count}-package synthetic repodata; {install} real RPMs",
              "cases": cases}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "packages.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
