"""The sandbox package scriptlets run in: a tree as ``/``, reduced capabilities, a PID limit and a timeout.

bubblewrap when it works: ``--bind TREE /``, a fresh /dev (no block devices; every bind is nodev, nosuid)
and /proc with ``/proc/sys`` (and sysrq-trigger, irq, bus) read-only; IPC, PID, network, UTS and cgroup
namespaces of its own; ``--cap-drop ALL`` then back only what rpm scriptlets need on files inside the tree
(chown, fowner, dac_override, dac_read_search, fsetid for setuid/setgid files, setuid/setgid to run commands
as another user); no_new_privs, so no file capability or setuid program gives any back. Without bwrap:
``unshare -m`` + ``setpriv`` (the same capability set in the bounding set, no_new_privs) + ``chroot``.

Not ``--unshare-all``: that adds a user namespace mapping only uid 0, in which root loses its powers over files
owned by other users (a %post writing into a 0750 directory owned by a service user fails with EACCES).

Each run gets a PID limit (a ``pids`` cgroup where one can be made, else RLIMIT_NPROC counted above what uid 0
runs already) and a wall-clock timeout, after which the whole sandbox is killed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hybridos.errors import PackageError
from hybridos.util.run import which

_UNSHARE = ("--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try")
#: what a scriptlet keeps of root's capabilities (capabilities(7) names)
KEEP_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_SETUID",
             "CAP_SETGID")
#: /proc entries that change the host kernel: mounted read-only inside
_PROC_READONLY = ("sys", "sysrq-trigger", "irq", "bus")
DEFAULT_TIMEOUT = 300.0
DEFAULT_PID_LIMIT = 512
TIMEOUT_ENV = "HYBRIDOS_SCRIPTLET_TIMEOUT"


@dataclass(frozen=True)
class Limits:
    """Per-run limits: wall-clock seconds and processes (threads count too)."""

    timeout: float = DEFAULT_TIMEOUT
    pids: int = DEFAULT_PID_LIMIT

    @classmethod
    def default(cls, timeout: float | None = None) -> Limits:
        """``timeout`` if given, else $HYBRIDOS_SCRIPTLET_TIMEOUT (seconds), else 300 s."""
        if timeout is None:
            text = os.environ.get(TIMEOUT_ENV, "").strip()
            try:
                timeout = float(text) if text else DEFAULT_TIMEOUT
            except ValueError:
                raise PackageError(f"{TIMEOUT_ENV}={text!r} is not a number of seconds") from None
        if not timeout > 0:
            raise PackageError(f"scriptlet timeout {timeout!r} must be a positive number of seconds")
        return cls(timeout=timeout)


@functools.cache
def bwrap_works() -> bool:
    """bwrap exists and can create its namespaces here (it cannot in some containers)."""
    bwrap = which("bwrap")
    if not bwrap:
        return False
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.run([bwrap, "--bind", d, "/", *_UNSHARE, "--die-with-parent", "--", "/nonexistent"],
                              capture_output=True, text=True)
        # with working namespaces bwrap gets as far as exec, which fails for the missing program
        return "execvp" in proc.stderr or "No such file" in proc.stderr


def sandbox_argv(tree: str | os.PathLike, argv: Sequence[str], *, use_bwrap: bool | None = None,
                 usr: str | os.PathLike | None = None) -> list[str]:
    """The command line running ``argv`` with ``tree`` as its root (and ``usr``, a guarded view, as /usr)."""
    if use_bwrap is None:
        use_bwrap = bwrap_works()
    if use_bwrap:
        usr_bind = ["--bind", str(usr), "/usr"] if usr else []
        proc_ro = [a for name in _PROC_READONLY if os.path.exists(f"/proc/{name}")
                   for a in ("--ro-bind", f"/proc/{name}", f"/proc/{name}")]
        caps = [a for cap in KEEP_CAPS for a in ("--cap-add", cap)]
        return [which("bwrap") or "bwrap", "--bind", str(tree), "/", *usr_bind, "--dev", "/dev", "--proc", "/proc",
                *proc_ro, *_UNSHARE, "--cap-drop", "ALL", *caps, "--die-with-parent", "--chdir", "/", "--", *argv]
    if usr:
        raise PackageError("the /usr guard for hardlinked trees needs bwrap", hint="install bubblewrap")
    unshare, chroot, setpriv = which("unshare"), which("chroot"), which("setpriv")
    if not unshare or not chroot or not setpriv:
        raise PackageError("cannot run scriptlets: neither bwrap nor unshare+setpriv+chroot is available",
                           hint="install bubblewrap")
    bounding = ",".join(["-all", *(f"+{c.removeprefix('CAP_').lower()}" for c in KEEP_CAPS), "+sys_chroot"])
    return [unshare, "-m", "--propagation", "private", setpriv, "--no-new-privs", "--bounding-set", bounding,
            "--inh-caps", "-all", chroot, str(tree), *argv]


# -- the PID limit ------------------------------------------------------------------------------------------


def _pids_cgroup_parent() -> Path | None:
    """A writable pids cgroup directory this process belongs to (cgroup v1 ``pids`` or v2 with pids delegated)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            base = Path("/sys/fs/cgroup/pids") / path.lstrip("/")
        elif controllers == "":
            mount = Path("/sys/fs/cgroup/unified") if Path("/sys/fs/cgroup/unified").is_dir() else Path(
                "/sys/fs/cgroup")
            base = mount / path.lstrip("/")
            try:
                if "pids" not in (base / "cgroup.subtree_control").read_text().split():
                    continue
            except OSError:
                continue
        else:
            continue
        if os.access(base, os.W_OK):
            return base
    return None


