"""Writing deployments (libostree's ``ostree-sysroot-deploy.c``).

``deploy_commit`` checks out a commit that is already in the sysroot's repository as a new deployment and
makes it the default; ``write_deployments`` turns any list of existing deployments into the new boot
configuration: BLS entries in ``boot/loader.N``, bootlinks ``ostree/boot.N.M``, deployment refs, the
bootloader's own configuration, and only then the atomic swap of ``boot/loader``, then cleanup.
Nothing the current ``boot/loader`` refers to is touched before the swap, so a crash at any point leaves a
bootable sysroot and the next command succeeds.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from hybridos.bootloader import BootConfigContext, BootEntry
from hybridos.errors import ConfigError, HybridosError, NotFoundError, SysrootError
from hybridos.sysroot import bls, etcmerge
from hybridos.sysroot.cleanup import cleanup_sysroot, prune_repo, remove_tree
from hybridos.sysroot.deployment import Deployment
from hybridos.sysroot.kargs import KernelArgs, check_args
from hybridos.sysroot.origin import Origin, serialize_origin
from hybridos.sysroot.sysroot import Sysroot
from hybridos.sysroot.transaction import Transaction
from hybridos.util import inroot
from hybridos.util.atomic import atomic_symlink, atomic_write, fsync_dir, syncfs
from hybridos.util.text import one_line

MODULES_DIR = "usr/lib/modules"
#: what a kernel directory name (and so the kernel's file names in /boot) may contain
KVER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~^-]{0,127}$")
OS_RELEASE_LIMIT = 64 << 10   #: os-release is a few hundred bytes; anything bigger is not one


# -- what a commit must contain ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelLayout:
    """Where a tree keeps its kernel (paths relative to the tree root)."""

    kver: str
    vmlinuz: str
    initramfs: str | None = None
    devicetree: str | None = None   #: a single device tree file
    dtb_dir: str | None = None      #: a directory of device trees
    bootcsum: str = ""


@dataclass(frozen=True)
class CommitInfo:
    checksum: str
    kernel: KernelLayout
    os_name: str          #: PRETTY_NAME, else ID, from os-release
    version: str


class _TreeReader:
    """Reads paths inside a commit without checking it out."""

    def __init__(self, repo, commit_checksum: str):
        self.repo = repo
        self.root = repo.load_commit(commit_checksum).root_tree

    def lookup(self, path: str):
        """('file', csum) or ('dir', tree csum) or None."""
        tree = self.root
        parts = [p for p in path.split("/") if p]
        for i, part in enumerate(parts):
            dt = self.repo.load_dirtree(tree)
            last = i == len(parts) - 1
            found = next((d for d in dt.dirs if d[0] == part), None)
            if found is not None:
                tree = found[1]
                if last:
                    return ("dir", tree)
                continue
            if last:
                f = next((f for f in dt.files if f[0] == part), None)
                return ("file", f[1]) if f else None
            return None
        return ("dir", tree)

    def file_header(self, csum: str):
        header, stream = self.repo.open_content(csum)
        if stream is not None:
            stream.close()
        return header

    def read(self, csum: str, limit: int) -> bytes:
        header, stream = self.repo.open_content(csum)
        if stream is None:
            raise SysrootError(f"object {csum} is a symbolic link, not a regular file")
        with stream:
            data = stream.read(limit + 1)
        if len(data) > limit:
            raise SysrootError(f"object {csum} is larger than {limit} bytes")
        return data

    def hash_into(self, h, csum: str) -> None:
        header, stream = self.repo.open_content(csum)
        if stream is None:
            return
        with stream:
            while chunk := stream.read(1 << 20):
                h.update(chunk)

    def walk_files(self, tree: str, prefix: str):
        """(path, csum) of every regular file under a dirtree, in sorted recursive order."""
        dt = self.repo.load_dirtree(tree)
        entries = [(n, "f", c) for n, c in dt.files] + [(n, "d", t) for n, t, _ in dt.dirs]
        for name, kind, c in sorted(entries):
            if kind == "d":
                yield from self.walk_files(c, f"{prefix}/{name}")
            else:
                yield f"{prefix}/{name}", c


def check_kver(kver: str) -> None:
    """Refuse a kernel directory name that could not go into boot configuration as it is."""
    if not KVER_RE.match(kver):
        raise SysrootError(f"kernel version {kver!r} in {MODULES_DIR} is not a plain version "
                           f"(letters, digits and . _ + ~ ^ -); it cannot go into boot configuration")


def _is_regular(mode: int) -> bool:
    return (mode & 0o170000) == 0o100000


def inspect_commit(repo, checksum: str) -> CommitInfo:
    """Check that a commit can be deployed and find its kernel, bootcsum, OS name and version."""
    commit = repo.load_commit(checksum)
    reader = _TreeReader(repo, checksum)
    short = checksum[:12]
    if reader.lookup("etc") and reader.lookup("usr/etc"):
        raise SysrootError(f"commit {short} contains both /etc and /usr/etc; it cannot be deployed")
    modules = reader.lookup(MODULES_DIR)
    kernel = None
    if modules and modules[0] == "dir":
        for kver, kdir, _ in repo.load_dirtree(modules[1]).dirs:
            files = dict(repo.load_dirtree(kdir).files)
            dirs = {n: t for n, t, _ in repo.load_dirtree(kdir).dirs}
            if "vmlinuz" not in files or not _is_regular(reader.file_header(files["vmlinuz"]).mode):
                continue
            check_kver(kver)
            base = f"{MODULES_DIR}/{kver}"
            h = hashlib.sha256()
            reader.hash_into(h, files["vmlinuz"])
            initramfs = devicetree = dtb_dir = None
            if "initramfs.img" in files:
                initramfs = f"{base}/initramfs.img"
                reader.hash_into(h, files["initramfs.img"])
            if "devicetree" in files:
                devicetree = f"{base}/devicetree"
                reader.hash_into(h, files["devicetree"])
            elif "dtb" in dirs:
                dtb_dir = f"{base}/dtb"
                for _, c in reader.walk_files(dirs["dtb"], dtb_dir):
                    reader.hash_into(h, c)
            kernel = KernelLayout(kver, f"{base}/vmlinuz", initramfs, devicetree, dtb_dir, h.hexdigest())
            break
    if kernel is None:
        raise SysrootError(f"commit {short} has no kernel: no {MODULES_DIR}/<kver>/vmlinuz")
    os_release = None
    for path in ("usr/lib/os-release", "etc/os-release", "usr/etc/os-release"):
        found = reader.lookup(path)
        if found and found[0] == "file" and _is_regular(reader.file_header(found[1]).mode):
            os_release = bls.parse_os_release(reader.read(found[1], OS_RELEASE_LIMIT))
            break
    if os_release is None:
        raise SysrootError(f"commit {short} has no os-release: no usr/lib/os-release or etc/os-release")
    name = os_release.get("PRETTY_NAME") or os_release.get("ID")
    if not name:
        raise SysrootError(f"commit {short}: os-release has neither PRETTY_NAME nor ID")
    return CommitInfo(checksum, kernel, name, commit.version or "")


# -- kernel and OS facts of a deployed checkout -----------------------------------------------------------


def kernel_of_checkout(dep_dir: Path) -> KernelLayout:
    """The kernel of an existing deployment (bootcsum is not recomputed).

    Looked up inside the deployment only (symlinks resolve within it, never on the host); ``vmlinuz`` must be
    a regular file.
    """
    def kind(rel: str) -> int | None:
        st = inroot.stat_in_root(dep_dir, rel)
        return stat.S_IFMT(st.st_mode) if st is not None else None

    for kver in inroot.listdir_in_root(dep_dir, MODULES_DIR):
        base = f"{MODULES_DIR}/{kver}"
        st = inroot.stat_in_root(dep_dir, f"{base}/vmlinuz", follow=False)
        if st is None or not stat.S_ISREG(st.st_mode):
            continue
        check_kver(kver)
        devicetree = kind(f"{base}/devicetree") == stat.S_IFREG
        return KernelLayout(
            kver, f"{base}/vmlinuz",
            f"{base}/initramfs.img" if kind(f"{base}/initramfs.img") == stat.S_IFREG else None,
            f"{base}/devicetree" if devicetree else None,
            f"{base}/dtb" if not devicetree and kind(f"{base}/dtb") == stat.S_IFDIR else None,
        )
    raise SysrootError(f"deployment {dep_dir} has no kernel in {MODULES_DIR}")


def os_name_of_checkout(dep_dir: Path) -> str:
    for path in ("usr/lib/os-release", "etc/os-release"):
        data = inroot.read_text_or_none(dep_dir, path, limit=OS_RELEASE_LIMIT)
        if data is not None:
            values = bls.parse_os_release(data)
            name = values.get("PRETTY_NAME") or values.get("ID")
            if name:
                return name
    return "OSTree"


def boot_dir_name(stateroot: str, bootcsum: str) -> str:
    return f"{stateroot}-{bootcsum}"


def _boot_names(kernel: KernelLayout) -> dict[str, str]:
    """Tree path -> file name in ``boot/ostree/<stateroot>-<bootcsum>/``."""
    out = {kernel.vmlinuz: f"vmlinuz-{kernel.kver}"}
    if kernel.initramfs:
        out[kernel.initramfs] = f"initramfs-{kernel.kver}.img"
    if kernel.devicetree:
        out[kernel.devicetree] = f"devicetree-{kernel.kver}"
    if kernel.dtb_dir:
        out[kernel.dtb_dir] = "dtb"
    return out


def _copy_boot_file(dep_dir: Path, tree_path: str, dst: Path, depth: int = 0) -> None:
    """Hardlink (else copy) a boot file or a directory of them out of the deployment, resolving every path
    inside the deployment: an image's symlink cannot make root copy a host file into /boot."""
    st = inroot.stat_in_root(dep_dir, tree_path)
    if st is not None and stat.S_ISDIR(st.st_mode):
        if depth > 16:
            raise SysrootError(f"deployment {dep_dir}: {tree_path} nests deeper than 16 directories")
        dst.mkdir()
        for child in inroot.listdir_in_root(dep_dir, tree_path):
            _copy_boot_file(dep_dir, f"{tree_path}/{child}", dst / child, depth + 1)
        return
    try:
        fd = inroot.open_regular(dep_dir, tree_path)
    except OSError as exc:
        if depth:
            return  # not a regular file inside dtb/ (a dangling or escaping symlink, a FIFO): skipped
        raise SysrootError(f"deployment {dep_dir}: {tree_path} is not a regular file inside the deployment "
                           f"({exc.strerror})") from None
    try:
        inroot.link_or_copy_fd(fd, dst)
    finally:
        os.close(fd)


