"""The values rpm-ostreed puts on the bus, built from a loaded sysroot: deployment dictionaries (``a{sv}``),
the cached update, and rpm diffs in both of rpm-ostree's shapes.

A deployment dictionary carries rpm-ostree's keys plus the rest of ``hybridos status --json`` (``index``,
``origin-error``, ``override-commit``, ``inactive-requests``, ``kernel-arguments``, ``bootcsum``), so the CLI
can print the same status from the bus as from the disk. Keys whose value is unknown (JSON null) are left out.
"""

import json

from dbus_fast import Variant

from hybridos.errors import HybridosError
from hybridos.sysroot.status import deployment_json

#: status JSON key -> D-Bus signature
DEPLOYMENT_SIGNATURES: dict[str, str] = {
    "id": "s", "osname": "s", "serial": "i", "index": "i", "checksum": "s", "version": "s", "timestamp": "t",
    "origin": "s", "origin-error": "s", "override-commit": "s", "booted": "b", "staged": "b", "pinned": "b",
    "unlocked": "s", "base-checksum": "s", "requested-packages": "as", "requested-local-packages": "as",
    "packages": "as", "inactive-requests": "as", "requested-base-removals": "as", "base-removals": "as",
    "requested-base-local-replacements": "as", "base-local-replacements": "as", "regenerate-initramfs": "b",
    "initramfs-args": "as", "kernel-arguments": "as", "bootcsum": "s", "container-image-reference": "s",
    "container-image-reference-digest": "s",
}
#: the deployment exactly as ``hybridos status --json`` shows it (JSON text), so the CLI prints the same
STATUS_KEY = "hybridos-status"

# rpm-ostree's RpmOstreePackageDiffTypes (GetDeploymentsRpmDiff, GetCachedUpdateRpmDiff)
ADDED, REMOVED, UPGRADED, DOWNGRADED = 0, 1, 2, 3
#: the "type" of a cached update's rpm-diff entries: a base package (1 would be a layered one)
PKG_TYPE_BASE = 0


def deployment_dict(sysroot, dep) -> dict[str, Variant]:
    data = deployment_json(sysroot, dep)
    out = {k: Variant(DEPLOYMENT_SIGNATURES[k], v) for k, v in data.items()
           if v is not None and k in DEPLOYMENT_SIGNATURES}
    out[STATUS_KEY] = Variant("s", json.dumps(data))
    out["finalization-locked"] = Variant("b", bool(data.get("finalization-locked")))
    out["signatures"] = Variant("av", [])
    out["gpg-enabled"] = Variant("b", _gpg_enabled(sysroot, dep))
    if data.get("base-checksum"):
        base = _commit(sysroot, data["base-checksum"])
        if base is not None:
            if base.version:
                out["base-version"] = Variant("s", base.version)
            out["base-timestamp"] = Variant("t", base.timestamp)
    return out


def _commit(sysroot, checksum: str):
    try:
        return sysroot.load_commit(checksum)
    except HybridosError:
        return None


def _gpg_enabled(sysroot, dep) -> bool:
    if dep.origin is None or dep.origin.ref.remote is None:
        return False
    try:
        from hybridos.ostree.remotes import get_remote

        remote = get_remote(sysroot.repo.config, dep.origin.ref.remote)
    except HybridosError:
        return False
    return bool(getattr(remote, "gpg_verify", False))


def deployments(sysroot) -> list[dict[str, Variant]]:
    return [deployment_dict(sysroot, d) for d in sysroot.deployments]


# -- packages and diffs -----------------------------------------------------------------------------------


def packages_of_deployment(sysroot, dep) -> list:
    from hybridos.sysroot.pkgdiff import packages_of_tree

    return packages_of_tree(sysroot.path / dep.relpath)


def packages_of_commit(sysroot, checksum: str) -> list | None:
    from hybridos.operations.pkgdiff import commit_packages

    return commit_packages(sysroot, checksum)


def _pairs(old, new):
    """(added, removed, upgraded, downgraded) as lists of Nevra / (old, new) Nevra pairs."""
    from hybridos.packages.header import compare_evr

    a = {(n.name, n.arch): n for n in old}
    b = {(n.name, n.arch): n for n in new}
    added = [b[k] for k in sorted(b.keys() - a.keys())]
    removed = [a[k] for k in sorted(a.keys() - b.keys())]
    up, down = [], []
    for k in sorted(a.keys() & b.keys()):
        c = compare_evr(a[k].evr, b[k].evr)
        if c < 0:
            up.append((a[k], b[k]))
        elif c > 0:
            down.append((a[k], b[k]))
    return added, removed, up, down


def db_diff_variant(old, new) -> list:
    """``a(sua{sv})``: (name, type, {PreviousPackage: (sss), NewPackage: (sss)}), sorted by type then name."""
    def pkg(n):
        return Variant("(sss)", [n.name, n.evr, n.arch])

    added, removed, up, down = _pairs(old, new)
    out = [[o.name, UPGRADED, {"PreviousPackage": pkg(o), "NewPackage": pkg(n)}] for o, n in up]
    out += [[o.name, DOWNGRADED, {"PreviousPackage": pkg(o), "NewPackage": pkg(n)}] for o, n in down]
    out += [[n.name, REMOVED, {"PreviousPackage": pkg(n)}] for n in removed]
    out += [[n.name, ADDED, {"NewPackage": pkg(n)}] for n in added]
    out.sort(key=lambda e: (e[1], e[0]))
    return out


