"""Upgrade, rebase and deploy-a-version (libostree's ``ostree-sysroot-upgrader.c``, rpm-ostree's verbs).

The new base commit comes through the fetch hook (``hybridos.ostree.pull``) from the remote named in the
origin's refspec, or from a local ref; the merge deployment's kernel arguments and /etc changes carry over.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hybridos.errors import HybridosError, NotFoundError, SysrootError, Unchanged, UsageError
from hybridos.sysroot.deployment import Deployment
from hybridos.sysroot.origin import Origin, Refspec
from hybridos.sysroot.sysroot import Sysroot
from hybridos.sysroot.transaction import Transaction

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


def fetch_refspec(sysroot: Sysroot, refspec: Refspec, *, cache_only: bool = False,
                  commit_metadata_only: bool = False, depth: int = 0, progress=None) -> str:
    """The commit ``refspec`` points to now; pulled from its remote unless ``cache_only`` or local."""
    repo = sysroot.repo
    if refspec.remote is None:
        found = repo.resolve_rev(refspec.ref, allow_missing=True)
        if found is None:
            raise NotFoundError(f"no local ref {refspec.ref!r} in {repo.path}")
        return found
    if cache_only:
        found = repo.resolve_rev(str(refspec), allow_missing=True)
        if found is None or repo.commit_is_partial(found):
            raise NotFoundError(f"{refspec} has not been downloaded yet (--cache-only)",
                                hint="download it first with `hybridos upgrade --download-only`")
        return found
    from hybridos.ostree.pull import pull

    result = pull(repo, refspec.remote, [refspec.ref], depth=depth,
                  commit_metadata_only=commit_metadata_only, progress=progress)
    return result.refs[refspec.ref]


def pull_commit(sysroot: Sysroot, refspec: Refspec, checksum: str, *, progress=None) -> None:
    """Make sure a commit (and everything it needs) is in the sysroot's repository."""
    repo = sysroot.repo
    from hybridos.ostree.objects import ObjectType

    if repo.has_object(checksum, ObjectType.COMMIT) and not repo.commit_is_partial(checksum):
        return
    if refspec.remote is None:
        raise NotFoundError(f"commit {checksum} is not in {repo.path} and {refspec} has no remote")
    from hybridos.ostree.pull import pull

    pull(repo, refspec.remote, [checksum], progress=progress)


def _version(repo, checksum: str) -> str:
    try:
        return repo.load_commit(checksum).version or ""
    except HybridosError:
        return ""


def upgrade(sysroot: Sysroot, tx: Transaction, *, stateroot: str | None = None, check: bool = False,
            cache_only: bool = False, download_only: bool = False, allow_downgrade: bool = False,
            progress=None) -> UpgradeResult:
    """Pull the origin's ref and deploy it if it moved. Raises Unchanged when there is nothing new."""
    stateroot, merge, origin = _merge(sysroot, stateroot)
    refspec = origin.ref
    repo = sysroot.repo
    with tx.step("pull"):
        new = fetch_refspec(sysroot, refspec, cache_only=cache_only, commit_metadata_only=check,
                            progress=progress)
    old_version, new_version = _version(repo, merge.checksum), _version(repo, new)
    base = merge_base_commit(sysroot, merge)
    if new == base and not origin.override_commit:
        # The base did not move; layered packages may have newer versions in their repositories.
        plan = None if check else _layered_updates(sysroot, tx, stateroot, merge, origin, base, cache_only)
        if plan is None:
            raise Unchanged(f"no upgrade available: {refspec} is still {new[:12]}"
                            + (f" (version {new_version})" if new_version else "")
                            + ("; layered packages are up to date" if origin.is_layered and not check else ""))
        if download_only:
            from hybridos.layering.assemble import download
            from hybridos.layering.repos import PACKAGE_CACHE, stateroot_dir

            with tx.step("download"):
                download(plan, stateroot_dir(sysroot.path, stateroot) / PACKAGE_CACHE, cache_only=cache_only)
            return UpgradeResult(sysroot, merge, new, old_version, new_version, False)
        from hybridos.layering.operation import deploy_layered

        result = deploy_layered(sysroot, base, origin, tx=tx, merge=merge, stateroot=stateroot, plan=plan)
        return UpgradeResult(result, merge, result.default.checksum, old_version, new_version, True)
    if check or download_only:
        return UpgradeResult(sysroot, merge, new, old_version, new_version, False)
    if not allow_downgrade:
        old_ts, new_ts = repo.load_commit(base).timestamp, repo.load_commit(new).timestamp
        if new_ts < old_ts:
            raise SysrootError(f"the new commit {new[:12]} of {refspec} is older than the deployed {base[:12]}",
                               hint="use --allow-downgrade to deploy it anyway")
    new_origin = origin.replace(override_commit=None)
    result = _deploy(sysroot, tx, stateroot, new, new_origin, merge)
    return UpgradeResult(result, merge, new, old_version, new_version, True)


