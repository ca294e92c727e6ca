"""The pure parts: how a command changes the origin's requests, and which .repo files a host uses."""

from __future__ import annotations

import pytest

from hybridos.arch import Architecture
from hybridos.errors import HybridosError, NotFoundError, UsageError
from hybridos.layering.repos import host_repo_configs
from hybridos.layering.requests import Change, LocalPackage, Requests, apply
from hybridos.packages.model import Nevra
from hybridos.sysroot.origin import Origin, parse_origin, serialize_origin

SHA = "ab" * 32
LOCAL = LocalPackage(SHA, Nevra.parse("foo-1.0-1.x86_64"))


def test_origin_round_trip_with_rpm_ostree_keys():
    reqs = apply(Requests(), Change(install=("vim", "htop"), install_local=(LOCAL,)))
    reqs = apply(reqs, Change(remove=("nano",), initramfs=True, initramfs_args=("--add", "x")))
    origin = reqs.to_origin(Origin(refspec="fedora:fedora/x86_64/coreos/stable"))
    text = serialize_origin(origin).decode()
    assert "baserefspec=fedora:fedora/x86_64/coreos/stable" in text
    assert "requested=htop;vim;" in text and f"requested-local={SHA}:foo-1.0-1.x86_64;" in text
    assert "remove=nano;" in text and "regenerate-initramfs=true" in text and "initramfs-args=--add;x;" in text
    assert Requests.from_origin(parse_origin(text.encode())) == Requests(
        ("htop", "vim"), (LOCAL,), ("nano",), (), True, ("--add", "x"))


def test_changes_and_their_refusals():
    reqs = apply(Requests(), Change(install=("vim",)))
    with pytest.raises(UsageError, match="already requested"):
        apply(reqs, Change(install=("vim",)))
    assert apply(reqs, Change(install=("vim",), idempotent=True)) == reqs
    with pytest.raises(NotFoundError, match="not a layered package"):
        apply(reqs, Change(uninstall=("emacs",)))
    assert apply(reqs, Change(uninstall=("vim",))).empty
    local = apply(Requests(), Change(install_local=(LOCAL,)))
    assert apply(local, Change(uninstall=("foo",))).empty                       # by name
    assert apply(local, Change(uninstall=("foo-1.0-1.x86_64",))).empty          # by NEVRA
    removed = apply(Requests(), Change(remove=("nano",)))
    with pytest.raises(UsageError, match="reset the override first"):
        apply(removed, Change(install=("nano",)))
    assert apply(removed, Change(reset_overrides=("nano",))).empty
    replaced = apply(Requests(), Change(replace_local=(LOCAL,)))
    newer = LocalPackage("cd" * 32, Nevra.parse("foo-2.0-1.x86_64"))
    assert apply(replaced, Change(replace_local=(newer,))).local_replacements == (newer,)
    assert apply(replaced, Change(reset_all_overrides=True)).empty
    assert apply(apply(reqs, Change(initramfs=True)), Change(reset_all=True)).empty
    with pytest.raises(UsageError, match="not enabled"):
        apply(Requests(), Change(initramfs=False))
    with pytest.raises(UsageError, match="SHA256:NEVRA"):
        LocalPackage.parse("nothex:foo-1-1.x86_64")


def test_host_repos_from_the_deployment_and_the_sysroot_config(tmp_path):
    sysroot, dep = tmp_path / "sysroot", tmp_path / "sysroot/ostree/deploy/os/deploy/x.0"
    (dep / "etc/yum.repos.d").mkdir(parents=True)
    (dep / "usr/lib").mkdir(parents=True)
    (dep / "usr/lib/os-release").write_text("ID=os\nVERSION_ID=41\n")
    (dep / "etc/yum.repos.d/a.repo").write_text(
        "[main]\nbaseurl=http://127.0.0.1/$releasever/$basearch/\n[off]\nbaseurl=http://x/\nenabled=0\n")
    (sysroot / "ostree/repo").mkdir(parents=True)
    (sysroot / "ostree/repo/config").write_text("[core]\nmode=bare\n\n[hybridos]\nrepos-dir=etc/extra.repos.d\n")
    (sysroot / "etc/extra.repos.d").mkdir(parents=True)
    (sysroot / "etc/extra.repos.d/b.repo").write_text("[extra]\nbaseurl=file:///srv/extra\n[main]\nbaseurl=http://dup/\n")
    repos = host_repo_configs(sysroot, dep, Architecture.AARCH64)
    assert [(r.id, r.baseurls) for r in repos] == [("main", ("http://127.0.0.1/41/aarch64/",)),
                                                   ("extra", ("file:///srv/extra",))]
    (dep / "etc/yum.repos.d/bad.repo").write_text("[broken\n")
    with pytest.raises(HybridosError, match="bad.repo:1"):
        host_repo_configs(sysroot, dep, Architecture.X86_64)
