"""The host transactions as requests: one frozen dataclass per verb, ``run(tx)`` does it and says what happened.

A request is plain data (hashable, comparable), so the CLI builds one from its options and runs it in-process,
and the daemon builds the same one from a D-Bus call: an identical request joins the running transaction.
``run`` loads the sysroot under the transaction's lock, calls one operation and returns an ``Outcome``: the
lines a user reads afterwards and whether anything changed (``--unchanged-exit-77``). Errors are raised as
``HybridosError``; nothing here prints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from hybridos.errors import HybridosError, SysrootError, Unchanged
from hybridos.sysroot.transaction import Transaction

REBOOT_HINT = "Run \"systemctl reboot\" to start a reboot"


@dataclass(frozen=True)
class Outcome:
    """What a transaction leaves for the user: ``lines`` for stdout; ``unchanged`` when there was nothing to do."""

    lines: tuple[str, ...] = ()
    unchanged: bool = False


class Operation:
    """Base of the requests: ``verb`` names it (the lock's title and the daemon's method)."""

    verb: ClassVar[str] = ""

    @property
    def title(self) -> str:
        return self.verb

    def run(self, tx: Transaction) -> Outcome:
        if getattr(self, "lock_finalization", False):
            tx.lock_finalization = True
        try:
            return Outcome(tuple(self._run(tx)))
        except Unchanged as exc:
            return Outcome((exc.message,), unchanged=True)

    def _run(self, tx: Transaction):  # pragma: no cover - every verb overrides it
        raise NotImplementedError

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _load(tx: Transaction):
    from hybridos.sysroot.sysroot import Sysroot

    return Sysroot.load(tx.sysroot)


def _deployment_diff(old_sysroot, old, new_sysroot) -> list[str]:
    """The package diff (Upgraded/Downgraded/Removed/Added) of the deployment a change started from and the new
    default one."""
    from hybridos.sysroot.pkgdiff import diff_packages, packages_of_tree

    new = new_sysroot.default
    if old is None or new is None:
        return []
    try:
        return diff_packages(packages_of_tree(old_sysroot.path / old.relpath),
                             packages_of_tree(new_sysroot.path / new.relpath)).lines()
    except (HybridosError, OSError) as exc:  # a tree without a readable rpmdb still deploys
        return [f"(no package diff: {exc})"]


def _change_lines(result) -> list[str]:
    """``Deployed os:ref: old -> new (commit ...)`` and the package diff of the two deployments."""
    from hybridos.sysroot.pkgdiff import diff_packages, packages_of_tree

    new = result.sysroot.default
    old = result.old
    head = f"{old.stateroot}:{new.origin.source if new and new.origin else '?'}"
    ov = result.old_version or old.checksum[:12]
    nv = result.new_version or result.new_commit[:12]
    lines = [f"Deployed {head}: {ov} -> {nv} (commit {old.checksum[:12]} -> {result.new_commit[:12]})"]
    try:
        diff = diff_packages(packages_of_tree(result.sysroot.path / old.relpath),
                             packages_of_tree(result.sysroot.path / new.relpath))
    except (HybridosError, OSError) as exc:  # a tree without a readable rpmdb still deploys
        return [*lines, f"(no package diff: {exc})"]
    return [*lines, *diff.lines()]


def _repo_options(op, **more):
    """AssembleOptions with the request's --enablerepo/--disablerepo/--releasever."""
    from hybridos.layering.assemble import AssembleOptions
    from hybridos.layering.repos import RepoSelection

    return AssembleOptions(repos=RepoSelection(tuple(op.enablerepo), tuple(op.disablerepo), op.releasever or None),
                           **more)


def _base_change(op, sysroot):
    """The package change of upgrade/deploy/rebase ``--install``/``--uninstall`` (None without one)."""
    if not (op.install or op.install_local_files or op.uninstall):
        return None
    from hybridos.layering.assemble import import_local_rpm
    from hybridos.layering.requests import Change

    return Change(install=op.install,
                  install_local=tuple(import_local_rpm(sysroot.repo, f) for f in op.install_local_files),
                  uninstall=op.uninstall)


def _refuse_packages_with(op, flag: str, *, enabled: bool) -> None:
    """rpm-ostree's "Cannot specify both --preview and --install/--uninstall"."""
    if enabled and (op.install or op.install_local_files or op.uninstall):
        from hybridos.errors import UsageError

        raise UsageError(f"Cannot specify both {flag} and --install/--uninstall")


