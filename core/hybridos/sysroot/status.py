"""What ``status`` shows: rpm-ostree's JSON keys and its text layout, built from a loaded sysroot."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from hybridos.errors import HybridosError
from hybridos.util.text import for_terminal

if TYPE_CHECKING:  # status_text (also used for status through the daemon) needs neither
    from hybridos.sysroot.deployment import Deployment
    from hybridos.sysroot.sysroot import Sysroot


def _commit(sysroot: Sysroot, checksum: str):
    try:
        return sysroot.load_commit(checksum)
    except HybridosError:  # a commit pruned behind our back is shown without its metadata
        return None


def _strs(value) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [v if isinstance(v, str) else " ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
                for v in value]
    return []


def deployment_json(sysroot: Sysroot, dep: Deployment) -> dict:
    commit = _commit(sysroot, dep.checksum)
    meta = commit.metadata if commit is not None else {}
    layered = bool(meta.get("rpmostree.clientlayer")) and commit is not None and commit.parent
    o = dep.origin
    return {
        "id": dep.id,
        "osname": dep.stateroot,
        "serial": dep.serial,
        "index": dep.index,
        "checksum": dep.checksum,
        "version": commit.version if commit is not None else None,
        "timestamp": commit.timestamp if commit is not None else None,
        "origin": o.source if o else None,
        "origin-error": dep.origin_error,
        "override-commit": o.override_commit if o else None,
        "booted": dep.booted,
        "staged": dep.staged,
        "pinned": dep.pinned,
        "unlocked": "none",
        "base-checksum": commit.parent if layered else None,
        "requested-packages": list(o.requested_packages) if o else [],
        "requested-local-packages": list(o.requested_local_packages) if o else [],
        "packages": _strs(meta.get("rpmostree.packages", [])),
        # requests the base already satisfies (hybridos.layering records them in the layered commit)
        "inactive-requests": _strs(meta.get("hybridos.inactive-requests", [])),
        "requested-base-removals": list(o.removals) if o else [],
        "base-removals": _strs(meta.get("rpmostree.removed-base-packages", [])),
        "requested-base-local-replacements": list(o.local_replacements) if o else [],
        "base-local-replacements": _strs(meta.get("rpmostree.replaced-base-packages", [])),
        "regenerate-initramfs": bool(o and o.regenerate_initramfs),
        "initramfs-args": list(o.initramfs_args) if o else [],
        "kernel-arguments": dep.kargs.split() if dep.kargs else [],
        "bootcsum": dep.bootcsum,
        **_gpg_status(sysroot, o, commit.parent if layered else dep.checksum),
        **_container_keys(sysroot, o, commit),
    }


def _gpg_status(sysroot: Sysroot, origin, base: str) -> dict:
    """rpm-ostree's ``gpg-enabled`` and ``signatures`` of the base commit, under its remote's keys."""
    from hybridos.ostree import gpg as _gpg
    from hybridos.ostree import remotes

    try:
        name = origin.ref.remote if origin is not None else None
        repo = sysroot.repo
        remote = remotes.get_remote(repo.config, name) if name else None
    except HybridosError:
        remote = None
    if remote is None or not remote.requires_gpg:
        return {"gpg-enabled": False}
    return {"gpg-enabled": True, "signatures": _gpg.commit_signatures(repo, base, remote)}


def _container_keys(sysroot: Sysroot, origin, commit) -> dict:
    """rpm-ostree's ``container-image-reference`` and ``-digest`` for a container-image base."""
    if origin is None or not origin.container_image_reference:
        return {}
    from hybridos.container.store import META_MANIFEST_DIGEST

    meta = commit.metadata if commit is not None else {}
    digest = meta.get(META_MANIFEST_DIGEST)
    if digest is None and commit is not None and commit.parent and meta.get("rpmostree.clientlayer"):
        base = _commit(sysroot, commit.parent)
        digest = base.metadata.get(META_MANIFEST_DIGEST) if base is not None else None
    return {"container-image-reference": origin.container_image_reference,
            "container-image-reference-digest": digest if isinstance(digest, str) else None}


def transaction_json(sysroot_path: Path) -> dict | None:
    from hybridos.sysroot.lock import describe_pid, lock_holder

    pid = lock_holder(sysroot_path)
    if pid is None:
        return None
    return {"pid": pid, "holder": describe_pid(pid)}


def status_json(sysroot: Sysroot, *, booted_only: bool = False) -> dict:
    deps = [d for d in sysroot.deployments if d.booted or not booted_only]
    return {"deployments": [deployment_json(sysroot, d) for d in deps],
            "transaction": transaction_json(sysroot.path)}


def _ts(value: int | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value)) if value is not None else "?"


def status_text(data: dict, *, verbose: bool = False) -> list[str]:
    tx = data["transaction"]
    lines = [f"State: {'busy (' + tx['holder'] + ')' if tx else 'idle'}", "Deployments:"]
    if not data["deployments"]:
        lines.append("  (none)")

    def row(label: str, value: str) -> None:
        lines.append(f"{label:>26}: {value}")

    for d in data["deployments"]:
        mark = "●" if d["booted"] else " "
        lines.append(f"{mark} {d['osname']}:{d['origin'] or '(origin unreadable)'}")
        if d["version"]:
            row("Version", f"{d['version']} ({_ts(d['timestamp'])})")
        elif d["timestamp"] is not None:
            row("Timestamp", _ts(d["timestamp"]))
        if d["base-checksum"]:
            row("BaseCommit", d["base-checksum"])
            row("Commit", d["checksum"])
        else:
            row("Commit", d["checksum"])
        if d.get("container-image-reference-digest"):
            row("Digest", d["container-image-reference-digest"])
        if d.get("gpg-enabled"):
            sigs = d.get("signatures") or []
            for i, sig in enumerate(sigs or [None]):
                label = "GPGSignature" if i == 0 else ""
                if sig is None:
                    text = "(unsigned)"
                elif sig["valid"]:
                    text = f"Valid signature by {sig['fingerprint']}"
                else:
                    text = f"Invalid signature by {sig['key-id'] or '(unknown key)'}: {sig['error']}"
                lines.append(f"{label:>26}{':' if label else ' '} {text}")
        if d["override-commit"]:
            row("Pinned to commit", d["override-commit"])
        if d["origin-error"]:
            row("Error", d["origin-error"])
        if d["requested-base-removals"]:
            row("RemovedBasePackages", " ".join(d["requested-base-removals"]))
        if d["requested-base-local-replacements"]:
            row("LocalReplacements", " ".join(d["requested-base-local-replacements"]))
        if d["requested-packages"]:
            row("LayeredPackages", " ".join(d["requested-packages"]))
        if d.get("inactive-requests"):
            row("InactiveRequests", " ".join(d["inactive-requests"]))
        if d["requested-local-packages"]:
            row("LocalPackages", " ".join(d["requested-local-packages"]))
        if d["regenerate-initramfs"]:
            row("Initramfs", "regenerate " + " ".join(d["initramfs-args"]))
        if d["pinned"]:
            row("Pinned", "yes")
        if verbose:
            row("StateRoot", d["osname"])
            row("Deployment", f"{d['checksum']}.{d['serial']} (index {d['index']})")
            row("BootCsum", d["bootcsum"])
            row("KernelArguments", " ".join(d["kernel-arguments"]) or "(none)")
            row("Staged", "yes" if d["staged"] else "no")
    # versions, origins, package names and errors come from commits, remotes and origin files: no terminal
    # escape sequence (nor a line break forging another row) reaches the terminal
    return [for_terminal(line) for line in lines]
