"""depmod at compose: real kernel modules (from Debian's kernel package) get modules.dep and modules.softdep."""

from __future__ import annotations

import shutil

import pytest

from hybridos.compose import depmod as depmod_mod
from hybridos.compose.depmod import kernel_module_dirs, run_depmod
from hybridos.errors import PackageError
from tests.conftest import require_root, require_tool

KEEP = ("kernel/fs/ext4", "kernel/fs/jbd2", "kernel/fs/mbcache.ko", "kernel/lib/crc16.ko",
        "kernel/crypto/crc32c_generic.ko", "kernel/drivers/block/virtio_blk.ko", "kernel/drivers/virtio")


@pytest.fixture(scope="module")
def debian_modules():
    require_root()
    require_tool("apt-get", "dpkg-deb", "depmod")
    from tests.boot.kernels import debian_kernel

    return debian_kernel("amd64")


def _tree(tmp_path, kernel):
    tree = tmp_path / "tree"
    moddir = tree / "usr/lib/modules" / kernel.kver
    moddir.mkdir(parents=True)
    (tree / "lib").symlink_to("/usr/lib")          # absolute, as some trees have: must not lead to the host
    shutil.copy(kernel.vmlinuz, moddir / "vmlinuz")
    for rel in KEEP:
        src = kernel.modules / rel
        if src.is_dir():
            shutil.copytree(src, moddir / rel)
        else:
            (moddir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, moddir / rel)
    for index in ("modules.order", "modules.builtin"):
        shutil.copy(kernel.modules / index, moddir / index)
    return tree, moddir


@pytest.mark.slow
def test_depmod_indexes_every_kernel_with_modules(tmp_path, debian_modules):
    tree, moddir = _tree(tmp_path, debian_modules)
    (tree / "usr/lib/modules/5.0-nomodules").mkdir()              # no modules: nothing to index
    assert not (moddir / "modules.dep").exists()                  # Debian's package ships none
    assert list(kernel_module_dirs(tree)) == [debian_modules.kver]
    assert run_depmod(tree) == [debian_modules.kver]
    dep = (moddir / "modules.dep").read_text()
    assert "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko" in dep
    assert "softdep ext4 pre: crypto-crc32c" in (moddir / "modules.softdep").read_text()
    assert "alias crypto-crc32c crc32c_generic" in (moddir / "modules.alias").read_text()
    assert not (tree / "usr/lib/modules/5.0-nomodules/modules.dep").exists()


@pytest.mark.slow
def test_missing_depmod_is_a_clear_error(tmp_path, debian_modules, monkeypatch):
    tree, _ = _tree(tmp_path, debian_modules)
    monkeypatch.setattr(depmod_mod, "which", lambda name: None)
    with pytest.raises(PackageError, match=f"kernel {debian_modules.kver} has modules, but depmod is not "
                                           "installed") as e:
        run_depmod(tree)
    assert "kmod" in e.value.hint


def test_tree_without_modules_needs_no_depmod(tmp_path, monkeypatch):
    (tmp_path / "usr/lib/modules/6.0/kernel").mkdir(parents=True)
    (tmp_path / "usr/lib/modules/6.0/vmlinuz").write_bytes(b"k")
    monkeypatch.setattr(depmod_mod, "which", lambda name: None)
    assert run_depmod(tmp_path) == []