# -- base image -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upgrade(Operation):
    verb: ClassVar[str] = "upgrade"
    stateroot: str | None = None
    check: bool = False
    preview: bool = False
    cache_only: bool = False
    download_only: bool = False
    allow_downgrade: bool = False
    install: tuple[str, ...] = ()               #: --install: layered in the same transaction as the new base
    install_local_files: tuple[str, ...] = ()
    uninstall: tuple[str, ...] = ()
    enablerepo: tuple[str, ...] = ()
    disablerepo: tuple[str, ...] = ()
    releasever: str = ""
    lock_finalization: bool = False         #: a staged deployment is not finalized at shutdown

    def run(self, tx: Transaction) -> Outcome:
        _refuse_packages_with(self, "--preview", enabled=self.preview)
        _refuse_packages_with(self, "--check", enabled=self.check)
        out = super().run(tx)
        if out.unchanged and (self.check or self.preview):
            return Outcome(("No updates available.",), unchanged=True)     # rpm-ostree's words (and exit 77)
        return out

    def _run(self, tx):
        from hybridos.operations.deploy import upgrade

        sysroot = _load(tx)
        with tx.meter("Receiving objects:") as progress:
            result = upgrade(sysroot, tx, stateroot=self.stateroot, check=self.check,
                             cache_only=self.cache_only, download_only=self.download_only or self.preview,
                             allow_downgrade=self.allow_downgrade, progress=progress,
                             change=_base_change(self, sysroot), options=_repo_options(self))
        if self.check:
            return [f"AvailableUpdate:\n  Version: {result.new_version or '(none)'}\n  Commit: {result.new_commit}"]
        if self.preview:
            from hybridos.sysroot.pkgdiff import diff_packages, packages_of_commit, packages_of_tree

            diff = diff_packages(packages_of_tree(tx.sysroot / result.old.relpath),
                                 packages_of_commit(result.sysroot.repo, result.new_commit))
            return [f"Upgrade available: {result.old_version or '?'} -> {result.new_version or '?'} "
                    f"(commit {result.new_commit})", *diff.lines()]
        if self.download_only:
            return [f"Downloaded {result.new_commit} (version {result.new_version or '?'}); not deployed"]
        return [*_change_lines(result), REBOOT_HINT]


@dataclass(frozen=True)
class Deploy(Operation):
    verb: ClassVar[str] = "deploy"
    revision: str = ""
    stateroot: str | None = None
    skip_branch_check: bool = False
    install: tuple[str, ...] = ()
    install_local_files: tuple[str, ...] = ()
    uninstall: tuple[str, ...] = ()
    enablerepo: tuple[str, ...] = ()
    disablerepo: tuple[str, ...] = ()
    releasever: str = ""
    lock_finalization: bool = False         #: a staged deployment is not finalized at shutdown

    def _run(self, tx):
        from hybridos.operations.deploy import deploy_revision

        sysroot = _load(tx)
        with tx.meter("Receiving objects:") as progress:
            result = deploy_revision(sysroot, tx, self.revision, stateroot=self.stateroot,
                                     skip_branch_check=self.skip_branch_check, progress=progress,
                                     change=_base_change(self, sysroot), options=_repo_options(self))
        return [*_change_lines(result), REBOOT_HINT]


@dataclass(frozen=True)
class Rebase(Operation):
    verb: ClassVar[str] = "rebase"
    target: str = ""
    stateroot: str | None = None
    cache_only: bool = False
    install: tuple[str, ...] = ()
    install_local_files: tuple[str, ...] = ()
    uninstall: tuple[str, ...] = ()
    enablerepo: tuple[str, ...] = ()
    disablerepo: tuple[str, ...] = ()
    releasever: str = ""
    lock_finalization: bool = False         #: a staged deployment is not finalized at shutdown

    def _run(self, tx):
        from hybridos.operations.deploy import rebase

        sysroot = _load(tx)
        with tx.meter("Receiving objects:") as progress:
            result = rebase(sysroot, tx, self.target, stateroot=self.stateroot, cache_only=self.cache_only,
                            progress=progress, change=_base_change(self, sysroot),
                            options=_repo_options(self, cache_only=self.cache_only))
        return [*_change_lines(result), REBOOT_HINT]


