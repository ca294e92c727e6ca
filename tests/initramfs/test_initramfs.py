"""The initramfs hook: newc cpio writer, built-in busybox image and its /init, dracut in the tree."""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import zstandard

from hybridos.arch import Architecture
from hybridos.errors import PackageError
from hybridos.initramfs import InitramfsRequest
from hybridos.initramfs_gen import (
    CpioEntry,
    build_builtin_initramfs,
    dracut_available,
    elf_dependencies,
    newc_archive,
    run_dracut,
)
from hybridos.plugins import get_registry
from tests.conftest import require_root, require_tool

KVER = "6.5.0-1.fc39.x86_64"
HOST = Architecture.host()


def cpio_list(archive: bytes) -> list[str]:
    require_tool("cpio")
    out = subprocess.run(["cpio", "-t", "--quiet"], input=archive, capture_output=True, check=True)
    return out.stdout.decode().splitlines()


def cpio_extract(archive: bytes, dest: Path) -> None:
    dest.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet", "--no-absolute-filenames"], input=archive, cwd=dest,
                   check=True, capture_output=True)


def make_tree(root: Path, busybox: Path | None = Path("/usr/bin/busybox")) -> Path:
    (root / "usr/lib/modules" / KVER).mkdir(parents=True)
    (root / "usr/lib/modules" / KVER / "vmlinuz").write_bytes(b"kernel")
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    if busybox is not None:
        shutil.copy2(busybox, root / "usr/bin/busybox")
        for applet in ("sh", "vi", "ip"):
            os.symlink("busybox", root / "usr/bin" / applet)
    return root


def test_newc_archive_is_read_by_gnu_cpio(tmp_path):
    require_tool("cpio")
    entries = [
        CpioEntry("etc", stat.S_IFDIR | 0o755),
        CpioEntry("etc/hello", stat.S_IFREG | 0o640, b"hello world\n", mtime=1_700_000_000),
        CpioEntry("etc/odd", stat.S_IFREG | 0o600, b"x" * 4097),
        CpioEntry("etc/link", stat.S_IFLNK | 0o777, b"hello"),
        CpioEntry("dev/null", stat.S_IFCHR | 0o666, rdev=(1, 3)),
        CpioEntry("empty", stat.S_IFREG | 0o644, b""),
    ]
    archive = newc_archive(entries)
    assert archive.startswith(b"070701") and len(archive) % 4 == 0
    assert cpio_list(archive) == ["etc", "etc/hello", "etc/odd", "etc/link", "dev/null", "empty"]
    verbose = subprocess.run(["cpio", "-tv", "--quiet"], input=archive, capture_output=True,
                             check=True).stdout.decode().splitlines()
    assert verbose[4].startswith("crw-rw-rw-") and verbose[4].split()[4:6] == ["1,", "3"]
    assert verbose[3].startswith("lrwxrwxrwx") and verbose[3].endswith("etc/link -> hello")
    require_root()   # extracting device nodes needs root
    out = tmp_path / "x"
    cpio_extract(archive, out)
    assert (out / "etc/hello").read_bytes() == b"hello world\n"
    assert stat.S_IMODE((out / "etc/hello").stat().st_mode) == 0o640
    assert (out / "etc/hello").stat().st_mtime == 1_700_000_000
    assert (out / "etc/odd").read_bytes() == b"x" * 4097
    assert os.readlink(out / "etc/link") == "hello"
    assert stat.S_ISCHR((out / "dev/null").lstat().st_mode)
    assert (out / "dev/null").lstat().st_rdev == os.makedev(1, 3)


def test_elf_dependencies_match_readelf():
    require_tool("readelf")
    assert elf_dependencies(Path("/usr/bin/busybox").read_bytes()) == (None, ())  # static
    binary = Path(shutil.which("ls")).resolve()
    interp, needed = elf_dependencies(binary.read_bytes())
    dyn = subprocess.run(["readelf", "-d", "-l", str(binary)], capture_output=True, text=True, check=True).stdout
    expected_needed = [line.split("[", 1)[1].rstrip("]") for line in dyn.splitlines() if "(NEEDED)" in line]
    assert list(needed) == expected_needed and "libc.so.6" in needed
    assert f"[Requesting program interpreter: {interp}]" in dyn
    with pytest.raises(PackageError):
        elf_dependencies(b"#!/bin/sh\n" + b"\0" * 64)


