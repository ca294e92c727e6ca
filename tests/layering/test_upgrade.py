"""Layered requests survive upgrades of the base: re-applied from the package cache, inactive once the base has them."""

from __future__ import annotations

from tests.layering.conftest import deployment_dir, hyb, rpm_q, set_ref, status


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