@dataclass(frozen=True)
class Rollback(Operation):
    verb: ClassVar[str] = "rollback"

    def _run(self, tx):
        from hybridos.sysroot.upgrade import rollback

        d = rollback(_load(tx), tx).default
        return [f"Moving '{d.checksum}.{d.serial}' to be first deployment", REBOOT_HINT]


@dataclass(frozen=True)
class KernelArgs(Operation):
    """Edit the merge deployment's kernel arguments (each argument validated before anything happens)."""

    verb: ClassVar[str] = "kargs"
    stateroot: str | None = None
    append: tuple[str, ...] = ()
    append_if_missing: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()
    delete_if_present: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()
    lock_finalization: bool = False         #: a staged deployment is not finalized at shutdown

    def validate(self) -> None:
        from hybridos.sysroot.kargs import validate_arg

        for group in (self.append, self.append_if_missing, self.delete, self.delete_if_present, self.replace):
            for a in group:
                validate_arg(a)

    def _run(self, tx):
        from hybridos.operations.deploy import change_kargs
        from hybridos.sysroot import kargs as kargs_mod

        self.validate()
        sysroot = _load(tx)
        stateroot = self.stateroot or sysroot.default_stateroot()
        merge = sysroot.merge_deployment(stateroot)
        if merge is None:
            raise SysrootError(f"no deployment of stateroot {stateroot!r}")
        new = kargs_mod.edit(kargs_mod.KernelArgs.parse(merge.kargs), append=self.append,
                             append_if_missing=self.append_if_missing, delete=self.delete,
                             delete_if_present=self.delete_if_present, replace=self.replace)
        change_kargs(sysroot, tx, str(new), stateroot=stateroot)
        return ["Kernel arguments updated.", REBOOT_HINT]


@dataclass(frozen=True)
class Cleanup(Operation):
    verb: ClassVar[str] = "cleanup"
    pending: bool = False
    rollback: bool = False
    base: bool = False
    repomd: bool = False

    def _run(self, tx):
        from hybridos.sysroot.upgrade import cleanup

        _, notes = cleanup(_load(tx), tx, pending=self.pending, rollback_=self.rollback, base=self.base,
                           repomd=self.repomd)
        return notes


# -- packages ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackageChange(Operation):
    """install, uninstall, override remove/replace/reset, reset and initramfs: a change of the origin's
    requests (``hybridos.layering.requests.Change`` fields) deployed as a new deployment."""

    verb: ClassVar[str] = "pkgchange"
    name: str = "install"                     #: the CLI verb, used as the transaction title
    stateroot: str | None = None
    install: tuple[str, ...] = ()
    install_local_files: tuple[str, ...] = ()  #: RPM files, imported into the local package store
    uninstall: tuple[str, ...] = ()
    uninstall_all: bool = False
    remove: tuple[str, ...] = ()
    replace_local_files: tuple[str, ...] = ()
    reset_overrides: tuple[str, ...] = ()
    reset_all_overrides: bool = False
    reset_all: bool = False
    initramfs: bool | None = None
    initramfs_args: tuple[str, ...] = ()
    idempotent: bool = False
    dry_run: bool = False
    cache_only: bool = False
    download_only: bool = False
    force_replacefiles: bool = False
    allow_inactive: bool = False
    enablerepo: tuple[str, ...] = ()
    disablerepo: tuple[str, ...] = ()
    releasever: str = ""
    initramfs_etc_track: tuple[str, ...] = ()
    initramfs_etc_untrack: tuple[str, ...] = ()
    initramfs_etc_untrack_all: bool = False
    force_sync: bool = False                  #: initramfs-etc --force-sync: deploy even when nothing changed
    lock_finalization: bool = False         #: a staged deployment is not finalized at shutdown

    @property
    def title(self) -> str:
        return self.name

    def _run(self, tx):
        from hybridos.errors import UsageError
        from hybridos.layering.assemble import import_local_rpm
        from hybridos.layering.requests import Change
        from hybridos.operations.packages import apply_change

        if self.force_replacefiles and self.install:
            # rpm-ostree: "Non-local fileoverrides not implemented"; only a local package's request can carry it
            raise UsageError(f"--force-replacefiles applies to local packages only (RPM files or URLs), not to "
                             f"{self.install[0]!r} from a repository (as in rpm-ostree)",
                             hint="download the RPM and install the file, or its URL, with --force-replacefiles")
        sysroot = _load(tx)
        change = Change(install=self.install,
                        install_local=tuple(import_local_rpm(sysroot.repo, f) for f in self.install_local_files),
                        uninstall=self.uninstall, uninstall_all=self.uninstall_all, remove=self.remove,
                        replace_local=tuple(import_local_rpm(sysroot.repo, f) for f in self.replace_local_files),
                        reset_overrides=self.reset_overrides, reset_all_overrides=self.reset_all_overrides,
                        reset_all=self.reset_all, initramfs=self.initramfs, initramfs_args=self.initramfs_args,
                        idempotent=self.idempotent,
                        fileoverride=self.force_replacefiles and bool(self.install_local_files),
                        initramfs_etc_track=self.initramfs_etc_track,
                        initramfs_etc_untrack=self.initramfs_etc_untrack,
                        initramfs_etc_untrack_all=self.initramfs_etc_untrack_all)
        options = _repo_options(self, force_replacefiles=self.force_replacefiles, cache_only=self.cache_only,
                                download_only=self.download_only, allow_inactive=self.allow_inactive)
        try:
            result = apply_change(sysroot, tx, change, stateroot=self.stateroot, options=options,
                                  dry_run=self.dry_run, force=self.force_sync)
        except Unchanged:
            if self.name == "initramfs-etc":
                raise Unchanged("No changes.") from None     # rpm-ostree's words for initramfs-etc
            raise
        lines = list(result.plan.lines()) if result.plan is not None else []
        if self.dry_run:
            return [*lines, "Exiting because of '--dry-run' option"]
        if self.download_only:
            return [*lines, "Downloaded the packages; not deployed (--download-only)"]
        # what changed for the user: the previous default deployment against the new one (rpm-ostree's
        # print_treepkg_diff), not the plan against the base, which lists every layered package again
        merge = sysroot.merge_deployment(self.stateroot or sysroot.default_stateroot())
        notes = [x for x in lines if x.startswith(("Inactive requests", "Initramfs regeneration"))]
        return [*_deployment_diff(sysroot, merge, result.sysroot), *notes, f"Deployed {result.commit}",
                f"Changes queued for next boot. {REBOOT_HINT}"]


