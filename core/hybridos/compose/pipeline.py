"""The compose pipeline: treefile -> solve -> download -> layer -> initramfs -> postprocess -> commit.

Every package operation goes through the plugin hooks (``hybridos_solve``, ``hybridos_layer``,
``hybridos_initramfs``), so a replacement solver, layerer or initramfs generator is used here too. The tree is
assembled in the repository's ``tmp/`` and removed afterwards; the ref moves only after the commit is complete,
so a failure at any step leaves the repository's refs as they were.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridos.arch import Architecture
from hybridos.compose import content, layers, passwd, postprocess
from hybridos.compose.depmod import run_depmod
from hybridos.compose.inputhash import compute_input_hash, read_externals
from hybridos.compose.treefile import Treefile
from hybridos.compose.version import next_version
from hybridos.errors import ConfigError, HybridosError, PackageError, PluginError, UsageError
from hybridos.gvariant import Variant
from hybridos.initramfs import InitramfsRequest
from hybridos.packages.model import LayerRequest, Nevra, SolveRequest, Transaction
from hybridos.packages.ostree_paths import check_image_paths
from hybridos.packages.sandbox import configured_timeout
from hybridos.plugins import get_registry
from hybridos.util.atomic import atomic_write
from hybridos.util.numbers import is_decimal
from hybridos.util.progress import Progress

#: commit metadata keys (rpm-ostree's where one exists)
META_VERSION = "version"
META_INPUTHASH = "rpmostree.inputhash"
META_PKGLIST = "rpmostree.rpmdb.pkglist"
META_INITRAMFS_ARGS = "rpmostree.initramfs-args"
META_ARCH = "hybridos.arch"
META_BOOTABLE = "ostree.bootable"
META_LINUX = "ostree.linux"
META_RPMMD_REPOS = "rpmostree.rpmmd-repos"

#: rpm-ostree's RpmOstreePackageDiffTypes
PKG_ADDED, PKG_REMOVED, PKG_UPGRADED, PKG_DOWNGRADED = 0, 1, 2, 3


@dataclass(frozen=True)
class ComposeOptions:
    """What ``compose tree`` was asked to do, besides the treefile."""

    repo: Path | None
    arch: Architecture
    cachedir: Path | None = None
    force_nocache: bool = False
    dry_run: bool = False
    parent: str | None = None
    no_parent: bool = False
    write_commitid_to: Path | None = None
    write_composejson_to: Path | None = None
    extra_metadata: Mapping[str, Any] = field(default_factory=dict)
    run_scripts: bool = True
    progress: bool = False
    on_step: Callable[[str], None] | None = None
    timestamp: int | None = None
    background_cleanup: bool = True          #: remove the work tree in a detached process after returning
    workdir: Path | None = None              #: where the tree is assembled (default: the repository's tmp/)
    cache_only: bool = False                 #: repository metadata only from --cachedir (no network)
    download_only: bool = False              #: resolve and download the packages into --cachedir, then stop
    previous_commit: str | None = None       #: the commit to compare with (version, input hash, pkgdiff, passwd)
    previous_inputhash: str | None = None    #: "no changes" when the new input hash equals this
    previous_version: str | None = None      #: the automatic version counts on from this
    lockfile: Path | None = None             #: --ex-lockfile: pin packages to these EVRAs (rpm-ostree's JSON)
    write_lockfile_to: Path | None = None    #: --ex-write-lockfile-to: write the resolved set as a lockfile
    source_root: Path | None = None          #: --source-root: .repo files, dnf vars and releasever from this root
    #: ``compose install``: leave the tree in INSTALL_ROOT/rootfs (and the state ``commit`` needs beside it)
    install_root: Path | None = None
    install_postprocess: bool = False        #: ``compose install --postprocess``: run postprocess_final too


@dataclass(frozen=True)
class ComposeResult:
    packages: tuple[Nevra, ...]              #: the resolved install set, sorted
    input_hash: str = ""
    commit: str | None = None                #: None for --dry-run and for "no changes"
    ref: str | None = None                   #: the ref that moved (None with --write-commitid-to)
    version: str | None = None
    compose_json: Mapping[str, Any] = field(default_factory=dict)
    messages: tuple[str, ...] = ()            #: what the checks report (check-passwd's new/ignored entries)


# ---------------------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------------------


def pkglist_variant(nevras: tuple[Nevra, ...]) -> Variant:
    """``rpmostree.rpmdb.pkglist``: a(sssss) of (name, epoch, version, release, arch), sorted by name."""
    return Variant("a(sssss)", [(n.name, str(n.epoch), n.version, n.release, n.arch)
                                for n in sorted(nevras, key=lambda n: (n.name, n.arch))])


def nevras_from_pkglist(value: Any) -> dict[tuple[str, str], Nevra]:
    """(name, arch) -> Nevra from a commit's ``rpmostree.rpmdb.pkglist`` (plain value or Variant)."""
    if isinstance(value, Variant):
        value = value.value
    out = {}
    for entry in value or ():
        name, epoch, version, release, arch = entry
        out[(name, arch)] = Nevra(name, int(epoch or 0), version, release, arch)
    return out


