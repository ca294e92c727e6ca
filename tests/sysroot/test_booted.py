"""rpm-ostree's semantics around a booted deployment: pending, rollback, retention, cleanup -p.

A test cannot boot, so the booted deployment is named the way the kernel names it: by a command line whose
``ostree=`` is the deployment's bootlink (``Sysroot.load(path, cmdline=...)``), and by the inode of "/".
"""

from __future__ import annotations

from hybridos.operations.deploy import upgrade
from hybridos.sysroot.status import status_json, status_text
from hybridos.sysroot.sysroot import Sysroot, booted_by_inode
from hybridos.sysroot.transaction import Transaction
from hybridos.sysroot.upgrade import cleanup, rollback
from tests.sysroot.conftest import check_consistent, hyb


def _cmdline_of(sr, checksum: str) -> str:
    s = Sysroot.load(sr)
    dep = next(d for d in s.deployments if d.checksum == checksum)
    return "quiet " + s.entries[dep.name].options


def _booted(sr, checksum):
    return Sysroot.load(sr, cmdline=_cmdline_of(sr, checksum))


def test_booted_pending_rollback_and_retention(host):
    sr, remote, v1 = host
    v2 = remote.publish("2.0")
    hyb(sr, "upgrade")
    # booted into v1 with v2 pending
    s = _booted(sr, v1)
    assert s.booted is not None and s.booted.checksum == v1 and s.booted.index == 1
    assert Sysroot.load(sr).booted is None                      # without a command line: nothing is booted
    pending, roll = s.pending_and_rollback()
    assert pending.checksum == v2 and roll is None
    data = status_json(s)
    assert [d["booted"] for d in data["deployments"]] == [False, True]
    assert any(line.startswith("● ") for line in status_text(data))

    # rollback with a pending deployment makes the booted one the default again
    with Transaction(sr, "rollback") as tx:
        rollback(s, tx)
    assert [d.checksum for d in Sysroot.load(sr).deployments] == [v1, v2]

    # upgrading from the booted v1 keeps it (as the rollback) and drops the other one
    v3 = remote.publish("3.0")
    with Transaction(sr, "upgrade") as tx:
        upgrade(_booted(sr, v1), tx)
    assert [d.checksum for d in Sysroot.load(sr).deployments] == [v3, v1]

    # cleanup -p removes the pending v3; the booted deployment is never removed
    with Transaction(sr, "cleanup") as tx:
        cleanup(_booted(sr, v1), tx, pending=True, rollback_=True)
    assert [d.checksum for d in Sysroot.load(sr).deployments] == [v1]
    check_consistent(sr)


def test_booted_found_by_inode_when_the_bootlink_is_gone(host):
    sr, remote, v1 = host
    remote.publish("2.0")
    hyb(sr, "upgrade")
    s = Sysroot.load(sr)
    old = s.deployments[1]
    assert booted_by_inode(sr, s.deployments, sr / old.relpath).same(old)
    assert booted_by_inode(sr, s.deployments, sr) is None
    # a command line naming a bootlink of a boot version that was swapped away names nothing
    stale = _cmdline_of(sr, v1).replace(f"/ostree/boot.{s.bootversion}/", f"/ostree/boot.{1 - s.bootversion}/")
    assert Sysroot.load(sr, cmdline=stale).booted is None
