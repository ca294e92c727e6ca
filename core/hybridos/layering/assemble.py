"""Assembling a layered deployment tree: base commit + requests -> a local commit (rpm-ostree's client side).

``plan_layering`` reads the base's rpmdb straight from the commit (no checkout), decides which requests the
base already satisfies (inactive), and solves the rest through the solve hook with every base package locked:
layering never removes, upgrades or downgrades a base package; ``override remove``/``replace`` are the explicit
ways. ``assemble_deployment_tree`` then downloads through the fetch hook into the package cache, makes a
hardlink checkout of the base, applies the transaction with the layer hook (unpack, rpmdb, scriptlets in the
sandbox), regenerates the initramfs when asked or when the kernel changed, and commits the tree with the
device/inode cache, so unchanged files are not read again. The commit's parent is the base commit; its metadata
records what was layered, removed and replaced under rpm-ostree's keys.

While packages are applied the tree has ``/etc`` (renamed from ``usr/etc``, its files copied so a scriptlet
editing one in place cannot change the repository's object), and ``/var`` content the packages bring becomes
tmpfiles.d lines, as in a composed image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hybridos.arch import Architecture
from hybridos.errors import HybridosError, NotFoundError, PackageError, PluginError, SolverError, UsageError
from hybridos.layering.guard import unmount_stale
from hybridos.layering.repos import PACKAGE_CACHE, RepoSelection, load_host_repos, stateroot_dir
from hybridos.layering.requests import LocalPackage, Requests
from hybridos.packages.model import (
    Action,
    LayerRequest,
    Nevra,
    SolveRequest,
    Transaction,
    check_path_safe,
    safe_file_name,
)
from hybridos.packages.ostree_paths import USR_ETC_WHY

#: commit metadata keys (rpm-ostree's where one exists)
META_CLIENTLAYER = "rpmostree.clientlayer"
META_PACKAGES = "rpmostree.packages"
META_REMOVED = "rpmostree.removed-base-packages"
META_REPLACED = "rpmostree.replaced-base-packages"
META_PKGLIST = "rpmostree.rpmdb.pkglist"
META_INITRAMFS_ARGS = "rpmostree.initramfs-args"
META_REGENERATE_INITRAMFS = "rpmostree.regenerate-initramfs"
META_INACTIVE = "hybridos.inactive-requests"
META_BASE = "hybridos.base-commit"
#: copied from the base commit so the layered commit reads the same in status and boot menus
_INHERITED = ("version", "ostree.linux", "ostree.bootable", "hybridos.arch")

_RPMDB_PATHS = ("usr/share/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite")
#: where RPM files given on the command line are kept (inside the repository, like rpm-ostree's pkgcache)
LOCAL_STORE = "extensions/hybridos/local-rpms"
WORK_DIR = "tmp/hybridos"
_AUTOVAR_CONF = "usr/lib/tmpfiles.d/hybridos-layered-var.conf"


@dataclass(frozen=True)
class AssembleOptions:
    """rpm-ostree's options that change how a tree is assembled."""

    force_replacefiles: bool = False
    cache_only: bool = False
    download_only: bool = False
    allow_inactive: bool = True           #: False: a newly requested package the base has is an error
    explicit: tuple[str, ...] = ()        #: names requested by this very command (checked for inactivity)
    run_scripts: bool = True
    refresh_md: bool = False
    repos: RepoSelection = RepoSelection()  #: --enablerepo/--disablerepo/--releasever of this operation


