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
from hybridos.util.numbers import is_decimal
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
            if len(parts) >= 3 and is_decimal(parts[2]):
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
    """The tmpfiles.d line recreating ``/var/...`` entry ``path``: ``d`` for directories, ``L`` for symlinks.
    A path with blanks, quotes or backslashes is quoted as systemd-tmpfiles unquotes it; a control character
    (a newline would start a line of its own) is refused."""
    for text in (path, target or ""):
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            raise PackageError(f"{path!r}: a /var entry with a control character cannot become a tmpfiles.d line")
    if any(c.isspace() or c in "\\\"'" for c in path):
        path = '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'
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


def _p(tree: Path, rel: str, *, parents: bool = False) -> Path:
    """``rel`` inside ``tree`` with its directories resolved as in a chroot (an absolute symlink planted by a
    package stays inside the tree); the last component is not followed. ``parents`` creates missing ones."""
    from hybridos.initramfs_gen import resolve_in_tree

    parts = [x for x in rel.strip("/").split("/") if x not in ("", ".")]
    if not parts or ".." in parts:
        raise ConfigError(f"{rel!r} is not a path inside the tree")
    cur = tree
    for i, part in enumerate(parts[:-1]):
        nxt = resolve_in_tree(tree, os.path.relpath(cur / part, tree))
        if nxt is None:
            if not parents:
                return cur.joinpath(*parts[i:])
            (cur / part).mkdir(mode=0o755)
            nxt = cur / part
        elif not nxt.is_dir():
            raise PackageError(f"/{'/'.join(parts[:i + 1])} in the tree is not a directory")
        cur = nxt
    return cur / parts[-1]


def _dir(tree: Path, rel: str) -> Path | None:
    """The in-tree directory ``rel`` (all symlinks resolved inside the tree), or None."""
    from hybridos.initramfs_gen import resolve_in_tree

    d = resolve_in_tree(tree, rel)
    return d if d is not None and d.is_dir() else None


def _regular(tree: Path, rel: str) -> Path | None:
    """The in-tree regular file ``rel`` (symlinks resolved inside the tree), or None."""
    from hybridos.initramfs_gen import resolve_in_tree

    f = resolve_in_tree(tree, rel)
    return f if f is not None and f.is_file() and not f.is_symlink() else None


_TEXT_LIMIT = 16 << 20


def tree_texts(tree: Path, *rels: str) -> list[str]:
    """The text of each of ``rels`` that is a regular file of the tree (symlinks resolved inside the tree, never
    a host file, FIFO or device), at most 16 MiB each."""
    out = []
    for rel in rels:
        f = _regular(tree, rel)
        if f is not None:
            with open(f, "rb") as fh:
                out.append(fh.read(_TEXT_LIMIT).decode("utf-8", "replace"))
    return out


def tmpfiles_conf_texts(tree: Path) -> list[str]:
    """The text of every ``usr/lib/tmpfiles.d/*.conf`` of the tree, read as :func:`tree_texts` reads."""
    confd = _dir(tree, "usr/lib/tmpfiles.d")
    if confd is None:
        return []
    rel = os.path.relpath(confd, tree)
    return tree_texts(tree, *(f"{rel}/{n}" for n in sorted(os.listdir(confd)) if n.endswith(".conf")))


def write_tree_file(tree: Path, rel: str, data: bytes, mode: int = 0o644) -> None:
    """Write ``rel`` of the tree (its directories resolved inside the tree and created; a symlink in its place
    replaced, never followed)."""
    _replace_with_file(_p(tree, rel, parents=True), data, mode)


def _replace_with_file(path: Path, data: bytes, mode: int) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        raise PackageError(f"{path} exists and is not a file")
    path.write_bytes(data)
    path.chmod(mode)


def _replace_with_symlink(path: Path, target: str) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    os.symlink(target, path)


