"""rpm-ostree origin keys hybridos does not act on survive every upgrade byte for byte; a container origin is
shown with rpm-ostree's keys, not as "corrupt". (``requested-local-fileoverride`` and ``initramfs-etc`` are acted on
now: tests/layering/test_parity_options.py, tests/layering/test_initramfs_etc.py.)"""

from __future__ import annotations

import json

from tests.helpers.status_schema import check_deployment
from tests.sysroot.conftest import STATEROOT, hyb, status

EXTRA = {
    ("origin", "custom-url"): "https://example.org/build/42",
    ("origin", "custom-description"): "Built by CI; see the URL",
    ("origin", "unconfigured-state"): "Set up a subscription first",
    ("overrides", "replace"): "repo=updates,kernel,kernel-core;",
    ("vendor-x", "odd key"): "spaces,  \\\\ backslashes ; and ä are kept",
}


def _origin_path(sr, dep):
    return sr / f"ostree/deploy/{STATEROOT}/deploy/{dep['checksum']}.{dep['serial']}.origin"


def _lines(text: str) -> set[str]:
    return {line for line in text.splitlines() if "=" in line}


def test_unknown_and_unhandled_origin_keys_survive_upgrades(host):
    sr, remote, v1 = host
    path = _origin_path(sr, status(sr)[0])
    text = path.read_text()
    groups: dict[str, list[str]] = {}
    for (g, k), v in EXTRA.items():
        groups.setdefault(g, []).append(f"{k}={v}")
    for g, lines in groups.items():
        if f"[{g}]" in text:
            text = text.replace(f"[{g}]\n", f"[{g}]\n" + "\n".join(lines) + "\n", 1)
        else:
            text += f"\n[{g}]\n" + "\n".join(lines) + "\n"
    path.write_text(text)
    wanted = {f"{k}={v}" for (_g, k), v in EXTRA.items()}
    for version in ("2.0", "3.0"):
        remote.publish(version)
        hyb(sr, "upgrade")
        new = _origin_path(sr, status(sr)[0]).read_text()
        assert wanted <= _lines(new), wanted - _lines(new)
    hyb(sr, "kargs", "--append", "quiet")
    assert wanted <= _lines(_origin_path(sr, status(sr)[0]).read_text())
    # and status reads the ones rpm-ostree shows
    d = status(sr)[0]
    check_deployment(d, present=("custom-origin", "requested-base-remote-replacements"))
    assert d["custom-origin"] == ["https://example.org/build/42", "Built by CI; see the URL"]
    assert d["requested-base-remote-replacements"] == [["repo=updates", ["kernel", "kernel-core"]]]


def test_container_origin_is_shown_as_rpm_ostree_shows_it_not_corrupt(host):
    sr, _remote, v1 = host
    path = _origin_path(sr, status(sr)[0])
    ref = "ostree-unverified-registry:quay.io/fedora/fedora-coreos:stable"
    path.write_text(f"[origin]\ncontainer-image-reference={ref}\n")
    (d,) = json.loads(hyb(sr, "status", "--json").stdout)["deployments"]
    check_deployment(d, present=("container-image-reference",), absent=("origin", "origin-error"))
    assert d["container-image-reference"] == ref
    assert f"\n  {ref}\n" in hyb(sr, "status").stdout          # rpm-ostree: the reference as the header