@dataclass(frozen=True)
class Plan:
    """What layering will do on a base commit."""

    base: str
    arch: Architecture
    requests: Requests
    transaction: Transaction
    inactive: tuple[str, ...] = ()                        #: requested names the base already provides
    layered: tuple[Nevra, ...] = ()                       #: packages added on top of the base
    removed: tuple[Nevra, ...] = ()                       #: base packages taken out
    replaced: tuple[tuple[Nevra, Nevra], ...] = ()        #: (new, old base package)
    base_packages: tuple = field(default=(), repr=False)  #: RpmHeader of every base package
    repos: tuple = field(default=(), repr=False)          #: the LoadedRepo values solved against (gpgcheck)
    localpkg_gpgcheck: bool = False                       #: dnf.conf's: check local RPMs with the repos' keys

    def lines(self) -> list[str]:
        """rpm-ostree-like summary of the changes."""
        out = []
        if self.layered:
            out.append(f"Added ({len(self.layered)}):")
            out += [f"  {n}" for n in self.layered]
        if self.removed:
            out.append(f"Removed ({len(self.removed)}):")
            out += [f"  {n}" for n in self.removed]
        if self.replaced:
            out.append(f"Replaced ({len(self.replaced)}):")
            out += [f"  {old} -> {new}" for new, old in self.replaced]
        if self.inactive:
            out.append("Inactive requests (provided by the base): " + ", ".join(self.inactive))
        if self.requests.regenerate_initramfs:
            out.append("Initramfs regeneration: enabled" + (
                f" ({' '.join(self.requests.initramfs_args)})" if self.requests.initramfs_args else ""))
        return out


# ---------------------------------------------------------------------------------------------------------
# Reading the base commit without checking it out
# ---------------------------------------------------------------------------------------------------------


def _lookup(repo, commit: str, path: str) -> str | None:
    """The content checksum of a regular file at ``path`` in ``commit`` (None when absent)."""
    tree = repo.load_commit(commit).root_tree
    parts = [p for p in path.split("/") if p]
    for i, part in enumerate(parts):
        dt = repo.load_dirtree(tree)
        if i == len(parts) - 1:
            return next((c for n, c in dt.files if n == part), None)
        found = next((t for n, t, _ in dt.dirs if n == part), None)
        if found is None:
            return None
        tree = found
    return None


def base_packages(repo, commit: str) -> tuple:
    """RpmHeader of every package in the commit's rpmdb (empty for a tree without one)."""
    from hybridos.packages.rpmdb import read_rpmdb

    for rel in _RPMDB_PATHS:
        csum = _lookup(repo, commit, rel)
        if csum is None:
            continue
        header, stream = repo.open_content(csum)
        if stream is None:
            continue
        with tempfile.TemporaryDirectory(prefix="hybridos-rpmdb-") as d:
            dest = Path(d) / "usr/lib/sysimage/rpm/rpmdb.sqlite"
            dest.parent.mkdir(parents=True)
            with stream, open(dest, "wb") as f:
                shutil.copyfileobj(stream, f, 1 << 20)
            return tuple(read_rpmdb(d))
    return ()


def commit_arch(repo, commit: str) -> Architecture:
    value = repo.load_commit(commit).metadata.get("hybridos.arch")
    return Architecture.parse(value) if isinstance(value, str) else Architecture.host()


def provided_by(headers: Iterable, spec: str):
    """The installed header that satisfies a requested name (by name, provide or file), else None."""
    for h in headers:
        if h.name == spec or str(h.nevra) == spec:
            return h
    for h in headers:
        if any(d.name == spec for d in h.provides) or (spec.startswith("/") and spec in h.files):
            return h
    return None


# ---------------------------------------------------------------------------------------------------------
# Local packages
# ---------------------------------------------------------------------------------------------------------


def local_store(repo) -> Path:
    return Path(repo.path) / LOCAL_STORE


def import_local_rpm(repo, path: str | os.PathLike) -> LocalPackage:
    """Copy an RPM file given on the command line into the local package store; return its origin entry."""
    from hybridos.fetch import sha256_file
    from hybridos.packages.header import read_rpm_header

    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"no such RPM file: {path}")
    try:
        header = read_rpm_header(path)
    except HybridosError as exc:
        raise PackageError(f"{path}: not a usable RPM: {exc}") from None
    if header.is_source:
        raise PackageError(f"{path} is a source package")
    try:
        check_path_safe(header.nevra)
    except PackageError as exc:
        raise PackageError(f"{path}: {exc}") from None
    pkg = LocalPackage(sha256_file(path), header.nevra)
    dest = local_path(repo, pkg)
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
        shutil.copyfile(path, tmp)
        os.rename(tmp, dest)
    return pkg