@dataclass(frozen=True)
class RefreshMd(Operation):
    verb: ClassVar[str] = "refresh-md"
    stateroot: str | None = None
    force: bool = False

    def _run(self, tx):
        from hybridos.layering.assemble import commit_arch
        from hybridos.layering.repos import load_host_repos

        sysroot = _load(tx)
        stateroot = self.stateroot or sysroot.default_stateroot()
        merge = sysroot.merge_deployment(stateroot)
        if merge is None:
            raise SysrootError(f"no deployment of stateroot {stateroot!r}")
        repos = load_host_repos(tx.sysroot, stateroot, tx.sysroot / merge.relpath,
                                commit_arch(sysroot.repo, merge.checksum), refresh=self.force)
        return [f"Updating metadata for '{r.id}': {'cached' if r.from_cache else 'downloaded'}"
                f" (revision {r.revision or '?'})" for r in repos]


@dataclass(frozen=True)
class PackageDiff(Operation):
    """rpm-ostree's package-diff transaction: download a rebase target (``refspec``) or a revision of the
    current branch far enough to diff its packages; nothing is deployed."""

    verb: ClassVar[str] = "package-diff"
    stateroot: str | None = None
    refspec: str = ""
    revision: str = ""

    def _run(self, tx):
        from hybridos.operations.pkgdiff import download_target

        with tx.step("pull"), tx.meter("Receiving objects:") as progress:
            commit, what = download_target(_load(tx), self.stateroot, refspec=self.refspec,
                                           revision=self.revision, progress=progress)
        return [f"Downloaded {what}: {commit}; not deployed"]


@dataclass(frozen=True)
class ModifyRepo(Operation):
    """rpm-ostree's modify-yum-repo: switch a ``.repo`` file's repository on or off (``enabled`` only)."""

    verb: ClassVar[str] = "modify-yum-repo"
    stateroot: str | None = None
    repo_id: str = ""
    settings: tuple[tuple[str, str], ...] = ()

    def _run(self, tx):
        from hybridos.operations.repos import modify_repo

        with tx.step("repo-modify"):
            path = modify_repo(_load(tx), self.stateroot, self.repo_id, self.settings)
        return [f"Changed {self.repo_id} in {path}: {', '.join(f'{k}={v}' for k, v in self.settings)}"]