def install_boot_files(root: Path, dep: Deployment, kernel: KernelLayout) -> None:
    """Put a deployment's kernel, initramfs and device trees in ``boot/ostree/<stateroot>-<bootcsum>``.

    Written into a temporary directory and renamed, so the final directory is always complete.
    """
    final = root / "boot/ostree" / boot_dir_name(dep.stateroot, dep.bootcsum)
    if final.is_dir():
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".tmp-{final.name}")
    remove_tree(tmp)
    tmp.mkdir()
    dep_dir = root / dep.relpath
    try:
        for tree_path, name in _boot_names(kernel).items():
            _copy_boot_file(dep_dir, tree_path, tmp / name)
        fsync_dir(tmp)
        os.rename(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            remove_tree(tmp)   # a full /boot: give the space back at once
        raise


def remove_stale_temporaries(root: Path) -> None:
    """Remove ``.tmp-*`` boot directories an interrupted run left in ``boot/ostree``: on a small /boot they
    would hold the space the next deployment's kernel needs."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for name in os.listdir(root / "boot/ostree"):
            if name.startswith(".tmp-"):
                remove_tree(root / "boot/ostree" / name)


def boot_entry_for(root: Path, dep: Deployment, index: int, count: int, bootversion: int,
                   version: str, *, multi_os: bool = False, bootprefix: bool = False) -> BootEntry:
    """The boot entry of ``dep``; ``bootprefix`` (``[sysroot] bootprefix=true``) starts its paths with
    ``/boot`` for a /boot that is a directory of the root filesystem, as ostree does."""
    dep_dir = root / dep.relpath
    kernel = kernel_of_checkout(dep_dir)
    version = one_line(version)  # the commit's metadata: free text from the image
    prefix = ("/boot" if bootprefix else "") + "/ostree/" + boot_dir_name(dep.stateroot, dep.bootcsum)
    names = _boot_names(kernel)
    options = " ".join(filter(None, [dep.kargs, "ostree=" + bls.ostree_karg(bootversion, dep.stateroot,
                                                                              dep.bootcsum, dep.bootserial)]))
    return BootEntry(
        id=bls.entry_id(index, count, dep.stateroot),
        title=bls.entry_title(os_name_of_checkout(dep_dir), version, index, dep.stateroot if multi_os else None),
        sort_version=count - index,
        linux=f"{prefix}/{names[kernel.vmlinuz]}",
        initrd=(f"{prefix}/{names[kernel.initramfs]}",) if kernel.initramfs else (),
        options=options,
        devicetree=f"{prefix}/{names[kernel.devicetree]}" if kernel.devicetree else None,
        fdtdir=f"{prefix}/dtb" if kernel.dtb_dir else None,
        index=index, stateroot=dep.stateroot, checksum=dep.checksum, version=version,
        kernel_version=kernel.kver, deployment=dep.relpath,
    )


# -- writing a new deployment list -----------------------------------------------------------------------



def assign_bootserials(deployments: list[Deployment]) -> list[Deployment]:
    """bootserial = how many earlier deployments in the list share the bootcsum."""
    seen: dict[str, int] = {}
    out = []
    for i, d in enumerate(deployments):
        n = seen.get(d.bootcsum, 0)
        seen[d.bootcsum] = n + 1
        out.append(d.replace(bootserial=n, index=i))
    return out


def _arch_of(context_entries: list[BootEntry], root: Path):
    from hybridos.arch import Architecture
    from hybridos.bootloader import kernel_architecture

    if context_entries:
        with contextlib.suppress(OSError):
            with open(root / "boot" / context_entries[0].linux.lstrip("/"), "rb") as f:
                found = kernel_architecture(f.read(4096))
            if found is not None:
                return found
    return Architecture.host()


_registry_thread: threading.Thread | None = None


def prefetch_plugins() -> None:
    """Discover the plugins (for the bootloader step) in the background while a checkout runs.

    Discovery imports every plugin module (~0.1 s); overlapping it with the checkout's system calls keeps it off
    the critical path. ``write_deployments`` joins the thread before it asks for the registry.
    """
    global _registry_thread
    if _registry_thread is not None:
        return
    from hybridos import plugins

    if plugins._default_registry is not None:
        return

    def discover() -> None:
        with contextlib.suppress(Exception):  # any failure shows again, in the foreground, at the bootloader step
            plugins.get_registry()

    _registry_thread = threading.Thread(target=discover, name="hybridos-plugins", daemon=True)
    _registry_thread.start()


def _registry():
    from hybridos.plugins import get_registry

    if _registry_thread is not None:
        _registry_thread.join()
    return get_registry()


#: Written just before the swap, removed after the bootloader's post_swap: its presence after a crash says the
#: bootloader may still boot the previous version's bootlinks (e.g. an ESP configuration not yet switched).
POST_SWAP_PENDING = "ostree/.hybridos-post-swap-pending"


def _boot_context(sysroot: Sysroot, deployments: list[Deployment], bootversion: int) -> BootConfigContext:
    from hybridos.plugins import _read_sysroot_options

    root = sysroot.path
    options = _read_sysroot_options(root)
    bootprefix = keyfile_bool(options, "bootprefix")
    multi_os = len({d.stateroot for d in deployments}) > 1
    entries = tuple(
        boot_entry_for(root, d, i, len(deployments), bootversion, sysroot.repo.load_commit(d.checksum).version or "",
                       multi_os=multi_os, bootprefix=bootprefix)
        for i, d in enumerate(deployments))
    booted = next((i for i, d in enumerate(deployments) if d.same(sysroot.booted)), None)
    return BootConfigContext(sysroot=root, bootversion=bootversion, entries=entries, arch=_arch_of(entries, root),
                             options=options, boot_counting=_counting_tries(root, options, deployments),
                             booted=booted)


def _counting_tries(root: Path, options: dict[str, str], deployments: list[Deployment]) -> int | None:
    """Boot counting tries from greenboot.conf of the default deployment; None when ``[sysroot]
    boot-counting`` decides (the bootloader reads and checks it)."""
    from hybridos.health.config import boot_counting_tries

    if "boot-counting" in options or not deployments:
        return None
    return boot_counting_tries({}, root / deployments[0].relpath)


def current_boot_context(sysroot: Sysroot) -> BootConfigContext:
    """The context of the configuration that is current now (for reading and updating boot counting)."""
    return _boot_context(sysroot, assign_bootserials(list(sysroot.deployments)), sysroot.bootversion)


def arm_new_default(bootloader, context: BootConfigContext, old: Sysroot, new_default: Deployment,
                    tx: Transaction) -> None:
    """A deployment other than the running one became the default: put it on trial (boot counting), or,
    when counting is off, stop a count left from an earlier default."""
    if new_default.same(old.default) or new_default.same(old.booted):
        return
    try:
        tries = context.counting_tries()
        bootloader.arm_boot_counting(context, tries)
    except HybridosError as exc:
        tx.message(f"warning: {bootloader.name}: boot counting: {exc}")


def ensure_boot_symlink(root: Path) -> None:
    """``boot/boot -> .`` (as ostree makes it): ``/boot/...`` paths work whether /boot is its own filesystem
    or a directory of the root filesystem."""
    boot = root / "boot"
    if not (boot / "boot").is_symlink():
        with contextlib.suppress(FileExistsError):
            os.symlink(".", boot / "boot")


def keyfile_bool(options: dict[str, str], key: str, default: bool = False) -> bool:
    """A ``[sysroot]`` boolean as GLib's key files spell it (``true``/``false``, ``1``/``0``)."""
    text = options.get(key)
    if text is None:
        return default
    value = text.strip()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ConfigError(f"[sysroot] {key}={text!r} in ostree/repo/config is not a boolean (use true or false)")


def finish_interrupted_swap(sysroot: Sysroot, tx: Transaction) -> None:
    """Run the bootloader's post_swap that a crash after the swap skipped, before anything is cleaned up.

    Until it runs, a bootloader whose configuration lives outside ``boot/loader`` (an ESP) may still point at
    the previous boot version's bootlinks, which cleanup would otherwise remove.
    """
    marker = sysroot.path / POST_SWAP_PENDING
    try:
        pending = int(marker.read_text().strip() or -1)
    except (FileNotFoundError, ValueError):
        if not marker.exists():
            return
        pending = -1
    if pending == sysroot.bootversion and sysroot.deployments:
        with tx.step("finish-post-swap"):
            choice = _registry().select_bootloader(sysroot.path)
            if choice.bootloader is not None:
                choice.bootloader.post_swap(
                    _boot_context(sysroot, assign_bootserials(list(sysroot.deployments)), sysroot.bootversion))
    marker.unlink(missing_ok=True)


def write_deployments(sysroot: Sysroot, deployments: list[Deployment], tx: Transaction, *,
                      prune: bool = True, remove_checkouts: bool = True) -> Sysroot:
    """Make ``deployments`` (in boot order) the sysroot's boot configuration; returns the reloaded sysroot.

    A staged deployment in the list stays staged (no boot entry) when it comes first, as libostree keeps it;
    anywhere else it is dropped, and so is the sysroot's staged deployment when the list leaves it out.
    ``prune``: also delete repository objects no deployment uses any more; ``remove_checkouts``: remove the
    directories of deployments that left the list now (finalization at shutdown leaves both to a later cleanup).
    """
    root = sysroot.path
    finish_interrupted_swap(sysroot, tx)
    keep_staged = bool(deployments) and deployments[0].staged and deployments[0].same(sysroot.staged)
    deployments = [d for d in deployments if not d.staged]
    deployments = assign_bootserials(deployments)
    staged_refs = [sysroot.staged] if keep_staged else []
    new_bv = 1 - sysroot.bootversion if (root / "boot/loader").is_symlink() else 1
    old_sub_target = None
    with contextlib.suppress(OSError):
        old_sub_target = os.readlink(root / f"ostree/boot.{new_bv}")
    new_sub = 0 if old_sub_target == f"boot.{new_bv}.1" else 1
    repo = sysroot.repo

    with tx.step("boot-files"):
        remove_stale_temporaries(root)
        for d in deployments:
            install_boot_files(root, d, kernel_of_checkout(root / d.relpath))
        ensure_boot_symlink(root)      # before any /boot/...-prefixed path (bootprefix) is read through it

    with tx.step("bls-entries"):
        loader_dir = root / f"boot/loader.{new_bv}"
        remove_tree(loader_dir)
        (loader_dir / "entries").mkdir(parents=True)
        context = _boot_context(sysroot, deployments, new_bv)
        for entry in context.entries:
            atomic_write(loader_dir / "entries" / f"{entry.id}.conf", bls.format_entry(entry), sync=False)

    with tx.step("bootlinks"):
        bootlink_dir = root / f"ostree/boot.{new_bv}.{new_sub}"
        remove_tree(bootlink_dir)
        bootlink_dir.mkdir(parents=True)
        for d in deployments:
            parent = bootlink_dir / d.stateroot / d.bootcsum
            parent.mkdir(parents=True, exist_ok=True)
            os.symlink(f"../../../deploy/{d.stateroot}/deploy/{d.name}", parent / str(d.bootserial))
        atomic_symlink(f"boot.{new_bv}.{new_sub}", root / f"ostree/boot.{new_bv}")

    with tx.step("deployment-refs"):
        refs_dir = repo.path / "refs/heads/ostree" / str(new_bv) / str(new_sub)
        remove_tree(refs_dir)
        for i, d in enumerate(deployments + staged_refs):    # a staged commit's ref comes last
            repo.set_ref(f"ostree/{new_bv}/{new_sub}/{i}", d.checksum)

    entries = context.entries
    with tx.step("bootloader"):
        choice = _registry().select_bootloader(root)
        if choice.bootloader is not None and entries:
            choice.bootloader.write_config(context)

    with tx.step("swap"):
        tx.check_cancelled()
        tx.commit_point()
        boot = root / "boot"
        ensure_boot_symlink(root)
        atomic_write(root / POST_SWAP_PENDING, f"{new_bv}\n", sync=False)
        syncfs(root)
        if os.stat(boot).st_dev != os.stat(root).st_dev:
            syncfs(boot)
        atomic_symlink(f"loader.{new_bv}", boot / "loader")
        fsync_dir(boot)
        if sysroot.staged is not None and not keep_staged:
            from hybridos.sysroot import stagedstate

            stagedstate.remove_state()   # dropped, as libostree drops it; cleanup removes its directory

    with tx.step("post-swap"):
        if choice.bootloader is not None and entries:
            try:
                choice.bootloader.post_swap(context)
            except HybridosError as exc:
                tx.message(f"warning: {choice.bootloader.name} post-swap: {exc}")
            else:
                arm_new_default(choice.bootloader, context, sysroot, deployments[0], tx)
        (root / POST_SWAP_PENDING).unlink(missing_ok=True)

    new = Sysroot.load(root)
    with tx.step("cleanup"):
        cleanup_sysroot(new, checkouts=remove_checkouts)
        kept = {d.checksum for d in new.deployments}
        if prune and any(d.checksum not in kept for d in sysroot.deployments):
            prune_repo(new)  # a commit left the list: drop what only it used
    return new


# -- deploying a commit ----------------------------------------------------------------------------------


def allocate_serial(sysroot: Sysroot, stateroot: str, checksum: str) -> int:
    serials = [d.serial for d in sysroot.deployments if d.stateroot == stateroot and d.checksum == checksum]
    return max(serials) + 1 if serials else 0


def select_kept(sysroot: Sysroot, new: Deployment, merge: Deployment | None, *, retain: bool = False,
                keep_rollback: bool = True) -> list[Deployment]:
    """The new list: ``new`` first, then the booted, the merge (rollback), pinned and other OS deployments."""
    out = [new]
    for d in sysroot.deployments:
        if (retain or d.stateroot != new.stateroot or d.booted or d.pinned
                or (keep_rollback and d.same(merge))):
            out.append(d)
    return out


def deploy_commit(sysroot: Sysroot, commit: str, *, stateroot: str, origin: Origin,
                  kargs: KernelArgs | str | None = None, tx: Transaction, retain: bool = False,
                  merge: Deployment | None | bool = True, info: CommitInfo | None = None,
                  prepared_tree: Path | None = None, stage: bool | None = None,
                  lock_finalization: bool | None = None) -> Sysroot:
    """Deploy a commit already in the sysroot's repository as the new default; returns the reloaded sysroot.

    ``kargs`` None inherits the merge deployment's kernel arguments. ``merge`` True picks the merge
    deployment of ``stateroot`` (its /etc changes carry over), False starts from the image's /etc only.
    ``prepared_tree``: a directory on the sysroot's filesystem holding exactly the commit's content (the tree
    layering just committed), renamed into place instead of checking the commit out again.
    ``stage``: write the deployment but leave the /etc merge and the boot entries to ``finalize-staged`` at
    shutdown (``sysroot.staging``); needs a booted sysroot. None: the transaction's choice (``tx.stage``), else
    staged exactly when the sysroot is the running system, as rpm-ostree does. ``lock_finalization``: shutdown
    leaves it alone (None: ``tx.lock_finalization``).
    """
    root = sysroot.path
    if stage is None:
        stage = tx.stage if tx.stage is not None else sysroot.running
    if lock_finalization is None:
        lock_finalization = tx.lock_finalization
    if stage and sysroot.booted is None:
        raise SysrootError("cannot stage a deployment: the sysroot is not booted",
                           hint="stage on the running system; an offline --sysroot deploys at once")
    if not (root / "ostree/deploy" / stateroot / "var").is_dir():
        raise NotFoundError(f"stateroot {stateroot!r} does not exist in {root}",
                            hint=f"create it with `hybridos admin os-init --sysroot {root} {stateroot}`")
    if merge is True:
        merge = sysroot.merge_deployment(stateroot)
    elif merge is False:
        merge = None
    if kargs is None:
        kargs = merge.kargs if merge is not None else ""
    kargs = str(kargs)
    check_args(kargs)
    with tx.step("prepare"):
        info = info or inspect_commit(sysroot.repo, commit)
    serial = allocate_serial(sysroot, stateroot, commit)
    new = Deployment(stateroot=stateroot, checksum=commit, serial=serial, bootcsum=info.kernel.bootcsum,
                     kargs=kargs, origin=origin)
    dep_dir = root / new.relpath

    try:
        with tx.step("checkout"):
            prefetch_plugins()
            remove_tree(dep_dir)
            dep_dir.parent.mkdir(parents=True, exist_ok=True)
            if prepared_tree is not None:
                os.rename(prepared_tree, dep_dir)
            else:
                sysroot.repo.checkout(commit, dep_dir, mode="hardlink")

        with tx.step("etc-merge"):
            etcmerge.populate_etc(dep_dir)
            if merge is not None and not stage:
                merge_dir = root / merge.relpath
                diff = etcmerge.diff_etc(merge_dir / "usr/etc", merge_dir / "etc")
                etcmerge.apply_etc_diff(diff, merge_dir / "etc", dep_dir / "etc")
                tx.message(f"Copying /etc changes: {diff.summary()}")

        with tx.step("origin"):
            atomic_write(root / new.origin_relpath, serialize_origin(origin), sync=False)
    except (HybridosError, OSError):
        # nothing refers to the new deployment yet: leave no half-written one behind (a full disk, a refused tree)
        with contextlib.suppress(OSError):
            remove_tree(dep_dir)
            (root / new.origin_relpath).unlink(missing_ok=True)
        raise

    if stage:
        from hybridos.sysroot.staging import record_staged

        return record_staged(sysroot, new, merge, tx, locked=lock_finalization)
    new_list = select_kept(sysroot, new, merge, retain=retain)
    try:
        return write_deployments(sysroot, new_list, tx)
    except (HybridosError, OSError):
        # failed before the swap (a full /boot, say): the new deployment is referenced by nothing, remove it
        with contextlib.suppress(Exception):
            if not any(d.same(new) for d in Sysroot.load(root).deployments):
                remove_tree(dep_dir)
                (root / new.origin_relpath).unlink(missing_ok=True)
        raise


def undeploy(sysroot: Sysroot, index: int, tx: Transaction) -> Sysroot:
    """Remove one deployment; as with ``ostree admin undeploy``, an explicit request removes a pinned one too
    (pinning only protects from automatic removal)."""
    dep = sysroot.by_index(index)
    if dep.booted:
        raise SysrootError(f"deployment {index} is the booted deployment; it cannot be removed")
    return write_deployments(sysroot, [d for d in sysroot.deployments if not d.same(dep)], tx)


def set_pinned(sysroot: Sysroot, index: int, pinned: bool) -> Deployment:
    """Pin or unpin a deployment: rewrite its origin file (no new boot version, as libostree does)."""
    dep = sysroot.by_index(index)
    if dep.origin is None:
        raise SysrootError(dep.origin_error or f"deployment {index} has no origin")
    origin = dep.origin.replace(pinned=pinned)
    atomic_write(sysroot.path / dep.origin_relpath, serialize_origin(origin))
    return dep.replace(origin=origin)


__all__ = ["CommitInfo", "KernelLayout", "deploy_commit", "inspect_commit", "set_pinned", "undeploy",
           "write_deployments"]
