"""Upgrade, deploy a revision, rebase and kernel arguments: rpm-ostree's verbs over the sysroot upgrader.

These decide what to deploy; when the origin has layered packages, layering builds the commit first
(``hybridos.layering.operation.deploy_layered``). Each takes a loaded ``Sysroot`` and the ``Transaction``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from hybridos.errors import HybridosError, NotFoundError, SysrootError, Unchanged
from hybridos.sysroot.deployment import Deployment
from hybridos.sysroot.origin import Origin
from hybridos.sysroot.sysroot import Sysroot
from hybridos.sysroot.transaction import Transaction
from hybridos.sysroot.upgrade import (
    fetch_refspec,
    find_version,
    merge_base_commit,
    parse_rebase_target,
    pull_commit,
)

_CHECKSUM_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class UpgradeResult:
    sysroot: Sysroot
    old: Deployment | None
    new_commit: str
    old_version: str
    new_version: str
    deployed: bool
    messages: tuple[str, ...] = field(default=())


def _merge(sysroot: Sysroot, stateroot: str | None) -> tuple[str, Deployment, Origin]:
    stateroot, merge = sysroot.require_merge(stateroot)
    return stateroot, merge, merge.origin


def _with_change(origin: Origin, change) -> Origin:
    """``origin`` with a package change applied (``--install``/``--uninstall`` of upgrade, deploy and rebase:
    the packages change in the same transaction as the base, as rpm-ostree's UpdateDeployment does)."""
    if change is None:
        return origin
    from hybridos.layering.requests import Requests, apply

    return apply(Requests.from_origin(origin), change).to_origin(origin)


def _version(repo, checksum: str) -> str:
    try:
        return repo.load_commit(checksum).version or ""
    except HybridosError:
        return ""


def _tidy(sysroot: Sysroot, tx: Transaction) -> None:
    """Remove what an interrupted run left that nothing references (a deployment it replaced after its swap,
    temporary boot directories): a later upgrade with nothing to do would otherwise keep them until the next
    deployment or ``cleanup``."""
    from hybridos.sysroot.cleanup import cleanup_sysroot

    removed = cleanup_sysroot(sysroot)
    if removed:
        tx.message(f"Removed {len(removed)} leftover(s) of an interrupted run")


def upgrade(sysroot: Sysroot, tx: Transaction, *, stateroot: str | None = None, check: bool = False,
            cache_only: bool = False, download_only: bool = False, allow_downgrade: bool = False,
            progress=None, change=None, options=None) -> UpgradeResult:
    """Pull the origin's ref and deploy it if it moved. Raises Unchanged when there is nothing new.

    ``change`` (a ``hybridos.layering.requests.Change``) alters the layered packages in the same transaction;
    ``options`` (``AssembleOptions``) selects the repositories layering uses."""
    from hybridos.layering.assemble import AssembleOptions

    options = options or AssembleOptions()
    stateroot, merge, origin = _merge(sysroot, stateroot)
    changed = _with_change(origin, change)
    if origin.container_image_reference:
        return _upgrade_container(sysroot, tx, stateroot, merge, changed, check=check,
                                  download_only=download_only, options=options)
    refspec = origin.ref
    repo = sysroot.repo
    with tx.step("pull"):
        new = fetch_refspec(sysroot, refspec, cache_only=cache_only, commit_metadata_only=check,
                            progress=progress)
    old_version, new_version = _version(repo, merge.checksum), _version(repo, new)
    base = merge_base_commit(sysroot, merge)
    if new == base and not origin.override_commit and changed != origin and not (check or download_only):
        # the base did not move but the packages change: layer them on the same base
        from hybridos.layering.deploy import deploy_layered

        result = deploy_layered(sysroot, base, changed, tx=tx, merge=merge, stateroot=stateroot,
                                options=dataclasses.replace(options, cache_only=cache_only))
        return UpgradeResult(result, merge, result.default.checksum, old_version, new_version, True)
    if new == base and not origin.override_commit:
        # The base did not move; layered packages may have newer versions in their repositories.
        plan = None if check else _layered_updates(sysroot, tx, stateroot, merge, changed, base, cache_only,
                                                   options)
        if plan is None:
            if not check:
                _tidy(sysroot, tx)
            raise Unchanged(f"no upgrade available: {refspec} is still {new[:12]}"
                            + (f" (version {new_version})" if new_version else "")
                            + ("; layered packages are up to date" if origin.is_layered and not check else ""))
        if download_only:
            from hybridos.layering.assemble import download
            from hybridos.layering.repos import PACKAGE_CACHE, stateroot_dir

            with tx.step("download"):
                download(plan, stateroot_dir(sysroot.path, stateroot) / PACKAGE_CACHE, cache_only=cache_only)
            return UpgradeResult(sysroot, merge, new, old_version, new_version, False)
        from hybridos.layering.deploy import deploy_layered

        result = deploy_layered(sysroot, base, changed, tx=tx, merge=merge, stateroot=stateroot, plan=plan,
                                options=options)
        return UpgradeResult(result, merge, result.default.checksum, old_version, new_version, True)
    if check or download_only:
        return UpgradeResult(sysroot, merge, new, old_version, new_version, False)
    if not allow_downgrade:
        old_ts, new_ts = repo.load_commit(base).timestamp, repo.load_commit(new).timestamp
        if new_ts < old_ts:
            raise SysrootError(f"the new commit {new[:12]} of {refspec} is older than the deployed {base[:12]}",
                               hint="use --allow-downgrade to deploy it anyway")
    new_origin = changed.replace(override_commit=None)
    result = _deploy(sysroot, tx, stateroot, new, new_origin, merge, dataclasses.replace(options,
                                                                                         cache_only=cache_only))
    return UpgradeResult(result, merge, new, old_version, new_version, True)


def _layered_updates(sysroot: Sysroot, tx: Transaction, stateroot: str, merge: Deployment, origin: Origin,
                     base: str, cache_only: bool, options=None):
    """The layering plan for an unchanged base when it would layer other package versions than the merge
    deployment has (what ``rpm-ostree upgrade`` does with layered packages); None when they are current."""
    from hybridos.compose.pipeline import nevras_from_pkglist
    from hybridos.layering.assemble import META_PKGLIST, AssembleOptions, plan_layering
    from hybridos.layering.requests import Requests

    requests = Requests.from_origin(origin)
    if requests.empty or not (requests.packages or requests.local_packages):
        return None   # only removals, local replacements or initramfs: nothing newer can come from a repository
    options = dataclasses.replace(options or AssembleOptions(), cache_only=cache_only)
    plan = plan_layering(sysroot, base, requests, stateroot=stateroot, deploy_dir=sysroot.path / merge.relpath,
                         options=options, tx=tx)
    base_nevras = {str(h.nevra) for h in plan.base_packages}
    deployed = {str(n) for n in nevras_from_pkglist(sysroot.repo.load_commit(merge.checksum).metadata
                                                     .get(META_PKGLIST)).values()}
    planned = {str(n) for n in plan.layered} | {str(new) for new, _old in plan.replaced}
    return None if planned == deployed - base_nevras else plan


def _deploy(sysroot: Sysroot, tx: Transaction, stateroot: str, commit: str, origin: Origin,
            merge: Deployment, options=None) -> Sysroot:
    """Deploy a base commit; with layered packages in the origin, layering builds the commit to deploy."""
    from hybridos.sysroot.deploy import deploy_commit

    if origin.is_layered:
        from hybridos.layering.assemble import AssembleOptions
        from hybridos.layering.deploy import deploy_layered

        return deploy_layered(sysroot, commit, origin, tx=tx, merge=merge, stateroot=stateroot,
                              options=options or AssembleOptions())
    return deploy_commit(sysroot, commit, stateroot=stateroot, origin=origin, kargs=None, tx=tx, merge=merge)


def parse_revision(revision: str) -> tuple[str, str]:
    """rpm-ostree's deploy argument: ``revision=CHECKSUM``, ``version=VERSION``, or a bare 64-hex checksum
    (else a version). Returns ("checksum"|"version", value)."""
    from hybridos.errors import UsageError

    kind, sep, value = revision.partition("=")
    if sep and kind in ("revision", "version"):
        if not value:
            raise UsageError(f"empty {kind} in {revision!r}")
        if kind == "revision":
            if not _CHECKSUM_RE.match(value):
                raise UsageError(f"revision={value!r} is not a commit checksum (64 hexadecimal digits)")
            return "checksum", value
        return "version", value
    return ("checksum" if _CHECKSUM_RE.match(revision) else "version"), revision


def deploy_revision(sysroot: Sysroot, tx: Transaction, revision: str, *, stateroot: str | None = None,
                    skip_branch_check: bool = False, progress=None, change=None, options=None) -> UpgradeResult:
    """rpm-ostree ``deploy [revision=|version=]REV``: pin the origin to that commit (``override-commit``).
    A checksum must be in the history of the origin's branch unless ``skip_branch_check``."""
    from hybridos.sysroot.upgrade import in_history

    stateroot, merge, origin = _merge(sysroot, stateroot)
    refspec = origin.ref
    repo = sysroot.repo
    kind, value = parse_revision(revision)
    with tx.step("pull"):
        if kind == "checksum":
            commit = value
            if not skip_branch_check and not in_history(sysroot, refspec, commit, progress=progress):
                raise NotFoundError(f"checksum {commit} not found in {refspec}",
                                    hint="use --skip-branch-check to deploy it anyway")
        else:
            commit = find_version(sysroot, refspec, value, progress=progress)
        pull_commit(sysroot, refspec, commit, progress=progress)
    changed = _with_change(origin, change)
    if commit == merge_base_commit(sysroot, merge) and changed == origin:
        raise Unchanged(f"{revision} is already deployed as the default")
    result = _deploy(sysroot, tx, stateroot, commit, changed.replace(override_commit=commit), merge, options)
    return UpgradeResult(result, merge, commit, _version(repo, merge.checksum), _version(repo, commit), True)


def rebase(sysroot: Sysroot, tx: Transaction, target: str, *, stateroot: str | None = None,
           cache_only: bool = False, progress=None, change=None, options=None) -> UpgradeResult:
    from hybridos.container.imgref import is_container_refspec

    stateroot, merge, origin = _merge(sysroot, stateroot)
    unchanged_packages = change is None
    origin = _with_change(origin, change)     # the rebased deployment carries the package change too
    if is_container_refspec(target):
        return _rebase_container(sysroot, tx, stateroot, merge, origin, target, options)
    if _CHECKSUM_RE.match(target):      # rpm-ostree: rebase to a commit; the origin then names that checksum
        with tx.step("pull"):
            pull_commit(sysroot, origin.ref, target, progress=progress)
        if target == merge_base_commit(sysroot, merge) and origin.refspec == target and unchanged_packages:
            raise Unchanged(f"already on {target}")
        new_origin = origin.replace(refspec=target, override_commit=None, container_image_reference=None)
        result = _deploy(sysroot, tx, stateroot, target, new_origin, merge, options)
        repo = sysroot.repo
        return UpgradeResult(result, merge, target, _version(repo, merge.checksum), _version(repo, target), True)
    current = origin.ref if not origin.container_image_reference else None
    if current is None and (":" not in target or target.endswith(":")):
        raise SysrootError(f"cannot rebase to {target!r} from a container image: name REMOTE:REF")
    refspec = parse_rebase_target(target, current)
    if refspec.remote is not None:
        from hybridos.ostree.remotes import get_remote

        get_remote(sysroot.repo.config, refspec.remote)  # a missing remote fails before anything happens
    with tx.step("pull"):
        new = fetch_refspec(sysroot, refspec, cache_only=cache_only, progress=progress)
    if refspec == current and new == merge_base_commit(sysroot, merge) and unchanged_packages:
        raise Unchanged(f"already on {refspec} ({new[:12]})")
    repo = sysroot.repo
    new_origin = origin.replace(refspec=str(refspec), override_commit=None, container_image_reference=None)
    result = _deploy(sysroot, tx, stateroot, new, new_origin, merge, options)
    return UpgradeResult(result, merge, new, _version(repo, merge.checksum), _version(repo, new), True)


def _upgrade_container(sysroot: Sysroot, tx: Transaction, stateroot: str, merge: Deployment, origin: Origin, *,
                       check: bool, download_only: bool, options=None) -> UpgradeResult:
    """``upgrade`` of a deployment whose base is a container image: compare the manifest digest first, so an
    unchanged image downloads no layer; ``--check`` stops there."""
    from hybridos.operations import container

    image = origin.container_image_reference
    repo = sysroot.repo
    old_version = _version(repo, merge.checksum)
    current = container.deployed_digest(sysroot, merge.checksum)
    try:
        with tx.step("pull"):
            digest, version = container.check_update(sysroot, image, current)
    except Unchanged:
        if check or download_only or origin == merge.origin:
            raise
        # the same image, but --install/--uninstall change the packages: layer them on the deployed base
        result = _deploy(sysroot, tx, stateroot, merge_base_commit(sysroot, merge), origin, merge, options)
        return UpgradeResult(result, merge, result.default.checksum, old_version, old_version, True)
    with tx.step("pull"):
        if check:
            return UpgradeResult(sysroot, merge, digest, old_version, version or "", False,
                                 (f"Digest: {digest}",))
        pulled = container.pull(sysroot, tx, image)
    new_version = _version(repo, pulled.merge_commit)
    if download_only:
        return UpgradeResult(sysroot, merge, pulled.merge_commit, old_version, new_version, False)
    result = _deploy(sysroot, tx, stateroot, pulled.merge_commit, origin.replace(override_commit=None), merge,
                     options)
    return UpgradeResult(result, merge, pulled.merge_commit, old_version, new_version, True)


def _rebase_container(sysroot: Sysroot, tx: Transaction, stateroot: str, merge: Deployment, origin: Origin,
                      target: str, options=None) -> UpgradeResult:
    from hybridos.container.imgref import OstreeImageReference
    from hybridos.operations import container

    image = str(OstreeImageReference.parse(target))
    with tx.step("pull"):
        pulled = container.pull(sysroot, tx, image)
    if image == origin.container_image_reference and origin == merge.origin and \
            container.deployed_digest(sysroot, merge.checksum) == pulled.manifest_digest:
        raise Unchanged(f"already on {image} ({pulled.manifest_digest})")
    repo = sysroot.repo
    new_origin = origin.replace(refspec="", override_commit=None, container_image_reference=image)
    result = _deploy(sysroot, tx, stateroot, pulled.merge_commit, new_origin, merge, options)
    return UpgradeResult(result, merge, pulled.merge_commit, _version(repo, merge.checksum),
                         _version(repo, pulled.merge_commit), True)


def change_kargs(sysroot: Sysroot, tx: Transaction, new_kargs: str, *, stateroot: str | None = None) -> Sysroot:
    """A new deployment of the merge deployment's commit with other kernel arguments (as rpm-ostree does)."""
    from hybridos.sysroot.deploy import deploy_commit

    stateroot, merge, origin = _merge(sysroot, stateroot)
    if new_kargs == merge.kargs:
        raise Unchanged("kernel arguments are unchanged")
    return deploy_commit(sysroot, merge.checksum, stateroot=stateroot, origin=origin, kargs=new_kargs, tx=tx,
                         merge=merge)