def pkgdiff(old: Mapping[tuple[str, str], Nevra], new: Mapping[tuple[str, str], Nevra]) -> list:
    """rpm-ostree's compose JSON ``pkgdiff``: [name, type, {PreviousPackage, NewPackage}] sorted by name."""
    from hybridos.packages.header import compare_evr

    def triple(n: Nevra) -> list[str]:
        return [n.name, n.evr, n.arch]

    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a is None:
            out.append([key[0], PKG_ADDED, {"NewPackage": triple(b)}])
        elif b is None:
            out.append([key[0], PKG_REMOVED, {"PreviousPackage": triple(a)}])
        elif a != b:
            cmp = compare_evr(f"{a.epoch}:{a.version}-{a.release}", f"{b.epoch}:{b.version}-{b.release}")
            kind = PKG_DOWNGRADED if cmp > 0 else PKG_UPGRADED
            out.append([key[0], kind, {"PreviousPackage": triple(a), "NewPackage": triple(b)}])
    return out


def metadata_value(value: Any, where: str) -> Any:
    """A JSON/YAML value as commit metadata: strings, booleans, int64 (``x``), doubles, string lists, maps."""
    if isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return Variant("x", value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, dict):
        return {str(k): metadata_value(v, f"{where}.{k}") for k, v in value.items()}
    raise ConfigError(f"commit metadata {where}: unsupported value {value!r} (use strings, numbers, booleans, "
                      "lists of strings or mappings)")


# ---------------------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------------------


def parse_binfmt_entry(text: str) -> tuple[bool, str | None, str]:
    """A /proc/sys/fs/binfmt_misc entry -> (enabled, interpreter, flags)."""
    enabled, interpreter, flags = False, None, ""
    for line in text.splitlines():
        if line.strip() == "enabled":
            enabled = True
        elif line.startswith("interpreter "):
            interpreter = line.split(" ", 1)[1].strip()
        elif line.startswith("flags:"):
            flags = line.split(":", 1)[1].strip()
    return enabled, interpreter, flags


def binfmt_entry(arch: Architecture) -> tuple[bool, str | None, str]:
    try:
        return parse_binfmt_entry(Path(f"/proc/sys/fs/binfmt_misc/qemu-{arch.value}").read_text())
    except OSError:
        return False, None, ""


def foreign_scripts_runnable(arch: Architecture) -> bool:
    """Whether programs of ``arch`` run on this machine: the host's own, or qemu-user registered in binfmt_misc."""
    if arch is Architecture.host():
        return True
    enabled, interpreter, _flags = binfmt_entry(arch)
    return enabled and interpreter is not None


def provide_binfmt_interpreter(tree: Path, arch: Architecture) -> Path | None:
    """Without binfmt's F flag the kernel looks the qemu interpreter up inside the sandbox: copy it into the
    tree for the scriptlets (removed again before the commit). Returns the copy, or None when not needed."""
    if arch is Architecture.host():
        return None
    enabled, interpreter, flags = binfmt_entry(arch)
    if not enabled or interpreter is None or "F" in flags:
        return None
    dest = tree / interpreter.lstrip("/")
    if dest.exists():
        return None
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(interpreter, dest)
    return dest


