"""install / uninstall: a new deployment with the package's files, rpmdb entry and %post effects."""

from __future__ import annotations

import subprocess

from tests.layering.conftest import deployment_dir, hyb, rpm_q, status


def test_install_makes_a_new_deployment_and_keeps_the_old(host, layering_env):
    env = layering_env
    out = hyb(host, "install", "layered-tool").stdout
    assert "layered-tool-1.0-1.noarch" in out and "libbar-1.0-1.noarch" in out
    assert "layered-tool post says hi" in out                           # the scriptlet's output is shown
    new, old = status(host)
    assert old["checksum"] == env.v1 and new["base-checksum"] == env.v1 and new["checksum"] != env.v1
    assert new["requested-packages"] == ["layered-tool"] and new["packages"] == ["layered-tool"]
    tree, old_tree = deployment_dir(host, new), deployment_dir(host, old)
    assert (tree / "usr/bin/layered-tool").read_bytes() == b"#!/bin/sh\necho layered\n"
    assert (tree / "usr/lib/libbar.so.1").exists()
    assert (tree / "usr/share/layered/post-ran").read_text() == "layered post ran with 1\n"   # %post ran, $1=1
    assert (tree / "etc/layered.conf").read_text() == "layered=1\n" and (tree / "usr/etc/layered.conf").exists()
    assert "/var/lib/layered" in (tree / "usr/lib/tmpfiles.d/hybridos-layered-var.conf").read_text()
    q = rpm_q(tree, "layered-tool", "libbar", "hello")
    assert q.returncode == 0, q.stdout + q.stderr
    assert q.stdout.split() == ["layered-tool-1.0-1.noarch", "libbar-1.0-1.noarch", "hello-1.0-1.x86_64"]
    # the previous deployment is untouched
    assert not (old_tree / "usr/bin/layered-tool").exists()
    assert rpm_q(old_tree, "layered-tool").returncode != 0
    assert "layered-tool" not in (old_tree / "etc").iterdir().__str__()
    origin = (host / f"ostree/deploy/testos/deploy/{new['checksum']}.{new['serial']}.origin").read_text()
    assert "baserefspec=testos/stable" in origin and "requested=layered-tool;" in origin
    # the real ostree finds every object intact (scriptlets did not write into hardlinked objects)
    subprocess.run(["ostree", "fsck", f"--repo={host}/ostree/repo"], check=True, capture_output=True)
    # and the real `ostree admin` reads the new boot configuration: the layered commit first, the base after it
    text = subprocess.run(["ostree", "admin", "status", f"--sysroot={host}"], check=True, capture_output=True,
                          text=True).stdout
    assert text.index(new["checksum"]) < text.index(env.v1)

    # asking again: an error, or nothing with --idempotent / 77 with --unchanged-exit-77
    again = hyb(host, "install", "layered-tool", check=False)
    assert again.returncode == 1 and "already requested" in again.stderr          # rpm-ostree exits 1 too
    assert hyb(host, "install", "--idempotent", "--unchanged-exit-77", "layered-tool", check=False).returncode == 77
    assert len(status(host)) == 2


def test_uninstall_returns_to_the_base(host, layering_env):
    hyb(host, "install", "layered-tool")
    bad = hyb(host, "uninstall", "hello", check=False)
    assert bad.returncode != 0 and "not a layered package" in bad.stderr
    hyb(host, "uninstall", "layered-tool")
    deps = status(host)
    assert deps[0]["checksum"] == layering_env.v1 and deps[0]["requested-packages"] == []
    assert not (deployment_dir(host, deps[0]) / "usr/bin/layered-tool").exists()
    origin = (host / f"ostree/deploy/testos/deploy/{deps[0]['checksum']}.{deps[0]['serial']}.origin").read_text()
    assert "refspec=testos/stable" in origin and "baserefspec" not in origin
    assert (deployment_dir(host, deps[1]) / "usr/bin/layered-tool").exists()    # the rollback keeps it
