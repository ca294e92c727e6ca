"""Postprocessing a composed tree into OSTree's layout, as rpm-ostree's compose does.

Called on the tree after packages are layered and the initramfs is written, before the commit. Each step is
a function of the tree (and the treefile); pure helpers turn file contents into file contents.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hybridos.arch import Architecture
from hybridos.compose.treefile import Treefile
from hybridos.errors import ConfigError, PackageError
from hybridos.util.run import run

log = logging.getLogger(__name__)

AUTOVAR_CONF = "usr/lib/tmpfiles.d/hybridos-autovar.conf"
TREEFILE_JSON = "usr/share/hybridos/treefile.json"
#: toplevel paths that are symlinks into /var or /run on an OSTree system (rpm-ostree's layout)
TOPLEVEL_LINKS = (
    ("home", "var/home"),
    ("root", "var/roothome"),
    ("opt", "var/opt"),
    ("srv", "var/srv"),
    ("mnt", "var/mnt"),
    ("media", "run/media"),
    ("usr/local", "../var/usrlocal"),
    ("ostree", "sysroot/ostree"),
)
TOPLEVEL_DIRS = ("dev", "proc", "sys", "run", "sysroot", "var", "boot", "usr", "tmp")


@dataclass(frozen=True)
class ScriptRunner:
    """How scripts run inside the tree: the sandbox, optionally not at all (``--no-scripts``)."""

    arch: Architecture
    enabled: bool = True

    def run(self, tree: Path, argv: list[str], what: str) -> str:
        from hybridos.initramfs_gen import sandbox_argv

        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
               "container": "hybridos"}
        for d in ("dev", "proc", "tmp"):
            (tree / d).mkdir(exist_ok=True)
        proc = run(sandbox_argv(tree, argv), env=env, check=False)
        out = proc.stdout.decode(errors="replace") if proc.stdout else ""
        if proc.returncode != 0:
            tail = "\n".join(out.rstrip().splitlines()[-40:])
            raise PackageError(f"{what} failed with exit code {proc.returncode}" + (f":\n{tail}" if tail else ""))
        return out


# ---------------------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------------------


def split_passwd(text: str, keep: Iterable[str]) -> tuple[str, str]:
    """Split passwd/group content: lines whose name is in ``keep`` stay (``/etc``), the rest move (``/usr/lib``)."""
    keep = set(keep)
    stay, move = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        (stay if line.split(":", 1)[0] in keep else move).append(line)
    return "".join(f"{x}\n" for x in stay), "".join(f"{x}\n" for x in move)


def merge_passwd(existing: str, new: str) -> str:
    """Append lines of ``new`` whose names ``existing`` lacks."""
    names = {line.split(":", 1)[0] for line in existing.splitlines() if line.strip()}
    out = existing if existing.endswith("\n") or not existing else existing + "\n"
    for line in new.splitlines():
        if line.strip() and line.split(":", 1)[0] not in names:
            out += line + "\n"
    return out


def id_names(passwd_texts: Iterable[str]) -> dict[int, str]:
    """uid (or gid) -> name from passwd (or group) file contents; the first entry for an id wins."""
    out: dict[int, str] = {}
    for text in passwd_texts:
        for line in text.splitlines():
            parts = line.split(":")
            if len(parts) >= 3 and parts[2].isdigit():
                out.setdefault(int(parts[2]), parts[0])
    return out


def mutate_os_release(text: str, version: str, base_version: str | None) -> str:
    """Put the commit version into os-release: ``base_version`` in VERSION/PRETTY_NAME becomes ``version``
    (when given) and ``OSTREE_VERSION='<version>'`` is set."""
    lines = []
    for line in text.splitlines():
        if line.startswith("OSTREE_VERSION="):
            continue
        if base_version and (line.startswith("VERSION=") or line.startswith("PRETTY_NAME=")):
            line = line.replace(base_version, version)
        lines.append(line)
    lines.append(f"OSTREE_VERSION='{version}'")
    return "\n".join(lines) + "\n"


def tmpfiles_paths(conf_texts: Iterable[str]) -> set[str]:
    """Paths already declared by tmpfiles.d configuration."""
    out = set()
    for text in conf_texts:
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and not parts[0].startswith("#"):
                out.add(parts[1].rstrip("/"))
    return out


def var_tmpfiles_line(path: str, st: os.stat_result, target: str | None, users: dict[int, str],
                      groups: dict[int, str]) -> str | None:
    """The tmpfiles.d line recreating ``/var/...`` entry ``path``: ``d`` for directories, ``L`` for symlinks."""
    if stat.S_ISDIR(st.st_mode):
        user = users.get(st.st_uid, str(st.st_uid))
        group = groups.get(st.st_gid, str(st.st_gid))
        return f"d {path} {stat.S_IMODE(st.st_mode):04o} {user} {group} - -"
    if stat.S_ISLNK(st.st_mode):
        return f"L {path} - - - - {target}"
    return None


# ---------------------------------------------------------------------------------------------------------
# Steps on the tree
# ---------------------------------------------------------------------------------------------------------


def _inside(tree: Path, rel: str) -> Path:
    p = tree / rel.lstrip("/")
    real_tree = os.path.realpath(tree)
    if not os.path.realpath(p.parent).startswith(real_tree):
        raise ConfigError(f"path {rel!r} leaves the tree")
    return p


def place_kernel(tree: Path) -> str | None:
    """Find the tree's kernel; move ``/boot/vmlinuz-<kver>`` (and System.map, config) to
    ``usr/lib/modules/<kver>/``; drop package-shipped initramfs images. Returns the kernel version or None."""
    modules = tree / "usr/lib/modules"
    boot = tree / "boot"
    kvers = set()
    if modules.is_dir():
        kvers.update(d.name for d in modules.iterdir() if (d / "vmlinuz").is_file())
    if boot.is_dir():
        for f in boot.iterdir():
            if f.name.startswith("vmlinuz-") and f.is_file() and not f.name.startswith("vmlinuz-0-rescue"):
                kver = f.name[len("vmlinuz-"):]
                dest = modules / kver
                dest.mkdir(parents=True, exist_ok=True)
                if not (dest / "vmlinuz").exists():
                    os.rename(f, dest / "vmlinuz")
                else:
                    f.unlink()
                for extra, name in ((f"System.map-{kver}", "System.map"), (f"config-{kver}", "config")):
                    if (boot / extra).is_file():
                        os.replace(boot / extra, dest / name)
                kvers.add(kver)
        for f in boot.glob("initramfs-*.img"):
            f.unlink()
    if len(kvers) > 1:
        raise PackageError(f"more than one kernel in the tree ({', '.join(sorted(kvers))}); an image has one")
    return next(iter(kvers), None)


def add_files(tree: Path, tf: Treefile) -> None:
    for af in tf.add_files:
        dest = _inside(tree, af.dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(af.source, dest)
        os.chmod(dest, stat.S_IMODE(af.source.stat().st_mode))


def enable_units(tree: Path, tf: Treefile) -> None:
    if tf.units and not tf.machineid_compat:
        raise ConfigError("'units' cannot be used with 'machineid-compat: false' (use a systemd preset instead)")
    wants = tree / "etc/systemd/system/multi-user.target.wants"
    for unit in tf.units:
        wants.mkdir(parents=True, exist_ok=True)
        link = wants / unit
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        os.symlink(f"/usr/lib/systemd/system/{unit}", link)
    if tf.default_target:
        d = tree / "etc/systemd/system"
        d.mkdir(parents=True, exist_ok=True)
        link = d / "default.target"
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        os.symlink(f"/usr/lib/systemd/system/{tf.default_target}", link)


def machine_id(tree: Path, tf: Treefile) -> None:
    path = tree / "etc/machine-id"
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    if tf.machineid_compat:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        path.chmod(0o444)


def os_release(tree: Path, tf: Treefile, version: str | None) -> None:
    if not version:
        return
    for rel in ("usr/lib/os-release", "etc/os-release"):
        p = tree / rel
        if p.is_file() and not p.is_symlink():
            p.write_text(mutate_os_release(p.read_text(), version, tf.mutate_os_release))


def run_postprocess_scripts(tree: Path, tf: Treefile, runner: ScriptRunner) -> None:
    """Inline ``postprocess`` entries in order, then ``postprocess-script``, each in the sandbox."""
    scripts = [(f"postprocess[{i}]", s.encode()) for i, s in enumerate(tf.postprocess)]
    if tf.postprocess_script is not None:
        scripts.append((f"postprocess-script {tf.postprocess_script.name}", tf.postprocess_script.read_bytes()))
    if not scripts:
        return
    if not runner.enabled:
        log.warning("--no-scripts: skipping %d postprocess script(s)", len(scripts))
        return
    for what, body in scripts:
        name = ".hybridos-postprocess"
        path = tree / name
        path.write_bytes(body)
        path.chmod(0o755)
        try:
            argv = [f"/{name}"] if body.startswith(b"#!") else ["/bin/sh", f"/{name}"]
            runner.run(tree, argv, what)
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def remove_files(tree: Path, tf: Treefile) -> None:
    for rel in tf.remove_files:
        p = _inside(tree, rel)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def has_nss_altfiles(tree: Path) -> bool:
    """Whether the tree can read users and groups from /usr/lib (the nss-altfiles module)."""
    return any(any((tree / d).glob("libnss_altfiles.so*")) for d in
               ("usr/lib64", "usr/lib", "lib64", "lib", "usr/lib/x86_64-linux-gnu", "usr/lib/aarch64-linux-gnu",
                "usr/lib/powerpc64le-linux-gnu") if (tree / d).is_dir())


def split_passwd_files(tree: Path, tf: Treefile) -> None:
    """Keep root (and ``etc-group-members``) in /etc; every other user and group goes to /usr/lib.

    As in rpm-ostree this needs nss-altfiles in the tree; without it the files stay whole in /etc.
    """
    if not has_nss_altfiles(tree):
        if (tree / "etc/passwd").is_file():
            log.warning("the tree has no nss-altfiles: /etc/passwd and /etc/group stay whole")
        return
    for name, keep in (("passwd", {"root"}), ("group", {"root", *tf.etc_group_members})):
        etc = tree / "etc" / name
        if not etc.is_file():
            continue
        stay, move = split_passwd(etc.read_text(), keep)
        usr = tree / "usr/lib" / name
        usr.parent.mkdir(parents=True, exist_ok=True)
        usr.write_text(merge_passwd(usr.read_text() if usr.exists() else "", move))
        etc.write_text(stay)
    nss = tree / "etc/nsswitch.conf"
    if nss.is_file():
        lines = []
        for line in nss.read_text().splitlines():
            key = line.split(":", 1)[0].strip()
            if key in ("passwd", "group") and "altfiles" not in line:
                line = line.replace(" files", " files altfiles", 1) if " files" in line else line + " altfiles"
            lines.append(line)
        nss.write_text("\n".join(lines) + "\n")


def move_rpmdb(tree: Path) -> None:
    """The rpmdb lives at usr/share/rpm; usr/lib/sysimage/rpm points to it; /var/lib/rpm via tmpfiles."""
    dest = tree / "usr/share/rpm"
    for rel in ("usr/lib/sysimage/rpm", "var/lib/rpm"):
        src = tree / rel
        if src.is_symlink() or not src.is_dir():
            continue
        if any(src.iterdir()) and not (dest.is_dir() and any(dest.iterdir())):
            wal = src / "rpmdb.sqlite-wal"
            if wal.exists():
                with contextlib.closing(sqlite3.connect(src / "rpmdb.sqlite")) as db:
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            if dest.exists():
                dest.rmdir()
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(src, dest)
        else:
            shutil.rmtree(src)
    if not dest.is_dir():
        return
    for junk in list(dest.glob("__db.*")) + list(dest.glob(".rpm.lock")) + list(dest.glob("*-shm")) + \
            list(dest.glob("*-wal")):
        junk.unlink()
    link = tree / "usr/lib/sysimage/rpm"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        os.symlink("../../share/rpm", link)
    if (tree / "var/lib/rpm").is_symlink():
        (tree / "var/lib/rpm").unlink()


def toplevel_layout(tree: Path) -> None:
    """The root directories and symlinks an OSTree deployment has (``/ostree``, ``/home`` -> var/home...)."""
    for d in TOPLEVEL_DIRS:
        (tree / d).mkdir(exist_ok=True)
    os.chmod(tree / "tmp", 0o1777)
    for rel, target in TOPLEVEL_LINKS:
        path = tree / rel
        if path.is_symlink():
            continue
        if target.startswith("var/") or target.startswith("../var/"):
            var_dir = tree / "var" / target.rsplit("var/", 1)[1]
            if path.is_dir():
                if var_dir.exists():
                    for child in path.iterdir():
                        shutil.move(child, var_dir / child.name)
                    path.rmdir()
                else:
                    var_dir.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(path, var_dir)
            else:
                var_dir.mkdir(parents=True, exist_ok=True)
                if rel == "root":
                    var_dir.chmod(0o700)
        elif path.is_dir():
            shutil.rmtree(path)
        os.symlink(target, path)


def var_to_tmpfiles(tree: Path) -> None:
    """Replace the content of /var by tmpfiles.d lines (directories and symlinks); files are dropped."""
    var = tree / "var"
    if not var.is_dir():
        return
    confd = tree / "usr/lib/tmpfiles.d"
    known = tmpfiles_paths(p.read_text(errors="replace") for p in sorted(confd.glob("*.conf"))) \
        if confd.is_dir() else set()
    texts = [(tree / rel).read_text() for rel in ("etc/passwd", "usr/lib/passwd") if (tree / rel).is_file()]
    users = id_names(texts)
    groups = id_names((tree / rel).read_text() for rel in ("etc/group", "usr/lib/group") if (tree / rel).is_file())
    lines = []
    for dirpath, dirnames, filenames in os.walk(var):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            path = "/" + os.path.relpath(full, tree)
            st = os.lstat(full)
            if path in known:
                continue
            target = os.readlink(full) if stat.S_ISLNK(st.st_mode) else None
            line = var_tmpfiles_line(path, st, target, users, groups)
            if line is None:
                log.info("dropping file %s: /var is machine state, not part of the image", path)
            else:
                lines.append(line)
    lines.append("L /var/lib/rpm - - - - ../../usr/share/rpm")
    confd.mkdir(parents=True, exist_ok=True)
    (tree / AUTOVAR_CONF).write_text("# Generated by hybridos compose from the packages' /var content\n"
                                     + "\n".join(lines) + "\n")
    for child in var.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def etc_to_usr_etc(tree: Path) -> None:
    etc, usr_etc = tree / "etc", tree / "usr/etc"
    if usr_etc.exists() or usr_etc.is_symlink():
        raise PackageError("the tree already has /usr/etc; a package or script must not create it")
    if etc.is_dir():
        os.rename(etc, usr_etc)
    else:
        usr_etc.mkdir(parents=True)


def boot_files(tree: Path, tf: Treefile, kver: str | None) -> None:
    """Empty /boot: what packages put there moves to usr/lib/ostree-boot; kernel copies for ``new``."""
    boot = tree / "boot"
    ostree_boot = tree / "usr/lib/ostree-boot"
    if boot.is_dir():
        for child in list(boot.iterdir()):
            ostree_boot.mkdir(parents=True, exist_ok=True)
            shutil.move(child, ostree_boot / child.name)
    if kver and tf.boot_location == "new":
        ostree_boot.mkdir(parents=True, exist_ok=True)
        mod = tree / "usr/lib/modules" / kver
        shutil.copy2(mod / "vmlinuz", ostree_boot / f"vmlinuz-{kver}")
        if (mod / "initramfs.img").exists():
            shutil.copy2(mod / "initramfs.img", ostree_boot / f"initramfs-{kver}.img")


def drop_special_files(tree: Path) -> None:
    """OSTree stores regular files, symlinks and directories only: remove device nodes, sockets, fifos."""
    stack = [str(tree)]
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif not e.is_file(follow_symlinks=False) and not e.is_symlink():
                    os.unlink(e.path)


def write_treefile_json(tree: Path, tf: Treefile) -> None:
    p = tree / TREEFILE_JSON
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(tf.to_json(), indent=2) + "\n")


def postprocess_tree(tree: Path, tf: Treefile, *, version: str | None, kver: str | None,
                     runner: ScriptRunner) -> None:
    """Every postprocessing step, in order (scripts see /etc where packages put it)."""
    add_files(tree, tf)
    enable_units(tree, tf)
    machine_id(tree, tf)
    os_release(tree, tf, version)
    run_postprocess_scripts(tree, tf, runner)
    remove_files(tree, tf)
    split_passwd_files(tree, tf)
    move_rpmdb(tree)
    boot_files(tree, tf, kver)
    toplevel_layout(tree)
    var_to_tmpfiles(tree)
    etc_to_usr_etc(tree)
    drop_special_files(tree)
    write_treefile_json(tree, tf)
