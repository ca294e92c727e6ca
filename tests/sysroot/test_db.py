"""Packages of commits: `db list`, `db diff` and the package diff printed by `upgrade`."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import require_tool
from tests.helpers.rpms import Pkg, build_rpm
from tests.sysroot.conftest import STATEROOT, hyb, ostree


def test_db_list_diff_and_upgrade_output(workdir, remote):
    require_tool("rpm")
    rpms = workdir / "rpms"
    rpms.mkdir()
    foo1, foo2 = build_rpm(Pkg("foo", "1.0"), rpms), build_rpm(Pkg("foo", "1.1"), rpms)
    bar, baz = build_rpm(Pkg("bar", "2.0"), rpms), build_rpm(Pkg("baz", "3.0", release="2"), rpms)
    v1 = remote.publish("1.0", rpms=[foo1, bar])
    sr = workdir / "sysroot"
    hyb(sr, "admin", "init-fs", str(sr))
    hyb(sr, "admin", "os-init", STATEROOT)
    ostree(f"--repo={sr}/ostree/repo", "remote", "add", "--no-gpg-verify", "origin", remote.url)
    ostree(f"--repo={sr}/ostree/repo", "pull", "origin", "testos/stable")
    hyb(sr, "admin", "deploy", "origin:testos/stable")

    listed = json.loads(hyb(sr, "db", "list", "--json").stdout)
    # the real rpm reads the same database out of the deployment
    dep = sr / f"ostree/deploy/{STATEROOT}/deploy/{v1}.0"
    real = subprocess.run(["rpm", f"--dbpath={dep}/usr/share/rpm", "-qa", "--qf", "%{NEVRA}\\n"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert listed == {v1: sorted(real)} and len(real) == 2

    v2 = remote.publish("2.0", rpms=[foo2, baz])
    out = hyb(sr, "upgrade").stdout
    assert "Upgraded:\n  foo-1.0-1.x86_64 -> foo-1.1-1.x86_64" in out
    assert "Removed:\n  bar-2.0-1.x86_64" in out and "Added:\n  baz-3.0-2.x86_64" in out

    diff = json.loads(hyb(sr, "db", "diff", "--json").stdout)
    assert diff == {"from": v1, "to": v2, "added": ["baz-3.0-2.x86_64"], "removed": ["bar-2.0-1.x86_64"],
                    "upgraded": [["foo-1.0-1.x86_64", "foo-1.1-1.x86_64"]], "downgraded": []}
    back = json.loads(hyb(sr, "db", "diff", "--json", v2, v1).stdout)
    assert back["downgraded"] == [["foo-1.1-1.x86_64", "foo-1.0-1.x86_64"]]
    text = hyb(sr, "db", "diff").stdout
    assert "foo-1.0-1.x86_64 -> foo-1.1-1.x86_64" in text
    r = hyb(sr, "db", "list", "nosuchref", check=False)
    assert r.returncode == 1 and "neither a ref nor a commit" in r.stderr
