"""Package changes on a host (install, uninstall, overrides, reset, initramfs) and refresh-md.

Every change is a new deployment (the previous one stays as the rollback). Nothing is written to the sysroot
before the new tree is committed, so a failing scriptlet or an unsolvable request leaves the sysroot as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

from hybridos.errors import Unchanged
from hybridos.layering.assemble import AssembleOptions, Plan, download, plan_layering
from hybridos.layering.deploy import deploy_layered
from hybridos.layering.repos import PACKAGE_CACHE, stateroot_dir
from hybridos.layering.requests import Change, Requests, apply
from hybridos.sysroot.origin import Origin
from hybridos.sysroot.upgrade import merge_base_commit


@dataclass(frozen=True)
class ChangeResult:
    sysroot: object                 #: the reloaded Sysroot (the old one when nothing was deployed)
    origin: Origin                  #: the new origin
    plan: Plan | None
    commit: str | None = None       #: the deployed commit (None for --dry-run / --download-only)
    deployed: bool = False


def apply_change(sysroot, tx, change: Change, *, stateroot: str | None = None,
                 options: AssembleOptions = AssembleOptions(), dry_run: bool = False,
                 force: bool = False) -> ChangeResult:
    """Apply ``change`` to the merge deployment's requests and deploy the result.

    Raises Unchanged when the requests stay the same (unless ``force``: ``initramfs-etc --force-sync``
    deploys again to pick up edited /etc files).
    """
    stateroot, merge = sysroot.require_merge(stateroot)
    old = Requests.from_origin(merge.origin)
    new = apply(old, change)
    origin = new.to_origin(merge.origin)
    if (new == old or origin == merge.origin) and not force:
        raise Unchanged("No change.")
    if new.initramfs_etc:
        from hybridos.layering.initramfs_etc import check_tracked

        check_tracked(new.initramfs_etc)
    base = merge_base_commit(sysroot, merge)
    deploy_dir = sysroot.path / merge.relpath
    explicit = (*change.install, *(p.name for p in change.install_local), *change.remove,
                *(p.name for p in change.replace_local))
    options = AssembleOptions(**{**options.__dict__, "explicit": explicit})
    plan = None
    if not new.empty:
        plan = plan_layering(sysroot, base, new, stateroot=stateroot, deploy_dir=deploy_dir, options=options, tx=tx)
    if dry_run:
        return ChangeResult(sysroot, origin, plan)
    if options.download_only:
        if plan is not None:
            with tx.step("download"):
                download(plan, stateroot_dir(sysroot.path, stateroot) / PACKAGE_CACHE, cache_only=options.cache_only)
        return ChangeResult(sysroot, origin, plan)
    new_sysroot = deploy_layered(sysroot, base, origin, tx=tx, merge=merge, stateroot=stateroot, options=options,
                                 plan=plan)
    return ChangeResult(new_sysroot, origin, plan, new_sysroot.default.checksum, True)
