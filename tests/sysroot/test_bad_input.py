"""Bad input: a clear one-line error, and nothing changed in the sysroot."""

from __future__ import annotations

import pytest

from hybridos.sysroot.lock import SysrootLock
from tests.sysroot.conftest import STATEROOT, hyb, snapshot, status

#: what a failed pull may legitimately leave: downloaded objects and the remote-tracking ref
_PULL_STATE = ("ostree/repo/objects", "ostree/repo/refs/remotes", "ostree/repo/state", "ostree/repo/tmp")


def _state(sr, allow_pull: bool = False) -> dict:
    snap = snapshot(sr)
    if allow_pull:
        snap = {k: v for k, v in snap.items() if not k.startswith(_PULL_STATE)}
    return snap


def _fails(sr, *args, match: str, env=None):
    r = hyb(sr, *args, check=False, env=env)
    assert r.returncode not in (0, 77, 70), (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    first = r.stderr.strip().splitlines()[0]
    assert first.startswith("error: ") and match in first, r.stderr
    return r


@pytest.mark.parametrize("broken,match", [({"kernel": False}, "has no kernel"),
                                          ({"os_release": False}, "has no os-release")])
def test_commit_without_kernel_or_os_release(host, broken, match):
    sr, remote, _ = host
    before = _state(sr, allow_pull=True)
    remote.publish("2.0", **broken)
    _fails(sr, "upgrade", match=match)
    assert _state(sr, allow_pull=True) == before


def test_tree_with_etc_and_usr_etc(host):
    sr, remote, _ = host
    before = _state(sr, allow_pull=True)
    remote.publish("2.0", files={"etc/passwd": "root:x:0:0::/root:/bin/sh\n"})
    _fails(sr, "upgrade", match="both /etc and /usr/etc")
    assert _state(sr, allow_pull=True) == before


def test_missing_remote_and_unknown_ref(host):
    sr, _, _ = host
    before = _state(sr)
    _fails(sr, "rebase", "nosuch:testos/stable", match="nosuch")
    assert _state(sr) == before
    _fails(sr, "rebase", "origin:testos/absent", match="testos/absent")
    assert _state(sr) == before


def test_unknown_version(host):
    sr, remote, _ = host
    remote.publish("2.0")
    before = _state(sr, allow_pull=True)
    _fails(sr, "deploy", "9.9", match="version '9.9' not found")
    assert _state(sr, allow_pull=True) == before


INVALID_KARGS = [
    (("kargs", "--append", "a b"), "whitespace"),
    (("kargs", "--append", "=x"), "KEY"),
    (("kargs", "--append", "ostree=/x"), "managed by the sysroot"),
    (("kargs", "--delete", "absent"), "no kernel argument 'absent'"),
    (("kargs", "--replace", "rw=1=2"), "no kernel argument rw=1"),
    (("admin", "deploy", "--karg", 'x="y', "origin:testos/stable"), "unbalanced"),
]


def test_invalid_kargs(host):
    sr, _, _ = host
    before = _state(sr)
    for args, match in INVALID_KARGS:
        _fails(sr, *args, match=match)
        assert _state(sr) == before, args


def test_corrupt_origin(host):
    sr, remote, v1 = host
    remote.publish("2.0")
    origin = sr / f"ostree/deploy/{STATEROOT}/deploy/{v1}.0.origin"
    origin.write_bytes(b"[origin\nrefspec=\x00garbage")
    before = _state(sr)
    r = _fails(sr, "upgrade", match="corrupt origin file")
    assert str(origin) in r.stderr
    assert _state(sr) == before
    # status still shows the deployment and the problem, so it can be repaired or removed
    [d] = status(sr)
    assert "origin" not in d and "corrupt origin file" in d["origin-error"]


def test_locked_sysroot_names_the_holder(host):
    import os

    sr, _, _ = host
    with SysrootLock(sr):
        r = _fails(sr, "rollback", match="is locked by", env={"HYBRIDOS_LOCK_TIMEOUT": "0.2"})
        assert f"pid {os.getpid()}" in r.stderr
        assert "No active" not in hyb(sr, "status").stdout and "busy" in hyb(sr, "status").stdout


def test_not_a_sysroot_and_deploy_of_unknown_rev(tmp_path, host):
    _fails(tmp_path, "status", match="not an OSTree sysroot")
    sr, _, _ = host
    before = _state(sr)
    _fails(sr, "admin", "deploy", "origin:nope", match="neither a ref nor a commit")
    _fails(sr, "admin", "deploy", "--os", "nosuchos", "origin:testos/stable", match="stateroot 'nosuchos'")
    _fails(sr, "rollback", match="no rollback deployment")
    assert _state(sr) == before


def test_lock_is_per_sysroot_and_reports_itself(tmp_path, host):
    import os

    from hybridos.sysroot.lock import lock_holder

    sr, _, _ = host
    assert lock_holder(sr) is None
    with SysrootLock(sr):
        assert lock_holder(sr) == os.getpid()
        assert lock_holder(sr) == os.getpid()   # asking again must not drop the lock
        r = hyb(sr, "status", "--json")
        assert f"pid {os.getpid()}" in r.stdout
    assert lock_holder(sr) is None
    _fails(tmp_path, "rollback", match="not an OSTree sysroot")
