"""Run RPM scriptlets inside a tree, in a sandbox, with rpm's arguments and environment.

The sandbox (``packages.sandbox``) is bubblewrap, otherwise ``unshare -m`` + ``setpriv`` + ``chroot``, with
reduced capabilities, a PID limit and a timeout. Like rpm, a scriptlet with a body is written to
a temporary file in the tree's /var/tmp and run as ``INTERPRETER [ARGS] FILE $1 [$2]``; one without a body
(``%post -p /sbin/ldconfig``) runs its program with the arguments. Output (stdout and stderr) is captured; a
failing scriptlet raises PackageError naming the package and the scriptlet, with the end of its output.

Trees checked out with hardlinks into an object store (client-side layering) get rpm-ostree's guard: the
tree's /usr is seen through ``rofiles-fuse``, where hardlinked files cannot be changed in place (EROFS) while new
files can be created and old ones replaced, so no scriptlet can alter the base's stored objects.
"""

from __future__ import annotations

import contextlib
import os
import platform
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hybridos.errors import PackageError
from hybridos.packages.header import RpmHeader, Scriptlet, Trigger
from hybridos.packages.sandbox import Limits, run_sandboxed
from hybridos.packages.sandbox import bwrap_works as _bwrap_works
from hybridos.packages.unpack import TreeResolver
from hybridos.util.run import which

SCRIPT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
_OUTPUT_TAIL = 2000


@dataclass(frozen=True)
class ScriptResult:
    package: str
    scriptlet: str
    output: str


def arch_runnable(arch: str) -> bool:
    """Whether programs built for ``arch`` run here: the host's own, or qemu-user registered in binfmt_misc."""
    if arch == platform.machine():
        return True
    try:
        status = Path(f"/proc/sys/fs/binfmt_misc/qemu-{arch}").read_text()
    except OSError:
        return False
    return status.startswith("enabled")


