"""Automatic updates (rpm-ostreed-automatic): the policy's action, the cached update, what ``status`` says.

``hybridos-automatic.timer`` starts ``hybridos upgrade --trigger-automatic-update-policy``, which runs the
configured ``AutomaticUpdatePolicy`` (``operations.daemonconf``): ``check`` pulls commit metadata only, so
the origin's ref names the new commit and the package difference is read from its
``rpmostree.rpmdb.pkglist`` (that is the cached update: derived from the repository, as the daemon's
``CachedUpdate`` is); ``stage`` downloads and stages it; ``apply`` stages it and reboots through
``RebootCommand``. Each run is recorded in ``/run/hybridos/automatic-update.json`` (the run directory: since
boot) for ``status``'s "last run" line. A run that finds the sysroot locked by a transaction skips.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from hybridos.errors import HybridosError, SysrootError
from hybridos.sysroot import runstate

TIMER_UNIT = "hybridos-automatic.timer"
SERVICE_UNIT = "hybridos-automatic.service"
RECORD = "hybridos/automatic-update.json"
NOT_ENABLED = "Automatic updates are not enabled; exiting..."
#: rpm-ostree aligns the AvailableUpdate block's keys on len("SecAdvisories")
AVAILABLE_KEY_WIDTH = len("SecAdvisories")


def record_path() -> Path:
    return runstate.run_dir() / RECORD


def write_record(**fields) -> None:
    from hybridos.util.atomic import atomic_write

    path = record_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(fields, sort_keys=True).encode(), sync=False)


def read_record() -> dict | None:
    try:
        data = json.loads(record_path().read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- the trigger -------------------------------------------------------------------------------------------


def run_policy(sysroot, tx, policy: str, *, stateroot: str | None = None, reboot_command=("systemctl", "reboot"),
               progress=None) -> list[str]:
    """Do what ``policy`` (check, stage or apply) asks on the running system; the lines to print.
    Raises Unchanged when there is no update."""
    from hybridos.operations.deploy import upgrade
    from hybridos.util.run import run

    if policy == "check":   # read-only: also for an offline sysroot (what GNOME Software's refresh asks)
        result = upgrade(sysroot, tx, stateroot=stateroot, check=True, progress=progress)
        data = cached_update_json(sysroot, stateroot or (sysroot.booted or sysroot.default).stateroot)
        return available_update_lines(data) if data else [f"AvailableUpdate: {result.new_commit}"]
    if not sysroot.running:
        raise SysrootError("Cannot trigger auto-update for offline OS",
                           hint="automatic updates stage on the running system (the sysroot /)")
    tx.stage = True
    result = upgrade(sysroot, tx, stateroot=stateroot, progress=progress)
    staged = result.sysroot.staged
    lines = [f"Staged update {result.new_version or result.new_commit[:12]} "
             f"(commit {result.new_commit}) for finalization at shutdown"]
    if policy == "apply" and staged is not None:
        tx.message(f"Rebooting into {staged.checksum} ({' '.join(reboot_command)})")
        run(list(reboot_command))
        lines.append("Reboot requested")
    return lines


# -- the cached update -------------------------------------------------------------------------------------


def _packages_of_commit(sysroot, checksum: str):
    from hybridos.compose.pipeline import META_PKGLIST, nevras_from_pkglist

    commit = sysroot.load_commit(checksum)
    if commit.metadata.get(META_PKGLIST) is not None:
        return list(nevras_from_pkglist(commit.metadata.get(META_PKGLIST)).values())
    if sysroot.repo.commit_is_partial(checksum):
        return None
    from hybridos.sysroot.pkgdiff import packages_of_commit

    return packages_of_commit(sysroot.repo, checksum)


def cached_update_json(sysroot, stateroot: str | None) -> dict | None:
    """rpm-ostree's ``cached-update`` (the ``CachedUpdate`` dictionary as JSON) from the repository: the
    origin's ref against the deployed base; None when the ref has nothing newer."""
    from hybridos.sysroot.pkgdiff import packages_of_tree
    from hybridos.sysroot.upgrade import merge_base_commit

    stateroot = stateroot or sysroot.default_stateroot()
    merge = sysroot.merge_deployment(stateroot)
    if merge is None or merge.origin is None or merge.origin.override_commit:
        return None
    if merge.origin.container_image_reference:
        return None
    base = merge_base_commit(sysroot, merge)
    try:
        new = sysroot.repo.resolve_rev(str(merge.origin.ref), allow_missing=True)
        commit = sysroot.load_commit(new) if new else None
    except HybridosError:
        return None
    if new is None or new == base or commit is None:
        return None
    out = {"osname": stateroot, "checksum": new, "version": commit.version or "", "timestamp": commit.timestamp,
           "origin": merge.origin.refspec, "signatures": [], "gpg-enabled": False, "ref-has-new-commit": True,
           "update-sha256": merge.checksum, "advisories": []}
    try:
        new_pkgs = _packages_of_commit(sysroot, new)
        old_pkgs = packages_of_tree(sysroot.path / merge.relpath) if new_pkgs is not None else None
    except (HybridosError, OSError):
        new_pkgs = old_pkgs = None
    if new_pkgs is not None and old_pkgs is not None:
        out["rpm-diff"] = rpm_diff_json(old_pkgs, new_pkgs)
    return out