def place_kernel(tree: Path) -> str | None:
    """Find the tree's kernel; move ``/boot/vmlinuz-<kver>`` (and System.map, config) to
    ``usr/lib/modules/<kver>/``; drop package-shipped initramfs images. Returns the kernel version or None."""
    modules = _dir(tree, "usr/lib/modules")
    boot = _dir(tree, "boot")
    kvers = set()
    if modules is not None:
        kvers.update(d.name for d in modules.iterdir()
                     if not d.is_symlink() and d.is_dir() and _regular(tree, f"usr/lib/modules/{d.name}/vmlinuz"))
    if boot is not None:
        for f in sorted(boot.iterdir()):
            if f.name.startswith("vmlinuz-") and not f.is_symlink() and f.is_file() \
                    and not f.name.startswith("vmlinuz-0-rescue"):
                kver = f.name[len("vmlinuz-"):]
                dest = _p(tree, f"usr/lib/modules/{kver}/vmlinuz", parents=True)
                dest.parent.mkdir(exist_ok=True)
                if not dest.exists():
                    os.rename(f, dest)
                else:
                    f.unlink()
                for extra, name in ((f"System.map-{kver}", "System.map"), (f"config-{kver}", "config")):
                    if (boot / extra).is_file() and not (boot / extra).is_symlink():
                        os.replace(boot / extra, dest.parent / name)
                kvers.add(kver)
        for f in boot.glob("initramfs-*.img"):
            f.unlink()
    if len(kvers) > 1:
        raise PackageError(f"more than one kernel in the tree ({', '.join(sorted(kvers))}); an image has one")
    return next(iter(kvers), None)


def add_files(tree: Path, tf: Treefile) -> None:
    for af in tf.add_files:
        dest = _p(tree, af.dest, parents=True)
        _replace_with_file(dest, af.source.read_bytes(), stat.S_IMODE(af.source.stat().st_mode))


def enable_units(tree: Path, tf: Treefile) -> None:
    if tf.units and not tf.machineid_compat:
        raise ConfigError("'units' cannot be used with 'machineid-compat: false' (use a systemd preset instead)")
    for unit in tf.units:
        link = _p(tree, f"etc/systemd/system/multi-user.target.wants/{unit}", parents=True)
        _replace_with_symlink(link, f"/usr/lib/systemd/system/{unit}")
    if tf.default_target:
        link = _p(tree, "etc/systemd/system/default.target", parents=True)
        _replace_with_symlink(link, f"/usr/lib/systemd/system/{tf.default_target}")


def machine_id(tree: Path, tf: Treefile) -> None:
    path = _p(tree, "etc/machine-id", parents=tf.machineid_compat)
    if path.is_symlink() or path.is_file():
        path.unlink()
    if tf.machineid_compat:
        _replace_with_file(path, b"", 0o444)


def os_release(tree: Path, tf: Treefile, version: str | None) -> None:
    if not version:
        return
    seen = set()
    for rel in ("usr/lib/os-release", "etc/os-release"):
        p = _regular(tree, rel)
        if p is not None and p not in seen:
            seen.add(p)
            p.write_text(mutate_os_release(p.read_text(), version, tf.mutate_os_release))


def run_postprocess_scripts(tree: Path, tf: Treefile, runner: ScriptRunner) -> None:
    """Inline ``postprocess`` entries in order, then ``postprocess-script``, each in the sandbox."""
    scripts = [(f"postprocess[{i}]", s.encode()) for i, s in enumerate(tf.postprocess)]
    if tf.postprocess_script is not None:
        scripts.append((f"postprocess-script {tf.postprocess_script.name}", tf.postprocess_script.read_bytes()))
    if not scripts:
        return
    if not runner.enabled:
        log.warning("warning: --no-scripts: skipping %d postprocess script(s)", len(scripts))
        return
    for what, body in scripts:
        name = ".hybridos-postprocess"
        path = tree / name
        _replace_with_file(path, body, 0o755)
        try:
            argv = [f"/{name}"] if body.startswith(b"#!") else ["/bin/sh", f"/{name}"]
            runner.run(tree, argv, what)
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def sysusers_macro_defined(tree: Path) -> bool:
    """Whether the tree's rpm macros define ``%__systemd_sysusers`` (``sysusers: compose-auto``)."""
    for rel in ("usr/lib/rpm/macros.d", "etc/rpm"):
        d = _dir(tree, rel)
        for f in sorted(d.iterdir()) if d is not None else ():
            if f.is_file() and b"%__systemd_sysusers" in f.read_bytes():
                return True
    return False