def _layered_updates(sysroot: Sysroot, tx: Transaction, stateroot: str, merge: Deployment, origin: Origin,
                     base: str, cache_only: bool):
    """The layering plan for an unchanged base when it would layer other package versions than the merge
    deployment has (what ``rpm-ostree upgrade`` does with layered packages); None when they are current."""
    from hybridos.compose.pipeline import nevras_from_pkglist
    from hybridos.layering.assemble import META_PKGLIST, AssembleOptions, plan_layering
    from hybridos.layering.requests import Requests

    requests = Requests.from_origin(origin)
    if requests.empty or not (requests.packages or requests.local_packages):
        return None   # only removals, local replacements or initramfs: nothing newer can come from a repository
    plan = plan_layering(sysroot, base, requests, stateroot=stateroot, deploy_dir=sysroot.path / merge.relpath,
                         options=AssembleOptions(cache_only=cache_only), tx=tx)
    base_nevras = {str(h.nevra) for h in plan.base_packages}
    deployed = {str(n) for n in nevras_from_pkglist(sysroot.repo.load_commit(merge.checksum).metadata
                                                     .get(META_PKGLIST)).values()}
    planned = {str(n) for n in plan.layered} | {str(new) for new, _old in plan.replaced}
    return None if planned == deployed - base_nevras else plan


def merge_base_commit(sysroot: Sysroot, dep: Deployment) -> str:
    """The base commit of a deployment: its parent when the commit is a client-side layer, else itself."""
    try:
        commit = sysroot.repo.load_commit(dep.checksum)
    except HybridosError:
        return dep.checksum
    if commit.metadata.get("rpmostree.clientlayer") and commit.parent:
        return commit.parent
    return dep.checksum


def _deploy(sysroot: Sysroot, tx: Transaction, stateroot: str, commit: str, origin: Origin,
            merge: Deployment) -> Sysroot:
    """Deploy a base commit; with layered packages in the origin, layering builds the commit to deploy."""
    from hybridos.sysroot.deploy import deploy_commit

    if origin.is_layered:
        from hybridos.layering.operation import deploy_layered

        return deploy_layered(sysroot, commit, origin, tx=tx, merge=merge, stateroot=stateroot)
    return deploy_commit(sysroot, commit, stateroot=stateroot, origin=origin, kargs=None, tx=tx, merge=merge)


def find_version(sysroot: Sysroot, refspec: Refspec, version: str, *, progress=None) -> str:
    """Walk the ref's history (commit objects only) for a commit whose ``version`` metadata is ``version``."""
    repo = sysroot.repo
    head = fetch_refspec(sysroot, refspec, commit_metadata_only=refspec.remote is not None, depth=-1,
                         progress=progress)
    current: str | None = head
    seen = 0
    from hybridos.ostree.objects import ObjectType

    while current is not None and repo.has_object(current, ObjectType.COMMIT):
        commit = repo.load_commit(current)
        if commit.version == version:
            return current
        current = commit.parent
        seen += 1
    raise NotFoundError(f"version {version!r} not found in the history of {refspec} ({seen} commits searched)")


def deploy_revision(sysroot: Sysroot, tx: Transaction, revision: str, *, stateroot: str | None = None,
                    progress=None) -> UpgradeResult:
    """rpm-ostree ``deploy VERSION|CHECKSUM``: pin the origin to that commit (``override-commit``)."""
    stateroot, merge, origin = _merge(sysroot, stateroot)
    refspec = origin.ref
    repo = sysroot.repo
    with tx.step("pull"):
        if _CHECKSUM_RE.match(revision):
            commit = revision
        else:
            commit = find_version(sysroot, refspec, revision, progress=progress)
        pull_commit(sysroot, refspec, commit, progress=progress)
    if commit == merge_base_commit(sysroot, merge):
        raise Unchanged(f"{revision} is already deployed as the default")
    result = _deploy(sysroot, tx, stateroot, commit, origin.replace(override_commit=commit), merge)
    return UpgradeResult(result, merge, commit, _version(repo, merge.checksum), _version(repo, commit), True)


def parse_rebase_target(target: str, current: Refspec) -> Refspec:
    """rpm-ostree's forms: ``REMOTE:REF``, ``REF`` (same remote), ``REMOTE:`` (same ref), ``:REF`` (local)."""
    if ":" in target:
        remote, ref = target.split(":", 1)
        ref = ref or current.ref
        return Refspec(remote or None, ref) if ref else Refspec.parse(target)
    if not target:
        raise UsageError("rebase needs a target [REMOTE:]REF")
    return Refspec(current.remote, target)


