"""The bootloader hook runs between the BLS entries and the swap; transactions cancel before the swap only;
interplay with the real ostree's pinning and immutable deployments."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hybridos import plugins
from hybridos.arch import Architecture
from hybridos.bootloader import Bootloader, Detection
from hybridos.errors import BootloaderError, Cancelled
from hybridos.hookspecs import hookimpl
from hybridos.operations.deploy import upgrade
from hybridos.sysroot.sysroot import Sysroot
from hybridos.sysroot.transaction import Transaction
from tests.conftest import require_tool
from tests.sysroot.conftest import STATEROOT, check_consistent, hyb, ostree, snapshot, status


class Recording(Bootloader):
    name = "recording"
    architectures = frozenset(Architecture)

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.calls: list[tuple] = []

    def detect(self, sysroot: Path):
        return Detection(1000, "test")

    def write_config(self, context):
        current = os.readlink(context.boot_dir / "loader")
        entries = sorted(os.listdir(context.loader_dir / "entries"))
        self.calls.append(("write", context.bootversion, current, entries, [e.checksum for e in context.entries]))
        if self.fail:
            raise BootloaderError("recording: refusing on purpose")

    def post_swap(self, context):
        self.calls.append(("post", os.readlink(context.boot_dir / "loader")))


@pytest.fixture
def recording(monkeypatch):
    def install(fail=False):
        bl = Recording(fail)

        class Plugin:
            @hookimpl
            def hybridos_bootloaders(self):
                return [bl]

        reg = plugins.PluginRegistry()  # the installed plugins (fetchers) plus this one, which wins detection
        reg.register(Plugin(), "recording")
        monkeypatch.setattr(plugins, "_default_registry", reg)
        return bl
    return install


def test_bootloader_writes_before_the_swap(host, recording):
    sr, remote, v1 = host
    bl = recording()
    v2 = remote.publish("2.0")
    before = os.readlink(sr / "boot/loader")
    with Transaction(sr, "upgrade") as tx:
        new = upgrade(Sysroot.load(sr), tx)
    [write, post] = bl.calls
    assert write[0] == "write" and write[2] == before and f"loader.{write[1]}" != before
    assert write[3] == [f"ostree-1-{STATEROOT}.conf", f"ostree-2-{STATEROOT}.conf"]
    assert write[4] == [v2, v1]
    assert post == ("post", f"loader.{write[1]}") and new.sysroot.bootversion == write[1]


def test_failing_bootloader_changes_nothing(host, recording):
    sr, remote, _ = host
    recording(fail=True)
    remote.publish("2.0")
    before = {k: v for k, v in snapshot(sr).items() if not k.startswith("ostree/repo/")}
    with pytest.raises(BootloaderError), Transaction(sr, "upgrade") as tx:
        upgrade(Sysroot.load(sr), tx)
    from hybridos.sysroot.cleanup import cleanup_sysroot
    cleanup_sysroot(Sysroot.load(sr))   # what the next command does first with the leftovers
    after = {k: v for k, v in snapshot(sr).items() if not k.startswith("ostree/repo/")}
    assert after == before


def test_grub_plugin_config_follows_deployments(host):
    require_tool("grub-script-check")
    sr, remote, _ = host
    (sr / "boot/grub2").mkdir()
    (sr / "boot/grub2/grub.cfg").write_text("# placeholder\n")
    v2 = remote.publish("2.0")
    hyb(sr, "upgrade")
    cfg = (sr / "boot/grub2/grub.cfg").resolve()
    text = cfg.read_text()
    d = status(sr)[0]
    assert d["checksum"] == v2
    first = text.index("\nmenuentry ")
    assert "Test OS 2.0 (ostree:0)" in text[first:first + 200]
    assert f"/ostree/{STATEROOT}-{d['bootcsum']}/vmlinuz-" in text
    from hybridos.util.run import run
    run(["grub-script-check", str(cfg)])


def test_cancel_before_commit_point_only(host):
    sr, remote, v1 = host
    remote.publish("2.0")
    before = {k: v for k, v in snapshot(sr).items() if not k.startswith("ostree/repo/")}
    tx = Transaction(sr, "upgrade")
    with tx:
        tx.cancel()
        with pytest.raises(Cancelled):
            upgrade(Sysroot.load(sr), tx)
    assert {k: v for k, v in snapshot(sr).items() if not k.startswith("ostree/repo/")} == before
    # after the commit point a cancellation is ignored: the operation completes
    remote.publish("3.0")
    with Transaction(sr, "upgrade") as tx:
        orig = tx.step

        def step(name):
            if name == "post-swap":
                tx.cancel()
            return orig(name)
        tx.step = step
        upgrade(Sysroot.load(sr), tx)
    assert status(sr)[0]["version"] == "3.0"
    assert "No active transaction" in hyb(sr, "cancel").stdout


def test_pin_is_seen_by_ostree_and_ostree_deployments_are_removed(host):
    require_tool("chattr", "lsattr")
    sr, remote, v1 = host
    hyb(sr, "admin", "pin", "0")
    assert "Pinned: yes" in ostree("admin", "status", f"--sysroot={sr}").stdout
    hyb(sr, "admin", "pin", "--unpin", "0")
    # a deployment made by the real ostree carries +i; our cleanup still removes it
    v2 = remote.publish("2.0")
    ostree(f"--repo={sr}/ostree/repo", "pull", "origin", "testos/stable")
    ostree("admin", "deploy", f"--sysroot={sr}", f"--os={STATEROOT}", "origin:testos/stable")
    theirs = sr / f"ostree/deploy/{STATEROOT}/deploy/{v2}.0"
    import subprocess
    assert "i" in subprocess.run(["lsattr", "-d", str(theirs)], capture_output=True, text=True).stdout.split()[0]
    remote.publish("3.0")
    hyb(sr, "upgrade")
    assert theirs.exists()          # the rollback now
    hyb(sr, "cleanup", "-r")
    assert not theirs.exists()
    check_consistent(sr)


def test_sigterm_cancels_the_running_transaction(host):
    import signal

    sr, remote, v1 = host
    remote.publish("2.0")
    with Transaction(sr, "upgrade") as tx:
        orig = tx.step

        def step(name):
            if name == "checkout":
                os.kill(os.getpid(), signal.SIGTERM)   # what `hybridos cancel` sends to the lock holder
            return orig(name)
        tx.step = step
        with pytest.raises(Cancelled):
            upgrade(Sysroot.load(sr), tx)
    assert [d["checksum"] for d in status(sr)] == [v1]
    hyb(sr, "upgrade")
    r = hyb(sr, "rebase", "origin:testos/stable", "--unchanged-exit-77", check=False)
    assert r.returncode == 77 and "already on origin:testos/stable" in r.stdout


def test_status_reads_consistently_while_another_process_swaps(host):
    import subprocess
    import sys

    sr, remote, _ = host
    remote.publish("2.0")
    hyb(sr, "upgrade")
    code = ("import sys\nfrom hybridos.sysroot.sysroot import Sysroot\n"
            "from hybridos.sysroot.transaction import Transaction\nfrom hybridos.sysroot.upgrade import rollback\n"
            "for _ in range(6):\n    with Transaction(sys.argv[1], 'rollback') as tx:\n"
            "        rollback(Sysroot.load(sys.argv[1]), tx)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(sr)])
    loads = 0
    while proc.poll() is None:
        s = Sysroot.load(sr)         # never an error, never a half state
        assert len(s.deployments) == 2
        loads += 1
    assert proc.returncode == 0 and loads > 0
    check_consistent(sr)