def run_sysusers(tree: Path, tf: Treefile, runner: ScriptRunner) -> None:
    """``sysusers``: run the tree's systemd-sysusers at compose time (compose-forced always; compose-auto
    when the tree's rpm macros define ``%__systemd_sysusers``), so the users exist in the image."""
    if tf.sysusers == "compose-auto" and not sysusers_macro_defined(tree):
        return
    binary = next((b for b in ("usr/bin/systemd-sysusers", "usr/sbin/systemd-sysusers")
                   if _regular(tree, b) is not None), None)
    if binary is None:
        if tf.sysusers == "compose-forced":
            raise ConfigError("sysusers: compose-forced, but the tree has no systemd-sysusers")
        return
    if not runner.enabled:
        log.warning("warning: --no-scripts: not running systemd-sysusers")
        return
    runner.run(tree, [f"/{binary}"], "systemd-sysusers")


def run_finalize_d(tree: Path, tf: Treefile) -> None:
    """Edition 2024's ``finalize.d``: each executable runs on the host, in name order, with the tree as working
    directory and ``RPMOSTREE_WORKDIR`` naming the directory of its treefile."""
    for exe in tf.finalize_d:
        env = dict(os.environ, RPMOSTREE_WORKDIR=str(exe.parent.parent))
        proc = run([str(exe)], env=env, cwd=tree, check=False)
        if proc.returncode != 0:
            out = proc.stdout.decode(errors="replace") if proc.stdout else ""
            tail = "\n".join(out.rstrip().splitlines()[-40:])
            raise PackageError(f"finalize.d/{exe.name} failed with exit code {proc.returncode}"
                               + (f":\n{tail}" if tail else ""))


def remove_files(tree: Path, tf: Treefile) -> None:
    for rel in tf.remove_files:
        p = _p(tree, rel)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def has_nss_altfiles(tree: Path) -> bool:
    """Whether the tree can read users and groups from /usr/lib (the nss-altfiles module)."""
    dirs = ("usr/lib64", "usr/lib", "usr/lib/x86_64-linux-gnu", "usr/lib/aarch64-linux-gnu",
            "usr/lib/powerpc64le-linux-gnu")
    return any(any(d.glob("libnss_altfiles.so*")) for d in (_dir(tree, x) for x in dirs) if d is not None)


def split_passwd_files(tree: Path, tf: Treefile) -> None:
    """Keep root (and ``etc-group-members``) in /etc; every other user and group goes to /usr/lib.

    As in rpm-ostree this needs nss-altfiles in the tree; without it the files stay whole in /etc.
    """
    if not has_nss_altfiles(tree):
        if _regular(tree, "etc/passwd"):
            log.warning("warning: the tree has no nss-altfiles: /etc/passwd and /etc/group stay whole")
        return
    for name, keep in (("passwd", {"root"}), ("group", {"root", *tf.etc_group_members})):
        etc = _regular(tree, f"etc/{name}")
        if etc is None:
            continue
        stay, move = split_passwd(etc.read_text(), keep)
        usr = _p(tree, f"usr/lib/{name}", parents=True)
        existing = usr.read_text() if _regular(tree, f"usr/lib/{name}") else ""
        _replace_with_file(usr, merge_passwd(existing, move).encode(), 0o644)
        etc.write_text(stay)
    nss = _regular(tree, "etc/nsswitch.conf")
    if nss is not None:
        lines = []
        for line in nss.read_text().splitlines():
            key = line.split(":", 1)[0].strip()
            if key in ("passwd", "group") and "altfiles" not in line:
                line = line.replace(" files", " files altfiles", 1) if " files" in line else line + " altfiles"
            lines.append(line)
        nss.write_text("\n".join(lines) + "\n")


def require_real_dirs(tree: Path) -> None:
    """/usr, /etc, /var and /boot must be directories of the tree itself (not symlinks) for the layout steps."""
    for d in ("usr", "etc", "var", "boot"):
        p = tree / d
        if p.is_symlink() or (p.exists() and not p.is_dir()):
            raise PackageError(f"/{d} in the tree is not a directory; an OSTree image needs a real /{d}")