def rebase(sysroot: Sysroot, tx: Transaction, target: str, *, stateroot: str | None = None,
           cache_only: bool = False, progress=None) -> UpgradeResult:
    stateroot, merge, origin = _merge(sysroot, stateroot)
    refspec = parse_rebase_target(target, origin.ref)
    if refspec.remote is not None:
        from hybridos.ostree.remotes import get_remote

        get_remote(sysroot.repo.config, refspec.remote)  # a missing remote fails before anything happens
    with tx.step("pull"):
        new = fetch_refspec(sysroot, refspec, cache_only=cache_only, progress=progress)
    if refspec == origin.ref and new == merge_base_commit(sysroot, merge):
        raise Unchanged(f"already on {refspec} ({new[:12]})")
    repo = sysroot.repo
    new_origin = origin.replace(refspec=str(refspec), override_commit=None)
    result = _deploy(sysroot, tx, stateroot, new, new_origin, merge)
    return UpgradeResult(result, merge, new, _version(repo, merge.checksum), _version(repo, new), True)


def rollback(sysroot: Sysroot, tx: Transaction) -> Sysroot:
    """Make the rollback deployment the default (with a pending one, make the booted one default again)."""
    from hybridos.sysroot.deploy import write_deployments

    pending, roll = sysroot.pending_and_rollback()
    target = sysroot.booted if (pending is not None and sysroot.booted is not None) else roll
    if target is None:
        raise SysrootError("no rollback deployment found")
    order = [target] + [d for d in sysroot.deployments if not d.same(target)]
    return write_deployments(sysroot, order, tx)


def change_kargs(sysroot: Sysroot, tx: Transaction, new_kargs: str, *, stateroot: str | None = None) -> Sysroot:
    """A new deployment of the merge deployment's commit with other kernel arguments (as rpm-ostree does)."""
    from hybridos.sysroot.deploy import deploy_commit

    stateroot, merge, origin = _merge(sysroot, stateroot)
    if new_kargs == merge.kargs:
        raise Unchanged("kernel arguments are unchanged")
    return deploy_commit(sysroot, merge.checksum, stateroot=stateroot, origin=origin, kargs=new_kargs, tx=tx,
                         merge=merge)


def cleanup(sysroot: Sysroot, tx: Transaction, *, pending: bool = False, rollback_: bool = False,
            base: bool = False, repomd: bool = False) -> tuple[Sysroot, list[str]]:
    """rpm-ostree ``cleanup``: drop the pending and/or rollback deployment (pinned ones stay), clear caches."""
    from hybridos.sysroot.cleanup import cleanup_sysroot, prune_repo, remove_tree
    from hybridos.sysroot.deploy import finish_interrupted_swap, write_deployments

    finish_interrupted_swap(sysroot, tx)
    notes: list[str] = []
    p, r = sysroot.pending_and_rollback()
    drop = []
    for wanted, dep, what in ((pending, p, "pending"), (rollback_, r, "rollback")):
        if not wanted:
            continue
        if dep is None:
            notes.append(f"no {what} deployment to remove")
        elif dep.pinned:
            notes.append(f"{what} deployment {dep.index} is pinned; kept")
        else:
            drop.append(dep)
    if drop:
        sysroot = write_deployments(sysroot, [d for d in sysroot.deployments
                                              if not any(d.same(x) for x in drop)], tx)
        notes += [f"removed {dep.id}" for dep in drop]
    if base:
        with tx.step("cleanup"):
            removed = cleanup_sysroot(sysroot)
            notes += [f"removed {r}" for r in removed]
            remove_tree(sysroot.path / "ostree/repo/tmp/hybridos")
        with tx.step("prune"):
            pruned = prune_repo(sysroot)
            if pruned.objects_pruned:
                from hybridos.util.progress import human_bytes

                notes.append(f"pruned {pruned.objects_pruned} of {pruned.objects_total} objects, "
                             f"{human_bytes(pruned.bytes_freed)} freed")
    if repomd:
        with tx.step("repomd"):
            for stateroot in sysroot.stateroots():
                remove_tree(sysroot.path / "ostree/deploy" / stateroot / REPOMD_CACHE)
            notes.append("cleared cached rpm-md metadata")
    return sysroot, notes


#: where layering keeps downloaded rpm-md metadata, per stateroot (``cleanup -m`` removes it)
REPOMD_CACHE = "var/cache/hybridos/repomd"