def local_path(repo, pkg: LocalPackage) -> Path:
    if not re.fullmatch(r"[0-9a-f]{64}", pkg.sha256):
        raise PackageError(f"local package {pkg.nevra}: {pkg.sha256!r} is not a sha256 digest")
    return local_store(repo) / f"{pkg.sha256}-{safe_file_name(pkg.nevra)}.rpm"


def _stored(repo, pkg: LocalPackage) -> str:
    p = local_path(repo, pkg)
    if not p.is_file():
        raise NotFoundError(f"local package {pkg.nevra} ({pkg.sha256[:12]}) is missing from {local_store(repo)}",
                            hint="uninstall or reset it, then add the RPM file again")
    return str(p)


def prune_local_store(repo, keep: Iterable[LocalPackage]) -> None:
    """Delete stored RPM files no origin refers to."""
    wanted = {local_path(repo, p).name for p in keep}
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(local_store(repo)):
            if entry.name.endswith(".rpm") and entry.name not in wanted:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


# ---------------------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------------------


def plan_layering(sysroot, base: str, requests: Requests, *, stateroot: str, deploy_dir: Path,
                  options: AssembleOptions = AssembleOptions(), tx=None) -> Plan:
    """Solve ``requests`` on ``base`` (see the module docstring). ``deploy_dir`` holds the host's .repo files."""
    from hybridos.plugins import get_registry

    repo = sysroot.repo
    arch = commit_arch(repo, base)
    step = tx.step if tx is not None else (lambda _n: contextlib.nullcontext())
    with step("read-base-rpmdb"):
        installed = base_packages(repo, base)
    base_names = {h.name for h in installed}

    inactive = []
    active = []
    for name in requests.packages:
        owner = provided_by(installed, name)
        if owner is None:
            active.append(name)
            continue
        if name in options.explicit and not options.allow_inactive:
            raise UsageError(f"package {name!r} is already provided by base package {owner.nevra}",
                             hint="use --allow-inactive to request it anyway")
        inactive.append(name)
    # Requests this command makes are checked strictly; older ones that no longer fit a new base (after an
    # upgrade or rebase) become inactive instead of blocking the upgrade.
    replacements = []
    for pkg in requests.local_replacements:
        if pkg.name in base_names:
            replacements.append(pkg)
        elif pkg.name in options.explicit:
            raise UsageError(f"cannot replace {pkg.name}: it is not a base package",
                             hint=f"use `install` to layer {pkg.nevra}")
        else:
            inactive.append(f"override replace {pkg.nevra}")
    local = []
    for pkg in requests.local_packages:
        if pkg.name not in base_names:
            local.append(pkg)
        elif pkg.name in options.explicit:
            raise UsageError(f"cannot layer {pkg.nevra}: the base has package {pkg.name}",
                             hint="use `override replace` to replace a base package")
        else:
            inactive.append(str(pkg.nevra))
    removals = []
    for name in requests.removals:
        if name in base_names:
            removals.append(name)
        elif name in options.explicit:
            raise NotFoundError(f"cannot remove {name!r}: not a package of the base image")
        else:
            inactive.append(f"override remove {name}")

    local_paths = [_stored(repo, p) for p in local]
    replace_paths = [_stored(repo, p) for p in replacements]
    overridden = set(removals) | {p.name for p in replacements}
    locked = tuple(sorted(base_names - overridden))
    if not (active or local_paths or replace_paths or removals):
        return Plan(base, arch, requests, Transaction(), tuple(inactive), base_packages=installed)

    repos: tuple = ()
    with step("load-repos"):
        if active or local_paths or options.refresh_md:
            try:
                repos = load_host_repos(sysroot.path, stateroot, deploy_dir, arch, cache_only=options.cache_only,
                                        refresh=options.refresh_md, selection=options.repos)
            except HybridosError:
                if active:
                    raise
    request = SolveRequest(arch=arch, repos=repos, installed=installed, install=(*active, *local_paths),
                           erase=tuple(removals), replace=tuple(replace_paths), locked=locked,
                           weak_deps=False)
    with step("solve"):
        try:
            transaction = get_registry().hook.hybridos_solve(request=request)
        except SolverError as exc:
            raise SolverError(f"cannot layer the requested packages on base {base[:12]} (base packages are "
                              f"locked: layering never removes, upgrades or downgrades them): {exc.message}",
                              hint=exc.hint or "use `override replace`/`override remove` to change base packages")\
                from None
        if transaction is None:
            raise PluginError("no solve plugin handled the request (is hybridos installed correctly?)")
    return dataclasses.replace(_classify(base, arch, requests, transaction, tuple(inactive), installed), repos=repos,
                               localpkg_gpgcheck=localpkg_gpgcheck(deploy_dir))