@pytest.mark.parametrize("method,decompress", [
    ("gzip", gzip.decompress),
    ("zstd", lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b)),
])
def test_builtin_initramfs_is_a_compressed_cpio_with_busybox_and_init(tmp_path, method, decompress):
    tree = make_tree(tmp_path / "tree")
    args = ("--no-hostonly", f"--compress={method}")
    out = build_builtin_initramfs(InitramfsRequest(tree, KVER, HOST, args))
    assert out == tree / "usr/lib/modules" / KVER / "initramfs.img"
    image = out.read_bytes()
    tool = {"gzip": ["gzip", "-dc"], "zstd": ["zstd", "-dcq"]}[method]
    require_tool(tool[0])
    raw = subprocess.run(tool, input=image, capture_output=True, check=True).stdout
    assert raw == decompress(image)
    names = cpio_list(raw)
    for must in ("init", "bin/busybox", "bin/sh", "bin/mount", "bin/switch_root", "bin/readlink",
                 "bin/vi", "bin/ip", "dev/console", "sysroot", "proc"):
        assert must in names
    # deterministic: the same tree gives the same bytes
    assert build_builtin_initramfs(InitramfsRequest(tree, KVER, HOST, args)).read_bytes() == image


def test_builtin_initramfs_carries_a_dynamic_busybox_with_its_libraries(tmp_path):
    ls = Path(shutil.which("ls")).resolve()
    tree = make_tree(tmp_path / "tree", busybox=ls)
    interp, needed = elf_dependencies(ls.read_bytes())
    with pytest.raises(PackageError, match="lacks"):
        build_builtin_initramfs(InitramfsRequest(tree, KVER, HOST))
    (tree / "usr/lib64").mkdir()
    (tree / "lib64").symlink_to("usr/lib64")
    host_dirs = [Path(p) for p in ("/lib64", "/usr/lib64", *map(str, Path("/lib").glob("*-linux-gnu")),
                                   *map(str, Path("/usr/lib").glob("*-linux-gnu")))]

    def host_lib(name: str) -> Path:
        return next(d / name for d in host_dirs if (d / name).exists()).resolve()

    shutil.copy2(Path(interp).resolve(), tree / "usr/lib64" / Path(interp).name)
    pending = list(needed)
    while pending:                       # the transitive closure (libselinux needs libpcre2, ...)
        name = pending.pop()
        if not (tree / "usr/lib64" / name).exists():
            src = host_lib(name)
            shutil.copy2(src, tree / "usr/lib64" / name)
            pending.extend(elf_dependencies(src.read_bytes())[1])
    if not (tree / interp.lstrip("/")).exists():
        (tree / interp.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(interp).resolve(), tree / interp.lstrip("/"))
    out = build_builtin_initramfs(InitramfsRequest(tree, KVER, HOST))
    names = cpio_list(gzip.decompress(out.read_bytes()))
    assert interp.lstrip("/") in names
    for name in needed:
        assert any(n.endswith("/" + name) for n in names), name


def test_no_busybox_and_no_dracut_is_a_clear_error(tmp_path):
    tree = make_tree(tmp_path / "tree", busybox=None)
    assert not dracut_available(tree)
    with pytest.raises(PackageError, match="neither dracut nor busybox"):
        build_builtin_initramfs(InitramfsRequest(tree, KVER, HOST))
    assert not (tree / "usr/lib/modules" / KVER / "initramfs.img").exists()
    with pytest.raises(PackageError, match="no usr/lib/modules/9.9"):
        build_builtin_initramfs(InitramfsRequest(tree, "9.9", HOST))


def _extracted_init(tmp_path: Path) -> Path:
    tree = make_tree(tmp_path / "tree")
    image = build_builtin_initramfs(InitramfsRequest(tree, KVER, HOST)).read_bytes()
    root = tmp_path / "initramfs"
    cpio_extract(gzip.decompress(image), root)
    return root


def run_init_lib(root: Path, script: str, *, unshare: bool = False) -> subprocess.CompletedProcess:
    """Source the image's /init (functions only) in its own busybox shell and run ``script``."""
    argv = [str(root / "bin/busybox"), "sh", "-c", f". {root}/init; {script}"]
    if unshare:
        argv = [shutil.which("unshare"), "--mount", "--propagation", "private", *argv]
    env = {"HYBRIDOS_INIT_LIB": "1", "PATH": f"{root}/bin"}
    return subprocess.run(argv, capture_output=True, text=True, env=env)


