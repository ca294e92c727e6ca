"""What layering refuses, and that a refused or failed operation leaves the sysroot exactly as it was."""

from __future__ import annotations

from tests.layering.conftest import deployment_dir, hyb, status
from tests.sysroot.conftest import snapshot


def _refused(host, *args: str) -> str:
    before = snapshot(host / "boot"), [d["checksum"] for d in status(host)]
    p = hyb(host, *args, check=False)
    assert p.returncode != 0, p.stdout
    assert "Traceback" not in p.stderr
    assert (snapshot(host / "boot"), [d["checksum"] for d in status(host)]) == before
    assert not list((host / "ostree/repo/tmp/hybridos").glob("layer-*"))   # no work tree left behind
    return p.stderr


def test_conflicts_with_base_files_are_refused(host, layering_env):
    err = _refused(host, "install", "clobber")
    assert "/usr/bin/hello" in err and "hello-1.0-1.x86_64" in err and "conflicts" in err
    # a file no package owns (the composed initramfs) is protected too
    err = _refused(host, "install", "clobber-initramfs")
    assert "initramfs.img" in err and "--force-replacefiles" in err
    # --force-replacefiles is for local packages (as rpm-ostree's), which the origin then keeps as fileoverride
    hyb(host, "install", "--force-replacefiles", str(layering_env.host_repo.rpms["clobber-initramfs"]))
    [new, _old] = status(host)
    tree = deployment_dir(host, new)
    assert (tree / "usr/lib/modules").glob("*/initramfs.img").__next__().read_bytes() == b"not an initramfs\n"


def test_unresolvable_requests_are_explained(host):
    err = _refused(host, "install", "needs-newer-libfoo")
    assert "libfoo" in err and "locked" in err
    err = _refused(host, "install", "unsat")
    assert "nothing provides doesnotexist" in err
    err = _refused(host, "install", "no-such-package")
    assert "no package matches 'no-such-package'" in err


def test_failing_post_fails_the_operation_with_its_output(host):
    err = _refused(host, "install", "failpost")
    assert "failpost" in err and "%post" in err and "the scriptlet exploded" in err and "exit status 3" in err
    assert len(status(host)) == 1


def test_scriptlets_cannot_edit_base_files_in_place(host, layering_env):
    """The base's files are hardlinks to the repository: an in-place edit would corrupt every deployment."""
    import subprocess

    err = _refused(host, "install", "appender")
    assert "appender" in err and "Read-only file system" in err
    [dep] = status(host)
    assert b"appended" not in (deployment_dir(host, dep) / "usr/lib/os-release").read_bytes()
    subprocess.run(["ostree", "fsck", f"--repo={host}/ostree/repo"], check=True, capture_output=True)


def test_killed_while_the_guard_is_mounted(host):
    """SIGKILL in the middle of a scriptlet (with /usr behind rofiles-fuse): the next run unmounts and cleans up."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from hybridos.layering.guard import _rofiles_mounts_of

    work = host / "ostree/repo/tmp/hybridos"
    proc = subprocess.Popen([sys.executable, "-m", "hybridos", "--sysroot", str(host), "install", "sleeper"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not _rofiles_mounts_of(work) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    mounted = _rofiles_mounts_of(work)
    assert mounted, "the scriptlet guard was never mounted"
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(status(host)) == 1
    hyb(host, "install", "layered-tool")
    assert status(host)[0]["packages"] == ["layered-tool"]
    with open("/proc/mounts") as f:
        assert not [line for line in f if any(m in line for m in mounted)]
    assert not _rofiles_mounts_of(work)


def test_dry_run_changes_nothing(host):
    before = snapshot(host)
    out = hyb(host, "install", "--dry-run", "layered-tool").stdout
    assert "layered-tool-1.0-1.noarch" in out and "libbar-1.0-1.noarch" in out and "--dry-run" in out
    after = snapshot(host)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    # only the rpm-md metadata cache may appear
    assert all(k.startswith("ostree/deploy/testos/var/cache") for k in changed), changed
    assert len(status(host)) == 1


def test_killed_during_layering_leaves_the_sysroot_usable(host):
    from tests.conftest import run_cli

    before = snapshot(host / "boot"), [d["checksum"] for d in status(host)]
    for step in ("layer", "commit"):
        p = run_cli("--sysroot", str(host), "install", "layered-tool", env={"HYBRIDOS_TEST_ABORT_AT": step},
                    check=False)
        assert p.returncode == -9
        assert (snapshot(host / "boot"), [d["checksum"] for d in status(host)]) == before
    hyb(host, "install", "layered-tool")
    assert status(host)[0]["packages"] == ["layered-tool"]
    assert not list((host / "ostree/repo/tmp/hybridos").glob("layer-*"))