def rpm_diff_json(old, new) -> dict:
    """The cached update's ``rpm-diff`` as rpm-ostree's JSON: upgraded/downgraded ``[type, name, [evr, arch],
    [evr, arch]]``, removed/added ``[type, name, evr, arch]`` (type 0: a base package)."""
    from hybridos.packages.header import compare_evr

    a = {(n.name, n.arch): n for n in old}
    b = {(n.name, n.arch): n for n in new}
    up, down = [], []
    for k in sorted(a.keys() & b.keys()):
        c = compare_evr(a[k].evr, b[k].evr)
        entry = [0, a[k].name, [a[k].evr, a[k].arch], [b[k].evr, b[k].arch]]
        if c < 0:
            up.append(entry)
        elif c > 0:
            down.append(entry)
    return {"upgraded": up, "downgraded": down,
            "removed": [[0, a[k].name, a[k].evr, a[k].arch] for k in sorted(a.keys() - b.keys())],
            "added": [[0, b[k].name, b[k].evr, b[k].arch] for k in sorted(b.keys() - a.keys())]}


def diff_summary(diff: dict) -> str:
    parts = [f"{len(diff.get(k) or [])} {k}" for k in ("upgraded", "downgraded", "removed", "added")
             if diff.get(k)]
    return ", ".join(parts) or "no package changes"


def available_update_lines(update: dict) -> list[str]:
    """rpm-ostree's ``AvailableUpdate:`` block (keys right-aligned to len("SecAdvisories"))."""
    def row(key: str, value: str) -> str:
        return f"  {key:>{AVAILABLE_KEY_WIDTH}}: {value}"

    lines = ["AvailableUpdate:"]
    if update.get("ref-has-new-commit"):
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(update["timestamp"]))
        if update.get("version"):
            lines.append(row("Version", f"{update['version']} ({ts})"))
        else:
            lines.append(row("Timestamp", ts))
        lines.append(row("Commit", update["checksum"]))
    if "rpm-diff" in update:
        lines.append(row("Diff", diff_summary(update["rpm-diff"])))
    return lines


# -- status ------------------------------------------------------------------------------------------------


def _ago(seconds: float) -> str:
    """systemd's relative time as rpm-ostree prints it: "4h 32min ago", "22min ago", "5s ago"."""
    s = max(0, int(seconds))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        parts = [f"{days} day{'s' if days > 1 else ''}"] + ([f"{hours}h"] if hours else [])
    elif hours:
        parts = [f"{hours}h"] + ([f"{minutes}min"] if minutes else [])
    elif minutes:
        parts = [f"{minutes}min"]
    else:
        parts = [f"{secs}s"]
    return " ".join(parts) + " ago"


def timer_enabled(sysroot: Path) -> bool:
    for base in ("etc/systemd/system/timers.target.wants", "usr/lib/systemd/system/timers.target.wants"):
        if os.path.lexists(Path(sysroot) / base / TIMER_UNIT):
            return True
    return False


def timer_state(sysroot: Path, now: float | None = None) -> str:
    """The part after ``AutomaticUpdates: <policy>; `` in rpm-ostree's status."""
    record = read_record()
    now = time.time() if now is None else now
    if record is None:
        return f"{TIMER_UNIT}: no runs since boot" if timer_enabled(sysroot) else f"{TIMER_UNIT}: inactive"
    if record.get("result") == "running":
        pid = record.get("pid")
        alive = isinstance(pid, int) and os.path.exists(f"/proc/{pid}")
        if alive:
            return f"{SERVICE_UNIT}: running"
        return f"{SERVICE_UNIT}: last run failed"
    if record.get("result") == "failed":
        return f"{SERVICE_UNIT}: last run failed"
    return f"{TIMER_UNIT}: last run {_ago(now - float(record.get('finished') or record.get('started') or now))}"


def status_header(sysroot: Path, policy: str, *, verbose: bool = False) -> list[str]:
    if policy == "none":
        return ["AutomaticUpdates: disabled"] if verbose else []
    return [f"AutomaticUpdates: {policy}; {timer_state(sysroot)}"]


def _running(path: Path) -> bool:
    from hybridos.sysroot.mounts import is_booted_root

    return is_booted_root(path) or runstate.stand_in_booted(path)


def automatic_update_status(path: Path, data: dict, *, verbose: bool = False) -> tuple[list[str], list[str]]:
    """(the "AutomaticUpdates:" header lines, the "AvailableUpdate:" block) for ``status`` of the running
    system; fills in ``cached-update`` in ``data`` when a policy is set, as rpm-ostree does. Costs two stat
    calls when the sysroot is not the running system or no configuration file exists."""
    from hybridos.operations.daemonconf import config_path, load_settings

    if not _running(path) or (config_path(path) is None and not verbose):
        return [], []
    try:
        policy = load_settings(path).automatic_update_policy
    except HybridosError as exc:
        return [f"AutomaticUpdates: unknown ({exc.message})"], []
    header = status_header(path, policy, verbose=verbose)
    if policy == "none":
        return header, []
    from hybridos.sysroot.sysroot import Sysroot

    sysroot = Sysroot.load(path)
    booted = sysroot.booted.stateroot if sysroot.booted is not None else None
    update = cached_update_json(sysroot, booted)
    data["cached-update"] = update
    staged = sysroot.staged
    if update is None or (staged is not None and staged.checksum == update["checksum"]):
        return header, []
    return header, available_update_lines(update)


def with_automatic_updates(path: Path, data: dict, lines: list[str], *, verbose: bool = False) -> list[str]:
    """``status_text`` lines with the automatic update header after "State:" and the AvailableUpdate block."""
    header, available = automatic_update_status(path, data, verbose=verbose)
    return [*lines[:1], *header, *lines[1:], *(["", *available] if available else [])]