@dataclass(frozen=True)
class Search(Operation):
    """rpm-ostree's ``search``: package names and summaries of the enabled repositories (nothing deployed)."""

    verb: ClassVar[str] = "search"
    terms: tuple[str, ...] = ()
    stateroot: str | None = None
    cache_only: bool = False
    enablerepo: tuple[str, ...] = ()
    disablerepo: tuple[str, ...] = ()
    releasever: str = ""

    def _run(self, tx):
        from hybridos.errors import UsageError
        from hybridos.layering.assemble import commit_arch
        from hybridos.layering.repos import RepoSelection, load_host_repos
        from hybridos.operations.search import available_packages, search, search_lines

        if not self.terms:
            raise UsageError("Must specify a term for search")
        sysroot = _load(tx)
        stateroot, merge = sysroot.require_merge(self.stateroot)
        with tx.step("load-repos"):
            repos = load_host_repos(tx.sysroot, stateroot, tx.sysroot / merge.relpath,
                                    commit_arch(sysroot.repo, merge.checksum), cache_only=self.cache_only,
                                    selection=RepoSelection(self.enablerepo, self.disablerepo,
                                                            self.releasever or None))
        return search_lines(search(available_packages(repos), self.terms))


@dataclass(frozen=True)
class FinalizeDeployment(Operation):
    """rpm-ostree ``finalize-deployment``: unlock the staged deployment staged with ``--lock-finalization``
    (its commit or base commit must be ``checksum``; "" accepts any) and reboot, so shutdown finalizes it."""

    verb: ClassVar[str] = "finalize-deployment"
    checksum: str = ""
    allow_unlocked: bool = False
    stateroot: str | None = None

    def _run(self, tx):
        from hybridos.operations.daemonconf import load_settings
        from hybridos.sysroot.staging import finalize_deployment
        from hybridos.util.run import run

        sysroot = _load(tx)
        staged = finalize_deployment(sysroot, self.checksum or None, allow_unlocked=self.allow_unlocked,
                                     stateroot=self.stateroot)
        argv = load_settings(tx.sysroot).reboot_command
        tx.message(f"Finalized deployment; rebooting into {staged.checksum}")
        run(list(argv))
        return []


@dataclass(frozen=True)
class AutomaticUpdate(Operation):
    """What ``hybridos-automatic.service`` runs: the ``AutomaticUpdatePolicy`` (``policy`` "" reads it from the
    configuration) on the running system (``operations.autoupdate``)."""

    verb: ClassVar[str] = "automatic-update"
    policy: str = ""
    stateroot: str | None = None

    def run(self, tx: Transaction) -> Outcome:
        out = super().run(tx)
        if out.unchanged:
            return Outcome(("No updates available.",), unchanged=True)
        return out

    def _run(self, tx):
        import os
        import time

        from hybridos.operations import autoupdate
        from hybridos.operations.daemonconf import load_settings

        settings = load_settings(tx.sysroot)
        policy = self.policy or settings.automatic_update_policy
        if policy == "none":
            return [autoupdate.NOT_ENABLED]
        sysroot = _load(tx)
        started = time.time()
        # the run is recorded in the running system's /run (status: "last run ... ago"); never for an offline one
        record = autoupdate.write_record if sysroot.running else (lambda **_: None)
        record(result="running", pid=os.getpid(), started=started, policy=policy)
        result = "failed"
        try:
            with tx.meter("Receiving objects:") as progress:
                lines = autoupdate.run_policy(sysroot, tx, policy, stateroot=self.stateroot,
                                              reboot_command=settings.reboot_command, progress=progress)
            result = "success"
        except Unchanged:
            result = "success"
            raise
        finally:
            record(result=result, pid=os.getpid(), started=started, finished=time.time(), policy=policy)
        return lines


#: verb -> request class (the daemon's and the client's common vocabulary)
OPERATIONS: dict[str, type[Operation]] = {cls.verb: cls for cls in (
    Upgrade, Deploy, Rebase, Rollback, KernelArgs, Cleanup, PackageChange, RefreshMd, PackageDiff, ModifyRepo,
    Search, FinalizeDeployment, AutomaticUpdate)}


def from_dict(verb: str, data: dict) -> Operation:
    """The request of ``verb`` from ``to_dict`` output (lists become tuples); unknown fields are refused."""
    cls = OPERATIONS.get(verb)
    if cls is None:
        raise HybridosError(f"unknown operation {verb!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise HybridosError(f"{verb}: unknown option(s) {', '.join(sorted(unknown))}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
