"""The files hybridosd ships: the bus policy (dbus-daemon loads it and enforces it), the activation file (the
bus starts hybridosd on the first call), the systemd unit (systemd-analyze verify accepts it) and the polkit
actions (every action the daemon checks is declared)."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import hybridos.daemon.service as service
from tests.conftest import require_tool
from tests.daemon.bus import BUS_NAME, DATA, SYSROOT_OBJ, Bus, busctl, has_owner


def test_systemd_unit_verifies(tmp_path):
    require_tool("systemd-analyze")
    hybridosd = shutil.which("hybridosd") or str(Path(__import__("sys").executable).parent / "hybridosd")
    unit = (DATA / "hybridosd.service").read_text()
    assert "Type=dbus" in unit and f"BusName={BUS_NAME}" in unit
    # the installed paths, as a package would have them
    local = unit.replace("/usr/bin/hybridosd", hybridosd).replace("/usr/bin/busctl", shutil.which("busctl"))
    (tmp_path / "hybridosd.service").write_text(local)
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "hybridosd.service")], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    # and it would refuse a broken one (the check can fail)
    (tmp_path / "broken.service").write_text(local.replace(f"BusName={BUS_NAME}\n", ""))
    assert subprocess.run(["systemd-analyze", "verify", str(tmp_path / "broken.service")],
                          capture_output=True).returncode != 0


def test_polkit_actions_cover_what_the_daemon_checks():
    tree = ET.parse(DATA / "org.projectatomic.rpmostree1.policy")
    declared = {a.get("id") for a in tree.getroot().iter("action")}
    source = Path(service.__file__).read_text() + Path(service.__file__).with_name("auth.py").read_text()
    used = {f"org.projectatomic.rpmostree1.{a}" for a in re.findall(r'\("([a-z-]+)",\)', source)}
    used |= {f"org.projectatomic.rpmostree1.{a}" for a in re.findall(r'actions\.append\("([a-z-]+)"\)', source)}
    assert used and used <= declared, used - declared
    for action in tree.getroot().iter("action"):
        assert action.find("defaults/allow_active").text in ("auth_admin_keep", "yes")


def test_bus_policy_is_loaded_and_enforced():
    require_tool("dbus-daemon", "gdbus", "setpriv")
    with Bus() as bus:
        # dbus-daemon refuses a configuration that does not parse; ours is included and active:
        # another uid may not own the name
        r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "gdbus", "call",
                            "--address", bus.address, "--dest", "org.freedesktop.DBus", "--object-path",
                            "/org/freedesktop/DBus", "--method", "org.freedesktop.DBus.RequestName", BUS_NAME, "0"],
                           capture_output=True, text=True)
        assert r.returncode != 0 and "AccessDenied" in r.stderr, r.stderr
        # a policy that does not parse stops dbus-daemon: so the one above was really read
        bad = bus.dir / "bad.conf"
        bad.write_text("<busconfig><policy user='root'><allow own=</policy></busconfig>")
        cfg = bus.dir / "bad-system.conf"
        cfg.write_text(bus.config.read_text().replace(str(DATA / "org.projectatomic.rpmostree1.conf"), str(bad))
                       .replace(str(bus.socket), str(bus.dir / "other_socket")))
        r = subprocess.run(["dbus-daemon", f"--config-file={cfg}", "--nofork", "--print-address"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and "bad.conf" in r.stderr, r.stderr


@pytest.mark.slow
def test_activation_starts_the_daemon(host, tmp_path):
    """With the activation file in the bus's service directory, the first call starts hybridosd."""
    require_tool("dbus-daemon", "busctl")
    sr, remote, v1 = host
    script = tmp_path / "hybridosd-test"
    run_dir = tmp_path / "run"
    script.write_text(f"#!/bin/sh\nexec {__import__('sys').executable} -m hybridos start-daemon --sysroot {sr} "
                      f"--run-dir {run_dir} --idle-exit-timeout 2 --config {tmp_path}/none.conf\n")
    script.chmod(0o755)
    with Bus(activation_exec=str(script)) as bus:
        assert not has_owner(bus)
        out = busctl(bus, "get-property", BUS_NAME, SYSROOT_OBJ, "org.projectatomic.rpmostree1.Sysroot",
                     "Path").stdout
        assert str(sr) in out
        # and it goes away again when idle
        import time

        deadline = time.monotonic() + 30
        while has_owner(bus) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not has_owner(bus)
