"""override remove / replace / reset and reset: explicit changes of base packages."""

from __future__ import annotations

from tests.helpers.status_schema import check_deployment
from tests.layering.conftest import deployment_dir, hyb, rpm_q, status


def test_override_remove_then_reset(host, layering_env):
    env = layering_env
    # a base package others depend on (hello needs libfoo) cannot go alone
    bad = hyb(host, "override", "remove", "libfoo", check=False)
    assert bad.returncode != 0 and "libfoo" in bad.stderr and "locked" in bad.stderr, bad.stderr
    missing = hyb(host, "override", "remove", "no-such-package", check=False)
    assert missing.returncode != 0 and "not a package of the base image" in missing.stderr
    assert len(status(host)) == 1
    hyb(host, "override", "remove", "hello")
    new = status(host)[0]
    assert new["requested-base-removals"] == ["hello"]
    assert new["base-removals"] == [["hello", "0", "1.0", "1", "x86_64"]]         # rpm-ostree's NEVRA tuples
    check_deployment(new, present=("base-checksum", "layered-commit-meta"))
    tree = deployment_dir(host, new)
    assert not (tree / "usr/bin/hello").exists() and not (tree / "usr/etc/hello.conf").exists()
    assert rpm_q(tree, "hello").returncode != 0 and rpm_q(tree, "libfoo").returncode == 0
    assert "RemovedBasePackages: hello" in hyb(host, "status").stdout

    hyb(host, "override", "reset", "hello")
    new = status(host)[0]
    assert new["checksum"] == env.v1 and new["requested-base-removals"] == []
    assert (deployment_dir(host, new) / "usr/bin/hello").exists()


def test_override_replace_with_local_rpm_then_reset_all(host, layering_env):
    rpm = layering_env.rpmdir / "hello-2.0-1.x86_64.rpm"
    hyb(host, "install", "layered-tool")
    hyb(host, "override", "replace", str(rpm))
    new = status(host)[0]
    assert new["requested-base-local-replacements"] == ["hello-2.0-1.x86_64"]      # NEVRAs, as rpm-ostree
    assert new["base-local-replacements"] == [[["hello", "0", "2.0", "1", "x86_64"],
                                               ["hello", "0", "1.0", "1", "x86_64"]]]    # (new, old)
    check_deployment(new)
    assert new["packages"] == ["layered-tool"]                     # the layered package stays
    tree = deployment_dir(host, new)
    assert (tree / "usr/bin/hello").read_text() == "#!/bin/sh\necho hello two\n"
    assert rpm_q(tree, "hello").stdout.strip() == "hello-2.0-1.x86_64"
    assert (tree / "usr/bin/layered-tool").exists()
    # replacing a package the base does not have is refused
    other = layering_env.host_repo.rpms["clobber"]
    bad = hyb(host, "override", "replace", str(other), check=False)
    assert bad.returncode != 0 and "not a base package" in bad.stderr

    hyb(host, "reset")
    new = status(host)[0]
    assert new["checksum"] == layering_env.v1
    assert new["requested-packages"] == [] and new["requested-base-local-replacements"] == []
    assert rpm_q(deployment_dir(host, new), "hello").stdout.strip() == "hello-1.0-1.x86_64"
    assert not list((host / "ostree/repo/extensions/hybridos/local-rpms").glob("*.rpm")) or \
        any(d["requested-base-local-replacements"] for d in status(host))


def test_install_local_rpm(host, layering_env):
    rpm = layering_env.host_repo.rpms["libbar"]
    hyb(host, "install", str(rpm))
    new = status(host)[0]
    assert new["requested-local-packages"] == ["libbar-1.0-1.noarch"]
    check_deployment(new)
    assert rpm_q(deployment_dir(host, new), "libbar").returncode == 0
    hyb(host, "uninstall", "libbar")
    assert status(host)[0]["checksum"] == layering_env.v1