def rpm_diff_dict(old, new) -> dict[str, Variant]:
    """The cached update's ``rpm-diff``: upgraded/downgraded ``a(us(ss)(ss))``, removed/added ``a(usss)``."""
    added, removed, up, down = _pairs(old, new)
    return {
        "upgraded": Variant("a(us(ss)(ss))", [[PKG_TYPE_BASE, o.name, [o.evr, o.arch], [n.evr, n.arch]]
                                                for o, n in up]),
        "downgraded": Variant("a(us(ss)(ss))", [[PKG_TYPE_BASE, o.name, [o.evr, o.arch], [n.evr, n.arch]]
                                                  for o, n in down]),
        "removed": Variant("a(usss)", [[PKG_TYPE_BASE, n.name, n.evr, n.arch] for n in removed]),
        "added": Variant("a(usss)", [[PKG_TYPE_BASE, n.name, n.evr, n.arch] for n in added]),
    }


# -- the cached update --------------------------------------------------------------------------------------


def update_commit(sysroot, stateroot: str):
    """(merge deployment, its base commit, the commit its origin's ref points to in the repository now)."""
    from hybridos.sysroot.upgrade import merge_base_commit

    merge = sysroot.merge_deployment(stateroot)
    if merge is None or merge.origin is None:
        return None, None, None
    base = merge_base_commit(sysroot, merge)
    new = sysroot.repo.resolve_rev(str(merge.origin.ref), allow_missing=True)
    return merge, base, new


def cached_update(sysroot, stateroot: str) -> dict[str, Variant]:
    """rpm-ostree's ``CachedUpdate`` from what the repository already holds: the origin's ref (as the last
    ``upgrade --check``/``--download-only``/``DownloadUpdateRpmDiff`` left it) against the deployed base.
    Empty when the ref has no newer commit. hybridos derives it each time instead of caching a file."""
    merge, base, new = update_commit(sysroot, stateroot)
    if merge is None or new is None or new == base or merge.origin.override_commit:
        return {}
    return commit_details(sysroot, stateroot, merge, new, merge.origin.refspec)


def commit_details(sysroot, stateroot: str, merge, new: str, refspec: str) -> dict[str, Variant]:
    """rpm-ostree's cached details of commit ``new`` (followed as ``refspec``) against ``merge``: the
    ``CachedUpdate`` dictionary, and the details of the Get*RpmDiff methods. Empty when ``new`` is absent."""
    commit = _commit(sysroot, new)
    if commit is None:
        return {}
    out = {
        "osname": Variant("s", stateroot),
        "checksum": Variant("s", new),
        "version": Variant("s", commit.version or ""),
        "timestamp": Variant("t", commit.timestamp),
        "origin": Variant("s", refspec),
        "signatures": Variant("av", []),
        "gpg-enabled": Variant("b", _gpg_enabled(sysroot, merge)),
        "ref-has-new-commit": Variant("b", new != merge_base(sysroot, merge)),
        "update-sha256": Variant("s", merge.checksum),
        "advisories": Variant("a(suuasa{sv})", []),
    }
    new_pkgs = packages_of_commit(sysroot, new)
    if new_pkgs is not None:
        try:
            old_pkgs = packages_of_deployment(sysroot, merge)
        except (HybridosError, OSError):
            old_pkgs = None
        if old_pkgs is not None:
            out["rpm-diff"] = Variant("a{sv}", rpm_diff_dict(old_pkgs, new_pkgs))
    return out


def merge_base(sysroot, merge) -> str:
    from hybridos.sysroot.upgrade import merge_base_commit

    return merge_base_commit(sysroot, merge)


def target_rpm_diff(sysroot, stateroot: str, *, refspec: str = "", revision: str = "") -> tuple[list, dict]:
    """``GetCachedRebaseRpmDiff``/``GetCachedDeployRpmDiff``: the diff from the merge deployment to the
    downloaded target, and its details."""
    from hybridos.operations.pkgdiff import cached_target

    merge, new, followed = cached_target(sysroot, stateroot, refspec=refspec, revision=revision)
    new_pkgs = packages_of_commit(sysroot, new)
    if new_pkgs is None:
        raise HybridosError(f"the packages of {new} are not known (download it first)")
    details = commit_details(sysroot, stateroot, merge, new, followed)
    details.pop("rpm-diff", None)
    return db_diff_variant(packages_of_deployment(sysroot, merge), new_pkgs), details


def cached_update_rpm_diff(sysroot, stateroot: str) -> tuple[list, dict[str, Variant]]:
    """``GetCachedUpdateRpmDiff``: (``a(sua{sv})`` diff, the update's details ``a{sv}``)."""
    merge, base, new = update_commit(sysroot, stateroot)
    if merge is None or new is None or new == base:
        return [], {}
    new_pkgs = packages_of_commit(sysroot, new)
    if new_pkgs is None:
        return [], {}
    details = cached_update(sysroot, stateroot)
    details.pop("rpm-diff", None)
    return db_diff_variant(packages_of_deployment(sysroot, merge), new_pkgs), details
