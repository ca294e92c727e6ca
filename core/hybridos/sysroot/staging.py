"""Staged deployments (libostree's ``ostree_sysroot_stage_tree_with_options`` and ``finalize-staged``).

Staging writes the deployment directory (checkout, a fresh ``/etc`` from ``usr/etc``, the origin) and records it
in ``/run/ostree/staged-deployment``; no boot entry changes. At shutdown ``finalize-staged`` merges the
booted deployment's ``/etc`` *as it is then* into the staged one and writes the boot configuration with the
usual atomic swap. The run directory is a tmpfs: a crash or power loss before finalization forgets the state
file, the old default boots, and the next cleanup removes the unlisted directory. The state file is removed
before the /etc merge, so an interrupted finalization is never retried half-way; a failed one leaves its
message in ``boot/ostree/finalize-failure.stamp`` for the next boot (``admin boot-complete``, ``status``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from hybridos.errors import HybridosError, SysrootError
from hybridos.sysroot import etcmerge, runstate, stagedstate
from hybridos.sysroot.bls import split_args
from hybridos.sysroot.deployment import Deployment
from hybridos.sysroot.sysroot import Sysroot
from hybridos.sysroot.transaction import Transaction
from hybridos.util.atomic import atomic_write

#: journald's MESSAGE_ID of libostree's "Finalizing staged deployment" (rpm-ostree status looks for it)
FINALIZING_MESSAGE_ID = "e8646cd63dff4625b77909a8e7a40994"
NOTHING_STAGED = "No deployment staged for finalization"
LOCKED = "Not finalizing; deployment is locked for finalization"


def _ref(d: Deployment) -> stagedstate.DeploymentRef:
    return stagedstate.DeploymentRef(d.stateroot, d.checksum, d.serial, d.bootcsum)


def record_staged(sysroot: Sysroot, new: Deployment, merge: Deployment | None, tx: Transaction, *,
                  locked: bool = False) -> Sysroot:
    """Record a written deployment directory as the staged deployment; returns the reloaded sysroot."""
    from hybridos.sysroot.cleanup import remove_tree

    root = sysroot.path
    previous = sysroot.staged
    with tx.step("stage"):
        # a deployment ref after those of the listed deployments: a repository prune before finalization keeps
        # the staged commit (the next cleanup drops the ref when the staged deployment is gone)
        listed = [d for d in sysroot.deployments if not d.staged]
        sysroot.repo.set_ref(f"ostree/{sysroot.bootversion}/{sysroot.subbootversion}/{len(listed)}", new.checksum)
        tx.commit_point()
        stagedstate.write_state(stagedstate.StagedState(
            target=_ref(new), merge=_ref(merge) if merge is not None else None,
            kargs=tuple(split_args(new.kargs)), locked=locked))
        if previous is not None and not previous.same(new):
            with contextlib.suppress(OSError):
                remove_tree(root / previous.relpath)
                (root / previous.origin_relpath).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            os.utime(root / "ostree/deploy")   # libostree's mtime bump: watchers reload
    return Sysroot.load(root)


def _journal(message: str, **fields: str) -> None:
    """Send a structured message to journald when it listens (best effort, as libostree's ot_journal_send)."""
    import socket

    sock_path = "/run/systemd/journal/socket"
    if runstate.run_dir() != Path("/run") or not os.path.exists(sock_path):
        return
    lines = [f"MESSAGE={message}", "SYSLOG_IDENTIFIER=hybridos", "PRIORITY=6",
             *(f"{k}={v}" for k, v in fields.items())]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto("\n".join(lines).encode() + b"\n", sock_path)


def failure_stamp(root: Path) -> Path:
    return Path(root) / "boot" / runstate.FINALIZE_FAILURE


def finalize_staged(sysroot: Sysroot, tx: Transaction) -> list[str]:
    """``ostree admin finalize-staged``: make the staged deployment the default with the booted /etc merged."""
    staged = sysroot.staged
    if staged is None:
        return [NOTHING_STAGED]
    if staged.finalization_locked:
        return [LOCKED]
    try:
        return _finalize(sysroot, staged, tx)
    except (HybridosError, OSError) as exc:
        text = getattr(exc, "message", None) or str(exc)
        with contextlib.suppress(OSError):
            atomic_write(failure_stamp(sysroot.path), text.encode())
        raise


def _finalize(sysroot: Sysroot, staged: Deployment, tx: Transaction) -> list[str]:
    from hybridos.sysroot.deploy import select_kept, write_deployments

    root = sysroot.path
    state = sysroot.staged_state
    _journal("Finalizing staged deployment", MESSAGE_ID=FINALIZING_MESSAGE_ID, OSTREE_OSNAME=staged.stateroot,
             OSTREE_CHECKSUM=staged.checksum, OSTREE_DEPLOYSERIAL=str(staged.serial))
    tx.message(f"Finalizing staged deployment {staged.name}")
    merge = None
    if state is not None and state.merge is not None:
        m = state.merge
        merge = next((d for d in sysroot.deployments if not d.staged
                      and (d.stateroot, d.checksum, d.serial) == (m.osname, m.checksum, m.serial)), None)
        if merge is None:
            raise SysrootError(f"Failed to find merge deployment {m.name} for staged")
    # forget the staged state first: an interruption from here on is never retried half-way
    stagedstate.remove_state()
    dep_dir = root / staged.relpath
    notes = []
    with tx.step("etc-merge"):
        if not os.path.lexists(dep_dir / "etc"):
            etcmerge.populate_etc(dep_dir)
        if merge is not None:
            merge_dir = root / merge.relpath
            diff = etcmerge.diff_etc(merge_dir / "usr/etc", merge_dir / "etc")
            etcmerge.apply_etc_diff(diff, merge_dir / "etc", dep_dir / "etc")
            tx.message(f"Copying /etc changes: {diff.summary()}")
        (dep_dir / "etc/.updated").unlink(missing_ok=True)
        (root / "ostree/deploy" / staged.stateroot / "var/.updated").unlink(missing_ok=True)
    new = staged.replace(staged=False, finalization_locked=False)
    unstaged = Sysroot(sysroot.path, sysroot.bootversion, sysroot.subbootversion,
                       tuple(d for d in sysroot.deployments if not d.staged), sysroot.booted, sysroot.entries)
    kept = select_kept(unstaged, new, merge)
    # as libostree's NO_CLEAN: no repository prune on the shutdown path, and the deployment that leaves the list
    # is removed by the next cleanup (any deployment, `cleanup -b`), not while the machine waits to power off
    write_deployments(unstaged, kept, tx, prune=False, remove_checkouts=False)
    return [*notes, f"Finalized {staged.stateroot} {staged.name}"]


def boot_complete(root: Path) -> None:
    """``ostree admin boot-complete``: report (once) a finalization that failed on the previous boot."""
    stamp = failure_stamp(root)
    try:
        text = stamp.read_text(errors="replace")
    except FileNotFoundError:
        return
    stamp.unlink(missing_ok=True)
    raise SysrootError(f"finalize-staged failed on previous boot: {' '.join(text.split())}")


def lock_finalization(sysroot: Sysroot, locked: bool) -> Deployment:
    """Lock or unlock the staged deployment (``ostree admin lock-finalization``)."""
    if sysroot.staged is None:
        raise SysrootError("no staged deployment")
    stagedstate.set_locked(locked)
    return sysroot.staged.replace(finalization_locked=locked)


def finalize_deployment(sysroot: Sysroot, checksum: str | None, *, allow_unlocked: bool = False,
                        stateroot: str | None = None) -> Deployment:
    """rpm-ostree ``finalize-deployment``: unlock the staged deployment whose commit (or base commit) is
    ``checksum`` (None: any, ``--allow-missing-checksum``) so shutdown finalizes it; the caller reboots."""
    from hybridos.sysroot.upgrade import merge_base_commit

    staged = sysroot.staged
    if staged is None:
        raise SysrootError("No staged deployment found")
    want = stateroot or (sysroot.booted.stateroot if sysroot.booted is not None else staged.stateroot)
    if staged.stateroot != want:
        raise SysrootError(f"Staged deployment is for stateroot {staged.stateroot!r}, not {want!r}")
    if checksum is not None and checksum not in (staged.checksum, merge_base_commit(sysroot, staged)):
        raise SysrootError(f"Expected staged base checksum {checksum}, but found "
                           f"{merge_base_commit(sysroot, staged)}")
    if not staged.finalization_locked:
        if not allow_unlocked:
            raise SysrootError("Staged deployment already unlocked",
                               hint="use --allow-unlocked to reboot into it anyway")
        return staged
    return lock_finalization(sysroot, False)
