"""Deploy a base commit with an origin's layering requests applied (assemble the layered commit, deploy it).

Nothing is written to the sysroot before the new tree is committed, so a failing scriptlet or an unsolvable
request leaves the sysroot as it was. The verbs that call this are in ``hybridos.operations``.
"""

from __future__ import annotations

from hybridos.layering.assemble import (
    AssembleOptions,
    Plan,
    assemble_tree,
    prune_local_store,
    write_base_refs,
)
from hybridos.layering.requests import LocalPackage, Requests
from hybridos.sysroot.origin import Origin


def _all_local(sysroot) -> list[LocalPackage]:
    out = []
    for d in sysroot.deployments:
        if d.origin is not None:
            with_reqs = Requests.from_origin(d.origin)
            out += [*with_reqs.local_packages, *with_reqs.local_replacements]
    return out


def deploy_layered(sysroot, base: str, origin: Origin, *, tx, merge, stateroot: str,
                   options: AssembleOptions = AssembleOptions(), plan: Plan | None = None):
    """Deploy ``base`` with ``origin``'s requests applied (the base itself when there are none); returns the
    reloaded sysroot. Used by the package verbs and by upgrade/deploy/rebase (``hybridos.operations``)."""
    from hybridos.sysroot.deploy import deploy_commit

    if Requests.from_origin(origin).empty:
        commit, tree, assembled = base, None, None
    else:
        assembled = assemble_tree(sysroot, base, origin, tx=tx, merge=merge, stateroot=stateroot, options=options,
                                  plan=plan)
        commit, tree = assembled.commit, assembled.tree
    try:
        # the tree just committed becomes the deployment: no second checkout
        new_sysroot = deploy_commit(sysroot, commit, stateroot=stateroot, origin=origin, kargs=None, tx=tx,
                                    merge=merge, prepared_tree=tree)
    finally:
        if assembled is not None:
            assembled.discard()
    write_base_refs(new_sysroot)
    prune_local_store(new_sysroot.repo, _all_local(new_sysroot))
    return new_sysroot
