"""A private system bus for tests: Debian's dbus-daemon on its own socket with hybridos' bus policy, and
hybridosd serving a temporary sysroot on it. Nothing is left running after a test."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import hybridos

DATA = Path(hybridos.__file__).parent / "data"
BUS_NAME = "org.projectatomic.rpmostree1"
SYSROOT_OBJ = "/org/projectatomic/rpmostree1/Sysroot"

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path={socket}</listen>
  {servicedir}
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>{policy}</include>
{extra}
</busconfig>
"""


class Bus:
    """``with Bus() as bus``: a dbus-daemon in a world-readable temporary directory (so other uids can use it)."""

    def __init__(self, *, activation_exec: str | None = None, policies: tuple[Path, ...] = ()):
        self.dir = Path(tempfile.mkdtemp(prefix="hybridos-bus-"))
        os.chmod(self.dir, 0o755)
        self.socket = self.dir / "system_bus_socket"
        self.address = f"unix:path={self.socket}"
        servicedir = ""
        if activation_exec:
            services = self.dir / "services"
            services.mkdir()
            text = (DATA / "org.projectatomic.rpmostree1.service").read_text()
            text = text.replace("Exec=/usr/bin/hybridosd", f"Exec={activation_exec}")
            text = "\n".join(line for line in text.splitlines() if not line.startswith("SystemdService="))
            (services / "org.projectatomic.rpmostree1.service").write_text(text + "\n")
            servicedir = f"<servicedir>{services}</servicedir>"
        self.config = self.dir / "system.conf"
        self.config.write_text(BUS_CONFIG.format(socket=self.socket, servicedir=servicedir,
                                                 policy=DATA / "org.projectatomic.rpmostree1.conf",
                                                 extra="".join(f"  <include>{p}</include>\n" for p in policies)))
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Bus:
        self.proc = subprocess.Popen(["dbus-daemon", f"--config-file={self.config}", "--nofork", "--nopidfile",
                                      "--print-address"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"dbus-daemon failed: {self.proc.stderr.read()}")
        return self

    def env(self, **extra) -> dict:
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.address, **extra)
        env.pop("HYBRIDOS_NO_DAEMON", None)
        return env

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Daemon:
    """hybridosd serving ``sysroot`` on ``bus``; stopped (and waited for) on exit."""

    def __init__(self, bus: Bus, sysroot: Path, *, idle: float = 0, linger: float = 30, env: dict | None = None,
                 config: Path | None = None):
        self.bus = bus
        self.run_dir = bus.dir / "run"
        args = [sys.executable, "-m", "hybridos.daemon.main", "--sysroot", str(sysroot), "--run-dir",
                str(self.run_dir), "--idle-exit-timeout", str(idle), "--transaction-linger", str(linger),
                "--config", str(config or bus.dir / "no-such.conf")]
        self.args = args
        self.env = bus.env(**(env or {}))
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Daemon:
        self.log = open(self.bus.dir / f"daemon-{time.monotonic_ns()}.log", "w+")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hybridosd exited {self.proc.returncode}: {self.output()}")
            if has_owner(self.bus):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"hybridosd did not take its name: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> int:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __exit__(self, *exc) -> None:
        self.stop()
        if exc[0] is not None:  # the daemon's log helps whoever reads the failure
            print(f"--- hybridosd log ---\n{self.output()}")
        self.log.close()


