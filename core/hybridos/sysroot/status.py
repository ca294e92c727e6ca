"""What ``status`` shows: rpm-ostree's JSON keys and its text layout, built from a loaded sysroot."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from hybridos.errors import HybridosError
from hybridos.sysroot import keyfile
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


def json_value(value):
    """A commit metadata value as json-glib serializes the GVariant (Variants unwrapped, int64 as numbers)."""
    from hybridos.gvariant import Variant

    if isinstance(value, Variant):
        return json_value(value.value)
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return list(value)
    return value


def _nevra_tuple(value) -> list[str]:
    """A removed/replaced base package: rpm-ostree's (name, epoch, version, release, arch); older hybridos
    commits stored NEVRA strings."""
    v = json_value(value)
    if isinstance(v, str):
        from hybridos.packages.model import Nevra

        try:
            n = Nevra.parse(v)
        except Exception:  # noqa: BLE001 - shown as written when it is not a NEVRA
            return [v, "0", "", "", ""]
        return [n.name, str(n.epoch), n.version, n.release, n.arch]
    return [str(x) for x in v]


def _nevra_of_local(entry: str) -> str:
    """``SHA256:NEVRA`` (the origin's local package form) -> NEVRA, as rpm-ostree lists them."""
    head, sep, rest = entry.partition(":")
    return rest if sep and len(head) == 64 and all(c in "0123456789abcdef" for c in head) else entry


#: commit metadata status leaves out of base-commit-meta/layered-commit-meta (rpm-ostree's filter_commit_meta)
FILTERED_META = ("rpmostree.rpmdb.pkglist", "rpmostree.advisories", "rpmostree.packages", "rpmostree.modules",
                 "rpmostree.spec", "rpmostree.removed-base-packages", "rpmostree.replaced-base-packages",
                 "rpmostree.replaced-base-remote-packages")


def _commit_meta(commit) -> dict:
    return {k: json_value(v) for k, v in commit.metadata.items() if k not in FILTERED_META}


def _commit_details(out: dict, prefix: str, commit) -> None:
    if commit.version:
        out[prefix + "version"] = commit.version
    if commit.timestamp:
        out[prefix + "timestamp"] = commit.timestamp


def _gpg_status(sysroot: Sysroot, origin, base: str) -> dict:
    """rpm-ostree's ``gpg-enabled`` and ``signatures`` of the base commit, under its remote's keys."""
    from hybridos.ostree import remotes

    try:
        name = origin.ref.remote if origin is not None else None
        repo = sysroot.repo
        remote = remotes.get_remote(repo.config, name) if name else None
    except HybridosError:
        remote = None
    if remote is None or not remote.requires_gpg:
        return {"gpg-enabled": False}
    from hybridos.ostree import gpg as _gpg  # OpenPGP only for a remote that verifies

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
    out = {"container-image-reference": origin.container_image_reference}
    if isinstance(digest, str):
        out["container-image-reference-digest"] = digest
    return out


def deployment_json(sysroot: Sysroot, dep: Deployment) -> dict:
    """One deployment with rpm-ostree's keys and shapes (rpmostreed_deployment_generate_variant): keys that
    rpm-ostree leaves out are absent, never null. hybridos adds ``index``, ``kernel-arguments``,
    ``bootcsum``, ``inactive-requests``, ``override-commit`` and ``origin-error``."""
    commit = _commit(sysroot, dep.checksum)
    meta = commit.metadata if commit is not None else {}
    o = dep.origin
    out: dict = {
        "id": dep.id,
        "osname": dep.stateroot,
        "checksum": dep.checksum,
        "serial": dep.serial,
        "booted": dep.booted,
        "staged": dep.staged,
        "pinned": dep.pinned,
        "unlocked": _unlocked(dep),
        "requested-packages": sorted(o.requested_packages) if o else [],
        "requested-local-packages": sorted(_nevra_of_local(x) for x in o.requested_local_packages) if o else [],
        "requested-local-fileoverride-packages": [],
        "requested-base-removals": sorted(o.removals) if o else [],
        "requested-base-local-replacements": sorted(_nevra_of_local(x) for x in o.local_replacements)
        if o else [],
        "regenerate-initramfs": bool(o and o.regenerate_initramfs),
    }
    extra = {(g, k): v for g, k, v in o.extra} if o else {}
    if o is not None and o.requested_local_fileoverride:
        out["requested-local-fileoverride-packages"] = sorted(
            _nevra_of_local(x) for x in o.requested_local_fileoverride)
    if ("overrides", "replace") in extra:       # rpm-ostree's remote overrides: "repo=ID,pkg,pkg"
        out["requested-base-remote-replacements"] = [
            [entry.split(",")[0], entry.split(",")[1:]]
            for entry in keyfile.split_list(extra["overrides", "replace"])]
    etc = o.initramfs_etc if o is not None else ()
    if o and (o.regenerate_initramfs or etc):
        out["initramfs-args"] = list(o.initramfs_args)
        out["initramfs-etc"] = sorted(etc)
    if ("origin", "custom-url") in extra:
        out["custom-origin"] = [keyfile.unescape(extra["origin", "custom-url"]),
                                keyfile.unescape(extra.get(("origin", "custom-description"), ""))]
    layered = bool(meta.get("rpmostree.clientlayer")) and commit is not None and commit.parent
    base = commit
    if layered:
        base = _commit(sysroot, commit.parent)
        out["base-checksum"] = commit.parent
        if base is not None:
            _commit_details(out, "base-", base)
        out["layered-commit-meta"] = _commit_meta(commit)
    if base is not None:
        eol = base.metadata.get("ostree.endoflife")
        if eol is not None:
            out["endoflife"] = json_value(eol)
        out["base-commit-meta"] = _commit_meta(base)
    if commit is not None:
        _commit_details(out, "", commit)
    base_csum = commit.parent if layered else dep.checksum
    if o is not None and o.container_image_reference:
        out.update(_container_keys(sysroot, o, commit))
    elif o is not None:
        out["origin"] = o.refspec
        out.update(_gpg_status(sysroot, o, base_csum))
        try:
            pending = sysroot.repo.resolve_rev(o.refspec, allow_missing=True)
        except HybridosError:
            pending = None
        if pending and pending != base_csum:
            pc = _commit(sysroot, pending)
            if pc is not None:
                out["pending-base-checksum"] = pending
                _commit_details(out, "pending-base-", pc)
    out["packages"] = sorted(_strs(meta.get("rpmostree.packages", [])))
    out["base-removals"] = [_nevra_tuple(x) for x in json_value(meta.get("rpmostree.removed-base-packages", []))]
    out["base-local-replacements"] = [
        [_nevra_tuple(x[0]), _nevra_tuple(x[1])] if isinstance(x, (list, tuple)) else [_nevra_tuple(x), []]
        for x in json_value(meta.get("rpmostree.replaced-base-packages", []))]
    out["base-remote-replacements"] = {}
    if dep.staged and dep.finalization_locked:
        out["finalization-locked"] = True
    # hybridos's own
    out.update({
        "index": dep.index,
        "kernel-arguments": dep.kargs.split() if dep.kargs else [],
        "bootcsum": dep.bootcsum,
        "inactive-requests": _strs(meta.get("hybridos.inactive-requests", [])),
    })
    if o and o.override_commit:
        out["override-commit"] = o.override_commit
    if dep.origin_error:
        out["origin-error"] = dep.origin_error
    out.update(_health_keys(sysroot.path, dep.id))
    return out


def _health_keys(path: Path, dep_id: str) -> dict:
    """Boot assessment's ``health-check`` (the last run) and ``boot-failure`` (the bootloader fell back from this
    deployment), when recorded (docs/boot-assessment.md)."""
    from hybridos.health.record import read_records

    record = read_records(path).get(dep_id) or {}
    return {k: record[k] for k in ("health-check", "boot-failure") if isinstance(record.get(k), dict)}


def transaction_json(sysroot_path: Path) -> list[str] | None:
    """The running transaction as rpm-ostree's (title, sender, object path) triple: ("transaction", the lock
    holder, "")."""
    from hybridos.sysroot.lock import describe_pid, lock_holder

    pid = lock_holder(sysroot_path)
    if pid is None:
        return None
    return ["transaction", describe_pid(pid), ""]


def _finalization_failure(root: Path) -> str | None:
    """The message of a failed finalization not yet reported by ``admin boot-complete``
    (``sysroot.staging``)."""
    from hybridos.sysroot.runstate import FINALIZE_FAILURE

    try:
        text = (Path(root) / "boot" / FINALIZE_FAILURE).read_text(errors="replace")
    except OSError:
        return None
    return " ".join(text.split())[:500] or "(no message)"


def status_json(sysroot: Sysroot, *, booted_only: bool = False) -> dict:
    deps = [d for d in sysroot.deployments if d.booted or not booted_only]
    out = {"deployments": [deployment_json(sysroot, d) for d in deps],
           "transaction": transaction_json(sysroot.path), "cached-update": None, "update-driver": None}
    failure = _finalization_failure(sysroot.path) if sysroot.running else None
    if failure:
        out["finalize-failure"] = failure   # hybridos's: what the previous shutdown's finalization reported
    return out


#: rpm-ostree's key column: max(len("InactiveRemoteOverrides"), len("InterruptedLiveCommit"))
KEY_WIDTH = 23


def _ts(value: int | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value)) if value is not None else "?"