@contextlib.contextmanager
def _pid_limited(limit: int) -> Iterator[tuple[list[str], Path | None]]:
    """A shell prefix that puts the command in a fresh pids cgroup (or under RLIMIT_NPROC) before exec."""
    sh = which("sh") or "/bin/sh"
    parent = _pids_cgroup_parent()
    group = None
    if parent is not None:
        group = parent / f"hybridos-scriptlet-{uuid.uuid4().hex[:12]}"
        try:
            group.mkdir()
            (group / "pids.max").write_text(f"{limit}\n")
        except OSError:
            with contextlib.suppress(OSError):
                group.rmdir()
            group = None
    if group is not None:
        prefix = [sh, "-c", 'echo 0 > "$0/cgroup.procs" && exec "$@"', str(group)]
    else:  # RLIMIT_NPROC counts every process of the user: allow what uid 0 runs now plus the limit
        running = sum(1 for p in os.listdir("/proc") if p.isdigit() and _uid_of(p) == 0)
        prefix = [sh, "-c", f'ulimit -u {running + limit} && exec "$@"', "sandbox"]
    try:
        yield prefix, group
    finally:
        if group is not None:
            for _ in range(50):   # the processes are gone once killed, the cgroup may lag a moment
                try:
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(0.02)


def _kill_all(group: Path | None, pgid: int) -> None:
    """SIGKILL the run's process group and whatever else is in its cgroup (a daemonized child)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    if group is not None:
        with contextlib.suppress(OSError):
            for pid in (group / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


def _uid_of(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


# -- running ------------------------------------------------------------------------------------------------


def run_sandboxed(tree: str | os.PathLike, argv: Sequence[str], *, env: Mapping[str, str], stdin: bytes,
                  what: str, limits: Limits, use_bwrap: bool | None = None,
                  usr: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` in the sandbox with stdout and stderr together; PackageError when it runs out of time."""
    with _pid_limited(limits.pids) as (prefix, group):
        full = [*prefix, *sandbox_argv(tree, argv, use_bwrap=use_bwrap, usr=usr)]
        proc = subprocess.Popen(full, env=dict(env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = proc.communicate(stdin, timeout=limits.timeout)
        except subprocess.TimeoutExpired:
            _kill_all(group, proc.pid)   # with bwrap, its children die with it too (their own PID namespace)
            proc.communicate()
            raise PackageError(f"{what} did not finish within {limits.timeout:g} s and was killed",
                               hint=f"a scriptlet waiting for input or a network? raise the limit with "
                                    f"{TIMEOUT_ENV}=SECONDS") from None
        except BaseException:
            _kill_all(group, proc.pid)
            proc.wait()
            raise
        if group is not None:
            _kill_all(group, proc.pid)   # nothing a scriptlet started outlives it
    return subprocess.CompletedProcess(full, proc.returncode, out, None)