def test_init_reads_ostree_and_root_from_the_kernel_command_line(tmp_path):
    require_root()
    require_tool("cpio")
    root = _extracted_init(tmp_path)
    init = (root / "init").read_text()
    assert init.startswith("#!/bin/sh") and "switch_root /newroot" in init and "/run/ostree-booted" in init
    cmdline = "BOOT_IMAGE=/vmlinuz root=UUID=1234-abcd rw ostree=/ostree/boot.1/fedora/3f0a/0 quiet init=/x"
    p = run_init_lib(root, f'cmdline_value ostree "{cmdline}"; cmdline_value root "{cmdline}"; '
                           f'cmdline_value init "{cmdline}"; echo "[$(cmdline_value rootflags "{cmdline}")]"')
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["/ostree/boot.1/fedora/3f0a/0", "UUID=1234-abcd", "/x", "[]"]


def test_init_sets_up_the_deployment_as_ostree_prepare_root_does(tmp_path):
    require_root()
    require_tool("cpio", "unshare")
    root = _extracted_init(tmp_path)
    sysroot = tmp_path / "sysroot"
    deploy = sysroot / "ostree/deploy/fedora/deploy/abc123.0"
    for d in ("usr/bin", "var", "sysroot", "etc", "dev", "proc", "sys", "run"):
        (deploy / d).mkdir(parents=True)
    (deploy / "usr/bin/marker").write_text("usr\n")
    var = sysroot / "ostree/deploy/fedora/var"
    (var / "lib").mkdir(parents=True)
    (var / "lib/state").write_text("var\n")
    (sysroot / "ostree/boot.1.1/fedora/bootcsum").mkdir(parents=True)
    (sysroot / "ostree/boot.1").symlink_to("boot.1.1")
    (sysroot / "ostree/boot.1.1/fedora/bootcsum/0").symlink_to("../../../deploy/fedora/deploy/abc123.0")
    newroot = tmp_path / "newroot"
    script = (f"ostree_prepare_root {sysroot} {newroot} /ostree/boot.1/fedora/bootcsum/0 || exit 9; "
              f"cat {newroot}/usr/bin/marker {newroot}/var/lib/state; "
              f"ls {newroot}/sysroot/ostree/deploy; "
              f"if touch {newroot}/usr/new 2>/dev/null; then echo usr-writable; else echo usr-readonly; fi; "
              f"touch {newroot}/var/lib/written && echo var-writable; "
              f"touch {newroot}/etc/written && echo etc-writable")
    p = run_init_lib(root, script, unshare=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines() == ["usr", "var", "fedora", "usr-readonly", "var-writable", "etc-writable"]
    assert (var / "lib/written").exists()           # /var is the stateroot's var
    assert not (newroot / "usr").exists()           # the mounts lived only in the namespace
    bad = run_init_lib(root, f"ostree_prepare_root {sysroot} {newroot} /ostree/boot.1/fedora/nope/0", unshare=True)
    assert bad.returncode != 0 and "cannot resolve ostree=" in bad.stdout
    bad = run_init_lib(root, f"ostree_prepare_root {sysroot} {newroot} /ostree/boot.1", unshare=True)
    assert bad.returncode != 0 and "does not lead to a deployment" in bad.stdout


def _fake_dracut_tree(tmp_path: Path) -> Path:
    tree = make_tree(tmp_path / "tree")
    (tree / "usr/sbin").mkdir()
    (tree / "bin").symlink_to("usr/bin")
    (tree / "usr/lib/dracut/modules.d/98ostree").mkdir(parents=True)
    dracut = tree / "usr/sbin/dracut"
    # A stand-in dracut that proves it runs inside the tree: it can see the tree's kernel directory as
    # /usr/lib/modules/<kver> and writes its image where dracut would.
    dracut.write_text('#!/bin/sh\n'
                      'echo "$@" > /tmp/args\n'
                      'for last; do :; done\n'
                      'test -f /usr/lib/modules/' + KVER + '/vmlinuz || { echo "no kernel in the tree"; exit 3; }\n'
                      'test "$FAIL" = 1 && { echo "dracut: something broke"; exit 1; }\n'
                      '{ echo "$@"; cat /proc/self/uid_map 2>/dev/null; } > "$last"\n')
    dracut.chmod(0o755)
    return tree


def test_run_dracut_runs_the_trees_dracut_sandboxed(tmp_path):
    require_root()
    require_tool("bwrap")
    tree = _fake_dracut_tree(tmp_path)
    assert dracut_available(tree)
    out = run_dracut(InitramfsRequest(tree, KVER, HOST, ("--filesystems", "xfs")))
    text = out.read_text()
    assert f"--kver {KVER}" in text and "--add ostree" in text and "--filesystems xfs" in text
    assert text.split("\n")[0].endswith(f"/usr/lib/modules/{KVER}/initramfs.img")
    assert not (tree / "tmp/args").exists()       # /tmp was the sandbox's own tmpfs


def test_initramfs_hook_prefers_dracut_and_falls_back_to_busybox(tmp_path):
    require_root()
    require_tool("bwrap")
    hook = get_registry().hook.hybridos_initramfs
    tree = _fake_dracut_tree(tmp_path / "a")
    out = hook(request=InitramfsRequest(tree, KVER, HOST))
    assert out.read_text().startswith("--force")
    plain = make_tree(tmp_path / "b")
    out = hook(request=InitramfsRequest(plain, KVER, HOST))
    assert "init" in cpio_list(gzip.decompress(out.read_bytes()))


def test_dracut_failure_is_reported_with_its_output(tmp_path):
    require_root()
    require_tool("bwrap")
    tree = _fake_dracut_tree(tmp_path)
    (tree / "usr/sbin/dracut").write_text("#!/bin/sh\necho 'dracut: module xfs not found'\nexit 1\n")
    with pytest.raises(PackageError, match="dracut failed .*module xfs not found"):
        run_dracut(InitramfsRequest(tree, KVER, HOST))


def test_foreign_tree_with_dracut_gets_the_builtin_image(tmp_path):
    tree = _fake_dracut_tree(tmp_path)
    foreign = next(a for a in Architecture if a is not HOST)
    out = run_dracut(InitramfsRequest(tree, KVER, foreign))
    assert "init" in cpio_list(gzip.decompress(out.read_bytes()))


def test_modules_dep_closure():
    from hybridos.initramfs_gen import drivers_from_args, module_closure, parse_modules_dep

    dep = parse_modules_dep("kernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz kernel/lib/crc16.ko.xz\n"
                            "kernel/fs/jbd2/jbd2.ko.xz:\nkernel/lib/crc16.ko.xz:\n"
                            "kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio-ring.ko.xz\n"
                            "kernel/drivers/virtio/virtio-ring.ko.xz:\n")
    assert module_closure(dep, ["ext4"]) == ["kernel/fs/ext4/ext4.ko.xz", "kernel/fs/jbd2/jbd2.ko.xz",
                                             "kernel/lib/crc16.ko.xz"]
    assert module_closure(dep, ["virtio-blk", "nosuch"]) == ["kernel/drivers/block/virtio_blk.ko.xz",
                                                             "kernel/drivers/virtio/virtio-ring.ko.xz"]
    assert drivers_from_args(["--no-hostonly", "--add-drivers", "ext4 xfs", "--drivers=nvme,ahci"]) == \
        ("ext4", "xfs", "nvme", "ahci")
    assert drivers_from_args(["--no-hostonly"]) is None


def test_builtin_initramfs_carries_the_storage_modules_the_kernel_has(tmp_path):
    tree = make_tree(tmp_path / "tree")
    mod = tree / "usr/lib/modules" / KVER
    for rel in ("kernel/fs/ext4/ext4.ko.xz", "kernel/fs/jbd2/jbd2.ko.xz", "kernel/drivers/block/virtio_blk.ko.xz",
                "kernel/drivers/net/dummy.ko.xz", "kernel/drivers/net/e1000.ko.xz"):
        (mod / rel).parent.mkdir(parents=True, exist_ok=True)
        (mod / rel).write_bytes(b"module " + rel.encode())
    (mod / "modules.dep").write_text("kernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz\n"
                                     "kernel/fs/jbd2/jbd2.ko.xz:\nkernel/drivers/block/virtio_blk.ko.xz:\n"
                                     "kernel/drivers/net/dummy.ko.xz:\nkernel/drivers/net/e1000.ko.xz:\n")
    (mod / "modules.alias").write_text("alias fs-ext4 ext4\n")
    out = build_builtin_initramfs(InitramfsRequest(tree, KVER, HOST, ("--add-drivers", "e1000")))
    raw = gzip.decompress(out.read_bytes())
    names = cpio_list(raw)
    base = f"lib/modules/{KVER}"
    for rel in ("kernel/fs/ext4/ext4.ko.xz", "kernel/fs/jbd2/jbd2.ko.xz", "kernel/drivers/block/virtio_blk.ko.xz",
                "kernel/drivers/net/e1000.ko.xz", "modules.dep", "modules.alias"):
        assert f"{base}/{rel}" in names, rel
    assert f"{base}/kernel/drivers/net/dummy.ko.xz" not in names
    require_root()
    root = tmp_path / "x"
    cpio_extract(raw, root)
    assert (root / "etc/hybridos-modules").read_text().split() == ["virtio_blk", "ext4", "e1000"]
    assert (root / base / "kernel/fs/jbd2/jbd2.ko.xz").read_bytes() == b"module kernel/fs/jbd2/jbd2.ko.xz"
    assert "modprobe \"$module\"" in (root / "init").read_text()
