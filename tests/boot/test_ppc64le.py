"""Real GRUB ieee1275 (Debian's powerpc-ieee1275 build, from grub-ieee1275-bin:ppc64el) on
``qemu-system-ppc64 -M pseries`` with SLOF boots a ppc64le deployment (ELF vmlinux), /boot on /. TCG."""

from __future__ import annotations

import pytest

from tests.boot.images import SETUPS, grub_ieee1275
from tests.boot.kernels import debian_package_tree
from tests.boot.qemu import boot
from tests.boot.sysroot import bls_entries, deploy_sysroot, write_var_data

pytestmark = [pytest.mark.slow, pytest.mark.tool("grub-mkimage", "mkfs.ext4", "sfdisk", "qemu-system-ppc64")]
KARGS = ["root=LABEL=root", "rw", "console=hvc0", "panic=10", "hybridos.fail-delay=1"]


def test_grub_ieee1275_on_pseries_boots_the_deployment(tmp_path, ppc64le_composed):
    grub_lib = debian_package_tree("grub-ieee1275-bin:ppc64el") / "usr/lib/grub/powerpc-ieee1275"
    root = tmp_path / "sysroot"
    prepare, options = SETUPS["grub-ieee1275"]
    deploy_sysroot(root, ppc64le_composed, KARGS, options=options, prepare=prepare)
    write_var_data(root, "ppc-data")
    cfg = (root / "boot/grub/grub.cfg").read_text()
    entry = bls_entries(root)[0]
    assert f"\tlinux {entry['linux']} " in cfg and "linux16" not in cfg      # plain linux, as ieee1275 has
    spec = grub_ieee1275(tmp_path, root, grub_lib)
    result = boot(spec.machine, spec.disks, tmp_path, timeout=900)
    result.expect(r"TestOS 1", "GRUB's menu")
    result.expect(r"HYBRIDOS-BOOT-MARKER", "the deployment's marker")
    assert result.markers() == [{"version": "1", "ostree-booted": "yes", "usr": "ro", "var": "ppc-data",
                                 "etc": "from-image-1"}], result.tail()