def source_root_variables(source_root: Path) -> dict[str, str]:
    """dnf's variables of a root: ``etc/dnf/vars/NAME`` holds the value of ``$NAME`` (first line)."""
    out = {}
    vars_dir = source_root / "etc/dnf/vars"
    if vars_dir.is_dir():
        for p in sorted(vars_dir.iterdir()):
            if p.is_file() and re.fullmatch(r"[A-Za-z0-9_]+", p.name):
                lines = p.read_text(errors="replace").splitlines()
                out[p.name] = lines[0].strip() if lines else ""
    return out


def _os_release_version(root: Path) -> str | None:
    from hybridos.sysroot import bls

    for rel in ("usr/lib/os-release", "etc/os-release"):
        try:
            return bls.parse_os_release((root / rel).read_bytes()).get("VERSION_ID") or None
        except OSError:
            continue
    return None


def load_repositories(tf: Treefile, cachedir: Path, *, cache_only: bool = False, lockfile: bool = False,
                      source_root: Path | None = None) -> tuple:
    """The treefile's ``repos`` from the ``*.repo`` files beside it, with their metadata loaded.

    ``source_root`` (rpm-ostree's ``--source-root``): the ``.repo`` files of ``SOURCE/etc/yum.repos.d`` instead,
    the variables of ``SOURCE/etc/dnf/vars`` (the treefile's ``repovars`` win), and ``$releasever`` from the
    root's os-release unless the treefile sets ``releasever``."""
    from hybridos.packages.repofile import read_repo_dir, repo_variables
    from hybridos.packages.repomd import load_repo

    releasever = None if tf.releasever is None else str(tf.releasever)
    repovars = dict(tf.repovars)
    repo_dir = tf.directory
    if source_root is not None:
        if not source_root.is_dir():
            raise UsageError(f"--source-root {source_root}: not a directory")
        repo_dir = source_root / "etc/yum.repos.d"
        repovars = {**source_root_variables(source_root), **repovars}
        if releasever is None:
            releasever = _os_release_version(source_root)
    configs = {r.id: r for r in read_repo_dir(repo_dir, repo_variables(tf.basearch, releasever, repovars),
                                              enabled_only=False)}
    if tf.repos:
        missing = [r for r in tf.repos if r not in configs]
        if missing:
            files = ", ".join(sorted(p.name for p in repo_dir.glob("*.repo"))) or "none"
            raise ConfigError(f"{tf.path}: repository '{missing[0]}' is not defined in any .repo file in "
                              f"{repo_dir} (found: {files})")
        chosen = [configs[r] for r in tf.repos]
    else:
        chosen = [c for c in configs.values() if c.enabled]
        if not chosen:
            raise ConfigError(f"{tf.path}: no 'repos' given and no enabled repository in {repo_dir}/*.repo")
    for rp in tf.repo_packages:
        if rp.repo not in configs:
            raise ConfigError(f"{tf.path}: 'repo-packages' names repository '{rp.repo}', which is not defined in "
                              f"any .repo file in {repo_dir}")
        if rp.repo not in {c.id for c in chosen}:
            chosen.append(configs[rp.repo])
    if lockfile:        # lockfile-repos: used only when a lockfile pins packages (rpm-ostree's semantics)
        for name in tf.lockfile_repos:
            if name not in configs:
                raise ConfigError(f"{tf.path}: lockfile-repos names repository '{name}', which is not defined in "
                                  f"any .repo file in {repo_dir}")
            if name not in {c.id for c in chosen}:
                chosen.append(configs[name])
    loaded = [load_repo(c, cachedir / "repomd", cache_only=cache_only) for c in chosen]
    return tuple(restrict_repo_packages(tf, loaded))


def restrict_repo_packages(tf: Treefile, repos: list) -> list:
    """``repo-packages``: the named packages come from their repository only (excluded from every other one)."""
    import dataclasses

    out = []
    for r in repos:
        names = tuple(n for rp in tf.repo_packages if rp.repo != r.id for n in rp.packages)
        out.append(dataclasses.replace(r, excludepkgs=tuple(r.excludepkgs) + names) if names else r)
    return out


def rpmmd_entries(repos: tuple) -> list[dict]:
    """``[{"id", "timestamp"}]`` of the repositories used (their revision, when it is a number)."""
    return [{"id": r.id, "timestamp": int(r.revision) if is_decimal(r.revision) else 0} for r in repos]