def _unlocked(dep) -> str:
    """``ostree admin unlock``'s state: ``hybridos.sysroot.unlock.unlocked_state`` (only a booted deployment
    can be unlocked; the others are "none" without looking)."""
    if not dep.booted:
        return "none"
    from hybridos.sysroot.unlock import unlocked_state

    return unlocked_state(dep)


def status_text(data: dict, *, verbose: bool = False) -> list[str]:
    """rpm-ostree's layout: ``● REFSPEC`` headers, keys right-aligned in 23 columns after two spaces, a blank line
    between deployments, StateRoot only with -v or several stateroots, Commit under BaseCommit only with -v."""
    tx = data["transaction"]
    lines = [f"State: {'busy (' + tx[1] + ')' if tx else 'idle'}"]
    if data.get("finalize-failure"):
        lines += ["Warning: failed to finalize previous deployment",
                  f"         error: {data['finalize-failure']}"]
    lines.append("Deployments:")
    if not data["deployments"]:
        lines.append("  (none)")
    several_stateroots = len({d["osname"] for d in data["deployments"]}) > 1

    def row(label: str, value: str) -> None:
        lines.append(f"  {label:>{KEY_WIDTH}}{':' if label else ' '} {value}")

    for i, d in enumerate(data["deployments"]):
        if i:
            lines.append("")
        mark = "●" if d["booted"] else " "
        origin = d.get("origin") or d.get("container-image-reference") or "(origin unreadable)"
        lines.append(f"{mark} {origin}" + (f" (index: {i})" if verbose else ""))
        if d.get("custom-origin") and not d.get("container-image-reference-digest"):
            row("CustomOrigin", d["custom-origin"][1])
        layered = bool(d.get("base-checksum"))
        ts = d.get("base-timestamp") if layered else d.get("timestamp")
        version = d.get("version")
        if version:
            row("Version", f"{version} ({_ts(ts)})")
        else:
            row("Timestamp", _ts(ts))
        if layered:
            row("BaseCommit", d["base-checksum"])
            if verbose:
                row("Commit", d["checksum"])
        else:
            row("Commit", d["checksum"])
        if d["staged"]:   # rpm-ostree shows this row only with -v; a staged deployment is worth seeing always
            row("Staged", "yes" + (" (finalization locked)" if d.get("finalization-locked") else ""))
        elif verbose and i == 0:
            row("Staged", "no")
        if verbose or several_stateroots:
            row("StateRoot", d["osname"])
        if d.get("container-image-reference-digest"):
            row("Digest", d["container-image-reference-digest"])
        if d.get("gpg-enabled"):
            sigs = d.get("signatures") or []
            for j, sig in enumerate(sigs or [None]):
                label = "GPGSignature" if j == 0 else ""
                if sig is None:
                    text = "(unsigned)"
                elif sig["valid"]:
                    text = f"Valid signature by {sig['fingerprint']}"
                else:
                    text = f"Invalid signature by {sig['key-id'] or '(unknown key)'}: {sig['error']}"
                row(label, text)
        if d.get("override-commit"):
            row("Pinned to commit", d["override-commit"])
        if d.get("origin-error"):
            row("Error", d["origin-error"])
        if d.get("boot-failure"):
            row("BootFailure", str(d["boot-failure"].get("message", "boot failed")))
        elif verbose and d.get("health-check"):
            last = d["health-check"]
            row("HealthCheck", str(last.get("result")) + (f" ({last['script']})" if last.get("script") else ""))
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
        if d.get("unlocked", "none") != "none":
            row("Unlocked", d["unlocked"])
        if verbose:
            row("Deployment", f"{d['checksum']}.{d['serial']} (index {d['index']})")
            row("BootCsum", d["bootcsum"])
            row("KernelArguments", " ".join(d["kernel-arguments"]) or "(none)")
    # versions, origins, package names and errors come from commits, remotes and origin files: no terminal
    # escape sequence (nor a line break forging another row) reaches the terminal
    return [for_terminal(line) for line in lines]
