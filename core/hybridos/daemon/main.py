"""``hybridosd`` (also ``hybridos start-daemon``): own ``org.projectatomic.rpmostree1`` on the system bus and
serve the sysroot until idle.

Configuration: ``/etc/rpm-ostreed.conf``'s format (``[Daemon]`` ``AutomaticUpdatePolicy``, ``IdleExitTimeout``),
read from ``--config`` (default ``$HYBRIDOSD_CONFIG``, else the sysroot's ``etc/hybridos/hybridosd.conf``, else
its ``etc/rpm-ostreed.conf``); a missing file means the defaults (none, 60 s).
"""

import argparse
import asyncio
import logging
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_CONFIG = "/etc/hybridos/hybridosd.conf"


@dataclass(frozen=True)
class DaemonConfig:
    """``path`` "" means the sysroot's own file (``hybridos.operations.daemonconf``: etc/hybridos/hybridosd.conf,
    else etc/rpm-ostreed.conf)."""

    path: str = ""
    automatic_update_policy: str = "none"
    idle_exit_timeout: float = 60.0
    sysroot: Path = Path("/")

    @classmethod
    def load(cls, path: str | None, sysroot: Path = Path("/")) -> "DaemonConfig":
        from hybridos.operations.daemonconf import load_settings

        s = load_settings(Path(sysroot), Path(path) if path else None)
        return cls(path or "", s.automatic_update_policy, s.idle_exit_timeout, Path(sysroot))

    def reload(self) -> "DaemonConfig":
        return DaemonConfig.load(self.path or None, self.sysroot)


def system_bus_address() -> str:
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or "unix:path=/run/dbus/system_bus_socket"


async def serve(sysroot: Path, config: DaemonConfig, *, run_dir: str, idle_exit: float | None,
                txn_linger: float) -> int:
    from dbus_fast import BusType, Message, MessageType
    from dbus_fast.aio import MessageBus

    from hybridos.daemon import names
    from hybridos.daemon.service import Daemon, track_calls

    bus = await MessageBus(bus_address=system_bus_address(), bus_type=BusType.SYSTEM,
                           negotiate_unix_fd=True).connect()
    daemon = Daemon(bus, sysroot, config, run_dir=run_dir, txn_linger=txn_linger)
    daemon.reload_if_changed(force=True)
    bus.export(names.SYSROOT_PATH, daemon.sysroot_iface)
    track_calls(bus, daemon)
    await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                           interface="org.freedesktop.DBus", member="AddMatch", signature="s",
                           body=["type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged'"]))
    reply = await bus.request_name(names.BUS_NAME)
    from dbus_fast import RequestNameReply

    if reply != RequestNameReply.PRIMARY_OWNER:
        print(f"hybridosd: cannot own {names.BUS_NAME} ({reply.name})", file=sys.stderr)
        bus.disconnect()
        return 1
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.exit_event.set)
    timeout = idle_exit if idle_exit is not None else config.idle_exit_timeout
    jitter = random.uniform(0, 4) if idle_exit is None else 0.0
    logging.getLogger("hybridosd").info("serving %s as %s", sysroot, names.BUS_NAME)
    while not daemon.exit_event.is_set():
        try:
            await asyncio.wait_for(daemon.exit_event.wait(), 1.0)
        except TimeoutError:
            pass
        daemon.reload_if_changed()
        if daemon.txn is not None:
            daemon.txn.check_abandoned()
        t = daemon.config.idle_exit_timeout if idle_exit is None else timeout
        if t and daemon.txn is None and not daemon.clients and time.monotonic() - daemon.last_activity > t + jitter:
            break
    if daemon.txn is not None:
        # stop it at its next step (after the commit point it finishes): never leave a half-run transaction
        daemon.txn.cancel()
        while daemon.txn is not None and daemon.txn.started and not daemon.txn.finished:
            await asyncio.sleep(0.1)
    # give up the name first, so that a client starting now activates a new daemon instead of racing this one
    await bus.release_name(names.BUS_NAME)
    bus.disconnect()
    _ = MessageType
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hybridosd", description="hybridos system daemon "
                                     "(rpm-ostree's D-Bus API on org.projectatomic.rpmostree1)")
    parser.add_argument("--sysroot", default=os.environ.get("HYBRIDOS_SYSROOT", "/"),
                        help="the sysroot to serve (default: /)")
    parser.add_argument("--config", default=os.environ.get("HYBRIDOSD_CONFIG"),
                        help="configuration file (default: the sysroot's etc/hybridos/hybridosd.conf, else "
                             "etc/rpm-ostreed.conf)")
    parser.add_argument("--run-dir", default=os.environ.get("HYBRIDOSD_RUN_DIR", "/run/hybridosd"),
                        help="where transaction sockets are created")
    parser.add_argument("--idle-exit-timeout", type=float, default=None,
                        help="seconds without clients or transaction before exiting (0: never); "
                             "overrides IdleExitTimeout")
    parser.add_argument("--transaction-linger", type=float, default=30.0,
                        help="seconds a finished transaction's server stays up for late clients")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="hybridosd: %(message)s")
    from hybridos.errors import HybridosError

    try:
        config = DaemonConfig.load(args.config, Path(args.sysroot).absolute())
        if args.idle_exit_timeout is not None:
            config = replace(config, idle_exit_timeout=args.idle_exit_timeout)
        os.makedirs(args.run_dir, mode=0o755, exist_ok=True)
        code = asyncio.run(serve(Path(args.sysroot).absolute(), config, run_dir=args.run_dir,
                                 idle_exit=args.idle_exit_timeout, txn_linger=args.transaction_linger))
    except HybridosError as exc:
        print(f"hybridosd: error: {exc.message}", file=sys.stderr)
        sys.exit(1)
    except (OSError, ConnectionError) as exc:
        print(f"hybridosd: error: cannot serve: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code)


if __name__ == "__main__":
    main()
