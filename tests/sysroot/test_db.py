"""Packages of commits: `db list`, `db diff` and the package diff printed by `upgrade`."""

from __future__ import annotations

import hashlib
import json
import subprocess

from tests.conftest import require_tool, run_cli
from tests.helpers.rpms import File, Pkg, build_rpm
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


def test_db_formats_as_rpm_ostree(workdir, remote):
    """db diff --format=json (rpm-ostree's pkgdiff), --format=diff, db list REV PATTERN, db version, db -r."""
    def rpm(name, version, arch="x86_64"):
        return build_rpm(Pkg(name, version, arch=arch, files=(File(f"/usr/share/{name}", version.encode()),)),
                         workdir / f"rpms-{name}-{version}")

    foo1, bar, foo2, libfoo = rpm("foo", "1.0"), rpm("bar", "2.0"), rpm("foo", "1.1"), rpm("libfoo", "3.0", "noarch")
    v1 = remote.publish("1.0", rpms=[foo1, bar])
    v2 = remote.publish("2.0", rpms=[foo2, bar, libfoo])
    repo = workdir / "remote"
    r = run_cli("db", "diff", "--repo", str(repo), "--format=json", v1, v2)
    assert json.loads(r.stdout) == {
        "ostree-commit-from": v1, "ostree-commit-to": v2,
        "pkgdiff": [["foo", 2, {"PreviousPackage": ["foo", "1.0-1", "x86_64"],
                                "NewPackage": ["foo", "1.1-1", "x86_64"]}],
                    ["libfoo", 0, {"NewPackage": ["libfoo", "3.0-1", "noarch"]}]],
        "advisories": []}
    out = run_cli("db", "diff", "-r", str(repo), "-F", "diff", v1, v2).stdout.splitlines()
    assert out[2:] == ["!foo-1.0-1.x86_64", "=foo-1.1-1.x86_64", "+libfoo-3.0-1.noarch"]
    out = run_cli("db", "list", "-r", str(repo), "testos/stable", "FOO*", "*.noarch").stdout
    assert out == f"ostree commit: testos/stable ({v2})\n foo-1.1-1.x86_64\n libfoo-3.0-1.noarch\n"
    r = run_cli("db", "list", "-r", str(repo), "nosuch", check=False)
    assert r.returncode == 1 and "neither a ref nor a commit" in r.stderr
    out = run_cli("db", "version", "-r", str(repo), v1, "testos/stable").stdout.splitlines()
    expected = hashlib.sha256(b"bar-2.0-1.x86_64foo-1.0-1.x86_64").hexdigest()
    assert out[0] == f"ostree commit: {v1}" and out[1] == f"  rpmdbv is: {'2:' + expected:>66}"
    assert out[2] == f"ostree commit: testos/stable ({v2})" and out[3].split()[-1].startswith("3:")