def busctl(bus: Bus, *args: str, check: bool = True, user: str | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess:
    argv = ["busctl", f"--address={bus.address}", *args]
    if user:
        import pwd

        argv = ["setpriv", f"--reuid={user}", f"--regid={pwd.getpwnam(user).pw_gid}", "--clear-groups", *argv]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=bus.env())
    if check and r.returncode != 0:
        raise AssertionError(f"busctl {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r


def gdbus(bus: Bus, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    argv = ["gdbus", *args[:1], "--address", bus.address, *args[1:]]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=bus.env())
    if check and r.returncode != 0:
        raise AssertionError(f"gdbus {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r


def has_owner(bus: Bus) -> bool:
    r = busctl(bus, "call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
               "NameHasOwner", "s", BUS_NAME, check=False)
    return r.returncode == 0 and r.stdout.strip() == "b true"


@contextlib.contextmanager
def serving(sysroot: Path, **kw):
    with Bus() as bus, Daemon(bus, sysroot, **kw) as daemon:
        yield bus, daemon


OS_IFACE = "org.projectatomic.rpmostree1.OS"
TXN_IFACE = "org.projectatomic.rpmostree1.Transaction"


def unquote_address(out: str) -> str:
    """``('unix:path=/x',)`` (gdbus) or ``s "unix:path=/x"`` (busctl) -> the address."""
    out = out.strip()
    if out.startswith("s "):
        return out[2:].strip().strip('"')
    return out.strip("(),").strip().strip("'")


class Monitor:
    """``gdbus monitor`` on a transaction's peer address: collects its signals until ``Finished``."""

    def __init__(self, address: str):
        import queue
        import threading

        self.address = address
        self.proc = subprocess.Popen(["gdbus", "monitor", "--address", address, "--dest", BUS_NAME,
                                      "--object-path", "/"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines: list[str] = []
        self.queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._next(30)  # "Monitoring signals on object / owned by ..."
        self._next(30)  # "The name ... is owned by :1.0": subscribed from here on

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.queue.put(line)
        self.queue.put(None)

    def _next(self, timeout: float) -> str | None:
        import queue

        try:
            line = self.queue.get(timeout=max(timeout, 0.01))
        except queue.Empty:
            return None
        if line is not None:
            self.lines.append(line)
        return line

    def wait_finished(self, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                line = self._next(deadline - time.monotonic())
                if line is None:
                    break
                if ".Finished " in line:
                    return "".join(self.lines)
            raise AssertionError("no Finished signal:\n" + "".join(self.lines))
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def start(address: str) -> str:
    r = subprocess.run(["gdbus", "call", "--address", address, "--dest", BUS_NAME, "--object-path", "/",
                        "--method", f"{TXN_IFACE}.Start"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"Start failed: {r.stderr}")
    return r.stdout.strip()


def run_transaction(address: str, timeout: float = 120) -> str:
    """Subscribe, ``Start()``, wait for ``Finished``; returns every signal gdbus printed."""
    mon = Monitor(address)
    start(address)
    return mon.wait_finished(timeout)


def os_object(bus: Bus) -> str:
    out = busctl(bus, "get-property", BUS_NAME, SYSROOT_OBJ, "org.projectatomic.rpmostree1.Sysroot", "Booted").stdout
    return out.split('"')[1]


def call_os(bus: Bus, method: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``gdbus call`` of an OS method on the booted OS object (GVariant text arguments)."""
    return gdbus(bus, "call", "--dest", BUS_NAME, "--object-path", os_object(bus), "--method",
                 f"{OS_IFACE}.{method}", *args, check=check)


def os_txn(bus: Bus, method: str, *args: str, timeout: float = 180) -> str:
    """Call a transaction method as a shell client would, then subscribe, Start() and wait for Finished."""
    out = call_os(bus, method, *args).stdout
    if method == "AutomaticUpdateTrigger":  # (true, 'unix:path=...')
        out = out.split(",", 1)[1]
    return run_transaction(unquote_address(out), timeout)


def prop_json(bus: Bus, path: str, interface: str, name: str):
    """A property as busctl's JSON (``{"type": ..., "data": ...}``)."""
    import json

    return json.loads(busctl(bus, "--json=short", "get-property", BUS_NAME, path, interface, name).stdout)["data"]


def deployments(bus: Bus) -> list[dict]:
    """Sysroot.Deployments with each value unwrapped."""
    return [{k: v["data"] for k, v in d.items()}
            for d in prop_json(bus, SYSROOT_OBJ, "org.projectatomic.rpmostree1.Sysroot", "Deployments")]
