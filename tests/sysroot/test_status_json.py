"""``status --json``: rpm-ostree's keys and shapes; ``--jsonpath``, ``--pending-exit-77``, ``-v``."""

from __future__ import annotations

import json

from tests.helpers.status_schema import check_deployment, check_status
from tests.sysroot.conftest import hyb

LAYERED_ONLY = ("base-checksum", "base-timestamp", "layered-commit-meta")


def test_status_json_has_rpm_ostree_keys_and_shapes(host):
    sr, remote, v1 = host
    top = json.loads(hyb(sr, "status", "--json").stdout)
    check_status(top)
    (d,) = top["deployments"]
    check_deployment(d, present=("version", "origin", "gpg-enabled"),
                     absent=(*LAYERED_ONLY, "pending-base-checksum", "initramfs-args", "custom-origin"))
    assert d["version"] == "1.0" and d["origin"] == "origin:testos/stable" and d["gpg-enabled"] is False
    assert d["base-removals"] == [] and d["base-commit-meta"]["version"] == "1.0"
    # the ref moved (downloaded, not deployed): pending-base-*
    v2 = remote.publish("2.0")
    hyb(sr, "upgrade", "--download-only")
    (d,) = json.loads(hyb(sr, "status", "--json").stdout)["deployments"]
    check_deployment(d, present=("pending-base-checksum", "pending-base-version", "pending-base-timestamp"))
    assert d["pending-base-checksum"] == v2 and d["pending-base-version"] == "2.0"


def test_jsonpath_pending_exit_77_and_verbose(host):
    sr, remote, v1 = host
    out = hyb(sr, "status", "--jsonpath", "$.deployments[0].checksum").stdout
    assert json.loads(out) == [v1]
    assert json.loads(hyb(sr, "status", "-J", "$.deployments[*].version").stdout) == ["1.0"]
    assert json.loads(hyb(sr, "status", "-J", "$..osname").stdout) == ["testos"]
    r = hyb(sr, "status", "--json", "--jsonpath", "$", check=False)
    assert r.returncode == 1 and r.stderr == "error: Cannot specify both --json and --jsonpath\n"
    r = hyb(sr, "status", "-J", "$.deployments[", check=False)
    assert r.returncode == 1 and r.stderr.startswith("error: While compiling jsonpath: ")
    assert hyb(sr, "status", "--pending-exit-77").returncode == 0      # one deployment: nothing pending
    v2 = remote.publish("2.0")
    hyb(sr, "upgrade")
    # nothing is booted in a test sysroot; rpm-ostree exits 77 when the first deployment is not the booted one
    r = hyb(sr, "status", "--pending-exit-77", check=False)
    assert r.returncode == 77 and v2 in r.stdout
    assert "Deployment:" in hyb(sr, "status", "-v").stdout


def test_status_text_has_rpm_ostree_layout(host):
    import time

    sr, remote, v1 = host
    v2 = remote.publish("2.0")
    hyb(sr, "upgrade")
    deps = json.loads(hyb(sr, "status", "--json").stdout)["deployments"]

    def ts(d):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(d["timestamp"]))

    k = 23
    assert hyb(sr, "status").stdout == (
        "State: idle\nDeployments:\n"
        f"  origin:testos/stable\n{'Version':>{k + 2}}: 2.0 ({ts(deps[0])})\n{'Commit':>{k + 2}}: {v2}\n"
        "\n"
        f"  origin:testos/stable\n{'Version':>{k + 2}}: 1.0 ({ts(deps[1])})\n{'Commit':>{k + 2}}: {v1}\n")
