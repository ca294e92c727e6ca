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
import re
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hybridos.errors import ConfigError, PackageError
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
#: the repository config key (``ostree/repo/config`` of a sysroot, or compose's ``--repo``)
TIMEOUT_SECTION, TIMEOUT_KEY = "hybridos", "scriptlet-timeout"
_MAX_TIMEOUT = 7 * 86400.0
_SECONDS = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9})?")


def parse_timeout(text: str, where: str) -> float:
    """Seconds as ASCII digits (``90``, ``0.5``): positive, at most a week; ConfigError naming ``where``."""
    text = text.strip()
    if not _SECONDS.fullmatch(text) or not 0 < float(text) <= _MAX_TIMEOUT:
        raise ConfigError(f"{where}={text[:40]!r} is not a number of seconds between 0 and {_MAX_TIMEOUT:g}")
    return float(text)


def configured_timeout(config: Mapping | None) -> float | None:
    """The scriptlet timeout the machine asks for: $HYBRIDOS_SCRIPTLET_TIMEOUT, else ``[hybridos]
    scriptlet-timeout`` of the repository ``config`` (a configparser), else None (the default, 300 s)."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if text:
        return parse_timeout(text, TIMEOUT_ENV)
    section = config[TIMEOUT_SECTION] if config is not None and TIMEOUT_SECTION in config else None
    value = section.get(TIMEOUT_KEY) if section is not None else None
    return parse_timeout(value, f"[{TIMEOUT_SECTION}] {TIMEOUT_KEY}") if value is not None else None


@dataclass(frozen=True)
class Limits:
    """Per-run limits: wall-clock seconds and processes (threads count too)."""

    timeout: float = DEFAULT_TIMEOUT
    pids: int = DEFAULT_PID_LIMIT

    @classmethod
    def default(cls, timeout: float | None = None) -> Limits:
        """``timeout`` if given, else $HYBRIDOS_SCRIPTLET_TIMEOUT (seconds), else 300 s."""
        if timeout is None:
            timeout = configured_timeout(None) or DEFAULT_TIMEOUT
        if not 0 < timeout <= _MAX_TIMEOUT:
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
                 usr: str | os.PathLike | None = None, tmpfs_tmp: bool = False) -> list[str]:
    """The command line running ``argv`` with ``tree`` as its root (and ``usr``, a guarded view, as /usr;
    ``tmpfs_tmp``: a private /tmp where bwrap works, else the tree's)."""
    if use_bwrap is None:
        use_bwrap = bwrap_works()
    if use_bwrap:
        usr_bind = ["--bind", str(usr), "/usr"] if usr else []
        proc_ro = [a for name in _PROC_READONLY if os.path.exists(f"/proc/{name}")
                   for a in ("--ro-bind", f"/proc/{name}", f"/proc/{name}")]
        caps = [a for cap in KEEP_CAPS for a in ("--cap-add", cap)]
        tmp = ["--tmpfs", "/tmp"] if tmpfs_tmp else []
        return [which("bwrap") or "bwrap", "--bind", str(tree), "/", *usr_bind, "--dev", "/dev", "--proc", "/proc",
                *proc_ro, *tmp, *_UNSHARE, "--cap-drop", "ALL", *caps, "--die-with-parent", "--chdir", "/", "--", *argv]
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


GROUP_PREFIX = "hybridos-scriptlet-"
_OLD_GROUP_AGE = 600   # seconds after which an empty group of the older naming (no owner in its name) is stale


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (field 22 of /proc/PID/stat), None when it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _group_name() -> str:
    """``hybridos-scriptlet-PID-STARTTIME-RANDOM``: who made the group, so a later run knows when it is stale."""
    pid = os.getpid()
    return f"{GROUP_PREFIX}{pid}-{_start_time(pid) or 0}-{uuid.uuid4().hex[:8]}"


def _stale(name: str, mtime: float) -> bool | None:
    """True: its run is gone; False: it may be in use; None: an older name without an owner (stale when old)."""
    parts = name[len(GROUP_PREFIX):].split("-")
    if len(parts) != 3 or not parts[0].isdigit():
        return None if time.time() - mtime < _OLD_GROUP_AGE else True
    return _start_time(int(parts[0])) != parts[1]


def remove_stale_groups(parent: Path | None = None) -> list[str]:
    """Remove the pids cgroups of runs that are gone (a SIGKILLed hybridos cannot remove its own), killing what
    is left in them first; groups of live runs, and young groups without an owner in their name, stay.
    Returns the names removed."""
    parent = parent if parent is not None else _pids_cgroup_parent()
    if parent is None:
        return []
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            if not entry.name.startswith(GROUP_PREFIX) or not entry.is_dir(follow_symlinks=False):
                continue
            group = Path(entry.path)
            try:
                stale = _stale(entry.name, entry.stat(follow_symlinks=False).st_mtime)
                procs = (group / "cgroup.procs").read_text().split()
            except OSError:
                continue
            if not stale or (stale is None and procs):
                continue
            if procs:
                _kill_all(group, None)
            if _rmdir_group(group):
                removed.append(entry.name)
    return removed


def _rmdir_group(group: Path, tries: int = 50) -> bool:
    for _ in range(tries):   # the processes are gone once killed, the cgroup may lag a moment
        try:
            group.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            time.sleep(0.02)
    return False


@contextlib.contextmanager
def _pid_limited(limit: int) -> Iterator[tuple[list[str], Path | None]]:
    """A shell prefix that puts the command in a fresh pids cgroup (or under RLIMIT_NPROC) before exec."""
    sh = which("sh") or "/bin/sh"
    parent = _pids_cgroup_parent()
    group = None
    if parent is not None:
        remove_stale_groups(parent)
        group = parent / _group_name()
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
        if group is not None and not _rmdir_group(group):
            _kill_all(group, None)   # something outlived the kill: once more, then give up (the next run retries)
            _rmdir_group(group)


def _kill_all(group: Path | None, pgid: int | None) -> None:
    """SIGKILL the run's process group and whatever else is in its cgroup (a daemonized child)."""
    if pgid is not None:
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
                  usr: str | os.PathLike | None = None, tmpfs_tmp: bool = False) -> subprocess.CompletedProcess:
    """Run ``argv`` in the sandbox with stdout and stderr together; PackageError when it runs out of time."""
    with _pid_limited(limits.pids) as (prefix, group):
        full = [*prefix, *sandbox_argv(tree, argv, use_bwrap=use_bwrap, usr=usr, tmpfs_tmp=tmpfs_tmp)]
        proc = subprocess.Popen(full, env=dict(env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = proc.communicate(stdin, timeout=limits.timeout)
        except subprocess.TimeoutExpired:
            _kill_all(group, proc.pid)   # with bwrap, its children die with it too (their own PID namespace)
            proc.communicate()
            raise PackageError(f"{what} did not finish within {limits.timeout:g} s and was killed",
                               hint=f"a scriptlet waiting for input or a network? raise the limit with "
                                    f"[{TIMEOUT_SECTION}] {TIMEOUT_KEY}=SECONDS in the repository's config "
                                    f"(or {TIMEOUT_ENV}=SECONDS)") from None
        except BaseException:
            _kill_all(group, proc.pid)
            proc.wait()
            raise
        if group is not None:
            _kill_all(group, proc.pid)   # nothing a scriptlet started outlives it
    return subprocess.CompletedProcess(full, proc.returncode, out, None)
