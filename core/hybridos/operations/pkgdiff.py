"""Package diffs of a rebase or deploy target before it is deployed (rpm-ostree's package-diff transaction).

Cockpit's rebase page calls ``DownloadRebaseRpmDiff(refspec)`` and then ``GetCachedRebaseRpmDiff(refspec)``;
``DownloadDeployRpmDiff(revision)``/``GetCachedDeployRpmDiff(revision)`` do the same for a revision of the
current branch. Downloading fetches the target's commit object (its ``rpmostree.rpmdb.pkglist`` names the
packages; a commit without it is pulled whole, so its rpmdb can be read) and nothing is deployed. The cached
side only looks at what the repository already holds.
"""

from __future__ import annotations

from hybridos.errors import NotFoundError, SysrootError
from hybridos.sysroot.deployment import Deployment
from hybridos.sysroot.origin import Refspec
from hybridos.sysroot.sysroot import Sysroot


def _current(merge: Deployment) -> Refspec:
    origin = merge.origin
    if origin is None or origin.container_image_reference:
        raise SysrootError("package diffs of a rebase or deploy target need a deployment that follows an OSTree "
                           "ref (this one follows a container image)")
    return origin.ref


def rebase_target(merge: Deployment, refspec: str) -> Refspec:
    """The ref a rebase to ``refspec`` would follow (``REMOTE:REF``, ``REF``, ``REMOTE:``, ``:REF``)."""
    from hybridos.sysroot.upgrade import parse_rebase_target

    return parse_rebase_target(refspec, _current(merge))


def commit_packages(sysroot: Sysroot, checksum: str) -> list | None:
    """A commit's packages: its ``rpmostree.rpmdb.pkglist`` (present after a metadata-only pull), else its
    rpmdb when the whole commit is there; None when neither is available."""
    from hybridos.compose.pipeline import META_PKGLIST, nevras_from_pkglist
    from hybridos.errors import HybridosError

    try:
        commit = sysroot.load_commit(checksum)
    except HybridosError:
        return None
    if commit.metadata.get(META_PKGLIST) is not None:
        return list(nevras_from_pkglist(commit.metadata.get(META_PKGLIST)).values())
    if sysroot.repo.commit_is_partial(checksum):
        return None
    from hybridos.sysroot.pkgdiff import packages_of_commit as from_rpmdb

    return from_rpmdb(sysroot.repo, checksum)


def download_target(sysroot: Sysroot, stateroot: str | None, *, refspec: str = "", revision: str = "",
                    progress=None) -> tuple[str, str]:
    """Fetch enough of the target to list its packages; returns (commit, what it is, for messages)."""
    from hybridos.operations.deploy import parse_revision
    from hybridos.sysroot.upgrade import fetch_refspec, find_version, pull_commit

    _, merge = sysroot.require_merge(stateroot)
    if refspec:
        target = rebase_target(merge, refspec)
        commit = fetch_refspec(sysroot, target, commit_metadata_only=target.remote is not None, progress=progress)
        what = str(target)
    else:
        target = _current(merge)
        kind, value = parse_revision(revision)
        commit = value if kind == "checksum" else find_version(sysroot, target, value, progress=progress)
        what = f"{target} {revision}"
        if kind == "checksum" and target.remote is not None:
            from hybridos.ostree.pull import pull

            pull(sysroot.repo, target.remote, [commit], commit_metadata_only=True, progress=progress)
    if commit_packages(sysroot, commit) is None:     # no package list in its metadata: the rpmdb is needed
        pull_commit(sysroot, target, commit, progress=progress)
    return commit, what


def cached_target(sysroot: Sysroot, stateroot: str, *, refspec: str = "", revision: str = "") -> tuple[Deployment,
                                                                                                         str, str]:
    """(merge deployment, the target's commit, the refspec it follows) from what the repository holds."""
    from hybridos.operations.deploy import parse_revision
    from hybridos.ostree.objects import ObjectType

    _, merge = sysroot.require_merge(stateroot)
    repo = sysroot.repo
    if refspec:
        target = rebase_target(merge, refspec)
        commit = repo.resolve_rev(str(target) if target.remote else target.ref, allow_missing=True)
        if commit is None:
            raise NotFoundError(f"{target} has not been downloaded (DownloadRebaseRpmDiff first)")
        return merge, commit, str(target)
    if not revision:
        raise SysrootError("Missing revision")
    current = _current(merge)
    kind, value = parse_revision(revision)
    if kind == "checksum":
        if not repo.has_object(value, ObjectType.COMMIT):
            raise NotFoundError(f"commit {value} has not been downloaded (DownloadDeployRpmDiff first)")
        return merge, value, str(current)
    head = repo.resolve_rev(str(current), allow_missing=True)
    while head is not None and repo.has_object(head, ObjectType.COMMIT):
        commit = repo.load_commit(head)
        if commit.version == value:
            return merge, head, str(current)
        head = commit.parent
    raise NotFoundError(f"version {value!r} is not in the downloaded history of {current} "
                        "(DownloadDeployRpmDiff first)")
