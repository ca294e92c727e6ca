"""Layered requests survive upgrades of the base: re-applied from the package cache, inactive once the base has them."""

from __future__ import annotations

import dataclasses
import subprocess

from tests.helpers.httpserver import serve
from tests.helpers.rpms import File, make_repo
from tests.layering.conftest import deployment_dir, hyb, layer_specs, rpm_q, set_ref, status


def test_upgrade_relayers_then_request_becomes_inactive(host, layering_env):
    env = layering_env
    hyb(host, "install", "layered-tool")
    downloaded = [p for p, _, _ in env.server.requests if p.endswith(".rpm")]
    assert len(downloaded) == 2                          # layered-tool and libbar

    set_ref(host, "testos/stable", env.v2)
    env.server.requests.clear()
    hyb(host, "upgrade")
    new = status(host)[0]
    assert new["base-checksum"] == env.v2 and new["packages"] == ["layered-tool"]
    tree = deployment_dir(host, new)
    assert (tree / "usr/bin/layered-tool").exists() and (tree / "usr/share/unrequested").exists()
    assert rpm_q(tree, "layered-tool", "unrequested").returncode == 0
    assert not [p for p, _, _ in env.server.requests if p.endswith(".rpm")]    # all from the package cache
    # the rollback's base (v1, no ref points to it any more) is kept by rpm-ostree's base refs
    refs = subprocess.run(["ostree", "refs", f"--repo={host}/ostree/repo", "--list"], capture_output=True,
                          text=True, check=True).stdout.split()
    assert {r for r in refs if r.startswith("rpmostree/base/")} == {"rpmostree/base/0", "rpmostree/base/1"}
    subprocess.run(["ostree", "show", f"--repo={host}/ostree/repo", env.v1], check=True, capture_output=True)
    subprocess.run(["ostree", "fsck", f"--repo={host}/ostree/repo"], check=True, capture_output=True)

    # v3 ships layered-tool itself: the request stays, inactive, and nothing is layered
    set_ref(host, "testos/v3", env.v3)
    set_ref(host, "testos/stable", env.v3)
    out = hyb(host, "upgrade").stdout
    assert "Inactive requests: layered-tool" in out
    new = status(host)[0]
    assert new["requested-packages"] == ["layered-tool"] and new["packages"] == []
    assert new["base-checksum"] == env.v3
    assert "InactiveRequests" in hyb(host, "status").stdout
    assert rpm_q(deployment_dir(host, new), "layered-tool").stdout.strip() == "layered-tool-1.0-1.noarch"

    # installing what the base provides needs --allow-inactive
    hyb(host, "uninstall", "layered-tool")
    bad = hyb(host, "install", "libbar", check=False)
    assert bad.returncode != 0 and "already provided by base package libbar-1.0-1.noarch" in bad.stderr
    hyb(host, "install", "--allow-inactive", "libbar")
    assert status(host)[0]["requested-packages"] == ["libbar"]


def test_rebase_and_deploy_relayer(host, layering_env):
    env = layering_env
    hyb(host, "install", "layered-tool")
    hyb(host, "rebase", "testos/v2")
    new = status(host)[0]
    assert new["origin"] == "testos/v2" and new["base-checksum"] == env.v2 and new["packages"] == ["layered-tool"]
    assert (deployment_dir(host, new) / "usr/bin/layered-tool").exists()
    hyb(host, "deploy", "--skip-branch-check", env.v1)      # v1 is not in testos/v2's history
    new = status(host)[0]
    assert new["base-checksum"] == env.v1 and new["override-commit"] == env.v1
    assert (deployment_dir(host, new) / "usr/share/layered/post-ran").exists()


def test_download_only_then_cache_only(host, layering_env):
    env = layering_env
    out = hyb(host, "install", "--download-only", "layered-tool").stdout
    assert "not deployed" in out and len(status(host)) == 1
    assert len([p for p, _, _ in env.server.requests if p.endswith(".rpm")]) == 2
    env.server.requests.clear()
    hyb(host, "install", "--cache-only", "layered-tool")
    assert status(host)[0]["packages"] == ["layered-tool"]
    assert env.server.requests == []                         # neither metadata nor packages were fetched
    # nothing cached for this one: --cache-only says so
    bad = hyb(host, "install", "--cache-only", "clobber-initramfs", check=False)
    assert bad.returncode != 0 and "--cache-only" in bad.stderr
    assert "extras" in hyb(host, "refresh-md", "--force").stdout


def test_override_that_no_longer_applies_becomes_inactive(host, layering_env):
    env = layering_env
    hyb(host, "rebase", "testos/v2")
    hyb(host, "override", "remove", "unrequested")
    assert not (deployment_dir(host, status(host)[0]) / "usr/share/unrequested").exists()
    hyb(host, "deploy", "--skip-branch-check", env.v1)   # v1 has no 'unrequested': the removal is inactive
    new = status(host)[0]
    assert new["base-checksum"] == env.v1 and new["requested-base-removals"] == ["unrequested"]
    assert new["base-removals"] == [] and new["inactive-requests"] == ["override remove unrequested"]


def test_upgrade_with_the_same_base_updates_layered_packages(host, layering_env, tmp_path):
    """The base did not move but a layered package has a newer version: upgrade layers it (rpm-ostree does);
    once it is current, upgrade says so."""
    hyb(host, "install", "layered-tool")
    tool = next(p for p in layer_specs() if p.name == "layered-tool")
    newer = dataclasses.replace(tool, version="1.1", files=(
        File("/usr/bin/layered-tool", b"#!/bin/sh\necho layered 1.1\n", mode=0o755), *tool.files[1:]))
    updates = make_repo(tmp_path / "updates", [newer])
    with serve(updates.path) as srv:
        dep = status(host)[0]
        (deployment_dir(host, dep) / "etc/yum.repos.d/updates.repo").write_text(
            f"[updates]\nname=Updates\nbaseurl={srv.url}\ngpgcheck=0\n")
        out = hyb(host, "upgrade").stdout
        new = status(host)[0]
        assert new["base-checksum"] == layering_env.v1 and new["checksum"] != dep["checksum"]
        assert "Upgraded:\n  layered-tool-1.0-1.noarch -> layered-tool-1.1-1.noarch" in out
        tree = deployment_dir(host, new)
        assert rpm_q(tree, "layered-tool").stdout.strip() == "layered-tool-1.1-1.noarch"
        assert b"1.1" in (tree / "usr/bin/layered-tool").read_bytes()
        again = hyb(host, "upgrade", check=False)
        assert again.returncode == 0 and "layered packages are up to date" in again.stdout + again.stderr
        assert status(host)[0]["checksum"] == new["checksum"]