def move_rpmdb(tree: Path) -> None:
    """The rpmdb lives at usr/share/rpm; usr/lib/sysimage/rpm points to it; /var/lib/rpm via tmpfiles."""
    dest = _p(tree, "usr/share/rpm", parents=True)
    if dest.is_symlink():
        dest.unlink()
    for rel in ("usr/lib/sysimage/rpm", "var/lib/rpm"):
        src = _p(tree, rel)
        if src.is_symlink() or not src.is_dir():
            continue
        if any(src.iterdir()) and not (dest.is_dir() and any(dest.iterdir())):
            wal = src / "rpmdb.sqlite-wal"
            if wal.exists() and not wal.is_symlink():
                with contextlib.closing(sqlite3.connect(src / "rpmdb.sqlite")) as db:
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            if dest.exists():
                dest.rmdir()
            os.rename(src, dest)
        else:
            shutil.rmtree(src)
    if not dest.is_dir():
        return
    for junk in list(dest.glob("__db.*")) + list(dest.glob(".rpm.lock")) + list(dest.glob("*-shm")) + \
            list(dest.glob("*-wal")):
        junk.unlink()
    link = _p(tree, "usr/lib/sysimage/rpm", parents=True)
    if not link.is_symlink():
        os.symlink("../../share/rpm", link)


def toplevel_layout(tree: Path, tf: Treefile | None = None) -> None:
    """The root directories and symlinks an OSTree deployment has (``/ostree``, ``/home`` -> var/home...).

    ``tmp-is-dir: false`` makes /tmp a symlink to sysroot/tmp; ``opt-usrlocal: root`` keeps /opt and /usr/local
    plain directories of the image."""
    tmp_is_dir = tf is None or tf.tmp_is_dir
    for d in TOPLEVEL_DIRS:
        p = tree / d
        if d == "tmp" and not tmp_is_dir:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
            os.symlink("sysroot/tmp", p)
            continue
        if p.is_symlink():
            p.unlink()
        p.mkdir(exist_ok=True)
    if tmp_is_dir:
        os.chmod(tree / "tmp", 0o1777)
    skip = ("opt", "usr/local") if tf is not None and tf.opt_usrlocal == "root" else ()
    for rel in skip:
        p = _p(tree, rel, parents=True)
        if p.is_symlink():
            p.unlink()
        p.mkdir(mode=0o755, exist_ok=True)
    for rel, target in TOPLEVEL_LINKS:
        if rel in skip:
            continue
        path = _p(tree, rel)
        if path.is_symlink():
            continue
        if target.startswith("var/") or target.startswith("../var/"):
            var_dir = _p(tree, "var/" + target.rsplit("var/", 1)[1], parents=True)
            if path.is_dir():
                if var_dir.is_dir() and not var_dir.is_symlink():
                    for child in path.iterdir():
                        os.rename(child, var_dir / child.name)
                    path.rmdir()
                else:
                    os.rename(path, var_dir)
            else:
                if path.exists():
                    path.unlink()
                var_dir.mkdir(exist_ok=True)
                if rel == "root":
                    var_dir.chmod(0o700)
        elif path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        os.symlink(target, path)


def var_to_tmpfiles(tree: Path) -> None:
    """Replace the content of /var by tmpfiles.d lines (directories and symlinks); files are dropped."""
    var = tree / "var"
    if var.is_symlink() or not var.is_dir():
        return
    known = tmpfiles_paths(tmpfiles_conf_texts(tree))
    users = id_names(tree_texts(tree, "etc/passwd", "usr/lib/passwd"))
    groups = id_names(tree_texts(tree, "etc/group", "usr/lib/group"))
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
    conf = _p(tree, AUTOVAR_CONF, parents=True)
    _replace_with_file(conf, ("# Generated by hybridos compose from the packages' /var content\n"
                              + "\n".join(lines) + "\n").encode(), 0o644)
    for child in var.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def etc_to_usr_etc(tree: Path) -> None:
    etc, usr_etc = tree / "etc", tree / "usr/etc"
    if usr_etc.exists() or usr_etc.is_symlink():
        raise PackageError("the tree already has /usr/etc; a package or script must not create it")
    if etc.is_dir() and not etc.is_symlink():
        os.rename(etc, usr_etc)
    else:
        usr_etc.mkdir()


