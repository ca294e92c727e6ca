"""The sysroot half of libostree's upgrader (``ostree-sysroot-upgrader.c``): fetch what a refspec points to,
find a version in a ref's history, roll back, clean up.

The verbs that decide what to deploy (upgrade, deploy, rebase, kargs, package changes) live in
``hybridos.operations``, which may build a layered commit first; this module never imports layering.
"""

from __future__ import annotations

from hybridos.errors import HybridosError, NotFoundError, SysrootError, UsageError
from hybridos.sysroot.deployment import Deployment
from hybridos.sysroot.origin import Refspec
from hybridos.sysroot.sysroot import Sysroot
from hybridos.sysroot.transaction import Transaction


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


def merge_base_commit(sysroot: Sysroot, dep: Deployment) -> str:
    """The base commit of a deployment: its parent when the commit is a client-side layer, else itself."""
    try:
        commit = sysroot.repo.load_commit(dep.checksum)
    except HybridosError:
        return dep.checksum
    if commit.metadata.get("rpmostree.clientlayer") and commit.parent:
        return commit.parent
    return dep.checksum


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


def in_history(sysroot: Sysroot, refspec: Refspec, checksum: str, *, progress=None) -> bool:
    """Whether ``checksum`` is the ref's head or one of its ancestors (rpm-ostree's deploy branch check)."""
    repo = sysroot.repo
    head = fetch_refspec(sysroot, refspec, commit_metadata_only=refspec.remote is not None, depth=-1,
                         progress=progress)
    from hybridos.ostree.objects import ObjectType

    current: str | None = head
    while current is not None and repo.has_object(current, ObjectType.COMMIT):
        if current == checksum:
            return True
        current = repo.load_commit(current).parent
    return False


def parse_rebase_target(target: str, current: Refspec) -> Refspec:
    """rpm-ostree's forms: ``REMOTE:REF``, ``REF`` (same remote), ``REMOTE:`` (same ref), ``:REF`` (local)."""
    if ":" in target:
        remote, ref = target.split(":", 1)
        ref = ref or current.ref
        return Refspec(remote or None, ref) if ref else Refspec.parse(target)
    if not target:
        raise UsageError("rebase needs a target [REMOTE:]REF")
    return Refspec(current.remote, target)


def rollback(sysroot: Sysroot, tx: Transaction) -> Sysroot:
    """Make the rollback deployment the default (with a pending one, make the booted one default again)."""
    from hybridos.sysroot.deploy import write_deployments

    pending, roll = sysroot.pending_and_rollback()
    target = sysroot.booted if (pending is not None and sysroot.booted is not None) else roll
    if target is None:
        raise SysrootError("no rollback deployment found")
    order = [target] + [d for d in sysroot.deployments if not d.same(target)]
    return write_deployments(sysroot, order, tx)


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