def rpmmd_variant(entries: list[dict]) -> Variant:
    """``rpmostree.rpmmd-repos``: aa{sv} of {id, timestamp} for each repository used."""
    return Variant("aa{sv}", [{"id": Variant("s", e["id"]), "timestamp": Variant("t", int(e["timestamp"]))}
                              for e in entries])


def rpmmd_repos_variant(repos: tuple) -> Variant:
    return rpmmd_variant(rpmmd_entries(repos))


def read_lockfile(path: Path) -> dict[str, str]:
    """rpm-ostree's lockfile JSON: {"packages": {NAME: {"evra": "EVR.ARCH"} or {"evr": "EVR"}}} -> name -> pin."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--ex-lockfile {path}: {exc}") from None
    pkgs = data.get("packages") if isinstance(data, dict) else None
    if not isinstance(pkgs, dict):
        raise ConfigError(f"--ex-lockfile {path}: expected an object with a 'packages' object")
    out = {}
    for name, pin in pkgs.items():
        evra = pin.get("evra") if isinstance(pin, dict) else None
        evr = pin.get("evr") if isinstance(pin, dict) else None
        if not isinstance(evra or evr, str):
            raise ConfigError(f"--ex-lockfile {path}: package {name!r} needs an 'evra' or 'evr' string")
        out[name] = f"{name}-{evra}" if evra else f"{name}-{evr}"
    return out


def lockfile_json(nevras: tuple[Nevra, ...]) -> dict:
    """The resolved set as rpm-ostree writes it with --ex-write-lockfile-to."""
    return {"packages": {n.name: {"evra": f"{n.evr}.{n.arch}"} for n in sorted(nevras, key=lambda n: n.name)}}


def solve(tf: Treefile, repos: tuple, pins: Mapping[str, str] | None = None) -> Transaction:
    if not tf.packages and not tf.repo_packages:
        raise ConfigError(f"{tf.path}: 'packages' is empty: nothing to compose")
    install = tuple(sorted(set(tf.packages) | {n for rp in tf.repo_packages for n in rp.packages}))
    if pins:        # a locked package is installed at exactly its version (and pulled in even when only a dep)
        install = tuple(sorted(set(install) - set(pins) | set(pins.values())))
    request = SolveRequest(arch=tf.basearch, repos=repos, install=install, excludes=tf.exclude_packages,
                           weak_deps=tf.recommends)
    result = get_registry().hook.hybridos_solve(request=request)
    if result is None:
        raise PluginError("no solve plugin handled the request (is hybridos installed correctly?)")
    return result


def _object_stats(repo, commit: str, before: set) -> dict[str, int]:
    from hybridos.ostree.objects import ObjectType

    reachable = repo.traverse_commit(commit)
    meta_total = sum(1 for _, t in reachable if t is not ObjectType.FILE)
    content_objs = [(c, t) for c, t in reachable if t is ObjectType.FILE]
    new = reachable - before
    new_content = [(c, t) for c, t in new if t is ObjectType.FILE]
    written_bytes = 0
    for c, t in new_content:
        with contextlib.suppress(OSError):
            written_bytes += repo.object_path(c, t).stat().st_size
    return {
        "ostree-n-metadata-total": meta_total,
        "ostree-n-metadata-written": len(new) - len(new_content),
        "ostree-n-content-total": len(content_objs),
        "ostree-n-content-written": len(new_content),
        "ostree-n-cache-hits": 0,
        "ostree-content-bytes-written": written_bytes,
    }


# ---------------------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------------------


def compose_tree(tf: Treefile, options: ComposeOptions) -> ComposeResult:
    """Compose ``tf`` into a commit in ``options.repo`` (see the module docstring)."""
    step = options.on_step or (lambda _msg: None)
    if options.arch is not tf.basearch:
        raise UsageError(f"the treefile was loaded for {tf.basearch.value}, not {options.arch.value}")
    if options.run_scripts and not options.dry_run and not foreign_scripts_runnable(tf.basearch):
        raise UsageError(
            f"composing for {tf.basearch.value} on this {Architecture.host().value} machine needs qemu-user "
            f"registered in binfmt_misc to run the packages' scriptlets (none for qemu-{tf.basearch.value})",
            hint="install qemu-user-static and binfmt-support with /proc/sys/fs/binfmt_misc mounted, "
                 "or pass --no-scripts")
    if tf.ref:
        from hybridos.ostree.refs import validate_ref

        try:
            validate_ref(tf.ref)
        except UsageError as exc:
            raise ConfigError(f"{tf.path}: 'ref': {exc}") from None
    repo = None
    if not options.dry_run and not options.download_only:
        from hybridos.ostree.repo import Repo

        repo = Repo.open(options.repo)
    with contextlib.ExitStack() as stack:
        cachedir = options.cachedir
        if cachedir is None:
            cachedir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hybridos-compose-cache-")))
        cachedir.mkdir(parents=True, exist_ok=True)

        pins = read_lockfile(options.lockfile) if options.lockfile else None
        step("Loading repository metadata")
        repos = load_repositories(tf, cachedir, cache_only=options.cache_only, lockfile=bool(pins),
                                  source_root=options.source_root)
        step(f"Resolving {len(tf.packages)} requested packages for {tf.basearch.value}")
        transaction = solve(tf, repos, pins)
        installs = transaction.installs
        nevras = tuple(sorted((i.nevra for i in installs), key=str))
        if options.write_lockfile_to is not None:
            atomic_write(options.write_lockfile_to, json.dumps(lockfile_json(nevras), indent=2).encode() + b"\n")
        if options.dry_run:
            return ComposeResult(packages=nevras)
        if options.download_only:
            step(f"Downloading {len(installs)} packages")
            _download(transaction, cachedir / "packages", options.progress)
            return ComposeResult(packages=nevras, messages=(f"Downloaded {len(installs)} packages into "
                                                            f"{cachedir / 'packages'}",))

        externals = read_externals(tf)
        if not options.run_scripts:
            externals.append(("no-scripts", b"1"))
        input_hash = compute_input_hash(tf.canonical_json(), externals,
                                        [(str(i.nevra), i.checksum) for i in installs])
        previous = _previous_commit(repo, tf, options)
        compared = repo.resolve_rev(options.previous_commit) if options.previous_commit else previous
        prev_commit = repo.load_commit(compared) if compared else None
        prev_hash = options.previous_inputhash or (prev_commit.metadata.get(META_INPUTHASH) if prev_commit else None)
        if prev_hash is not None and not options.force_nocache and prev_hash == input_hash:
            return ComposeResult(packages=nevras, input_hash=input_hash, commit=None)

        version = options.extra_metadata.get(META_VERSION)
        prev_version = options.previous_version or (prev_commit.version if prev_commit else None)
        if version is None and tf.automatic_version_prefix is not None:
            version = next_version(tf.automatic_version_prefix, prev_version, suffix=tf.automatic_version_suffix)

        install_root = options.install_root
        if install_root is not None:
            if install_root.exists() and (not install_root.is_dir() or any(install_root.iterdir())):
                raise UsageError(f"{install_root} exists and is not an empty directory")
            parent = install_root.absolute().parent
        else:
            parent = options.workdir or repo.path / "tmp"
        parent.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="hybridos-compose-", dir=parent))
        # removed when done, unless it became the install root (compose install)
        stack.callback(lambda: workdir.exists() and remove_workdir(workdir, background=options.background_cleanup))
        tree = workdir / "rootfs"
        tree.mkdir(mode=0o755)

        step(f"Downloading {len(installs)} packages")
        rpms = _download(transaction, cachedir / "packages", options.progress)
        from hybridos.packages.gpgcheck import check_packages

        check_packages(installs, rpms, repos)   # gpgcheck=1 repositories: header signatures, before the tree
        check_image_paths(installs, rpms, layering=False)

        previous_pw = passwd.previous_files(repo, compared) if tf.preserve_passwd or \
            "previous" in (tf.check_passwd.kind, tf.check_groups.kind) else {}
        passwd.seed(tree, tf, previous_pw if tf.preserve_passwd else {})

        qemu = provide_binfmt_interpreter(tree, tf.basearch) if options.run_scripts else None
        step(f"Installing {len(installs)} packages (scriptlets {'on' if options.run_scripts else 'off'})")
        layer_request = LayerRequest(tree=tree, transaction=transaction, rpms=rpms, arch=tf.basearch,
                                     run_scripts=options.run_scripts, hardlinked_usr=False,
                                     scriptlet_timeout=configured_timeout(repo.config))
        layered = get_registry().hook.hybridos_layer(request=layer_request)
        if layered is None:
            raise PluginError("no layer plugin handled the request (is hybridos installed correctly?)")
        content.filter_package_files(tree, tf, rpms)
        if tf.ostree_layers or tf.ostree_override_layers:
            step("Checking out ostree-layers")
            layers.apply_layers(repo, tree, tf.ostree_layers, tf.ostree_override_layers, workdir)

        kver = None if tf.container else postprocess.place_kernel(tree)
        if not tf.container:
            for depmod_kver in run_depmod(tree):
                step(f"Indexed the modules of kernel {depmod_kver} (depmod)")
        if kver is not None and tf.no_initramfs:
            step(f"Not generating an initramfs for kernel {kver} (no-initramfs)")
        elif kver is not None:
            step(f"Generating the initramfs for kernel {kver}")
            req = InitramfsRequest(tree=tree, kernel_version=kver, arch=tf.basearch, args=tf.initramfs_args,
                                   timeout=configured_timeout(repo.config), hardlinked_usr=False)
            if get_registry().hook.hybridos_initramfs(request=req) is None:
                raise PluginError("no initramfs plugin handled the request")

        step("Postprocessing the tree")
        final = install_root is None or options.install_postprocess
        postprocess.postprocess_tree(tree, tf, version=version, kver=kver,
                                     runner=postprocess.ScriptRunner(tf.basearch, options.run_scripts), final=final)
        if qemu is not None:
            qemu.unlink()
        if install_root is not None:
            state = InstallState(packages=tuple(str(n) for n in nevras), input_hash=input_hash,
                                 version=None if version is None else str(version), kver=kver,
                                 rpmmd=tuple(rpmmd_entries(repos)), finalized=final)
            atomic_write(workdir / STATE_FILE, state.to_json())
            if install_root.exists():
                install_root.rmdir()
            os.rename(workdir, install_root)
            return ComposeResult(packages=nevras, input_hash=input_hash,
                                 messages=(f"rootfs: {install_root}/rootfs",))
        return commit_rootfs(tf, options, repo, tree, nevras=nevras, input_hash=input_hash, version=version,
                             kver=kver, rpmmd=rpmmd_entries(repos), previous=previous, prev_commit=prev_commit,
                             previous_pw=previous_pw)


#: beside DESTDIR/rootfs after ``compose install``: what ``compose postprocess``/``commit`` need from the install
STATE_FILE = "hybridos-compose.json"


@dataclass(frozen=True)
class InstallState:
    """What the install stage knows that the rootfs does not say: the input hash, the resolved packages, the
    version, the kernel, the repositories used, and whether ``postprocess_final`` ran."""

    packages: tuple[str, ...] = ()
    input_hash: str | None = None
    version: str | None = None
    kver: str | None = None
    rpmmd: tuple[dict, ...] = ()
    finalized: bool = False

    def to_json(self) -> bytes:
        return json.dumps({"packages": list(self.packages), "input-hash": self.input_hash, "version": self.version,
                           "kernel": self.kver, "rpmmd-repos": list(self.rpmmd), "postprocessed": self.finalized},
                          indent=2).encode() + b"\n"

    @classmethod
    def read(cls, path: Path) -> InstallState | None:
        """The state file, None when there is none; a malformed one is an error naming it."""
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        try:
            return cls(tuple(str(p) for p in data["packages"]), data["input-hash"], data["version"],
                       data["kernel"], tuple({"id": str(e["id"]), "timestamp": int(e["timestamp"])}
                                             for e in data["rpmmd-repos"]), bool(data["postprocessed"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: not a compose install state ({exc})") from None


def kernel_version_of(tree: Path) -> str | None:
    """The version of the kernel in ``usr/lib/modules/*/vmlinuz`` (None without one)."""
    modules = tree / "usr/lib/modules"
    found = sorted(d.name for d in modules.iterdir() if (d / "vmlinuz").is_file()) if modules.is_dir() else []
    if len(found) > 1:
        raise ConfigError(f"{tree}: more than one kernel in usr/lib/modules ({', '.join(found)})")
    return found[0] if found else None


def postprocess_rootfs(rootfs: Path, tf: Treefile) -> str:
    """``compose postprocess ROOTFS [TREEFILE]``: rpm-ostree's postprocess_final on an installed root, once."""
    if not rootfs.is_dir():
        raise UsageError(f"{rootfs}: not a directory")
    state_path = rootfs.parent / STATE_FILE
    state = InstallState.read(state_path)
    if state is not None and state.finalized:
        return f"{rootfs}: already postprocessed"
    postprocess.postprocess_final(rootfs, tf, state.kver if state is not None else kernel_version_of(rootfs))
    if state is not None:
        atomic_write(state_path, dataclasses.replace(state, finalized=True).to_json())
    return f"Postprocessed {rootfs}"


def commit_installed(tf: Treefile, options: ComposeOptions, rootfs: Path) -> ComposeResult:
    """``compose commit TREEFILE ROOTFS``: postprocess (unless done) and commit a root ``compose install`` made
    (a root without its state file is committed as it is, its packages read from its rpmdb)."""
    from hybridos.ostree.repo import Repo

    if not rootfs.is_dir():
        raise UsageError(f"{rootfs}: not a directory")
    repo = Repo.open(options.repo)
    state_path = rootfs.parent / STATE_FILE
    state = InstallState.read(state_path)
    if state is None:
        from hybridos.sysroot.pkgdiff import packages_of_tree

        nevras = tuple(sorted(packages_of_tree(rootfs), key=str))
        state = InstallState(packages=tuple(str(n) for n in nevras), kver=kernel_version_of(rootfs),
                             version=options.extra_metadata.get(META_VERSION), finalized=True)
    if not state.finalized:
        postprocess.postprocess_final(rootfs, tf, state.kver)
        state = dataclasses.replace(state, finalized=True)
        atomic_write(state_path, state.to_json())
    previous = _previous_commit(repo, tf, options)
    compared = repo.resolve_rev(options.previous_commit) if options.previous_commit else previous
    prev_commit = repo.load_commit(compared) if compared else None
    previous_pw = passwd.previous_files(repo, compared) if "previous" in (tf.check_passwd.kind,
                                                                          tf.check_groups.kind) else {}
    return commit_rootfs(tf, options, repo, rootfs, nevras=tuple(Nevra.parse(p) for p in state.packages),
                         input_hash=state.input_hash, version=state.version, kver=state.kver,
                         rpmmd=list(state.rpmmd), previous=previous, prev_commit=prev_commit,
                         previous_pw=previous_pw)


def commit_rootfs(tf: Treefile, options: ComposeOptions, repo, tree: Path, *, nevras: tuple[Nevra, ...],
                  input_hash: str | None, version, kver: str | None, rpmmd: list[dict], previous: str | None,
                  prev_commit, previous_pw) -> ComposeResult:
    """The commit stage (``compose tree``'s last part, ``compose commit``): check passwd/group, label, commit
    the postprocessed ``tree`` with the compose metadata, sign, write the compose JSON."""
    step = options.on_step or (lambda _msg: None)
    messages = tuple(passwd.check(tree, tf, previous_pw, lambda rel: _tree_text(tree, rel)))
    metadata: dict[str, Any] = {}
    for k, v in tf.add_commit_metadata.items():
        metadata[k] = metadata_value(v, k)
    for k, v in options.extra_metadata.items():
        metadata[k] = metadata_value(v, k)
    if input_hash is not None:
        metadata[META_INPUTHASH] = input_hash
    metadata.update({
        META_PKGLIST: pkglist_variant(nevras),
        META_INITRAMFS_ARGS: list(tf.initramfs_args),
        META_ARCH: tf.basearch.value,
        META_BOOTABLE: kver is not None,
    })
    if tf.repo_metadata == "inline":
        metadata[META_RPMMD_REPOS] = rpmmd_variant(rpmmd)
    if kver is not None:
        metadata[META_LINUX] = kver
    if version is not None:
        metadata[META_VERSION] = str(version)
    move_ref = tf.ref if (tf.ref and options.write_commitid_to is None) else None
    if tf.ref and not move_ref:
        metadata["ostree.ref-binding"] = [tf.ref]

    hook = None
    if tf.selinux:
        from hybridos.selinux import label_hook, load_policy

        policy = load_policy(tree)
        if policy is not None:
            step(f"Labelling the tree from {policy[1].relative_to(tree)}")
            hook = label_hook(policy[0], tf.selinux_label_version)
    step("Committing")
    before = set(repo.list_objects())
    progress = Progress("Committing", enabled=options.progress)
    timestamp = options.timestamp
    if timestamp is None and os.environ.get("SOURCE_DATE_EPOCH"):
        timestamp = int(os.environ["SOURCE_DATE_EPOCH"])
    with progress:
        commit = repo.commit_tree(tree, branch=move_ref, subject="", metadata=metadata,
                                  parent=previous or "none", timestamp=timestamp, progress=progress,
                                  xattr_hook=hook)
    detached: dict[str, Any] = {}
    if tf.repo_metadata == "detached":
        detached[META_RPMMD_REPOS] = rpmmd_variant(rpmmd)
    if tf.gpg_key:
        from hybridos.ostree.gpg import METADATA_KEY, gpg_detach_sign
        from hybridos.ostree.objects import ObjectType

        # the building user's GnuPG home ($GNUPGHOME or ~/.gnupg), as rpm-ostree signs
        data = repo.read_metadata_bytes(commit, ObjectType.COMMIT)
        detached[METADATA_KEY] = Variant("aay", [gpg_detach_sign(data, tf.gpg_key, None)])
    if detached:
        repo.write_commitmeta(commit, detached)
    loaded = repo.load_commit(commit)
    compose_json: dict[str, Any] = {
        "ostree-commit": commit,
        "ostree-content-checksum": loaded.content_checksum,
        # rpm-ostree writes an ISO 8601 string (JSON has no 64-bit integers)
        "ostree-timestamp": datetime.datetime.fromtimestamp(loaded.timestamp, datetime.UTC)
        .strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if input_hash is not None:
        compose_json["rpm-ostree-inputhash"] = input_hash
    if version is not None:
        compose_json["ostree-version"] = str(version)
    compose_json.update(_object_stats(repo, commit, before))
    if move_ref:
        compose_json["ref"] = move_ref
    if prev_commit is not None:
        compose_json["pkgdiff"] = pkgdiff(nevras_from_pkglist(prev_commit.metadata.get(META_PKGLIST)),
                                          {(n.name, n.arch): n for n in nevras})
    if options.write_commitid_to is not None:
        atomic_write(options.write_commitid_to, commit.encode())
    if options.write_composejson_to is not None:
        atomic_write(options.write_composejson_to, json.dumps(compose_json, indent=2).encode() + b"\n")
    return ComposeResult(packages=nevras, input_hash=input_hash, commit=commit, ref=move_ref,
                         version=None if version is None else str(version), compose_json=compose_json,
                         messages=messages)


def _tree_text(tree: Path, rel: str) -> str:
    """A text file of the postprocessed tree (``etc/`` is at ``usr/etc/`` by then), or ""."""
    if rel.startswith("etc/"):
        rel = "usr/" + rel
    p = tree / rel
    return p.read_text(errors="replace") if p.is_file() and not p.is_symlink() else ""


def remove_workdir(workdir: Path, *, background: bool) -> None:
    """Remove the work tree: renamed aside at once, then deleted by a detached ``rm -rf`` (unlinking
    thousands of files can take seconds after the commit synced them) or right here."""
    trash = workdir.with_name(".hybridos-trash-" + workdir.name)
    try:
        os.rename(workdir, trash)
    except OSError:
        trash = workdir
    rm = shutil.which("rm") if background else None
    if rm is not None:
        try:
            subprocess.Popen([rm, "-rf", "--one-file-system", str(trash)], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            return
        except OSError:
            pass
    shutil.rmtree(trash, ignore_errors=True)


def _previous_commit(repo, tf: Treefile, options: ComposeOptions) -> str | None:
    if options.no_parent:
        return None
    if options.parent:
        return repo.resolve_rev(options.parent)
    if tf.ref:
        return repo.resolve_rev(tf.ref, allow_missing=True)
    return None


def _download(transaction: Transaction, cachedir: Path, show: bool) -> dict[str, Path]:
    from hybridos.packages.download import download_packages

    with Progress("Downloading", total_items=len(transaction.installs), enabled=show) as progress:
        try:
            rpms = download_packages(transaction, cachedir)
        except HybridosError:
            raise
        except OSError as exc:
            raise PackageError(f"downloading packages failed: {exc}") from None
        progress.advance(len(rpms))
    return rpms