def localpkg_gpgcheck(deploy_dir: Path) -> bool:
    """``[main] localpkg_gpgcheck`` of the host's /etc/dnf/dnf.conf (dnf's default: off)."""
    import configparser

    cfg = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        cfg.read_string((deploy_dir / "etc/dnf/dnf.conf").read_text(errors="replace"))
    except (OSError, configparser.Error):
        return False
    return cfg.get("main", "localpkg_gpgcheck", fallback="0").strip().lower() in ("1", "yes", "true", "on")


def _classify(base, arch, requests: Requests, transaction: Transaction, inactive, installed) -> Plan:
    """Sort the transaction into layered/removed/replaced, refusing any change of a base package not asked for."""
    base_by_nevra = {h.nevra: h for h in installed}
    removals = set(requests.removals)
    replace_names = {p.name for p in requests.local_replacements}
    layered, removed, replaced = [], [], []
    for item in transaction.items:
        if item.action is Action.ERASE:
            if item.nevra in base_by_nevra and item.nevra.name not in removals:
                raise SolverError(f"cannot apply the request: it would remove base package {item.nevra}",
                                  hint=f"remove it explicitly with `override remove {item.nevra.name}`")
            removed.append(item.nevra)
            continue
        old = item.replaces
        if old is None and item.action is not Action.INSTALL:
            old = next((n for n in base_by_nevra if n.name == item.nevra.name), None)
        if old is not None and old in base_by_nevra:
            if old.name not in replace_names:
                raise SolverError(f"cannot apply the request: it would {item.action.value} base package {old} "
                                  f"to {item.nevra}", hint="replace it explicitly with `override replace`")
            replaced.append((item.nevra, old))
            continue
        layered.append(item.nevra)
    return Plan(base, arch, requests, transaction, inactive, tuple(sorted(layered)), tuple(sorted(removed)),
                tuple(sorted(replaced)), base_packages=installed)


# ---------------------------------------------------------------------------------------------------------
# Assembling
# ---------------------------------------------------------------------------------------------------------


def download(plan: Plan, cachedir: Path, *, cache_only: bool) -> dict[str, Path]:
    """The transaction's RPMs from the package cache, fetching what is missing (unless ``cache_only``)."""
    from hybridos.packages.download import cache_name, download_packages

    items = plan.transaction.installs
    if cache_only:
        missing = [str(i.nevra) for i in items if "://" in i.location and not (cachedir / cache_name(i)).is_file()]
        if missing:
            raise NotFoundError(f"--cache-only: {len(missing)} packages are not downloaded yet, e.g. {missing[0]}",
                                hint="run once without --cache-only (or with --download-only)")
    try:
        rpms = download_packages(items, cachedir)
    except OSError as exc:
        raise PackageError(f"downloading packages failed: {exc}") from None
    from hybridos.packages.gpgcheck import check_packages

    # gpgcheck=1 repositories (and local RPMs with localpkg_gpgcheck): every header signature, before unpacking
    check_packages(items, rpms, plan.repos, localpkg_gpgcheck=plan.localpkg_gpgcheck)
    return rpms