def move_boot_content(tree: Path, *, replace: bool = False) -> bool:
    """Move what packages put in /boot to /usr/lib/ostree-boot (rpm-ostree's translation), merging directories;
    /boot stays, empty. A path on both sides is a PackageError unless ``replace``. True when anything moved."""
    boot = tree / "boot"
    if boot.is_symlink() or not boot.is_dir() or not any(boot.iterdir()):
        return False
    dest = _p(tree, "usr/lib/ostree-boot", parents=True)
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise PackageError("/usr/lib/ostree-boot of the tree is not a directory; /boot content cannot move there")
    dest.mkdir(exist_ok=True)
    _merge_into(boot, dest, "", replace)
    return True


def _merge_into(src: Path, dst: Path, rel: str, replace: bool) -> None:
    """Rename every entry of ``src`` into the real directory ``dst``, merging subdirectories."""
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        target = dst / entry.name
        try:
            existing = os.lstat(target).st_mode
        except FileNotFoundError:
            existing = None
        if entry.is_dir(follow_symlinks=False) and existing is not None and stat.S_ISDIR(existing):
            _merge_into(Path(entry.path), target, f"{rel}/{entry.name}", replace)
            os.rmdir(entry.path)
            continue
        if existing is not None:
            if not replace:
                raise PackageError(f"/boot{rel}/{entry.name} moves to /usr/lib/ostree-boot{rel}/{entry.name} (as in "
                                   f"rpm-ostree), which the tree already has")
            if stat.S_ISDIR(existing):
                shutil.rmtree(target)
            else:
                os.unlink(target)
        os.rename(entry.path, target)


def boot_files(tree: Path, tf: Treefile, kver: str | None) -> None:
    """Empty /boot: what packages put there moves to usr/lib/ostree-boot; kernel copies for ``new``."""
    move_boot_content(tree)
    if kver and tf.boot_location == "new":
        ostree_boot = _p(tree, "usr/lib/ostree-boot", parents=True)
        ostree_boot.mkdir(exist_ok=True)
        mod = _dir(tree, f"usr/lib/modules/{kver}")
        shutil.copyfile(mod / "vmlinuz", ostree_boot / f"vmlinuz-{kver}")
        if _regular(tree, f"usr/lib/modules/{kver}/initramfs.img"):
            shutil.copyfile(mod / "initramfs.img", ostree_boot / f"initramfs-{kver}.img")


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
    _replace_with_file(_p(tree, TREEFILE_JSON, parents=True), json.dumps(tf.to_json(), indent=2).encode() + b"\n",
                       0o644)


def postprocess_tree(tree: Path, tf: Treefile, *, version: str | None, kver: str | None,
                     runner: ScriptRunner, final: bool = True) -> None:
    """Every postprocessing step, in order (scripts see /etc where packages put it); ``final=False`` stops
    before ``postprocess_final`` (``compose install`` without --postprocess)."""
    require_real_dirs(tree)
    add_files(tree, tf)
    enable_units(tree, tf)
    machine_id(tree, tf)
    os_release(tree, tf, version)
    run_sysusers(tree, tf, runner)
    run_postprocess_scripts(tree, tf, runner)
    run_finalize_d(tree, tf)
    remove_files(tree, tf)
    require_real_dirs(tree)
    if final:
        postprocess_final(tree, tf, kver)


def postprocess_final(tree: Path, tf: Treefile, kver: str | None) -> None:
    """rpm-ostree's ``postprocess_final``: the tree into OSTree's layout (passwd split, rpmdb, /boot, toplevel
    symlinks, /var as tmpfiles.d, /etc to /usr/etc). Run once per tree (``compose postprocess``)."""
    split_passwd_files(tree, tf)
    move_rpmdb(tree)
    boot_files(tree, tf, kver)
    toplevel_layout(tree, tf)
    var_to_tmpfiles(tree)
    etc_to_usr_etc(tree)
    drop_special_files(tree)
    if tf.readonly_executables:
        from hybridos.compose.content import readonly_executables

        readonly_executables(tree)
    write_treefile_json(tree, tf)
