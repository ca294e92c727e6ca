"""The scriptlet sandbox holds against a hostile package (docs/security.md, "Packages and scriptlets"):
reduced capabilities, read-only /proc/sys, no block devices, a PID limit and a timeout."""

from __future__ import annotations

import os
import time

import pytest

from hybridos.errors import ConfigError, PackageError
from hybridos.packages.rpmdb import read_rpmdb
from hybridos.packages.sandbox import KEEP_CAPS, Limits, bwrap_works, run_sandboxed
from hybridos.packages.scriptlets import run_script
from tests.conftest import require_root
from tests.helpers.rpms import File, Pkg, build_rpm

from .conftest import layer

#: capabilities(7) numbers of what a scriptlet keeps
_CAP_BITS = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_FSETID": 4,
             "CAP_SETGID": 6, "CAP_SETUID": 7}


@pytest.fixture(autouse=True)
def _root():
    require_root()


@pytest.fixture(params=["bwrap", "chroot"])
def use_bwrap(request):
    if request.param == "bwrap" and not bwrap_works():
        pytest.skip("bwrap cannot create namespaces here")
    return request.param == "bwrap"


def sh(tree, body, use_bwrap=None, timeout=None):
    return run_script(tree, "evil-1-1.x86_64", "post", ("/bin/sh",), body, [1], env={"PATH": "/bin"},
                      use_bwrap=use_bwrap, timeout=timeout).output


def test_scriptlets_keep_only_file_capabilities(base_tree, use_bwrap):
    if use_bwrap:   # (the chroot fallback has no /proc to look at)
        status = sh(base_tree, "cat /proc/self/status", use_bwrap)
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        assert int(fields["CapEff"], 16) == sum(1 << _CAP_BITS[c] for c in KEEP_CAPS)
        assert fields["NoNewPrivs"].strip() == "1"   # no setuid program or file capability gives any back
    out = sh(base_tree, "busybox mknod /tmp/blk b 7 0 && echo MKNOD; true", use_bwrap)
    assert "MKNOD" not in out and not (base_tree / "tmp/blk").exists()
    # what they keep is what packages need on their files
    out = sh(base_tree, "touch /tmp/f && chown 1234:2345 /tmp/f && chmod 4755 /tmp/f && stat -c '%u %g %a' /tmp/f",
             use_bwrap)
    assert out.split() == ["1234", "2345", "4755"]


def test_no_sysctl_writes_and_no_block_devices(base_tree):
    if not bwrap_works():
        pytest.skip("bwrap cannot create namespaces here")
    # the same value written back: harmless if the write went through, and it must not
    out = sh(base_tree, "v=$(cat /proc/sys/kernel/core_pattern); if echo \"$v\" > /proc/sys/kernel/core_pattern; "
                        "then echo WROTE; fi; ls /dev; true")
    assert "WROTE" not in out
    assert "loop0" not in out and "sda" not in out and "vda" not in out


def test_pid_limit(base_tree, use_bwrap):
    if not use_bwrap:   # the chroot fallback has no /dev: its shell's background jobs die at once, nothing to count
        pytest.skip("measured with bwrap only")
    script = ': > /tmp/in; for i in $(busybox seq 40); do busybox sleep 60 </tmp/in & echo "pid $!"; done; echo end'
    proc = run_sandboxed(base_tree, ["/bin/sh", "-c", script], env={"PATH": "/bin"}, stdin=b"", what="test",
                         limits=Limits(timeout=60, pids=20), use_bwrap=use_bwrap)
    out = proc.stdout.decode()
    assert 0 < out.count("pid ") < 20 and "can't fork" in out, out


def test_timeout_kills_the_scriptlet_and_everything_it_started(base_tree, use_bwrap):
    t0 = time.monotonic()
    with pytest.raises(PackageError, match=r"evil-1-1.x86_64: %post scriptlet did not finish within 1 s"):
        sh(base_tree, "busybox setsid busybox sleep 4321 & busybox sleep 4321", use_bwrap, timeout=1)
    assert time.monotonic() - t0 < 10
    time.sleep(0.2)
    left = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p).endswith("sleep\x004321\x00")]
    assert left == []


def test_timeout_from_the_environment_and_nothing_committed(tmp_path, base_tree, monkeypatch):
    before = {h.name for h in read_rpmdb(base_tree)}
    rpm = build_rpm(Pkg("hang", files=(File("/usr/share/hang", b"x"),), post="busybox sleep 600"), tmp_path)
    monkeypatch.setenv("HYBRIDOS_SCRIPTLET_TIMEOUT", "1")
    with pytest.raises(PackageError, match="hang-1.0-1.x86_64: %post scriptlet did not finish within 1 s"):
        layer(base_tree, [rpm])
    assert {h.name for h in read_rpmdb(base_tree)} == before
    monkeypatch.setenv("HYBRIDOS_SCRIPTLET_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="HYBRIDOS_SCRIPTLET_TIMEOUT='soon' is not a number"):
        layer(base_tree, [rpm])


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            return f.read()
    except OSError:
        return ""


def test_groups_a_killed_run_left_are_removed_by_the_next_run(base_tree, use_bwrap):
    """A SIGKILLed hybridos cannot remove its pids cgroup (nor, without bwrap, stop its scriptlet): the next
    sandboxed run does both. Groups of live runs stay."""
    import signal
    import subprocess
    import sys
    import uuid

    from hybridos.packages.sandbox import GROUP_PREFIX, _group_name, _pids_cgroup_parent

    parent = _pids_cgroup_parent()
    if parent is None:
        pytest.skip("no writable pids cgroup here")
    marker = f"{4000 + os.getpid() % 1000}"
    code = ("import sys; from hybridos.packages.sandbox import Limits, run_sandboxed; "
            "run_sandboxed(sys.argv[1], ['/bin/sh', '-c', 'busybox sleep " + marker + "'], env={'PATH': '/bin'}, "
            "stdin=b'', what='t', limits=Limits(timeout=900), use_bwrap=sys.argv[2] == '1')")
    proc = subprocess.Popen([sys.executable, "-c", code, str(base_tree), "1" if use_bwrap else "0"])
    mine = f"{GROUP_PREFIX}{proc.pid}-"
    deadline = time.monotonic() + 30
    groups: list = []
    while time.monotonic() < deadline and not any(_cmdline(p).endswith(f"sleep\x00{marker}\x00")
                                                   for p in os.listdir("/proc") if p.isdigit()):
        time.sleep(0.05)
    groups = [g for g in parent.iterdir() if g.name.startswith(mine)]
    assert len(groups) == 1, "the run made no pids cgroup"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.3)
    # the killed run left its group (any other sandboxed run on the machine may already have removed it)
    live = parent / _group_name()             # a group of this (live) process
    young_old_style = parent / f"{GROUP_PREFIX}{uuid.uuid4().hex[:12]}"   # older naming, just made: may be in use
    live.mkdir()
    young_old_style.mkdir()
    try:
        run_sandboxed(base_tree, ["/bin/sh", "-c", "true"], env={"PATH": "/bin"}, stdin=b"", what="next",
                      limits=Limits(timeout=60), use_bwrap=use_bwrap)
        assert not groups[0].exists()
        assert not [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p).endswith(f"sleep\x00{marker}\x00")]
        assert live.is_dir() and young_old_style.is_dir()
    finally:
        live.rmdir()
        young_old_style.rmdir()