def _break_hardlinks(root: Path) -> None:
    """Give every regular file under ``root`` its own inode (a copy), keeping owner, mode, times and xattrs."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink == 1:
                continue
            tmp = os.path.join(dirpath, f".{name}.hybcopy")
            shutil.copy2(p, tmp, follow_symlinks=False)
            os.lchown(tmp, st.st_uid, st.st_gid)
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            os.rename(tmp, p)


def _etc_back_to_usr_etc(tree: Path) -> None:
    """/etc returns to /usr/etc, where the commit keeps it. Packages cannot ship /usr/etc (refused up front); a
    scriptlet that made it anyway is an error, not a merge."""
    etc, usr_etc = tree / "etc", tree / "usr/etc"
    if os.path.lexists(usr_etc):
        if usr_etc.is_symlink() or not usr_etc.is_dir() or any(usr_etc.iterdir()):
            raise PackageError("a scriptlet created /usr/etc in the tree; " + USR_ETC_WHY)
        usr_etc.rmdir()
    if etc.is_symlink() or (os.path.lexists(etc) and not etc.is_dir()):
        raise PackageError("/etc of the tree is no longer a directory after the packages were applied")
    if etc.is_dir():
        os.rename(etc, usr_etc)


def _listing(root: Path) -> set[str]:
    out = set()
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


def _var_to_tmpfiles(tree: Path, before: set[str]) -> None:
    """/var entries the packages added: directories and symlinks become tmpfiles.d lines, then all are removed."""
    from hybridos.compose.postprocess import (
        id_names,
        tmpfiles_conf_texts,
        tmpfiles_paths,
        tree_texts,
        var_tmpfiles_line,
        write_tree_file,
    )

    var = tree / "var"
    new = sorted(_listing(var) - before) if var.is_dir() and not var.is_symlink() else []
    if not new:
        return
    # everything read or written resolves inside the tree: a package's symlink never leads to a host file
    known = tmpfiles_paths(tmpfiles_conf_texts(tree))
    users = id_names(tree_texts(tree, "usr/etc/passwd", "usr/lib/passwd"))
    groups = id_names(tree_texts(tree, "usr/etc/group", "usr/lib/group"))
    lines = []
    for rel in new:
        full = var / rel
        st = os.lstat(full)
        path = "/var/" + rel
        if path in known or path == "/var/tmp":
            continue
        line = var_tmpfiles_line(path, st, os.readlink(full) if stat.S_ISLNK(st.st_mode) else None, users, groups)
        if line is not None:
            lines.append(line)
    if lines:
        write_tree_file(tree, _AUTOVAR_CONF, ("# Generated by hybridos from the layered packages' /var content\n"
                                              + "\n".join(lines) + "\n").encode())
    for rel in sorted(new, key=lambda r: -r.count("/")):
        full = var / rel
        if os.path.lexists(full) and not (full.is_dir() and not full.is_symlink()):
            os.unlink(full)
        elif full.is_dir():
            with contextlib.suppress(OSError):
                shutil.rmtree(full)


def protected_paths(plan: Plan, rpms: dict[str, Path]) -> frozenset[str]:
    """Paths of the new packages that already exist in the base and may not be overwritten.

    Excluded: files of base packages this transaction removes or replaces, files a staying base package ships
    with the same content (rpm shares those), and paths shipped by several new packages (rpm's own conflict
    check decides).
    """
    from hybridos.packages.header import read_rpm_header

    leaving = set(plan.removed) | {old for _, old in plan.replaced}
    shared: dict[str, tuple[str, int]] = {}
    for h in plan.base_packages:
        if h.nevra in leaving:
            continue
        for e in h.file_entries:
            shared[e.path] = (e.digest, e.mode)
    leaving_paths = {e.path for h in plan.base_packages if h.nevra in leaving for e in h.file_entries}
    seen: dict[str, int] = {}
    out = set()
    dirs = set()
    for item in plan.transaction.installs:
        h = read_rpm_header(rpms[str(item.nevra)])
        for e in h.file_entries:
            if e.is_ghost or e.path in leaving_paths:
                continue
            if stat.S_ISDIR(e.mode):   # (the unpacker refuses it only where the base has a non-directory)
                dirs.add(e.path)
                continue
            seen[e.path] = seen.get(e.path, 0) + 1
            if shared.get(e.path) == (e.digest, e.mode):
                continue
            out.add(e.path)
    return frozenset({p for p in out if seen[p] == 1} | dirs)


def _kernel_changed(plan: Plan, rpms: dict[str, Path]) -> bool:
    from hybridos.packages.header import read_rpm_header

    def has_kernel(files: Iterable[str]) -> bool:
        return any(f.startswith("/usr/lib/modules/") and f.endswith("/vmlinuz") for f in files)

    leaving = set(plan.removed) | {old for _, old in plan.replaced}
    if any(has_kernel(h.files) for h in plan.base_packages if h.nevra in leaving):
        return True
    return any(has_kernel(read_rpm_header(rpms[str(i.nevra)]).files) for i in plan.transaction.installs)


def _regenerate_initramfs(tree: Path, plan: Plan, base_meta: dict, timeout: float | None) -> str | None:
    from hybridos.initramfs import InitramfsRequest
    from hybridos.plugins import get_registry
    from hybridos.sysroot.deploy import kernel_of_checkout

    kernel = kernel_of_checkout(tree)
    if plan.requests.regenerate_initramfs:
        args = tuple(plan.requests.initramfs_args)
    else:
        inherited = base_meta.get(META_INITRAMFS_ARGS)
        args = tuple(inherited) if isinstance(inherited, list) else ()
    out = tree / "usr/lib/modules" / kernel.kver / "initramfs.img"
    with contextlib.suppress(FileNotFoundError):
        out.unlink()   # a hardlink to the repository's object: never write into it
    req = InitramfsRequest(tree=tree, kernel_version=kernel.kver, arch=plan.arch, args=args, timeout=timeout,
                           hardlinked_usr=True)   # the base is a hardlink checkout of the repository
    if get_registry().hook.hybridos_initramfs(request=req) is None:
        raise PluginError("no initramfs plugin handled the request")
    return kernel.kver


def _nevra_variant(n: Nevra):
    from hybridos.gvariant import Variant

    return Variant("(sssss)", (n.name, str(n.epoch), n.version, n.release, n.arch))


def _metadata(plan: Plan, base_meta: dict, installed_after: Iterable[Nevra]) -> dict:
    from hybridos.gvariant import Variant

    meta = {k: base_meta[k] for k in _INHERITED if k in base_meta}
    active = [n for n in plan.requests.packages if n not in plan.inactive]
    meta.update({
        META_CLIENTLAYER: True,
        META_BASE: plan.base,
        META_PACKAGES: sorted(active + [str(p.nevra) for p in plan.requests.local_packages
                                        if str(p.nevra) not in plan.inactive]),
        # rpm-ostree's types: av of (name, epoch, version, release, arch); a(vv) of (new, old)
        META_REMOVED: Variant("av", [_nevra_variant(n) for n in plan.removed]),
        META_REPLACED: Variant("a(vv)", [(_nevra_variant(new), _nevra_variant(old)) for new, old in plan.replaced]),
        META_INACTIVE: list(plan.inactive),
        META_REGENERATE_INITRAMFS: plan.requests.regenerate_initramfs,
        META_PKGLIST: Variant("a(sssss)", [(n.name, str(n.epoch), n.version, n.release, n.arch)
                                           for n in sorted(installed_after, key=lambda n: (n.name, n.arch))]),
    })
    if plan.requests.regenerate_initramfs:
        meta[META_INITRAMFS_ARGS] = list(plan.requests.initramfs_args)
    return meta


def remove_workdir(workdir: Path) -> None:
    """Move the work tree aside and delete it in a detached ``rm -rf`` (unlinking a big tree takes a while)."""
    trash = workdir.with_name(".trash-" + workdir.name)
    try:
        os.rename(workdir, trash)
    except OSError:
        trash = workdir
    rm = shutil.which("rm")
    if rm is not None:
        with contextlib.suppress(OSError):
            subprocess.Popen([rm, "-rf", "--one-file-system", str(trash)], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            return
    shutil.rmtree(trash, ignore_errors=True)


@dataclass(frozen=True)
class AssembledTree:
    """A layered commit and the tree it was made from (``tree`` may be renamed into a deployment)."""

    commit: str
    tree: Path
    workdir: Path

    def discard(self) -> None:
        remove_workdir(self.workdir)


def _append_initramfs_etc(tree: Path, plan: Plan, etc_dir: Path | None) -> None:
    """``initramfs-etc``: the tracked files of the host's /etc appended to the tree's initramfs."""
    from hybridos.layering.initramfs_etc import append_overlay, overlay_archive
    from hybridos.sysroot.deploy import kernel_of_checkout

    if etc_dir is None:
        raise UsageError("initramfs-etc needs a deployment to read /etc from")
    kernel = kernel_of_checkout(tree)
    append_overlay(tree / "usr/lib/modules" / kernel.kver / "initramfs.img",
                   overlay_archive(etc_dir, plan.requests.initramfs_etc))


def build_layered_commit(sysroot, plan: Plan, rpms: dict[str, Path], *, tx,
                         options: AssembleOptions = AssembleOptions(),
                         etc_dir: Path | None = None) -> AssembledTree:
    """Check out the base, apply the plan, commit (parent: the base). The caller discards the tree."""
    from hybridos.compose.postprocess import move_boot_content
    from hybridos.packages.ostree_paths import check_image_paths
    from hybridos.packages.sandbox import configured_timeout
    from hybridos.plugins import get_registry

    repo = sysroot.repo
    base_meta = repo.load_commit(plan.base).metadata
    check_image_paths(plan.transaction.installs, rpms, layering=True)   # before any work tree exists
    scriptlet_timeout = configured_timeout(repo.config)
    workroot = Path(repo.path) / WORK_DIR
    workroot.mkdir(parents=True, exist_ok=True)
    for stale in workroot.glob("layer-*"):   # left by a killed run (we hold the sysroot lock)
        unmount_stale(stale)
        remove_workdir(stale)
    workdir = Path(tempfile.mkdtemp(prefix="layer-", dir=workroot))
    tree = workdir / "rootfs"
    try:
        with tx.step("checkout-base"):
            repo.checkout(plan.base, tree, mode="hardlink")
            etc, usr_etc = tree / "etc", tree / "usr/etc"
            if os.path.lexists(etc) and usr_etc.is_dir():
                raise PackageError(f"base commit {plan.base[:12]} has both /etc and /usr/etc")
            if usr_etc.is_dir():
                os.rename(usr_etc, etc)
            if etc.is_dir():
                _break_hardlinks(etc)
            var_before = _listing(tree / "var") if (tree / "var").is_dir() else set()
        installed_after = [h.nevra for h in plan.base_packages]
        # --force-replacefiles of this command, or local packages installed with it before (the origin's
        # requested-local-fileoverride): the whole layer may then replace files
        force = options.force_replacefiles or bool(plan.requests.local_fileoverride)
        if plan.transaction:
            with tx.step("layer"):
                request = LayerRequest(tree=tree, transaction=plan.transaction, rpms=rpms, arch=plan.arch,
                                       run_scripts=options.run_scripts,
                                       force_replacefiles=force,
                                       hardlinked_usr=True,  # the base is a hardlink checkout of the repo
                                       scriptlet_timeout=scriptlet_timeout,
                                       protected_paths=frozenset() if force else protected_paths(plan, rpms))
                result = get_registry().hook.hybridos_layer(request=request)
                if result is None:
                    raise PluginError("no layer plugin handled the request (is hybridos installed correctly?)")
                if result.script_output:
                    tx.message(result.script_output.rstrip())
                gone = set(plan.removed) | {old for _, old in plan.replaced}
                installed_after = [n for n in installed_after if n not in gone] + \
                    [i.nevra for i in plan.transaction.installs]
        with tx.step("postprocess"):
            _etc_back_to_usr_etc(tree)
            move_boot_content(tree, replace=force)
            _var_to_tmpfiles(tree, var_before)
        if plan.requests.regenerate_initramfs or (plan.transaction and _kernel_changed(plan, rpms)):
            with tx.step("initramfs"):
                _regenerate_initramfs(tree, plan, base_meta, scriptlet_timeout)
        if plan.requests.initramfs_etc:
            with tx.step("initramfs"):
                _append_initramfs_etc(tree, plan, etc_dir)
        with tx.step("commit"):
            commit = repo.commit_tree(tree, metadata=_metadata(plan, base_meta, installed_after),
                                      parent=plan.base, timestamp=int(time.time()), devino_cache=True,
                                      bind_ref=False)
    except BaseException:
        remove_workdir(workdir)
        raise
    return AssembledTree(commit, tree, workdir)


# ---------------------------------------------------------------------------------------------------------
# Keeping base commits
# ---------------------------------------------------------------------------------------------------------

BASE_REF_PREFIX = "rpmostree/base"


def base_commit_of(repo, commit: str) -> str | None:
    """The base of a client-side layered commit (its parent), None for any other commit."""
    try:
        c = repo.load_commit(commit)
    except HybridosError:
        return None
    return c.parent if c.metadata.get(META_CLIENTLAYER) and c.parent else None


def write_base_refs(sysroot, extra: Iterable[str] = ()) -> None:
    """``rpmostree/base/N`` refs (as rpm-ostree writes them) for the base of every layered deployment, so
    pruning never drops a base commit that a deployment still needs for its next re-layering."""
    repo = sysroot.repo
    wanted = list(dict.fromkeys([b for d in sysroot.deployments if (b := base_commit_of(repo, d.checksum))]
                                + [e for e in extra if e]))
    existing = repo.list_refs(prefix=BASE_REF_PREFIX)
    for i, commit in enumerate(wanted):
        name = f"{BASE_REF_PREFIX}/{i}"
        if existing.get(name) != commit:
            repo.set_ref(name, commit)
    for name in existing:
        if name.startswith(BASE_REF_PREFIX + "/") and name.rsplit("/", 1)[-1].isdigit() \
                and int(name.rsplit("/", 1)[-1]) >= len(wanted):
            repo.set_ref(name, None)


def assemble_tree(sysroot, base_commit: str, origin, *, tx, merge=None, stateroot: str | None = None,
                  options: AssembleOptions = AssembleOptions(), plan: Plan | None = None) -> AssembledTree:
    """Plan (unless given), download, build: the layered commit for ``origin``'s requests on ``base_commit``."""
    requests = Requests.from_origin(origin)
    stateroot = stateroot or (merge.stateroot if merge is not None else sysroot.default_stateroot())
    if merge is None:
        raise UsageError("layering needs an existing deployment to read the host's repositories from")
    if plan is None:
        plan = plan_layering(sysroot, base_commit, requests, stateroot=stateroot,
                             deploy_dir=sysroot.path / merge.relpath, options=options, tx=tx)
    with tx.step("download"):
        rpms = download(plan, stateroot_dir(sysroot.path, stateroot) / PACKAGE_CACHE, cache_only=options.cache_only)
    for n in plan.inactive:
        tx.message(f"Inactive requests: {n} (already provided by the base)")
    write_base_refs(sysroot, [base_commit])
    return build_layered_commit(sysroot, plan, rpms, tx=tx, options=options,
                                etc_dir=sysroot.path / merge.relpath / "etc")


def assemble_deployment_tree(sysroot, base_commit: str, origin, *, tx, merge=None, stateroot: str | None = None,
                             options: AssembleOptions = AssembleOptions(), plan: Plan | None = None) -> str:
    """The commit to deploy for ``origin``'s requests on ``base_commit`` (the base itself when there are none).

    Called by upgrade/deploy/rebase (``hybridos.operations``). Requests the new base already satisfies
    become inactive instead of failing.
    """
    if Requests.from_origin(origin).empty:
        return base_commit
    assembled = assemble_tree(sysroot, base_commit, origin, tx=tx, merge=merge, stateroot=stateroot,
                              options=options, plan=plan)
    assembled.discard()
    return assembled.commit
