"""initramfs-etc (rpm-ostree's): tracked files of the host's /etc are carried into the initramfs of a new
deployment, re-read from /etc at every deployment, kept in the origin (``[rpmostree] initramfs-etc=``)."""

from __future__ import annotations

import gzip
import subprocess
import tempfile
from pathlib import Path

from tests.layering.conftest import deployment_dir, hyb, set_ref, status


def _origin(host, dep) -> str:
    return (host / f"ostree/deploy/{dep['osname']}/deploy/{dep['checksum']}.{dep['serial']}.origin").read_text()


def _initramfs(tree):
    [img] = (tree / "usr/lib/modules").glob("*/initramfs.img")
    return img


def _overlay(old: bytes, new_tree) -> bytes:
    """The archive appended to the new deployment's initramfs (after the base's and its 4-byte padding)."""
    new = _initramfs(new_tree).read_bytes()
    assert new.startswith(old)
    rest = new[len(old):]
    pad = -len(old) % 4
    assert rest[:pad] == b"\0" * pad
    return rest[pad:]


def _overlay_members(host, old: bytes, new_tree) -> dict[str, bytes]:
    """The appended archive's members, listed and extracted by GNU cpio."""
    cpio = gzip.decompress(_overlay(old, new_tree))
    listing = subprocess.run(["cpio", "-it", "--quiet"], input=cpio, capture_output=True, check=True).stdout
    out = {}
    dest = Path(tempfile.mkdtemp(dir=host.parent))
    subprocess.run(["cpio", "-id", "--quiet", "--no-absolute-filenames"], input=cpio, cwd=dest, check=True)
    for name in listing.decode().split():
        p = dest / name
        out[name] = p.read_bytes() if p.is_file() and not p.is_symlink() else b""
    return out


def test_track_force_sync_untrack(host, layering_env):
    assert hyb(host, "initramfs-etc").stdout == "No tracked files.\n"
    [base] = status(host)
    base_img = _initramfs(deployment_dir(host, base)).read_bytes()
    etc = deployment_dir(host, base) / "etc"
    (etc / "crypttab").write_text("luks-root UUID=1234 /etc/keys/root.key\n")
    (etc / "keys").mkdir()
    (etc / "keys/root.key").write_bytes(b"secret\x00key")
    r = hyb(host, "initramfs-etc", "--track", "/etc/crypttab", "--track", "/etc/keys")
    assert r.stdout.rstrip().endswith('Run "systemctl reboot" to start a reboot')
    new = status(host)[0]
    assert new["initramfs-etc"] == ["/etc/crypttab", "/etc/keys"]
    assert "initramfs-etc=/etc/crypttab;/etc/keys;" in _origin(host, new)
    assert "baserefspec=" in _origin(host, new)
    tree = deployment_dir(host, new)
    members = _overlay_members(host, base_img, tree)
    assert set(members) == {"etc", "etc/crypttab", "etc/keys", "etc/keys/root.key"}
    assert members["etc/keys/root.key"] == b"secret\x00key"
    assert _initramfs(tree).stat().st_mode & 0o077 == 0          # keys inside: not world-readable
    # what the bootloader boots is that initramfs
    booted = [p for p in (host / "boot/ostree").rglob("initramfs*") if p.read_bytes() ==
              _initramfs(tree).read_bytes()]
    assert booted
    assert hyb(host, "initramfs-etc").stdout == "Tracked files:\n  /etc/crypttab\n  /etc/keys\n"

    # tracking again changes nothing (exit 77 with --unchanged-exit-77); --force-sync re-reads /etc
    r = hyb(host, "initramfs-etc", "--track", "/etc/crypttab", "--unchanged-exit-77", check=False)
    assert (r.returncode, r.stdout) == (77, "No changes.\n")
    (deployment_dir(host, new) / "etc/keys/root.key").write_bytes(b"rotated")
    hyb(host, "initramfs-etc", "--force-sync")
    newer = status(host)[0]
    assert _overlay_members(host, base_img, deployment_dir(host, newer))["etc/keys/root.key"] == b"rotated"
    overlay = _overlay(base_img, deployment_dir(host, newer))

    # an upgrade keeps carrying the files
    set_ref(host, "testos/stable", layering_env.v2)
    hyb(host, "upgrade")
    up = status(host)[0]
    assert up["base-checksum"] == layering_env.v2 and up["initramfs-etc"] == ["/etc/crypttab", "/etc/keys"]
    assert _initramfs(deployment_dir(host, up)).read_bytes().endswith(overlay)   # the same files, same bytes

    hyb(host, "initramfs-etc", "--untrack-all")
    last = status(host)[0]
    assert "initramfs-etc" not in last and "initramfs-etc" not in _origin(host, last)
    assert last["checksum"] == layering_env.v2                    # nothing else layered: the base itself


def test_bad_paths_are_refused(host):
    for path, message in (("/var/lib/x", "Path outside /etc forbidden: /var/lib/x"),
                          ("/etc/../root/.ssh", "invalid path /etc/../root/.ssh: must be canonical"),
                          ("/etc/no-such-file", "Adding /etc/no-such-file: no such file")):
        r = hyb(host, "initramfs-etc", "--track", path, check=False)
        assert r.returncode == 1 and message in r.stderr, r.stderr
        assert len(status(host)) == 1
    r = hyb(host, "initramfs-etc", "--reboot", check=False)
    assert (r.returncode, r.stderr) == (1, "error: Cannot use --reboot without --track, --untrack, --untrack-all, "
                                           "or --force-sync\n")
