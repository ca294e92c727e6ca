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


def test_conflicts_with_base_files_are_refused(host):
    err = _refused(host, "install", "clobber")
    assert "/usr/bin/hello" in err and "hello-1.0-1.x86_64" in err and "conflicts" in err
    # a file no package owns (the composed initramfs) is protected too
    err = _refused(host, "install", "clobber-initramfs")
    assert "initramfs.img" in err and "--force-replacefiles" in err
    hyb(host, "install", "--force-replacefiles", "clobber-initramfs")
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