def script_env(header: RpmHeader, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """rpm's scriptlet environment: a fixed PATH and RPM_INSTALL_PREFIX[n] for relocatable packages."""
    env = {"PATH": SCRIPT_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}
    for i, prefix in enumerate(header.prefixes):
        env[f"RPM_INSTALL_PREFIX{i}"] = prefix
        if i == 0:
            env["RPM_INSTALL_PREFIX"] = prefix
    if extra:
        env.update(extra)
    return env


def _exists_in_tree(tree: Path, path: str) -> bool:
    """Whether an absolute program path exists in the tree (symlinks resolved inside the tree)."""
    p = tree / path.lstrip("/")
    for _ in range(20):
        if not os.path.islink(p):
            return p.exists()
        target = os.readlink(p)
        p = tree / target.lstrip("/") if target.startswith("/") else p.parent / target
    return False


def _script_dir(tree: Path, what: str) -> tuple[str, ...]:
    """Where the scriptlet file goes, as rpm's %_tmppath: the tree's /var/tmp (else /tmp), never outside."""
    resolver = TreeResolver(tree)
    for parts in (("var", "tmp"), ("tmp",)):
        try:
            existed = os.path.isdir(tree.joinpath(*parts))
            real = resolver.resolve_dir(parts, what, create=True)
        except PackageError:
            continue
        if not existed:
            os.chmod(tree.joinpath(*real), 0o1777)
        return real
    raise PackageError(f"{what}: the tree has no usable /var/tmp or /tmp for the scriptlet")


def run_script(tree: str | os.PathLike, package: str, name: str, interpreter: Sequence[str], body: str,
               args: Sequence[int | str], *, env: Mapping[str, str], stdin: bytes | None = None,
               use_bwrap: bool | None = None, usr: str | os.PathLike | None = None,
               timeout: float | None = None) -> ScriptResult:
    """Run one scriptlet (or trigger) of ``package`` in ``tree``; raise PackageError when it fails or runs
    longer than ``timeout`` seconds (None: $HYBRIDOS_SCRIPTLET_TIMEOUT, else 300)."""
    limits = Limits.default(timeout)
    tree = Path(tree)
    what = f"{package}: %{name} scriptlet"
    if not interpreter:
        interpreter = ("/bin/sh",)
    if interpreter[0] == "<lua>":
        raise PackageError(f"{what} is written in Lua, which hybridos cannot run",
                           hint="ask the packager for a shell scriptlet")
    if not _exists_in_tree(tree, interpreter[0]):
        raise PackageError(f"{what} needs {interpreter[0]}, which the tree does not have")
    argv = list(interpreter)
    script_host = None
    if body:
        tmpdir = _script_dir(tree, what)
        host_dir = tree.joinpath(*tmpdir)
        fd, script_host = tempfile.mkstemp(prefix="rpm-tmp.", dir=host_dir)
        with os.fdopen(fd, "w") as f:
            f.write(body)
        argv.append("/" + "/".join(tmpdir) + "/" + os.path.basename(script_host))
    argv += [str(a) for a in args]
    try:
        proc = run_sandboxed(tree, argv, env=env, stdin=stdin if stdin is not None else b"", what=what,
                             limits=limits, use_bwrap=use_bwrap, usr=usr)
    finally:
        if script_host:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(script_host)
    output = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        tail = output.strip()[-_OUTPUT_TAIL:]
        shown = " | ".join(tail.splitlines()[-5:]) if tail else "no output"
        raise PackageError(f"{what} failed with exit status {proc.returncode}: {shown}")
    return ScriptResult(package, name, output)


def run_scriptlet(tree: str | os.PathLike, header: RpmHeader, scriptlet: Scriptlet, count: int, *,
                  use_bwrap: bool | None = None, usr: str | os.PathLike | None = None,
                  timeout: float | None = None) -> ScriptResult:
    """Run a package scriptlet with ``$1 = count`` (instances of the package after the operation)."""
    return run_script(tree, str(header.nevra), scriptlet.kind, scriptlet.interpreter, scriptlet.body, [count],
                      env=script_env(header), use_bwrap=use_bwrap, usr=usr, timeout=timeout)


def run_trigger(tree: str | os.PathLike, owner: RpmHeader, trigger: Trigger, owner_count: int, target_count: int,
                *, stdin: bytes | None = None, use_bwrap: bool | None = None,
                usr: str | os.PathLike | None = None, timeout: float | None = None) -> ScriptResult:
    """Run a trigger of ``owner`` with ``$1``/``$2`` = instances of the owner / the triggering package."""
    args: list[int] = [owner_count, target_count] if not trigger.kind.startswith(("file", "trans")) \
        else [owner_count]
    return run_script(tree, str(owner.nevra), f"{trigger.kind}({trigger.condition.name})", trigger.interpreter,
                      trigger.body, args, env=script_env(owner), stdin=stdin, use_bwrap=use_bwrap, usr=usr,
                      timeout=timeout)


# ---------------------------------------------------------------------------------------------- /usr guard


def is_hardlink_checkout(tree: str | os.PathLike, sample: int = 20) -> bool:
    """Whether the tree's /usr shares inodes with an object store: at least 3/4 of its first ``sample`` regular
    files have other links (a fresh ostree hardlink checkout has all of them; a package's own hardlink sets, as
    a composed tree has, are far fewer)."""
    linked = seen = 0
    for dirpath, dirnames, filenames in os.walk(Path(tree) / "usr"):
        dirnames.sort()
        for name in sorted(filenames):
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode):
                seen += 1
                linked += st.st_nlink > 1
                if seen >= sample:
                    return 4 * linked >= 3 * seen
    return seen > 0 and 4 * linked >= 3 * seen


@contextlib.contextmanager
def guarded_usr(tree: str | os.PathLike, hardlinked: bool | None = None) -> Iterator[Path | None]:
    """Mount the tree's /usr through rofiles-fuse for the block; yields the mountpoint, or None when the tree is
    not a hardlink checkout (``hardlinked`` says so; None: guessed with :func:`is_hardlink_checkout`).
    A hardlinked tree without rofiles-fuse or FUSE is refused rather than risked."""
    tree = Path(tree)
    if not (is_hardlink_checkout(tree) if hardlinked is None else hardlinked):
        yield None
        return
    rofiles = which("rofiles-fuse")
    if not rofiles or not os.path.exists("/dev/fuse") or not _bwrap_works():
        raise PackageError("the tree is a hardlink checkout: its scriptlets need rofiles-fuse, FUSE and bwrap so "
                           "that they cannot change the stored base files", hint="install ostree and bubblewrap")
    mnt = Path(tempfile.mkdtemp(prefix="hybridos-usr-"))
    try:
        proc = subprocess.run([rofiles, str(tree / "usr"), str(mnt)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise PackageError(f"rofiles-fuse could not mount {tree / 'usr'}: {proc.stderr.strip()}")
        try:
            yield mnt
        finally:
            subprocess.run([which("umount") or "umount", str(mnt)], capture_output=True)
    finally:
        with contextlib.suppress(OSError):
            mnt.rmdir()
